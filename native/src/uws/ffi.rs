//! The C API of socketify's prebuilt uWebSockets library (`libsocketify`,
//! its `libuwebsockets` C API plus socketify's loop helpers) and the two
//! libuv functions the asyncio bridge needs, resolved at run time with
//! `dlopen`/`dlsym`.
//!
//! The library is the one socketify ships inside its Python package; it is
//! opened with `RTLD_NOLOAD` first so that, when socketify's cffi module has
//! already loaded it, both share one copy (one uWS loop registry).
//! Declarations follow the cffi `cdef` in `socketify/native.py`.

use std::ffi::{c_char, c_int, c_uint, c_ushort, c_void, CStr, CString};
use std::sync::OnceLock;

/// Always 0: plain TCP (`uWS::App`, not `uWS::SSLApp`).
pub const SSL: c_int = 0;
/// `SOCKETIFY_RUN_NOWAIT`.
pub const RUN_NOWAIT: c_int = 2;

pub const OPCODE_TEXT: c_int = 1;

/// `uws_compress_options_t`: low byte the compressor (1 shared, else
/// HIGH4 window bits / LOW4 memory level of a dedicated one), bits 8..12 the
/// decompressor (1 shared, else its window bits).
pub const COMPRESSOR_MASK: c_int = 0x00FF;
pub const DECOMPRESSOR_MASK: c_int = 0x0F00;
pub const SEND_SUCCESS: c_int = 1;

pub type Ptr = *mut c_void;
pub type Out = *mut *const c_char;

/// `struct us_socket_context_options_t` (TLS file names; all NULL here).
#[repr(C)]
pub struct SocketContextOptions {
    pub key_file_name: *const c_char,
    pub cert_file_name: *const c_char,
    pub passphrase: *const c_char,
    pub dh_params_file_name: *const c_char,
    pub ca_file_name: *const c_char,
    pub ssl_ciphers: *const c_char,
    pub ssl_prefer_low_memory_usage: c_int,
}

impl SocketContextOptions {
    pub const fn none() -> Self {
        let null = std::ptr::null();
        SocketContextOptions {
            key_file_name: null,
            cert_file_name: null,
            passphrase: null,
            dh_params_file_name: null,
            ca_file_name: null,
            ssl_ciphers: null,
            ssl_prefer_low_memory_usage: 0,
        }
    }
}

/// `uws_app_listen_config_t`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ListenConfig {
    pub port: c_int,
    pub host: *const c_char,
    /// 0 = uSockets' default (`SO_REUSEPORT` on Linux).
    pub options: c_int,
}

pub type MethodHandler = extern "C" fn(res: Ptr, req: Ptr, user_data: Ptr);
pub type ResHandler = extern "C" fn(res: Ptr, user_data: Ptr);
/// `onWritable`: `(res, write offset, user data) -> success`.
pub type WritableHandler = extern "C" fn(res: Ptr, offset: u64, user_data: Ptr) -> bool;
pub type DataHandler =
    extern "C" fn(res: Ptr, chunk: *const c_char, len: usize, is_end: bool, user_data: Ptr);
pub type ListenHandler = extern "C" fn(listen_socket: Ptr, config: ListenConfig, user_data: Ptr);
pub type HeaderHandler = extern "C" fn(
    name: *const c_char,
    name_len: usize,
    value: *const c_char,
    value_len: usize,
    user_data: Ptr,
);
pub type VoidHandler = extern "C" fn(user_data: Ptr);
/// uSockets' `on_data` of a socket context: returns the socket (or what
/// replaced it, e.g. after an upgrade).
pub type SocketDataHandler = extern "C" fn(socket: Ptr, data: *mut c_char, length: c_int) -> Ptr;
pub type UpgradeHandler = extern "C" fn(res: Ptr, req: Ptr, context: Ptr, user_data: Ptr);
pub type WsHandler = extern "C" fn(ws: Ptr, user_data: Ptr);
pub type WsMessageHandler =
    extern "C" fn(ws: Ptr, message: *const c_char, len: usize, opcode: c_int, user_data: Ptr);
pub type WsPingPongHandler =
    extern "C" fn(ws: Ptr, message: *const c_char, len: usize, user_data: Ptr);
pub type WsCloseHandler =
    extern "C" fn(ws: Ptr, code: c_int, message: *const c_char, len: usize, user_data: Ptr);
pub type WsSubscriptionHandler = extern "C" fn(
    ws: Ptr,
    topic: *const c_char,
    topic_len: usize,
    new_count: c_int,
    old_count: c_int,
    user_data: Ptr,
);

/// `uws_socket_behavior_t`.
#[repr(C)]
pub struct Behavior {
    pub compression: c_int,
    pub max_payload_length: c_uint,
    pub idle_timeout: c_ushort,
    pub max_backpressure: c_uint,
    pub close_on_backpressure_limit: bool,
    pub reset_idle_timeout_on_send: bool,
    pub send_pings_automatically: bool,
    pub max_lifetime: c_ushort,
    pub upgrade: Option<UpgradeHandler>,
    pub open: Option<WsHandler>,
    pub message: Option<WsMessageHandler>,
    pub drain: Option<WsHandler>,
    pub ping: Option<WsPingPongHandler>,
    pub pong: Option<WsPingPongHandler>,
    pub close: Option<WsCloseHandler>,
    pub subscription: Option<WsSubscriptionHandler>,
}

macro_rules! symbols {
    ($table:ident { $($name:ident: fn($($arg:ty),*) $(-> $ret:ty)?;)* }) => {
        /// Function pointers resolved from one library.
        pub struct $table {
            $(pub $name: unsafe extern "C" fn($($arg),*) $(-> $ret)?,)*
        }

        impl $table {
            /// # Safety
            /// `lib` must be a live `dlopen` handle of a library whose
            /// symbols have the declared signatures.
            unsafe fn resolve(lib: Ptr) -> Result<Self, String> {
                Ok($table {
                    $($name: {
                        let p = symbol(lib, concat!(stringify!($name), "\0"))?;
                        std::mem::transmute::<Ptr, unsafe extern "C" fn($($arg),*) $(-> $ret)?>(p)
                    },)*
                })
            }
        }
    };
}

symbols!(Uws {
    socketify_create_loop: fn() -> Ptr;
    socketify_constructor_failed: fn(Ptr) -> bool;
    socketify_get_native_loop: fn(Ptr) -> Ptr;
    socketify_loop_run: fn(Ptr, c_int) -> c_int;
    uws_get_loop_with_native: fn(Ptr) -> Ptr;
    uws_create_app: fn(c_int, SocketContextOptions) -> Ptr;
    uws_constructor_failed: fn(c_int, Ptr) -> bool;
    uws_app_any: fn(c_int, Ptr, *const c_char, MethodHandler, Ptr);
    uws_ws: fn(c_int, Ptr, *const c_char, Behavior, Ptr);
    uws_app_listen_with_config: fn(c_int, Ptr, ListenConfig, ListenHandler, Ptr);
    us_socket_local_port: fn(c_int, Ptr) -> c_int;
    us_socket_write: fn(c_int, Ptr, *const c_char, c_int, c_int) -> c_int;
    us_socket_shutdown: fn(c_int, Ptr);
    us_socket_close: fn(c_int, Ptr, c_int, Ptr) -> Ptr;
    us_socket_is_closed: fn(c_int, Ptr) -> c_int;
    us_socket_is_shut_down: fn(c_int, Ptr) -> c_int;
    us_listen_socket_close: fn(c_int, Ptr);
    us_poll_fd: fn(Ptr) -> c_int;
    us_socket_context: fn(c_int, Ptr) -> Ptr;
    us_socket_context_on_data: fn(c_int, Ptr, SocketDataHandler);
    uws_publish: fn(c_int, Ptr, *const c_char, usize, *const c_char, usize, c_int, bool) -> bool;
    uws_num_subscribers: fn(c_int, Ptr, *const c_char, usize) -> c_uint;
    uws_res_write_status: fn(c_int, Ptr, *const c_char, usize);
    uws_res_write_header: fn(c_int, Ptr, *const c_char, usize, *const c_char, usize);
    uws_res_end: fn(c_int, Ptr, *const c_char, usize, bool);
    uws_res_write: fn(c_int, Ptr, *const c_char, usize) -> bool;
    uws_res_on_writable: fn(c_int, Ptr, WritableHandler, Ptr);
    uws_res_cork: fn(c_int, Ptr, ResHandler, Ptr);
    uws_res_on_aborted: fn(c_int, Ptr, ResHandler, Ptr);
    uws_res_on_data: fn(c_int, Ptr, DataHandler, Ptr);
    uws_res_upgrade: fn(
        c_int, Ptr, Ptr, *const c_char, usize, *const c_char, usize, *const c_char, usize, Ptr
    );
    uws_res_get_remote_address_as_text: fn(c_int, Ptr, Out) -> usize;
    uws_res_get_native_handle: fn(c_int, Ptr) -> Ptr;
    uws_req_get_method: fn(Ptr, Out) -> usize;
    uws_req_is_ancient: fn(Ptr) -> bool;
    uws_req_get_full_url: fn(Ptr, Out) -> usize;
    uws_req_get_header: fn(Ptr, *const c_char, usize, Out) -> usize;
    uws_req_for_each_header: fn(Ptr, HeaderHandler, Ptr);
    uws_ws_get_user_data: fn(c_int, Ptr) -> Ptr;
    uws_ws_send_with_options: fn(c_int, Ptr, *const c_char, usize, c_int, bool, bool) -> c_int;
    uws_ws_end: fn(c_int, Ptr, c_int, *const c_char, usize);
    uws_ws_close: fn(c_int, Ptr);
    uws_ws_cork: fn(c_int, Ptr, VoidHandler, Ptr);
    uws_ws_subscribe: fn(c_int, Ptr, *const c_char, usize) -> bool;
    uws_ws_unsubscribe: fn(c_int, Ptr, *const c_char, usize) -> bool;
    uws_ws_get_buffered_amount: fn(c_int, Ptr) -> c_uint;
    uws_ws_get_remote_address_as_text: fn(c_int, Ptr, Out) -> usize;
});

symbols!(Uv {
    uv_backend_fd: fn(Ptr) -> c_int;
    uv_backend_timeout: fn(Ptr) -> c_int;
});

/// Both tables, resolved once per process.
pub struct Api {
    pub uws: Uws,
    pub uv: Uv,
    pub path: String,
}

static API: OnceLock<Api> = OnceLock::new();

/// The resolved API, if [`load`] succeeded.
#[inline]
pub fn api() -> Option<&'static Api> {
    API.get()
}

fn dlerror() -> String {
    // SAFETY: dlerror returns NULL or a NUL-terminated message.
    unsafe {
        let msg = libc::dlerror();
        if msg.is_null() {
            "unknown dlopen error".to_owned()
        } else {
            CStr::from_ptr(msg).to_string_lossy().into_owned()
        }
    }
}

/// `dlopen(path, RTLD_NOW | RTLD_NOLOAD)` (the copy already in the process),
/// else a plain `dlopen`. The handle is never closed.
fn open(path: &str) -> Result<Ptr, String> {
    let c_path = CString::new(path).map_err(|_| format!("bad library path {path:?}"))?;
    // SAFETY: c_path is NUL-terminated; both calls only read it.
    unsafe {
        let handle = libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD);
        if !handle.is_null() {
            return Ok(handle);
        }
        let handle = libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW);
        if handle.is_null() {
            return Err(format!("cannot load {path}: {}", dlerror()));
        }
        Ok(handle)
    }
}

/// # Safety
/// `lib` must be a live `dlopen` handle; `name` must end with a NUL.
unsafe fn symbol(lib: Ptr, name: &str) -> Result<Ptr, String> {
    let p = libc::dlsym(lib, name.as_ptr().cast());
    if p.is_null() {
        Err(format!(
            "symbol {} not found: {}",
            name.trim_end_matches('\0'),
            dlerror()
        ))
    } else {
        Ok(p)
    }
}

/// Resolves the API from socketify's library at `path` and libuv
/// (`libuv_name`, normally `libuv.so.1`, the one socketify links). Later
/// calls return the first result, whatever their arguments.
pub fn load(path: &str, libuv_name: &str) -> Result<&'static Api, String> {
    if let Some(api) = API.get() {
        return Ok(api);
    }
    let lib = open(path)?;
    let uv = open(libuv_name)?;
    // SAFETY: both handles are live (never closed); the declarations above
    // match socketify 0.0.31's cdef and libuv's API.
    let api = unsafe {
        Api {
            uws: Uws::resolve(lib)?,
            uv: Uv::resolve(uv)?,
            path: path.to_owned(),
        }
    };
    Ok(API.get_or_init(|| api))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn struct_layouts_match_cffi() {
        // ffi.sizeof / ffi.offsetof from socketify's cdef on x86-64.
        assert_eq!(size_of::<Behavior>(), 88);
        assert_eq!(offset_of!(Behavior, max_payload_length), 4);
        assert_eq!(offset_of!(Behavior, idle_timeout), 8);
        assert_eq!(offset_of!(Behavior, max_backpressure), 12);
        assert_eq!(offset_of!(Behavior, close_on_backpressure_limit), 16);
        assert_eq!(offset_of!(Behavior, send_pings_automatically), 18);
        assert_eq!(offset_of!(Behavior, max_lifetime), 20);
        assert_eq!(offset_of!(Behavior, upgrade), 24);
        assert_eq!(offset_of!(Behavior, close), 72);
        assert_eq!(offset_of!(Behavior, subscription), 80);
        assert_eq!(size_of::<SocketContextOptions>(), 56);
        assert_eq!(size_of::<ListenConfig>(), 24);
        assert_eq!(offset_of!(ListenConfig, host), 8);
        assert_eq!(offset_of!(ListenConfig, options), 16);
    }

    #[test]
    fn missing_library_is_an_error() {
        let err = open("/nonexistent/libnothing.so").unwrap_err();
        assert!(err.contains("cannot load"), "{err}");
    }
}
