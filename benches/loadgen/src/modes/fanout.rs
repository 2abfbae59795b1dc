//! `fanout`: `--subscribers` on one channel, one publisher (a WebSocket, or a
//! window of keep-alive HTTP requests), publish->deliver latency from the
//! publish timestamp embedded in each message.

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::Semaphore;

use super::{connect, idle, idle_until_stop, load_creds, per_thread, run_conns, seed, WsSetup};
use crate::cli::{Opts, Via};
use crate::clock;
use crate::creds::Creds;
use crate::histogram::Histogram;
use crate::http::HttpConn;
use crate::proto::{Msg, Proto, PUBLISH_ID_BASE, SUBSCRIBE_ID};
use crate::report::{self, emit, lat_json, lat_line, Counts, Samples, Table};
use crate::runner::{join_all, spawn_workers, wait_until, Local, Phase, Phases, Progress};
use crate::scan;
use crate::sys;
use crate::template::{Ctx, Template};
use crate::util::{digits, json_escape, push_u64, Rng};
use crate::ws::{classify_answering, ConnError, Event, PingCounts, Want, WsConn, NO_REPLY};

struct HttpPub {
    addr: SocketAddr,
    host_header: String,
    path: Vec<u8>,
    /// Extra header lines (`--header`, `X-API-Key`), each ending in CRLF.
    headers: Vec<u8>,
}

struct Cfg {
    subs: WsSetup,
    ws_pub: Option<WsSetup>,
    http_pub: Option<HttpPub>,
    channel_json: String,
    proto: Proto,
    subscribers: usize,
    messages: u64,
    window: usize,
    rate: f64,
    payload_bytes: usize,
    sample: u64,
    threads: usize,
    cc: usize,
    sources: Vec<IpAddr>,
}

#[derive(Default)]
struct Shared {
    ready: AtomicU64,
    failed: AtomicU64,
    closed: AtomicU64,
    /// Unique deliveries so far (all subscribers).
    delivered: AtomicU64,
    pub_ready: AtomicU64,
    pub_failed: AtomicU64,
    /// The WebSocket publisher's connection failed after it was ready.
    pub_lost: AtomicU64,
    next_seq: AtomicU64,
    acked: AtomicU64,
    pub_errors: AtomicU64,
    first_publish_ns: AtomicU64,
    last_ack_ns: AtomicU64,
    pub_start_ns: AtomicU64,
    server_deliveries: AtomicU64,
}

#[derive(Default)]
struct Stats {
    lat: Histogram,
    ack_lat: Histogram,
    connect_lat: Histogram,
    received: u64,
    unique: u64,
    duplicates: u64,
    reordered: u64,
    gaps: u64,
    unparsable: u64,
    server_errors: u64,
    first_delivery_ns: u64,
    last_delivery_ns: u64,
    pings: PingCounts,
    connect_fail: Counts,
    closes: Counts,
    pub_fail: Counts,
    samples: Samples,
}

impl Stats {
    fn merge(&mut self, o: &Stats) {
        self.lat.merge(&o.lat);
        self.ack_lat.merge(&o.ack_lat);
        self.connect_lat.merge(&o.connect_lat);
        self.received += o.received;
        self.unique += o.unique;
        self.duplicates += o.duplicates;
        self.reordered += o.reordered;
        self.gaps += o.gaps;
        self.unparsable += o.unparsable;
        self.server_errors += o.server_errors;
        if o.first_delivery_ns != 0
            && (self.first_delivery_ns == 0 || o.first_delivery_ns < self.first_delivery_ns)
        {
            self.first_delivery_ns = o.first_delivery_ns;
        }
        self.last_delivery_ns = self.last_delivery_ns.max(o.last_delivery_ns);
        self.pings.text += o.pings.text;
        self.pings.proto += o.pings.proto;
        self.connect_fail.merge(&o.connect_fail);
        self.closes.merge(&o.closes);
        self.pub_fail.merge(&o.pub_fail);
        self.samples.merge(&o.samples);
    }
}

/// With the publisher or a subscriber gone, the run ends after this long without a delivery.
const STALL: Duration = Duration::from_secs(2);

const DATA_OVERHEAD: usize = r#"{"t":,"s":,"p":""}"#.len();

/// Append `{"t":T,"s":S,"p":"xxx"}` padded so that it is `payload_bytes` long
/// (when that is larger than the unpadded object).
pub fn push_data(out: &mut Vec<u8>, t: u64, s: u64, payload_bytes: usize, pad: &[u8]) {
    let fixed = DATA_OVERHEAD + digits(t) + digits(s);
    let n = payload_bytes.saturating_sub(fixed).min(pad.len());
    out.extend_from_slice(b"{\"t\":");
    push_u64(out, t);
    out.extend_from_slice(b",\"s\":");
    push_u64(out, s);
    out.extend_from_slice(b",\"p\":\"");
    out.extend_from_slice(&pad[..n]);
    out.extend_from_slice(b"\"}");
}

/// Per-connection delivery bookkeeping; `observe` is the hot path.
///
/// A sequence number at or below the highest seen so far is a duplicate only if it was already
/// seen (`seen` bitset); otherwise it is a late, reordered delivery and still unique. Order is
/// not guaranteed when several publishers race (`--via http` with `--window` > 1).
pub struct SeqTrack {
    pub last: i64,
    pub received: u64,
    pub unique: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub gaps: u64,
    seen: Vec<u64>,
    pub unparsable: u64,
    sample_every: u64,
    sample_left: u64,
}

impl SeqTrack {
    pub fn new(sample_every: u64) -> SeqTrack {
        SeqTrack {
            last: -1,
            received: 0,
            unique: 0,
            duplicates: 0,
            reordered: 0,
            gaps: 0,
            seen: Vec::new(),
            unparsable: 0,
            sample_every: sample_every.max(1),
            sample_left: 1,
        }
    }

    /// Account one `message` frame. Returns whether it was new (not a
    /// duplicate) and the embedded publish time when this delivery is sampled.
    #[inline]
    pub fn observe(&mut self, p: &[u8]) -> (bool, Option<u64>) {
        self.received += 1;
        self.sample_left -= 1;
        let sampled = self.sample_left == 0;
        if sampled {
            self.sample_left = self.sample_every;
        }
        let (t, s) = scan::ts_fields(p, sampled);
        let t = if sampled { t } else { None };
        match s {
            Some(s) => {
                let new = self.mark(s);
                let s = s as i64;
                if s > self.last {
                    self.gaps += (s - self.last - 1) as u64;
                    self.last = s;
                    self.unique += 1;
                    (true, t)
                } else if new {
                    self.reordered += 1;
                    self.unique += 1;
                    (true, t)
                } else {
                    self.duplicates += 1;
                    (false, t)
                }
            }
            None => {
                self.unparsable += 1;
                (false, t)
            }
        }
    }

    /// Set the bit of `s`; true if it was not set before.
    #[inline]
    fn mark(&mut self, s: u64) -> bool {
        let (word, bit) = ((s / 64) as usize, 1u64 << (s % 64));
        if word >= self.seen.len() {
            self.seen.resize(word + 1, 0);
        }
        let new = self.seen[word] & bit == 0;
        self.seen[word] |= bit;
        new
    }
}

pub fn run(o: &Opts) -> Result<i32, String> {
    let creds = load_creds(o)?;
    let sub_urls = if o.sub_urls.is_empty() {
        vec![o.url.clone()]
    } else {
        o.sub_urls.clone()
    };
    let subs = WsSetup::new(&sub_urls, o, creds.clone(), &[], 16384)?;
    let (ws_pub, http_pub) = match o.via {
        Via::Ws => {
            let url = o.pub_url.clone().unwrap_or_else(|| sub_urls[0].clone());
            let pub_creds = if o.pub_token.is_some() || o.pub_sid.is_some() {
                Creds::single(o.pub_token.clone(), o.pub_sid.clone())
            } else {
                creds
            };
            let mut s = WsSetup::new(&[url], o, pub_creds, &[], 16384)?;
            if o.pub_token.is_none() && o.pub_sid.is_none() {
                // the next round-robin credential after the subscribers'
                s.index_base = o.subscribers;
            }
            (Some(s), None)
        }
        Via::Http => {
            let url = crate::url::parse(o.pub_url.as_deref().expect("pub_url default set by cli"))?;
            let addr = url.resolve()?;
            let (token, sid, username) = creds.for_conn(0);
            let ctx = Ctx {
                token: &token,
                sid: &sid,
                username: &username,
                conn: 0,
            };
            let mut path = Vec::new();
            Template::parse(&url.path).render(&ctx, 0, true, &mut path);
            let mut headers = Vec::new();
            if let Some(k) = &o.api_key {
                headers.extend_from_slice(format!("X-API-Key: {k}\r\n").as_bytes());
            }
            for h in &o.headers {
                Template::parse(h).render(&ctx, 0, false, &mut headers);
                headers.extend_from_slice(b"\r\n");
            }
            (
                None,
                Some(HttpPub {
                    addr,
                    host_header: url.host_header,
                    path,
                    headers,
                }),
            )
        }
    };
    let n_pubs = if ws_pub.is_some() { 1 } else { o.window as u64 };
    let cfg = Arc::new(Cfg {
        subs,
        ws_pub,
        http_pub,
        channel_json: json_escape(&o.channel),
        proto: o.protocol,
        subscribers: o.subscribers,
        messages: o.messages,
        window: o.window,
        rate: o.rate,
        payload_bytes: o.payload_bytes,
        sample: o.latency_sample,
        threads: o.threads,
        cc: per_thread(o.connect_concurrency, o.threads),
        sources: o.source_ips.clone(),
    });
    let usage0 = sys::usage();
    let t_start = Instant::now();
    let phases = Phases::new();
    let shared = Arc::new(Shared {
        first_publish_ns: AtomicU64::new(u64::MAX),
        ..Shared::default()
    });
    let (c2, s2) = (cfg.clone(), shared.clone());
    let handles = spawn_workers(o.threads, &phases, move |ti, local| {
        worker(ti, local, c2.clone(), s2.clone())
    });
    let mut prog = Progress::new(o.quiet);
    let subscribers = o.subscribers as u64;
    wait_until(
        None,
        || {
            shared.ready.load(Relaxed) + shared.failed.load(Relaxed) >= subscribers
                && shared.pub_ready.load(Relaxed) + shared.pub_failed.load(Relaxed) >= n_pubs
        },
        || {
            prog.tick(|| {
                format!(
                    "subscribing: {} ready, {} failed / {subscribers}",
                    shared.ready.load(Relaxed),
                    shared.failed.load(Relaxed)
                )
            })
        },
    );
    let setup_wall = t_start.elapsed();
    let ready = shared.ready.load(Relaxed);
    let pub_ok = shared.pub_ready.load(Relaxed) > 0;
    prog.say(&format!(
        "{ready} subscribed, {} failed; publisher {}",
        shared.failed.load(Relaxed),
        if pub_ok { "ready" } else { "FAILED" }
    ));
    let expected = o.messages * ready;
    let mut timed_out = false;
    let (mut u_run0, mut u_run1, mut run_wall) = (usage0, usage0, Duration::ZERO);
    if ready > 0 && pub_ok {
        u_run0 = sys::usage();
        let t0 = Instant::now();
        shared.pub_start_ns.store(clock::now_ns(), Relaxed);
        phases.set(Phase::Run);
        let deadline = Instant::now() + Duration::from_secs_f64(o.timeout);
        let (mut last_d, mut last_change) = (0u64, Instant::now());
        let done = wait_until(
            Some(deadline),
            || {
                let d = shared.delivered.load(Relaxed);
                if d >= expected {
                    return true;
                }
                if d != last_d {
                    (last_d, last_change) = (d, Instant::now());
                }
                // Nothing more can arrive: the publisher or some subscribers are gone and
                // deliveries stopped. The losses are reported, not waited for.
                let gone = shared.pub_lost.load(Relaxed) + shared.closed.load(Relaxed) > 0;
                if gone && last_change.elapsed() >= STALL {
                    return true;
                }
                let acked = shared.acked.load(Relaxed);
                let pub_done = acked + shared.pub_errors.load(Relaxed) >= o.messages;
                pub_done && d >= acked * ready
            },
            || {
                prog.tick(|| {
                    format!(
                        "published {} acked {}, delivered {} / {expected}",
                        shared.next_seq.load(Relaxed).min(o.messages),
                        shared.acked.load(Relaxed),
                        shared.delivered.load(Relaxed)
                    )
                })
            },
        );
        timed_out = !done;
        run_wall = t0.elapsed();
        u_run1 = sys::usage();
    }
    phases.set(Phase::Stop);
    let results = join_all(handles);
    let usage1 = sys::usage();
    let mut st = Stats::default();
    for r in &results {
        st.merge(r);
    }
    let first_pub = shared.first_publish_ns.load(Relaxed);
    let acked = shared.acked.load(Relaxed);
    let last_ack = shared.last_ack_ns.load(Relaxed);
    let span = |end: u64| {
        if first_pub != u64::MAX && end > first_pub {
            (end - first_pub) as f64 / 1e9
        } else {
            0.0
        }
    };
    let deliver_span = span(st.last_delivery_ns);
    let pub_span = span(last_ack);
    let per_s = |n: u64, s: f64| {
        if s > 0.0 {
            report::round1(n as f64 / s)
        } else {
            0.0
        }
    };
    let lost = expected.saturating_sub(st.unique);
    let pub_errors = shared.pub_errors.load(Relaxed);
    let errors = st.connect_fail.total()
        + st.closes.total()
        + st.server_errors
        + pub_errors
        + shared.pub_failed.load(Relaxed)
        + shared.pub_lost.load(Relaxed)
        + st.unparsable;
    let result = json!({
        "mode": "fanout",
        "subscribers": {"requested": subscribers, "ready": ready, "failed": shared.failed.load(Relaxed),
                        "setup_wall_s": report::round3(setup_wall.as_secs_f64()),
                        "connect_latency": lat_json(&st.connect_lat)},
        "publisher": {"via": match o.via { Via::Ws => "ws", Via::Http => "http" }, "ready": pub_ok,
                      "connection_lost": shared.pub_lost.load(Relaxed) > 0,
                      "published_ok": acked, "publish_errors": pub_errors,
                      "publishes_per_s": per_s(acked, pub_span), "publish_span_s": report::round3(pub_span),
                      "ack_latency": lat_json(&st.ack_lat),
                      "server_reported_deliveries": shared.server_deliveries.load(Relaxed),
                      "failures": st.pub_fail.to_json()},
        "deliveries": {"expected": expected, "received": st.received, "unique": st.unique,
                       "lost": lost, "duplicates": st.duplicates, "reordered": st.reordered,
                       "gaps": st.gaps,
                       "unparsable": st.unparsable,
                       "per_s": per_s(st.unique, deliver_span), "span_s": report::round3(deliver_span)},
        "latency": lat_json(&st.lat),
        "timed_out": timed_out,
        "errors": errors,
        "connect_failures": st.connect_fail.to_json(),
        "unexpected_closes": st.closes.to_json(),
        "server_error_frames": st.server_errors,
        "server_pings_answered": {"text": st.pings.text, "protocol": st.pings.proto},
        "error_samples": st.samples.0,
        "generator": report::generator_json(usage0, usage1, t_start.elapsed(), o.threads),
        "generator_during_run": report::generator_json(u_run0, u_run1, run_wall, o.threads),
    });
    let mut t = Table::default();
    t.row(
        "subscribers",
        format!(
            "{ready}/{subscribers} ready, failures {}",
            st.connect_fail.summary()
        ),
    );
    t.row(
        "publishes",
        format!(
            "{acked} ok, {pub_errors} errors, {:.0}/s over {:.3}s",
            per_s(acked, pub_span),
            pub_span
        ),
    );
    t.row(
        "deliveries",
        format!(
            "{} unique / {expected} expected ({:.0}/s over {:.3}s); lost {lost}, duplicates {}, gaps {}",
            st.unique,
            per_s(st.unique, deliver_span),
            deliver_span,
            st.duplicates,
            st.gaps
        ),
    );
    t.row("latency", lat_line(&st.lat));
    t.row("publish ack latency", lat_line(&st.ack_lat));
    t.row("unexpected closes", st.closes.summary());
    t.row("timed out", format!("{timed_out}"));
    t.row(
        "generator cpu",
        super::rtt::cpu_row(&u_run0, &u_run1, run_wall.as_secs_f64()),
    );
    for s in &st.samples.0 {
        t.row("error sample", s.clone());
    }
    emit(o, result, &t).map_err(|e| e.to_string())?;
    Ok(if ready == 0 || !pub_ok { 1 } else { 0 })
}

async fn worker(ti: usize, local: Rc<Local>, cfg: Arc<Cfg>, shared: Arc<Shared>) -> Stats {
    let stats = Rc::new(RefCell::new(Stats::default()));
    let mut publishers = Vec::new();
    if ti == 0 && cfg.ws_pub.is_some() {
        let (l, c, s, st) = (local.clone(), cfg.clone(), shared.clone(), stats.clone());
        publishers.push(tokio::task::spawn_local(async move {
            ws_publisher(l, c, s, st).await
        }));
    }
    if cfg.http_pub.is_some() {
        for j in (ti..cfg.window).step_by(cfg.threads) {
            let (l, c, s, st) = (local.clone(), cfg.clone(), shared.clone(), stats.clone());
            publishers.push(tokio::task::spawn_local(async move {
                http_publisher(j, l, c, s, st).await
            }));
        }
    }
    let (threads, subscribers, cc, st) = (cfg.threads, cfg.subscribers, cfg.cc, stats.clone());
    run_conns(
        ti,
        threads,
        subscribers,
        cc,
        stats,
        publishers,
        move |i, sem| {
            subscriber(
                i,
                local.clone(),
                cfg.clone(),
                shared.clone(),
                st.clone(),
                sem,
            )
        },
    )
    .await
}

fn record_close(stats: &Rc<RefCell<Stats>>, shared: &Shared, e: &ConnError) {
    let mut st = stats.borrow_mut();
    st.closes.add(e.kind());
    st.samples.add(|| e.message());
    shared.closed.fetch_add(1, Relaxed);
}

async fn subscriber(
    i: usize,
    local: Rc<Local>,
    cfg: Arc<Cfg>,
    shared: Arc<Shared>,
    stats: Rc<RefCell<Stats>>,
    sem: Rc<Semaphore>,
) {
    let plan = cfg.subs.plan(i);
    let mut rng = Rng::new(seed(i));
    let mut pings = PingCounts::default();
    let permit = sem.acquire().await.expect("semaphore");
    let t0 = Instant::now();
    let r = async {
        let mut c = connect(
            &plan,
            cfg.subs.connect_timeout,
            &local,
            &mut rng,
            &mut pings,
        )
        .await?;
        let mut f = Vec::with_capacity(64 + cfg.channel_json.len());
        cfg.proto.subscribe_frame(&cfg.channel_json, &mut f);
        c.wr.text(&f);
        c.flush().await.map_err(ConnError::Io)?;
        let want = Want::Reply(Proto::SUBSCRIBED, SUBSCRIBE_ID);
        match local
            .or_stop(tokio::time::timeout(
                cfg.subs.connect_timeout,
                crate::ws::wait_for(&mut c, cfg.proto, want, &mut pings),
            ))
            .await
        {
            Some(Ok(Ok(()))) => Ok(c),
            Some(Ok(Err(e))) => Err(e),
            _ => Err(ConnError::Timeout),
        }
    }
    .await;
    drop(permit);
    let mut conn = match r {
        Ok(c) => c,
        Err(e) => {
            let mut st = stats.borrow_mut();
            st.connect_fail.add(e.kind());
            st.samples.add(|| e.message());
            shared.failed.fetch_add(1, Relaxed);
            return;
        }
    };
    stats
        .borrow_mut()
        .connect_lat
        .record(t0.elapsed().as_nanos() as u64);
    shared.ready.fetch_add(1, Relaxed);
    let mut track = SeqTrack::new(cfg.sample);
    let end = receive_loop(
        &mut conn, cfg.proto, &local, &stats, &shared, &mut track, &mut pings,
    )
    .await;
    {
        let mut st = stats.borrow_mut();
        st.received += track.received;
        st.unique += track.unique;
        st.duplicates += track.duplicates;
        st.reordered += track.reordered;
        st.gaps += track.gaps;
        st.unparsable += track.unparsable;
        st.pings.text += pings.text;
        st.pings.proto += pings.proto;
    }
    match end {
        Ok(()) => conn.close_now(1000),
        Err(e) => record_close(&stats, &shared, &e),
    }
}

async fn receive_loop(
    conn: &mut WsConn,
    proto: Proto,
    local: &Rc<Local>,
    stats: &Rc<RefCell<Stats>>,
    shared: &Shared,
    track: &mut SeqTrack,
    pings: &mut PingCounts,
) -> Result<(), ConnError> {
    loop {
        // frames already buffered (e.g. right behind the `subscribed` reply) first
        let now_ns = clock::now_ns();
        let mut fresh = 0u64;
        let mut closed = None;
        {
            let mut st = stats.borrow_mut();
            loop {
                let ev = match conn.rd.next_event() {
                    Ok(Some(ev)) => ev,
                    Ok(None) => break,
                    Err(e) => {
                        closed = Some(ConnError::Proto(e));
                        break;
                    }
                };
                match ev {
                    Event::Text(p) => {
                        for m in proto.messages(p) {
                            match classify_answering(proto, m, NO_REPLY, &mut conn.wr, pings) {
                                Msg::Delivery => {
                                    let (new, ts) = track.observe(m);
                                    if new {
                                        fresh += 1;
                                    }
                                    if let Some(ts) = ts {
                                        st.lat.record(now_ns.saturating_sub(ts));
                                    }
                                }
                                Msg::Error(..) => st.server_errors += 1,
                                _ => {}
                            }
                        }
                    }
                    Event::Ping(p) => {
                        conn.wr.pong(p);
                        pings.proto += 1;
                    }
                    Event::Close(code, reason) => {
                        let r = String::from_utf8_lossy(reason).into_owned();
                        conn.wr.close(code, b"");
                        closed = Some(ConnError::Closed(code, r));
                        break;
                    }
                    Event::Binary(_) | Event::Pong(_) => {}
                }
            }
            if fresh > 0 {
                if st.first_delivery_ns == 0 {
                    st.first_delivery_ns = now_ns;
                }
                if now_ns > st.last_delivery_ns {
                    st.last_delivery_ns = now_ns;
                }
            }
        }
        if fresh > 0 {
            shared.delivered.fetch_add(fresh, Relaxed);
        }
        if let Some(e) = closed {
            let _ = conn.flush().await;
            return Err(e);
        }
        conn.flush().await.map_err(ConnError::Io)?;
        match local.or_stop(conn.rd.read_from(&mut conn.stream)).await {
            None => return Ok(()),
            Some(Ok(0)) => return Err(ConnError::Eof),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(ConnError::Io(e)),
        }
    }
}

/// Nanosecond (shared epoch) at which publish `seq` is due under `--rate`.
fn due_ns(start_ns: u64, seq: u64, rate: f64) -> u64 {
    start_ns + (seq as f64 * 1e9 / rate) as u64
}

async fn ws_publisher(
    local: Rc<Local>,
    cfg: Arc<Cfg>,
    shared: Arc<Shared>,
    stats: Rc<RefCell<Stats>>,
) {
    let setup = cfg.ws_pub.as_ref().expect("ws publisher");
    let plan = setup.plan(0);
    let mut rng = Rng::new(seed(usize::MAX));
    let mut pings = PingCounts::default();
    let mut conn = match connect(&plan, setup.connect_timeout, &local, &mut rng, &mut pings).await {
        Ok(c) => c,
        Err(e) => {
            let mut st = stats.borrow_mut();
            st.pub_fail.add(e.kind());
            st.samples.add(|| format!("publisher: {}", e.message()));
            shared.pub_failed.fetch_add(1, Relaxed);
            return;
        }
    };
    shared.pub_ready.fetch_add(1, Relaxed);
    let mut r = idle(&mut conn, &local, Phase::Setup, cfg.proto, &mut pings).await;
    if r.is_ok() && !local.stopped() {
        r = publish_loop(&mut conn, &local, &cfg, &shared, &stats, &mut pings).await;
        if r.is_ok() {
            r = idle_until_stop(&mut conn, &local, cfg.proto, &mut pings).await;
        }
    }
    let mut st = stats.borrow_mut();
    st.pings.text += pings.text;
    st.pings.proto += pings.proto;
    match r {
        Ok(()) => conn.close_now(1000),
        Err(e) => {
            shared.pub_lost.fetch_add(1, Relaxed);
            st.pub_fail.add(e.kind());
            st.samples.add(|| format!("publisher: {}", e.message()));
        }
    }
}

async fn publish_loop(
    conn: &mut WsConn,
    local: &Rc<Local>,
    cfg: &Cfg,
    shared: &Shared,
    stats: &Rc<RefCell<Stats>>,
    pings: &mut PingCounts,
) -> Result<(), ConnError> {
    let pad = vec![b'x'; cfg.payload_bytes];
    let start_ns = shared.pub_start_ns.load(Relaxed);
    let window = cfg.window as u64;
    let mut sent_at = vec![0u64; cfg.window.next_power_of_two()];
    let mask = sent_at.len() as u64 - 1;
    let (mut seq, mut inflight, mut done) = (0u64, 0u64, 0u64);
    let mut frame = Vec::with_capacity(cfg.payload_bytes + 128);
    loop {
        let mut next_due = None;
        while inflight < window && seq < cfg.messages {
            let t = clock::now_ns();
            if cfg.rate > 0.0 {
                let due = due_ns(start_ns, seq, cfg.rate);
                if due > t {
                    next_due = Some(due);
                    break;
                }
            }
            if seq == 0 {
                shared.first_publish_ns.fetch_min(t, Relaxed);
            }
            frame.clear();
            let id = seq + PUBLISH_ID_BASE;
            cfg.proto
                .publish_frame(&cfg.channel_json, id, &mut frame, |out| {
                    push_data(out, t, seq, cfg.payload_bytes, &pad)
                });
            conn.wr.text(&frame);
            sent_at[(seq & mask) as usize] = t;
            seq += 1;
            inflight += 1;
        }
        shared.next_seq.store(seq, Relaxed);
        conn.flush().await.map_err(ConnError::Io)?;
        if done >= cfg.messages {
            return Ok(());
        }
        let read = conn.rd.read_from(&mut conn.stream);
        let r = match next_due {
            Some(due) if inflight < window => {
                let sleep = tokio::time::sleep_until(clock::instant_of(due).into());
                local
                    .or_stop(async {
                        tokio::select! {
                            r = read => Some(r),
                            _ = sleep => None,
                        }
                    })
                    .await
            }
            _ => local.or_stop(async { Some(read.await) }).await,
        };
        match r {
            None => return Ok(()),  // stopped (timeout)
            Some(None) => continue, // next publish is due
            Some(Some(Ok(0))) => return Err(ConnError::Eof),
            Some(Some(Err(e))) => return Err(ConnError::Io(e)),
            Some(Some(Ok(_))) => {}
        }
        let now = clock::now_ns();
        let mut closed = None;
        {
            let mut st = stats.borrow_mut();
            loop {
                let ev = match conn.rd.next_event() {
                    Ok(Some(ev)) => ev,
                    Ok(None) => break,
                    Err(e) => {
                        closed = Some(ConnError::Proto(e));
                        break;
                    }
                };
                match ev {
                    Event::Text(p) => {
                        for m in cfg.proto.messages(p) {
                            let answer = classify_answering(
                                cfg.proto,
                                m,
                                Proto::PUBLISHED,
                                &mut conn.wr,
                                pings,
                            );
                            let (id, ok) = match answer {
                                Msg::Reply(id) => (id, true),
                                Msg::Error(id, _) => (id, false),
                                _ => continue,
                            };
                            inflight = inflight.saturating_sub(1);
                            done += 1;
                            if ok {
                                shared.acked.fetch_add(1, Relaxed);
                                shared.last_ack_ns.fetch_max(now, Relaxed);
                                let seq_of = id.and_then(|id| id.checked_sub(PUBLISH_ID_BASE));
                                if let Some(s) = seq_of {
                                    if s < seq && seq - s <= sent_at.len() as u64 {
                                        st.ack_lat.record(
                                            now.saturating_sub(sent_at[(s & mask) as usize]),
                                        );
                                    }
                                }
                            } else {
                                shared.pub_errors.fetch_add(1, Relaxed);
                                st.pub_fail.add("error_reply");
                                st.samples.add(|| {
                                    format!(
                                        "publish error: {}",
                                        String::from_utf8_lossy(&m[..m.len().min(200)])
                                    )
                                });
                            }
                        }
                    }
                    Event::Ping(p) => {
                        conn.wr.pong(p);
                        pings.proto += 1;
                    }
                    Event::Close(code, reason) => {
                        let r = String::from_utf8_lossy(reason).into_owned();
                        conn.wr.close(code, b"");
                        closed = Some(ConnError::Closed(code, r));
                        break;
                    }
                    Event::Binary(_) | Event::Pong(_) => {}
                }
            }
        }
        if let Some(e) = closed {
            let _ = conn.flush().await;
            return Err(e);
        }
    }
}

async fn http_publisher(
    j: usize,
    local: Rc<Local>,
    cfg: Arc<Cfg>,
    shared: Arc<Shared>,
    stats: Rc<RefCell<Stats>>,
) {
    let hp = cfg.http_pub.as_ref().expect("http publisher");
    let source = if cfg.sources.is_empty() {
        None
    } else {
        Some(cfg.sources[j % cfg.sources.len()])
    };
    let dial = || async {
        tokio::time::timeout(
            cfg.subs.connect_timeout,
            crate::net::tcp_connect(hp.addr, source),
        )
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timeout"))?
        .map(HttpConn::new)
    };
    let mut conn = match local.or_stop(dial()).await {
        Some(Ok(c)) => Some(c),
        Some(Err(e)) => {
            let mut st = stats.borrow_mut();
            st.pub_fail.add(format!("connect:{:?}", e.kind()));
            st.samples.add(|| format!("publisher connect: {e}"));
            shared.pub_failed.fetch_add(1, Relaxed);
            return;
        }
        None => return,
    };
    shared.pub_ready.fetch_add(1, Relaxed);
    local.wait_phase(Phase::Run).await;
    if conn.as_ref().is_some_and(HttpConn::peer_closed) {
        conn = None; // closed while the subscribers were set up: dial again before publishing
    }
    let pad = vec![b'x'; cfg.payload_bytes];
    let start_ns = shared.pub_start_ns.load(Relaxed);
    let mut body = Vec::with_capacity(cfg.payload_bytes + 128);
    let mut req = Vec::with_capacity(cfg.payload_bytes + 512);
    loop {
        if local.stopped() {
            return;
        }
        let seq = shared.next_seq.fetch_add(1, Relaxed);
        if seq >= cfg.messages {
            return;
        }
        if cfg.rate > 0.0 {
            let due = due_ns(start_ns, seq, cfg.rate);
            if due > clock::now_ns() {
                let sleep = tokio::time::sleep_until(clock::instant_of(due).into());
                if local.or_stop(sleep).await.is_none() {
                    return;
                }
            }
        }
        if conn.is_none() {
            match local.or_stop(dial()).await {
                Some(Ok(c)) => conn = Some(c),
                Some(Err(e)) => {
                    shared.pub_errors.fetch_add(1, Relaxed);
                    let mut st = stats.borrow_mut();
                    st.pub_fail.add(format!("connect:{:?}", e.kind()));
                    st.samples.add(|| format!("publisher connect: {e}"));
                    continue;
                }
                None => return,
            }
        }
        let c = conn.as_mut().expect("connected");
        let t = clock::now_ns();
        shared.first_publish_ns.fetch_min(t, Relaxed);
        body.clear();
        body.extend_from_slice(b"{\"channel\":\"");
        body.extend_from_slice(cfg.channel_json.as_bytes());
        body.extend_from_slice(b"\",\"data\":");
        push_data(&mut body, t, seq, cfg.payload_bytes, &pad);
        body.push(b'}');
        req.clear();
        req.extend_from_slice(b"POST ");
        req.extend_from_slice(&hp.path);
        req.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        req.extend_from_slice(hp.host_header.as_bytes());
        req.extend_from_slice(b"\r\nContent-Type: application/json\r\n");
        req.extend_from_slice(&hp.headers);
        req.extend_from_slice(b"Content-Length: ");
        push_u64(&mut req, body.len() as u64);
        req.extend_from_slice(b"\r\n\r\n");
        req.extend_from_slice(&body);
        let r = match local.or_stop(c.request(&req, false)).await {
            None => return,
            Some(r) => r,
        };
        let now = clock::now_ns();
        match r {
            Ok(resp) => {
                let mut st = stats.borrow_mut();
                if resp.status / 100 == 2 {
                    shared.acked.fetch_add(1, Relaxed);
                    shared.last_ack_ns.fetch_max(now, Relaxed);
                    st.ack_lat.record(now.saturating_sub(t));
                    if let Some((n, _)) = scan::u64_field(c.body(), b"\"deliveries\"", 0) {
                        shared.server_deliveries.fetch_add(n, Relaxed);
                    }
                } else {
                    shared.pub_errors.fetch_add(1, Relaxed);
                    st.pub_fail.add(format!("http_status:{}", resp.status));
                    let b = c.body();
                    st.samples.add(|| {
                        format!(
                            "publish HTTP {}: {}",
                            resp.status,
                            String::from_utf8_lossy(&b[..b.len().min(200)])
                        )
                    });
                }
                if resp.close {
                    conn = None;
                }
            }
            Err(e) => {
                shared.pub_errors.fetch_add(1, Relaxed);
                let mut st = stats.borrow_mut();
                st.pub_fail.add(e.kind());
                st.samples.add(|| format!("publish request: {e}"));
                conn = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_padding() {
        let pad = vec![b'x'; 1000];
        for size in [0usize, 10, 40, 100, 1000] {
            let mut out = Vec::new();
            push_data(&mut out, 123_456_789, 42, size, &pad);
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(v["t"], 123_456_789u64);
            assert_eq!(v["s"], 42);
            let min = DATA_OVERHEAD + 9 + 2;
            assert_eq!(out.len(), size.max(min), "size {size}");
        }
    }

    #[test]
    fn seq_tracking() {
        let mut tr = SeqTrack::new(2);
        let msg = |s: u64| {
            let mut m = br#"{"type":"message","channel":"c","data":"#.to_vec();
            push_data(&mut m, 1000 + s, s, 64, &[b'x'; 64]);
            m.extend_from_slice(br#","offset":9}"#);
            m
        };
        let mut sampled = 0;
        for s in [0u64, 1, 1, 3, 2, 4] {
            let m = msg(s);
            let (_, t) = tr.observe(&m);
            if let Some(t) = t {
                assert_eq!(t, 1000 + s);
                sampled += 1;
            }
        }
        assert_eq!(sampled, 3);
        assert_eq!(tr.received, 6);
        assert_eq!(tr.unique, 5); // 0 1 3 2 4
        assert_eq!(tr.duplicates, 1); // second 1
        assert_eq!(tr.reordered, 1); // late 2 (new, out of order)
        assert_eq!(tr.gaps, 1); // 2 skipped when 3 arrived
        let bad = br#"{"type":"message","data":{}}"#;
        tr.observe(bad);
        assert_eq!(tr.unparsable, 1);
    }

    #[test]
    fn rate_schedule() {
        assert_eq!(due_ns(1000, 0, 10.0), 1000);
        assert_eq!(due_ns(1000, 5, 10.0), 1000 + 500_000_000);
    }
}
