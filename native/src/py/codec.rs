//! `decode_frame`, `encode_message`, `ClientFrame` and `FrameError`.

use pyo3::create_exception;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use super::json;
use crate::codec;

create_exception!(
    pygw._native,
    FrameError,
    PyValueError,
    "A client frame was refused; `code`, `message` and the raw `id` (or None) say why."
);

fn frame_error(py: Python<'_>, e: &codec::FrameError<'_>) -> PyErr {
    let err = FrameError::new_err(e.message.to_string());
    let value = err.value(py);
    let id = e.id.map(|id| PyBytes::new(py, id.as_bytes()));
    let set_attributes = || -> PyResult<()> {
        value.setattr("code", e.code)?;
        value.setattr("message", &*e.message)?;
        value.setattr("id", id)
    };
    if let Err(failed) = set_attributes() {
        return failed;
    }
    err
}

/// A decoded client frame.
#[pyclass(module = "pygw._native", frozen)]
pub struct ClientFrame {
    kind: String,
    id: Option<Box<[u8]>>,
    channel: Option<String>,
    key: Option<String>,
    data: Option<Box<[u8]>>,
    since: Option<(String, u64)>,
    /// The `bytes` or `str` the frame was decoded from, for `json()`.
    source: Py<PyAny>,
}

#[pymethods]
impl ClientFrame {
    #[getter(r#type)]
    fn kind(&self) -> &str {
        &self.kind
    }

    #[getter]
    fn id(&self) -> Option<&[u8]> {
        self.id.as_deref()
    }

    #[getter]
    fn channel(&self) -> Option<&str> {
        self.channel.as_deref()
    }

    #[getter]
    fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    #[getter]
    fn data(&self) -> Option<&[u8]> {
        self.data.as_deref()
    }

    #[getter]
    fn since_epoch(&self) -> Option<&str> {
        self.since.as_ref().map(|(epoch, _)| epoch.as_str())
    }

    #[getter]
    fn since_offset(&self) -> Option<u64> {
        self.since.as_ref().map(|&(_, offset)| offset)
    }

    /// The whole frame as Python objects, like `json.loads`.
    fn json<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let source = self.source.bind(py);
        match source.cast::<PyBytes>() {
            Ok(bytes) => {
                let text = std::str::from_utf8(bytes.as_bytes())
                    .map_err(|e| PyValueError::new_err(e.to_string()))?;
                json::loads(py, text)
            }
            Err(_) => json::loads(py, source.cast::<PyString>()?.to_str()?),
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "ClientFrame(type={:?}, channel={:?})",
            self.kind, self.channel
        )
    }
}

/// Decodes a client frame from `bytes` (UTF-8) or `str`.
#[pyfunction]
fn decode_frame(py: Python<'_>, payload: &Bound<'_, PyAny>) -> PyResult<ClientFrame> {
    let invalid_json = || {
        let invalid = codec::FrameError {
            code: 400,
            message: "Invalid JSON".into(),
            id: None,
        };
        frame_error(py, &invalid)
    };
    let text = if let Ok(bytes) = payload.cast::<PyBytes>() {
        std::str::from_utf8(bytes.as_bytes()).map_err(|_| invalid_json())?
    } else if let Ok(text) = payload.cast::<PyString>() {
        // Fails only for lone surrogates, which no UTF-8 frame can hold.
        text.to_str().map_err(|_| invalid_json())?
    } else {
        return Err(PyTypeError::new_err("payload must be bytes or str"));
    };
    let frame = codec::decode_frame(text).map_err(|e| frame_error(py, &e))?;
    Ok(ClientFrame {
        kind: frame.kind.into_owned(),
        id: frame.id.map(|id| id.as_bytes().into()),
        channel: frame.channel.map(Into::into),
        key: frame.key.map(Into::into),
        data: frame.data.map(|data| data.as_bytes().into()),
        since: frame.since.map(|s| (s.epoch.into_owned(), s.offset)),
        source: payload.clone().unbind(),
    })
}

/// `{"type":"message","channel":...,"data":<data_json>[,"offset":n]}`.
#[pyfunction]
#[pyo3(signature = (channel, data_json, offset = None))]
fn encode_message<'py>(
    py: Python<'py>,
    channel: &str,
    data_json: &[u8],
    offset: Option<u64>,
) -> Bound<'py, PyBytes> {
    PyBytes::new(py, &codec::encode_message(channel, data_json, offset))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("FrameError", m.py().get_type::<FrameError>())?;
    m.add_class::<ClientFrame>()?;
    m.add_function(wrap_pyfunction!(decode_frame, m)?)?;
    m.add_function(wrap_pyfunction!(encode_message, m)?)?;
    Ok(())
}
