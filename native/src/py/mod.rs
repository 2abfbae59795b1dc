//! PyO3 wrappers: argument conversion, default clocks, exceptions.

mod channels;
mod codec;
mod history;
mod json;
mod jsonguard;
mod jwt;
mod ratelimit;
mod uws;

use pyo3::prelude::*;

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    jwt::register(m)?;
    codec::register(m)?;
    jsonguard::register(m)?;
    channels::register(m)?;
    ratelimit::register(m)?;
    history::register(m)?;
    uws::register(m)?;
    Ok(())
}
