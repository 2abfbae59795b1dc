//! `UpgradeRequest`, the WebSocket callbacks and the `ws_*` functions.
//!
//! The per-connection Python object given to `UpgradeRequest.accept` is the
//! uWS user data: a strong reference (no handle, no cycle) released after
//! the close callback. While the socket is open the object's `ws` attribute
//! holds the `uws_websocket_t *` as an int, which the `ws_*` functions take.

use std::ffi::{c_char, c_int};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};
use pyo3::{intern, PyTraverseError, PyVisit};

use super::{
    api, current, extract_headers, guard, http, in_uv, out_slice, plain_error, slice, Link, Reply,
    Server, WsConfig, JSON,
};
use crate::uws::ffi::{Api, Ptr, SSL};
use crate::uws::http::{latin1, plain_error_body, query_value, raw_query, split_url};
use crate::uws::slab::Key;

/// A WebSocket upgrade request, answered with `accept(socket)` or
/// `reject(...)`, now or later (from asyncio) unless `aborted`.
#[pyclass(module = "pygw._native", name = "UpgradeRequest")]
pub struct UpgradeRequest {
    #[pyo3(get)]
    path: Py<PyAny>,
    #[pyo3(get)]
    query: Py<PyAny>,
    #[pyo3(get)]
    headers: Py<PyAny>,
    #[pyo3(get)]
    key: Py<PyAny>,
    #[pyo3(get)]
    protocol: Py<PyAny>,
    #[pyo3(get)]
    extensions: Py<PyAny>,
    #[pyo3(get)]
    client_ip: Py<PyAny>,
    /// `uws_socket_context_t *` of the WebSocket route.
    context: usize,
    link: Link,
}

fn forget(server: &Server, link: &Link) {
    if let Some(key) = link.take_key() {
        let removed = server.upgrades.borrow_mut().remove(key);
        drop(removed);
    }
}

impl UpgradeRequest {
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
        forget(server, &self.link);
        let reply = Reply {
            status,
            body,
            content_type,
            headers,
            close,
        };
        // SAFETY: res is live (not aborted) and unanswered (claimed once).
        unsafe { reply.send(server.api, res) };
        true
    }
}

/// `TCP_CORK` on a socket while uWS upgrades it from asyncio.
///
/// Inside a uWS callback the socket is corked in user space and the 101
/// response and the welcome frame leave in one `send()`. An upgrade completed
/// from asyncio (after an await, e.g. the Redis SUBSCRIBE of the user
/// channel) is not, and uWS writes the response with one `send()` per header
/// line: each pays the loopback transmit and the receiver's wake-up (57% of a
/// Redis-backed connect's CPU, measured). Under `TCP_CORK` those sends only
/// append to the socket buffer and one segment leaves when the cork is
/// removed. uWS's own cork (`uws_res_cork`) cannot be used around an
/// upgrade: when the reallocated WebSocket keeps the response's address,
/// `HttpResponse::cork` goes on to read WebSocket memory as the HTTP state
/// and may close the new socket (seen: 44 of 50,000 upgrades cut off).
struct KernelCork {
    fd: c_int,
}

impl KernelCork {
    /// # Safety
    /// `res` is a live, unanswered `uws_res_t *`.
    unsafe fn new(api: &Api, res: Ptr) -> Option<Self> {
        let fd = (api.uws.uws_res_get_native_handle)(SSL, res) as usize as c_int;
        set_tcp_cork(fd, true).then_some(Self { fd })
    }
}

impl Drop for KernelCork {
    fn drop(&mut self) {
        // Also flushes. If `open` closed the socket the call fails harmlessly:
        // nothing ran in between that could have reused the descriptor.
        set_tcp_cork(self.fd, false);
    }
}

fn set_tcp_cork(fd: c_int, on: bool) -> bool {
    let value = c_int::from(on);
    // SAFETY: a plain setsockopt on an int option; failure is reported.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_CORK,
            std::ptr::from_ref(&value).cast(),
            std::mem::size_of::<c_int>() as libc::socklen_t,
        ) == 0
    }
}

#[pymethods]
impl UpgradeRequest {
    /// A detached upgrade request (tests): `accept`/`reject` do nothing.
    #[new]
    #[pyo3(signature = (*, path, query, headers, key, protocol, extensions, client_ip))]
    fn new(
        path: Py<PyAny>,
        query: Py<PyAny>,
        headers: Py<PyAny>,
        key: Py<PyAny>,
        protocol: Py<PyAny>,
        extensions: Py<PyAny>,
        client_ip: Py<PyAny>,
    ) -> Self {
        UpgradeRequest {
            path,
            query,
            headers,
            key,
            protocol,
            extensions,
            client_ip,
            context: 0,
            link: Link::detached(),
        }
    }

    #[getter]
    fn aborted(&self) -> bool {
        self.link.aborted()
    }

    /// Accepted or rejected.
    #[getter]
    fn answered(&self) -> bool {
        self.link.done() && !self.link.aborted()
    }

    /// Upgrades the connection; `socket` becomes the connection's object
    /// (its `ws` is set, then `open(socket)` runs before this returns). False
    /// if already answered, aborted or detached.
    fn accept(&self, py: Python<'_>, socket: Bound<'_, PyAny>) -> PyResult<bool> {
        if !self.link.is_open() {
            return Ok(false);
        }
        let key = self.key.bind(py).cast::<PyBytes>()?.as_bytes();
        let protocol = self.protocol.bind(py).cast::<PyBytes>()?.as_bytes();
        let extensions = self.extensions.bind(py).cast::<PyBytes>()?.as_bytes();
        let Some(server) = self.link.server() else {
            return Ok(false);
        };
        let Some(res) = self.link.claim() else {
            return Ok(false);
        };
        forget(server, &self.link);
        // uWS's user data owns this reference until the close callback.
        let user_data = socket.unbind().into_ptr();
        let cork = if in_uv() {
            None // corked by uWS already
        } else {
            // SAFETY: res is live and unanswered (claimed above).
            unsafe { KernelCork::new(server.api, res) }
        };
        // SAFETY: res is live and unanswered; the buffers outlive the call.
        // uWS runs `open` synchronously.
        unsafe {
            (server.api.uws.uws_res_upgrade)(
                SSL,
                res,
                user_data.cast(),
                key.as_ptr().cast(),
                key.len(),
                protocol.as_ptr().cast(),
                protocol.len(),
                extensions.as_ptr().cast(),
                extensions.len(),
                self.context as Ptr,
            );
        }
        drop(cork);
        Ok(true)
    }

    /// Refuses the upgrade with an HTTP response (e.g. 403, 429). False if
    /// already answered, aborted or detached.
    #[pyo3(signature = (status, body, content_type = None, headers = None, close = false))]
    fn reject(
        &self,
        status: i64,
        body: &[u8],
        content_type: Option<&[u8]>,
        headers: Option<&Bound<'_, PyAny>>,
        close: bool,
    ) -> PyResult<bool> {
        if !self.link.is_open() {
            return Ok(false);
        }
        let headers = extract_headers(headers)?;
        Ok(self.finish(status, body, content_type.unwrap_or(JSON), &headers, close))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.path)?;
        visit.call(&self.query)?;
        visit.call(&self.headers)?;
        visit.call(&self.key)?;
        visit.call(&self.protocol)?;
        visit.call(&self.extensions)?;
        visit.call(&self.client_ip)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!("<UpgradeRequest {}>", self.path.bind(py))
    }
}

pub(super) extern "C" fn on_upgrade(res: Ptr, req: Ptr, context: Ptr, user_data: Ptr) {
    // SAFETY: user_data is the leaked server the route was registered with.
    let server: &'static Server = unsafe { &*user_data.cast::<Server>() };
    guard("WebSocket upgrade", || {
        Python::attach(|py| {
            // SAFETY: res, req and context are this callback's.
            unsafe { upgrade(py, server, res, req, context) }
        });
    });
}

/// # Safety
/// `res`, `req` and `context` must be those of the current upgrade callback.
unsafe fn upgrade(py: Python<'_>, server: &'static Server, res: Ptr, req: Ptr, context: Ptr) {
    let api = server.api;
    let uws = &api.uws;
    let Some(config) = server.ws.get() else {
        plain_error(api, res, 500, "Internal Server Error");
        return;
    };
    server.consume();
    if let Some(message) = http::refusal(server, res, req) {
        http::refuse(py, server, res, req, message);
        return;
    }
    let built = (|| -> PyResult<Bound<'_, UpgradeRequest>> {
        let full = out_slice(|out| (uws.uws_req_get_full_url)(req, out));
        let (path, _) = split_url(full);
        let raw = raw_query(full);
        let query = PyDict::new(py);
        for (name, key) in &config.query {
            if let Some(value) = query_value(raw, name) {
                if !value.is_empty() {
                    query.set_item(
                        key.bind(py),
                        PyString::new(py, &String::from_utf8_lossy(&value)),
                    )?;
                }
            }
        }
        let headers = PyDict::new(py);
        let header = |name: &[u8]| {
            out_slice(|out| (uws.uws_req_get_header)(req, name.as_ptr().cast(), name.len(), out))
        };
        for (name, key) in &config.headers {
            let value = header(name);
            if !value.is_empty() {
                headers.set_item(key.bind(py), PyString::new(py, &latin1(value)))?;
            }
        }
        let request = UpgradeRequest {
            path: PyString::new(py, &String::from_utf8_lossy(path))
                .into_any()
                .unbind(),
            query: query.into_any().unbind(),
            headers: headers.into_any().unbind(),
            key: PyBytes::new(py, header(b"sec-websocket-key"))
                .into_any()
                .unbind(),
            protocol: PyBytes::new(py, header(b"sec-websocket-protocol"))
                .into_any()
                .unbind(),
            extensions: PyBytes::new(py, header(b"sec-websocket-extensions"))
                .into_any()
                .unbind(),
            client_ip: server.client_ip(py, res).into_any(),
            context: context as usize,
            link: Link::new(res, server),
        };
        Bound::new(py, request)
    })();
    let request = match built {
        Ok(request) => request,
        Err(err) => {
            server.report(py, "WebSocket upgrade", err);
            plain_error(api, res, 500, "Internal Server Error");
            return;
        }
    };
    if let Err(err) = config.upgrade.call1(py, (&request,)) {
        server.report(py, "WebSocket upgrade", err);
        let r = request.borrow();
        if r.link.is_open() {
            let body = plain_error_body(500, "Internal Server Error");
            r.finish(500, &body, JSON, &[], true);
        }
        return;
    }
    let r = request.borrow();
    if r.link.is_open() {
        // Answered later: uWS requires an abort handler before we return.
        let key = server
            .upgrades
            .borrow_mut()
            .insert(request.clone().unbind());
        r.link.set_key(key);
        (uws.uws_res_on_aborted)(SSL, res, on_upgrade_aborted, key as usize as Ptr);
    }
}

extern "C" fn on_upgrade_aborted(_res: Ptr, user_data: Ptr) {
    let Some(server) = current() else {
        return;
    };
    guard("WebSocket upgrade abort", || {
        Python::attach(|py| {
            let removed = server
                .upgrades
                .borrow_mut()
                .remove(user_data as usize as Key);
            if let Some(request) = removed {
                if let Ok(request) = request.bind(py).try_borrow() {
                    request.link.abort();
                }
            }
        });
    });
}

/// The connection's Python object (a new reference), or None.
///
/// # Safety
/// `ws` must be a live WebSocket of this app.
unsafe fn socket<'py>(py: Python<'py>, api: &Api, ws: Ptr) -> Option<Bound<'py, PyAny>> {
    let user_data = (api.uws.uws_ws_get_user_data)(SSL, ws);
    if user_data.is_null() {
        None
    } else {
        Some(Bound::from_borrowed_ptr(py, user_data.cast()))
    }
}

/// Runs `f(py, server, config, socket)` for a WebSocket event.
fn event(
    what: &str,
    ws: Ptr,
    user_data: Ptr,
    f: impl FnOnce(Python<'_>, &Server, &WsConfig, Bound<'_, PyAny>) -> PyResult<()>,
) {
    // SAFETY: user_data is the leaked server the route was registered with.
    let server: &'static Server = unsafe { &*user_data.cast::<Server>() };
    guard(what, || {
        Python::attach(|py| {
            let Some(config) = server.ws.get() else {
                return;
            };
            // SAFETY: uWS calls with a live WebSocket.
            let Some(sock) = (unsafe { socket(py, server.api, ws) }) else {
                return;
            };
            if let Err(err) = f(py, server, config, sock) {
                server.report(py, what, err);
            }
        });
    });
}

pub(super) extern "C" fn on_open(ws: Ptr, user_data: Ptr) {
    event(
        "WebSocket open handler",
        ws,
        user_data,
        |py, _, config, sock| {
            sock.setattr(intern!(py, "ws"), ws as usize)?;
            config.open.call1(py, (sock,))?;
            Ok(())
        },
    );
}

pub(super) extern "C" fn on_message(
    ws: Ptr,
    message: *const c_char,
    len: usize,
    opcode: c_int,
    user_data: Ptr,
) {
    event(
        "WebSocket message handler",
        ws,
        user_data,
        |py, _, config, sock| {
            // SAFETY: uWS gives `len` readable bytes for this call.
            let data = PyBytes::new(py, unsafe { slice(message, len) });
            config.message.call1(py, (sock, data, opcode))?;
            Ok(())
        },
    );
}

pub(super) extern "C" fn on_pong(ws: Ptr, _message: *const c_char, _len: usize, user_data: Ptr) {
    event(
        "WebSocket pong handler",
        ws,
        user_data,
        |py, _, config, sock| {
            config.pong.call1(py, (sock,))?;
            Ok(())
        },
    );
}

pub(super) extern "C" fn on_drain(ws: Ptr, user_data: Ptr) {
    event(
        "WebSocket drain handler",
        ws,
        user_data,
        |py, _, config, sock| {
            config.drain.call1(py, (sock,))?;
            Ok(())
        },
    );
}

pub(super) extern "C" fn on_close(
    ws: Ptr,
    code: c_int,
    message: *const c_char,
    len: usize,
    user_data: Ptr,
) {
    event(
        "WebSocket close handler",
        ws,
        user_data,
        |py, server, config, sock| {
            let cleared = sock.setattr(intern!(py, "ws"), py.None());
            // SAFETY: uWS gives `len` readable bytes for this call.
            let reason = PyBytes::new(py, unsafe { slice(message, len) });
            let result = config.close.call1(py, (&sock, code, reason));
            // uWS is done with the socket: drop the reference `accept` gave it.
            // SAFETY: the user data is the strong reference from `accept`,
            // released exactly once (uWS emits close once per WebSocket).
            unsafe {
                let user_data = (server.api.uws.uws_ws_get_user_data)(SSL, ws);
                drop(Bound::<PyAny>::from_owned_ptr(py, user_data.cast()));
            }
            cleared?;
            result.map(drop)
        },
    );
}

fn socket_ptr(ws: usize) -> PyResult<Ptr> {
    if ws == 0 {
        return Err(PyValueError::new_err("not an open WebSocket"));
    }
    Ok(ws as Ptr)
}

struct CorkedSend<'a> {
    api: &'a Api,
    ws: Ptr,
    data: &'a [u8],
    opcode: c_int,
    compress: bool,
    status: c_int,
}

extern "C" fn send_corked(user_data: Ptr) {
    guard("WebSocket send", || {
        // SAFETY: user_data is the CorkedSend of `ws_send`, alive during the cork.
        unsafe {
            let job = &mut *user_data.cast::<CorkedSend<'_>>();
            job.status = (job.api.uws.uws_ws_send_with_options)(
                SSL,
                job.ws,
                job.data.as_ptr().cast(),
                job.data.len(),
                job.opcode,
                job.compress,
                true,
            );
        }
    });
}

/// Sends one frame: 0 backpressure (queued), 1 success, 2 dropped.
/// Compressed when the route negotiates permessage-deflate and this socket
/// accepted it.
#[pyfunction]
#[pyo3(signature = (ws, data, opcode = 1))]
fn ws_send(ws: usize, data: &[u8], opcode: c_int) -> PyResult<c_int> {
    let api = api()?;
    let ws = socket_ptr(ws)?;
    let compress = current().is_some_and(|s| s.compress.get());
    if in_uv() {
        // SAFETY: ws is an open WebSocket (the caller's contract); uWS copies.
        return Ok(unsafe {
            (api.uws.uws_ws_send_with_options)(
                SSL,
                ws,
                data.as_ptr().cast(),
                data.len(),
                opcode,
                compress,
                true,
            )
        });
    }
    let mut job = CorkedSend {
        api,
        ws,
        data,
        opcode,
        compress,
        status: 2,
    };
    // SAFETY: as above; the cork runs send_corked synchronously.
    unsafe {
        (api.uws.uws_ws_cork)(SSL, ws, send_corked, std::ptr::from_mut(&mut job).cast());
    }
    Ok(job.status)
}

/// Closes with a close frame; the close callback runs before this returns.
#[pyfunction]
#[pyo3(signature = (ws, code, reason = b"".as_slice()))]
fn ws_end(ws: usize, code: c_int, reason: &[u8]) -> PyResult<()> {
    let api = api()?;
    let ws = socket_ptr(ws)?;
    // SAFETY: ws is an open WebSocket (the caller's contract).
    unsafe { (api.uws.uws_ws_end)(SSL, ws, code, reason.as_ptr().cast(), reason.len()) };
    Ok(())
}

/// Terminates the TCP connection (no close handshake).
#[pyfunction]
fn ws_close(ws: usize) -> PyResult<()> {
    let api = api()?;
    let ws = socket_ptr(ws)?;
    // SAFETY: ws is an open WebSocket (the caller's contract).
    unsafe { (api.uws.uws_ws_close)(SSL, ws) };
    Ok(())
}

#[pyfunction]
fn ws_subscribe(ws: usize, topic: &[u8]) -> PyResult<bool> {
    let api = api()?;
    let ws = socket_ptr(ws)?;
    // SAFETY: ws is an open WebSocket (the caller's contract).
    Ok(unsafe { (api.uws.uws_ws_subscribe)(SSL, ws, topic.as_ptr().cast(), topic.len()) })
}

#[pyfunction]
fn ws_unsubscribe(ws: usize, topic: &[u8]) -> PyResult<bool> {
    let api = api()?;
    let ws = socket_ptr(ws)?;
    // SAFETY: ws is an open WebSocket (the caller's contract).
    Ok(unsafe { (api.uws.uws_ws_unsubscribe)(SSL, ws, topic.as_ptr().cast(), topic.len()) })
}

/// Bytes queued in user space for the socket.
#[pyfunction]
fn ws_buffered_amount(ws: usize) -> PyResult<u32> {
    let api = api()?;
    let ws = socket_ptr(ws)?;
    // SAFETY: ws is an open WebSocket (the caller's contract).
    Ok(unsafe { (api.uws.uws_ws_get_buffered_amount)(SSL, ws) })
}

#[pyfunction]
fn ws_remote_address(ws: usize) -> PyResult<String> {
    let api = api()?;
    let ws = socket_ptr(ws)?;
    // SAFETY: ws is an open WebSocket (the caller's contract).
    let text =
        unsafe { out_slice(|out| (api.uws.uws_ws_get_remote_address_as_text)(SSL, ws, out)) };
    Ok(latin1(text).into_owned())
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(ws_send, m)?)?;
    m.add_function(wrap_pyfunction!(ws_end, m)?)?;
    m.add_function(wrap_pyfunction!(ws_close, m)?)?;
    m.add_function(wrap_pyfunction!(ws_subscribe, m)?)?;
    m.add_function(wrap_pyfunction!(ws_unsubscribe, m)?)?;
    m.add_function(wrap_pyfunction!(ws_buffered_amount, m)?)?;
    m.add_function(wrap_pyfunction!(ws_remote_address, m)?)?;
    Ok(())
}
