//! Log-linear histogram (HdrHistogram-like) over `u64` values, typically
//! nanoseconds. Values below 256 are exact; above, each power-of-two range is
//! split into 128 linear sub-buckets, so the relative error is below 0.8 %.
//! Recording is an index computation plus one increment: no allocation.

const SUB_BITS: u32 = 8;
const SUB: usize = 1 << SUB_BITS; // 256 exact buckets
const HALF: usize = SUB / 2; // 128 sub-buckets per power of two above that
const BUCKETS: usize = SUB + (64 - SUB_BITS as usize) * HALF;

#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    min: u64,
    max: u64,
    sum: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.total)
            .field("min", &self.min())
            .field("max", &self.max)
            .finish()
    }
}

#[inline]
fn index(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let bits = 64 - v.leading_zeros(); // > SUB_BITS
    let g = bits - SUB_BITS; // >= 1; v >> g is in [HALF, SUB)
    SUB + (g as usize - 1) * HALF + ((v >> g) as usize - HALF)
}

/// Lowest and highest value that map to bucket `idx`.
fn bucket_range(idx: usize) -> (u64, u64) {
    if idx < SUB {
        return (idx as u64, idx as u64);
    }
    let k = idx - SUB;
    let g = (k / HALF + 1) as u32;
    let m = (k % HALF + HALF) as u64;
    let lo = m << g;
    (lo, lo + ((1u64 << g) - 1))
}

impl Histogram {
    pub fn new() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            min: u64::MAX,
            max: 0,
            sum: 0,
        }
    }

    #[inline]
    pub fn record(&mut self, v: u64) {
        self.counts[index(v)] += 1;
        self.total += 1;
        self.sum += u128::from(v);
        if v < self.min {
            self.min = v;
        }
        if v > self.max {
            self.max = v;
        }
    }

    pub fn merge(&mut self, other: &Histogram) {
        if other.total == 0 {
            return;
        }
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += *b;
        }
        self.total += other.total;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn min(&self) -> u64 {
        if self.total == 0 {
            0
        } else {
            self.min
        }
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    pub fn mean(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum as f64 / self.total as f64
        }
    }

    /// Value at percentile `q` (0..=100): the midpoint of the bucket holding
    /// the ceil(q% * count)-th smallest value, clamped to the observed min/max
    /// (the top rank is the exact maximum).
    pub fn percentile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let q = q.clamp(0.0, 100.0);
        let rank = ((q / 100.0) * self.total as f64).ceil().max(1.0) as u64;
        if rank >= self.total {
            return self.max;
        }
        let mut seen = 0u64;
        for (idx, &c) in self.counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            seen += c;
            if seen >= rank {
                let (lo, hi) = bucket_range(idx);
                let mid = lo + (hi - lo) / 2;
                return mid.clamp(self.min, self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_and_ranges_are_consistent() {
        let mut v = 0u64;
        while v < 1 << 40 {
            let idx = index(v);
            let (lo, hi) = bucket_range(idx);
            assert!(lo <= v && v <= hi, "v={v} idx={idx} lo={lo} hi={hi}");
            v = v * 3 / 2 + 1;
        }
        assert_eq!(index(u64::MAX), BUCKETS - 1);
        let (lo, hi) = bucket_range(BUCKETS - 1);
        assert!(lo < hi && hi == u64::MAX);
        // consecutive buckets tile the line
        for idx in 0..BUCKETS - 1 {
            assert_eq!(
                bucket_range(idx).1 + 1,
                bucket_range(idx + 1).0,
                "idx {idx}"
            );
        }
    }

    #[test]
    fn empty() {
        let h = Histogram::new();
        assert_eq!(h.count(), 0);
        assert_eq!(h.percentile(50.0), 0);
        assert_eq!(h.min(), 0);
        assert_eq!(h.max(), 0);
        assert_eq!(h.mean(), 0.0);
    }

    #[test]
    fn small_values_exact() {
        let mut h = Histogram::new();
        for v in 1..=100 {
            h.record(v);
        }
        assert_eq!(h.percentile(50.0), 50);
        assert_eq!(h.percentile(90.0), 90);
        assert_eq!(h.percentile(99.0), 99);
        assert_eq!(h.percentile(100.0), 100);
        assert_eq!(h.percentile(0.0), 1);
        assert_eq!(h.min(), 1);
        assert_eq!(h.max(), 100);
        assert!((h.mean() - 50.5).abs() < 1e-9);
    }

    #[test]
    fn large_values_within_one_percent() {
        let mut h = Histogram::new();
        // 1..=100_000 microseconds expressed in nanoseconds
        for v in 1..=100_000u64 {
            h.record(v * 1000);
        }
        for (q, expect) in [
            (50.0, 50_000_000u64),
            (90.0, 90_000_000),
            (99.0, 99_000_000),
        ] {
            let got = h.percentile(q);
            let err = (got as f64 - expect as f64).abs() / expect as f64;
            assert!(err < 0.01, "q={q} got={got} expect={expect}");
        }
        assert_eq!(h.max(), 100_000_000);
        assert_eq!(h.percentile(100.0), 100_000_000);
    }

    #[test]
    fn merge_adds() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        for v in 0..1000 {
            a.record(v);
            b.record(v + 1000);
        }
        a.merge(&b);
        assert_eq!(a.count(), 2000);
        assert_eq!(a.min(), 0);
        assert_eq!(a.max(), 1999);
        let p50 = a.percentile(50.0);
        assert!((990..=1010).contains(&p50), "{p50}");
        a.merge(&Histogram::new());
        assert_eq!(a.count(), 2000);
    }

    #[test]
    fn single_value() {
        let mut h = Histogram::new();
        h.record(123_456_789);
        assert_eq!(h.percentile(50.0), 123_456_789);
        assert_eq!(h.percentile(99.9), 123_456_789);
    }
}
