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

    /// A method any authenticated client may call, answered by an async closure.
    #[must_use]
    pub fn method<F, Fut>(self, name: impl Into<String>, handler: F) -> Self
    where
        F: Fn(MethodRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, MethodError>> + Send + 'static,
    {
        self.method_handler(name, None, Arc::new(AsyncMethod(handler)))
    }

    /// A method that needs `scope` (e.g. `operator.read`); callers without it get
    /// `FORBIDDEN` `missing scope: <scope>`.
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

    /// An event the host emits, listed in `hello-ok`'s `features.events`. An empty name makes
    /// `Gateway::serve` fail.
    #[must_use]
    pub fn event(mut self, name: impl Into<String>) -> Self {
        if let Err(refused) = self.add_event(name) {
            self.refuse(refused);
        }
        self
    }

    /// Registers a method, or says why it cannot be one: `connect` is the handshake, a name
    /// must not be empty nor registered twice, and a scope must not be empty. Registering
    /// `health` replaces the built-in one.
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
        self.methods.push((name, Method { scope, handler }));
        Ok(self)
    }

    /// Registers an event the host emits; registering one twice changes nothing.
    pub fn add_event(&mut self, name: impl Into<String>) -> Result<&mut Self, GatewayLockError> {
        let name = name.into();
        if name.is_empty() {
            return Err(GatewayLockError::InvalidOption(
                "an event name is empty: give every event a name".into(),
            ));
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
        let cases: [(&str, Option<&str>, Option<&str>); 5] = [
            ("echo", None, None),
            ("connect", None, Some("method \"connect\" is the handshake")),
            ("", None, Some("a method name is empty")),
            ("echo", None, Some("method \"echo\" is registered twice")),
            (
                "status",
                Some(""),
                Some("the scope of method \"status\" is empty"),
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
        assert_eq!(handlers.methods.len(), 1);
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
