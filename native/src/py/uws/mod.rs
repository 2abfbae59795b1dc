//! The uWS transport: `UWSApp` (loop, app, listen, publish), `HTTPRequest`
//! (one HTTP exchange), `UpgradeRequest` (one WebSocket upgrade) and the
//! `ws_*` functions, with the `extern "C"` callbacks uWS calls.
//!
//! GIL: libuv only runs inside `UWSApp.run_nowait()` (and the other calls that
//! can run uWS callbacks synchronously: `listen`, `ws_end`, `ws_close`, ...),
//! all called from Python with the GIL held. Callbacks use that GIL
//! (`Python::attach` is a thread-local check when already attached) and
//! never release it. Python exceptions raised by handlers go to the `report`
//! callable given to `UWSApp`; panics are caught at every callback boundary.

mod http;
mod ws;

use std::cell::{Cell, OnceCell, RefCell};
use std::ffi::{c_char, c_int, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use crate::uws::datahook;
use crate::uws::ffi::{self, Api, ListenConfig, Ptr, SSL};
use crate::uws::http::{encode_latin1, latin1, plain_error_body, status_line, Body};
use crate::uws::slab::{Key, Slab};

pub use http::HttpRequest;
pub use ws::UpgradeRequest;

/// True while libuv runs (`run_nowait`): writes are inside uWS callbacks,
/// where uWS corks the socket being served.
static IN_UV: AtomicBool = AtomicBool::new(false);

/// The server whose callbacks are registered in the loop that runs. One per
/// process at a time (`UWSApp` replaces it).
static CURRENT: AtomicPtr<Server> = AtomicPtr::new(ptr::null_mut());

#[inline]
pub(crate) fn in_uv() -> bool {
    IN_UV.load(Ordering::Relaxed)
}

#[inline]
pub(crate) fn current() -> Option<&'static Server> {
    let p = CURRENT.load(Ordering::Relaxed);
    // SAFETY: servers are leaked, never freed.
    unsafe { p.as_ref() }
}

/// Python handlers of the catch-all HTTP route.
pub(crate) struct HttpConfig {
    on_request: Py<PyAny>,
    on_error: Py<PyAny>,
    /// `(lower-case name, dict key)` copied into every request.
    headers: Vec<(Vec<u8>, Py<PyString>)>,
    /// Paths starting with one of these get every header.
    all_prefixes: Vec<Vec<u8>>,
    max_body: usize,
    /// Run handlers after the libuv iteration, all together, and write
    /// their answers in one burst (see `UwsApp::run_nowait`).
    batch: bool,
}

/// Python handlers of the WebSocket route.
pub(crate) struct WsConfig {
    upgrade: Py<PyAny>,
    open: Py<PyAny>,
    message: Py<PyAny>,
    close: Py<PyAny>,
    pong: Py<PyAny>,
    drain: Py<PyAny>,
    query: Vec<(Vec<u8>, Py<PyString>)>,
    headers: Vec<(Vec<u8>, Py<PyString>)>,
}

/// An HTTP exchange uWS may still call back about (`onAborted`, `onData`).
pub(crate) struct Inflight {
    request: Py<HttpRequest>,
    /// The connection (`uws_res_t *` is its `us_socket_t *`).
    socket: usize,
    /// Set while the body is being received.
    body: Option<Body>,
    /// Dispatch inside the uWS callback, not in the batch (the client asked
    /// to close: uWS only closes after answers written in its callback).
    immediate: bool,
    /// A streamed response's `on_close()`, called once if the client goes
    /// away before the stream is ended (`HTTPRequest.stream`).
    on_close: Option<Py<PyAny>>,
}

/// An answer given while the batch runs, written when it ends.
pub(crate) struct Deferred {
    request: Py<HttpRequest>,
    res: Ptr,
    status: i64,
    body: Py<PyBytes>,
    content_type: Option<Py<PyBytes>>,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    close: bool,
}

/// Everything the callbacks share. Leaked: uWS keeps pointers to it in its
/// handlers for as long as the app exists. Only touched with the GIL held,
/// on the thread running the loop.
pub(crate) struct Server {
    api: &'static Api,
    app: Ptr,
    sloop: Ptr,
    uv_loop: Ptr,
    report: Py<PyAny>,
    http: OnceCell<HttpConfig>,
    ws: OnceCell<WsConfig>,
    requests: RefCell<Slab<Inflight>>,
    upgrades: RefCell<Slab<Py<UpgradeRequest>>>,
    /// Complete requests waiting for the batch.
    ready: RefCell<Vec<Py<HttpRequest>>>,
    /// Answers waiting for the end of the batch.
    replies: RefCell<Vec<Deferred>>,
    /// True while the batch's handlers run: `respond` defers its writes.
    batching: Cell<bool>,
    listen_socket: Cell<Ptr>,
    /// uWS's data handler of the HTTP context, once `listen` replaced it with
    /// `http::on_socket_data`.
    uws_on_data: Cell<Option<ffi::SocketDataHandler>>,
    /// The connection whose request `on_socket_data` is handing to uWS with
    /// an inserted empty `Host:` (it had none); taken by the first request or
    /// upgrade callback of that connection.
    hostless: Cell<usize>,
    /// Request, upgrade and body callbacks so far: `on_socket_data` tells
    /// from it whether uWS did anything with a chunk.
    consumed: Cell<u64>,
    /// The last remote address seen, as text and as a Python string (most
    /// traffic comes from few addresses: proxies, load balancers).
    last_ip: RefCell<(Vec<u8>, Option<Py<PyString>>)>,
    /// The WebSocket route negotiates permessage-deflate: frames sent and
    /// published ask uWS to compress them (uWS sends them as they are to
    /// sockets that did not negotiate it).
    compress: Cell<bool>,
}

impl Server {
    /// Counts a request, upgrade or body callback.
    pub(crate) fn consume(&self) {
        self.consumed.set(self.consumed.get().wrapping_add(1));
    }

    /// Whether `res`'s request is the one `on_socket_data` gave a `Host:`.
    pub(crate) fn take_hostless(&self, res: Ptr) -> bool {
        if self.hostless.get() == res as usize {
            self.hostless.set(0);
            true
        } else {
            false
        }
    }

    /// Whether a request body is being read on connection `socket`.
    pub(crate) fn reading_body(&self, socket: Ptr) -> bool {
        self.requests
            .borrow()
            .values()
            .any(|entry| entry.socket == socket as usize && entry.body.is_some())
    }

    /// Reports a handler's exception to Python (`report(what, exc)`), or
    /// prints it if that fails too.
    pub(crate) fn report(&self, py: Python<'_>, what: &str, err: PyErr) {
        if let Err(failed) = self.report.call1(py, (what, err.value(py))) {
            err.print(py);
            failed.print(py);
        }
    }

    /// The remote address of `res` as a Python string.
    fn client_ip(&self, py: Python<'_>, res: Ptr) -> Py<PyString> {
        // SAFETY: res is the live response of the current callback.
        let text = unsafe {
            out_slice(|out| (self.api.uws.uws_res_get_remote_address_as_text)(SSL, res, out))
        };
        let mut cache = self.last_ip.borrow_mut();
        if let (bytes, Some(s)) = &*cache {
            if bytes.as_slice() == text {
                return s.clone_ref(py);
            }
        }
        let s = PyString::new(py, &latin1(text)).unbind();
        *cache = (text.to_vec(), Some(s.clone_ref(py)));
        s
    }
}

/// Calls a uWS getter with a `const char **` out-parameter.
///
/// # Safety
/// The returned slice borrows uWS memory: use it before the callback returns
/// (and before calling anything that may reuse it).
#[inline]
pub(crate) unsafe fn out_slice<'a>(f: impl FnOnce(*mut *const c_char) -> usize) -> &'a [u8] {
    let mut p: *const c_char = ptr::null();
    let n = f(&mut p);
    if n == 0 || p.is_null() {
        &[]
    } else {
        std::slice::from_raw_parts(p.cast(), n)
    }
}

/// # Safety
/// `data` must point to `len` readable bytes (or `len` must be 0).
#[inline]
pub(crate) unsafe fn slice<'a>(data: *const c_char, len: usize) -> &'a [u8] {
    if len == 0 || data.is_null() {
        &[]
    } else {
        std::slice::from_raw_parts(data.cast(), len)
    }
}

/// Runs a callback body; a panic is printed and stops there (it must not
/// unwind into C).
#[inline]
pub(crate) fn guard(what: &str, f: impl FnOnce()) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(f)) {
        let msg = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        eprintln!("pygw._native: panic in the uWS {what} callback: {msg}");
    }
}

/// `(lower-case bytes, interned key)` for each name.
fn names(py: Python<'_>, names: Vec<String>) -> Vec<(Vec<u8>, Py<PyString>)> {
    names
        .into_iter()
        .map(|n| {
            let lower = n.to_ascii_lowercase().into_bytes();
            (lower, PyString::intern(py, &n).unbind())
        })
        .collect()
}

/// A uWS app on its own libuv loop, driven by Python (`run_nowait` when the
/// loop's backend fd is readable or its timeout is due).
#[pyclass(module = "pygw._native", name = "UWSApp", unsendable)]
pub struct UwsApp {
    server: &'static Server,
}

#[pymethods]
impl UwsApp {
    #[new]
    #[pyo3(signature = (library_path, report, libuv = "libuv.so.1"))]
    fn new(library_path: &str, report: Py<PyAny>, libuv: &str) -> PyResult<Self> {
        let api = ffi::load(library_path, libuv).map_err(PyOSError::new_err)?;
        let uws = &api.uws;
        // SAFETY: plain constructor calls; results checked.
        let (sloop, uv_loop, app) = unsafe {
            let sloop = (uws.socketify_create_loop)();
            if sloop.is_null() || (uws.socketify_constructor_failed)(sloop) {
                return Err(PyRuntimeError::new_err(
                    "could not create the libuv loop for uWebSockets",
                ));
            }
            let uv_loop = (uws.socketify_get_native_loop)(sloop);
            // Make uWS use this libuv loop (thread-local; must precede uws_create_app).
            (uws.uws_get_loop_with_native)(uv_loop);
            let app = (uws.uws_create_app)(SSL, ffi::SocketContextOptions::none());
            if app.is_null() || (uws.uws_constructor_failed)(SSL, app) {
                return Err(PyRuntimeError::new_err(
                    "could not create the uWebSockets app",
                ));
            }
            (sloop, uv_loop, app)
        };
        let server: &'static Server = Box::leak(Box::new(Server {
            api,
            app,
            sloop,
            uv_loop,
            report,
            http: OnceCell::new(),
            ws: OnceCell::new(),
            requests: RefCell::new(Slab::new()),
            upgrades: RefCell::new(Slab::new()),
            ready: RefCell::new(Vec::new()),
            replies: RefCell::new(Vec::new()),
            batching: Cell::new(false),
            listen_socket: Cell::new(ptr::null_mut()),
            uws_on_data: Cell::new(None),
            hostless: Cell::new(0),
            consumed: Cell::new(0),
            last_ip: RefCell::new((Vec::new(), None)),
            compress: Cell::new(false),
        }));
        CURRENT.store(ptr::from_ref(server).cast_mut(), Ordering::Relaxed);
        Ok(UwsApp { server })
    }

    /// Registers the catch-all HTTP route (`/*`). See the stub for the
    /// handler contract.
    #[pyo3(signature = (
        on_request, on_error, header_names, all_header_prefixes, max_body_bytes, batch = true,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn http(
        &self,
        py: Python<'_>,
        on_request: Py<PyAny>,
        on_error: Py<PyAny>,
        header_names: Vec<String>,
        all_header_prefixes: Vec<String>,
        max_body_bytes: usize,
        batch: bool,
    ) -> PyResult<()> {
        let config = HttpConfig {
            on_request,
            on_error,
            headers: names(py, header_names),
            all_prefixes: all_header_prefixes
                .into_iter()
                .map(String::into_bytes)
                .collect(),
            max_body: max_body_bytes,
            batch,
        };
        if self.server.http.set(config).is_err() {
            return Err(PyRuntimeError::new_err(
                "the HTTP route is already registered",
            ));
        }
        let s = self.server;
        // SAFETY: the pattern is NUL-terminated; the server outlives the app.
        unsafe {
            (s.api.uws.uws_app_any)(
                SSL,
                s.app,
                c"/*".as_ptr(),
                http::on_request,
                ptr::from_ref(s).cast_mut().cast(),
            );
        }
        Ok(())
    }

    /// Registers the WebSocket route.
    #[pyo3(signature = (
        path, *, upgrade, open, message, close, pong, drain, query_names, header_names,
        max_payload_length, idle_timeout, max_backpressure, close_on_backpressure_limit,
        send_pings_automatically, compression = 0,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn ws(
        &self,
        py: Python<'_>,
        path: &str,
        upgrade: Py<PyAny>,
        open: Py<PyAny>,
        message: Py<PyAny>,
        close: Py<PyAny>,
        pong: Py<PyAny>,
        drain: Py<PyAny>,
        query_names: Vec<String>,
        header_names: Vec<String>,
        max_payload_length: u32,
        idle_timeout: u16,
        max_backpressure: u32,
        close_on_backpressure_limit: bool,
        send_pings_automatically: bool,
        compression: c_int,
    ) -> PyResult<()> {
        check_compression(compression)?;
        let pattern = CString::new(path).map_err(|_| PyValueError::new_err("NUL in path"))?;
        let config = WsConfig {
            upgrade,
            open,
            message,
            close,
            pong,
            drain,
            query: names(py, query_names),
            headers: names(py, header_names),
        };
        if self.server.ws.set(config).is_err() {
            return Err(PyRuntimeError::new_err(
                "the WebSocket route is already registered",
            ));
        }
        self.server.compress.set(compression != 0);
        let behavior = ffi::Behavior {
            compression,
            max_payload_length,
            idle_timeout,
            max_backpressure,
            close_on_backpressure_limit,
            reset_idle_timeout_on_send: false,
            send_pings_automatically,
            max_lifetime: 0,
            upgrade: Some(ws::on_upgrade),
            open: Some(ws::on_open),
            message: Some(ws::on_message),
            drain: Some(ws::on_drain),
            ping: None,
            pong: Some(ws::on_pong),
            close: Some(ws::on_close),
            subscription: None,
        };
        let s = self.server;
        // SAFETY: uWS copies the pattern; the server outlives the app.
        unsafe {
            (s.api.uws.uws_ws)(
                SSL,
                s.app,
                pattern.as_ptr(),
                behavior,
                ptr::from_ref(s).cast_mut().cast(),
            );
        }
        Ok(())
    }

    /// Binds `host:port` (port 0: any free port; `SO_REUSEPORT`, uSockets'
    /// default). Returns the bound port; OSError if it cannot listen.
    /// `backlog` > 0 replaces uSockets' accept backlog of 512 (the kernel
    /// caps it at `net.core.somaxconn`).
    #[pyo3(signature = (host, port, backlog = 0))]
    fn listen(&self, host: &str, port: c_int, backlog: c_int) -> PyResult<c_int> {
        let s = self.server;
        let c_host = CString::new(host).map_err(|_| PyValueError::new_err("NUL in host"))?;
        let mut socket: Ptr = ptr::null_mut();
        let config = ListenConfig {
            port,
            host: c_host.as_ptr(),
            options: 0,
        };
        // SAFETY: uWS calls on_listen synchronously with `socket` as user data.
        unsafe {
            (s.api.uws.uws_app_listen_with_config)(
                SSL,
                s.app,
                config,
                on_listen,
                ptr::from_mut(&mut socket).cast(),
            );
        }
        if socket.is_null() {
            return Err(PyOSError::new_err(format!(
                "could not listen on {host}:{port}"
            )));
        }
        if backlog > 0 {
            // SAFETY: a listen socket starts with its poll; listen() on a
            // listening socket only changes the backlog.
            let failed = unsafe { libc::listen((s.api.uws.us_poll_fd)(socket), backlog) } != 0;
            if failed {
                let err = std::io::Error::last_os_error();
                // SAFETY: the listen socket just opened, closed once.
                unsafe { (s.api.uws.us_listen_socket_close)(SSL, socket) };
                return Err(PyOSError::new_err(format!(
                    "listen backlog {backlog}: {err}"
                )));
            }
        }
        if s.uws_on_data.get().is_none() {
            // SAFETY: a listen socket belongs to uWS's HTTP context (live, all
            // handlers set); the loop runs on this thread only.
            let hooked = unsafe {
                let context = (s.api.uws.us_socket_context)(SSL, socket);
                datahook::replace_on_data(&s.api.uws, context, http::on_socket_data)
            };
            match hooked {
                Ok(original) => s.uws_on_data.set(Some(original)),
                Err(err) => {
                    // SAFETY: the listen socket just opened, closed once.
                    unsafe { (s.api.uws.us_listen_socket_close)(SSL, socket) };
                    return Err(PyRuntimeError::new_err(err));
                }
            }
        }
        let previous = s.listen_socket.replace(socket);
        if !previous.is_null() {
            // SAFETY: the listen socket of an earlier call, still open.
            unsafe { (s.api.uws.us_listen_socket_close)(SSL, previous) };
        }
        // SAFETY: socket is the live listen socket.
        Ok(unsafe { (s.api.uws.us_socket_local_port)(SSL, socket) })
    }

    /// Stops accepting connections (open ones stay). False if not listening.
    fn close_listener(&self) -> bool {
        let s = self.server;
        let socket = s.listen_socket.replace(ptr::null_mut());
        if socket.is_null() {
            return false;
        }
        // SAFETY: the live listen socket, closed once.
        unsafe { (s.api.uws.us_listen_socket_close)(SSL, socket) };
        true
    }

    /// Sends `message` to every subscriber of `topic`. From outside the loop,
    /// uWS queues it per subscriber and writes on the next loop iteration.
    #[pyo3(signature = (topic, message, opcode = 1))]
    fn publish(&self, topic: &[u8], message: &[u8], opcode: c_int) -> bool {
        let s = self.server;
        // SAFETY: both buffers outlive the call (uWS copies).
        unsafe {
            (s.api.uws.uws_publish)(
                SSL,
                s.app,
                topic.as_ptr().cast(),
                topic.len(),
                message.as_ptr().cast(),
                message.len(),
                opcode,
                s.compress.get(),
            )
        }
    }

    fn num_subscribers(&self, topic: &[u8]) -> u32 {
        let s = self.server;
        // SAFETY: the topic outlives the call.
        unsafe { (s.api.uws.uws_num_subscribers)(SSL, s.app, topic.as_ptr().cast(), topic.len()) }
    }

    /// One non-blocking libuv iteration (callbacks run inside, `in_uv` is
    /// True meanwhile), then the batch: the HTTP requests completed during
    /// the iteration go to `on_request` one after the other and the answers
    /// they give right away are written together at the end. Returns
    /// `backend_timeout()` after it.
    fn run_nowait(&self, py: Python<'_>) -> c_int {
        let s = self.server;
        let was = IN_UV.swap(true, Ordering::Relaxed);
        // SAFETY: the loop is live; callbacks catch everything.
        unsafe { (s.api.uws.socketify_loop_run)(s.sloop, ffi::RUN_NOWAIT) };
        IN_UV.store(was, Ordering::Relaxed);
        if !was {
            http::run_batch(py, s);
        }
        // SAFETY: the loop is live.
        unsafe { (s.api.uv.uv_backend_timeout)(s.uv_loop) }
    }

    /// libuv's backend (epoll) fd: readable when the loop has work.
    fn backend_fd(&self) -> c_int {
        // SAFETY: the loop is live.
        unsafe { (self.server.api.uv.uv_backend_fd)(self.server.uv_loop) }
    }

    /// Milliseconds until libuv's next timer (-1: none, 0: run again now).
    fn backend_timeout(&self) -> c_int {
        // SAFETY: the loop is live.
        unsafe { (self.server.api.uv.uv_backend_timeout)(self.server.uv_loop) }
    }

    #[getter]
    fn in_uv(&self) -> bool {
        in_uv()
    }

    /// HTTP exchanges uWS may still report about (reading a body or answered
    /// later).
    #[getter]
    fn pending_requests(&self) -> usize {
        self.server.requests.borrow().len()
    }

    /// Upgrades waiting for `accept`/`reject`.
    #[getter]
    fn pending_upgrades(&self) -> usize {
        self.server.upgrades.borrow().len()
    }

    #[getter]
    fn library_path(&self) -> &str {
        &self.server.api.path
    }
}

/// A `uws_compress_options_t` value: 0, or a compressor (shared or a
/// dedicated window/memory pair) together with a decompressor. uWS needs
/// both to negotiate permessage-deflate and inflate what clients send.
fn check_compression(value: c_int) -> PyResult<()> {
    let compressor = value & ffi::COMPRESSOR_MASK;
    let decompressor = (value & ffi::DECOMPRESSOR_MASK) >> 8;
    let known_bits = value & !(ffi::COMPRESSOR_MASK | ffi::DECOMPRESSOR_MASK) == 0;
    let dedicated_ok = |c: c_int| (9..=15).contains(&(c >> 4)) && (1..=9).contains(&(c & 0xF));
    let ok = value == 0
        || (known_bits
            && (compressor == 1 || dedicated_ok(compressor))
            && (decompressor == 1 || (9..=15).contains(&decompressor)));
    if ok {
        Ok(())
    } else {
        Err(PyValueError::new_err(format!(
            "compression must be 0 or a uWS compressor with a decompressor, not {value:#x}"
        )))
    }
}

extern "C" fn on_listen(socket: Ptr, _config: ListenConfig, user_data: Ptr) {
    // SAFETY: user_data is the `&mut Ptr` given by `listen`, alive during the call.
    unsafe { *user_data.cast::<Ptr>() = socket };
}

pub(crate) fn api() -> PyResult<&'static Api> {
    ffi::api().ok_or_else(|| PyRuntimeError::new_err("no UWSApp was created"))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<UwsApp>()?;
    m.add_class::<HttpRequest>()?;
    m.add_class::<UpgradeRequest>()?;
    m.add_function(wrap_pyfunction!(http::stream_write_many, m)?)?;
    ws::register(m)
}

const DONE: u8 = 1;
const ABORTED: u8 = 2;
/// Status and headers are written, the body is being streamed.
const STREAMING: u8 = 4;

/// Where an exchange (HTTP request or WebSocket upgrade) stands with uWS.
/// Atomics only so that callbacks and methods can share `&self`.
pub(crate) struct Link {
    /// `uws_res_t *`; 0 when detached (built from Python) or finished.
    res: AtomicUsize,
    /// Slab key of the entry uWS's `onAborted`/`onData` refer to; 0: none.
    key: AtomicU64,
    /// The `&'static Server`, or 0 when detached.
    server: usize,
    flags: AtomicU8,
}

impl Link {
    pub(crate) const fn detached() -> Self {
        Link {
            res: AtomicUsize::new(0),
            key: AtomicU64::new(0),
            server: 0,
            flags: AtomicU8::new(0),
        }
    }

    pub(crate) fn new(res: Ptr, server: &'static Server) -> Self {
        Link {
            res: AtomicUsize::new(res as usize),
            key: AtomicU64::new(0),
            server: ptr::from_ref(server) as usize,
            flags: AtomicU8::new(0),
        }
    }

    pub(crate) fn server(&self) -> Option<&'static Server> {
        // SAFETY: 0 or a leaked (never freed) server.
        unsafe { (self.server as *const Server).as_ref() }
    }

    /// Not answered, not aborted, not detached.
    pub(crate) fn is_open(&self) -> bool {
        self.res.load(Ordering::Relaxed) != 0 && self.flags.load(Ordering::Relaxed) == 0
    }

    pub(crate) fn aborted(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & ABORTED != 0
    }

    pub(crate) fn done(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & DONE != 0
    }

    /// The right to answer: the response pointer, given out once.
    pub(crate) fn claim(&self) -> Option<Ptr> {
        let res = self.res.load(Ordering::Relaxed);
        let unanswered = self
            .flags
            .compare_exchange(0, DONE, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok();
        if res == 0 || !unanswered {
            return None;
        }
        self.res.store(0, Ordering::Relaxed);
        Some(res as Ptr)
    }

    /// The right to stream the answer: the response pointer, given out once;
    /// it stays set (see [`Link::streaming`]) until [`Link::finish_stream`]
    /// or an abort.
    pub(crate) fn begin_stream(&self) -> Option<Ptr> {
        let res = self.res.load(Ordering::Relaxed);
        if res == 0
            || self
                .flags
                .compare_exchange(0, STREAMING, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return None;
        }
        Some(res as Ptr)
    }

    /// The response of a stream still going (not ended, not aborted).
    pub(crate) fn streaming(&self) -> Option<Ptr> {
        let res = self.res.load(Ordering::Relaxed);
        (res != 0 && self.flags.load(Ordering::Relaxed) == STREAMING).then_some(res as Ptr)
    }

    /// Ends the stream: the response pointer, given out once.
    pub(crate) fn finish_stream(&self) -> Option<Ptr> {
        let res = self.streaming()?;
        self.flags.fetch_or(DONE, Ordering::Relaxed);
        self.res.store(0, Ordering::Relaxed);
        Some(res)
    }

    pub(crate) fn key(&self) -> Option<Key> {
        match self.key.load(Ordering::Relaxed) {
            0 => None,
            key => Some(key),
        }
    }

    pub(crate) fn set_key(&self, key: Key) {
        self.key.store(key, Ordering::Relaxed);
    }

    pub(crate) fn take_key(&self) -> Option<Key> {
        match self.key.swap(0, Ordering::Relaxed) {
            0 => None,
            key => Some(key),
        }
    }

    /// The client went away: nothing may touch the response any more.
    pub(crate) fn abort(&self) {
        self.flags.fetch_or(ABORTED, Ordering::Relaxed);
        self.res.store(0, Ordering::Relaxed);
        self.key.store(0, Ordering::Relaxed);
    }
}

pub(crate) const JSON: &[u8] = b"application/json";

/// A whole HTTP response.
/// A response's head: the status line first (uWS writes `200 OK` if a header
/// comes first), the extra headers, then Content-Type unless it is empty.
///
/// # Safety
/// `res` must be a live response whose head has not been written.
pub(crate) unsafe fn write_head(
    api: &Api,
    res: Ptr,
    status: i64,
    headers: &[(Vec<u8>, Vec<u8>)],
    content_type: &[u8],
) {
    let uws = &api.uws;
    let status = status_line(status);
    (uws.uws_res_write_status)(SSL, res, status.as_ptr().cast(), status.len());
    for (name, value) in headers {
        (uws.uws_res_write_header)(
            SSL,
            res,
            name.as_ptr().cast(),
            name.len(),
            value.as_ptr().cast(),
            value.len(),
        );
    }
    if !content_type.is_empty() {
        (uws.uws_res_write_header)(
            SSL,
            res,
            c"Content-Type".as_ptr(),
            12,
            content_type.as_ptr().cast(),
            content_type.len(),
        );
    }
}

pub(crate) struct Reply<'a> {
    pub status: i64,
    pub body: &'a [u8],
    pub content_type: &'a [u8],
    pub headers: &'a [(Vec<u8>, Vec<u8>)],
    pub close: bool,
}

impl Reply<'_> {
    /// Status line first (uWS writes `200 OK` if a header comes first), the
    /// extra headers, Content-Type, then the body (uWS adds Content-Length,
    /// and `Connection: close` when closing).
    ///
    /// # Safety
    /// `res` must be a live response that has not been answered.
    unsafe fn write(&self, api: &Api, res: Ptr) {
        let uws = &api.uws;
        write_head(api, res, self.status, self.headers, self.content_type);
        (uws.uws_res_end)(
            SSL,
            res,
            self.body.as_ptr().cast(),
            self.body.len(),
            self.close,
        );
    }

    /// Writes the response corked: inside a uWS callback of this socket uWS
    /// just runs the writes (already corked); from asyncio the cork sends
    /// everything in one go when it ends.
    ///
    /// # Safety
    /// As for `write`.
    pub(crate) unsafe fn send(&self, api: &'static Api, res: Ptr) {
        let job: (&Api, &Reply<'_>) = (api, self);
        (api.uws.uws_res_cork)(
            SSL,
            res,
            write_corked,
            ptr::from_ref(&job).cast_mut().cast(),
        );
    }
}

extern "C" fn write_corked(res: Ptr, user_data: Ptr) {
    guard("response write", || {
        // SAFETY: user_data is the `(api, reply)` pair of `Reply::send`,
        // alive for the duration of the (synchronous) cork.
        unsafe {
            let (api, reply) = *user_data.cast::<(&Api, &Reply<'_>)>();
            reply.write(api, res);
        }
    });
}

/// The last-resort answer when Python could not produce one.
///
/// # Safety
/// As for `Reply::write`.
pub(crate) unsafe fn plain_error(api: &'static Api, res: Ptr, status: i64, error: &str) {
    let body = plain_error_body(status, error);
    Reply {
        status,
        body: &body,
        content_type: JSON,
        headers: &[],
        close: true,
    }
    .send(api, res);
}

/// Response headers given from Python as `[(name, value), ...]` (or None),
/// encoded as Latin-1.
pub(crate) fn extract_headers(
    headers: Option<&Bound<'_, PyAny>>,
) -> PyResult<Vec<(Vec<u8>, Vec<u8>)>> {
    let Some(headers) = headers.filter(|h| !h.is_none()) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for item in headers.try_iter()? {
        let (name, value): (String, String) = item?.extract()?;
        let encode = |s: &str| {
            encode_latin1(s)
                .map(|b| b.into_owned())
                .ok_or_else(|| PyValueError::new_err(format!("header text is not Latin-1: {s:?}")))
        };
        out.push((encode(&name)?, encode(&value)?));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_is_given_out_once_and_ends_once() {
        let link = Link::detached();
        link.res.store(0x1000, Ordering::Relaxed);
        assert!(link.is_open());
        assert_eq!(link.begin_stream(), Some(0x1000 as Ptr));
        assert!(link.begin_stream().is_none(), "streamed once");
        assert!(!link.is_open(), "respond() is refused while streaming");
        assert!(link.claim().is_none());
        assert_eq!(link.streaming(), Some(0x1000 as Ptr));
        assert_eq!(link.finish_stream(), Some(0x1000 as Ptr));
        assert!(link.streaming().is_none());
        assert!(link.finish_stream().is_none(), "ended once");
        assert!(link.done() && !link.aborted());
    }

    #[test]
    fn an_aborted_stream_is_gone() {
        let link = Link::detached();
        link.res.store(0x2000, Ordering::Relaxed);
        assert!(link.begin_stream().is_some());
        link.abort();
        assert!(link.streaming().is_none());
        assert!(link.finish_stream().is_none());
        assert!(link.aborted());
        let answered = Link::detached();
        answered.res.store(0x3000, Ordering::Relaxed);
        assert!(answered.claim().is_some());
        assert!(
            answered.begin_stream().is_none(),
            "an answered request cannot stream"
        );
    }
}
