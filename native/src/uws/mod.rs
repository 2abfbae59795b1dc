//! uWebSockets (socketify's prebuilt library) bound natively: the C API
//! resolved at run time, and the request handling that needs no Python.
//! The callbacks and Python objects live in `py::uws`.

pub mod datahook;
pub mod ffi;
pub mod http;
pub mod slab;
