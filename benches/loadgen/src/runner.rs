//! Worker threads and run phases.
//!
//! Each worker thread runs one current-thread tokio runtime with a `LocalSet`,
//! so connection tasks share per-thread state through `Rc`/`RefCell` without
//! atomics. The main thread drives the phases (plain blocking code polling a
//! few atomics); each worker mirrors the phase into a thread-local [`Local`].

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Phase {
    /// Connecting / subscribing.
    Setup,
    /// Load is applied but not measured.
    Warmup,
    /// Load is applied and measured.
    Run,
    /// Wind down: every task finishes and reports.
    Stop,
}

/// The phase as seen by one worker thread.
pub struct Local {
    phase: Cell<Phase>,
    changed: Notify,
    stop: Notify,
}

impl Local {
    pub fn new(p: Phase) -> Local {
        Local {
            phase: Cell::new(p),
            changed: Notify::new(),
            stop: Notify::new(),
        }
    }

    #[inline]
    pub fn phase(&self) -> Phase {
        self.phase.get()
    }

    #[inline]
    pub fn stopped(&self) -> bool {
        self.phase.get() == Phase::Stop
    }

    pub fn set(&self, p: Phase) {
        self.phase.set(p);
        self.changed.notify_waiters();
        if p == Phase::Stop {
            self.stop.notify_waiters();
        }
    }

    /// Resolve once the phase differs from `seen`.
    pub async fn wait_change(&self, seen: Phase) {
        loop {
            if self.phase.get() != seen {
                return;
            }
            let n = self.changed.notified();
            if self.phase.get() != seen {
                return;
            }
            n.await;
        }
    }

    /// Resolve once the phase is at least `p`.
    pub async fn wait_phase(&self, p: Phase) {
        while self.phase.get() < p {
            self.wait_change(self.phase.get()).await;
        }
    }

    /// Run `f` unless or until the Stop phase arrives (`None` then).
    #[inline]
    pub async fn or_stop<F: Future>(&self, f: F) -> Option<F::Output> {
        if self.stopped() {
            return None;
        }
        let n = self.stop.notified();
        tokio::select! {
            biased;
            _ = n => None,
            r = f => Some(r),
        }
    }

    /// Run `f` unless or until the phase changes from `seen` (`None` then).
    pub async fn or_change<F: Future>(&self, seen: Phase, f: F) -> Option<F::Output> {
        tokio::select! {
            biased;
            _ = self.wait_change(seen) => None,
            r = f => Some(r),
        }
    }
}

/// The main thread's handle on the phase of every worker.
pub struct Phases {
    tx: watch::Sender<Phase>,
}

impl Default for Phases {
    fn default() -> Self {
        Self::new()
    }
}

impl Phases {
    pub fn new() -> Phases {
        Phases {
            tx: watch::channel(Phase::Setup).0,
        }
    }

    pub fn set(&self, p: Phase) {
        self.tx.send_replace(p);
    }

    pub fn get(&self) -> Phase {
        *self.tx.borrow()
    }
}

/// Start `threads` workers; worker `i` runs `f(i, local)` to completion and
/// its output is returned by the join handle.
pub fn spawn_workers<R, F, Fut>(
    threads: usize,
    phases: &Phases,
    f: F,
) -> Vec<std::thread::JoinHandle<R>>
where
    R: Send + 'static,
    F: Fn(usize, Rc<Local>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + 'static,
{
    let f = Arc::new(f);
    (0..threads)
        .map(|i| {
            let f = f.clone();
            let mut rx = phases.tx.subscribe();
            std::thread::Builder::new()
                .name(format!("loadgen-{i}"))
                .spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("tokio runtime");
                    let set = tokio::task::LocalSet::new();
                    let local = Rc::new(Local::new(*rx.borrow_and_update()));
                    let mirror = local.clone();
                    set.spawn_local(async move {
                        loop {
                            if rx.changed().await.is_err() {
                                mirror.set(Phase::Stop);
                                break;
                            }
                            let p = *rx.borrow_and_update();
                            mirror.set(p);
                            if p == Phase::Stop {
                                break;
                            }
                        }
                    });
                    set.block_on(&rt, f(i, local))
                })
                .expect("spawn worker thread")
        })
        .collect()
}

pub fn join_all<R>(handles: Vec<std::thread::JoinHandle<R>>) -> Vec<R> {
    handles
        .into_iter()
        .map(|h| h.join().expect("worker thread panicked"))
        .collect()
}

/// Poll `cond` every 2 ms until it holds (true) or `deadline` passes (false),
/// calling `tick` in between (progress output).
pub fn wait_until(
    deadline: Option<Instant>,
    mut cond: impl FnMut() -> bool,
    mut tick: impl FnMut(),
) -> bool {
    loop {
        if cond() {
            return true;
        }
        if let Some(d) = deadline {
            if Instant::now() >= d {
                return false;
            }
        }
        tick();
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Sleep for `d`, calling `tick` regularly.
pub fn sleep_with(d: Duration, tick: impl FnMut()) {
    let end = Instant::now() + d;
    wait_until(Some(end), || false, tick);
}

/// Once-a-second progress lines on stderr (unless quiet).
pub struct Progress {
    quiet: bool,
    start: Instant,
    last: Instant,
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        let now = Instant::now();
        Progress {
            quiet,
            start: now,
            last: now,
        }
    }

    pub fn tick(&mut self, line: impl FnOnce() -> String) {
        if self.quiet || self.last.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.last = Instant::now();
        eprintln!("[{:7.1}s] {}", self.start.elapsed().as_secs_f64(), line());
    }

    pub fn say(&self, line: &str) {
        if !self.quiet {
            eprintln!("[{:7.1}s] {}", self.start.elapsed().as_secs_f64(), line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn phases_reach_workers() {
        let phases = Phases::new();
        let seen = Arc::new(AtomicU64::new(0));
        let s2 = seen.clone();
        let hs = spawn_workers(2, &phases, move |i, local| {
            let seen = s2.clone();
            async move {
                local.wait_phase(Phase::Run).await;
                seen.fetch_add(1, Ordering::SeqCst);
                let r = local.or_stop(std::future::pending::<()>()).await;
                assert!(r.is_none());
                i * 10
            }
        });
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(seen.load(Ordering::SeqCst), 0);
        phases.set(Phase::Warmup);
        phases.set(Phase::Run);
        assert!(wait_until(
            Some(Instant::now() + Duration::from_secs(5)),
            || seen.load(Ordering::SeqCst) == 2,
            || {}
        ));
        phases.set(Phase::Stop);
        let mut r = join_all(hs);
        r.sort();
        assert_eq!(r, vec![0, 10]);
    }
}
