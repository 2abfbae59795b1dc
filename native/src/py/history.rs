//! `HistoryBuffers`.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::clock;
use crate::history::Buffers;

fn now_or_wall_clock(now: Option<f64>) -> f64 {
    now.unwrap_or_else(clock::unix_time)
}

/// Per-channel history streams of the memory backend.
#[pyclass(module = "pygw._native")]
pub struct HistoryBuffers(Buffers);

#[pymethods]
impl HistoryBuffers {
    #[new]
    fn new() -> Self {
        HistoryBuffers(Buffers::new())
    }

    /// Appends a publication; returns `(offset, epoch, envelope)`.
    #[pyo3(signature = (channel, data_json, size, ttl, now = None))]
    fn publish<'py>(
        &mut self,
        py: Python<'py>,
        channel: &str,
        data_json: &[u8],
        size: usize,
        ttl: f64,
        now: Option<f64>,
    ) -> PyResult<(u64, String, Bound<'py, PyBytes>)> {
        if !(ttl.is_finite() && ttl >= 0.0) {
            return Err(PyValueError::new_err("ttl must be a finite number >= 0"));
        }
        let now = now_or_wall_clock(now);
        let (offset, epoch, envelope) = self.0.publish(channel, data_json, size, ttl, now);
        Ok((offset, epoch.to_owned(), PyBytes::new(py, &envelope)))
    }

    /// `(envelopes after offset, recovered, epoch, top)`.
    #[pyo3(signature = (channel, epoch, offset, now = None))]
    fn recover<'py>(
        &mut self,
        py: Python<'py>,
        channel: &str,
        epoch: &str,
        offset: u64,
        now: Option<f64>,
    ) -> (Vec<Bound<'py, PyBytes>>, bool, String, u64) {
        let r = self
            .0
            .recover(channel, epoch, offset, now_or_wall_clock(now));
        let publications = r
            .publications
            .iter()
            .map(|envelope| PyBytes::new(py, envelope))
            .collect();
        (publications, r.recovered, r.epoch.to_owned(), r.top)
    }

    /// `(epoch, top offset)`, creating the stream if needed.
    fn top(&mut self, channel: &str) -> (String, u64) {
        let (epoch, top) = self.0.top(channel);
        (epoch.to_owned(), top)
    }

    /// Up to `limit` retained `(offset, data_json)` after `since`.
    #[pyo3(signature = (channel, since = 0, limit = 100, now = None))]
    fn history<'py>(
        &mut self,
        py: Python<'py>,
        channel: &str,
        since: u64,
        limit: usize,
        now: Option<f64>,
    ) -> Vec<(u64, Bound<'py, PyBytes>)> {
        self.0
            .history(channel, since, limit, now_or_wall_clock(now))
            .into_iter()
            .map(|(offset, data)| (offset, PyBytes::new(py, data)))
            .collect()
    }

    fn remove(&mut self, channel: &str) {
        self.0.remove(channel);
    }

    fn __len__(&self) -> usize {
        self.0.len()
    }

    /// Drops expired publications; returns how many.
    #[pyo3(signature = (now = None))]
    fn prune(&mut self, now: Option<f64>) -> usize {
        self.0.prune(now_or_wall_clock(now))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<HistoryBuffers>()
}
