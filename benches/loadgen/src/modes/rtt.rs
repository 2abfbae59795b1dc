//! `ws-rtt`: keep `--depth` requests in flight on each of `--conns`
//! connections and time the replies of type `--expect`.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::Semaphore;

use super::{connect, idle, load_creds, per_thread, run_conns, seed, Plan, WsSetup};
use crate::cli::Opts;
use crate::histogram::Histogram;
use crate::proto::{Msg, Proto};
use crate::report::{self, emit, lat_json, lat_line, Counts, Samples, Table};
use crate::runner::{
    join_all, sleep_with, spawn_workers, wait_until, Local, Phase, Phases, Progress,
};
use crate::sys;
use crate::template::Template;
use crate::util::Rng;
use crate::ws::{classify_answering, ConnError, Event, PingCounts, WsConn};

struct Cfg {
    setup: WsSetup,
    frame: Template,
    expect: Vec<u8>,
    proto: Proto,
    conns: usize,
    depth: usize,
    threads: usize,
    cc: usize,
}

#[derive(Default)]
struct Shared {
    connected: AtomicU64,
    failed: AtomicU64,
    closed: AtomicU64,
}

#[derive(Default)]
struct Stats {
    lat: Histogram,
    connect_lat: Histogram,
    round_trips: u64,
    unmatched: u64,
    server_errors: u64,
    other_frames: u64,
    pings: PingCounts,
    connect_fail: Counts,
    closes: Counts,
    samples: Samples,
}

impl Stats {
    fn merge(&mut self, o: &Stats) {
        self.lat.merge(&o.lat);
        self.connect_lat.merge(&o.connect_lat);
        self.round_trips += o.round_trips;
        self.unmatched += o.unmatched;
        self.server_errors += o.server_errors;
        self.other_frames += o.other_frames;
        self.pings.text += o.pings.text;
        self.pings.proto += o.pings.proto;
        self.connect_fail.merge(&o.connect_fail);
        self.closes.merge(&o.closes);
        self.samples.merge(&o.samples);
    }
}

/// Send times of in-flight requests, keyed by request id (ring buffer).
pub struct Inflight {
    slots: Vec<(u64, Instant)>,
    mask: u64,
    oldest: u64,
    next: u64,
}

impl Inflight {
    pub fn new(depth: usize) -> Inflight {
        let cap = (depth * 4).next_power_of_two().max(16);
        Inflight {
            slots: vec![(u64::MAX, Instant::now()); cap],
            mask: cap as u64 - 1,
            oldest: 0,
            next: 0,
        }
    }

    #[inline]
    pub fn put(&mut self, id: u64, t: Instant) {
        self.slots[(id & self.mask) as usize] = (id, t);
        if self.next <= id {
            self.next = id + 1;
        }
    }

    #[inline]
    pub fn take(&mut self, id: u64) -> Option<Instant> {
        let s = &mut self.slots[(id & self.mask) as usize];
        if s.0 == id {
            s.0 = u64::MAX;
            Some(s.1)
        } else {
            None
        }
    }

    /// The oldest request still in flight (for replies without an id).
    #[inline]
    pub fn take_oldest(&mut self) -> Option<Instant> {
        if self.next > self.oldest + self.slots.len() as u64 {
            self.oldest = self.next - self.slots.len() as u64;
        }
        while self.oldest < self.next {
            let id = self.oldest;
            self.oldest += 1;
            if let Some(t) = self.take(id) {
                return Some(t);
            }
        }
        None
    }
}

pub fn run(o: &Opts) -> Result<i32, String> {
    let creds = load_creds(o)?;
    let setup = WsSetup::new(std::slice::from_ref(&o.url), o, creds, &o.headers, 4096)?;
    let cfg = Arc::new(Cfg {
        setup,
        frame: Template::parse(&o.frame),
        expect: o.expect.as_bytes().to_vec(),
        proto: o.protocol,
        conns: o.conns,
        depth: o.depth,
        threads: o.threads,
        cc: per_thread(o.connect_concurrency, o.threads),
    });
    let usage0 = sys::usage();
    let t_start = Instant::now();
    let phases = Phases::new();
    let shared = Arc::new(Shared::default());
    let (c2, s2) = (cfg.clone(), shared.clone());
    let handles = spawn_workers(o.threads, &phases, move |ti, local| {
        worker(ti, local, c2.clone(), s2.clone())
    });
    let mut prog = Progress::new(o.quiet);
    let conns = o.conns as u64;
    wait_until(
        None,
        || shared.connected.load(Relaxed) + shared.failed.load(Relaxed) >= conns,
        || {
            prog.tick(|| {
                format!(
                    "connecting: {} up, {} failed / {conns}",
                    shared.connected.load(Relaxed),
                    shared.failed.load(Relaxed)
                )
            })
        },
    );
    let connect_wall = t_start.elapsed();
    let connected = shared.connected.load(Relaxed);
    prog.say(&format!(
        "{connected} connected, {} failed",
        shared.failed.load(Relaxed)
    ));
    let (mut measure, mut usage_run) = (Duration::ZERO, (usage0, usage0));
    if connected > 0 {
        if o.warmup > 0.0 {
            phases.set(Phase::Warmup);
            sleep_with(Duration::from_secs_f64(o.warmup), || {});
        }
        let u0 = sys::usage();
        let t0 = Instant::now();
        phases.set(Phase::Run);
        sleep_with(Duration::from_secs_f64(o.duration), || {
            prog.tick(|| format!("running: {} open", connected - shared.closed.load(Relaxed)))
        });
        phases.set(Phase::Stop);
        measure = t0.elapsed();
        usage_run = (u0, sys::usage());
    }
    phases.set(Phase::Stop);
    let results = join_all(handles);
    let usage1 = sys::usage();
    let mut st = Stats::default();
    for r in &results {
        st.merge(r);
    }
    let secs = measure.as_secs_f64();
    let rps = if secs > 0.0 {
        st.round_trips as f64 / secs
    } else {
        0.0
    };
    let errors = st.connect_fail.total() + st.closes.total() + st.server_errors + st.unmatched;
    let result = json!({
        "mode": "ws-rtt",
        "conns": {"requested": conns, "connected": connected, "failed": shared.failed.load(Relaxed),
                  "connect_wall_s": report::round3(connect_wall.as_secs_f64()),
                  "connect_latency": lat_json(&st.connect_lat)},
        "measure_s": report::round3(secs),
        "round_trips": st.round_trips,
        "round_trips_per_s": report::round1(rps),
        "latency": lat_json(&st.lat),
        "errors": errors,
        "connect_failures": st.connect_fail.to_json(),
        "unexpected_closes": st.closes.to_json(),
        "server_error_replies": st.server_errors,
        "unmatched_replies": st.unmatched,
        "other_frames": st.other_frames,
        "server_pings_answered": {"text": st.pings.text, "protocol": st.pings.proto},
        "error_samples": st.samples.0,
        "generator": report::generator_json(usage0, usage1, t_start.elapsed(), o.threads),
        "generator_during_run": report::generator_json(usage_run.0, usage_run.1, measure, o.threads),
    });
    let mut t = Table::default();
    t.row(
        "connections",
        format!(
            "{connected}/{conns} up, failures {}",
            st.connect_fail.summary()
        ),
    );
    t.row(
        "round trips",
        format!("{} in {:.2}s = {:.0}/s", st.round_trips, secs, rps),
    );
    t.row("latency", lat_line(&st.lat));
    t.row("unexpected closes", st.closes.summary());
    t.row(
        "errors",
        format!(
            "{errors} (server error replies {}, unmatched {})",
            st.server_errors, st.unmatched
        ),
    );
    t.row(
        "server pings",
        format!("text {} protocol {}", st.pings.text, st.pings.proto),
    );
    t.row("generator cpu", cpu_row(&usage_run.0, &usage_run.1, secs));
    for s in &st.samples.0 {
        t.row("error sample", s.clone());
    }
    emit(o, result, &t).map_err(|e| e.to_string())?;
    Ok(if connected == 0 { 1 } else { 0 })
}

pub fn cpu_row(u0: &sys::Usage, u1: &sys::Usage, secs: f64) -> String {
    let cpu = u1.cpu_s() - u0.cpu_s();
    format!(
        "{:.2}s user+sys over {:.2}s = {:.0}% of one core",
        cpu,
        secs,
        if secs > 0.0 { cpu / secs * 100.0 } else { 0.0 }
    )
}

async fn worker(ti: usize, local: Rc<Local>, cfg: Arc<Cfg>, shared: Arc<Shared>) -> Stats {
    let stats = Rc::new(RefCell::new(Stats::default()));
    let (threads, conns, cc, st) = (cfg.threads, cfg.conns, cfg.cc, stats.clone());
    run_conns(ti, threads, conns, cc, stats, Vec::new(), move |i, sem| {
        conn_task(
            i,
            local.clone(),
            cfg.clone(),
            shared.clone(),
            st.clone(),
            sem,
        )
    })
    .await
}

async fn conn_task(
    i: usize,
    local: Rc<Local>,
    cfg: Arc<Cfg>,
    shared: Arc<Shared>,
    stats: Rc<RefCell<Stats>>,
    sem: Rc<Semaphore>,
) {
    let plan = cfg.setup.plan(i);
    let mut rng = Rng::new(seed(i));
    let mut pings = PingCounts::default();
    let permit = sem.acquire().await.expect("semaphore");
    let t0 = Instant::now();
    let r = connect(
        &plan,
        cfg.setup.connect_timeout,
        &local,
        &mut rng,
        &mut pings,
    )
    .await;
    drop(permit);
    let mut conn = match r {
        Ok(c) => c,
        Err(e) => {
            let mut st = stats.borrow_mut();
            st.connect_fail.add(e.kind());
            st.samples.add(|| e.message());
            st.pings.text += pings.text;
            shared.failed.fetch_add(1, Relaxed);
            return;
        }
    };
    stats
        .borrow_mut()
        .connect_lat
        .record(t0.elapsed().as_nanos() as u64);
    shared.connected.fetch_add(1, Relaxed);
    let end = match idle(&mut conn, &local, Phase::Setup, cfg.proto, &mut pings).await {
        Ok(()) if local.stopped() => Ok(()),
        Ok(()) => run_loop(&mut conn, &plan, &local, &cfg, &stats, &mut pings).await,
        Err(e) => Err(e),
    };
    let mut st = stats.borrow_mut();
    st.pings.text += pings.text;
    st.pings.proto += pings.proto;
    match end {
        Ok(()) => conn.close_now(1000),
        Err(e) => {
            st.closes.add(e.kind());
            st.samples.add(|| e.message());
            shared.closed.fetch_add(1, Relaxed);
        }
    }
}

async fn run_loop(
    conn: &mut WsConn,
    plan: &Plan,
    local: &Rc<Local>,
    cfg: &Cfg,
    stats: &Rc<RefCell<Stats>>,
    pings: &mut PingCounts,
) -> Result<(), ConnError> {
    let frame = cfg.frame.bind(&plan.ctx(), false);
    let has_id = frame.has_id();
    let mut infl = Inflight::new(cfg.depth);
    let mut scratch = Vec::with_capacity(256);
    let mut next_id: u64 = 1;
    let send = |n: usize,
                conn: &mut WsConn,
                infl: &mut Inflight,
                next_id: &mut u64,
                scratch: &mut Vec<u8>| {
        let t = Instant::now();
        for _ in 0..n {
            scratch.clear();
            frame.render_id(*next_id, scratch);
            conn.wr.text(scratch);
            infl.put(*next_id, t);
            *next_id += 1;
        }
    };
    send(cfg.depth, conn, &mut infl, &mut next_id, &mut scratch);
    conn.flush().await.map_err(ConnError::Io)?;
    loop {
        match local.or_stop(conn.rd.read_from(&mut conn.stream)).await {
            None => return Ok(()),
            Some(Ok(0)) => return Err(ConnError::Eof),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(ConnError::Io(e)),
        }
        let now = Instant::now();
        let recording = local.phase() == Phase::Run;
        let mut replies = 0usize;
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
                            let answer =
                                classify_answering(cfg.proto, m, &cfg.expect, &mut conn.wr, pings);
                            let (id, is_expect) = match answer {
                                Msg::Reply(id) => (id, true),
                                Msg::Error(id, _) => (id, false),
                                Msg::Ping => continue,
                                _ => {
                                    st.other_frames += 1;
                                    continue;
                                }
                            };
                            let sent = match id {
                                Some(id) if has_id => infl.take(id),
                                _ => infl.take_oldest(),
                            };
                            match sent {
                                Some(s) => {
                                    replies += 1;
                                    if !is_expect {
                                        st.server_errors += 1;
                                    } else if recording {
                                        st.lat.record(
                                            now.saturating_duration_since(s).as_nanos() as u64
                                        );
                                        st.round_trips += 1;
                                    }
                                }
                                None => {
                                    if is_expect {
                                        st.unmatched += 1;
                                    } else {
                                        st.server_errors += 1;
                                    }
                                }
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
        if replies > 0 && !local.stopped() {
            send(replies, conn, &mut infl, &mut next_id, &mut scratch);
        }
        conn.flush().await.map_err(ConnError::Io)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inflight_by_id_and_fifo() {
        let mut f = Inflight::new(2);
        let t = Instant::now();
        for id in 1..=3 {
            f.put(id, t);
        }
        assert!(f.take(2).is_some());
        assert!(f.take(2).is_none());
        assert!(f.take_oldest().is_some()); // 1
        assert!(f.take_oldest().is_some()); // 3
        assert!(f.take_oldest().is_none());
        assert!(f.take(99).is_none());
        // wrap-around far beyond capacity keeps working
        for id in 4..1000 {
            f.put(id, t);
            assert!(f.take_oldest().is_some());
        }
    }
}
