//! Roles and operator scopes as Node judges them (SPEC §12.1–12.4, 12.7): which granted set
//! satisfies which scope, what each method needs (Node's table of its 482 core methods, the
//! rules of its params-dependent methods, the session fallbacks), who may call what, and which
//! connections a broadcast event reaches.
//!
//! Everything here is a pure function of names, params and grants, so that the dispatch in
//! `ws/session.rs` and the fan-out in `ws/hub.rs` only ask and act. Node's method table is in
//! `table.rs`, the session fallbacks in `session.rs`, the event gates in `events.rs`.

mod events;
mod session;
mod table;

use serde_json::Value;

pub use events::{EventGate, Grant, core_event_gate, is_core_emitted_event};
use session::session_mutation_scope;
pub use session::session_scope;

/// The scope that satisfies every operator scope.
pub const ADMIN: &str = "operator.admin";
/// Read access; also satisfied by `operator.write`.
pub const READ: &str = "operator.read";
/// Write access.
pub const WRITE: &str = "operator.write";
/// Approving exec, plugin and session approvals.
pub const APPROVALS: &str = "operator.approvals";
/// Asking and answering questions.
pub const QUESTIONS: &str = "operator.questions";
/// Pairing devices and nodes.
pub const PAIRING: &str = "operator.pairing";
/// Talk (voice) sessions; also satisfied by `operator.write`.
pub const TALK: &str = "operator.talk";
/// Talk configuration with its secrets.
pub const TALK_SECRETS: &str = "operator.talk.secrets";
/// Reading sessions only; satisfied by `operator.read` and by the write scopes.
pub const SESSIONS_READ: &str = "operator.sessions.read";
/// Writing sessions only; also satisfied by `operator.write`.
pub const SESSIONS_WRITE: &str = "operator.sessions.write";

/// The closed set of operator scopes (`operator-scopes-D-CL26h0.mjs:2-23`).
pub const OPERATOR_SCOPES: [&str; 10] = [
    ADMIN,
    READ,
    WRITE,
    SESSIONS_READ,
    SESSIONS_WRITE,
    APPROVALS,
    QUESTIONS,
    PAIRING,
    TALK,
    TALK_SECRETS,
];

/// The scope a method registration gives to declare the method for role `node` only (as
/// `node` in Node's table): node callers need no scope, operators may not call it.
pub const NODE_METHOD: &str = "node";

/// The role of a connection that did not say (`connect.role` omitted).
pub const OPERATOR_ROLE: &str = "operator";
/// The role of a node host (`openclaw node run`).
pub const NODE_ROLE: &str = "node";

/// Whether `granted` satisfies `required` (SPEC §12.3, OSC:10-13): only `operator.*` scopes can
/// be satisfied; `operator.admin` satisfies all of them, `operator.write` the read, talk and
/// session ones, and `operator.sessions.read` is also satisfied by `operator.read` or
/// `operator.sessions.write`.
pub fn scope_satisfied(required: &str, granted: &[String]) -> bool {
    if !required.starts_with("operator.") {
        return false;
    }
    let has = |scope: &str| granted.iter().any(|g| g == scope);
    has(required)
        || has(ADMIN)
        || (matches!(required, READ | TALK | SESSIONS_READ | SESSIONS_WRITE) && has(WRITE))
        || (required == SESSIONS_READ && (has(READ) || has(SESSIONS_WRITE)))
}

/// Node's `resolveMissingRequestedScope` (OSC:38-47): the first of `requested` (as given)
/// that `role`'s `allowed` scopes do not cover, else `None`. Each side is trimmed and blank
/// requests are skipped; an operator's request is covered by its implications
/// ([`scope_satisfied`]), any other role's only by itself and only under the role's prefix
/// (`node.` for a node).
pub fn missing_requested_scope<'a>(
    role: &str,
    requested: &'a [String],
    allowed: &[String],
) -> Option<&'a str> {
    let role = role.trim();
    let allowed: Vec<String> = allowed.iter().map(|s| s.trim().to_owned()).collect();
    requested.iter().map(String::as_str).find(|scope| {
        let scope = scope.trim();
        if scope.is_empty() {
            return false;
        }
        let covered = if role == OPERATOR_ROLE {
            scope_satisfied(scope, &allowed)
        } else {
            scope
                .strip_prefix(role)
                .is_some_and(|rest| rest.starts_with('.'))
                && allowed.iter().any(|a| a == scope)
        };
        !covered
    })
}

/// Node's `roleScopesAllow` (OSC:15-17): whether `role`'s `allowed` scopes cover every one of
/// `requested` ([`missing_requested_scope`]). What pairing asks of a paired device.
pub fn role_scopes_allow(role: &str, requested: &[String], allowed: &[String]) -> bool {
    missing_requested_scope(role, requested, allowed).is_none()
}

/// `scopes` without repeats, each kept where it first appears: a connection's effective
/// scopes are a set in Node (MH:531), so `hello-ok.auth.scopes` lists each once.
pub fn unique(scopes: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    scopes
        .into_iter()
        .filter(|scope| seen.insert(scope.clone()))
        .collect()
}

/// `scope` as one of the closed set's `'static` names, when it is an operator scope.
pub fn operator_scope(scope: &str) -> Option<&'static str> {
    OPERATOR_SCOPES
        .iter()
        .copied()
        .find(|known| *known == scope)
}

/// What a method of Node's table needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodScope {
    /// Callable only by role `node`, which needs no scope.
    Node,
    /// An operator scope that depends on the request's params ([`dynamic_scopes`]).
    Dynamic,
    /// This operator scope.
    Operator(&'static str),
}

/// What Node's table says `method` needs; `None` for a method Node does not have.
pub fn core_method_scope(method: &str) -> Option<MethodScope> {
    table::CORE_METHODS
        .binary_search_by(|(name, _)| (*name).cmp(method))
        .ok()
        .map(|i| table::CORE_METHODS[i].1)
}

/// Whether Node rate-limits `method` as a control-plane write (30 per 60 s, SPEC §12.2).
pub fn is_control_plane_write(method: &str) -> bool {
    table::CONTROL_PLANE_WRITES.binary_search(&method).is_ok()
}

/// How a host registered a method, as far as authorization goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration<'a> {
    /// Nobody registered it: Node's table decides, and the caller will learn it is unknown.
    None,
    /// Registered without a scope: Node's table decides, else `operator.admin`.
    Unscoped,
    /// Registered with this scope: an operator scope, or [`NODE_METHOD`].
    Scoped(&'a str),
}

/// Why a request is refused before any handler runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// `INVALID_REQUEST` `unauthorized role: <role>` (the caller's role).
    WrongRole(String),
    /// `FORBIDDEN` `missing scope: <missing>` with `details.requiredScopes`.
    MissingScope {
        /// The first required scope the caller lacks.
        missing: &'static str,
        /// Every scope the method needs for these params.
        required: Vec<&'static str>,
    },
}

/// Whether a method is for role `node` only: declared so by its registration, or (registered
/// without a scope, or not at all) by Node's table (RP:13-16).
pub fn is_node_method(method: &str, registration: Registration<'_>) -> bool {
    match registration {
        Registration::Scoped(scope) => scope == NODE_METHOD,
        Registration::None | Registration::Unscoped => {
            core_method_scope(method) == Some(MethodScope::Node)
        }
    }
}

/// SPEC §12.2 steps 1–6 (`authorizeGatewayMethod`, SM:181-204): may a caller with `role` and
/// `granted` scopes call `method` with `params`? The handler lookup (step 7) is the caller's.
pub fn authorize(
    method: &str,
    registration: Registration<'_>,
    role: &str,
    granted: &[String],
    params: &Value,
) -> Result<(), Refusal> {
    if method == "health" {
        return Ok(());
    }
    let registration = reserved_for_admin(method, registration);
    let wanted_role = if is_node_method(method, registration) {
        NODE_ROLE
    } else {
        OPERATOR_ROLE
    };
    if role != wanted_role {
        return Err(Refusal::WrongRole(role.to_owned()));
    }
    if role == NODE_ROLE
        || matches!(
            method,
            "device.scopes.requestUpgrade" | "device.scopes.waitUpgrade"
        )
        || granted.iter().any(|g| g == ADMIN)
    {
        return Ok(());
    }
    let session = session_scope(method, params);
    let registered = match registration {
        Registration::Scoped(scope) => operator_scope(scope),
        Registration::None | Registration::Unscoped => None,
    };
    if let Some(required) = registered {
        return authorize_required(required, granted, session, method)
            .map_err(|missing| missing_scope(missing, vec![required]));
    }
    match core_method_scope(method) {
        Some(MethodScope::Dynamic) => authorize_dynamic(method, granted, params, session),
        Some(MethodScope::Operator(required)) => {
            authorize_required(required, granted, session, method)
                .map_err(|missing| missing_scope(missing, vec![required]))
        }
        // Not Node's and registered without a scope, or not at all (a node method called by an
        // operator was refused above): admin, under a reserved prefix or not
        // (`descriptor-ByqpE-ah.mjs:48`; MS:3445).
        Some(MethodScope::Node) | None => Err(missing_scope(ADMIN, vec![ADMIN])),
    }
}

fn missing_scope(missing: &'static str, required: Vec<&'static str>) -> Refusal {
    Refusal::MissingScope { missing, required }
}

/// Method prefixes whose host methods need `operator.admin` whatever scope they were registered
/// with (`RESERVED_ADMIN_GATEWAY_METHOD_PREFIXES`, `descriptor-ByqpE-ah.mjs:3-8`).
const RESERVED_ADMIN_PREFIXES: [&str; 4] = ["exec.approvals.", "config.", "wizard.", "update."];

/// A host method under a reserved prefix that is not one of Node's is coerced to
/// `operator.admin`, as Node coerces a plugin's (`normalizePluginGatewayMethodScope`,
/// `descriptor-ByqpE-ah.mjs:20-31`); Node's own methods there (`config.get`, …) keep the scope
/// they were registered with, as Node's core descriptors do.
fn reserved_for_admin<'a>(method: &str, registration: Registration<'a>) -> Registration<'a> {
    let reserved = RESERVED_ADMIN_PREFIXES
        .iter()
        .any(|prefix| method.starts_with(prefix));
    match registration {
        Registration::Scoped(scope)
            if reserved && scope != ADMIN && core_method_scope(method).is_none() =>
        {
            Registration::Scoped(ADMIN)
        }
        registration => registration,
    }
}

/// A static required scope, with the session fallback (MS:3448-3459): a session-read method
/// needing `operator.read` also takes `operator.sessions.read`; a session-write method needing
/// `operator.write` (or `operator.questions` for `question.*`) also takes
/// `operator.sessions.write`. `Err` carries the missing scope.
fn authorize_required(
    required: &'static str,
    granted: &[String],
    session: Option<&'static str>,
    method: &str,
) -> Result<(), &'static str> {
    if scope_satisfied(required, granted) {
        return Ok(());
    }
    let fallback = match (required, session) {
        (READ, Some(SESSIONS_READ)) => session,
        (WRITE, Some(SESSIONS_WRITE)) => session,
        (QUESTIONS, Some(SESSIONS_WRITE)) if method.starts_with("question.") => session,
        _ => None,
    };
    match fallback {
        Some(scope) if scope_satisfied(scope, granted) => Ok(()),
        _ => Err(required),
    }
}

/// A params-dependent method of Node's table (MS:3408-3422).
fn authorize_dynamic(
    method: &str,
    granted: &[String],
    params: &Value,
    session: Option<&'static str>,
) -> Result<(), Refusal> {
    let fields = params.as_object();
    if method == "plugins.sessionAction" {
        // Without a plugin registry of actions, an action named by plugin and id needs
        // `operator.write`; params that name none need any operator scope (MS:3410-3419).
        let named = |key: &str| {
            fields
                .and_then(|f| f.get(key))
                .and_then(Value::as_str)
                .is_some_and(|s| !s.trim().is_empty())
        };
        let params_are_an_object = fields.is_some();
        if params_are_an_object && !(named("pluginId") && named("actionId")) {
            let any_operator_scope = granted.iter().any(|g| operator_scope(g).is_some());
            return if any_operator_scope {
                Ok(())
            } else {
                Err(missing_scope(WRITE, vec![WRITE]))
            };
        }
        if !scope_satisfied(WRITE, granted) {
            // Node names its CLI's default scopes as required for a named action it does not
            // know (MS:3351-3361); params that are no object name no action.
            let required = if params_are_an_object {
                CLI_DEFAULT_OPERATOR_SCOPES.to_vec()
            } else {
                vec![WRITE]
            };
            return Err(missing_scope(WRITE, required));
        }
        return Ok(());
    }
    let required = dynamic_scopes(method, params);
    match required.iter().find(|r| !scope_satisfied(r, granted)) {
        None => Ok(()),
        Some(missing) => authorize_required(missing, granted, session, method)
            .map_err(|missing| missing_scope(missing, required.clone())),
    }
}

/// The scopes Node's CLI asks for when it knows no narrower ones (MS:3323-3331).
const CLI_DEFAULT_OPERATOR_SCOPES: [&str; 7] = [
    ADMIN,
    READ,
    WRITE,
    APPROVALS,
    QUESTIONS,
    PAIRING,
    TALK_SECRETS,
];

/// The scopes a params-dependent method needs (`resolveDynamicLeastPrivilegeOperatorScopesForMethod`,
/// MS:3373-3396). What a core cannot judge is judged by what the params say alone:
/// `plugins.sessionAction` without the plugins' action registry needs `operator.write`, and
/// `sessions.dispatch` / `sessions.move` are judged without Node's params schema (params that
/// schema would refuse get `operator.write` from Node and the same answer here when they name a
/// device or a non-profile target; otherwise `operator.admin`, the stricter one).
pub fn dynamic_scopes(method: &str, params: &Value) -> Vec<&'static str> {
    let fields = params.as_object();
    let field = |key: &str| fields.and_then(|f| f.get(key));
    let has = |key: &str| fields.is_some_and(|f| f.contains_key(key));
    match method {
        "agent" => {
            let reset = field("message")
                .and_then(Value::as_str)
                .is_some_and(is_session_reset_command);
            vec![if reset { ADMIN } else { WRITE }]
        }
        "node.invoke" => {
            let command = field("command").and_then(Value::as_str).unwrap_or("");
            let browser_proxy = matches!(command, "browser.proxy" | "browser.proxy.upload.v1");
            if browser_proxy && field("params").is_some_and(is_persistent_browser_mutation) {
                // Node's handler refuses these itself; admission needs only write.
                return vec![WRITE];
            }
            let admin_only = browser_proxy || matches!(command, "fs.listDir" | "terminal.upload");
            vec![if admin_only { ADMIN } else { WRITE }]
        }
        "talk.config" => match field("includeSecrets") {
            Some(Value::Bool(true)) => vec![READ, TALK_SECRETS],
            _ => vec![READ],
        },
        "environments.list" => match field("runtimeId").and_then(Value::as_str) {
            Some(id) if !id.is_empty() => vec![WRITE],
            _ => vec![READ],
        },
        "channels.pairing.approve" => match field("bootstrapCommandOwner") {
            Some(Value::Bool(true)) => vec![PAIRING, ADMIN],
            _ => vec![PAIRING],
        },
        "fs.listDir" => vec![if has("nodeId") { ADMIN } else { WRITE }],
        "sessions.dispatch" => {
            let device = has("deviceId") || field("autoDevice") == Some(&Value::Bool(true));
            vec![if fields.is_none() || device {
                WRITE
            } else {
                ADMIN
            }]
        }
        "sessions.move" => {
            let kind = field("target").and_then(|t| t.get("kind"));
            vec![if kind == Some(&Value::from("profile")) {
                ADMIN
            } else {
                WRITE
            }]
        }
        "sessions.create" | "sessions.patch" | "sessions.patchMany" | "sessions.delete" => {
            vec![session_mutation_scope(method, params).unwrap_or(WRITE)]
        }
        _ => vec![WRITE],
    }
}

/// `^/(new|reset)(\s…)?$`i: an `agent` message that resets its session (MS:125).
fn is_session_reset_command(message: &str) -> bool {
    let Some(rest) = message.strip_prefix('/') else {
        return false;
    };
    let word_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    let word = &rest[..word_end];
    word.eq_ignore_ascii_case("new") || word.eq_ignore_ascii_case("reset")
}

/// A browser proxy request that creates, resets or deletes a profile (MS:3302-3316).
fn is_persistent_browser_mutation(params: &Value) -> bool {
    let text = |key: &str| params.get(key).and_then(Value::as_str).unwrap_or("").trim();
    let method = text("method").to_ascii_uppercase();
    let path = text("path");
    if method.is_empty() || path.is_empty() {
        return false;
    }
    // `normalizeBrowserProxyPath` (MS:3290-3296): a slash is prepended only when missing
    // (`//profiles/create` stays as it is), and trailing ones go unless the path is just `/`.
    let path = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    let path = if path.len() <= 1 {
        path.as_str()
    } else {
        path.trim_end_matches('/')
    };
    match method.as_str() {
        "POST" => path == "/profiles/create" || path == "/reset-profile",
        "DELETE" => path
            .strip_prefix("/profiles/")
            .is_some_and(|id| !id.is_empty() && !id.contains('/')),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
