//! Rust core of pygw, exposed to Python as `pygw._native`.
//!
//! The modules below are plain Rust with their own unit tests; `py` holds
//! the thin PyO3 wrappers that make up the Python API.

pub mod cache;
pub mod channels;
pub mod clock;
pub mod codec;
pub mod history;
pub mod jsonguard;
pub mod jwt;
pub mod keys;
pub mod ratelimit;
pub mod uws;

mod py;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    py::register(m)
}
