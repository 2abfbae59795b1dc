//! A process-wide monotonic epoch so that publish timestamps embedded in
//! messages and delivery timestamps taken by subscribers are comparable.

use std::sync::OnceLock;
use std::time::Instant;

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// The shared epoch (initialised on first use; `main` touches it at start).
#[inline]
pub fn epoch() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since the shared epoch.
#[inline]
pub fn now_ns() -> u64 {
    ns_of(Instant::now())
}

/// Nanoseconds between the shared epoch and `t` (0 if `t` is earlier).
#[inline]
pub fn ns_of(t: Instant) -> u64 {
    t.saturating_duration_since(epoch()).as_nanos() as u64
}

/// The instant `ns` nanoseconds after the epoch.
#[inline]
pub fn instant_of(ns: u64) -> Instant {
    epoch() + std::time::Duration::from_nanos(ns)
}
