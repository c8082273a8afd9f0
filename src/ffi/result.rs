//! `gw_result`, its names, and the calling thread's last error: its message and the holder it
//! named.

use std::cell::{Cell, RefCell};
use std::ffi::{CString, c_char};
use std::fmt::Display;

use crate::error::GatewayLockError;

/// What a `gw_*` call did. The numbers are stable and never reused; new results are added at
/// the end. On any result but `GW_OK`, `gw_last_error_message()` says why, on the same thread.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum gw_result {
    /// Success.
    GW_OK = 0,
    /// A pointer argument that must not be NULL was NULL.
    GW_ERR_NULL_ARGUMENT = 1,
    /// A string was not UTF-8, a number was out of range, or an option is invalid (a bad
    /// profile name, `OPENCLAW_GATEWAY_PORT`, lan without auth, no state dir given inside the
    /// macOS App Sandbox, ...).
    GW_ERR_INVALID_ARGUMENT = 2,
    /// A live gateway holds the lock; the message names its pid when known.
    GW_ERR_ALREADY_RUNNING = 3,
    /// The port is taken (by another gateway or anything else).
    GW_ERR_ADDR_IN_USE = 4,
    /// Binding or listening failed for another reason.
    GW_ERR_BIND = 5,
    /// Reading, creating or removing a lock file failed.
    GW_ERR_LOCK_IO = 6,
    /// The lock directory is unsafe (a symlink, another owner, open permissions).
    GW_ERR_LOCK_DIR_UNSAFE = 7,
    /// A shutdown cut off connections still open at its timeout (the port is free and the
    /// lock released all the same).
    GW_ERR_TIMEOUT = 8,
    /// The server could not start (threads, runtime, listener set-up, an unusable device
    /// store).
    GW_ERR_RUNTIME = 9,
    /// The library panicked; the call did nothing else. A bug: please report the message.
    GW_ERR_PANIC = 10,
    /// A lock path is a symlink, FIFO, directory or other non-regular file.
    GW_ERR_LOCK_FILE_UNSAFE = 11,
    /// A lock file was deleted or replaced while held (given to the state callback only).
    GW_ERR_LOCK_LOST = 12,
    /// The request or connection named is not there (any more): the request was already
    /// answered or timed out, or its client (or the connection) is gone.
    GW_ERR_NOT_FOUND = 13,
    /// A request body could not be read (`gw_http_exchange_read`): it is larger than the
    /// route's limit, its client sent nothing within the idle timeout or went away, or the
    /// gateway stopped; the message says which.
    GW_ERR_HTTP_BODY = 14,
    /// A call that waits was made on one of the gateway's worker threads (inside a callback),
    /// where waiting would stall the server: make it from a thread of your own.
    GW_ERR_WRONG_THREAD = 15,
    /// The lock file records a gateway on another machine: never reclaimed here, refused at
    /// once. `gw_last_error_holder` gives its pid and port (on that machine: never signal it
    /// here) and `gw_last_error_holder_host` its host; if it is gone, `gw_unlock` with `force`
    /// removes its lock.
    GW_ERR_HELD_BY_OTHER_HOST = 16,
    /// Cluster mode: another gateway leads this config's cluster (on another machine, or
    /// another state dir here). `gw_last_error_holder` gives its pid and port and
    /// `gw_last_error_holder_host` its host; the message names it and its fencing token.
    GW_ERR_CLUSTER_LEADER = 17,
    /// Cluster mode: the store (etcd) did not answer or refused; the message names the
    /// endpoints and what the client saw. Nothing is held.
    GW_ERR_CLUSTER_UNAVAILABLE = 18,
    /// Cluster mode: this gateway stopped serving as leader (its lease could not be renewed
    /// in time, or the store says it expired); given to the state callback with
    /// `GW_STATE_LOCK_LOST`. Shut the server down and acquire again to stand by.
    GW_ERR_LEADERSHIP_LOST = 19,
    /// Cluster mode: a standby's wait was cancelled (`gw_cancel_trigger` on the `gw_cancel`
    /// given to `gw_options_set_cluster_cancel`, or one triggered before the acquire): nothing
    /// is held.
    GW_ERR_CANCELLED = 20,
}

impl gw_result {
    /// Every result, in number order.
    ///
    /// cbindgen:ignore
    pub const ALL: [gw_result; 21] = [
        Self::GW_OK,
        Self::GW_ERR_NULL_ARGUMENT,
        Self::GW_ERR_INVALID_ARGUMENT,
        Self::GW_ERR_ALREADY_RUNNING,
        Self::GW_ERR_ADDR_IN_USE,
        Self::GW_ERR_BIND,
        Self::GW_ERR_LOCK_IO,
        Self::GW_ERR_LOCK_DIR_UNSAFE,
        Self::GW_ERR_TIMEOUT,
        Self::GW_ERR_RUNTIME,
        Self::GW_ERR_PANIC,
        Self::GW_ERR_LOCK_FILE_UNSAFE,
        Self::GW_ERR_LOCK_LOST,
        Self::GW_ERR_NOT_FOUND,
        Self::GW_ERR_HTTP_BODY,
        Self::GW_ERR_WRONG_THREAD,
        Self::GW_ERR_HELD_BY_OTHER_HOST,
        Self::GW_ERR_CLUSTER_LEADER,
        Self::GW_ERR_CLUSTER_UNAVAILABLE,
        Self::GW_ERR_LEADERSHIP_LOST,
        Self::GW_ERR_CANCELLED,
    ];

    /// The enumerator's name, NUL-terminated.
    fn name(self) -> &'static str {
        match self {
            Self::GW_OK => "GW_OK\0",
            Self::GW_ERR_NULL_ARGUMENT => "GW_ERR_NULL_ARGUMENT\0",
            Self::GW_ERR_INVALID_ARGUMENT => "GW_ERR_INVALID_ARGUMENT\0",
            Self::GW_ERR_ALREADY_RUNNING => "GW_ERR_ALREADY_RUNNING\0",
            Self::GW_ERR_ADDR_IN_USE => "GW_ERR_ADDR_IN_USE\0",
            Self::GW_ERR_BIND => "GW_ERR_BIND\0",
            Self::GW_ERR_LOCK_IO => "GW_ERR_LOCK_IO\0",
            Self::GW_ERR_LOCK_DIR_UNSAFE => "GW_ERR_LOCK_DIR_UNSAFE\0",
            Self::GW_ERR_TIMEOUT => "GW_ERR_TIMEOUT\0",
            Self::GW_ERR_RUNTIME => "GW_ERR_RUNTIME\0",
            Self::GW_ERR_PANIC => "GW_ERR_PANIC\0",
            Self::GW_ERR_LOCK_FILE_UNSAFE => "GW_ERR_LOCK_FILE_UNSAFE\0",
            Self::GW_ERR_LOCK_LOST => "GW_ERR_LOCK_LOST\0",
            Self::GW_ERR_NOT_FOUND => "GW_ERR_NOT_FOUND\0",
            Self::GW_ERR_HTTP_BODY => "GW_ERR_HTTP_BODY\0",
            Self::GW_ERR_WRONG_THREAD => "GW_ERR_WRONG_THREAD\0",
            Self::GW_ERR_HELD_BY_OTHER_HOST => "GW_ERR_HELD_BY_OTHER_HOST\0",
            Self::GW_ERR_CLUSTER_LEADER => "GW_ERR_CLUSTER_LEADER\0",
            Self::GW_ERR_CLUSTER_UNAVAILABLE => "GW_ERR_CLUSTER_UNAVAILABLE\0",
            Self::GW_ERR_LEADERSHIP_LOST => "GW_ERR_LEADERSHIP_LOST\0",
            Self::GW_ERR_CANCELLED => "GW_ERR_CANCELLED\0",
        }
    }

    /// The result a Rust error translates to.
    pub(crate) fn of(err: &GatewayLockError) -> Self {
        match err {
            GatewayLockError::UnlockIncomplete { refusal, .. } => Self::of(refusal),
            GatewayLockError::AlreadyRunning { .. } | GatewayLockError::LockInUse { .. } => {
                Self::GW_ERR_ALREADY_RUNNING
            }
            GatewayLockError::HeldByOtherHost { .. } => Self::GW_ERR_HELD_BY_OTHER_HOST,
            GatewayLockError::AddrInUse { .. } => Self::GW_ERR_ADDR_IN_USE,
            GatewayLockError::Bind { .. } => Self::GW_ERR_BIND,
            GatewayLockError::LockIo { .. } => Self::GW_ERR_LOCK_IO,
            GatewayLockError::UnsafeLockDir { .. } => Self::GW_ERR_LOCK_DIR_UNSAFE,
            GatewayLockError::UnsafeLockFile { .. } => Self::GW_ERR_LOCK_FILE_UNSAFE,
            GatewayLockError::LanWithoutAuth
            | GatewayLockError::InvalidOption(_)
            | GatewayLockError::SandboxedStateDir { .. } => Self::GW_ERR_INVALID_ARGUMENT,
            GatewayLockError::Runtime(_) | GatewayLockError::DeviceStore { .. } => {
                Self::GW_ERR_RUNTIME
            }
            GatewayLockError::ClusterLeaderElsewhere { .. } => Self::GW_ERR_CLUSTER_LEADER,
            GatewayLockError::ClusterUnavailable { .. }
            | GatewayLockError::ClusterRefused { .. } => Self::GW_ERR_CLUSTER_UNAVAILABLE,
            GatewayLockError::Cancelled => Self::GW_ERR_CANCELLED,
        }
    }
}

/// The name of a result, e.g. `"GW_ERR_ALREADY_RUNNING"`; `"GW_UNKNOWN"` for a number this
/// library does not know (it takes any number, so a result from a newer library is safe).
///
/// Returns a static NUL-terminated string: never NULL, never to be freed. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn gw_result_name(result: u32) -> *const c_char {
    let name = gw_result::ALL
        .get(result as usize)
        .map_or("GW_UNKNOWN\0", |known| known.name());
    name.as_ptr().cast()
}

/// The live gateway a refused acquire named: its pid, and its port (0 when unknown).
#[derive(Clone, Copy)]
struct Holder {
    pid: u32,
    port: u16,
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
    static LAST_HOLDER: Cell<Option<Holder>> = const { Cell::new(None) };
    /// The holder's host when it is another machine; empty otherwise.
    static LAST_HOLDER_HOST: RefCell<CString> = RefCell::new(CString::default());
}

/// Records `message` as this thread's last error, naming no holder, and returns `result`.
pub(crate) fn fail(result: gw_result, message: impl Display) -> gw_result {
    record(result, message, None, None)
}

fn record(
    result: gw_result,
    message: impl Display,
    holder: Option<Holder>,
    host: Option<&str>,
) -> gw_result {
    let c_string = |text: &str| CString::new(text.replace('\0', "\u{FFFD}")).unwrap_or_default();
    let text = c_string(&message.to_string());
    let host = c_string(host.unwrap_or(""));
    // Unavailable only while the thread is being torn down; the result still says what failed.
    let _ = LAST_ERROR.try_with(|last| *last.borrow_mut() = text);
    let _ = LAST_HOLDER.try_with(|last| last.set(holder));
    let _ = LAST_HOLDER_HOST.try_with(|last| *last.borrow_mut() = host);
    result
}

/// Records a Rust error as this thread's last error, with the holder it names, and returns
/// its result.
pub(crate) fn fail_with(err: &GatewayLockError) -> gw_result {
    // After a partial unlock the holder is the refusal's; the message says both.
    let message = err;
    let err = match err {
        GatewayLockError::UnlockIncomplete { refusal, .. } => refusal.as_ref(),
        _ => err,
    };
    let holder = match err {
        GatewayLockError::AlreadyRunning { pid, port, .. } if pid.is_some() || port.is_some() => {
            Some(Holder {
                pid: pid.unwrap_or(0),
                port: port.unwrap_or(0),
            })
        }
        GatewayLockError::HeldByOtherHost { pid, port, .. } => Some(Holder {
            pid: *pid,
            port: port.unwrap_or(0),
        }),
        GatewayLockError::ClusterLeaderElsewhere { leader, .. } => Some(Holder {
            pid: leader.pid,
            port: leader.port,
        }),
        GatewayLockError::LockInUse {
            pid: Some(pid),
            port,
            ..
        } => Some(Holder {
            pid: *pid,
            port: port.unwrap_or(0),
        }),
        _ => None,
    };
    let host = match err {
        GatewayLockError::HeldByOtherHost { host, .. }
        | GatewayLockError::LockInUse {
            host: Some(host), ..
        } => Some(host.as_str()),
        GatewayLockError::ClusterLeaderElsewhere { leader, .. } => Some(leader.host.as_str()),
        _ => None,
    };
    record(gw_result::of(err), message, holder, host)
}

/// The live gateway that the last failed `gw_*` call on the calling thread named, as typed
/// values: after `GW_ERR_ALREADY_RUNNING` from `gw_lock_acquire` (or `_with_listener`, or
/// `gw_unlock`), or `GW_ERR_HELD_BY_OTHER_HOST`, the holder's pid and the port its lock file
/// records, each 0 when unknown. When `gw_last_error_holder_host` names a host, the pid is one
/// of that machine's: never signal it here.
///
/// `GW_OK` when the last error named a live holder with a pid or a port known: writes `*pid` and `*port` (either may be NULL
/// when not wanted). `GW_ERR_NOT_FOUND` otherwise (no call failed yet on this thread, or the
/// last failure named no holder, e.g. `GW_ERR_ADDR_IN_USE`, whose holder may be any program):
/// nothing is written. Unlike every other function, it never records an error of its own, so
/// `gw_last_error_message` still gives the failure it describes. Any thread.
///
/// # Safety
///
/// `pid` and `port` are each NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_last_error_holder(pid: *mut u32, port: *mut u16) -> gw_result {
    super::boundary::boundary("gw_last_error_holder", || {
        let holder = LAST_HOLDER.try_with(Cell::get).ok().flatten();
        let Some(holder) = holder else {
            return gw_result::GW_ERR_NOT_FOUND;
        };
        // SAFETY: each is NULL or writable, by the contract.
        unsafe {
            if let Some(pid) = pid.as_mut() {
                *pid = holder.pid;
            }
            if let Some(port) = port.as_mut() {
                *port = holder.port;
            }
        }
        gw_result::GW_OK
    })
}

/// The host of the holder the last failed `gw_*` call on the calling thread named, when it is
/// another machine (after `GW_ERR_HELD_BY_OTHER_HOST`, or `GW_ERR_ALREADY_RUNNING` from
/// `gw_unlock` for a holder whose lock the file system shares): its host name as its lock file
/// records it (else its machine id, else its boot id). `""` when the last failure named no
/// other machine, or no call failed on this thread yet. Like `gw_last_error_holder`, it records
/// no error of its own.
///
/// Returns a NUL-terminated UTF-8 string owned by the library, never NULL: valid until the next
/// failing `gw_*` call on the same thread or the thread's exit; copy it to keep it. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn gw_last_error_holder_host() -> *const c_char {
    LAST_HOLDER_HOST
        .try_with(|last| last.borrow().as_ptr())
        .unwrap_or(c"".as_ptr())
}

/// The message of the last failed `gw_*` call on the calling thread: the exact message of the
/// SPEC (e.g. `gateway already running (pid 4242); lock timeout after 5000ms`), or `""` when no
/// call failed on this thread yet. Successful calls leave it unchanged.
///
/// Returns a NUL-terminated UTF-8 string owned by the library, never NULL: valid until the next
/// failing `gw_*` call on the same thread or the thread's exit; copy it to keep it. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn gw_last_error_message() -> *const c_char {
    LAST_ERROR
        .try_with(|last| last.borrow().as_ptr())
        .unwrap_or(c"".as_ptr())
}

#[cfg(test)]
mod tests {
    use std::ffi::CStr;

    use super::*;

    fn name(result: u32) -> &'static str {
        // SAFETY: gw_result_name returns a static NUL-terminated string.
        unsafe { CStr::from_ptr(gw_result_name(result)) }
            .to_str()
            .unwrap()
    }

    #[test]
    fn every_result_has_its_own_name_and_number() {
        for (number, result) in gw_result::ALL.iter().enumerate() {
            assert_eq!(*result as usize, number);
            assert_eq!(name(number as u32), format!("{result:?}"));
        }
        assert_eq!(name(gw_result::ALL.len() as u32), "GW_UNKNOWN");
        assert_eq!(name(u32::MAX), "GW_UNKNOWN");
    }

    #[test]
    fn last_error_is_per_thread() {
        assert_eq!(
            fail(gw_result::GW_ERR_BIND, "nul\0inside"),
            gw_result::GW_ERR_BIND
        );
        let here = || {
            // SAFETY: a NUL-terminated string valid until the next failure on this thread.
            unsafe { CStr::from_ptr(gw_last_error_message()) }
                .to_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(here(), "nul\u{FFFD}inside");
        std::thread::spawn(move || assert_eq!(here(), ""))
            .join()
            .unwrap();
        let err = GatewayLockError::AlreadyRunning {
            pid: Some(4242),
            port: None,
            healthy: false,
            timeout_ms: 5000,
        };
        assert_eq!(fail_with(&err), gw_result::GW_ERR_ALREADY_RUNNING);
        assert_eq!(
            here(),
            "gateway already running (pid 4242); lock timeout after 5000ms"
        );
    }

    /// What `gw_last_error_holder` answers: the pid and port, or the result.
    type Answer = Result<(u32, u16), gw_result>;

    fn holder() -> Answer {
        let (mut pid, mut port) = (7, 7);
        // SAFETY: both outputs are writable locals.
        match unsafe { gw_last_error_holder(&mut pid, &mut port) } {
            gw_result::GW_OK => Ok((pid, port)),
            other => {
                assert_eq!((pid, port), (7, 7), "written on {other:?}");
                Err(other)
            }
        }
    }

    #[test]
    fn the_holder_is_the_last_error_s_own() {
        let running = |pid, port| GatewayLockError::AlreadyRunning {
            pid,
            port,
            healthy: true,
            timeout_ms: 0,
        };
        let cases: [(GatewayLockError, Answer); 5] = [
            (running(Some(42), Some(18789)), Ok((42, 18789))),
            (running(Some(42), None), Ok((42, 0))),
            // A known port is worth having without the pid (0: unknown).
            (running(None, Some(18789)), Ok((0, 18789))),
            (running(None, None), Err(gw_result::GW_ERR_NOT_FOUND)),
            (
                GatewayLockError::AddrInUse {
                    url: "ws://127.0.0.1:1".into(),
                },
                Err(gw_result::GW_ERR_NOT_FOUND),
            ),
        ];
        assert_eq!(holder(), Err(gw_result::GW_ERR_NOT_FOUND));
        for (err, want) in cases {
            fail_with(&err);
            assert_eq!(holder(), want, "{err}");
            // Asking never changes the last error.
            assert_eq!(holder(), want, "{err}");
        }
        let host = || {
            // SAFETY: a NUL-terminated string valid until the next failure on this thread.
            unsafe { CStr::from_ptr(gw_last_error_holder_host()) }
                .to_str()
                .unwrap()
                .to_owned()
        };
        let elsewhere = GatewayLockError::HeldByOtherHost {
            host: "host-a".into(),
            pid: 42,
            port: None,
            lock_path: "/l".into(),
        };
        assert_eq!(fail_with(&elsewhere), gw_result::GW_ERR_HELD_BY_OTHER_HOST);
        assert_eq!(holder(), Ok((42, 0)));
        assert_eq!(host(), "host-a");
        fail_with(&running(Some(42), Some(1)));
        assert_eq!(host(), "", "a holder on this machine names no host");
        fail_with(&elsewhere);
        fail(gw_result::GW_ERR_NULL_ARGUMENT, "f: x is NULL");
        assert_eq!(host(), "");
        assert_eq!(holder(), Err(gw_result::GW_ERR_NOT_FOUND));
        // Cluster mode: the leader is the holder, with its host, whichever machine it is on.
        let leader = GatewayLockError::ClusterLeaderElsewhere {
            cluster: "home".into(),
            leader: crate::cluster::ClusterLeader {
                host: "host-b".into(),
                pid: 7,
                port: 18789,
                since_ms: 1,
                owner_id: "o".into(),
                fencing_token: 12,
            },
        };
        assert_eq!(fail_with(&leader), gw_result::GW_ERR_CLUSTER_LEADER);
        assert_eq!(holder(), Ok((7, 18789)));
        assert_eq!(host(), "host-b");
        fail_with(&running(Some(9), Some(2)));
        assert_eq!(
            // SAFETY: NULL outputs are allowed.
            unsafe { gw_last_error_holder(std::ptr::null_mut(), std::ptr::null_mut()) },
            gw_result::GW_OK
        );
        std::thread::spawn(|| assert_eq!(holder(), Err(gw_result::GW_ERR_NOT_FOUND)))
            .join()
            .unwrap();
    }
}
