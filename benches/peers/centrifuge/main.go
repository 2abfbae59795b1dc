// Command centrifuge-peer is the Centrifuge reference server of pygw's peer benchmark
// (benches/peers.py): the same workload as pygw's, written the way the library's own examples
// (_examples/jwt_token, _examples/redis_broker_presence) write a server.
//
//   - WebSocket endpoint /connection/websocket (Centrifuge JSON protocol); a client authenticates
//     with an HS256 JWT in its connect command (OnConnecting verifies it: signature, expiry,
//     `sub` as the user ID);
//   - every authenticated client may subscribe to and publish into any channel (OnSubscribe and
//     OnPublish allow), with no history (the peer benchmark's pygw channels have none either);
//   - POST /api/publish {"channel": C, "data": D} with X-API-Key publishes from the server
//     (node.Publish), like pygw's /api/publish; GET /health answers 200;
//   - -redis ADDR switches the broker and presence manager to Redis (one shard), so several
//     nodes share channels; the default is the in-memory broker.
//
// Built from Debian's Go packages in GOPATH mode (no network): see `make bench-peers`.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/centrifugal/centrifuge"
	"github.com/golang-jwt/jwt"
)

var (
	host       = flag.String("host", "127.0.0.1", "address to bind")
	port       = flag.Int("port", 8000, "port to bind")
	secret     = flag.String("secret", "", "HS256 key the connect tokens are signed with (required)")
	apiKey     = flag.String("api-key", "", "key expected in X-API-Key by POST /api/publish")
	redisAddr  = flag.String("redis", "", "host:port of a Redis server: Redis broker and presence manager")
	maxSeconds = flag.Float64("max-seconds", 1800, "stop by itself after this many seconds (a safety bound)")
)

// verifyToken checks an HS256 connect token and returns its subject (the user ID).
func verifyToken(token string, key []byte) (string, error) {
	claims := jwt.MapClaims{}
	parsed, err := jwt.ParseWithClaims(token, claims, func(t *jwt.Token) (interface{}, error) {
		if t.Method != jwt.SigningMethodHS256 {
			return nil, fmt.Errorf("unexpected signing method %v", t.Header["alg"])
		}
		return key, nil
	})
	if err != nil || !parsed.Valid {
		return "", errors.New("invalid token")
	}
	sub, _ := claims["sub"].(string)
	if sub == "" {
		return "", errors.New("token without sub")
	}
	return sub, nil
}

func setupRedis(node *centrifuge.Node, addr string) error {
	shard, err := centrifuge.NewRedisShard(node, centrifuge.RedisShardConfig{Address: addr})
	if err != nil {
		return err
	}
	shards := []*centrifuge.RedisShard{shard}
	broker, err := centrifuge.NewRedisBroker(node, centrifuge.RedisBrokerConfig{Shards: shards})
	if err != nil {
		return err
	}
	node.SetBroker(broker)
	presence, err := centrifuge.NewRedisPresenceManager(node, centrifuge.RedisPresenceManagerConfig{Shards: shards})
	if err != nil {
		return err
	}
	node.SetPresenceManager(presence)
	return nil
}

type publishRequest struct {
	Channel string          `json:"channel"`
	Data    json.RawMessage `json:"data"`
}

func publishHandler(node *centrifuge.Node, key string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.Method != http.MethodPost {
			w.WriteHeader(http.StatusMethodNotAllowed)
			_, _ = w.Write([]byte(`{"error":"method not allowed"}`))
			return
		}
		if key != "" && r.Header.Get("X-API-Key") != key {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"bad api key"}`))
			return
		}
		var req publishRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil || req.Channel == "" || len(req.Data) == 0 {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"expected {\"channel\": ..., \"data\": ...}"}`))
			return
		}
		if _, err := node.Publish(req.Channel, req.Data); err != nil {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(`{"error":"publish failed"}`))
			return
		}
		_, _ = w.Write([]byte(`{}`))
	}
}

func main() {
	flag.Parse()
	if *secret == "" {
		log.Fatal("-secret is required")
	}
	key := []byte(*secret)

	cfg := centrifuge.DefaultConfig
	cfg.LogLevel = centrifuge.LogLevelError
	cfg.LogHandler = func(e centrifuge.LogEntry) { log.Printf("%s: %v", e.Message, e.Fields) }
	node, err := centrifuge.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	if *redisAddr != "" {
		if err := setupRedis(node, *redisAddr); err != nil {
			log.Fatal(err)
		}
	}

	node.OnConnecting(func(ctx context.Context, e centrifuge.ConnectEvent) (centrifuge.ConnectReply, error) {
		user, err := verifyToken(e.Token, key)
		if err != nil {
			return centrifuge.ConnectReply{}, centrifuge.DisconnectInvalidToken
		}
		return centrifuge.ConnectReply{Credentials: &centrifuge.Credentials{UserID: user}}, nil
	})
	node.OnConnect(func(client *centrifuge.Client) {
		client.OnSubscribe(func(e centrifuge.SubscribeEvent, cb centrifuge.SubscribeCallback) {
			cb(centrifuge.SubscribeReply{}, nil)
		})
		client.OnPublish(func(e centrifuge.PublishEvent, cb centrifuge.PublishCallback) {
			cb(centrifuge.PublishReply{}, nil)
		})
	})
	if err := node.Run(); err != nil {
		log.Fatal(err)
	}

	mux := http.NewServeMux()
	mux.Handle("/connection/websocket", centrifuge.NewWebsocketHandler(node, centrifuge.WebsocketConfig{
		ReadBufferSize:     1024,
		UseWriteBufferPool: true,
	}))
	mux.Handle("/api/publish", publishHandler(node, *apiKey))
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"healthy"}`))
	})
	server := &http.Server{Addr: fmt.Sprintf("%s:%d", *host, *port), Handler: mux}
	go func() {
		if err := server.ListenAndServe(); err != nil && err != http.ErrServerClosed {
			log.Fatal(err)
		}
	}()
	log.Printf("centrifuge peer listening on %s:%d (broker: %s)", *host, *port, map[bool]string{true: "redis " + *redisAddr, false: "memory"}[*redisAddr != ""])

	sigCh := make(chan os.Signal, 1)
	signal.Notify(sigCh, syscall.SIGINT, syscall.SIGTERM)
	select {
	case <-sigCh:
	case <-time.After(time.Duration(*maxSeconds * float64(time.Second))):
		log.Print("-max-seconds reached, stopping")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = server.Shutdown(ctx)
	_ = node.Shutdown(ctx)
}
