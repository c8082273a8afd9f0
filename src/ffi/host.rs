//! `HostCallbacks`: a copy of the host's `gw_callbacks` as the library holds it, and its
//! translation into what the Rust API serves with (a `Logger`, a `StateHandler`, `Handlers`).

use std::mem::{MaybeUninit, size_of};
use std::sync::Arc;

use super::callbacks::{
    gw_callbacks, gw_connection_fn, gw_log_fn, gw_request_fn, gw_state, gw_state_fn,
};
use super::calls::CallGate;
use super::log::host_logger;
use super::requests::{HostMethod, announce_connection};
use super::result::{fail, fail_with, gw_result};
use super::server::ServerPtr;
use super::userdata::HostUserdata;
use crate::options::Logger;
use crate::server::{GatewayState, Handlers, MethodHandler, StateHandler};

/// The host's callbacks, shared by the logger, the state handler and the protocol handlers
/// made from them; `free_userdata` runs when the last of them is dropped.
pub(crate) struct HostCallbacks {
    log: gw_log_fn,
    state: gw_state_fn,
    pub(super) on_request: gw_request_fn,
    pub(super) on_connection: gw_connection_fn,
    /// The callbacks' `userdata` with its `free_userdata`.
    pub(super) userdata: Arc<HostUserdata>,
    /// `*callbacks.handlers` as it was during `gw_serve`.
    registered: Option<Handlers>,
    /// The request and connection callbacks, the ones that use the server.
    pub(super) calls: CallGate,
}

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
        let copy = unsafe {
            std::ptr::copy_nonoverlapping(callbacks.cast::<u8>(), copy.as_mut_ptr().cast(), known);
            copy.assume_init()
        };
        // SAFETY: NULL or live, by the contract.
        let registered = unsafe { copy.handlers.as_ref() }.map(|h| h.handlers.clone());
        Ok(Arc::new(Self {
            log: copy.log,
            state: copy.state,
            on_request: copy.on_request,
            on_connection: copy.on_connection,
            userdata: Arc::new(HostUserdata::new(copy.userdata, copy.free_userdata)),
            registered,
            calls: CallGate::default(),
        }))
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
            if registered.method_scopes().next().is_some() && self.on_request.is_none() {
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
            // Checked by the same calls in gw_handlers_add_method/add_event(_with_scope): cannot fail
            // here.
            for (name, scope) in registered.method_scopes() {
                handlers
                    .add_method(name, scope.map(str::to_owned), Arc::clone(&method))
                    .map_err(|err| fail_with(&err))?;
            }
            for event in registered.events() {
                let scope = registered.event_scope(event).map(str::to_owned);
                handlers
                    .add_event_with_scope(event.as_str(), scope)
                    .map_err(|err| fail_with(&err))?;
            }
        }
        if self.on_connection.is_some() {
            let host = Arc::clone(self);
            handlers =
                handlers.on_connection(move |event| announce_connection(&host, server, event));
        }
        Ok(handlers)
    }

    /// The logger to serve with, when the host gave a log callback.
    pub(crate) fn logger(&self) -> Option<Logger> {
        let log = self.log?;
        Some(host_logger(log, Arc::clone(&self.userdata)))
    }

    /// The state handler to serve with, when the host gave a state callback.
    pub(crate) fn state_handler(&self) -> Option<StateHandler> {
        let state = self.state?;
        let userdata = Arc::clone(&self.userdata);
        Some(StateHandler::new(move |change| {
            let (code, result) = match change {
                GatewayState::Ready => (gw_state::GW_STATE_READY, gw_result::GW_OK),
                GatewayState::LockLost { .. } => {
                    (gw_state::GW_STATE_LOCK_LOST, gw_result::GW_ERR_LOCK_LOST)
                }
                // The same "lock lost" path, with its own result (issue 14).
                GatewayState::LeadershipLost { .. } => (
                    gw_state::GW_STATE_LOCK_LOST,
                    gw_result::GW_ERR_LEADERSHIP_LOST,
                ),
                GatewayState::Stopped { drained: true } => {
                    (gw_state::GW_STATE_STOPPED, gw_result::GW_OK)
                }
                GatewayState::Stopped { drained: false } => {
                    (gw_state::GW_STATE_STOPPED, gw_result::GW_ERR_TIMEOUT)
                }
            };
            // SAFETY: a host callback, called with the host's own userdata (alive: this
            // closure holds it).
            unsafe { state(userdata.get(), code, result) }
        }))
    }

    /// No request or connection callback starts from now on; returns once none is running,
    /// so the server they use may be freed.
    pub(crate) fn stop_calls(&self) {
        self.calls.stop();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use std::ffi::{c_char, c_void};
    use std::mem::size_of;

    use super::super::callbacks::gw_log_level;
    use super::*;
    use crate::options::LogLevel;
    use crate::server::GatewayState;

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
