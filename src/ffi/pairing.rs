//! Pairing in C: the host's policy callback and store path in `gw_serve_options`, and the
//! `gw_server` calls that list, approve and reject pairing requests and list, remove and revoke
//! paired devices ([`PairingOptions`], [`GatewayHandle`]'s pairing methods).
//!
//! [`PairingOptions`]: crate::PairingOptions
//! [`GatewayHandle`]: crate::GatewayHandle

use std::ffi::{c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use super::boundary::{
    c_string, name_argument, non_null, optional_utf8_argument, result_boundary, utf8_argument,
};
use super::result::{fail, gw_result};
use super::serve_options::{gw_serve_options, update};
use super::server::{gw_server, live};
use super::userdata::HostUserdata;
use crate::server::{
    BootstrapProfile, DefaultPairingPolicy, GatewayHandle, PairingContext, PairingDecision,
    PairingError, PairingPolicy, PairingRequest,
};

/// What a pairing policy callback decided, set with `gw_pairing_decision_approve` or
/// `gw_pairing_decision_reject` during the callback; left alone, the request stays pending
/// (the client is told `pairing required` and the host may approve it later with
/// `gw_pairing_approve`). Owned by the library; valid only during the callback.
pub struct gw_pairing_decision {
    decision: PairingDecision,
}

/// A pairing policy: decides a pairing request (SPEC §11.5) as it arrives, by calling
/// `gw_pairing_decision_approve` or `gw_pairing_decision_reject` on `decision` (or nothing:
/// pending).
///
/// `request_json` is the request as `device.pair.requested` carries it: `{"requestId",
/// "deviceId", "publicKey", "displayName"?, "platform"?, "deviceFamily"?, "clientId",
/// "clientMode", "browserOrigin"?, "role", "roles"?, "scopes": [...], "remoteIp"?, "silent"?,
/// "isRepair", "ts"}`. `context_json` is what the handshake knows: `{"reason":
/// "not-paired"|"role-upgrade"|"scope-upgrade"|"metadata-upgrade", "locality":
/// "direct_local"|"browser_container_local"|"cli_container_local"|
/// "shared_secret_loopback_local"|"remote", "hasOrigin", "uiClient", "authMethod",
/// "recordExists", "silentLocal", "silentLocalWithoutAutoApprove"}`, where `silentLocal` is
/// what Node's default (`silent`) rule decides, and `silentLocalWithoutAutoApprove` what it
/// decides with Node's `gateway.nodes.pairing.autoApproveLocal` off (only a local metadata
/// upgrade is then silent): the two answers of the Rust API's `silent_local_approval`. Both
/// are NUL-terminated UTF-8, `*_len` bytes without the NUL, valid only during the call.
///
/// Called on a gateway worker thread during a client's handshake, possibly on several at
/// once: decide at once, do not block, do not call `gw_shutdown`.
pub type gw_pairing_fn = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        request_json: *const c_char,
        request_len: usize,
        context_json: *const c_char,
        context_len: usize,
        decision: *mut gw_pairing_decision,
    ),
>;

/// The host's pairing callback as a [`PairingPolicy`].
struct HostPairingPolicy {
    decide: unsafe extern "C" fn(
        *mut c_void,
        *const c_char,
        usize,
        *const c_char,
        usize,
        *mut gw_pairing_decision,
    ),
    userdata: Arc<HostUserdata>,
}

impl PairingPolicy for HostPairingPolicy {
    fn decide(&self, request: &PairingRequest, context: &PairingContext) -> PairingDecision {
        // Serializing our own types cannot fail; should anything here panic, the request
        // stays pending rather than unwinding through the handshake.
        catch_unwind(AssertUnwindSafe(|| {
            let request_json = c_string(serde_json::to_string(request).unwrap_or_default());
            // The context's own fields, then the two answers of Node's default rule.
            let mut fields = match serde_json::to_value(context) {
                Ok(serde_json::Value::Object(fields)) => fields,
                _ => serde_json::Map::new(),
            };
            for (key, auto_approve) in [
                ("silentLocal", true),
                ("silentLocalWithoutAutoApprove", false),
            ] {
                let silent = crate::server::silent_local_approval(request, context, auto_approve);
                fields.insert(key.to_owned(), silent.into());
            }
            let context_json = c_string(serde_json::Value::Object(fields).to_string());
            let mut decision = gw_pairing_decision {
                decision: PairingDecision::Pending,
            };
            // SAFETY: the host's callback with its own userdata (alive: `self` holds it), two
            // NUL-terminated strings and their lengths, and a decision that outlives the call.
            unsafe {
                (self.decide)(
                    self.userdata.get(),
                    request_json.as_ptr(),
                    request_json.as_bytes().len(),
                    context_json.as_ptr(),
                    context_json.as_bytes().len(),
                    &mut decision,
                )
            };
            decision.decision
        }))
        .unwrap_or(PairingDecision::Pending)
    }
}

/// The pairing policy: `decide` is called with `userdata` for each pairing request (see
/// `gw_pairing_fn`); NULL restores the default, Node's `silent` rule (a device on this host
/// pairs at once, any other waits for `gw_pairing_approve`).
///
/// `free_userdata` (may be NULL) is called with `userdata` exactly once, when the library drops
/// its last reference to the policy: when these options are freed or given another policy,
/// and every server served with them has stopped (a server keeps its copy until
/// `gw_shutdown`). With `decide` NULL, it is called before this function returns.
///
/// `GW_ERR_NULL_ARGUMENT` when `options` is NULL (`free_userdata` has then been called).
///
/// # Safety
///
/// `options` is NULL or a live `gw_serve_options` that no other thread uses during the call;
/// `decide` and `free_userdata` are callable from any thread as `gw_pairing_fn` says.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_serve_options_set_pairing_policy(
    options: *mut gw_serve_options,
    decide: gw_pairing_fn,
    userdata: *mut c_void,
    free_userdata: Option<unsafe extern "C" fn(userdata: *mut c_void)>,
) -> gw_result {
    // Owned at once, so that every return (a NULL `options`, a panic) frees it.
    let userdata = Arc::new(HostUserdata::new(userdata, free_userdata));
    let policy: Arc<dyn PairingPolicy> = match decide {
        Some(decide) => Arc::new(HostPairingPolicy { decide, userdata }),
        None => Arc::new(DefaultPairingPolicy),
    };
    // SAFETY: forwarded contract.
    unsafe {
        update("gw_serve_options_set_pairing_policy", options, |o| {
            o.pairing.policy = policy
        })
    }
}

/// Where paired devices and device tokens are kept: an absolute file path (default
/// `<state dir>/gateway/devices.json`, the lock's state dir). NULL restores the default.
/// The file is written 0600, atomically, tokens hashed; `gw_serve` fails with
/// `GW_ERR_RUNTIME` naming it when it cannot be read.
///
/// `GW_ERR_INVALID_ARGUMENT` (options unchanged) for an empty or relative path or one that is
/// not UTF-8; `GW_ERR_NULL_ARGUMENT` when `options` is NULL.
///
/// # Safety
///
/// `options` is NULL or a live `gw_serve_options` that no other thread uses during the call;
/// `path` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_serve_options_set_pairing_store_path(
    options: *mut gw_serve_options,
    path: *const c_char,
) -> gw_result {
    const FUNCTION: &str = "gw_serve_options_set_pairing_store_path";
    result_boundary(FUNCTION, || {
        let options = non_null(FUNCTION, "options", options)?;
        // SAFETY: NULL or NUL-terminated, by the contract.
        let path = unsafe { optional_utf8_argument(FUNCTION, "path", path) }?.map(PathBuf::from);
        // SAFETY: non-NULL, live and not shared, by the contract.
        let options = unsafe { &mut *options };
        let mut changed = options.inner.pairing.clone();
        changed.store_path = path;
        changed.validate().map_err(|message| {
            fail(
                gw_result::GW_ERR_INVALID_ARGUMENT,
                format!("{FUNCTION}: {message}"),
            )
        })?;
        options.inner.pairing = changed;
        Ok(())
    })
}

/// Approves the request the callback was called for, with its requested scopes
/// (`scopes_json` NULL) or with `scopes_json`, a JSON array of scope strings (e.g.
/// `["operator.read"]`), added to what the device had. With NULL, at most what the connecting
/// client asks for plus what the device already had is approved: a request merged with earlier
/// ones that asked for more stays pending for `gw_pairing_approve`. With scopes, the
/// connection is capped to them.
///
/// `GW_ERR_INVALID_ARGUMENT` (decision unchanged) when `scopes_json` is not such an array;
/// `GW_ERR_NULL_ARGUMENT` when `decision` is NULL. Only inside the pairing callback.
///
/// # Safety
///
/// `decision` is NULL or the one the running callback was given; `scopes_json` is NULL or a
/// NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_pairing_decision_approve(
    decision: *mut gw_pairing_decision,
    scopes_json: *const c_char,
) -> gw_result {
    const FUNCTION: &str = "gw_pairing_decision_approve";
    result_boundary(FUNCTION, || {
        let decision = non_null(FUNCTION, "decision", decision)?;
        // SAFETY: NULL or NUL-terminated, by the contract.
        let scopes = unsafe { scopes_argument(FUNCTION, scopes_json) }?;
        // SAFETY: the callback's live decision, by the contract.
        unsafe { &mut *decision }.decision = PairingDecision::Approve { scopes };
        Ok(())
    })
}

/// Rejects the request the callback was called for: it is dropped, and the client is told
/// `pairing required` as for a pending one.
///
/// `GW_ERR_NULL_ARGUMENT` when `decision` is NULL. Only inside the pairing callback.
///
/// # Safety
///
/// `decision` is NULL or the one the running callback was given.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_pairing_decision_reject(
    decision: *mut gw_pairing_decision,
) -> gw_result {
    const FUNCTION: &str = "gw_pairing_decision_reject";
    result_boundary(FUNCTION, || {
        let decision = non_null(FUNCTION, "decision", decision)?;
        // SAFETY: the callback's live decision, by the contract.
        unsafe { &mut *decision }.decision = PairingDecision::Reject;
        Ok(())
    })
}

/// The pending pairing requests, oldest first, as a JSON array of requests (the shape
/// `gw_pairing_fn` describes): `*out_json` is a new NUL-terminated string the caller frees
/// with `gw_string_free`.
///
/// `GW_ERR_NULL_ARGUMENT` when `server` or `out_json` is NULL. Any thread (see `gw_server`).
///
/// # Safety
///
/// `server` is NULL or a live `gw_server`; `out_json` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_pairing_requests(
    server: *const gw_server,
    out_json: *mut *mut c_char,
) -> gw_result {
    // SAFETY: forwarded contract.
    unsafe {
        list_json(
            "gw_pairing_requests",
            server,
            out_json,
            GatewayHandle::pairing_requests,
        )
    }
}

/// Approves the pending request `request_id` with its requested scopes (`scopes_json` NULL)
/// or `scopes_json` (a JSON array of scope strings), added to what the device had; saves the
/// store and broadcasts `device.pair.resolved` `approved`. The device's next connect passes.
///
/// `GW_ERR_NOT_FOUND` when no such request is pending (decided, superseded or expired);
/// `GW_ERR_RUNTIME` when the store could not be saved (nothing changed; the message names the
/// file); `GW_ERR_INVALID_ARGUMENT` for a bad `scopes_json`; `GW_ERR_NULL_ARGUMENT` when
/// `server` or `request_id` is NULL. Any thread (see `gw_server`), also inside callbacks.
///
/// # Safety
///
/// `server` is NULL or a live `gw_server`; the strings are NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_pairing_approve(
    server: *const gw_server,
    request_id: *const c_char,
    scopes_json: *const c_char,
) -> gw_result {
    const FUNCTION: &str = "gw_pairing_approve";
    result_boundary(FUNCTION, || {
        // SAFETY: forwarded contract.
        let server = unsafe { live(FUNCTION, server) }?;
        // SAFETY: forwarded contract.
        let request_id = unsafe { name_argument(FUNCTION, "request_id", request_id) }?;
        // SAFETY: forwarded contract.
        let scopes = unsafe { scopes_argument(FUNCTION, scopes_json) }?;
        let handle = server.handle(FUNCTION)?;
        handle
            .approve_pairing(request_id, scopes)
            .map(drop)
            .map_err(|err| pairing_failure(FUNCTION, &err))
    })
}

/// Rejects the pending request `request_id` and broadcasts `device.pair.resolved`
/// `rejected`. Results as `gw_pairing_approve`.
///
/// # Safety
///
/// `server` is NULL or a live `gw_server`; `request_id` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_pairing_reject(
    server: *const gw_server,
    request_id: *const c_char,
) -> gw_result {
    const FUNCTION: &str = "gw_pairing_reject";
    result_boundary(FUNCTION, || {
        // SAFETY: forwarded contract.
        let server = unsafe { live(FUNCTION, server) }?;
        // SAFETY: forwarded contract.
        let request_id = unsafe { name_argument(FUNCTION, "request_id", request_id) }?;
        server
            .handle(FUNCTION)?
            .reject_pairing(request_id)
            .map(drop)
            .map_err(|err| pairing_failure(FUNCTION, &err))
    })
}

/// The paired devices, oldest approval first, as a JSON array of `{"deviceId", "publicKey",
/// "roles", "scopes", "platform"?, "deviceFamily"?, "clientId", "clientMode",
/// "displayName"?, "approvedAtMs", "lastSeenAtMs"?}` (no tokens): `*out_json` is a new
/// NUL-terminated string the caller frees with `gw_string_free`.
///
/// `GW_ERR_NULL_ARGUMENT` when `server` or `out_json` is NULL. Any thread (see `gw_server`).
///
/// # Safety
///
/// `server` is NULL or a live `gw_server`; `out_json` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_paired_devices(
    server: *const gw_server,
    out_json: *mut *mut c_char,
) -> gw_result {
    // SAFETY: forwarded contract.
    unsafe {
        list_json(
            "gw_paired_devices",
            server,
            out_json,
            GatewayHandle::paired_devices,
        )
    }
}

/// Unpairs the device `device_id`: its record, tokens and pending requests go, and it must
/// pair again; its live connections, in every role, are closed with code 4001 and reason
/// `device removed`, as Node closes them. `GW_ERR_NOT_FOUND` when it is not paired; otherwise
/// as `gw_pairing_approve`.
///
/// # Safety
///
/// `server` is NULL or a live `gw_server`; `device_id` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_paired_device_remove(
    server: *const gw_server,
    device_id: *const c_char,
) -> gw_result {
    const FUNCTION: &str = "gw_paired_device_remove";
    result_boundary(FUNCTION, || {
        // SAFETY: forwarded contract.
        let server = unsafe { live(FUNCTION, server) }?;
        // SAFETY: forwarded contract.
        let device_id = unsafe { name_argument(FUNCTION, "device_id", device_id) }?;
        server
            .handle(FUNCTION)?
            .remove_paired_device(device_id)
            .map(drop)
            .map_err(|err| pairing_failure(FUNCTION, &err))
    })
}

/// Revokes the device token of `device_id` for `role` (`operator`, `node`): connects that
/// present it are refused from now on, the role counts as not approved until the device pairs
/// again, and the device's live connections in that role are closed with code 4001 and reason
/// `device removed`. `GW_ERR_NOT_FOUND` when the device is not paired or has no active token
/// for the role; otherwise as `gw_pairing_approve`.
///
/// # Safety
///
/// `server` is NULL or a live `gw_server`; the strings are NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_device_token_revoke(
    server: *const gw_server,
    device_id: *const c_char,
    role: *const c_char,
) -> gw_result {
    const FUNCTION: &str = "gw_device_token_revoke";
    result_boundary(FUNCTION, || {
        // SAFETY: forwarded contract.
        let server = unsafe { live(FUNCTION, server) }?;
        // SAFETY: forwarded contract.
        let device_id = unsafe { name_argument(FUNCTION, "device_id", device_id) }?;
        // SAFETY: forwarded contract.
        let role = unsafe { name_argument(FUNCTION, "role", role) }?;
        server
            .handle(FUNCTION)?
            .revoke_device_token(device_id, role)
            .map_err(|err| pairing_failure(FUNCTION, &err))
    })
}

/// Issues a bootstrap token (a setup code) for the profile `profile_json` (SPEC §11.7 step
/// 2): `{"roles": ["node"], "scopes": [...]?, "deviceId": "..."?, "publicKey": "..."?,
/// "ttlMs": 600000?}`. A device that sends the token as `auth.bootstrapToken` with a signed
/// `device` block, in one of `roles` and within `scopes`, connects without the shared secret
/// (authMethod `bootstrap-token`), is paired with `roles` and `scopes`, and gets its device
/// token in `hello-ok`. The token is good once, for `ttlMs` (default 600000, Node's); with
/// `deviceId`/`publicKey` only that device may use it. The store keeps only its hash.
///
/// `*out_token` is the token (43 characters of base64url), a new NUL-terminated string the
/// caller frees with `gw_string_free`. `GW_ERR_NULL_ARGUMENT` when an argument is NULL,
/// `GW_ERR_INVALID_ARGUMENT` when the profile is not such JSON, names no role or has `ttlMs`
/// 0, `GW_ERR_RUNTIME` when the store could not be saved or the system's random source
/// failed (nothing issued). Any thread.
///
/// # Safety
///
/// `server` is NULL or a live `gw_server`; `profile_json` is NULL or NUL-terminated;
/// `out_token` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_bootstrap_token_issue(
    server: *const gw_server,
    profile_json: *const c_char,
    out_token: *mut *mut c_char,
) -> gw_result {
    const FUNCTION: &str = "gw_bootstrap_token_issue";
    result_boundary(FUNCTION, || {
        // SAFETY: forwarded contract.
        let server = unsafe { live(FUNCTION, server) }?;
        // SAFETY: forwarded contract.
        let text = unsafe { utf8_argument(FUNCTION, "profile_json", profile_json) }?;
        let out = non_null(FUNCTION, "out_token", out_token)?;
        let profile = serde_json::from_str::<BootstrapProfile>(text).map_err(|err| {
            fail(
                gw_result::GW_ERR_INVALID_ARGUMENT,
                format!(
                    "{FUNCTION}: profile_json is not a bootstrap profile ({err}): pass e.g. \
                     {{\"roles\":[\"node\"],\"scopes\":[]}}"
                ),
            )
        })?;
        let token = server
            .handle(FUNCTION)?
            .issue_bootstrap_token(&profile)
            .map_err(|err| pairing_failure(FUNCTION, &err))?;
        // SAFETY: writable, by the contract.
        unsafe { write_json(out, token) };
        Ok(())
    })
}

/// Frees a string the library returned through an `out_json` or `out_token` argument
/// (`gw_pairing_requests`, `gw_paired_devices`, `gw_bootstrap_token_issue`). NULL is
/// harmless. Any thread.
///
/// # Safety
///
/// `string` is NULL or a string the library returned and not freed yet.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_string_free(string: *mut c_char) {
    super::boundary::boundary("gw_string_free", || {
        if !string.is_null() {
            // SAFETY: made by `CString::into_raw` in `write_json`, freed once, by the contract.
            drop(unsafe { std::ffi::CString::from_raw(string) });
        }
    })
}

/// A pairing list (`gw_pairing_requests`, `gw_paired_devices`) as a JSON array the host frees
/// with `gw_string_free`.
///
/// # Safety
///
/// `server` is NULL or a live `gw_server`; `out_json` is NULL or writable.
unsafe fn list_json<T: Serialize>(
    function: &'static str,
    server: *const gw_server,
    out_json: *mut *mut c_char,
    list: impl FnOnce(&GatewayHandle) -> Vec<T>,
) -> gw_result {
    result_boundary(function, || {
        // SAFETY: forwarded contract.
        let server = unsafe { live(function, server) }?;
        let out = non_null(function, "out_json", out_json)?;
        let list = list(server.handle(function)?);
        // SAFETY: writable, by the contract.
        unsafe { write_json(out, serde_json::to_string(&list).unwrap_or_default()) };
        Ok(())
    })
}

/// Hands `json` to the host through `out`.
///
/// # Safety
///
/// `out` is writable.
unsafe fn write_json(out: *mut *mut c_char, json: String) {
    // SAFETY: writable, by the contract.
    unsafe { out.write(c_string(json).into_raw()) };
}

/// NULL, or a NUL-terminated JSON array of strings.
///
/// # Safety
///
/// `json` is NULL or a NUL-terminated string.
unsafe fn scopes_argument(
    function: &str,
    json: *const c_char,
) -> Result<Option<Vec<String>>, gw_result> {
    // SAFETY: NULL or NUL-terminated, by the contract.
    let Some(text) = unsafe { optional_utf8_argument(function, "scopes_json", json) }? else {
        return Ok(None);
    };
    serde_json::from_str::<Vec<String>>(text)
        .map(Some)
        .map_err(|err| {
            fail(
                gw_result::GW_ERR_INVALID_ARGUMENT,
                format!(
                    "{function}: scopes_json is not a JSON array of scope strings ({err}): pass \
                 e.g. [\"operator.read\"], or NULL for the requested scopes"
                ),
            )
        })
}

fn pairing_failure(function: &str, err: &PairingError) -> gw_result {
    // Every variant named, so a new one is given its code here.
    let result = match err {
        PairingError::Write { .. } | PairingError::Random(_) => gw_result::GW_ERR_RUNTIME,
        // What was asked for goes beyond what may be granted: the call's arguments, not a
        // missing record.
        PairingError::InvalidBootstrapProfile(_)
        | PairingError::BeyondCallerScopes { .. }
        | PairingError::OutsideBootstrapProfile { .. } => gw_result::GW_ERR_INVALID_ARGUMENT,
        PairingError::UnknownRequest(_)
        | PairingError::UnknownDevice(_)
        | PairingError::NoToken { .. } => gw_result::GW_ERR_NOT_FOUND,
    };
    fail(result, format!("{function}: {err}"))
}
