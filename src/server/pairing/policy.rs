//! Node's default pairing policy: the `silent` local rule of SPEC §11.5.
//!
//! Node decides inline approval in `resolveLocalPairingApproval` (message-handler-*.mjs:1863-1886)
//! with `shouldAllowSilentLocalPairing` (node-connect-reconcile-*.mjs:39-46). Its other inline
//! approvals (trusted CIDRs, trusted proxy, setup codes, SSH) depend on Node's config or
//! features and are a host's policy to write.

use super::{
    Locality, PairingContext, PairingDecision, PairingPolicy, PairingReason, PairingRequest,
};

/// Node's default: a device on this host pairs silently (SPEC §11.5 `silent`, with
/// `gateway.nodes.pairing.autoApproveLocal` unset); every other request waits for the host.
///
/// As in Node, a request is approved inline only when the request as filed is `silent`
/// (MH:2059, `inlineApprovalAttempted = pairing.request.silent === true`): the handshake
/// marks each connect's request with this rule's verdict, and the store keeps a refreshed or
/// merged request silent only while every request it stands for was (WRK:2484, 2489-2491). A
/// device whose request was first filed from afar therefore waits for the host even when it
/// asks again from this host. A request with no `silent` mark (a host calling `decide`
/// itself) is judged by the rule alone.
#[derive(Debug, Default, Clone, Copy)]
pub struct DefaultPairingPolicy;

impl PairingPolicy for DefaultPairingPolicy {
    fn decide(&self, request: &PairingRequest, context: &PairingContext) -> PairingDecision {
        if request.silent != Some(false) && silent_local_approval(request, context, true) {
            PairingDecision::Approve { scopes: None }
        } else {
            PairingDecision::Pending
        }
    }
}

/// Node's `silent` rule, for a host policy that builds on it: `auto_approve_local` is Node's
/// `gateway.nodes.pairing.autoApproveLocal !== false`.
///
/// Approve when the connection is not remote; it has no `Origin` header unless it is a Control
/// UI or webchat client; it is not a non-operator role re-pairing a known device; and, by
/// reason: a new device or a role upgrade when `auto_approve_local`; a scope upgrade when that
/// and the connection authenticated with no auth, the token or the password; a metadata
/// upgrade (regardless of `auto_approve_local`) only with no `Origin`, not from a Control UI or
/// webchat client, and either a native app's UI directly on loopback or a container-local CLI
/// or shared-secret connection.
pub fn silent_local_approval(
    request: &PairingRequest,
    context: &PairingContext,
    auto_approve_local: bool,
) -> bool {
    // message-handler-*.mjs:1866: a known device asking for another role than operator is
    // never silent.
    if context.record_exists && request.role != "operator" {
        return false;
    }
    // node-connect-reconcile-*.mjs:39-46 from here.
    if context.locality == Locality::Remote {
        return false;
    }
    if context.has_origin && !context.ui_client {
        return false;
    }
    match context.reason {
        PairingReason::MetadataUpgrade => {
            !context.has_origin
                && !context.ui_client
                && match context.locality {
                    Locality::DirectLocal => is_native_app_ui(request),
                    Locality::CliContainerLocal | Locality::SharedSecretLoopbackLocal => true,
                    Locality::BrowserContainerLocal | Locality::Remote => false,
                }
        }
        _ if !auto_approve_local => false,
        PairingReason::ScopeUpgrade => {
            matches!(context.auth_method.as_str(), "none" | "token" | "password")
        }
        PairingReason::NotPaired | PairingReason::RoleUpgrade => true,
    }
}

/// A native app's UI: mode `ui` and the macOS, Linux, iOS or Android app's client id
/// (node-connect-reconcile-*.mjs:19-21).
fn is_native_app_ui(request: &PairingRequest) -> bool {
    request.client_mode == "ui"
        && matches!(
            request.client_id.as_str(),
            "openclaw-macos" | "openclaw-linux" | "openclaw-ios" | "openclaw-android"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(role: &str, client_id: &str, client_mode: &str) -> PairingRequest {
        PairingRequest {
            request_id: "r".into(),
            device_id: "d".into(),
            public_key: "k".into(),
            display_name: None,
            platform: None,
            device_family: None,
            client_id: client_id.into(),
            client_mode: client_mode.into(),
            browser_origin: None,
            role: role.into(),
            roles: None,
            scopes: Vec::new(),
            remote_ip: None,
            silent: None,
            is_repair: false,
            ts: 0,
        }
    }

    #[test]
    fn the_silent_rule_is_nodes() {
        use Locality::*;
        use PairingReason::*;
        const CLI: (&str, &str) = ("cli", "cli");
        const UI: (&str, &str) = ("openclaw-control-ui", "webchat");
        const MAC: (&str, &str) = ("openclaw-macos", "ui");
        const NODE: (&str, &str) = ("node-host", "node");
        // (reason, locality, origin, ui client, auth, record exists, role, client, autoApproveLocal) → silent
        type Case<'a> = (
            PairingReason,
            Locality,
            bool,
            bool,
            &'a str,
            bool,
            &'a str,
            (&'a str, &'a str),
            bool,
            bool,
        );
        #[rustfmt::skip]
        let cases: &[Case] = &[
            // A new device on loopback pairs; anywhere remote it waits.
            (NotPaired, DirectLocal, false, false, "token", false, "operator", CLI, true, true),
            (NotPaired, DirectLocal, false, false, "none", false, "node", NODE, true, true),
            (NotPaired, Remote, false, false, "token", false, "operator", CLI, true, false),
            (NotPaired, CliContainerLocal, false, false, "token", false, "operator", CLI, true, true),
            (NotPaired, SharedSecretLoopbackLocal, false, false, "password", false, "operator", CLI, true, true),
            (NotPaired, BrowserContainerLocal, true, true, "token", false, "operator", UI, true, true),
            // autoApproveLocal:false stops it.
            (NotPaired, DirectLocal, false, false, "token", false, "operator", CLI, false, false),
            (RoleUpgrade, DirectLocal, false, false, "token", true, "operator", CLI, false, false),
            // An Origin header: only Control UI / webchat clients stay silent.
            (NotPaired, DirectLocal, true, false, "token", false, "operator", CLI, true, false),
            (NotPaired, DirectLocal, true, true, "token", false, "operator", UI, true, true),
            // A known device asking in another role than operator waits, whatever else.
            (RoleUpgrade, DirectLocal, false, false, "device-token", true, "node", NODE, true, false),
            (ScopeUpgrade, DirectLocal, false, false, "token", true, "node", NODE, true, false),
            (RoleUpgrade, DirectLocal, false, false, "device-token", true, "operator", CLI, true, true),
            // Scope upgrades: only with no auth, the token or the password.
            (ScopeUpgrade, DirectLocal, false, false, "none", true, "operator", CLI, true, true),
            (ScopeUpgrade, DirectLocal, false, false, "token", true, "operator", CLI, true, true),
            (ScopeUpgrade, DirectLocal, false, false, "password", true, "operator", CLI, true, true),
            (ScopeUpgrade, DirectLocal, false, false, "device-token", true, "operator", CLI, true, false),
            (ScopeUpgrade, DirectLocal, false, false, "bootstrap-token", true, "operator", CLI, true, false),
            (ScopeUpgrade, DirectLocal, false, false, "token", true, "operator", CLI, false, false),
            // Metadata upgrades ignore autoApproveLocal: native app UI on direct loopback, or
            // the container-local CLI / shared-secret connections.
            (MetadataUpgrade, DirectLocal, false, false, "device-token", true, "operator", MAC, false, true),
            (MetadataUpgrade, DirectLocal, false, false, "device-token", true, "operator", CLI, true, false),
            (MetadataUpgrade, DirectLocal, false, false, "device-token", true, "operator", ("openclaw-macos", "cli"), true, false),
            (MetadataUpgrade, CliContainerLocal, false, false, "token", true, "operator", CLI, false, true),
            (MetadataUpgrade, SharedSecretLoopbackLocal, false, false, "token", true, "operator", CLI, true, true),
            (MetadataUpgrade, BrowserContainerLocal, true, true, "token", true, "operator", UI, true, false),
            (MetadataUpgrade, DirectLocal, true, true, "token", true, "operator", UI, true, false),
            (MetadataUpgrade, Remote, false, false, "token", true, "operator", MAC, true, false),
        ];
        for (
            i,
            &(
                reason,
                locality,
                has_origin,
                ui_client,
                auth,
                record_exists,
                role,
                client,
                auto,
                want,
            ),
        ) in cases.iter().enumerate()
        {
            let request = request(role, client.0, client.1);
            let context = PairingContext {
                reason,
                locality,
                has_origin,
                ui_client,
                auth_method: auth.into(),
                record_exists,
            };
            assert_eq!(
                silent_local_approval(&request, &context, auto),
                want,
                "case {i}: {reason:?} {locality:?} origin={has_origin} ui={ui_client} {auth} \
                 record={record_exists} {role} {client:?} autoApproveLocal={auto}"
            );
            let decision = DefaultPairingPolicy.decide(&request, &context);
            if auto {
                let approved = decision == PairingDecision::Approve { scopes: None };
                assert_eq!(approved, want, "case {i}: the default policy");
            }
            // A request filed not silent (or merged with one that was not) waits, whatever
            // the connect now looks like.
            let filed = PairingRequest {
                silent: Some(false),
                ..request
            };
            assert_eq!(
                DefaultPairingPolicy.decide(&filed, &context),
                PairingDecision::Pending,
                "case {i}: a request filed not silent"
            );
        }
    }
}
