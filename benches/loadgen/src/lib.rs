//! pygw-loadgen: a small, allocation-frugal load generator for the pygw gateway.
//!
//! One binary, one module per concern:
//! - [`cli`]: argument parsing into [`cli::Opts`]
//! - [`ws`]: hand-rolled WebSocket client framing (parser, encoder, handshake)
//! - [`http`]: minimal keep-alive HTTP/1.1 client (request writer, response parser)
//! - [`histogram`]: log-linear latency histogram with percentiles
//! - [`proto`]: the wire protocols spoken (pygw, Socket.IO, Centrifuge)
//! - [`scan`]: cheap byte scans of JSON frames (type, numeric fields) without parsing
//! - [`runner`]: worker threads (one current-thread tokio runtime each) and phases
//! - [`modes`]: `ws-rtt`, `fanout`, `hold`, `http`, `bench-parse`, `mock-server`
//! - [`mock`]: a tiny in-process gateway look-alike used by the tests and `mock-server`

pub mod cli;
pub mod clock;
pub mod creds;
pub mod histogram;
pub mod http;
pub mod mock;
pub mod modes;
pub mod net;
pub mod proto;
pub mod report;
pub mod runner;
pub mod scan;
pub mod sha1;
pub mod sys;
pub mod template;
pub mod url;
pub mod util;
pub mod ws;
