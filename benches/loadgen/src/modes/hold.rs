//! `hold`: connect storm of `--conns`, then hold them idle for `--duration`,
//! answering server pings; optional /proc sampling of the server (`--pid`).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::Semaphore;

use super::{connect, idle_until_stop, load_creds, per_thread, run_conns, seed, WsSetup};
use crate::cli::Opts;
use crate::clock;
use crate::histogram::Histogram;
use crate::report::{self, emit, lat_json, Counts, Samples, Table};
use crate::runner::{
    join_all, sleep_with, spawn_workers, wait_until, Local, Phase, Phases, Progress,
};
use crate::sys::{self, ProcSample};
use crate::util::Rng;
use crate::ws::PingCounts;

struct Cfg {
    setup: WsSetup,
    conns: usize,
    threads: usize,
    cc: usize,
}

#[derive(Default)]
struct Shared {
    connected: AtomicU64,
    failed: AtomicU64,
    closed: AtomicU64,
    last_connected_ns: AtomicU64,
}

#[derive(Default)]
struct Stats {
    connect_lat: Histogram,
    pings: PingCounts,
    connect_fail: Counts,
    closes: Counts,
    samples: Samples,
}

impl Stats {
    fn merge(&mut self, o: &Stats) {
        self.connect_lat.merge(&o.connect_lat);
        self.pings.text += o.pings.text;
        self.pings.proto += o.pings.proto;
        self.connect_fail.merge(&o.connect_fail);
        self.closes.merge(&o.closes);
        self.samples.merge(&o.samples);
    }
}

fn sample(pid: Option<u32>, errs: &mut Vec<String>) -> Option<ProcSample> {
    let pid = pid?;
    match sys::sample_proc(pid) {
        Ok(s) => Some(s),
        Err(e) => {
            errs.push(e);
            None
        }
    }
}

fn sample_json(s: &Option<ProcSample>) -> Value {
    match s {
        Some(s) => json!({"rss_bytes": s.rss_bytes, "cpu_s": report::round3(s.cpu_s)}),
        None => Value::Null,
    }
}

pub fn run(o: &Opts) -> Result<i32, String> {
    let creds = load_creds(o)?;
    let setup = WsSetup::new(std::slice::from_ref(&o.url), o, creds, &o.headers, 1024)?;
    let cfg = Arc::new(Cfg {
        setup,
        conns: o.conns,
        threads: o.threads,
        cc: per_thread(o.connect_concurrency, o.threads),
    });
    let mut proc_errs = Vec::new();
    let before = sample(o.pid, &mut proc_errs);
    let usage0 = sys::usage();
    let t_start = Instant::now();
    let start_ns = clock::ns_of(t_start);
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
                    "storm: {} up, {} failed / {conns}",
                    shared.connected.load(Relaxed),
                    shared.failed.load(Relaxed)
                )
            })
        },
    );
    let storm_done = t_start.elapsed();
    let usage_storm = sys::usage();
    let connected = shared.connected.load(Relaxed);
    let last_ok = shared.last_connected_ns.load(Relaxed);
    let storm_s = if connected > 0 {
        last_ok.saturating_sub(start_ns) as f64 / 1e9
    } else {
        0.0
    };
    let after_storm = sample(o.pid, &mut proc_errs);
    prog.say(&format!(
        "storm done: {connected} up, {} failed in {:.3}s; holding {}s",
        shared.failed.load(Relaxed),
        storm_done.as_secs_f64(),
        o.duration
    ));
    let t_hold = Instant::now();
    phases.set(Phase::Run);
    sleep_with(Duration::from_secs_f64(o.duration), || {
        prog.tick(|| format!("holding: {} open", connected - shared.closed.load(Relaxed)))
    });
    let closed_during_hold = shared.closed.load(Relaxed);
    let end = sample(o.pid, &mut proc_errs);
    let hold_wall = t_hold.elapsed();
    let usage_hold = sys::usage();
    phases.set(Phase::Stop);
    let results = join_all(handles);
    let usage1 = sys::usage();
    let mut st = Stats::default();
    for r in &results {
        st.merge(r);
    }
    let still_open = connected - closed_during_hold;
    let rss_per_conn = match (&before, &after_storm) {
        (Some(b), Some(a)) if connected > 0 => {
            Some((a.rss_bytes as f64 - b.rss_bytes as f64) / connected as f64)
        }
        _ => None,
    };
    let idle_cpu_pct = match (&after_storm, &end) {
        (Some(a), Some(e)) => {
            let w = e.at.duration_since(a.at).as_secs_f64();
            if w > 0.0 {
                Some(report::round1((e.cpu_s - a.cpu_s) / w * 100.0))
            } else {
                None
            }
        }
        _ => None,
    };
    let storm_cpu = match (&before, &after_storm) {
        (Some(b), Some(a)) => Some(report::round3(a.cpu_s - b.cpu_s)),
        _ => None,
    };
    let rate = if storm_s > 0.0 {
        connected as f64 / storm_s
    } else {
        0.0
    };
    let result = json!({
        "mode": "hold",
        "conns": {"requested": conns, "connected": connected, "failed": shared.failed.load(Relaxed),
                  "still_open": still_open, "closed_during_hold": closed_during_hold},
        "storm": {"wall_s": report::round3(storm_s), "all_attempts_done_s": report::round3(storm_done.as_secs_f64()),
                  "connects_per_s": report::round1(rate),
                  "connect_latency": lat_json(&st.connect_lat)},
        "hold_s": report::round3(hold_wall.as_secs_f64()),
        "errors": st.connect_fail.total() + st.closes.total(),
        "connect_failures": st.connect_fail.to_json(),
        "unexpected_closes": st.closes.to_json(),
        "server_pings_answered": {"text": st.pings.text, "protocol": st.pings.proto},
        "server": {
            "pid": o.pid,
            "before": sample_json(&before),
            "after_storm": sample_json(&after_storm),
            "end": sample_json(&end),
            "rss_delta_per_conn_bytes": rss_per_conn.map(report::round1),
            "storm_cpu_s": storm_cpu,
            "idle_cpu_pct": idle_cpu_pct,
            "sample_errors": proc_errs,
        },
        "error_samples": st.samples.0,
        "generator": report::generator_json(usage0, usage1, t_start.elapsed(), o.threads),
        "generator_during_storm": report::generator_json(usage0, usage_storm, storm_done, o.threads),
        "generator_during_hold": report::generator_json(usage_storm, usage_hold, hold_wall, o.threads),
    });
    let h = &st.connect_lat;
    let mut t = Table::default();
    t.row(
        "storm",
        format!(
            "{connected}/{conns} up in {storm_s:.3}s ({rate:.0}/s), failures {}",
            st.connect_fail.summary()
        ),
    );
    t.row(
        "connect latency",
        if h.count() == 0 {
            "n/a".into()
        } else {
            format!(
                "p50 {} p95 {} p99 {} max {}",
                report::fmt_us(h.percentile(50.0)),
                report::fmt_us(h.percentile(95.0)),
                report::fmt_us(h.percentile(99.0)),
                report::fmt_us(h.max())
            )
        },
    );
    t.row(
        "held",
        format!(
            "{still_open} still open after {:.1}s",
            hold_wall.as_secs_f64()
        ),
    );
    t.row("unexpected closes", st.closes.summary());
    t.row(
        "server pings",
        format!("text {} protocol {}", st.pings.text, st.pings.proto),
    );
    if o.pid.is_some() {
        t.row(
            "server rss/conn",
            rss_per_conn.map_or("n/a".into(), |v| format!("{v:.0} bytes")),
        );
        t.row(
            "server idle cpu",
            idle_cpu_pct.map_or("n/a".into(), |v| format!("{v:.1}%")),
        );
        for e in &proc_errs {
            t.row("sample error", e.clone());
        }
    }
    t.row(
        "generator cpu",
        super::rtt::cpu_row(&usage0, &usage_storm, storm_done.as_secs_f64()) + " (storm)",
    );
    for s in &st.samples.0 {
        t.row("error sample", s.clone());
    }
    emit(o, result, &t).map_err(|e| e.to_string())?;
    Ok(if connected == 0 { 1 } else { 0 })
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
    let mut pings = PingCounts::default();
    let permit = sem.acquire().await.expect("semaphore");
    let plan = cfg.setup.plan(i);
    let mut rng = Rng::new(seed(i));
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
    drop(plan);
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
    let now = Instant::now();
    stats
        .borrow_mut()
        .connect_lat
        .record(now.duration_since(t0).as_nanos() as u64);
    shared
        .last_connected_ns
        .fetch_max(clock::ns_of(now), Relaxed);
    shared.connected.fetch_add(1, Relaxed);
    let r = idle_until_stop(&mut conn, &local, cfg.setup.proto, &mut pings).await;
    let mut st = stats.borrow_mut();
    st.pings.text += pings.text;
    st.pings.proto += pings.proto;
    match r {
        Ok(()) => conn.close_now(1000),
        Err(e) => {
            st.closes.add(e.kind());
            st.samples.add(|| e.message());
            shared.closed.fetch_add(1, Relaxed);
        }
    }
}
