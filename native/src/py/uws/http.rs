//! `HTTPRequest` and the HTTP callbacks (`/*` route, `onData`, `onAborted`).

use std::ffi::{c_char, c_int};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};
use pyo3::{intern, PyTraverseError, PyVisit};

use super::{
    current, extract_headers, guard, out_slice, plain_error, slice, write_head, Deferred,
    HttpConfig, Inflight, Link, Reply, Server, JSON,
};
use crate::uws::ffi::{Api, Ptr, Uws, SSL};
use crate::uws::http::{
    body_plan, has_prefix, hostless_head, latin1, method_upper, plain_error_body, raw_response,
    split_url, stuck_head, Body, BodyPlan, Framing, HeaderList,
};
use crate::uws::slab::Key;

/// One HTTP exchange: the request as copied out of uWS, and `respond()`.
///
/// Built natively for each request; `HTTPRequest(method, path, query_string,
/// headers, client_ip)` from Python builds a detached one (for tests) whose
/// `respond()` does nothing.
#[pyclass(module = "pygw._native", name = "HTTPRequest")]
pub struct HttpRequest {
    #[pyo3(get, set)]
    method: Py<PyAny>,
    #[pyo3(get, set)]
    path: Py<PyAny>,
    #[pyo3(get, set)]
    query_string: Py<PyAny>,
    #[pyo3(get, set)]
    headers: Py<PyAny>,
    #[pyo3(get, set)]
    client_ip: Py<PyAny>,
    #[pyo3(get, set)]
    body: Py<PyAny>,
    params: Option<Py<PyAny>>,
    state: Option<Py<PyAny>>,
    link: Link,
    /// Refused before dispatch: the answer is written straight to the socket,
    /// which is then closed, so that uWS parses nothing after it (a request
    /// hidden behind ambiguous framing would otherwise be served next).
    refused: bool,
}

impl HttpRequest {
    /// Answers, once; false if already answered, aborted or detached.
    fn finish(
        &self,
        status: i64,
        body: &[u8],
        content_type: &[u8],
        headers: &[(Vec<u8>, Vec<u8>)],
        close: bool,
    ) -> bool {
        let Some(server) = self.link.server() else {
            return false;
        };
        let Some(res) = self.link.claim() else {
            return false;
        };
        if self.refused {
            let bytes = raw_response(status, headers, content_type, body);
            // SAFETY: res is live and unanswered (claimed once), inside the uWS
            // callback that refused it; nothing touches it after the close.
            unsafe { write_and_close(&server.api.uws, res, &bytes) };
            return true;
        }
        let reply = Reply {
            status,
            body,
            content_type,
            headers,
            close,
        };
        // SAFETY: res is live (an abort would have cleared it) and unanswered (claimed once).
        unsafe { reply.send(server.api, res) };
        forget(server, &self.link);
        true
    }

    /// The generic error body, if nobody answered.
    fn fail(&self, status: i64, error: &str) {
        if self.link.is_open() {
            self.finish(status, &plain_error_body(status, error), JSON, &[], true);
        }
    }
}

impl HttpRequest {
    /// See `write()`.
    pub(super) fn write_chunk(&self, data: &[u8]) -> u8 {
        let (Some(server), Some(res)) = (self.link.server(), self.link.streaming()) else {
            return SEND_DROPPED;
        };
        if data.is_empty() {
            return SEND_SUCCESS; // an empty chunk would end the body
        }
        let api = server.api;
        let job: (&Api, &[u8]) = (api, data);
        // SAFETY: res is live and streaming; the job outlives the synchronous cork.
        unsafe {
            (api.uws.uws_res_cork)(
                SSL,
                res,
                write_chunk_corked,
                ptr::from_ref(&job).cast_mut().cast(),
            );
            if buffered(api, res) == 0 {
                SEND_SUCCESS
            } else {
                SEND_BACKPRESSURE
            }
        }
    }
}

const SEND_BACKPRESSURE: u8 = 0;
const SEND_SUCCESS: u8 = 1;
const SEND_DROPPED: u8 = 2;

/// The first part of a streamed answer.
struct StreamHead<'a> {
    status: i64,
    content_type: &'a [u8],
    headers: &'a [(Vec<u8>, Vec<u8>)],
    first: &'a [u8],
}

extern "C" fn write_head_corked(res: Ptr, user_data: Ptr) {
    guard("stream start", || {
        // SAFETY: user_data is the `(api, head)` pair of `stream()`, alive
        // for the (synchronous) cork; res is its live response.
        unsafe {
            let (api, head) = *user_data.cast::<(&Api, &StreamHead<'_>)>();
            write_head(api, res, head.status, head.headers, head.content_type);
            // The first write adds `Transfer-Encoding: chunked`.
            (api.uws.uws_res_write)(SSL, res, head.first.as_ptr().cast(), head.first.len());
        }
    });
}

extern "C" fn write_chunk_corked(res: Ptr, user_data: Ptr) {
    guard("stream write", || {
        // SAFETY: user_data is the `(api, data)` pair of `write_chunk`.
        unsafe {
            let (api, data) = *user_data.cast::<(&Api, &[u8])>();
            (api.uws.uws_res_write)(SSL, res, data.as_ptr().cast(), data.len());
        }
    });
}

extern "C" fn end_corked(res: Ptr, user_data: Ptr) {
    guard("stream end", || {
        // SAFETY: user_data is the `&Api` of `end()`.
        unsafe {
            let api = &*user_data.cast::<Api>();
            (api.uws.uws_res_end)(SSL, res, c"".as_ptr(), 0, false);
        }
    });
}

extern "C" fn drain_nothing(_res: Ptr, _user_data: Ptr) {}

/// A streamed answer's socket is writable again. With an `onWritable`
/// handler set, uWS leaves draining its buffer to the handler (and does not
/// arm its 10 s idle timeout, which would cut a quiet stream); an empty cork
/// drains it: uncorking writes what is buffered. No Python here.
extern "C" fn on_writable(res: Ptr, _offset: u64, _user_data: Ptr) -> bool {
    if let Some(api) = crate::uws::ffi::api() {
        // SAFETY: res is the live response of this callback.
        unsafe { (api.uws.uws_res_cork)(SSL, res, drain_nothing, ptr::null_mut()) };
    }
    true
}

/// Bytes waiting in uWS's buffer of the connection of `res`. There is no
/// `uws_res_*` getter; uWS's `getBufferedAmount` is `AsyncSocket`'s, shared
/// by HTTP and WebSocket sockets (both socket extensions start with its
/// `AsyncSocketData`), and `uws_ws_get_buffered_amount` is that call on a
/// socket pointer, which a `uws_res_t *` is.
///
/// # Safety
/// `res` must be a live response.
unsafe fn buffered(api: &Api, res: Ptr) -> u32 {
    (api.uws.uws_ws_get_buffered_amount)(SSL, res)
}

/// Writes `data` to every stream in `streams` (`HTTPRequest`s natively,
/// anything else through its `write` method); returns how many took it.
#[pyfunction]
pub(super) fn stream_write_many(
    streams: &Bound<'_, PyAny>,
    data: &Bound<'_, PyBytes>,
) -> PyResult<usize> {
    let bytes = data.as_bytes();
    let mut count = 0;
    for item in streams.try_iter()? {
        let item = item?;
        let sent = if let Ok(request) = item.cast::<HttpRequest>() {
            request.borrow().write_chunk(bytes)
        } else {
            item.call_method1(intern!(item.py(), "write"), (data,))?
                .extract::<u8>()?
        };
        if sent != SEND_DROPPED {
            count += 1;
        }
    }
    Ok(count)
}

/// Writes `bytes` straight to the socket (uWS's own parser errors do the
/// same: at most once, not through its cork buffer), then shuts it down and
/// closes it.
///
/// # Safety
/// `socket` must be a live connection (`uws_res_t *` is its `us_socket_t *`).
unsafe fn write_and_close(uws: &Uws, socket: Ptr, bytes: &[u8]) {
    let len = c_int::try_from(bytes.len()).unwrap_or(c_int::MAX);
    (uws.us_socket_write)(SSL, socket, bytes.as_ptr().cast(), len, 0);
    (uws.us_socket_shutdown)(SSL, socket);
    (uws.us_socket_close)(SSL, socket, 0, std::ptr::null_mut());
}

/// Drops the slab entry: late `onData`/`onAborted` calls find nothing.
fn forget(server: &Server, link: &Link) {
    if let Some(key) = link.take_key() {
        let removed = server.requests.borrow_mut().remove(key);
        drop(removed);
    }
}

#[pymethods]
impl HttpRequest {
    #[new]
    fn new(
        py: Python<'_>,
        method: Py<PyAny>,
        path: Py<PyAny>,
        query_string: Py<PyAny>,
        headers: Py<PyAny>,
        client_ip: Py<PyAny>,
    ) -> Self {
        HttpRequest {
            method,
            path,
            query_string,
            headers,
            client_ip,
            body: PyBytes::new(py, b"").into_any().unbind(),
            params: None,
            state: None,
            link: Link::detached(),
            refused: false,
        }
    }

    /// Path parameters (set by the router); a new dict until then.
    #[getter]
    fn params(&mut self, py: Python<'_>) -> Py<PyAny> {
        self.params
            .get_or_insert_with(|| PyDict::new(py).into_any().unbind())
            .clone_ref(py)
    }

    #[setter]
    fn set_params(&mut self, value: Py<PyAny>) {
        self.params = Some(value);
    }

    /// Per-request scratch space for hooks and handlers.
    #[getter]
    fn state(&mut self, py: Python<'_>) -> Py<PyAny> {
        self.state
            .get_or_insert_with(|| PyDict::new(py).into_any().unbind())
            .clone_ref(py)
    }

    #[setter]
    fn set_state(&mut self, value: Py<PyAny>) {
        self.state = Some(value);
    }

    /// The client went away before the answer.
    #[getter]
    fn aborted(&self) -> bool {
        self.link.aborted()
    }

    /// `respond()` has written the answer.
    #[getter]
    fn responded(&self) -> bool {
        self.link.done() && !self.link.aborted()
    }

    /// Writes status, headers and body (corked). A no-op returning False once
    /// answered, after an abort, or for a detached request.
    #[pyo3(signature = (status, body, content_type = None, headers = None, close = false))]
    fn respond(
        slf: &Bound<'_, Self>,
        status: i64,
        body: &Bound<'_, PyBytes>,
        content_type: Option<&Bound<'_, PyBytes>>,
        headers: Option<&Bound<'_, PyAny>>,
        close: bool,
    ) -> PyResult<bool> {
        let this = slf.borrow();
        if !this.link.is_open() {
            return Ok(false);
        }
        let headers = extract_headers(headers)?;
        if let Some(server) = this.link.server().filter(|s| s.batching.get()) {
            // Inside the batch: written with the others when it ends.
            let Some(res) = this.link.claim() else {
                return Ok(false);
            };
            server.replies.borrow_mut().push(Deferred {
                request: slf.clone().unbind(),
                res,
                status,
                body: body.clone().unbind(),
                content_type: content_type.map(|c| c.clone().unbind()),
                headers,
                close,
            });
            return Ok(true);
        }
        let content_type = content_type.map_or(JSON, |c| c.as_bytes());
        Ok(this.finish(status, body.as_bytes(), content_type, &headers, close))
    }

    /// Starts a streamed answer: status, headers and the first chunk of a
    /// chunked body (`first`, not empty: an empty chunk would end the body),
    /// corked. The exchange stays open for `write()` until `end()`;
    /// `on_close()` is called once if the client goes away first. False (and
    /// nothing written) once answered, after an abort, or when detached.
    #[pyo3(signature = (status, first, content_type = None, headers = None, on_close = None))]
    fn stream(
        &self,
        status: i64,
        first: &[u8],
        content_type: Option<&[u8]>,
        headers: Option<&Bound<'_, PyAny>>,
        on_close: Option<Py<PyAny>>,
    ) -> PyResult<bool> {
        if first.is_empty() {
            return Err(PyValueError::new_err(
                "the first chunk of a stream cannot be empty",
            ));
        }
        let headers = extract_headers(headers)?;
        let (Some(server), Some(key)) = (self.link.server(), self.link.key()) else {
            return Ok(false);
        };
        let Some(res) = self.link.begin_stream() else {
            return Ok(false);
        };
        if let Some(entry) = server.requests.borrow_mut().get_mut(key) {
            entry.on_close = on_close;
        }
        let head = StreamHead {
            status,
            content_type: content_type.unwrap_or(JSON),
            headers: &headers,
            first,
        };
        let api = server.api;
        let job: (&Api, &StreamHead<'_>) = (api, &head);
        // SAFETY: res is live (an abort would have cleared it) and unanswered;
        // the job outlives the synchronous cork.
        unsafe {
            (api.uws.uws_res_cork)(
                SSL,
                res,
                write_head_corked,
                ptr::from_ref(&job).cast_mut().cast(),
            );
            (api.uws.uws_res_on_writable)(SSL, res, on_writable, ptr::null_mut());
        }
        Ok(true)
    }

    /// Writes one chunk of a streamed answer (corked). 1: written, 0: part
    /// of it waits in uWS's buffer (backpressure), 2: the stream is gone.
    fn write(&self, data: &[u8]) -> u8 {
        self.write_chunk(data)
    }

    /// Ends a streamed answer (the last chunk). The connection stays open for
    /// further requests: uWS's `end(close)` would write a `Connection: close`
    /// header after the chunked body, corrupting it. False if it was not
    /// streaming or is gone; its `on_close` is not called.
    fn end(&self) -> bool {
        let Some(server) = self.link.server() else {
            return false;
        };
        let Some(res) = self.link.finish_stream() else {
            return false;
        };
        let api = server.api;
        // SAFETY: res is live and streaming (claimed once); api outlives the cork.
        unsafe {
            (api.uws.uws_res_cork)(SSL, res, end_corked, ptr::from_ref(api).cast_mut().cast());
        }
        forget(server, &self.link);
        true
    }

    /// Bytes of a streamed answer waiting in uWS's buffer (0 when gone).
    fn buffered_amount(&self) -> u32 {
        match (self.link.server(), self.link.streaming()) {
            // SAFETY: res is live; see `buffered`.
            (Some(server), Some(res)) => unsafe { buffered(server.api, res) },
            _ => 0,
        }
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.method)?;
        visit.call(&self.path)?;
        visit.call(&self.query_string)?;
        visit.call(&self.headers)?;
        visit.call(&self.client_ip)?;
        visit.call(&self.body)?;
        visit.call(&self.params)?;
        visit.call(&self.state)
    }

    fn __clear__(&mut self) {
        self.params = None;
        self.state = None;
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "<HTTPRequest {} {}>",
            self.method.bind(py),
            self.path.bind(py)
        )
    }
}

fn method<'py>(py: Python<'py>, raw: &[u8]) -> Bound<'py, PyString> {
    let known = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];
    for name in known {
        if raw.eq_ignore_ascii_case(name.as_bytes()) {
            return match name {
                "GET" => intern!(py, "GET"),
                "POST" => intern!(py, "POST"),
                "PUT" => intern!(py, "PUT"),
                "DELETE" => intern!(py, "DELETE"),
                "PATCH" => intern!(py, "PATCH"),
                "HEAD" => intern!(py, "HEAD"),
                _ => intern!(py, "OPTIONS"),
            }
            .clone();
        }
    }
    PyString::new(py, &latin1(&method_upper(raw)))
}

/// # Safety
/// `req` must be the live request of the current callback.
unsafe fn header<'a>(uws: &Uws, req: Ptr, name: &[u8]) -> &'a [u8] {
    out_slice(|out| (uws.uws_req_get_header)(req, name.as_ptr().cast(), name.len(), out))
}

/// Whether the request has the header at all (uWS reports an absent header
/// with a NULL pointer, an empty one with an empty slice).
///
/// # Safety
/// `req` must be the live request of the current callback.
unsafe fn has_header(uws: &Uws, req: Ptr, name: &[u8]) -> bool {
    let mut p: *const c_char = std::ptr::null();
    (uws.uws_req_get_header)(req, name.as_ptr().cast(), name.len(), &mut p);
    !p.is_null()
}

/// What `for_each_header` hands every header to.
trait HeaderSink {
    /// Slices of uWS's request buffer: alive during the request callback.
    fn add(&mut self, name: &'static [u8], value: &'static [u8]);
}

impl HeaderSink for HeaderList<'static> {
    fn add(&mut self, name: &'static [u8], value: &'static [u8]) {
        HeaderList::add(self, name, value);
    }
}

impl HeaderSink for Framing {
    fn add(&mut self, name: &'static [u8], value: &'static [u8]) {
        Framing::add(self, name, value);
    }
}

extern "C" fn add_header<S: HeaderSink>(
    name: *const c_char,
    name_len: usize,
    value: *const c_char,
    value_len: usize,
    user_data: Ptr,
) {
    guard("header iteration", || {
        // SAFETY: user_data is the sink of `for_each_header`; the slices are
        // uWS's request buffer, alive during the request callback.
        unsafe {
            let sink = &mut *user_data.cast::<S>();
            sink.add(slice(name, name_len), slice(value, value_len));
        }
    });
}

/// Every request header, in order, to `sink`.
///
/// # Safety
/// `req` must be the live request of the current callback; what `sink` keeps
/// must not outlive it.
unsafe fn for_each_header<S: HeaderSink>(uws: &Uws, req: Ptr, sink: &mut S) {
    (uws.uws_req_for_each_header)(req, add_header::<S>, std::ptr::from_mut(sink).cast());
}

/// Why the request's framing must be refused (400), looking at every header
/// only when a `Content-Length` or `Transfer-Encoding` is there at all.
///
/// # Safety
/// `req` must be the live request of the current callback.
unsafe fn framing_refusal(uws: &Uws, req: Ptr) -> Option<&'static str> {
    if !has_header(uws, req, b"content-length") && !has_header(uws, req, b"transfer-encoding") {
        return None;
    }
    let mut framing = Framing::default();
    for_each_header(uws, req, &mut framing);
    framing.refusal()
}

/// The request headers as a dict: every header for paths under
/// `all_prefixes`, else the configured names.
///
/// # Safety
/// `req` must be the live request of the current callback.
unsafe fn copy_headers<'py>(
    py: Python<'py>,
    uws: &Uws,
    config: &HttpConfig,
    req: Ptr,
    path: &[u8],
) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    if has_prefix(path, &config.all_prefixes) {
        let mut list = HeaderList::default();
        for_each_header(uws, req, &mut list);
        for (name, value) in &list.items {
            dict.set_item(
                PyString::new(py, &latin1(name)),
                PyString::new(py, &latin1(value)),
            )?;
        }
    } else {
        for (name, key) in &config.headers {
            let value = header(uws, req, name);
            if !value.is_empty() {
                dict.set_item(key.bind(py), PyString::new(py, &latin1(value)))?;
            }
        }
    }
    Ok(dict)
}

/// The data handler of uWS's HTTP context (see `uws::datahook`), around
/// uWS's own, for the two kinds of request head uWS never dispatches:
/// - a head without `Host` is handed to uWS with an empty `Host:` line
///   inserted, so that uWS dispatches it and the request callback, told by
///   `Server::hostless`, refuses it (HTTP/1.1) or serves it (HTTP/1.0, where
///   Host is optional);
/// - a whole head that uWS kept without a request or body callback (see
///   `stuck_head`) is refused with 400 and the connection closed.
///
/// Costs, on the common path, a look at the first byte of a chunk, the
/// request line and the header names up to `Host`, and a counter compare.
pub(super) extern "C" fn on_socket_data(socket: Ptr, data: *mut c_char, length: c_int) -> Ptr {
    let Some(server) = current() else {
        return socket; // unreachable: the hook is installed by a live server
    };
    let Some(uws_on_data) = server.uws_on_data.get() else {
        return socket;
    };
    // SAFETY: uSockets gives `length` readable bytes, alive during the call.
    let chunk = unsafe { slice(data, usize::try_from(length).unwrap_or(0)) };
    let rewritten = catch_unwind(AssertUnwindSafe(|| {
        hostless_head(chunk)
            .filter(|_| !server.reading_body(socket))
            .map(|(at, _)| with_empty_host(chunk, at))
    }))
    .unwrap_or(None);
    let before = server.consumed.get();
    let result = match rewritten {
        None => uws_on_data(socket, data, length),
        Some(mut buffer) => {
            let start = buffer.as_mut_ptr().wrapping_add(PADDING).cast::<c_char>();
            let len = c_int::try_from(buffer.len() - 2 * PADDING).unwrap_or(c_int::MAX);
            server.hostless.set(socket as usize);
            let result = uws_on_data(socket, start, len);
            server.hostless.set(0);
            result
        }
    };
    if server.consumed.get() == before && result == socket {
        guard("stalled request", || {
            // SAFETY: the socket is live unless uWS closed it (checked first).
            unsafe { refuse_stuck(server, socket, chunk) }
        });
    }
    result
}

/// Refuses (400, close) the request head at the start of `chunk` if uWS
/// kept it without doing anything (see `stuck_head`).
///
/// # Safety
/// `socket` must be a connection of this server's HTTP context, returned by
/// uWS's data handler just now.
unsafe fn refuse_stuck(server: &'static Server, socket: Ptr, chunk: &[u8]) {
    let uws = &server.api.uws;
    let Some((raw_method, target, why)) = stuck_head(chunk) else {
        return;
    };
    if (uws.us_socket_is_closed)(SSL, socket) != 0
        || (uws.us_socket_is_shut_down)(SSL, socket) != 0
        || server.reading_body(socket)
    {
        return;
    }
    let Some(config) = server.http.get() else {
        return;
    };
    Python::attach(|py| {
        let (path, query) = split_url(target);
        // A `uws_res_t *` is its `us_socket_t *`.
        let built = new_request(
            py,
            server,
            socket,
            raw_method,
            path,
            query,
            PyDict::new(py),
            true,
        );
        match built {
            Ok(request) => error(py, server, config, &request, 400, why),
            Err(err) => {
                server.report(py, "HTTP request handling (before dispatch)", err);
                let body = plain_error_body(400, why);
                write_and_close(uws, socket, &raw_response(400, &[], JSON, &body));
            }
        }
    });
}

/// Padding on both sides of a rewritten chunk (uWS writes fence bytes past
/// the end of what it parses, as into uSockets' padded receive buffer).
const PADDING: usize = 32;

/// `chunk` with `Host:\r\n` inserted at `at`, padded.
fn with_empty_host(chunk: &[u8], at: usize) -> Vec<u8> {
    const HOST: &[u8] = b"Host:\r\n";
    let mut buffer = Vec::with_capacity(chunk.len() + HOST.len() + 2 * PADDING);
    buffer.resize(PADDING, 0);
    buffer.extend_from_slice(&chunk[..at]);
    buffer.extend_from_slice(HOST);
    buffer.extend_from_slice(&chunk[at..]);
    buffer.resize(buffer.len() + PADDING, 0);
    buffer
}

pub(super) extern "C" fn on_request(res: Ptr, req: Ptr, user_data: Ptr) {
    // SAFETY: user_data is the leaked server the route was registered with.
    let server: &'static Server = unsafe { &*user_data.cast::<Server>() };
    guard("HTTP request", || {
        Python::attach(|py| {
            // SAFETY: res and req are this callback's.
            unsafe { request(py, server, res, req) }
        });
    });
}

/// The request as copied out of uWS.
///
/// # Safety
/// `res` and `req` must be the live pair of the current request callback.
unsafe fn build<'py>(
    py: Python<'py>,
    server: &'static Server,
    config: &HttpConfig,
    res: Ptr,
    req: Ptr,
    refused: bool,
) -> PyResult<Bound<'py, HttpRequest>> {
    let uws = &server.api.uws;
    let raw_method = out_slice(|out| (uws.uws_req_get_method)(req, out));
    let full = out_slice(|out| (uws.uws_req_get_full_url)(req, out));
    let (path, query) = split_url(full);
    let headers = copy_headers(py, uws, config, req, path)?;
    new_request(py, server, res, raw_method, path, query, headers, refused)
}

/// An exchange with `res`, from parts copied out of uWS.
#[allow(clippy::too_many_arguments)]
fn new_request<'py>(
    py: Python<'py>,
    server: &'static Server,
    res: Ptr,
    raw_method: &[u8],
    path: &[u8],
    query: &[u8],
    headers: Bound<'py, PyDict>,
    refused: bool,
) -> PyResult<Bound<'py, HttpRequest>> {
    let request = HttpRequest {
        method: method(py, raw_method).into_any().unbind(),
        path: PyString::new(py, &String::from_utf8_lossy(path))
            .into_any()
            .unbind(),
        query_string: PyString::new(py, &String::from_utf8_lossy(query))
            .into_any()
            .unbind(),
        headers: headers.into_any().unbind(),
        client_ip: server.client_ip(py, res).into_any(),
        body: PyBytes::new(py, b"").into_any().unbind(),
        params: None,
        state: None,
        link: Link::new(res, server),
        refused,
    };
    Bound::new(py, request)
}

/// Why the request must be refused before its body is read: ambiguous
/// framing, or HTTP/1.1 without `Host` (see `on_socket_data`).
///
/// # Safety
/// `res` and `req` must be the live pair of the current request callback.
pub(super) unsafe fn refusal(server: &Server, res: Ptr, req: Ptr) -> Option<&'static str> {
    let uws = &server.api.uws;
    if server.take_hostless(res) && !(uws.uws_req_is_ancient)(req) {
        return Some("Missing Host header");
    }
    framing_refusal(uws, req)
}

/// Answers 400 `message` (the app's error body) and closes the connection at
/// once: for requests refused before dispatch.
///
/// # Safety
/// `res` and `req` must be the live pair of the current request or upgrade
/// callback, unanswered.
pub(super) unsafe fn refuse(
    py: Python<'_>,
    server: &'static Server,
    res: Ptr,
    req: Ptr,
    message: &str,
) {
    let Some(config) = server.http.get() else {
        write_and_close(
            &server.api.uws,
            res,
            &raw_response(400, &[], JSON, &plain_error_body(400, message)),
        );
        return;
    };
    match build(py, server, config, res, req, true) {
        Ok(request) => error(py, server, config, &request, 400, message),
        Err(err) => {
            server.report(py, "HTTP request handling (before dispatch)", err);
            let body = plain_error_body(400, message);
            write_and_close(&server.api.uws, res, &raw_response(400, &[], JSON, &body));
        }
    }
}

/// # Safety
/// `res` and `req` must be the live pair of the current request callback.
unsafe fn request(py: Python<'_>, server: &'static Server, res: Ptr, req: Ptr) {
    let api = server.api;
    let uws = &api.uws;
    server.consume();
    let Some(config) = server.http.get() else {
        plain_error(api, res, 500, "Internal Server Error");
        return;
    };
    if let Some(message) = refusal(server, res, req) {
        refuse(py, server, res, req, message);
        return;
    }
    let length = header(uws, req, b"content-length");
    let chunked = !header(uws, req, b"transfer-encoding").is_empty();
    let plan = body_plan(
        (!length.is_empty()).then_some(length),
        chunked,
        config.max_body,
    );
    // uWS closes after the answer only if it is written inside its callback.
    let immediate = !config.batch
        || (uws.uws_req_is_ancient)(req)
        || header(uws, req, b"connection").eq_ignore_ascii_case(b"close");
    let request = match build(py, server, config, res, req, false) {
        Ok(request) => request,
        Err(err) => {
            server.report(py, "HTTP request handling (before dispatch)", err);
            plain_error(api, res, 500, "Internal Server Error");
            return;
        }
    };
    let key = server.requests.borrow_mut().insert(Inflight {
        request: request.clone().unbind(),
        socket: res as usize,
        body: None,
        immediate,
        on_close: None,
    });
    request.borrow().link.set_key(key);
    (uws.uws_res_on_aborted)(SSL, res, on_aborted, key as usize as Ptr);
    match plan {
        BodyPlan::Empty if immediate => dispatch(py, server, config, &request),
        BodyPlan::Empty => server.ready.borrow_mut().push(request.unbind()),
        BodyPlan::Invalid => error(py, server, config, &request, 400, "Invalid Content-Length"),
        BodyPlan::TooLarge => error(py, server, config, &request, 413, "Request body too large"),
        BodyPlan::Read { expected } => {
            if let Some(entry) = server.requests.borrow_mut().get_mut(key) {
                entry.body = Some(Body::new(expected, config.max_body));
            }
            (uws.uws_res_on_data)(SSL, res, on_data, key as usize as Ptr);
        }
    }
}

/// Hands the complete request to Python (`on_request(request)`).
fn dispatch(
    py: Python<'_>,
    server: &Server,
    config: &HttpConfig,
    request: &Bound<'_, HttpRequest>,
) {
    if let Err(err) = config.on_request.call1(py, (request,)) {
        server.report(py, "HTTP request handler", err);
        request.borrow().fail(500, "Internal Server Error");
    }
}

/// Refuses the request (400/413) through Python's `on_error(request, status,
/// message)`, which answers with `close=True`.
fn error(
    py: Python<'_>,
    server: &Server,
    config: &HttpConfig,
    request: &Bound<'_, HttpRequest>,
    status: i64,
    message: &str,
) {
    if let Err(err) = config.on_error.call1(py, (request, status, message)) {
        server.report(py, "HTTP error response", err);
    }
    request.borrow().fail(status, message);
}

extern "C" fn on_data(_res: Ptr, chunk: *const c_char, len: usize, is_end: bool, user_data: Ptr) {
    let Some(server) = current() else {
        return;
    };
    server.consume();
    guard("HTTP body", || {
        Python::attach(|py| {
            // SAFETY: uWS gives `len` readable bytes for this call.
            let chunk = unsafe { slice(chunk, len) };
            body_chunk(py, server, user_data as usize as Key, chunk, is_end);
        });
    });
}

enum Next {
    Wait,
    TooLarge(Py<HttpRequest>),
    Complete(Py<HttpRequest>, Option<Vec<u8>>, bool),
}

fn body_chunk(py: Python<'_>, server: &Server, key: Key, chunk: &[u8], is_end: bool) {
    let Some(config) = server.http.get() else {
        return;
    };
    let next = {
        let mut requests = server.requests.borrow_mut();
        let Some(entry) = requests.get_mut(key) else {
            return; // answered or aborted meanwhile
        };
        let Some(body) = entry.body.as_mut() else {
            return;
        };
        if body.len() + chunk.len() > config.max_body {
            entry.body = None;
            Next::TooLarge(entry.request.clone_ref(py))
        } else if !is_end {
            body.push(chunk);
            Next::Wait
        } else if body.is_empty() {
            // The usual case: the whole body in one chunk, copied once.
            entry.body = None;
            Next::Complete(entry.request.clone_ref(py), None, entry.immediate)
        } else {
            body.push(chunk);
            let data = body.take();
            entry.body = None;
            Next::Complete(entry.request.clone_ref(py), Some(data), entry.immediate)
        }
    };
    match next {
        Next::Wait => {}
        Next::TooLarge(request) => {
            error(
                py,
                server,
                config,
                request.bind(py),
                413,
                "Request body too large",
            );
        }
        Next::Complete(request, data, immediate) => {
            let bytes = PyBytes::new(py, data.as_deref().unwrap_or(chunk));
            request.bind(py).borrow_mut().body = bytes.into_any().unbind();
            if immediate {
                dispatch(py, server, config, request.bind(py));
            } else {
                server.ready.borrow_mut().push(request);
            }
        }
    }
}

extern "C" fn on_aborted(_res: Ptr, user_data: Ptr) {
    let Some(server) = current() else {
        return;
    };
    guard("HTTP abort", || {
        Python::attach(|py| {
            let removed = server
                .requests
                .borrow_mut()
                .remove(user_data as usize as Key);
            if let Some(entry) = removed {
                if let Ok(request) = entry.request.bind(py).try_borrow() {
                    request.link.abort();
                }
                if let Some(on_close) = entry.on_close {
                    if let Err(err) = on_close.call0(py) {
                        server.report(py, "HTTP stream close handler", err);
                    }
                }
            }
        });
    });
}

/// Resets `batching` however the batch ends.
struct Batching<'a>(&'a Server);

impl Drop for Batching<'_> {
    fn drop(&mut self) {
        self.0.batching.set(false);
    }
}

/// Runs the handlers of the requests completed during the libuv iteration,
/// then writes the answers they gave (one corked write each, back to back:
/// the interpreter stays warm across handlers, and the client side gets its
/// answers in a burst rather than one wake-up per answer).
pub(super) fn run_batch(py: Python<'_>, server: &Server) {
    let Some(config) = server.http.get() else {
        return;
    };
    let batch = std::mem::take(&mut *server.ready.borrow_mut());
    if batch.is_empty() {
        return;
    }
    {
        server.batching.set(true);
        let _reset = Batching(server);
        for request in &batch {
            dispatch(py, server, config, request.bind(py));
        }
    }
    let replies = std::mem::take(&mut *server.replies.borrow_mut());
    for reply in replies {
        let request = reply.request.bind(py).borrow();
        // Nothing ran libuv since the answer was given; check anyway.
        if !request.link.aborted() {
            let content_type = reply
                .content_type
                .as_ref()
                .map_or(JSON, |c| c.bind(py).as_bytes());
            let answer = Reply {
                status: reply.status,
                body: reply.body.bind(py).as_bytes(),
                content_type,
                headers: &reply.headers,
                close: reply.close,
            };
            // SAFETY: res is live (not aborted) and was claimed once by `respond`.
            unsafe { answer.send(server.api, reply.res) };
        }
        forget(server, &request.link);
    }
    drop(batch);
}
