//! Rate limiting with the generic cell rate algorithm (GCRA).
//!
//! Each key keeps one number, its theoretical arrival time (TAT). Time is
//! kept in integer nanoseconds so a burst of exactly `burst` events is
//! allowed regardless of floating-point rounding.

use std::collections::HashMap;
use std::hash::Hash;

const NANOS_PER_SEC: f64 = 1e9;

/// Seconds (as from a clock) to the nanosecond timeline the limiter uses.
pub fn nanos(seconds: f64) -> i64 {
    (seconds * NANOS_PER_SEC) as i64
}

/// The GCRA parameters: `rate` events per second sustained, `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gcra {
    /// Nanoseconds of credit one event costs (1 / rate).
    interval: i64,
    /// How far the TAT may run ahead of now: `burst * interval`.
    tolerance: i64,
    burst: u32,
}

impl Gcra {
    pub fn new(rate: f64, burst: u32) -> Result<Gcra, String> {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(format!("rate must be a positive number, got {rate}"));
        }
        if burst == 0 {
            return Err("burst must be at least 1".into());
        }
        let interval = (NANOS_PER_SEC / rate).round().max(1.0) as i64;
        Ok(Gcra {
            interval,
            tolerance: interval.saturating_mul(burst.into()),
            burst,
        })
    }

    /// Decides a request of `cost` events at `now` for a key whose TAT is
    /// `tat` (`None` for a fresh key). `Ok(new_tat)` if allowed, else
    /// `Err(nanoseconds to wait)`; `i64::MAX` if it can never be allowed
    /// (`cost > burst`).
    pub fn check(&self, tat: Option<i64>, now: i64, cost: u32) -> Result<i64, i64> {
        if cost > self.burst {
            return Err(i64::MAX);
        }
        let tat = tat.map_or(now, |tat| tat.max(now));
        let new_tat = tat.saturating_add(self.interval * i64::from(cost));
        let allow_at = new_tat - self.tolerance;
        if allow_at <= now {
            Ok(new_tat)
        } else {
            Err(allow_at - now)
        }
    }

    /// Whether a key with this TAT behaves exactly like a fresh key at `now`.
    pub fn is_fresh(&self, tat: i64, now: i64) -> bool {
        tat <= now
    }
}

/// A GCRA limiter over many keys, holding at most `max_keys` of them.
///
/// When full, it first drops keys that are back to their fresh state; if
/// that frees too little, it evicts the keys with the earliest TAT (the ones
/// closest to fresh, so the least limiting state is forgotten) until 1/16 of
/// the capacity is free again. The batch keeps the cost amortised O(1).
#[derive(Debug)]
pub struct Limiter<K> {
    gcra: Gcra,
    tats: HashMap<K, i64>,
    max_keys: usize,
}

impl<K: Hash + Eq> Limiter<K> {
    pub fn new(gcra: Gcra, max_keys: usize) -> Result<Self, String> {
        if max_keys == 0 {
            return Err("max_keys must be at least 1".into());
        }
        Ok(Limiter {
            gcra,
            tats: HashMap::new(),
            max_keys,
        })
    }

    /// `Ok(())` if allowed (and consumed), else `Err(nanoseconds to wait)`.
    pub fn check(&mut self, key: K, now: i64, cost: u32) -> Result<(), i64> {
        if let Some(tat) = self.tats.get_mut(&key) {
            *tat = self.gcra.check(Some(*tat), now, cost)?;
            return Ok(());
        }
        let tat = self.gcra.check(None, now, cost)?;
        if !self.gcra.is_fresh(tat, now) {
            if self.tats.len() >= self.max_keys {
                self.make_room(now);
            }
            self.tats.insert(key, tat);
        }
        Ok(())
    }

    pub fn remove(&mut self, key: &K) {
        self.tats.remove(key);
    }

    pub fn reset(&mut self) {
        self.tats.clear();
    }

    pub fn len(&self) -> usize {
        self.tats.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tats.is_empty()
    }

    /// Drops keys whose state equals a fresh key's; returns how many.
    pub fn prune(&mut self, now: i64) -> usize {
        let before = self.tats.len();
        let gcra = self.gcra;
        self.tats.retain(|_, &mut tat| !gcra.is_fresh(tat, now));
        before - self.tats.len()
    }

    fn make_room(&mut self, now: i64) {
        self.prune(now);
        let target = self.max_keys - (self.max_keys / 16).max(1);
        let Some(excess) = self.tats.len().checked_sub(target).filter(|&n| n > 0) else {
            return;
        };
        let mut tats: Vec<i64> = self.tats.values().copied().collect();
        let cutoff = *tats.select_nth_unstable(excess - 1).1;
        // Fewer than `excess` keys lie strictly below the cutoff; take the
        // rest from the keys equal to it.
        let mut left = excess;
        self.tats.retain(|_, &mut tat| {
            let evict = tat < cutoff;
            left -= usize::from(evict);
            !evict
        });
        self.tats.retain(|_, &mut tat| {
            let evict = tat == cutoff && left > 0;
            left -= usize::from(evict);
            !evict
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = 1_000_000_000;

    #[test]
    fn burst_then_sustained_rate() {
        let gcra = Gcra::new(10.0, 3).unwrap();
        let mut tat = None;
        for _ in 0..3 {
            tat = Some(gcra.check(tat, 0, 1).unwrap());
        }
        assert_eq!(gcra.check(tat, 0, 1), Err(SEC / 10));
        assert!(gcra.check(tat, SEC / 10 - 1, 1).is_err());
        let next = gcra.check(tat, SEC / 10, 1).unwrap();
        assert!(gcra.check(Some(next), SEC / 10, 1).is_err());
    }

    #[test]
    fn burst_is_exact_for_awkward_rates() {
        for rate in [3.0, 7.0, 0.3, 1e6 / 7.0] {
            let gcra = Gcra::new(rate, 50).unwrap();
            let mut tat = None;
            for i in 0..50 {
                tat = Some(
                    gcra.check(tat, 1_234_567, 1)
                        .unwrap_or_else(|_| panic!("{rate} {i}")),
                );
            }
            assert!(gcra.check(tat, 1_234_567, 1).is_err());
        }
    }

    #[test]
    fn cost_and_denials() {
        let gcra = Gcra::new(1.0, 5).unwrap();
        let tat = gcra.check(None, 0, 5).unwrap();
        assert_eq!(tat, 5 * SEC);
        assert_eq!(gcra.check(Some(tat), 0, 2), Err(2 * SEC));
        assert_eq!(gcra.check(None, 0, 6), Err(i64::MAX));
        assert_eq!(gcra.check(Some(tat), 0, 0), Ok(tat));
        // An idle key recovers fully and does not bank extra credit.
        assert_eq!(gcra.check(Some(tat), 100 * SEC, 5), Ok(105 * SEC));
    }

    #[test]
    fn parameters_are_validated() {
        assert!(Gcra::new(0.0, 1).is_err());
        assert!(Gcra::new(f64::NAN, 1).is_err());
        assert!(Gcra::new(-1.0, 1).is_err());
        assert!(Gcra::new(1.0, 0).is_err());
        assert!(Limiter::<u8>::new(Gcra::new(1.0, 1).unwrap(), 0).is_err());
    }

    #[test]
    fn limiter_tracks_keys_and_prunes_fresh_ones() {
        let mut limiter = Limiter::new(Gcra::new(1.0, 2).unwrap(), 100).unwrap();
        assert_eq!(limiter.check("a", 0, 2), Ok(()));
        assert_eq!(limiter.check("a", 0, 1), Err(SEC));
        assert_eq!(limiter.check("b", 0, 0), Ok(()));
        assert_eq!(limiter.len(), 1, "a zero-cost check stores nothing");
        assert_eq!(limiter.check("b", 0, 3), Err(i64::MAX));
        assert_eq!(limiter.len(), 1, "a denied fresh key stores nothing");
        assert_eq!(limiter.prune(SEC), 0);
        assert_eq!(limiter.prune(2 * SEC), 1);
        assert!(limiter.is_empty());
        limiter.check("a", 0, 1).unwrap();
        limiter.remove(&"a");
        assert_eq!(limiter.check("a", 0, 2), Ok(()));
        limiter.reset();
        assert!(limiter.is_empty());
    }

    #[test]
    fn full_limiter_prunes_then_evicts_least_limited_keys() {
        let mut limiter = Limiter::new(Gcra::new(1.0, 10).unwrap(), 32).unwrap();
        // Keys 0..32 checked at t=k: key k's TAT is k+1 seconds.
        for k in 0..32 {
            limiter.check(k, k * SEC, 1).unwrap();
        }
        assert_eq!(limiter.len(), 32);
        // At t=31.5 nothing is fresh-equivalent except keys 0..=30.
        limiter.check(100, 31 * SEC + SEC / 2, 1).unwrap();
        assert_eq!(limiter.len(), 2, "pruning freed enough room");

        // Key k checked at t=k ms: TATs are 1s + k ms, none fresh at 32 ms.
        let ms = SEC / 1000;
        let mut limiter = Limiter::new(Gcra::new(1.0, 10).unwrap(), 32).unwrap();
        for k in 0..32 {
            limiter.check(k, k * ms, 1).unwrap();
        }
        limiter.check(100, 32 * ms, 1).unwrap();
        // Evicted down to 32 - 32/16 = 30, then the new key went in.
        assert_eq!(limiter.len(), 31);
        assert!(!limiter.tats.contains_key(&0) && !limiter.tats.contains_key(&1));
        assert!(limiter.tats.contains_key(&2) && limiter.tats.contains_key(&100));

        // Ties at the cutoff still evict exactly the excess.
        let mut limiter = Limiter::new(Gcra::new(1.0, 10).unwrap(), 32).unwrap();
        for k in 0..33 {
            limiter.check(k, 0, 1).unwrap();
        }
        assert_eq!(limiter.len(), 31);
    }
}
