//! What the host gives the protocol: its methods (async closures or a [`MethodHandler`]), the
//! events it emits, and an observer of its clients coming and going.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

use super::handle::Responder;
use crate::error::GatewayLockError;
use crate::server::protocol::MethodError;
use crate::server::scopes::{self, EventGate, Registration};

/// Who is on the other end of an authenticated connection.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientInfo {
    /// The gateway-unique connection id (also `server.connId` in `hello-ok`, as a string).
    pub conn_id: u64,
    /// The `client` object of `connect`, as sent (`id`, `version`, `platform`, `mode`, …).
    pub client: Map<String, Value>,
    /// `operator` (default) or `node`.
    pub role: String,
    /// The scopes granted at `connect`.
    pub scopes: Vec<String>,
    /// The protocol version agreed on.
    pub protocol: u64,
    /// The peer's address.
    pub peer: SocketAddr,
    /// The upgrade's `Origin` header, when it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// The verified `device.id` (lowercase hex SHA-256 of its key), when it sent a device block.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// How it authenticated (`hello-ok.auth.method`): `none`, `token`, `password`,
    /// `device-token` or `bootstrap-token`.
    pub auth_method: String,
}

impl ClientInfo {
    /// `client.id`.
    pub fn client_id(&self) -> &str {
        self.client.get("id").and_then(Value::as_str).unwrap_or("")
    }

    /// `client.mode`.
    pub fn mode(&self) -> &str {
        self.client
            .get("mode")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// The whole record as JSON (what the C ABI hands to `on_connection`).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("client info serializes")
    }
}

/// A request for one of the host's methods.
#[derive(Debug, Clone)]
pub struct MethodRequest {
    /// Gateway-unique: answer with [`Responder::respond`] or
    /// [`GatewayHandle::respond`](super::GatewayHandle::respond).
    pub id: u64,
    /// The method's name, as registered.
    pub method: String,
    /// The frame's `params`, `Null` when it had none.
    pub params: Value,
    /// Who sent it.
    pub client: Arc<ClientInfo>,
}

impl MethodRequest {
    /// The connection the request came in on.
    pub fn conn_id(&self) -> u64 {
        self.client.conn_id
    }
}

/// A method of the host. `call` runs on a gateway worker thread and must not block: answer
/// through `responder` at once, or hand it (or `request.id`) to other code that answers later.
pub trait MethodHandler: Send + Sync + 'static {
    /// Handles one request; the answer goes through `responder` (or by id, later).
    fn call(&self, request: MethodRequest, responder: Responder);
}

/// An async closure as a [`MethodHandler`]: its future runs on the gateway's runtime, so a
/// slow method never holds up other connections.
struct AsyncMethod<F>(F);

impl<F, Fut> MethodHandler for AsyncMethod<F>
where
    F: Fn(MethodRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, MethodError>> + Send + 'static,
{
    fn call(&self, request: MethodRequest, responder: Responder) {
        let future = (self.0)(request);
        let mut guard = AnswerOnDrop(Some(responder));
        tokio::spawn(async move {
            let result = future.await;
            if let Some(responder) = guard.0.take() {
                responder.respond(result);
            }
        });
    }
}

/// Answers `UNAVAILABLE` when a method's future is dropped unfinished (it panicked, or the
/// runtime is shutting down), instead of leaving the client to wait for the timeout.
struct AnswerOnDrop(Option<Responder>);

impl Drop for AnswerOnDrop {
    fn drop(&mut self) {
        if let Some(responder) = self.0.take() {
            responder.respond(Err(MethodError::unavailable("the method handler failed")));
        }
    }
}

/// A registered method: the scope a caller needs, and who answers it.
#[derive(Clone)]
pub(super) struct Method {
    pub scope: Option<String>,
    pub handler: Arc<dyn MethodHandler>,
}

impl Method {
    /// How it was registered, for [`scopes::authorize`].
    pub fn registration(&self) -> Registration<'_> {
        match &self.scope {
            Some(scope) => Registration::Scoped(scope),
            None => Registration::Unscoped,
        }
    }
}

/// A connection that completed (or ended after) the handshake.
#[derive(Debug, Clone)]
pub enum ConnectionEvent {
    /// `hello-ok` was sent; requests from this connection follow this notification.
    Opened(Arc<ClientInfo>),
    /// The connection is gone.
    Closed(Arc<ClientInfo>),
}

type ConnectionObserver = dyn Fn(&ConnectionEvent) + Send + Sync;

/// The host's methods, events and connection observer, given to the gateway in
/// `ServeOptions::handlers`.
///
/// Who may call a method is judged as Node judges it (SPEC §12.2): a method registered with a
/// scope needs that scope (`operator.admin` passes all); one registered with the scope
/// [`"node"`](Handlers::NODE_ONLY) is for node hosts (role `node`) only; one registered without a
/// scope needs what OpenClaw's own method of that name needs (`status` → `operator.read`,
/// `node.event` → role `node`, …), and `operator.admin` when OpenClaw has no such method.
/// Node callers need no scope, but may call only node methods. Under the prefixes OpenClaw
/// reserves for admins (`config.`, `update.`, `wizard.`, `exec.approvals.`) a method that is not
/// one of OpenClaw's needs `operator.admin` whatever its scope. `health`, the built-in one or the
/// host's, is for every client whatever scope it is registered with.
///
/// A broadcast reaches only the clients allowed to see it (SPEC §12.7): a registered event goes
/// to operators holding its scope (by default the one OpenClaw gives an event of that name, else
/// `operator.read`); an event that is neither registered nor OpenClaw's is not sent.
///
/// ```
/// use gateway::{Handlers, MethodError};
/// let handlers = Handlers::new()
///     .method("echo", |request| async move { Ok(request.params) })
///     .method_with_scope("admin.reset", "operator.admin", |_request| async move {
///         Err::<serde_json::Value, _>(MethodError::unavailable("not now"))
///     })
///     .event("demo.tick");
/// ```
#[derive(Clone, Default)]
pub struct Handlers {
    methods: Vec<(String, Method)>,
    events: Vec<String>,
    /// The scopes given with [`event_with_scope`](Self::event_with_scope), by event.
    event_scopes: HashMap<String, &'static str>,
    on_connection: Option<Arc<ConnectionObserver>>,
    /// The first registration the builder methods refused; `Gateway::serve` fails with it.
    refused: Option<String>,
}

impl std::fmt::Debug for Handlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handlers")
            .field(
                "methods",
                &self.methods.iter().map(|(m, _)| m).collect::<Vec<_>>(),
            )
            .field("events", &self.events)
            .finish()
    }
}

impl Handlers {
    /// No methods but the built-in `health`, no events of the host's, no observer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The scope that declares a method for role `node` only (`openclaw node run` and other
    /// node hosts): nodes need no scope, operators get `unauthorized role: operator`.
    pub const NODE_ONLY: &'static str = scopes::NODE_METHOD;

    /// A method answered by an async closure, needing the scope OpenClaw's method of that name
    /// needs, else `operator.admin` (see [`Handlers`]).
    #[must_use]
    pub fn method<F, Fut>(self, name: impl Into<String>, handler: F) -> Self
    where
        F: Fn(MethodRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, MethodError>> + Send + 'static,
    {
        self.method_handler(name, None, Arc::new(AsyncMethod(handler)))
    }

    /// A method that needs `scope`, an operator scope (e.g. `operator.read`; callers without it
    /// get `FORBIDDEN` `missing scope: <scope>`), or [`NODE_ONLY`](Self::NODE_ONLY).
    #[must_use]
    pub fn method_with_scope<F, Fut>(
        self,
        name: impl Into<String>,
        scope: impl Into<String>,
        handler: F,
    ) -> Self
    where
        F: Fn(MethodRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, MethodError>> + Send + 'static,
    {
        self.method_handler(name, Some(scope.into()), Arc::new(AsyncMethod(handler)))
    }

    /// A method answered through a [`MethodHandler`] (which may answer later, from any thread).
    /// A name [`add_method`](Self::add_method) refuses makes `Gateway::serve` fail with its
    /// message.
    #[must_use]
    pub fn method_handler(
        mut self,
        name: impl Into<String>,
        scope: Option<String>,
        handler: Arc<dyn MethodHandler>,
    ) -> Self {
        if let Err(refused) = self.add_method(name, scope, handler) {
            self.refuse(refused);
        }
        self
    }

    /// An event the host emits, listed in `hello-ok`'s `features.events` and broadcast to the
    /// operators holding the scope OpenClaw gives an event of that name, else `operator.read`.
    /// An empty name makes `Gateway::serve` fail.
    #[must_use]
    pub fn event(mut self, name: impl Into<String>) -> Self {
        if let Err(refused) = self.add_event(name) {
            self.refuse(refused);
        }
        self
    }

    /// An event broadcast only to operators holding `scope` (an operator scope such as
    /// `operator.pairing`); otherwise as [`event`](Self::event). A name or scope
    /// [`add_event_with_scope`](Self::add_event_with_scope) refuses makes `Gateway::serve` fail.
    #[must_use]
    pub fn event_with_scope(mut self, name: impl Into<String>, scope: impl Into<String>) -> Self {
        if let Err(refused) = self.add_event_with_scope(name, Some(scope.into())) {
            self.refuse(refused);
        }
        self
    }

    /// Registers a method, or says why it cannot be one: `connect` is the handshake, a name
    /// must not be empty nor registered twice, and a scope must be one of the operator scopes
    /// or `"node"` ([`NODE_ONLY`](Self::NODE_ONLY)); `None` gives OpenClaw's scope for the
    /// name, else `operator.admin`. A name under a prefix OpenClaw reserves for admins
    /// (`config.`, `update.`, `wizard.`, `exec.approvals.`) that is not one of OpenClaw's own
    /// methods needs `operator.admin` whatever its scope, as OpenClaw treats a plugin's.
    /// Registering `health` replaces the built-in one; every client, node or operator, may
    /// call it whatever scope it is registered with (`health` is never scope-checked).
    pub fn add_method(
        &mut self,
        name: impl Into<String>,
        scope: Option<String>,
        handler: Arc<dyn MethodHandler>,
    ) -> Result<&mut Self, GatewayLockError> {
        let name = name.into();
        let refused = |why: String| Err(GatewayLockError::InvalidOption(why));
        if name.is_empty() {
            return refused("a method name is empty: give every method a name".into());
        }
        if name == "connect" {
            return refused(
                "method \"connect\" is the handshake and cannot be a host method: choose another name"
                    .into(),
            );
        }
        if self.methods.iter().any(|(existing, _)| *existing == name) {
            return refused(format!(
                "method {name:?} is registered twice: register each method once"
            ));
        }
        if scope.as_deref() == Some("") {
            return refused(format!(
                "the scope of method {name:?} is empty: give a scope such as operator.read, or none"
            ));
        }
        if let Some(scope) = scope.as_deref()
            && scope != scopes::NODE_METHOD
            && scopes::operator_scope(scope).is_none()
        {
            return refused(format!(
                "the scope of method {name:?} is {scope:?}, which no client can hold: give one of \
                 {}, or \"node\" for a method only node hosts call, or none for OpenClaw's default",
                scopes::OPERATOR_SCOPES.join(", ")
            ));
        }
        self.methods.push((name, Method { scope, handler }));
        Ok(self)
    }

    /// Registers an event the host emits, broadcast by OpenClaw's rule for its name (else to
    /// `operator.read`); registering one twice changes nothing.
    pub fn add_event(&mut self, name: impl Into<String>) -> Result<&mut Self, GatewayLockError> {
        self.add_event_with_scope(name, None)
    }

    /// Registers an event the host emits, broadcast to the operators holding `scope`, or by
    /// OpenClaw's rule for its name (else to `operator.read`) when `None`. Registering one again
    /// with a scope sets its scope. Refused: an empty name, a scope that is not one of the
    /// operator scopes, and a scope for an event the gateway itself emits (`tick`, `health`,
    /// `shutdown`, `presence`, `device.pair.requested`, `device.pair.resolved`), which always
    /// goes by OpenClaw's rule.
    pub fn add_event_with_scope(
        &mut self,
        name: impl Into<String>,
        scope: Option<String>,
    ) -> Result<&mut Self, GatewayLockError> {
        let name = name.into();
        let refused = |why: String| Err(GatewayLockError::InvalidOption(why));
        if name.is_empty() {
            return refused("an event name is empty: give every event a name".into());
        }
        let scope = match scope.as_deref() {
            None => None,
            Some(given) => match scopes::operator_scope(given) {
                Some(scope) => Some(scope),
                None => {
                    return refused(format!(
                        "the scope of event {name:?} is {given:?}, which no client can hold: give \
                         one of {}, or none for OpenClaw's default",
                        scopes::OPERATOR_SCOPES.join(", ")
                    ));
                }
            },
        };
        if let Some(scope) = scope {
            if scopes::is_core_emitted_event(&name) {
                return refused(format!(
                    "event {name:?} is sent by the gateway itself, to whom OpenClaw sends it, and \
                     takes no scope: register it without one, or give your event another name"
                ));
            }
            self.event_scopes.insert(name.clone(), scope);
        }
        if !self.events.contains(&name) {
            self.events.push(name);
        }
        Ok(self)
    }

    /// Why `Gateway::serve` will refuse these handlers: the first registration the builder
    /// methods refused.
    pub fn refused(&self) -> Option<&str> {
        self.refused.as_deref()
    }

    fn refuse(&mut self, refused: GatewayLockError) {
        self.refused.get_or_insert_with(|| refused.to_string());
    }

    /// Called on a gateway worker thread when a connection completes the handshake and when
    /// it ends; must not block.
    #[must_use]
    pub fn on_connection(
        mut self,
        observer: impl Fn(&ConnectionEvent) + Send + Sync + 'static,
    ) -> Self {
        self.on_connection = Some(Arc::new(observer));
        self
    }

    /// The registered methods by name.
    pub(super) fn lookup(&self) -> HashMap<String, Method> {
        self.methods.iter().cloned().collect()
    }

    /// The registered methods' names, in the order they were registered.
    pub(super) fn method_names(&self) -> impl Iterator<Item = &str> {
        self.methods.iter().map(|(name, _)| name.as_str())
    }

    /// The registered methods with their scopes, in the order they were registered (the C ABI
    /// serves them through its own handler).
    pub(crate) fn method_scopes(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.methods
            .iter()
            .map(|(name, method)| (name.as_str(), method.scope.as_deref()))
    }

    /// The registered events, in the order they were registered.
    pub(crate) fn events(&self) -> &[String] {
        &self.events
    }

    /// The scope given to a registered event, if any.
    pub(crate) fn event_scope(&self, event: &str) -> Option<&'static str> {
        self.event_scopes.get(event).copied()
    }

    /// Who gets each registered event: its scope's operators; without one, whom OpenClaw sends
    /// an event of that name to, else `operator.read` operators.
    pub(super) fn event_gates(&self) -> HashMap<String, EventGate> {
        let read = EventGate::operators_with(scopes::READ).expect("operator.read is a scope");
        self.events
            .iter()
            .map(|event| {
                let gate = match self.event_scope(event) {
                    Some(scope) => EventGate::operators_with(scope).unwrap_or(read),
                    None => scopes::core_event_gate(event).unwrap_or(read),
                };
                (event.clone(), gate)
            })
            .collect()
    }

    /// Tells the host's observer about `event`; its panic is caught, so that it cannot take the
    /// connection task down with it.
    pub(crate) fn notify(&self, event: &ConnectionEvent) {
        if let Some(observer) = &self.on_connection {
            let _ = std::panic::catch_unwind(AssertUnwindSafe(|| observer(event)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn answer(request: MethodRequest) -> Result<Value, MethodError> {
        Ok(request.params)
    }

    #[test]
    fn a_method_name_that_cannot_be_served_is_refused_with_what_to_do() {
        let cases: [(&str, Option<&str>, Option<&str>); 8] = [
            ("echo", None, None),
            ("status", Some("operator.read"), None),
            ("node.custom", Some("node"), None),
            (
                "odd",
                Some("custom.scope"),
                Some("the scope of method \"odd\" is \"custom.scope\", which no client can hold"),
            ),
            ("connect", None, Some("method \"connect\" is the handshake")),
            ("", None, Some("a method name is empty")),
            ("echo", None, Some("method \"echo\" is registered twice")),
            (
                "other",
                Some(""),
                Some("the scope of method \"other\" is empty"),
            ),
        ];
        let mut handlers = Handlers::new();
        for (name, scope, refused) in cases {
            let handler: Arc<dyn MethodHandler> = Arc::new(AsyncMethod(answer));
            let result = handlers.add_method(name, scope.map(str::to_owned), handler);
            match (result, refused) {
                (Ok(_), None) => {}
                (Err(err), Some(expected)) => {
                    assert!(err.to_string().starts_with(expected), "{name:?}: {err}")
                }
                (Ok(_), Some(expected)) => panic!("{name:?} was accepted; expected {expected}"),
                (Err(err), None) => panic!("{name:?} was refused: {err}"),
            }
        }
        assert_eq!(handlers.methods.len(), 3);
    }

    #[test]
    fn events_go_by_their_scope_then_openclaw_s_rule_then_operator_read() {
        let mut handlers = Handlers::new()
            .event("demo.tick")
            .event("heartbeat")
            .event("plugin.mine")
            .event_with_scope("demo.pairing", "operator.pairing")
            .event_with_scope("chat", "operator.admin");
        assert!(handlers.refused().is_none());
        let gates = handlers.event_gates();
        let gate = |event: &str| gates.get(event).copied();
        let only = |scope: &str| EventGate::operators_with(scope);
        assert_eq!(gate("demo.tick"), only("operator.read"));
        assert_eq!(gate("heartbeat"), Some(EventGate::Everyone));
        assert_eq!(gate("plugin.mine"), only("operator.write"));
        assert_eq!(gate("demo.pairing"), only("operator.pairing"));
        assert_eq!(gate("chat"), only("operator.admin"));
        assert_eq!(gate("not.registered"), None);
        let refused = handlers.add_event_with_scope("x", Some("everyone".into()));
        let message = refused.expect_err("refused").to_string();
        assert!(
            message.starts_with("the scope of event \"x\" is \"everyone\""),
            "{message}"
        );
    }

    #[test]
    fn the_events_the_gateway_emits_keep_openclaw_s_gate() {
        for event in [
            "tick",
            "health",
            "shutdown",
            "presence",
            "device.pair.requested",
        ] {
            let handlers = Handlers::new().event_with_scope(event, "operator.admin");
            let refused = handlers
                .refused()
                .unwrap_or_else(|| panic!("{event} was re-scoped"));
            assert!(
                refused.starts_with(&format!("event \"{event}\" is sent by the gateway itself")),
                "{refused}"
            );
            // Registered without a scope, it goes by OpenClaw's gate.
            let handlers = Handlers::new().event(event);
            assert!(handlers.refused().is_none());
            assert_eq!(
                handlers.event_gates().get(event).copied(),
                scopes::core_event_gate(event)
            );
        }
    }

    #[test]
    fn the_builder_keeps_the_first_refusal_for_serve() {
        let handlers = Handlers::new()
            .method("connect", answer)
            .method("echo", answer)
            .method("echo", answer)
            .event("");
        let refused = handlers.refused().expect("refused");
        assert!(refused.starts_with("method \"connect\""), "{refused}");
        assert!(Handlers::new().method("health", answer).refused().is_none());
    }
}
