//! `gw_callbacks`: the host's log, state, request and connection callbacks, the userdata they
//! share, which the library frees exactly once through `free_userdata`, and the methods and
//! events the host registered with them.

use std::ffi::{CString, c_char, c_void};
use std::mem::{MaybeUninit, size_of};
use std::sync::{Arc, Condvar, Mutex};

use super::handlers::gw_handlers;
use super::result::{fail, fail_with, gw_result};
use super::server::gw_server;
use crate::options::{LogLevel, Logger};
use crate::server::{
    ConnectionEvent, GatewayState, Handlers, MethodHandler, MethodRequest, Responder, StateHandler,
};

/// How loud a log line is.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum gw_log_level {
    /// Detail for whoever debugs the gateway.
    GW_LOG_DEBUG = 0,
    /// The gateway's life: ready, stopped, a lock reclaimed.
    GW_LOG_INFO = 1,
    /// Something went wrong and the gateway carried on.
    GW_LOG_WARN = 2,
    /// Something went wrong that the host should act on.
    GW_LOG_ERROR = 3,
}

/// A change in a served gateway's life, given to the state callback with a `gw_result`.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum gw_state {
    /// The port accepts and `/readyz` answers 200 (result `GW_OK`). Called on the thread in
    /// `gw_serve`, before it returns.
    GW_STATE_READY = 1,
    /// A lock file was deleted or replaced while held; another gateway may start on this config
    /// (result `GW_ERR_LOCK_LOST`; the log callback gets the path). Called once, on the
    /// library's lock re-check thread. The server keeps serving until `gw_shutdown`.
    GW_STATE_LOCK_LOST = 2,
    /// The listeners are closed and the lock is released (result `GW_OK`, or `GW_ERR_TIMEOUT`
    /// when open connections were cut off). Called on the thread in `gw_shutdown`.
    GW_STATE_STOPPED = 3,
}

/// A log callback: `message` is NUL-terminated UTF-8, `len` bytes long without the NUL, and
/// valid only during the call. Called on any library thread, possibly on several at once.
pub type gw_log_fn = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        level: gw_log_level,
        message: *const c_char,
        len: usize,
    ),
>;

/// A state callback (see `gw_state`). Called on the thread each state names.
pub type gw_state_fn =
    Option<unsafe extern "C" fn(userdata: *mut c_void, state: gw_state, result: gw_result)>;

/// Identifies one request for a host method, gateway-wide; the host answers it with
/// `gw_respond`. Never 0.
pub type gw_request_id = u64;

/// A request for one of the host's methods (see `gw_handlers_add_method`), from an
/// authenticated client that holds the method's scope. Answer it with `gw_respond(server,
/// request, ...)`, inside the callback or later from any thread; unanswered, the client gets
/// `UNAVAILABLE` after the request timeout (`gw_serve_options_set_request_timeout_ms`).
///
/// `server` is the server the request came to, the same pointer `gw_serve` writes to its
/// `out`, and usable for `gw_respond`, `gw_broadcast`, `gw_send_event`, `gw_set_health` at
/// once, even when `gw_serve` has not returned yet (a client may call a method as soon as the
/// port accepts).
///
/// `method` and `params_json` are UTF-8, `method_len` / `params_len` bytes long without the
/// NUL that follows each (never counted, always present), and valid only during the call:
/// copy what you keep. `params_json` is the request's `params` as compact JSON (`null` when
/// it had none). `conn_id` is the client's connection (as in `on_connection`).
///
/// Called on a gateway worker thread, possibly on several at once; it must not block (a
/// blocked callback holds a worker of the server). Requests of one connection arrive in
/// order. Never called once `gw_shutdown` has begun freeing the server.
pub type gw_request_fn = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        server: *mut gw_server,
        request: gw_request_id,
        method: *const c_char,
        method_len: usize,
        params_json: *const c_char,
        params_len: usize,
        conn_id: u64,
    ),
>;

/// A client completed the handshake (`opened`: `hello-ok` was sent, its requests follow), or
/// a client that had completed it is gone (`!opened`: events to `conn_id` now give
/// `GW_ERR_NOT_FOUND`). `client_json` is a NUL-terminated UTF-8 JSON object, `len` bytes
/// without the NUL, valid only during the call: `{"connId", "client": {id, version,
/// platform, mode, ...as sent}, "role", "scopes": [...], "protocol", "peer", "origin"?}`.
///
/// Called on a gateway worker thread, possibly on several at once; it must not block. Never
/// called before `gw_serve` has written its server to `out`: a client that completes the
/// handshake earlier is announced from the thread in `gw_serve`, just before it returns, in
/// the order the events happened. Never called once `gw_shutdown` has begun freeing the
/// server.
pub type gw_connection_fn = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        conn_id: u64,
        opened: bool,
        client_json: *const c_char,
        len: usize,
    ),
>;

/// What the host wants to hear from a served gateway, and what it serves, given to
/// `gw_serve`.
///
/// Set `size` to `sizeof(gw_callbacks)`: fields added at the end by later versions of the
/// library are then known to be absent from an older host's struct (the library reads only
/// `size` bytes and treats what lies beyond as NULL), and a newer host's extra fields are
/// ignored by an older library. Any field may be NULL.
///
/// The callbacks must be thread-safe, must return (no `longjmp`, no C++ exception), and must
/// not call `gw_shutdown` (it would wait for itself). They may call `gw_respond`, `gw_set_health`,
/// `gw_broadcast` and `gw_send_event`. The library copies the struct (and `*handlers`)
/// during `gw_serve`; the host may reuse or free them afterwards.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct gw_callbacks {
    /// `sizeof(gw_callbacks)` as the host was compiled with.
    pub size: usize,
    /// Passed as is to every callback; the library never reads it.
    pub userdata: *mut c_void,
    /// Every log line of the server and its lock, all levels (NULL: the options' logger, which
    /// prints warnings and errors to stderr).
    pub log: gw_log_fn,
    /// Ready, lock lost, stopped.
    pub state: gw_state_fn,
    /// Called with `userdata` exactly once, when the library drops its last reference to the
    /// callbacks: during `gw_serve` when it fails, else during `gw_shutdown` or soon after it on
    /// a library thread. No callback is called after it.
    pub free_userdata: Option<unsafe extern "C" fn(userdata: *mut c_void)>,
    /// Requests for the methods registered in `handlers`. Required when `handlers` has
    /// methods (`gw_serve` refuses them without it: nobody would answer).
    pub on_request: gw_request_fn,
    /// Clients that completed the handshake, and their going away.
    pub on_connection: gw_connection_fn,
    /// NULL, or the methods (and scopes) the host answers in `on_request` and the events it
    /// sends (see `gw_handlers`). Read during `gw_serve` only.
    pub handlers: *const gw_handlers,
}

/// The host's callbacks as the library holds them: shared by the logger, the state handler
/// and the protocol handlers, and freed when the last of them is dropped.
pub(crate) struct HostCallbacks {
    callbacks: gw_callbacks,
    /// `*callbacks.handlers` as it was during `gw_serve` (the pointer itself is not kept).
    registered: Option<gw_handlers>,
    /// Which request and connection callbacks run; they are the ones that use the server.
    calls: Mutex<Calls>,
    calls_changed: Condvar,
    /// Connection events from before `gw_serve` wrote out its server (the host could not
    /// reach it yet), kept in order for `gw_serve` to deliver; `None` from then on.
    early: Mutex<Option<Vec<EarlyConnection>>>,
}

/// `gw_shutdown` waits until no request or connection callback is running before it frees
/// the server (a worker the runtime left behind may still be in one), and lets none start.
#[derive(Default)]
struct Calls {
    stopped: bool,
    running: usize,
}

/// A connection event that `gw_serve` delivers once the host has its server.
struct EarlyConnection {
    conn_id: u64,
    opened: bool,
    client_json: CString,
}

/// The `gw_server` that `gw_serve` allocates before the server starts, as callbacks hand it to
/// the host. `gw_shutdown` frees it only after `HostCallbacks::stop_calls`, so a callback that
/// entered (`HostCallbacks::enter`) may use it.
#[derive(Clone, Copy)]
pub(crate) struct ServerPtr(pub(crate) *mut gw_server);

// SAFETY: a `gw_server` is shared by every thread (its fields are thread-safe); the pointer
// is only read through after `HostCallbacks::enter`, while it is live.
unsafe impl Send for ServerPtr {}
// SAFETY: as above.
unsafe impl Sync for ServerPtr {}

/// One request or connection callback in progress; `gw_shutdown` waits for it to end.
struct CallGuard<'a>(&'a HostCallbacks);

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        self.0.calls().running -= 1;
        self.0.calls_changed.notify_all();
    }
}

// SAFETY: the header requires the callbacks to be callable from any thread, at once, and
// `free_userdata` from whichever thread drops the last reference.
unsafe impl Send for HostCallbacks {}
// SAFETY: as above; the library itself never touches `userdata`.
unsafe impl Sync for HostCallbacks {}

impl HostCallbacks {
    /// Copies the first `size` bytes of the host's struct (later fields stay NULL) and the
    /// handlers it points to.
    ///
    /// # Safety
    ///
    /// `callbacks` points to at least `callbacks->size` readable bytes (or `size_of::<usize>()`
    /// when that is more), laid out as `gw_callbacks`; its `handlers` (when within `size`) is
    /// NULL or a live `gw_handlers` no other thread uses during the call.
    pub(crate) unsafe fn read(
        function: &str,
        callbacks: *const gw_callbacks,
    ) -> Result<Arc<Self>, gw_result> {
        // SAFETY: the first field is readable by the contract.
        let size = unsafe { callbacks.cast::<usize>().read_unaligned() };
        let known = size.min(size_of::<gw_callbacks>());
        // Every field is pointer-sized: a size below one field, or one that cuts a field of
        // ours in half, is a host bug (most likely `size` left unset).
        if known < size_of::<usize>() || known % size_of::<usize>() != 0 {
            return Err(fail(
                gw_result::GW_ERR_INVALID_ARGUMENT,
                format!("{function}: callbacks->size is {size}: set it to sizeof(gw_callbacks)"),
            ));
        }
        let mut copy = MaybeUninit::<gw_callbacks>::zeroed();
        // SAFETY: `known` bytes are readable (at most the host's size) and fit in our struct;
        // all-zero bytes are a valid gw_callbacks (NULL pointers, `None` callbacks), so a
        // partial copy leaves every later field NULL.
        let mut copy = unsafe {
            std::ptr::copy_nonoverlapping(callbacks.cast::<u8>(), copy.as_mut_ptr().cast(), known);
            copy.assume_init()
        };
        // SAFETY: NULL or live, by the contract.
        let registered = unsafe { copy.handlers.as_ref() }.cloned();
        copy.handlers = std::ptr::null();
        Ok(Arc::new(Self {
            callbacks: copy,
            registered,
            calls: Mutex::new(Calls::default()),
            calls_changed: Condvar::new(),
            early: Mutex::new(Some(Vec::new())),
        }))
    }

    fn calls(&self) -> std::sync::MutexGuard<'_, Calls> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `gw_serve` has written its server out: delivers the connection events that came
    /// before, in order, then lets later ones through as they come (they wait for this).
    pub(crate) fn mark_served(&self) {
        let mut early = self.early.lock().unwrap_or_else(|e| e.into_inner());
        for event in early.take().unwrap_or_default() {
            self.connection(event);
        }
    }

    /// A callback that uses the server begins; `None` once the server is being freed.
    fn enter(&self) -> Option<CallGuard<'_>> {
        let mut calls = self.calls();
        if calls.stopped {
            return None;
        }
        calls.running += 1;
        Some(CallGuard(self))
    }

    /// Calls `on_connection`, unless the server is being freed.
    fn connection(&self, event: EarlyConnection) {
        let Some(on_connection) = self.callbacks.on_connection else {
            return;
        };
        let Some(_call) = self.enter() else {
            return;
        };
        let json = event.client_json;
        // SAFETY: a host callback given a NUL-terminated string that outlives the call.
        unsafe {
            on_connection(
                self.callbacks.userdata,
                event.conn_id,
                event.opened,
                json.as_ptr(),
                json.as_bytes().len(),
            )
        }
    }

    /// No request or connection callback starts from now on; returns once none is running,
    /// so the server they use may be freed.
    pub(crate) fn stop_calls(&self) {
        let mut calls = self.calls();
        calls.stopped = true;
        self.calls_changed.notify_all();
        let _idle = self
            .calls_changed
            .wait_while(calls, |calls| calls.running > 0)
            .unwrap_or_else(|e| e.into_inner());
    }

    /// The protocol handlers to serve `server` with: the registered methods answered through
    /// `on_request`, the registered events, `on_connection`.
    pub(crate) fn handlers(
        self: &Arc<Self>,
        function: &str,
        server: ServerPtr,
    ) -> Result<Handlers, gw_result> {
        let mut handlers = Handlers::new();
        if let Some(registered) = &self.registered {
            if !registered.methods.is_empty() && self.callbacks.on_request.is_none() {
                return Err(fail(
                    gw_result::GW_ERR_INVALID_ARGUMENT,
                    format!(
                        "{function}: callbacks->handlers registers methods but \
                         callbacks->on_request is NULL: nobody would answer them"
                    ),
                ));
            }
            let method: Arc<dyn MethodHandler> = Arc::new(HostMethod {
                host: Arc::clone(self),
                server,
            });
            // Checked by the same calls in gw_handlers_add_method/add_event: cannot fail here.
            for (name, scope) in &registered.methods {
                handlers
                    .add_method(name, scope.clone(), Arc::clone(&method))
                    .map_err(|err| fail_with(&err))?;
            }
            for event in &registered.events {
                handlers.add_event(event).map_err(|err| fail_with(&err))?;
            }
        }
        if self.callbacks.on_connection.is_some() {
            let host = Arc::clone(self);
            handlers = handlers.on_connection(move |event| {
                let (opened, client) = match event {
                    ConnectionEvent::Opened(client) => (true, client),
                    ConnectionEvent::Closed(client) => (false, client),
                };
                let event = EarlyConnection {
                    conn_id: client.conn_id,
                    opened,
                    client_json: c_string(client.to_json()),
                };
                let mut early = host.early.lock().unwrap_or_else(|e| e.into_inner());
                match early.as_mut() {
                    Some(queue) => queue.push(event),
                    None => {
                        drop(early);
                        host.connection(event);
                    }
                }
            });
        }
        Ok(handlers)
    }

    /// The logger to serve with, when the host gave a log callback.
    pub(crate) fn logger(self: &Arc<Self>) -> Option<Logger> {
        let log = self.callbacks.log?;
        let host = Arc::clone(self);
        Some(Logger::new(move |level, message| {
            // SAFETY: the host's log callback, with its own userdata.
            unsafe { log_to(log, host.callbacks.userdata, level, message) }
        }))
    }

    /// The state handler to serve with, when the host gave a state callback.
    pub(crate) fn state_handler(self: &Arc<Self>) -> Option<StateHandler> {
        let state = self.callbacks.state?;
        let host = Arc::clone(self);
        Some(StateHandler::new(move |change| {
            let (code, result) = match change {
                GatewayState::Ready => (gw_state::GW_STATE_READY, gw_result::GW_OK),
                GatewayState::LockLost { .. } => {
                    (gw_state::GW_STATE_LOCK_LOST, gw_result::GW_ERR_LOCK_LOST)
                }
                GatewayState::Stopped { drained: true } => {
                    (gw_state::GW_STATE_STOPPED, gw_result::GW_OK)
                }
                GatewayState::Stopped { drained: false } => {
                    (gw_state::GW_STATE_STOPPED, gw_result::GW_ERR_TIMEOUT)
                }
            };
            // SAFETY: a host callback, called with the host's own userdata.
            unsafe { state(host.callbacks.userdata, code, result) }
        }))
    }
}

impl Drop for HostCallbacks {
    fn drop(&mut self) {
        if let Some(free_userdata) = self.callbacks.free_userdata {
            // SAFETY: the last reference is gone, so this runs once and no callback follows.
            unsafe { free_userdata(self.callbacks.userdata) }
        }
    }
}

/// Sends one log line to a host's log callback.
///
/// # Safety
///
/// `log` may be called with `userdata` from this thread (the contract of `gw_log_fn`).
pub(crate) unsafe fn log_to(
    log: unsafe extern "C" fn(*mut c_void, gw_log_level, *const c_char, usize),
    userdata: *mut c_void,
    level: LogLevel,
    message: &str,
) {
    let level = match level {
        LogLevel::Debug => gw_log_level::GW_LOG_DEBUG,
        LogLevel::Info => gw_log_level::GW_LOG_INFO,
        LogLevel::Warn => gw_log_level::GW_LOG_WARN,
        LogLevel::Error => gw_log_level::GW_LOG_ERROR,
    };
    let text = c_string(message.to_owned());
    // SAFETY: a host callback given a NUL-terminated string that outlives the call.
    unsafe { log(userdata, level, text.as_ptr(), text.as_bytes().len()) }
}

/// Text for a C callback: NUL-terminated, with any NUL inside replaced (JSON from serde_json
/// escapes control characters, so only free text can carry one).
fn c_string(text: String) -> CString {
    CString::new(text).unwrap_or_else(|err| {
        let text = String::from_utf8_lossy(&err.into_vec()).replace('\0', "\u{FFFD}");
        CString::new(text).unwrap_or_default()
    })
}

/// Every registered method of a C host: `on_request`, answered by id through `gw_respond` on
/// the server it is given.
struct HostMethod {
    host: Arc<HostCallbacks>,
    server: ServerPtr,
}

impl MethodHandler for HostMethod {
    fn call(&self, request: MethodRequest, responder: Responder) {
        let Some(on_request) = self.host.callbacks.on_request else {
            return;
        };
        let Some(_call) = self.host.enter() else {
            return;
        };
        // The host answers by id through the server, which may not have its handle yet when
        // `gw_serve` is still returning; dropping the responder answers nothing.
        if let Some(handle) = responder.handle() {
            // SAFETY: live while a callback has entered (`ServerPtr`).
            unsafe { &*self.server.0 }.publish(handle);
        }
        drop(responder);
        let method = c_string(request.method.clone());
        let params = c_string(request.params.to_string());
        // SAFETY: a host callback given NUL-terminated strings that outlive the call.
        unsafe {
            on_request(
                self.host.callbacks.userdata,
                self.server.0,
                request.id,
                method.as_ptr(),
                method.as_bytes().len(),
                params.as_ptr(),
                params.as_bytes().len(),
                request.conn_id(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    struct Counters {
        logs: AtomicUsize,
        states: AtomicUsize,
        frees: AtomicUsize,
    }

    unsafe extern "C" fn log(
        userdata: *mut c_void,
        _: gw_log_level,
        message: *const c_char,
        len: usize,
    ) {
        // SAFETY: userdata is the test's Counters; message is NUL-terminated, len bytes long.
        unsafe {
            assert_eq!(*message.add(len), 0);
            (*userdata.cast::<Counters>())
                .logs
                .fetch_add(1, Ordering::SeqCst);
        }
    }

    unsafe extern "C" fn state(userdata: *mut c_void, _: gw_state, _: gw_result) {
        // SAFETY: userdata is the test's Counters.
        unsafe {
            (*userdata.cast::<Counters>())
                .states
                .fetch_add(1, Ordering::SeqCst)
        };
    }

    unsafe extern "C" fn free(userdata: *mut c_void) {
        // SAFETY: userdata is the test's Counters.
        unsafe {
            (*userdata.cast::<Counters>())
                .frees
                .fetch_add(1, Ordering::SeqCst)
        };
    }

    fn counters() -> Counters {
        Counters {
            logs: AtomicUsize::new(0),
            states: AtomicUsize::new(0),
            frees: AtomicUsize::new(0),
        }
    }

    #[test]
    fn userdata_is_freed_once_after_the_last_callback() {
        let counters = counters();
        let callbacks = gw_callbacks {
            size: size_of::<gw_callbacks>(),
            userdata: (&raw const counters).cast_mut().cast(),
            log: Some(log),
            state: Some(state),
            free_userdata: Some(free),
            on_request: None,
            on_connection: None,
            handlers: std::ptr::null(),
        };
        // SAFETY: a whole, valid gw_callbacks.
        let host = unsafe { HostCallbacks::read("t", &callbacks) }.unwrap();
        let logger = host.logger().unwrap();
        let handler = host.state_handler().unwrap();
        drop(host);
        logger.log(LogLevel::Info, "with\0nul");
        handler.notify(&GatewayState::Stopped { drained: false });
        drop(logger);
        assert_eq!(counters.frees.load(Ordering::SeqCst), 0);
        drop(handler);
        assert_eq!(counters.logs.load(Ordering::SeqCst), 1);
        assert_eq!(counters.states.load(Ordering::SeqCst), 1);
        assert_eq!(counters.frees.load(Ordering::SeqCst), 1);
    }

    /// What `on_connection` saw, in order: (conn_id, opened).
    unsafe extern "C" fn connection(
        userdata: *mut c_void,
        conn_id: u64,
        opened: bool,
        client_json: *const c_char,
        len: usize,
    ) {
        // SAFETY: userdata is the test's Mutex; client_json is NUL-terminated, len bytes long.
        unsafe {
            assert_eq!(*client_json.add(len), 0);
            let seen = &*userdata.cast::<Mutex<Vec<(u64, bool)>>>();
            seen.lock().unwrap().push((conn_id, opened));
        }
    }

    #[test]
    fn connections_before_the_server_is_written_out_wait_for_it_in_order() {
        let seen: Mutex<Vec<(u64, bool)>> = Mutex::new(Vec::new());
        let callbacks = gw_callbacks {
            size: size_of::<gw_callbacks>(),
            userdata: (&raw const seen).cast_mut().cast(),
            log: None,
            state: None,
            free_userdata: None,
            on_request: None,
            on_connection: Some(connection),
            handlers: std::ptr::null(),
        };
        // SAFETY: a whole, valid gw_callbacks.
        let host = unsafe { HostCallbacks::read("t", &callbacks) }.unwrap();
        let handlers = host.handlers("t", ServerPtr(std::ptr::null_mut())).unwrap();
        let client = |conn_id| {
            Arc::new(crate::server::ClientInfo {
                conn_id,
                client: Default::default(),
                role: "operator".into(),
                scopes: Vec::new(),
                protocol: 4,
                peer: "127.0.0.1:1".parse().unwrap(),
                origin: None,
            })
        };
        handlers.notify(&ConnectionEvent::Opened(client(1)));
        handlers.notify(&ConnectionEvent::Opened(client(2)));
        handlers.notify(&ConnectionEvent::Closed(client(1)));
        assert!(
            seen.lock().unwrap().is_empty(),
            "before gw_serve wrote out its server"
        );
        host.mark_served();
        assert_eq!(*seen.lock().unwrap(), [(1, true), (2, true), (1, false)]);
        handlers.notify(&ConnectionEvent::Closed(client(2)));
        assert_eq!(seen.lock().unwrap().last(), Some(&(2, false)));
        // Once the server is being freed, nothing more reaches the host.
        host.stop_calls();
        handlers.notify(&ConnectionEvent::Opened(client(3)));
        assert_eq!(seen.lock().unwrap().len(), 4);
    }

    #[test]
    fn fields_past_size_are_null() {
        let counters = counters();
        let callbacks = gw_callbacks {
            size: std::mem::offset_of!(gw_callbacks, state),
            userdata: (&raw const counters).cast_mut().cast(),
            log: Some(log),
            state: Some(state),
            free_userdata: Some(free),
            on_request: None,
            on_connection: None,
            handlers: std::ptr::null(),
        };
        // SAFETY: the struct is whole, so its first `size` bytes are readable.
        let host = unsafe { HostCallbacks::read("t", &callbacks) }.unwrap();
        assert!(host.logger().is_some());
        assert!(host.state_handler().is_none());
        drop(host);
        assert_eq!(counters.frees.load(Ordering::SeqCst), 0);

        for size in [0, 3, size_of::<gw_callbacks>() - 1] {
            let odd = gw_callbacks { size, ..callbacks };
            // SAFETY: as above.
            let result = unsafe { HostCallbacks::read("t", &odd) };
            assert_eq!(result.err(), Some(gw_result::GW_ERR_INVALID_ARGUMENT));
        }
        assert_eq!(counters.frees.load(Ordering::SeqCst), 0);
    }
}
