//! Clocks matching Python's `time.time()` and `time.monotonic()`.

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock seconds since the UNIX epoch (`time.time()`).
pub fn unix_time() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Whole wall-clock seconds since the UNIX epoch (`int(time.time())`).
pub fn unix_seconds() -> i64 {
    unix_time().floor() as i64
}

/// Seconds of `CLOCK_MONOTONIC`, the clock behind `time.monotonic()` on
/// Linux, so values from either can be mixed.
pub fn monotonic() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC) failed");
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_are_sane() {
        let t = unix_time();
        assert!(t > 1.6e9, "{t}");
        assert!((unix_seconds() as f64 - t).abs() < 2.0);
        let a = monotonic();
        let b = monotonic();
        assert!(a > 0.0 && b >= a);
    }
}
