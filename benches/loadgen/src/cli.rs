//! Command line: `pygw-loadgen <mode> [--option value | --option=value]...`.

use std::net::IpAddr;
use std::path::PathBuf;

use serde_json::{json, Map, Value};

use crate::proto::Proto;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    WsRtt,
    Fanout,
    Hold,
    Http,
    BenchParse,
    MockServer,
}

const RTT: u8 = 1;
const FAN: u8 = 2;
const HOLD: u8 = 4;
const HTTP: u8 = 8;
const BENCH: u8 = 16;
const MOCK: u8 = 32;
const NET: u8 = RTT | FAN | HOLD | HTTP;
const ALL: u8 = NET | BENCH | MOCK;

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::WsRtt => "ws-rtt",
            Mode::Fanout => "fanout",
            Mode::Hold => "hold",
            Mode::Http => "http",
            Mode::BenchParse => "bench-parse",
            Mode::MockServer => "mock-server",
        }
    }

    fn from_name(s: &str) -> Option<Mode> {
        [
            Mode::WsRtt,
            Mode::Fanout,
            Mode::Hold,
            Mode::Http,
            Mode::BenchParse,
            Mode::MockServer,
        ]
        .into_iter()
        .find(|m| m.name() == s)
    }

    fn bit(self) -> u8 {
        match self {
            Mode::WsRtt => RTT,
            Mode::Fanout => FAN,
            Mode::Hold => HOLD,
            Mode::Http => HTTP,
            Mode::BenchParse => BENCH,
            Mode::MockServer => MOCK,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Ws,
    Http,
}

pub const DEFAULT_WS_URL: &str = "ws://127.0.0.1:8000/ws/connect?session_id={sid}&token={token}";
pub const DEFAULT_FRAME: &str = r#"{"type":"ping","id":{id}}"#;

#[derive(Debug, Clone)]
pub struct Opts {
    pub mode: Mode,
    // common
    pub url: String,
    pub creds: Option<PathBuf>,
    pub token: Option<String>,
    pub sid: Option<String>,
    pub source_ips: Vec<IpAddr>,
    pub threads: usize,
    pub connect_concurrency: usize,
    pub connect_timeout: f64,
    pub duration: f64,
    pub warmup: f64,
    pub json: Option<PathBuf>,
    pub quiet: bool,
    pub headers: Vec<String>,
    /// Wire protocol of the WebSocket modes.
    pub protocol: Proto,
    // ws-rtt / hold / http
    pub conns: usize,
    pub depth: usize,
    pub frame: String,
    pub expect: String,
    // fanout
    pub subscribers: usize,
    pub sub_urls: Vec<String>,
    pub channel: String,
    pub messages: u64,
    pub via: Via,
    pub pub_url: Option<String>,
    pub api_key: Option<String>,
    pub pub_token: Option<String>,
    pub pub_sid: Option<String>,
    pub window: usize,
    pub rate: f64,
    pub payload_bytes: usize,
    pub latency_sample: u64,
    pub timeout: f64,
    // hold
    pub pid: Option<u32>,
    // http
    pub method: String,
    pub body: Option<String>,
    pub requests: Option<u64>,
    // mock-server
    pub listen: String,
    pub ping_interval: f64,
    pub pong_timeout: f64,
    pub fragment: bool,
    // bench-parse
    pub frames: u64,
    /// Option names given on the command line, in order.
    pub given: Vec<String>,
}

impl Opts {
    fn defaults(mode: Mode) -> Opts {
        Opts {
            mode,
            url: DEFAULT_WS_URL.into(),
            creds: None,
            token: None,
            sid: None,
            source_ips: Vec::new(),
            threads: 1,
            connect_concurrency: 256,
            connect_timeout: 10.0,
            duration: match mode {
                Mode::Hold => 30.0,
                Mode::MockServer => 300.0,
                _ => 10.0,
            },
            warmup: 0.0,
            json: None,
            quiet: false,
            headers: Vec::new(),
            protocol: Proto::Pygw,
            conns: match mode {
                Mode::Hold => 1000,
                _ => 10,
            },
            depth: 1,
            frame: DEFAULT_FRAME.into(),
            expect: "pong".into(),
            subscribers: 100,
            sub_urls: Vec::new(),
            channel: "loadgen".into(),
            messages: 1000,
            via: Via::Ws,
            pub_url: None,
            api_key: None,
            pub_token: None,
            pub_sid: None,
            window: 64,
            rate: 0.0,
            payload_bytes: 100,
            latency_sample: 1,
            timeout: 60.0,
            pid: None,
            method: "GET".into(),
            body: None,
            requests: None,
            listen: "127.0.0.1:8000".into(),
            ping_interval: 25.0,
            pong_timeout: 10.0,
            fragment: false,
            frames: 2_000_000,
            given: Vec::new(),
        }
    }

    pub fn was_given(&self, name: &str) -> bool {
        self.given.iter().any(|g| g == name)
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum CliError {
    /// `--help`: print this text and exit 0.
    Help(String),
    /// Bad usage: print this message and exit 2.
    Usage(String),
}

/// (name, takes a value, modes where valid)
const SPECS: &[(&str, bool, u8)] = &[
    ("url", true, NET),
    ("creds", true, NET),
    ("token", true, NET),
    ("sid", true, NET),
    ("source-ips", true, NET),
    ("threads", true, NET),
    ("connect-concurrency", true, NET),
    ("connect-timeout", true, NET),
    ("duration", true, RTT | HOLD | HTTP | MOCK),
    ("warmup", true, RTT | HTTP),
    ("json", true, ALL),
    ("quiet", false, ALL),
    ("header", true, NET),
    ("protocol", true, RTT | FAN | HOLD),
    ("conns", true, RTT | HOLD | HTTP),
    ("depth", true, RTT),
    ("frame", true, RTT),
    ("expect", true, RTT),
    ("subscribers", true, FAN),
    ("sub-urls", true, FAN),
    ("channel", true, FAN),
    ("messages", true, FAN),
    ("via", true, FAN),
    ("pub-url", true, FAN),
    ("api-key", true, FAN | MOCK),
    ("pub-token", true, FAN),
    ("pub-sid", true, FAN),
    ("window", true, FAN),
    ("rate", true, FAN),
    ("payload-bytes", true, FAN | BENCH),
    ("latency-sample", true, FAN),
    ("timeout", true, FAN),
    ("pid", true, HOLD),
    ("method", true, HTTP),
    ("body", true, HTTP),
    ("requests", true, HTTP),
    ("listen", true, MOCK),
    ("ping-interval", true, MOCK),
    ("pong-timeout", true, MOCK),
    ("fragment", false, MOCK),
    ("frames", true, BENCH),
];

pub const USAGE: &str = "\
usage: pygw-loadgen <mode> [options]

modes:
  ws-rtt       request/reply round trips over --conns WebSockets, --depth in flight each
  fanout       --subscribers on --channel, publish --messages via ws or http, measure delivery
  hold         connect storm of --conns, then hold them idle for --duration (optional --pid sampling)
  http         --conns keep-alive HTTP/1.1 connections issuing requests for --duration / --requests
  bench-parse  micro-benchmark of the generator's own frame parser/encoder (no network)
  mock-server  tiny pygw look-alike for smoke tests (bounded by --duration)

common options (network modes):
  --url URL               ws:// or http:// template; {token} {sid} {username} {conn} substituted
                          (default ws://127.0.0.1:8000/ws/connect?session_id={sid}&token={token})
  --creds FILE            JSON lines {\"token\":..,\"session_id\":..,\"username\":..}, round-robin
  --token T --sid S       one credential for all connections (default sid: unique per connection)
  --source-ips A-B|A,B    bind outgoing sockets round-robin over these addresses
  --threads N             runtime threads (default 1)
  --connect-concurrency N connection attempts in flight (default 256)
  --connect-timeout SECS  per connection: TCP connect to welcome frame (default 10)
  --header 'Name: value'  extra request header, repeatable (templated; also sent on WS upgrades)
  --json PATH             also write the result JSON there
  --protocol P            ws-rtt/fanout/hold: pygw (default), socketio (Socket.IO 4 over
                          Engine.IO v4 WebSocket; token in the CONNECT auth) or centrifuge
                          (Centrifuge JSON protocol; token in the connect command)
  --quiet                 no progress and no table on stderr

ws-rtt:  --conns N (10) --depth N (1) --duration S (10) --warmup S (0)
         --frame TEMPLATE ('{\"type\":\"ping\",\"id\":{id}}'; socketio '42{id}[\"ping\"]';
         centrifuge '{\"id\":{id},\"method\":7}') --expect TYPE (pong; pygw only)
fanout:  --subscribers N (100) --sub-urls U1,U2 --channel C (loadgen) --messages N (1000)
         --via ws|http (ws) --pub-url URL --api-key K --pub-token T --pub-sid S
         --window N (64) --rate MSGS_PER_S (0 = window-bound) --payload-bytes N (100)
         --latency-sample K (1) --timeout S (60)
hold:    --conns N (1000) --duration S (30) --pid PID
http:    --conns N (10) --method M (GET, or POST with --body) --body TEMPLATE ({id} too)
         --duration S (10) --warmup S (0) --requests N (stop after N; --duration caps, default 600)
bench-parse: --frames N (2000000) --payload-bytes N (100)
mock-server: --listen ADDR (127.0.0.1:8000) --duration S (300) --ping-interval S (25)
             --pong-timeout S (10) --api-key K --fragment
";

fn num<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, CliError> {
    v.trim()
        .parse()
        .map_err(|_| CliError::Usage(format!("--{name}: bad number {v:?}")))
}

fn pos<T: std::str::FromStr + PartialOrd + Default>(name: &str, v: &str) -> Result<T, CliError> {
    let n: T = num(name, v)?;
    if n <= T::default() {
        return Err(CliError::Usage(format!("--{name} must be > 0")));
    }
    Ok(n)
}

fn secs(name: &str, v: &str) -> Result<f64, CliError> {
    let n: f64 = num(name, v)?;
    if !n.is_finite() || n < 0.0 {
        return Err(CliError::Usage(format!(
            "--{name} must be a non-negative number"
        )));
    }
    Ok(n)
}

pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<Opts, CliError> {
    let args: Vec<&str> = args.iter().map(|s| s.as_ref()).collect();
    let mode_name = match args.first() {
        None => return Err(CliError::Usage(format!("missing mode\n\n{USAGE}"))),
        Some(&("-h" | "--help" | "help")) => return Err(CliError::Help(USAGE.into())),
        Some(m) => *m,
    };
    let mode = Mode::from_name(mode_name)
        .ok_or_else(|| CliError::Usage(format!("unknown mode {mode_name:?}\n\n{USAGE}")))?;
    let mut o = Opts::defaults(mode);
    let mut i = 1;
    while i < args.len() {
        let a = args[i];
        i += 1;
        if a == "-h" || a == "--help" {
            return Err(CliError::Help(USAGE.into()));
        }
        let body = a
            .strip_prefix("--")
            .ok_or_else(|| CliError::Usage(format!("unexpected argument {a:?}")))?;
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let &(_, takes, modes) = SPECS
            .iter()
            .find(|s| s.0 == name)
            .ok_or_else(|| CliError::Usage(format!("unknown option --{name}")))?;
        if modes & mode.bit() == 0 {
            return Err(CliError::Usage(format!(
                "option --{name} does not apply to mode {}",
                mode.name()
            )));
        }
        let v = if takes {
            match inline {
                Some(v) => v,
                None => {
                    let v = *args
                        .get(i)
                        .ok_or_else(|| CliError::Usage(format!("--{name} needs a value")))?;
                    i += 1;
                    v
                }
            }
        } else {
            if inline.is_some() {
                return Err(CliError::Usage(format!("--{name} takes no value")));
            }
            ""
        };
        o.given.push(name.to_string());
        match name {
            "url" => o.url = v.into(),
            "creds" => o.creds = Some(v.into()),
            "token" => o.token = Some(v.into()),
            "sid" => o.sid = Some(v.into()),
            "source-ips" => {
                o.source_ips = crate::net::parse_source_ips(v)
                    .map_err(|e| CliError::Usage(format!("--source-ips: {e}")))?
            }
            "threads" => o.threads = pos(name, v)?,
            "connect-concurrency" => o.connect_concurrency = pos(name, v)?,
            "connect-timeout" => o.connect_timeout = secs(name, v)?,
            "duration" => o.duration = secs(name, v)?,
            "warmup" => o.warmup = secs(name, v)?,
            "json" => o.json = Some(v.into()),
            "quiet" => o.quiet = true,
            "header" => {
                if !v.contains(':') {
                    return Err(CliError::Usage(format!(
                        "--header {v:?}: expected 'Name: value'"
                    )));
                }
                o.headers.push(v.into())
            }
            "conns" => o.conns = pos(name, v)?,
            "depth" => o.depth = pos(name, v)?,
            "frame" => o.frame = v.into(),
            "protocol" => {
                o.protocol = Proto::from_name(v).ok_or_else(|| {
                    CliError::Usage(format!(
                        "--protocol {v:?}: expected pygw, socketio or centrifuge"
                    ))
                })?
            }
            "expect" => o.expect = v.into(),
            "subscribers" => o.subscribers = pos(name, v)?,
            "sub-urls" => {
                o.sub_urls = v
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            }
            "channel" => o.channel = v.into(),
            "messages" => o.messages = pos(name, v)?,
            "via" => {
                o.via = match v {
                    "ws" => Via::Ws,
                    "http" => Via::Http,
                    _ => return Err(CliError::Usage("--via must be ws or http".into())),
                }
            }
            "pub-url" => o.pub_url = Some(v.into()),
            "api-key" => o.api_key = Some(v.into()),
            "pub-token" => o.pub_token = Some(v.into()),
            "pub-sid" => o.pub_sid = Some(v.into()),
            "window" => o.window = pos(name, v)?,
            "rate" => o.rate = secs(name, v)?,
            "payload-bytes" => o.payload_bytes = num(name, v)?,
            "latency-sample" => o.latency_sample = pos(name, v)?,
            "timeout" => o.timeout = secs(name, v)?,
            "pid" => o.pid = Some(pos(name, v)?),
            "method" => o.method = v.to_ascii_uppercase(),
            "body" => o.body = Some(v.into()),
            "requests" => o.requests = Some(pos(name, v)?),
            "listen" => o.listen = v.into(),
            "ping-interval" => o.ping_interval = secs(name, v)?,
            "pong-timeout" => o.pong_timeout = secs(name, v)?,
            "fragment" => o.fragment = true,
            "frames" => o.frames = pos(name, v)?,
            _ => unreachable!("option table and match disagree: {name}"),
        }
    }
    finish(o)
}

fn finish(mut o: Opts) -> Result<Opts, CliError> {
    let usage = |m: String| Err(CliError::Usage(m));
    if !o.was_given("frame") {
        o.frame = o.protocol.default_rtt_frame().into();
    }
    if o.creds.is_some() && (o.token.is_some() || o.sid.is_some()) {
        return usage("--creds and --token/--sid are mutually exclusive".into());
    }
    match o.mode {
        Mode::Http => {
            if !o.was_given("url") {
                return usage("http mode needs --url http://...".into());
            }
            if !o.url.starts_with("http://") {
                return usage("http mode needs an http:// --url".into());
            }
            if o.body.is_some() && !o.was_given("method") {
                o.method = "POST".into();
            }
            if o.requests.is_some() && !o.was_given("duration") {
                o.duration = 600.0;
            }
        }
        Mode::WsRtt | Mode::Hold | Mode::Fanout if !o.url.starts_with("ws://") => {
            return usage(format!("{} needs a ws:// --url", o.mode.name()));
        }
        _ => {}
    }
    if o.mode == Mode::Fanout {
        for u in &o.sub_urls {
            if !u.starts_with("ws://") {
                return usage(format!("--sub-urls: {u:?} is not a ws:// URL"));
            }
        }
        match (o.via, &o.pub_url) {
            (Via::Ws, Some(u)) if !u.starts_with("ws://") => {
                return usage("--via ws needs a ws:// --pub-url".into())
            }
            (Via::Http, Some(u)) if !u.starts_with("http://") => {
                return usage("--via http needs an http:// --pub-url".into())
            }
            (Via::Http, None) => {
                // same host as the (first) subscriber URL
                let first = o.sub_urls.first().unwrap_or(&o.url).clone();
                let u = crate::url::parse(&first).map_err(CliError::Usage)?;
                o.pub_url = Some(format!("http://{}/api/publish", u.host_header));
            }
            _ => {}
        }
    }
    for u in std::iter::once(&o.url)
        .chain(o.sub_urls.iter())
        .chain(o.pub_url.iter())
    {
        if o.mode != Mode::BenchParse && o.mode != Mode::MockServer {
            crate::url::parse(u).map_err(CliError::Usage)?;
        }
    }
    Ok(o)
}

fn redact_header(h: &str) -> String {
    match h.split_once(':') {
        Some((n, _))
            if ["authorization", "x-api-key", "cookie"]
                .contains(&n.trim().to_ascii_lowercase().as_str()) =>
        {
            format!("{n}: <redacted>")
        }
        _ => h.to_string(),
    }
}

impl Opts {
    /// The options that apply to this mode, secrets redacted.
    pub fn to_json(&self) -> Value {
        let red = |o: &Option<String>| o.as_ref().map(|_| "<redacted>");
        let mut m = Map::new();
        let mut put = |k: &str, v: Value, bits: u8| {
            if bits & self.mode.bit() != 0 {
                m.insert(k.to_string(), v);
            }
        };
        put("mode", json!(self.mode.name()), ALL);
        put("url", json!(self.url), NET);
        put("creds", json!(self.creds), NET);
        put("token", json!(red(&self.token)), NET);
        put("sid", json!(self.sid), NET);
        put(
            "source_ips",
            json!(self
                .source_ips
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()),
            NET,
        );
        put("threads", json!(self.threads), NET);
        put("connect_concurrency", json!(self.connect_concurrency), NET);
        put("connect_timeout", json!(self.connect_timeout), NET);
        put("duration", json!(self.duration), RTT | HOLD | HTTP | MOCK);
        put("warmup", json!(self.warmup), RTT | HTTP);
        put("protocol", json!(self.protocol.name()), RTT | FAN | HOLD);
        put(
            "headers",
            json!(self
                .headers
                .iter()
                .map(|h| redact_header(h))
                .collect::<Vec<_>>()),
            NET,
        );
        put("conns", json!(self.conns), RTT | HOLD | HTTP);
        put("depth", json!(self.depth), RTT);
        put("frame", json!(self.frame), RTT);
        put("expect", json!(self.expect), RTT);
        put("subscribers", json!(self.subscribers), FAN);
        put("sub_urls", json!(self.sub_urls), FAN);
        put("channel", json!(self.channel), FAN);
        put("messages", json!(self.messages), FAN);
        put(
            "via",
            json!(match self.via {
                Via::Ws => "ws",
                Via::Http => "http",
            }),
            FAN,
        );
        put("pub_url", json!(self.pub_url), FAN);
        put("api_key", json!(red(&self.api_key)), FAN | MOCK);
        put("pub_token", json!(red(&self.pub_token)), FAN);
        put("pub_sid", json!(self.pub_sid), FAN);
        put("window", json!(self.window), FAN);
        put("rate", json!(self.rate), FAN);
        put("payload_bytes", json!(self.payload_bytes), FAN | BENCH);
        put("latency_sample", json!(self.latency_sample), FAN);
        put("timeout", json!(self.timeout), FAN);
        put("pid", json!(self.pid), HOLD);
        put("method", json!(self.method), HTTP);
        put("body", json!(self.body), HTTP);
        put("requests", json!(self.requests), HTTP);
        put("listen", json!(self.listen), MOCK);
        put("ping_interval", json!(self.ping_interval), MOCK);
        put("pong_timeout", json!(self.pong_timeout), MOCK);
        put("fragment", json!(self.fragment), MOCK);
        put("frames", json!(self.frames), BENCH);
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Opts, CliError> {
        parse(&s.split_whitespace().collect::<Vec<_>>())
    }

    #[test]
    fn defaults_per_mode() {
        let o = p("ws-rtt").unwrap();
        assert_eq!(o.mode, Mode::WsRtt);
        assert_eq!((o.conns, o.depth, o.duration), (10, 1, 10.0));
        assert_eq!(o.frame, DEFAULT_FRAME);
        assert_eq!(o.expect, "pong");
        assert_eq!(o.url, DEFAULT_WS_URL);
        let o = p("hold").unwrap();
        assert_eq!((o.conns, o.duration), (1000, 30.0));
        let o = p("fanout").unwrap();
        assert_eq!(
            (o.subscribers, o.messages, o.window, o.via),
            (100, 1000, 64, Via::Ws)
        );
        assert_eq!(o.pub_url, None);
    }

    #[test]
    fn values_both_forms() {
        let o =
            p("ws-rtt --conns 5 --depth=8 --duration 0.5 --threads=2 --quiet --json /tmp/x.json")
                .unwrap();
        assert_eq!((o.conns, o.depth, o.duration, o.threads), (5, 8, 0.5, 2));
        assert!(o.quiet);
        assert_eq!(o.json, Some(PathBuf::from("/tmp/x.json")));
        assert!(o.was_given("depth"));
        assert!(!o.was_given("expect"));
    }

    #[test]
    fn frame_with_spaces_and_equals() {
        let o = parse(&[
            "ws-rtt",
            "--frame",
            r#"{"type": "ping", "id": {id}}"#,
            "--expect=a=b",
        ])
        .unwrap();
        assert_eq!(o.frame, r#"{"type": "ping", "id": {id}}"#);
        assert_eq!(o.expect, "a=b");
    }

    #[test]
    fn repeatable_headers_and_http_defaults() {
        let o = parse(&[
            "http",
            "--url",
            "http://127.0.0.1:9/api/publish",
            "--header",
            "X-API-Key: k",
            "--header=X-Other: {id}",
            "--body",
            "{}",
            "--requests",
            "100",
        ])
        .unwrap();
        assert_eq!(o.headers, vec!["X-API-Key: k", "X-Other: {id}"]);
        assert_eq!(o.method, "POST");
        assert_eq!(o.requests, Some(100));
        assert_eq!(o.duration, 600.0);
        let j = o.to_json();
        assert_eq!(j["headers"][0], "X-API-Key: <redacted>");
        assert!(j.get("depth").is_none());
    }

    #[test]
    fn fanout_http_pub_url_default() {
        let o = p("fanout --via http --url ws://10.1.2.3:8080/ws/connect --api-key k").unwrap();
        assert_eq!(
            o.pub_url.as_deref(),
            Some("http://10.1.2.3:8080/api/publish")
        );
        assert_eq!(o.to_json()["api_key"], "<redacted>");
        let o = p("fanout --sub-urls ws://a:1/x,ws://b:2/y --rate 500 --payload-bytes 0").unwrap();
        assert_eq!(o.sub_urls.len(), 2);
        assert_eq!(o.rate, 500.0);
        assert_eq!(o.payload_bytes, 0);
    }

    #[test]
    fn protocol_option() {
        let o = p("ws-rtt --protocol socketio").unwrap();
        assert_eq!(o.protocol, Proto::SocketIo);
        assert_eq!(o.frame, r#"42{id}["ping"]"#);
        assert_eq!(o.to_json()["protocol"], "socketio");
        let o = p("fanout --protocol centrifuge").unwrap();
        assert_eq!(o.protocol, Proto::Centrifuge);
        let o = parse(&["ws-rtt", "--protocol", "centrifuge", "--frame", "x{id}"]).unwrap();
        assert_eq!(o.frame, "x{id}");
        assert_eq!(p("hold").unwrap().protocol, Proto::Pygw);
        assert!(matches!(p("hold --protocol mqtt"), Err(CliError::Usage(_))));
        assert!(matches!(
            p("http --url http://x/ --protocol socketio"),
            Err(CliError::Usage(_))
        ));
    }

    #[test]
    fn source_ips_and_pid() {
        let o = p("hold --source-ips 127.0.0.1-127.0.0.4 --pid 1234 --conns 20000").unwrap();
        assert_eq!(o.source_ips.len(), 4);
        assert_eq!(o.pid, Some(1234));
        assert_eq!(o.conns, 20000);
    }

    #[test]
    fn errors() {
        assert!(matches!(p(""), Err(CliError::Usage(_))));
        assert!(matches!(p("--help"), Err(CliError::Help(_))));
        assert!(matches!(p("ws-rtt -h"), Err(CliError::Help(_))));
        assert!(matches!(p("nope"), Err(CliError::Usage(_))));
        assert!(matches!(p("ws-rtt --bogus 1"), Err(CliError::Usage(_))));
        assert!(matches!(p("ws-rtt --conns"), Err(CliError::Usage(_))));
        assert!(matches!(p("ws-rtt --conns x"), Err(CliError::Usage(_))));
        assert!(matches!(p("ws-rtt --conns 0"), Err(CliError::Usage(_))));
        assert!(matches!(p("ws-rtt --duration -1"), Err(CliError::Usage(_))));
        assert!(matches!(p("hold --depth 3"), Err(CliError::Usage(_))));
        assert!(matches!(p("ws-rtt --quiet=1"), Err(CliError::Usage(_))));
        assert!(matches!(
            p("ws-rtt --url http://x/"),
            Err(CliError::Usage(_))
        ));
        assert!(matches!(
            p("ws-rtt --url wss://x/"),
            Err(CliError::Usage(_))
        ));
        assert!(matches!(p("http"), Err(CliError::Usage(_))));
        assert!(matches!(p("fanout --via carrier"), Err(CliError::Usage(_))));
        assert!(matches!(
            p("fanout --via http --pub-url ws://x/"),
            Err(CliError::Usage(_))
        ));
        assert!(matches!(
            p("ws-rtt --creds f --token t"),
            Err(CliError::Usage(_))
        ));
        assert!(matches!(
            p("ws-rtt --header nocolon"),
            Err(CliError::Usage(_))
        ));
        assert!(matches!(p("ws-rtt stray"), Err(CliError::Usage(_))));
    }
}
