//! A tiny single-threaded pygw look-alike for tests and smoke runs: the
//! WebSocket endpoint (welcome, ping/pong, subscribe, publish, deliveries,
//! keep-alive pings with a pong timeout, close 1008 for token "bad", HTTP 403
//! for token "forbidden") and `POST /api/publish`. Not built for speed.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::http::header_lines;
use crate::scan;
use crate::util::Rng;
use crate::ws::{accept_key, Event, FrameReader, FrameWriter, OP_CONT, OP_TEXT};

#[derive(Debug, Clone)]
pub struct MockConfig {
    /// Keep-alive ping period (text `{"type":"ping"}` and a protocol PING).
    pub ping_interval: Option<Duration>,
    /// Close with 1008 "Pong timeout" if a ping is unanswered this long.
    pub pong_timeout: Duration,
    /// Send every delivery as two fragments.
    pub fragment: bool,
    /// Required `X-API-Key` for `/api/publish` (any `Authorization: Bearer` also passes).
    pub api_key: Option<String>,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            ping_interval: None,
            pong_timeout: Duration::from_secs(10),
            fragment: false,
            api_key: None,
        }
    }
}

#[derive(Debug, Default)]
pub struct MockStats {
    pub ws_connections: AtomicU64,
    pub ws_open: AtomicU64,
    pub frames_in: AtomicU64,
    pub deliveries: AtomicU64,
    pub publishes: AtomicU64,
    pub pong_timeouts: AtomicU64,
    pub text_pongs: AtomicU64,
    pub proto_pongs: AtomicU64,
    pub http_requests: AtomicU64,
}

impl MockStats {
    pub fn to_json(&self) -> Value {
        json!({
            "ws_connections": self.ws_connections.load(Relaxed),
            "ws_open": self.ws_open.load(Relaxed),
            "frames_in": self.frames_in.load(Relaxed),
            "deliveries": self.deliveries.load(Relaxed),
            "publishes": self.publishes.load(Relaxed),
            "pong_timeouts": self.pong_timeouts.load(Relaxed),
            "text_pongs": self.text_pongs.load(Relaxed),
            "protocol_pongs": self.proto_pongs.load(Relaxed),
            "http_requests": self.http_requests.load(Relaxed),
        })
    }
}

pub struct MockServer {
    pub addr: SocketAddr,
    pub stats: Arc<MockStats>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MockServer {
    pub fn start(listen: &str, cfg: MockConfig) -> io::Result<MockServer> {
        let want: SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(listen)?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address"))?;
        let sock = if want.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        sock.set_reuseaddr(true)?;
        sock.bind(want)?;
        let addr = sock.local_addr()?;
        let stats = Arc::new(MockStats::default());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let st = stats.clone();
        let thread = std::thread::Builder::new()
            .name("mock-server".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                let set = tokio::task::LocalSet::new();
                set.block_on(&rt, async move {
                    let listener: TcpListener = sock.listen(8192).expect("listen");
                    let hub = Rc::new(RefCell::new(Hub::default()));
                    let cfg = Rc::new(cfg);
                    let mut rx = rx;
                    loop {
                        tokio::select! {
                            _ = &mut rx => break,
                            r = listener.accept() => {
                                if let Ok((s, _)) = r {
                                    let _ = s.set_nodelay(true);
                                    let (h, c, st) = (hub.clone(), cfg.clone(), st.clone());
                                    tokio::task::spawn_local(async move {
                                        let _ = handle(s, h, c, st).await;
                                    });
                                }
                            }
                        }
                    }
                });
            })?;
        Ok(MockServer {
            addr,
            stats,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.stop();
    }
}

type Tx = mpsc::UnboundedSender<Rc<[u8]>>;

#[derive(Default)]
struct Channel {
    offset: u64,
    subs: Vec<(u64, Tx)>,
}

#[derive(Default)]
struct Hub {
    channels: HashMap<String, Channel>,
    next_conn: u64,
}

impl Hub {
    /// Returns (offset, deliveries).
    fn publish(&mut self, channel: &str, data: &Value, stats: &MockStats) -> (u64, u64) {
        let ch = self.channels.entry(channel.to_string()).or_default();
        ch.offset += 1;
        let frame =
            json!({"type": "message", "channel": channel, "data": data, "offset": ch.offset});
        let bytes: Rc<[u8]> = serde_json::to_vec(&frame).expect("json").into();
        let mut n = 0;
        ch.subs.retain(|(_, tx)| {
            if tx.send(bytes.clone()).is_ok() {
                n += 1;
                true
            } else {
                false
            }
        });
        stats.publishes.fetch_add(1, Relaxed);
        stats.deliveries.fetch_add(n, Relaxed);
        (ch.offset, n)
    }

    fn unsubscribe_all(&mut self, conn: u64) {
        for ch in self.channels.values_mut() {
            ch.subs.retain(|(c, _)| *c != conn);
        }
    }
}

struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn parse_request(head: &[u8]) -> Option<Request> {
    let line_end = scan::find(head, b"\r\n", 0)?;
    let line = std::str::from_utf8(&head[..line_end]).ok()?;
    let mut parts = line.split(' ');
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let headers = header_lines(&head[line_end..])
        .map(|(n, v)| {
            (
                String::from_utf8_lossy(n).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect();
    Some(Request {
        method,
        path,
        headers,
    })
}

fn query_param<'a>(path: &'a str, key: &str) -> Option<&'a str> {
    let q = path.split_once('?')?.1;
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

async fn respond(s: &mut TcpStream, status: &str, body: &Value, close: bool) -> io::Result<()> {
    let b = body.to_string();
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n",
        b.len(),
        if close { "Connection: close\r\n" } else { "" }
    );
    let mut out = head.into_bytes();
    out.extend_from_slice(b.as_bytes());
    s.write_all(&out).await
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

async fn handle(
    mut s: TcpStream,
    hub: Rc<RefCell<Hub>>,
    cfg: Rc<MockConfig>,
    stats: Arc<MockStats>,
) -> io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut tmp = [0u8; 8192];
    loop {
        // read one request head
        let end = loop {
            if let Some(e) = scan::find(&buf, b"\r\n\r\n", 0) {
                break e;
            }
            let n = s.read(&mut tmp).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&tmp[..n]);
        };
        let req = match parse_request(&buf[..end + 2]) {
            Some(r) => r,
            None => {
                return respond(
                    &mut s,
                    "400 Bad Request",
                    &json!({"error": "bad request"}),
                    true,
                )
                .await
            }
        };
        let mut rest = buf.split_off(end + 4);
        std::mem::swap(&mut buf, &mut rest);
        stats.http_requests.fetch_add(1, Relaxed);
        let is_upgrade = req
            .header("upgrade")
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
        if is_upgrade && req.path.starts_with("/ws/connect") {
            let token = query_param(&req.path, "token").unwrap_or("").to_string();
            if token == "forbidden" {
                return respond(
                    &mut s,
                    "403 Forbidden",
                    &json!({"error": "forbidden"}),
                    true,
                )
                .await;
            }
            let key = req.header("sec-websocket-key").unwrap_or("").to_string();
            let sid = query_param(&req.path, "session_id")
                .unwrap_or("")
                .to_string();
            let resp = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                accept_key(key.as_bytes())
            );
            s.write_all(resp.as_bytes()).await?;
            return ws_session(s, buf, token, sid, hub, cfg, stats).await;
        }
        // plain HTTP; read the body
        let len: usize = req
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < len {
            let n = s.read(&mut tmp).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&tmp[..n]);
        }
        let body: Vec<u8> = buf.drain(..len).collect();
        let close = req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        match (
            req.method.as_str(),
            req.path.split('?').next().unwrap_or(""),
        ) {
            ("POST", "/api/publish") => {
                let authorized = match &cfg.api_key {
                    None => true,
                    Some(k) => {
                        req.header("x-api-key") == Some(k.as_str())
                            || req
                                .header("authorization")
                                .is_some_and(|a| a.starts_with("Bearer "))
                    }
                };
                if !authorized {
                    respond(
                        &mut s,
                        "401 Unauthorized",
                        &json!({"error": "unauthorized"}),
                        close,
                    )
                    .await?;
                } else {
                    match serde_json::from_slice::<Value>(&body) {
                        Ok(v) if v["channel"].is_string() => {
                            let ch = v["channel"].as_str().unwrap_or_default().to_string();
                            let (offset, n) = hub.borrow_mut().publish(&ch, &v["data"], &stats);
                            respond(
                                &mut s,
                                "200 OK",
                                &json!({"deliveries": n, "channel": ch, "offset": offset}),
                                close,
                            )
                            .await?;
                        }
                        _ => {
                            respond(
                                &mut s,
                                "400 Bad Request",
                                &json!({"error": "bad body"}),
                                close,
                            )
                            .await?
                        }
                    }
                }
            }
            ("GET", "/health") => {
                respond(&mut s, "200 OK", &json!({"status": "ok"}), close).await?
            }
            _ => {
                respond(
                    &mut s,
                    "404 Not Found",
                    &json!({"error": "not found"}),
                    close,
                )
                .await?
            }
        }
        if close {
            return Ok(());
        }
    }
}

/// `{"type":"ping","id":N}` answered without a JSON parse (keeps the mock
/// out of the way when measuring the generator itself).
fn fast_pong<'a>(p: &[u8], out: &'a mut Vec<u8>) -> Option<&'a [u8]> {
    if !p.starts_with(br#"{"type":"ping""#) {
        return None;
    }
    out.clear();
    out.extend_from_slice(br#"{"type":"pong","timestamp":"#);
    out.extend_from_slice(format!("{:.6}", now_secs()).as_bytes());
    if let Some((id, _)) = scan::u64_field(p, b"\"id\"", 0) {
        out.extend_from_slice(br#","id":"#);
        crate::util::push_u64(out, id);
    }
    out.push(b'}');
    Some(out)
}

fn reply(v: &Value, mut obj: Value) -> Vec<u8> {
    if let Some(id) = v.get("id") {
        obj["id"] = id.clone();
    }
    serde_json::to_vec(&obj).expect("json")
}

async fn ws_session(
    mut s: TcpStream,
    leftover: Vec<u8>,
    token: String,
    sid: String,
    hub: Rc<RefCell<Hub>>,
    cfg: Rc<MockConfig>,
    stats: Arc<MockStats>,
) -> io::Result<()> {
    let mut rd = FrameReader::with_capacity(8192);
    rd.feed(&leftover);
    let mut wr = FrameWriter::new(false, Rng::new(1));
    if token == "bad" {
        wr.close(Some(1008), b"Invalid token");
        s.write_all(&wr.buf).await?;
        return Ok(());
    }
    stats.ws_connections.fetch_add(1, Relaxed);
    stats.ws_open.fetch_add(1, Relaxed);
    let conn_id = {
        let mut h = hub.borrow_mut();
        h.next_conn += 1;
        h.next_conn
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<Rc<[u8]>>();
    let welcome = json!({"type": "connected", "session_id": sid, "server_time": now_secs()});
    wr.text(&serde_json::to_vec(&welcome).expect("json"));
    s.write_all(&wr.buf).await?;
    wr.buf.clear();
    let mut ticker = cfg.ping_interval.map(|d| {
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + d, d);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    let mut text_pending = false;
    let mut proto_pending = false;
    let mut fast = Vec::with_capacity(128);
    let mut pong_deadline: Option<Instant> = None;
    let result = loop {
        let tick = async {
            match ticker.as_mut() {
                Some(t) => {
                    t.tick().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        let deadline = async {
            match pong_deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending::<()>().await,
            }
        };
        let mut closing = false;
        tokio::select! {
            r = rd.read_from(&mut s) => {
                match r {
                    Ok(0) | Err(_) => break Ok(()),
                    Ok(_) => {}
                }
                loop {
                    let ev = match rd.next_event() {
                        Ok(Some(ev)) => ev,
                        Ok(None) => break,
                        Err(_) => {
                            wr.close(Some(1002), b"protocol error");
                            closing = true;
                            break;
                        }
                    };
                    match ev {
                        Event::Text(p) => {
                            stats.frames_in.fetch_add(1, Relaxed);
                            if let Some(r) = fast_pong(p, &mut fast) {
                                wr.text(r);
                                continue;
                            }
                            let v: Value = match serde_json::from_slice(p) {
                                Ok(v) => v,
                                Err(_) => {
                                    wr.text(br#"{"type":"error","message":"invalid json"}"#);
                                    continue;
                                }
                            };
                            match v["type"].as_str().unwrap_or("") {
                                "ping" => wr.text(&reply(&v, json!({"type": "pong", "timestamp": now_secs()}))),
                                "pong" => {
                                    text_pending = false;
                                    stats.text_pongs.fetch_add(1, Relaxed);
                                }
                                "subscribe" => {
                                    let ch = v["channel"].as_str().unwrap_or("").to_string();
                                    let offset = {
                                        let mut h = hub.borrow_mut();
                                        let c = h.channels.entry(ch.clone()).or_default();
                                        c.subs.push((conn_id, tx.clone()));
                                        c.offset
                                    };
                                    wr.text(&reply(&v, json!({"type": "subscribed", "channel": ch,
                                        "epoch": "mock", "offset": offset, "recovered": false})));
                                }
                                "publish" => {
                                    let ch = v["channel"].as_str().unwrap_or("").to_string();
                                    let (offset, _) = hub.borrow_mut().publish(&ch, &v["data"], &stats);
                                    wr.text(&reply(&v, json!({"type": "published", "channel": ch, "offset": offset})));
                                }
                                "update_api_key" => wr.text(&reply(&v, json!({"type": "ack", "action": "update_api_key"}))),
                                _ => wr.text(&reply(&v, json!({"type": "error", "message": "unknown type"}))),
                            }
                        }
                        Event::Binary(_) => {}
                        Event::Ping(p) => wr.pong(p),
                        Event::Pong(_) => {
                            proto_pending = false;
                            stats.proto_pongs.fetch_add(1, Relaxed);
                        }
                        Event::Close(code, _) => {
                            wr.close(code, b"");
                            closing = true;
                            break;
                        }
                    }
                }
                if !text_pending && !proto_pending {
                    pong_deadline = None;
                }
            }
            Some(msg) = rx.recv() => {
                let mut m = Some(msg);
                while let Some(msg) = m {
                    if cfg.fragment && msg.len() >= 2 {
                        let h = msg.len() / 2;
                        wr.frame(false, OP_TEXT, &msg[..h]);
                        wr.frame(true, OP_CONT, &msg[h..]);
                    } else {
                        wr.text(&msg);
                    }
                    m = rx.try_recv().ok();
                }
            }
            _ = tick => {
                text_pending = true;
                proto_pending = true;
                let p = json!({"type": "ping", "timestamp": now_secs()});
                wr.text(&serde_json::to_vec(&p).expect("json"));
                wr.ping(b"mock");
                if pong_deadline.is_none() {
                    pong_deadline = Some(Instant::now() + cfg.pong_timeout);
                }
            }
            _ = deadline => {
                if text_pending || proto_pending {
                    stats.pong_timeouts.fetch_add(1, Relaxed);
                    wr.close(Some(1008), b"Pong timeout");
                    closing = true;
                }
                pong_deadline = None;
            }
        }
        if !wr.buf.is_empty() {
            if let Err(e) = s.write_all(&wr.buf).await {
                break Err(e);
            }
            wr.buf.clear();
        }
        if closing {
            break Ok(());
        }
    };
    hub.borrow_mut().unsubscribe_all(conn_id);
    stats.ws_open.fetch_sub(1, Relaxed);
    result
}
