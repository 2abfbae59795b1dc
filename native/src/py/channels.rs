//! `ChannelPolicy`.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::channels::{self, Action, Policy};

/// Channel permission rules; see `channels::Policy`.
#[pyclass(module = "pygw._native", frozen)]
pub struct ChannelPolicy(Policy);

#[pymethods]
impl ChannelPolicy {
    #[new]
    #[pyo3(
        signature = (namespaces_json = &b"[]"[..], allow_unknown = true),
        text_signature = "(namespaces_json=b'[]', allow_unknown=True)"
    )]
    fn new(namespaces_json: &[u8], allow_unknown: bool) -> PyResult<Self> {
        Policy::from_json(namespaces_json, allow_unknown)
            .map(ChannelPolicy)
            .map_err(PyValueError::new_err)
    }

    /// 0 if allowed, else 400 (bad channel name), 403 or 404.
    fn check(&self, action: &str, channel: &str, user_id: &str, role: &str) -> PyResult<u16> {
        let action = Action::from_name(action).ok_or_else(|| {
            PyValueError::new_err(format!(
                "action must be 'subscribe' or 'publish', got {action:?}"
            ))
        })?;
        Ok(match self.0.check(action, channel, user_id, role) {
            Ok(()) => 0,
            Err(denied) => denied as u16,
        })
    }

    /// `(history_size, history_ttl, presence)` of the channel's namespace.
    fn options(&self, channel: &str) -> (usize, f64, bool) {
        self.0.options(channel)
    }

    fn namespace<'a>(&self, channel: &'a str) -> &'a str {
        channels::namespace(channel)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<ChannelPolicy>()
}
