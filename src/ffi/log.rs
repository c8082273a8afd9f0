//! A host's log callback as a Rust [`Logger`].

use std::ffi::{c_char, c_void};
use std::sync::Arc;

use super::boundary::c_string;
use super::callbacks::gw_log_level;
use super::userdata::HostUserdata;
use crate::options::{LogLevel, Logger};

/// A host's log function (a non-NULL `gw_log_fn`).
pub(crate) type LogFn = unsafe extern "C" fn(*mut c_void, gw_log_level, *const c_char, usize);

/// A logger that hands every line to `log` with `userdata`, and keeps `userdata` (so its
/// finalizer cannot run) for as long as any clone of the logger exists.
pub(crate) fn host_logger(log: LogFn, userdata: Arc<HostUserdata>) -> Logger {
    Logger::new(move |level, message| {
        let level = match level {
            LogLevel::Debug => gw_log_level::GW_LOG_DEBUG,
            LogLevel::Info => gw_log_level::GW_LOG_INFO,
            LogLevel::Warn => gw_log_level::GW_LOG_WARN,
            LogLevel::Error => gw_log_level::GW_LOG_ERROR,
        };
        let text = c_string(message.to_owned());
        // SAFETY: a host callback, callable from any thread by the contract of `gw_log_fn`,
        // with its own userdata (alive: this closure holds it) and a NUL-terminated string
        // that outlives the call.
        unsafe { log(userdata.get(), level, text.as_ptr(), text.as_bytes().len()) }
    })
}
