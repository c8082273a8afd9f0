//! Cluster mode from C (issue 14): the cluster options of a `gw_options`, the `gw_cancel` that
//! ends a standby's wait, the leadership of a lock or a server, and the cluster's leader as the
//! store says.

use std::ffi::c_char;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::boundary::{boundary, free_handle, non_null, result_boundary};
use super::lock::gw_lock;
use super::options::{gw_options, update, update_with_str};
use super::result::{fail, fail_with, gw_result};
use super::server::gw_server;
use crate::cluster::{ClusterLeader, ClusterOptions, ClusterStore};
use crate::lock::status;
use crate::options::GatewayOptions;

/// `gw_options_set_cluster_wait_ms`: fail at once with `GW_ERR_CLUSTER_LEADER` while another
/// gateway leads (the default).
pub const GW_CLUSTER_FAIL_AT_ONCE: u32 = 0;
/// `gw_options_set_cluster_wait_ms`: stand by until this gateway leads, however long that takes
/// (end it early with a `gw_cancel`).
pub const GW_CLUSTER_WAIT_FOREVER: u32 = u32::MAX;

/// Applies `change` to the options' cluster settings, then checks them as acquiring would, so
/// a bad value is refused by the setter that gave it (the options are then unchanged).
///
/// # Safety
///
/// `options` is NULL or a live `gw_options` no other thread uses.
unsafe fn update_cluster(
    function: &'static str,
    options: *mut gw_options,
    change: impl FnOnce(ClusterOptions) -> ClusterOptions,
) -> gw_result {
    // SAFETY: forwarded contract.
    unsafe { update(function, options, |o| with_cluster(function, o, change)) }
}

fn with_cluster(
    function: &'static str,
    options: GatewayOptions,
    change: impl FnOnce(ClusterOptions) -> ClusterOptions,
) -> Result<GatewayOptions, gw_result> {
    let Some(cluster) = options.cluster_options().cloned() else {
        return Err(fail(
            gw_result::GW_ERR_INVALID_ARGUMENT,
            format!("{function}: cluster mode is off: call gw_options_set_cluster_etcd first"),
        ));
    };
    let cluster = change(cluster);
    cluster.validate().map_err(|err| fail_with(&err))?;
    Ok(options.cluster(cluster))
}

/// Turns cluster mode on (or changes its store): after the local lock, acquiring campaigns for
/// the cluster's leadership in etcd v3 at `endpoints`, the members' client URLs separated by
/// commas (`"http://10.0.0.2:2379,http://10.0.0.3:2379"`); only the leader binds and serves.
/// The other cluster settings keep their values (defaults: the name from the config path, TTL
/// 5000 ms, `GW_CLUSTER_FAIL_AT_ONCE`, no cancel).
///
/// The string is copied. `GW_ERR_INVALID_ARGUMENT` (options unchanged) when an endpoint is
/// empty or not an `http://` URL, or when the library was built without the `cluster-etcd`
/// feature; the message says which and what to do. `GW_ERR_NULL_ARGUMENT` when an argument is
/// NULL. The store is first reached when acquiring (`GW_ERR_CLUSTER_UNAVAILABLE` there).
///
/// # Safety
///
/// `options` is NULL or a live `gw_options` that no other thread uses during the call;
/// `endpoints` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_options_set_cluster_etcd(
    options: *mut gw_options,
    endpoints: *const c_char,
) -> gw_result {
    const FUNCTION: &str = "gw_options_set_cluster_etcd";
    // SAFETY: forwarded contract.
    unsafe {
        update_with_str(FUNCTION, options, "endpoints", endpoints, |o, endpoints| {
            let endpoints: Vec<String> = endpoints.split(',').map(|e| e.trim().into()).collect();
            let cluster = match o.cluster_options() {
                Some(cluster) => {
                    let mut cluster = cluster.clone();
                    cluster.store = ClusterStore::Etcd { endpoints };
                    cluster
                }
                None => ClusterOptions::etcd(endpoints),
            };
            with_cluster(FUNCTION, o.cluster(cluster), |cluster| cluster)
        })
    }
}

/// The cluster's name: gateways with the same name and store elect one leader. Default:
/// derived from the config path, as the config lock's name is (give one when the machines keep
/// their configs at different paths). 1 to 128 letters, digits, `-`, `_` or `.`.
///
/// The string is copied. `GW_ERR_INVALID_ARGUMENT` (options unchanged) for another name, or
/// before `gw_options_set_cluster_etcd`; `GW_ERR_NULL_ARGUMENT` when an argument is NULL.
///
/// # Safety
///
/// `options` is NULL or a live `gw_options` that no other thread uses during the call; `name`
/// is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_options_set_cluster_name(
    options: *mut gw_options,
    name: *const c_char,
) -> gw_result {
    const FUNCTION: &str = "gw_options_set_cluster_name";
    // SAFETY: forwarded contract.
    unsafe {
        update_with_str(FUNCTION, options, "name", name, |o, name| {
            with_cluster(FUNCTION, o, |cluster| cluster.name(name))
        })
    }
}

/// The lease's TTL (default 5000 ms): a leader that dies is replaced about this long after.
/// Whole seconds (etcd counts leases in seconds), at least 2000 ms. The leader renews every TTL
/// / 5 and stops serving when it has not renewed for 2/3 of the TTL.
///
/// `GW_ERR_INVALID_ARGUMENT` (options unchanged) for another value, or before
/// `gw_options_set_cluster_etcd`; `GW_ERR_NULL_ARGUMENT` when `options` is NULL.
///
/// # Safety
///
/// `options` is NULL or a live `gw_options` that no other thread uses during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_options_set_cluster_ttl_ms(
    options: *mut gw_options,
    milliseconds: u32,
) -> gw_result {
    // SAFETY: forwarded contract.
    unsafe {
        update_cluster("gw_options_set_cluster_ttl_ms", options, |cluster| {
            cluster.ttl(Duration::from_millis(u64::from(milliseconds)))
        })
    }
}

/// How long acquiring stands by while another gateway leads: `GW_CLUSTER_FAIL_AT_ONCE` (0, the
/// default) fails at once with `GW_ERR_CLUSTER_LEADER`, naming the leader; N waits up to N ms
/// to become leader, then fails the same way; `GW_CLUSTER_WAIT_FOREVER` waits until it leads.
/// A `gw_cancel` (`gw_options_set_cluster_cancel`) ends any wait early.
///
/// `GW_ERR_INVALID_ARGUMENT` (options unchanged) before `gw_options_set_cluster_etcd`;
/// `GW_ERR_NULL_ARGUMENT` when `options` is NULL.
///
/// # Safety
///
/// `options` is NULL or a live `gw_options` that no other thread uses during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_options_set_cluster_wait_ms(
    options: *mut gw_options,
    milliseconds: u32,
) -> gw_result {
    let wait = match milliseconds {
        GW_CLUSTER_FAIL_AT_ONCE => None,
        GW_CLUSTER_WAIT_FOREVER => Some(Duration::MAX),
        ms => Some(Duration::from_millis(u64::from(ms))),
    };
    // SAFETY: forwarded contract.
    unsafe {
        update_cluster("gw_options_set_cluster_wait_ms", options, |cluster| {
            cluster.wait(wait)
        })
    }
}

/// What ends a standby's wait from another thread: give it to `gw_options_set_cluster_cancel`,
/// then `gw_cancel_trigger` it while `gw_lock_acquire` stands by; the acquire returns
/// `GW_ERR_CANCELLED` within about 250 ms, holding nothing.
///
/// Created by `gw_cancel_new`, freed by `gw_cancel_free` (at any time: options given it keep
/// their own reference). Triggered once, it stays triggered: every later acquire with options
/// given it fails at once with `GW_ERR_CANCELLED`; use a new one to stand by again. Any thread,
/// at once.
pub struct gw_cancel {
    flag: Arc<AtomicBool>,
}

/// A new, untriggered `gw_cancel` that the caller owns and frees with `gw_cancel_free`; NULL
/// only when the library failed (see `gw_last_error_message`). Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn gw_cancel_new() -> *mut gw_cancel {
    boundary("gw_cancel_new", || {
        Box::into_raw(Box::new(gw_cancel {
            flag: Arc::new(AtomicBool::new(false)),
        }))
    })
}

/// Triggers the cancel: a standby's wait with options given it ends with `GW_ERR_CANCELLED`.
/// Does not wait for it. `GW_ERR_NULL_ARGUMENT` when `cancel` is NULL. Any thread, also while
/// another thread is inside `gw_lock_acquire`.
///
/// # Safety
///
/// `cancel` is NULL or a live `gw_cancel`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_cancel_trigger(cancel: *const gw_cancel) -> gw_result {
    result_boundary("gw_cancel_trigger", || {
        let cancel = non_null("gw_cancel_trigger", "cancel", cancel.cast_mut())?;
        // SAFETY: non-NULL and live by the contract; only its atomic is touched.
        unsafe { &*cancel }.flag.store(true, Ordering::Release);
        Ok(())
    })
}

/// Frees a `gw_cancel`; options given it keep working with their own reference. NULL is
/// harmless.
///
/// # Safety
///
/// `cancel` is NULL or was returned by `gw_cancel_new` and is not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_cancel_free(cancel: *mut gw_cancel) {
    // SAFETY: NULL or from the matching `_new`, never used again, by the contract.
    unsafe { free_handle("gw_cancel_free", cancel) }
}

/// Lets `cancel` end the standby's wait of an acquire with these options (see `gw_cancel`).
/// The options keep their own reference to it.
///
/// `GW_ERR_INVALID_ARGUMENT` (options unchanged) before `gw_options_set_cluster_etcd`;
/// `GW_ERR_NULL_ARGUMENT` when an argument is NULL.
///
/// # Safety
///
/// `options` is NULL or a live `gw_options` that no other thread uses during the call;
/// `cancel` is NULL or a live `gw_cancel`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_options_set_cluster_cancel(
    options: *mut gw_options,
    cancel: *const gw_cancel,
) -> gw_result {
    const FUNCTION: &str = "gw_options_set_cluster_cancel";
    // SAFETY: forwarded contract.
    unsafe {
        update(FUNCTION, options, |o| {
            let cancel = non_null(FUNCTION, "cancel", cancel.cast_mut())?;
            // SAFETY: non-NULL and live by the contract.
            let flag = Arc::clone(&(*cancel).flag);
            with_cluster(FUNCTION, o, |cluster| cluster.cancel_on(flag))
        })
    }
}

/// The fencing token, or `GW_ERR_NOT_FOUND` naming `what` without cluster mode.
///
/// # Safety
///
/// `out` is NULL or writable.
unsafe fn write_token(
    function: &'static str,
    what: &str,
    token: Option<u64>,
    out: *mut u64,
) -> Result<(), gw_result> {
    let out = non_null(function, "out", out)?;
    let token = token.ok_or_else(|| {
        fail(
            gw_result::GW_ERR_NOT_FOUND,
            format!(
                "{function}: the {what} is not in cluster mode (see gw_options_set_cluster_etcd)"
            ),
        )
    })?;
    // SAFETY: non-NULL and writable by the contract.
    unsafe { out.write(token) };
    Ok(())
}

/// The fencing token of the lock's cluster leadership: the store revision at which this gateway
/// took the cluster key, larger than every earlier leader's and smaller than every later one's.
/// Carry it into the writes your host guards (e.g. an etcd transaction that compares it); see
/// README "Running several machines" for what it protects. It stays the same for the lock's
/// life, also once leadership is lost: ask `gw_lock_is_leader` right before acting.
///
/// `GW_ERR_NOT_FOUND` without cluster mode; `GW_ERR_NULL_ARGUMENT` when an argument is NULL.
/// Any thread.
///
/// # Safety
///
/// `lock` is NULL or a live `gw_lock`; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_lock_fencing_token(lock: *const gw_lock, out: *mut u64) -> gw_result {
    result_boundary("gw_lock_fencing_token", || {
        let lock = non_null("gw_lock_fencing_token", "lock", lock.cast_mut())?;
        // SAFETY: non-NULL and live by the contract.
        let token = unsafe { &*lock }.inner.fencing_token();
        // SAFETY: NULL or writable by the contract.
        unsafe { write_token("gw_lock_fencing_token", "lock", token, out) }
    })
}

/// True while the lock's gateway may act as its cluster's leader: its leadership is not lost,
/// and its renew deadline is still ahead on a clock that counts while the process is stopped
/// (so a process resumed after its lease could have expired says false before anything else
/// runs). False for NULL and without cluster mode. Ask it right before each side effect you
/// guard. Any thread.
///
/// # Safety
///
/// `lock` is NULL or a live `gw_lock`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_lock_is_leader(lock: *const gw_lock) -> bool {
    boundary("gw_lock_is_leader", || {
        // SAFETY: NULL or live by the contract.
        unsafe { lock.as_ref() }
            .and_then(|lock| lock.inner.leadership())
            .is_some_and(|leadership| leadership.holds())
    })
}

/// `gw_lock_fencing_token` of the lock the server serves on. Any thread (see `gw_server`).
///
/// # Safety
///
/// `server` is NULL or a live `gw_server`; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_server_fencing_token(
    server: *const gw_server,
    out: *mut u64,
) -> gw_result {
    result_boundary("gw_server_fencing_token", || {
        let server = non_null("gw_server_fencing_token", "server", server.cast_mut())?;
        // SAFETY: non-NULL and live by the contract.
        let token = unsafe { &*server }
            .leadership()
            .map(|leadership| leadership.fencing_token());
        // SAFETY: NULL or writable by the contract.
        unsafe { write_token("gw_server_fencing_token", "server", token, out) }
    })
}

/// `gw_lock_is_leader` of the lock the server serves on: false from the moment the server
/// stops serving as leader (before `GW_STATE_LOCK_LOST` with `GW_ERR_LEADERSHIP_LOST` reaches
/// the state callback). Any thread (see `gw_server`).
///
/// # Safety
///
/// `server` is NULL or a live `gw_server`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_server_is_leader(server: *const gw_server) -> bool {
    boundary("gw_server_is_leader", || {
        // SAFETY: NULL or live by the contract.
        unsafe { server.as_ref() }
            .and_then(gw_server::leadership)
            .is_some_and(|leadership| leadership.holds())
    })
}

/// The gateway that leads a cluster, as its claim in the store says (`gw_lock_cluster_leader`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct gw_cluster_leader {
    /// Its pid, on its own machine (never signal it here unless `host` is this machine).
    pub pid: u32,
    /// The port it serves on; 0 when unknown.
    pub port: u16,
    /// Its fencing token: the store revision at which it took the cluster key.
    pub fencing_token: u64,
    /// When it became leader, in milliseconds since the Unix epoch (its own wall clock).
    pub since_ms: u64,
    /// Its host name (else its machine id's hash), NUL-terminated UTF-8, cut at a character
    /// boundary to fit.
    pub host: [c_char; 256],
}

impl gw_cluster_leader {
    fn of(leader: &ClusterLeader) -> Self {
        let mut host = [0; 256];
        let mut end = leader.host.len().min(host.len() - 1);
        while !leader.host.is_char_boundary(end) {
            end -= 1;
        }
        for (to, from) in host.iter_mut().zip(&leader.host.as_bytes()[..end]) {
            *to = *from as c_char;
        }
        Self {
            pid: leader.pid,
            port: leader.port,
            fencing_token: leader.fencing_token,
            since_ms: leader.since_ms,
            host,
        }
    }
}

/// The cluster's leader as the store says, read without taking part (what `gateway status
/// --cluster` shows): no lock is taken, nothing is written, no campaign is made. On `GW_OK`
/// fills `*out`.
///
/// `GW_ERR_NOT_FOUND` when the cluster has no leader now; `GW_ERR_CLUSTER_UNAVAILABLE` when the
/// store could not be read (the message names the endpoints and what the client saw);
/// `GW_ERR_INVALID_ARGUMENT` when the options name no cluster (`gw_options_set_cluster_etcd`)
/// or bad options; `GW_ERR_NULL_ARGUMENT` when an argument is NULL. It reads what
/// `gw_lock_status` reads too (the local lock files, and `/healthz` of a live local holder, up to
/// 1 s), then the store (up to 3 s). Any thread; the options are only read.
///
/// # Safety
///
/// `options` is NULL or a live `gw_options` that no thread changes during the call; `out` is
/// NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_lock_cluster_leader(
    options: *const gw_options,
    out: *mut gw_cluster_leader,
) -> gw_result {
    const FUNCTION: &str = "gw_lock_cluster_leader";
    result_boundary(FUNCTION, || {
        let options = non_null(FUNCTION, "options", options.cast_mut())?;
        let out = non_null(FUNCTION, "out", out)?;
        // SAFETY: non-NULL and live by the contract.
        let options = unsafe { &*options }.get();
        let Some(cluster) = options.cluster_options() else {
            return Err(fail(
                gw_result::GW_ERR_INVALID_ARGUMENT,
                format!(
                    "{FUNCTION}: the options name no cluster: call gw_options_set_cluster_etcd first"
                ),
            ));
        };
        cluster.validate().map_err(|err| fail_with(&err))?;
        let found = status(options).map_err(|err| fail_with(&err))?;
        let Some(cluster) = found.cluster else {
            return Err(fail(
                gw_result::GW_ERR_RUNTIME,
                format!("{FUNCTION}: no cluster status"),
            ));
        };
        if let Some(error) = cluster.error {
            return Err(fail(gw_result::GW_ERR_CLUSTER_UNAVAILABLE, error));
        }
        let Some(leader) = cluster.leader else {
            return Err(fail(
                gw_result::GW_ERR_NOT_FOUND,
                format!("cluster {} has no leader now", cluster.name),
            ));
        };
        // SAFETY: non-NULL and writable by the contract.
        unsafe { out.write(gw_cluster_leader::of(&leader)) };
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use std::ptr::{null, null_mut};

    use super::super::boundary::last_error;
    use super::super::options::{gw_options_free, gw_options_new};
    use super::*;

    #[test]
    fn cluster_setters_check_their_values_and_need_the_store_first() {
        let options = gw_options_new();
        // SAFETY: `options` is live until freed; strings are NUL-terminated.
        unsafe {
            assert_eq!(
                gw_options_set_cluster_ttl_ms(options, 5000),
                gw_result::GW_ERR_INVALID_ARGUMENT
            );
            assert_eq!(
                last_error(),
                "gw_options_set_cluster_ttl_ms: cluster mode is off: call gw_options_set_cluster_etcd first"
            );
            assert_eq!(
                gw_options_set_cluster_etcd(options, c"etcd.local:2379".as_ptr()),
                gw_result::GW_ERR_INVALID_ARGUMENT
            );
            assert!(last_error().contains("\"etcd.local:2379\" is not an http:// URL"));
            assert_eq!(
                gw_options_set_cluster_etcd(options, c"http://a:2379,".as_ptr()),
                gw_result::GW_ERR_INVALID_ARGUMENT
            );
            assert!((*options).get().cluster_options().is_none());
            let set =
                gw_options_set_cluster_etcd(options, c" http://a:2379 , http://b:2379".as_ptr());
            if cfg!(not(feature = "cluster-etcd")) {
                assert_eq!(set, gw_result::GW_ERR_INVALID_ARGUMENT);
                assert_eq!(
                    last_error(),
                    "cluster mode on etcd needs the library built with the cluster-etcd feature"
                );
                gw_options_free(options);
                return;
            }
            assert_eq!(set, gw_result::GW_OK);
            assert_eq!(
                gw_options_set_cluster_ttl_ms(options, 7000),
                gw_result::GW_OK
            );
            for bad in [1000, 2500] {
                assert_eq!(
                    gw_options_set_cluster_ttl_ms(options, bad),
                    gw_result::GW_ERR_INVALID_ARGUMENT
                );
                assert!(last_error().starts_with("cluster TTL "), "{}", last_error());
            }
            assert_eq!(
                gw_options_set_cluster_name(options, c"a b".as_ptr()),
                gw_result::GW_ERR_INVALID_ARGUMENT
            );
            assert_eq!(
                gw_options_set_cluster_name(options, c"prod-1".as_ptr()),
                gw_result::GW_OK
            );
            assert_eq!(
                gw_options_set_cluster_wait_ms(options, GW_CLUSTER_WAIT_FOREVER),
                gw_result::GW_OK
            );
            let cancel = gw_cancel_new();
            assert_eq!(
                gw_options_set_cluster_cancel(options, cancel),
                gw_result::GW_OK
            );
            assert_eq!(
                gw_options_set_cluster_cancel(options, null()),
                gw_result::GW_ERR_NULL_ARGUMENT
            );
            // Another store keeps the other settings.
            assert_eq!(
                gw_options_set_cluster_etcd(options, c"http://c:2379".as_ptr()),
                gw_result::GW_OK
            );
            let cluster = (*options).get().cluster_options().unwrap().clone();
            assert_eq!(
                cluster.store,
                ClusterStore::Etcd {
                    endpoints: vec!["http://c:2379".into()]
                }
            );
            assert_eq!(cluster.ttl, Duration::from_secs(7));
            assert_eq!(cluster.name.as_deref(), Some("prod-1"));
            assert_eq!(cluster.wait, Some(Duration::MAX));
            // The options' reference outlives the handle.
            let flag = cluster.cancel.clone().unwrap();
            assert_eq!(gw_cancel_trigger(cancel), gw_result::GW_OK);
            gw_cancel_free(cancel);
            assert!(flag.load(Ordering::Acquire));
            for (ms, wait) in [
                (GW_CLUSTER_FAIL_AT_ONCE, None),
                (1500, Some(Duration::from_millis(1500))),
            ] {
                assert_eq!(
                    gw_options_set_cluster_wait_ms(options, ms),
                    gw_result::GW_OK
                );
                assert_eq!((*options).get().cluster_options().unwrap().wait, wait);
            }
            assert_eq!(gw_cancel_trigger(null()), gw_result::GW_ERR_NULL_ARGUMENT);
            gw_cancel_free(null_mut());
            gw_options_free(options);
        }
    }

    #[test]
    fn a_long_host_name_is_cut_at_a_character_boundary() {
        let leader = ClusterLeader {
            host: "é".repeat(200),
            pid: 1,
            port: 2,
            since_ms: 3,
            owner_id: String::new(),
            fencing_token: 4,
        };
        let c = gw_cluster_leader::of(&leader);
        let bytes: Vec<u8> = c.host.iter().map(|&b| b as u8).collect();
        let text = std::ffi::CStr::from_bytes_until_nul(&bytes).unwrap();
        assert_eq!(text.to_str().unwrap(), "é".repeat(127));
        assert_eq!((c.pid, c.port, c.fencing_token, c.since_ms), (1, 2, 4, 3));
    }
}
