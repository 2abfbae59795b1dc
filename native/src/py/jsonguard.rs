//! `check_json`, `JSONLimitError` and the limits' constants.

use pyo3::create_exception;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use crate::codec::MAX_ID_BYTES;
use crate::jsonguard::{self, Limits, Violation, DEPTH_CAP, MAX_DEPTH};

create_exception!(
    pygw._native,
    JSONLimitError,
    PyValueError,
    "A JSON text was refused by `check_json`; `kind`, `status`, `position` and `message` say why."
);

fn limit_error(py: Python<'_>, v: &Violation) -> PyErr {
    let message = v.to_string();
    let err = JSONLimitError::new_err(message.clone());
    let value = err.value(py);
    let set_attributes = || -> PyResult<()> {
        value.setattr("kind", v.kind())?;
        value.setattr("status", v.status())?;
        value.setattr("position", v.position())?;
        value.setattr("message", message)
    };
    if let Err(failed) = set_attributes() {
        return failed;
    }
    err
}

/// Checks a JSON text (`bytes`, UTF-8, or `str`) in one pass without building
/// it: size, nesting depth, 64-bit integers, finite numbers, paired
/// surrogates, syntax. Raises JSONLimitError.
#[pyfunction]
#[pyo3(signature = (text, *, max_bytes, max_depth = MAX_DEPTH))]
fn check_json(
    py: Python<'_>,
    text: &Bound<'_, PyAny>,
    max_bytes: usize,
    max_depth: usize,
) -> PyResult<()> {
    if max_depth > DEPTH_CAP {
        return Err(PyValueError::new_err(format!(
            "max_depth must be at most {DEPTH_CAP}"
        )));
    }
    let limits = Limits {
        max_bytes,
        max_depth,
    };
    let checked = if let Ok(bytes) = text.cast::<PyBytes>() {
        jsonguard::check_bytes(bytes.as_bytes(), limits)
    } else if let Ok(s) = text.cast::<PyString>() {
        match s.to_str() {
            Ok(s) => jsonguard::check(s, limits),
            // Lone surrogates in a str: no UTF-8 encoder can write them.
            Err(_) => Err(Violation::LoneSurrogate { at: 0 }),
        }
    } else {
        return Err(PyTypeError::new_err("text must be bytes or str"));
    };
    checked.map_err(|v| limit_error(py, &v))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("JSONLimitError", m.py().get_type::<JSONLimitError>())?;
    m.add("JSON_MAX_DEPTH", MAX_DEPTH)?;
    m.add("FRAME_ID_MAX_BYTES", MAX_ID_BYTES)?;
    m.add_function(wrap_pyfunction!(check_json, m)?)?;
    Ok(())
}
