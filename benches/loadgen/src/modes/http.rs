//! `http`: `--conns` keep-alive HTTP/1.1 connections issuing requests
//! back-to-back for `--duration` (or until `--requests` are done).

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{load_creds, per_thread, run_conns};
use crate::cli::Opts;
use crate::creds::Creds;
use crate::histogram::Histogram;
use crate::http::HttpConn;
use crate::report::{self, emit, lat_json, lat_line, Counts, Samples, Table};
use crate::runner::{join_all, spawn_workers, wait_until, Local, Phase, Phases, Progress};
use crate::sys;
use crate::template::{Ctx, Template};
use crate::util::push_u64;

struct Cfg {
    addr: SocketAddr,
    host_header: String,
    path: Template,
    headers: Vec<Template>,
    body: Option<Template>,
    method: String,
    creds: Creds,
    sources: Vec<IpAddr>,
    conns: usize,
    threads: usize,
    cc: usize,
    requests: Option<u64>,
    connect_timeout: Duration,
}

#[derive(Default)]
struct Shared {
    connected: AtomicU64,
    failed: AtomicU64,
    issued: AtomicU64,
    completed: AtomicU64,
    finished_tasks: AtomicU64,
}

#[derive(Default)]
struct Stats {
    lat: Histogram,
    /// 1xx..5xx in slots 1..=5, anything else in 0.
    classes: [u64; 6],
    statuses: Counts,
    requests: u64,
    errors: Counts,
    reconnects: u64,
    samples: Samples,
}

impl Stats {
    fn merge(&mut self, o: &Stats) {
        self.lat.merge(&o.lat);
        for (a, b) in self.classes.iter_mut().zip(o.classes.iter()) {
            *a += b;
        }
        self.statuses.merge(&o.statuses);
        self.requests += o.requests;
        self.errors.merge(&o.errors);
        self.reconnects += o.reconnects;
        self.samples.merge(&o.samples);
    }
}

/// Per-connection request renderer: everything but `{id}` bound once.
pub struct RequestTemplate {
    head_start: Vec<u8>,
    path: Template,
    head_mid: Vec<u8>,
    headers: Vec<Template>,
    body: Option<Template>,
    send_length: bool,
    body_buf: Vec<u8>,
}

impl RequestTemplate {
    pub fn new(
        method: &str,
        host: &str,
        path: &Template,
        headers: &[Template],
        body: Option<&Template>,
        ctx: &Ctx,
    ) -> RequestTemplate {
        RequestTemplate {
            head_start: format!("{method} ").into_bytes(),
            path: path.bind(ctx, true),
            head_mid: format!(" HTTP/1.1\r\nHost: {host}\r\n").into_bytes(),
            headers: headers.iter().map(|h| h.bind(ctx, false)).collect(),
            body: body.map(|b| b.bind(ctx, false)),
            send_length: body.is_some() || matches!(method, "POST" | "PUT" | "PATCH"),
            body_buf: Vec::new(),
        }
    }

    /// Render request number `id` into `out` (cleared first).
    pub fn render(&mut self, id: u64, out: &mut Vec<u8>) {
        out.clear();
        self.body_buf.clear();
        if let Some(b) = &self.body {
            b.render_id(id, &mut self.body_buf);
        }
        out.extend_from_slice(&self.head_start);
        self.path.render_id(id, out);
        out.extend_from_slice(&self.head_mid);
        for h in &self.headers {
            h.render_id(id, out);
            out.extend_from_slice(b"\r\n");
        }
        if self.send_length {
            out.extend_from_slice(b"Content-Length: ");
            push_u64(out, self.body_buf.len() as u64);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body_buf);
    }
}

pub fn run(o: &Opts) -> Result<i32, String> {
    let url = crate::url::parse(&o.url)?;
    let addr = url.resolve()?;
    let cfg = Arc::new(Cfg {
        addr,
        host_header: url.host_header.clone(),
        path: Template::parse(&url.path),
        headers: o.headers.iter().map(|h| Template::parse(h)).collect(),
        body: o.body.as_deref().map(Template::parse),
        method: o.method.clone(),
        creds: load_creds(o)?,
        sources: o.source_ips.clone(),
        conns: o.conns,
        threads: o.threads,
        cc: per_thread(o.connect_concurrency, o.threads),
        requests: o.requests,
        connect_timeout: Duration::from_secs_f64(o.connect_timeout.max(0.001)),
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
        || prog.tick(|| format!("connecting: {} up", shared.connected.load(Relaxed))),
    );
    let connected = shared.connected.load(Relaxed);
    let (mut measure, mut u_run) = (Duration::ZERO, (usage0, usage0));
    if connected > 0 {
        if o.warmup > 0.0 && o.requests.is_none() {
            phases.set(Phase::Warmup);
            crate::runner::sleep_with(Duration::from_secs_f64(o.warmup), || {});
        }
        let u0 = sys::usage();
        let t0 = Instant::now();
        phases.set(Phase::Run);
        let deadline = t0 + Duration::from_secs_f64(o.duration);
        wait_until(
            Some(deadline),
            || {
                o.requests.is_some()
                    && shared.finished_tasks.load(Relaxed) >= shared.connected.load(Relaxed)
            },
            || prog.tick(|| format!("{} requests done", shared.completed.load(Relaxed))),
        );
        phases.set(Phase::Stop);
        measure = t0.elapsed();
        u_run = (u0, sys::usage());
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
        st.requests as f64 / secs
    } else {
        0.0
    };
    let c = st.classes;
    let result = json!({
        "mode": "http",
        "conns": {"requested": conns, "connected": connected, "failed": shared.failed.load(Relaxed)},
        "measure_s": report::round3(secs),
        "requests": st.requests,
        "requests_per_s": report::round1(rps),
        "status_classes": {"1xx": c[1], "2xx": c[2], "3xx": c[3], "4xx": c[4], "5xx": c[5], "other": c[0]},
        "statuses": st.statuses.to_json(),
        "latency": lat_json(&st.lat),
        "errors": st.errors.total(),
        "error_kinds": st.errors.to_json(),
        "reconnects": st.reconnects,
        "error_samples": st.samples.0,
        "generator": report::generator_json(usage0, usage1, t_start.elapsed(), o.threads),
        "generator_during_run": report::generator_json(u_run.0, u_run.1, measure, o.threads),
    });
    let mut t = Table::default();
    t.row("connections", format!("{connected}/{conns}"));
    t.row(
        "requests",
        format!("{} in {:.2}s = {:.0}/s", st.requests, secs, rps),
    );
    t.row(
        "status",
        format!(
            "2xx {} 3xx {} 4xx {} 5xx {} other {}",
            c[2],
            c[3],
            c[4],
            c[5],
            c[0] + c[1]
        ),
    );
    t.row("latency", lat_line(&st.lat));
    t.row(
        "errors",
        format!("{}, reconnects {}", st.errors.summary(), st.reconnects),
    );
    t.row(
        "generator cpu",
        super::rtt::cpu_row(&u_run.0, &u_run.1, secs),
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

async fn dial(cfg: &Cfg, source: Option<IpAddr>) -> std::io::Result<HttpConn> {
    tokio::time::timeout(
        cfg.connect_timeout,
        crate::net::tcp_connect(cfg.addr, source),
    )
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timeout"))?
    .map(HttpConn::new)
}

async fn conn_task(
    i: usize,
    local: Rc<Local>,
    cfg: Arc<Cfg>,
    shared: Arc<Shared>,
    stats: Rc<RefCell<Stats>>,
    sem: Rc<tokio::sync::Semaphore>,
) {
    let source = if cfg.sources.is_empty() {
        None
    } else {
        Some(cfg.sources[i % cfg.sources.len()])
    };
    let permit = sem.acquire().await.expect("semaphore");
    let first = local.or_stop(dial(&cfg, source)).await;
    drop(permit);
    let mut conn = match first {
        Some(Ok(c)) => Some(c),
        Some(Err(e)) => {
            let mut st = stats.borrow_mut();
            st.errors.add(format!("connect:{:?}", e.kind()));
            st.samples.add(|| format!("connect: {e}"));
            shared.failed.fetch_add(1, Relaxed);
            return;
        }
        None => {
            shared.failed.fetch_add(1, Relaxed);
            return;
        }
    };
    shared.connected.fetch_add(1, Relaxed);
    let (token, sid, username) = cfg.creds.for_conn(i);
    let ctx = Ctx {
        token: &token,
        sid: &sid,
        username: &username,
        conn: i as u64,
    };
    let mut rt = RequestTemplate::new(
        &cfg.method,
        &cfg.host_header,
        &cfg.path,
        &cfg.headers,
        cfg.body.as_ref(),
        &ctx,
    );
    let head_req = cfg.method == "HEAD";
    let mut req = Vec::with_capacity(512);
    let mut id: u64 = 0;
    local.wait_phase(Phase::Warmup).await;
    loop {
        if local.stopped() {
            break;
        }
        if let Some(limit) = cfg.requests {
            if shared.issued.fetch_add(1, Relaxed) >= limit {
                break;
            }
        }
        id += 1;
        if conn.is_none() {
            match local.or_stop(dial(&cfg, source)).await {
                None => break,
                Some(Ok(c)) => {
                    stats.borrow_mut().reconnects += 1;
                    conn = Some(c)
                }
                Some(Err(e)) => {
                    {
                        let mut st = stats.borrow_mut();
                        st.errors.add(format!("connect:{:?}", e.kind()));
                        st.samples.add(|| format!("reconnect: {e}"));
                    }
                    // don't spin on a dead server
                    if local
                        .or_stop(tokio::time::sleep(Duration::from_millis(100)))
                        .await
                        .is_none()
                    {
                        break;
                    }
                    continue;
                }
            }
        }
        let c = conn.as_mut().expect("connection");
        rt.render(id, &mut req);
        let t0 = Instant::now();
        let r = match local.or_stop(c.request(&req, head_req)).await {
            None => break,
            Some(r) => r,
        };
        let dt = t0.elapsed().as_nanos() as u64;
        let recording = local.phase() == Phase::Run;
        let mut st = stats.borrow_mut();
        match r {
            Ok(resp) => {
                if recording {
                    st.lat.record(dt);
                    st.requests += 1;
                    let class = (resp.status / 100) as usize;
                    st.classes[if (1..=5).contains(&class) { class } else { 0 }] += 1;
                    if class != 2 {
                        st.statuses.add(resp.status.to_string());
                    }
                    shared.completed.fetch_add(1, Relaxed);
                }
                if resp.close {
                    conn = None;
                }
            }
            Err(e) => {
                st.errors.add(e.kind());
                st.samples.add(|| e.to_string());
                conn = None;
            }
        }
    }
    shared.finished_tasks.fetch_add(1, Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_requests() {
        let ctx = Ctx {
            token: "tok en",
            sid: "s1",
            username: "u",
            conn: 3,
        };
        let mut rt = RequestTemplate::new(
            "POST",
            "h:1",
            &Template::parse("/p?t={token}&i={id}"),
            &[
                Template::parse("X-API-Key: {token}"),
                Template::parse("X-Req: {id}"),
            ],
            Some(&Template::parse(
                r#"{"channel":"c{conn}","data":{"i":{id}}}"#,
            )),
            &ctx,
        );
        let mut out = Vec::new();
        rt.render(7, &mut out);
        let body = r#"{"channel":"c3","data":{"i":7}}"#;
        let expect = format!(
            "POST /p?t=tok%20en&i=7 HTTP/1.1\r\nHost: h:1\r\nX-API-Key: tok en\r\nX-Req: 7\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        assert_eq!(String::from_utf8(out.clone()).unwrap(), expect);
        let mut rt = RequestTemplate::new("GET", "h", &Template::parse("/x"), &[], None, &ctx);
        rt.render(1, &mut out);
        assert_eq!(out, b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n");
    }
}
