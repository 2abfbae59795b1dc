//! The load modes and what they share: per-connection dial plans, the
//! connect-with-timeout step, and idling while answering server pings.

pub mod bench;
pub mod fanout;
pub mod hold;
pub mod http;
pub mod mock_server;
pub mod rtt;

use std::cell::RefCell;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::cli::Opts;
use crate::creds::Creds;
use crate::proto::Proto;
use crate::runner::{Local, Phase};
use crate::template::{Ctx, Template};
use crate::url::{self, Url};
use crate::util::Rng;
use crate::ws::{self, ConnError, Event, PingCounts, WsConn, WsDial, NO_REPLY};

/// Runs `task(i, semaphore)` for this thread's share of connection indices
/// (`ti`, `ti + threads`, ... below `count`) as local tasks, at most `concurrency` of them
/// connecting at once (they hold a semaphore permit while connecting), plus `extra` tasks
/// started by the caller; waits for all and returns the stats they accumulated.
pub async fn run_conns<S, F, Fut>(
    ti: usize,
    threads: usize,
    count: usize,
    concurrency: usize,
    stats: Rc<RefCell<S>>,
    extra: Vec<JoinHandle<()>>,
    task: F,
) -> S
where
    S: Default,
    F: Fn(usize, Rc<Semaphore>) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    let sem = Rc::new(Semaphore::new(concurrency));
    let mut tasks = extra;
    tasks.extend(
        (ti..count)
            .step_by(threads)
            .map(|i| tokio::task::spawn_local(task(i, sem.clone()))),
    );
    for t in tasks {
        let _ = t.await;
    }
    let out = std::mem::take(&mut *stats.borrow_mut());
    out
}

pub fn load_creds(o: &Opts) -> Result<Creds, String> {
    match &o.creds {
        Some(p) => Creds::load(p),
        None => Ok(Creds::single(o.token.clone(), o.sid.clone())),
    }
}

struct Target {
    url: Url,
    addr: SocketAddr,
    path: Template,
}

/// Everything needed to make connection `i`'s dial plan, shared by workers.
pub struct WsSetup {
    targets: Vec<Target>,
    creds: Creds,
    headers: Vec<Template>,
    sources: Vec<IpAddr>,
    pub connect_timeout: Duration,
    pub rd_cap: usize,
    /// Connection index offset (so that e.g. a publisher gets its own creds slot).
    pub index_base: usize,
    pub proto: Proto,
}

/// One connection's rendered dial parameters.
pub struct Plan {
    pub addr: SocketAddr,
    pub host_header: String,
    pub path: Vec<u8>,
    pub headers: Vec<u8>,
    pub source: Option<IpAddr>,
    pub token: String,
    pub sid: String,
    pub username: String,
    pub index: usize,
    rd_cap: usize,
    pub proto: Proto,
}

impl Plan {
    pub fn dial(&self) -> WsDial<'_> {
        WsDial {
            addr: self.addr,
            host_header: &self.host_header,
            path: &self.path,
            extra_headers: &self.headers,
            source: self.source,
            rd_cap: self.rd_cap,
            proto: self.proto,
            token: &self.token,
        }
    }

    pub fn ctx(&self) -> Ctx<'_> {
        Ctx {
            token: &self.token,
            sid: &self.sid,
            username: &self.username,
            conn: self.index as u64,
        }
    }
}

impl WsSetup {
    pub fn new(
        urls: &[String],
        o: &Opts,
        creds: Creds,
        headers: &[String],
        rd_cap: usize,
    ) -> Result<WsSetup, String> {
        let mut targets = Vec::new();
        for u in urls {
            let url = url::parse(u)?;
            let addr = url.resolve()?;
            for s in &o.source_ips {
                if s.is_ipv4() != addr.is_ipv4() {
                    return Err(format!(
                        "source address {s} and target {addr} differ in family"
                    ));
                }
            }
            let path = Template::parse(&url.path);
            targets.push(Target { url, addr, path });
        }
        Ok(WsSetup {
            targets,
            creds,
            headers: headers.iter().map(|h| Template::parse(h)).collect(),
            sources: o.source_ips.clone(),
            connect_timeout: Duration::from_secs_f64(o.connect_timeout.max(0.001)),
            rd_cap,
            index_base: 0,
            proto: o.protocol,
        })
    }

    pub fn plan(&self, i: usize) -> Plan {
        let idx = i + self.index_base;
        let (token, sid, username) = self.creds.for_conn(idx);
        let t = &self.targets[i % self.targets.len()];
        let ctx = Ctx {
            token: &token,
            sid: &sid,
            username: &username,
            conn: idx as u64,
        };
        let mut path = Vec::with_capacity(t.url.path.len() + token.len() + sid.len());
        t.path.render(&ctx, 0, true, &mut path);
        let mut headers = Vec::new();
        for h in &self.headers {
            h.render(&ctx, 0, false, &mut headers);
            headers.extend_from_slice(b"\r\n");
        }
        let source = if self.sources.is_empty() {
            None
        } else {
            Some(self.sources[idx % self.sources.len()])
        };
        Plan {
            addr: t.addr,
            host_header: t.url.host_header.clone(),
            path,
            headers,
            source,
            token,
            sid,
            username,
            index: idx,
            rd_cap: self.rd_cap,
            proto: self.proto,
        }
    }

    pub fn first_addr(&self) -> SocketAddr {
        self.targets[0].addr
    }
}

/// Connect, upgrade and wait for the welcome within `timeout`, giving up on Stop.
pub async fn connect(
    plan: &Plan,
    timeout: Duration,
    local: &Local,
    rng: &mut Rng,
    pings: &mut PingCounts,
) -> Result<WsConn, ConnError> {
    match local
        .or_stop(tokio::time::timeout(
            timeout,
            ws::dial(&plan.dial(), rng, pings),
        ))
        .await
    {
        None => Err(ConnError::Timeout),
        Some(Err(_)) => Err(ConnError::Timeout),
        Some(Ok(r)) => r,
    }
}

/// Handle buffered frames of an idle connection: answer pings (the protocol's text pings
/// and WebSocket PINGs), ignore everything else, fail on close.
pub fn drain_idle(
    conn: &mut WsConn,
    proto: Proto,
    pings: &mut PingCounts,
) -> Result<(), ConnError> {
    while let Some(ev) = conn.rd.next_event()? {
        match ev {
            Event::Text(p) => {
                for m in proto.messages(p) {
                    ws::classify_answering(proto, m, NO_REPLY, &mut conn.wr, pings);
                }
            }
            Event::Ping(p) => {
                conn.wr.pong(p);
                pings.proto += 1;
            }
            Event::Close(code, reason) => {
                let r = String::from_utf8_lossy(reason).into_owned();
                conn.wr.close(code, b"");
                return Err(ConnError::Closed(code, r));
            }
            Event::Binary(_) | Event::Pong(_) => {}
        }
    }
    Ok(())
}

/// Idle (answering pings) until the phase differs from `seen`.
pub async fn idle(
    conn: &mut WsConn,
    local: &Rc<Local>,
    seen: Phase,
    proto: Proto,
    pings: &mut PingCounts,
) -> Result<(), ConnError> {
    loop {
        let r = drain_idle(conn, proto, pings);
        if r.is_err() {
            let _ = conn.flush().await;
            return r;
        }
        conn.flush().await.map_err(ConnError::Io)?;
        if local.phase() != seen {
            return Ok(());
        }
        match local
            .or_change(seen, conn.rd.read_from(&mut conn.stream))
            .await
        {
            None => return Ok(()),
            Some(Ok(0)) => return Err(ConnError::Eof),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(ConnError::Io(e)),
        }
    }
}

/// Idle until the Stop phase.
pub async fn idle_until_stop(
    conn: &mut WsConn,
    local: &Rc<Local>,
    proto: Proto,
    pings: &mut PingCounts,
) -> Result<(), ConnError> {
    while !local.stopped() {
        idle(conn, local, local.phase(), proto, pings).await?;
    }
    Ok(())
}

/// Per-thread share of the connect concurrency.
pub fn per_thread(total: usize, threads: usize) -> usize {
    total.div_ceil(threads).max(1)
}

/// Seed for connection `i`'s RNG.
pub fn seed(i: usize) -> u64 {
    Rng::from_entropy(i as u64).next_u64()
}
