//! `RateLimiter`.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::clock;
use crate::ratelimit::{nanos, Gcra, Limiter};

/// A limiter key: a Python `str` or `int` (distinct even when `"1" == str(1)`).
#[derive(Hash, PartialEq, Eq)]
enum Key {
    Int(i64),
    Str(Box<str>),
}

impl Key {
    fn extract(key: &Bound<'_, PyAny>) -> PyResult<Key> {
        if let Ok(s) = key.cast::<PyString>() {
            return Ok(Key::Str(s.to_str()?.into()));
        }
        key.extract::<i64>()
            .map(Key::Int)
            .map_err(|_| PyTypeError::new_err("rate limiter keys must be str or int (64-bit)"))
    }
}

fn now_nanos(now: Option<f64>) -> i64 {
    nanos(now.unwrap_or_else(clock::monotonic))
}

/// GCRA rate limiter over many keys.
#[pyclass(module = "pygw._native")]
pub struct RateLimiter(Limiter<Key>);

#[pymethods]
impl RateLimiter {
    #[new]
    #[pyo3(signature = (rate, burst, max_keys = 1_000_000))]
    fn new(rate: f64, burst: u32, max_keys: usize) -> PyResult<Self> {
        let gcra = Gcra::new(rate, burst).map_err(PyValueError::new_err)?;
        let limiter = Limiter::new(gcra, max_keys).map_err(PyValueError::new_err)?;
        Ok(RateLimiter(limiter))
    }

    /// 0.0 if allowed (and consumed), else seconds to wait (`inf` if
    /// `cost > burst`).
    #[pyo3(signature = (key, now = None, cost = 1))]
    fn check(&mut self, key: &Bound<'_, PyAny>, now: Option<f64>, cost: u32) -> PyResult<f64> {
        let key = Key::extract(key)?;
        Ok(match self.0.check(key, now_nanos(now), cost) {
            Ok(()) => 0.0,
            Err(i64::MAX) => f64::INFINITY,
            Err(wait) => wait as f64 / 1e9,
        })
    }

    fn remove(&mut self, key: &Bound<'_, PyAny>) -> PyResult<()> {
        self.0.remove(&Key::extract(key)?);
        Ok(())
    }

    fn reset(&mut self) {
        self.0.reset();
    }

    fn __len__(&self) -> usize {
        self.0.len()
    }

    #[pyo3(signature = (now = None))]
    fn prune(&mut self, now: Option<f64>) -> usize {
        self.0.prune(now_nanos(now))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<RateLimiter>()
}
