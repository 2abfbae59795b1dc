// The Socket.IO 4.8 reference server of pygw's peer benchmark (benches/peers.py): the same
// workload as pygw's, written the way Socket.IO's documentation writes one.
//
//   node server.js --port P --secret KEY [--api-key K] [--redis-url redis://host:port] [--max-seconds S]
//
// - Engine.IO v4 over WebSocket (clients connect to /socket.io/?EIO=4&transport=websocket);
//   a client authenticates with an HS256 JWT in the handshake's `auth` ({"token": ...}),
//   verified by a connection middleware (io.use) with `jsonwebtoken`;
// - rooms are the channels: `subscribe` (ack) joins one; `publish` {channel, data} (ack)
//   broadcasts `message` {channel, data} to the room; `ping` (ack) answers {type: "pong"};
// - POST /api/publish {"channel", "data"} with X-API-Key broadcasts from the server;
//   GET /health answers 200;
// - --redis-url enables @socket.io/redis-adapter (node-redis clients), so several nodes share
//   rooms; without it the default in-memory adapter is used.
// The ws native add-ons (bufferutil, utf-8-validate) are installed, as Socket.IO's performance
// guide recommends. Stops on SIGTERM/SIGINT or after --max-seconds.
"use strict";

const http = require("node:http");
const { Server } = require("socket.io");
const jwt = require("jsonwebtoken");

function parseArgs(argv) {
  const opts = { host: "127.0.0.1", port: 8000, secret: "", apiKey: "", redisUrl: "", maxSeconds: 1800 };
  const names = { "--host": "host", "--port": "port", "--secret": "secret", "--api-key": "apiKey", "--redis-url": "redisUrl", "--max-seconds": "maxSeconds" };
  for (let i = 0; i < argv.length; i += 2) {
    const key = names[argv[i]];
    if (!key || i + 1 >= argv.length) {
      throw new Error(`usage: node server.js --port P --secret KEY [--api-key K] [--redis-url URL] [--max-seconds S] (bad argument ${argv[i]})`);
    }
    opts[key] = argv[i + 1];
  }
  opts.port = Number(opts.port);
  opts.maxSeconds = Number(opts.maxSeconds);
  if (!opts.secret) throw new Error("--secret is required");
  return opts;
}

function sendJson(res, status, body) {
  const data = JSON.stringify(body);
  res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(data) });
  res.end(data);
}

function httpHandler(opts, getIo) {
  return (req, res) => {
    if (req.url === "/health") {
      sendJson(res, 200, { status: "healthy" });
      return;
    }
    if (req.url !== "/api/publish") {
      if (!req.url.startsWith("/socket.io/")) sendJson(res, 404, { error: "Not Found" });
      return; // /socket.io/ requests are Socket.IO's own
    }
    if (req.method !== "POST") {
      sendJson(res, 405, { error: "method not allowed" });
      return;
    }
    if (opts.apiKey && req.headers["x-api-key"] !== opts.apiKey) {
      sendJson(res, 401, { error: "bad api key" });
      return;
    }
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      let msg;
      try {
        msg = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      } catch {
        msg = null;
      }
      if (!msg || typeof msg.channel !== "string" || !msg.channel || msg.data === undefined) {
        sendJson(res, 400, { error: 'expected {"channel": ..., "data": ...}' });
        return;
      }
      getIo().to(msg.channel).emit("message", { channel: msg.channel, data: msg.data });
      sendJson(res, 200, {});
    });
  };
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  let io = null;
  const httpServer = http.createServer(httpHandler(opts, () => io));
  io = new Server(httpServer, { transports: ["websocket"] });

  if (opts.redisUrl) {
    const { createClient } = require("redis");
    const { createAdapter } = require("@socket.io/redis-adapter");
    const pubClient = createClient({ url: opts.redisUrl });
    const subClient = pubClient.duplicate();
    await Promise.all([pubClient.connect(), subClient.connect()]);
    io.adapter(createAdapter(pubClient, subClient));
  }

  io.use((socket, next) => {
    const token = socket.handshake.auth && socket.handshake.auth.token;
    if (typeof token !== "string") return next(new Error("Authentication required"));
    jwt.verify(token, opts.secret, { algorithms: ["HS256"] }, (err, claims) => {
      if (err || !claims.sub) return next(new Error("Invalid token"));
      socket.data.user = claims.sub;
      next();
    });
  });

  io.on("connection", (socket) => {
    socket.on("subscribe", (channel, ack) => {
      if (typeof channel !== "string" || !channel) {
        if (typeof ack === "function") ack({ error: "channel required" });
        return;
      }
      socket.join(channel);
      if (typeof ack === "function") ack({ channel });
    });
    socket.on("publish", (msg, ack) => {
      if (!msg || typeof msg.channel !== "string" || !msg.channel) {
        if (typeof ack === "function") ack({ error: "channel required" });
        return;
      }
      io.to(msg.channel).emit("message", { channel: msg.channel, data: msg.data });
      if (typeof ack === "function") ack({ channel: msg.channel });
    });
    socket.on("ping", (ack) => {
      if (typeof ack === "function") ack({ type: "pong", timestamp: Date.now() });
    });
  });

  httpServer.listen(opts.port, opts.host, () => {
    console.log(`socket.io peer listening on ${opts.host}:${opts.port} (adapter: ${opts.redisUrl ? "redis" : "memory"})`);
  });

  const stop = () => {
    io.close();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  setTimeout(() => {
    console.error("--max-seconds reached, stopping");
    stop();
  }, opts.maxSeconds * 1000).unref();
}

main().catch((err) => {
  console.error(err && err.message ? err.message : err);
  process.exit(1);
});
