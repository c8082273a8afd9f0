//! The reading side of one connection (SPEC §9.2–9.9): the `connect` handshake, then the
//! client's requests, until either side closes.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::SplitStream;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::budget;
use super::conn::{Conn, WriterEnd};
use super::endpoint::Endpoint;
use super::handle::Responder;
use super::handlers::{ClientInfo, ConnectionEvent, Method, MethodRequest};
use super::metered::{Metered, ReadBudget, is_preauth_limit};
use crate::options::Auth;
use crate::server::http::ControlUiBuildSource;
use crate::server::locality::{Ingress, IngressKind, same_trusted_origin};
use crate::server::protocol::{self, MethodError, close};
use crate::server::scopes::{self, Grant, Refusal, Registration};

/// How long a closing connection waits for the peer's close frame before it is dropped.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// The reading side of one connection: the handshake, then requests.
pub(super) struct Session {
    pub endpoint: Arc<Endpoint>,
    pub conn: Arc<Conn>,
    pub peer: SocketAddr,
    pub origin: Option<String>,
    /// The upgrade request's facts the handshake needs (SPEC §11.6).
    pub ingress: Ingress,
    /// The nonce of this connection's `connect.challenge`.
    pub nonce: uuid::Uuid,
    pub budget: Arc<ReadBudget>,
    /// Who the client is, once it completed the handshake.
    pub client: Option<Arc<ClientInfo>>,
    /// A close frame is queued (or came in): nothing more is read but the peer's close.
    pub closing: bool,
    /// An auth-failure answer held back before it is sent (a loopback peer's wrong shared
    /// secret, SPEC §11.7).
    pub held_refusal: Option<super::credentials::HeldRefusal>,
}

impl Session {
    /// Reads until the connection ends, then lets the writer send what it has queued.
    pub async fn run(
        &mut self,
        mut stream: SplitStream<WebSocketStream<Metered>>,
        mut writer: JoinHandle<WriterEnd>,
    ) {
        // The handshake has a deadline, a close has one (the peer's close frame), and an open
        // authenticated connection has none: then the deadline is disarmed.
        let deadline = tokio::time::sleep(if self.closing {
            CLOSE_LINGER
        } else {
            self.endpoint.options.handshake_timeout
        });
        tokio::pin!(deadline);
        let mut deadline_armed = true;
        let mut writer_done = false;
        let mut returned_sink = None;
        let mut read_failed = false;
        loop {
            tokio::select! {
                biased;
                end = &mut writer, if !writer_done => {
                    writer_done = true;
                    match end {
                        Ok(WriterEnd::CloseSent(sink)) => {
                            returned_sink = Some(sink);
                            if !self.closing {
                                self.closing = true;
                                deadline.as_mut().reset(tokio::time::Instant::now() + CLOSE_LINGER);
                                deadline_armed = true;
                            }
                        }
                        _ => break,
                    }
                }
                _ = &mut deadline, if deadline_armed => {
                    if self.closing {
                        break;
                    }
                    // Armed this way only before the handshake completes.
                    self.fail(None, close::POLICY_VIOLATION, "handshake timeout");
                    deadline.as_mut().reset(tokio::time::Instant::now() + CLOSE_LINGER);
                }
                message = stream.next() => {
                    let Some(message) = message else { break };
                    let message = match message {
                        Ok(message) => message,
                        Err(err) => {
                            if self.closing || !self.read_error(&err) {
                                break;
                            }
                            read_failed = true;
                            deadline.as_mut().reset(tokio::time::Instant::now() + CLOSE_LINGER);
                            deadline_armed = true;
                            continue;
                        }
                    };
                    self.conn.heard();
                    if self.closing {
                        continue;
                    }
                    let was_open = self.client.is_some();
                    self.on_message(message);
                    if let Some(held) = self.held_refusal.take() {
                        tokio::time::sleep(held.delay).await;
                        self.send_held(held);
                    }
                    if self.closing {
                        deadline.as_mut().reset(tokio::time::Instant::now() + CLOSE_LINGER);
                        deadline_armed = true;
                    } else if !was_open && self.client.is_some() {
                        // Authenticated: no handshake deadline any more.
                        deadline_armed = false;
                    }
                }
            }
        }
        // A close we queued goes out before the socket does.
        if !writer_done {
            if self.closing && returned_sink.is_none() {
                // Boxed, as the drain below: every connection's task would hold these
                // futures' state from its start, for a step taken once at its end.
                match Box::pin(tokio::time::timeout(CLOSE_LINGER, &mut writer)).await {
                    Ok(Ok(WriterEnd::CloseSent(sink))) => returned_sink = Some(sink),
                    _ => writer.abort(),
                }
            } else {
                writer.abort();
            }
        }
        // After a read error tungstenite reads no more: end our side and drain the peer's
        // unread bytes, so it gets the close frame rather than a reset.
        if let (true, Some(sink)) = (read_failed, returned_sink)
            && let Ok(socket) = stream.reunite(sink)
        {
            Box::pin(drain(socket)).await;
        }
    }

    /// A read error: a frame over the limit is answered with 1009 (`true`); anything else
    /// ends the connection (`false`).
    fn read_error(&mut self, err: &WsError) -> bool {
        let too_big = match err {
            WsError::Capacity(_) => true,
            WsError::Io(io) => is_preauth_limit(io),
            _ => false,
        };
        if !too_big {
            return false;
        }
        // Whatever else the peer sends is read and dropped, never buffered.
        self.budget.discard();
        let reason = if self.client.is_some() {
            "payload too large"
        } else {
            "preauth payload too large"
        };
        self.fail(None, close::TOO_BIG, reason);
        true
    }

    /// Answers `id` with `error` (when there is a request to answer), then closes.
    pub(super) fn fail(&mut self, answer: Option<(&Value, MethodError)>, code: u16, reason: &str) {
        if let Some((id, error)) = answer {
            self.conn
                .push_text(protocol::res(id, &Err(error)).into(), true);
        }
        self.conn.close(code, reason);
        self.closing = true;
    }

    fn on_message(&mut self, message: Message) {
        let text = match message {
            Message::Text(text) => text,
            Message::Binary(_) => {
                if self.client.is_none() {
                    self.fail(None, close::POLICY_VIOLATION, "invalid request frame");
                } else {
                    self.answer_invalid_frame(
                        &Value::from("invalid"),
                        "binary frames are not supported",
                    );
                }
                return;
            }
            // Pings are answered by tungstenite; pongs prove the peer alive and keep its
            // presence row fresh (SPEC §12.6).
            Message::Pong(_) => {
                if let Some(client) = &self.client {
                    self.endpoint.hub.presence_touch(client.conn_id);
                }
                return;
            }
            Message::Ping(_) | Message::Frame(_) => return,
            Message::Close(_) => {
                self.closing = true;
                return;
            }
        };
        match self.client.clone() {
            None => self.handshake(text.as_str()),
            Some(client) => self.request(text.as_str(), client),
        }
    }

    /// Answers request `id`; the connection's flood guard counts the answer, and closes it after
    /// too many `unauthorized role` answers in a row.
    fn answer(&mut self, id: &Value, result: Result<Value, MethodError>) {
        if self.conn.answer(id, &result).closing {
            self.closing = true;
        }
    }

    /// Answers a frame that is no request: Node sends this outside its answers to requests, so
    /// the flood guard neither counts it nor starts again (MH:246-254).
    fn answer_invalid_frame(&self, id: &Value, why: &str) {
        let error = MethodError::invalid_request(format!("invalid request frame: {why}"));
        self.conn
            .push_text(protocol::res(id, &Err(error)).into(), false);
    }

    /// SPEC §9.3–9.7 and §11: the first frame must be a valid `connect` that passes
    /// admission; then `hello-ok`.
    fn handshake(&mut self, text: &str) {
        // Cluster mode: a gateway that may no longer lead admits nobody.
        if !self.endpoint.leads() {
            self.fail(None, close::SERVICE_RESTART, "service restart");
            return;
        }
        let frame = match protocol::parse_request(text) {
            Ok(frame) => frame,
            Err(_) => {
                // A worker's claim is refused before anything else is looked at.
                let params = serde_json::from_str::<Value>(text)
                    .ok()
                    .and_then(|v| v.get("params").cloned());
                let reason = if protocol::claims_worker(params.as_ref()) {
                    "invalid-handshake"
                } else {
                    "invalid request frame"
                };
                self.fail(None, close::POLICY_VIOLATION, reason);
                return;
            }
        };
        if protocol::claims_worker(frame.params.as_ref()) {
            self.fail(None, close::POLICY_VIOLATION, "invalid-handshake");
            return;
        }
        if frame.method != "connect" {
            let message = "invalid handshake: first request must be connect";
            let error = MethodError::invalid_request(message);
            self.fail(Some((&frame.id, error)), close::POLICY_VIOLATION, message);
            return;
        }
        let params = match protocol::parse_connect(frame.params.as_ref()) {
            Ok(params) => params,
            Err(why) => {
                let message = format!("invalid connect params: {why}");
                let error = MethodError::invalid_request(message.clone());
                self.fail(Some((&frame.id, error)), close::POLICY_VIOLATION, &message);
                return;
            }
        };
        if !protocol::protocol_accepted(&params) {
            let error = protocol::protocol_mismatch(&params);
            self.fail(
                Some((&frame.id, error)),
                close::PROTOCOL_ERROR,
                "protocol mismatch",
            );
            return;
        }
        let role = params.role.clone().unwrap_or_else(|| "operator".into());
        if role != "operator" && role != "node" {
            let error = MethodError::invalid_request("invalid role");
            self.fail(
                Some((&frame.id, error)),
                close::POLICY_VIOLATION,
                "invalid role",
            );
            return;
        }
        if let Err(reason) = self.origin_allowed(&params) {
            let message = "origin not allowed (open the Control UI from the gateway host or allow it in gateway.controlUi.allowedOrigins)";
            let error = MethodError::invalid_request(message)
                .with_details(json!({ "code": "CONTROL_UI_ORIGIN_NOT_ALLOWED", "reason": reason }));
            self.fail(Some((&frame.id, error)), close::POLICY_VIOLATION, message);
            return;
        }
        let Some(admitted) = self.admit(&frame.id, &params, &role) else {
            return;
        };
        if let Some(error) = self.control_ui_build_mismatch(&params) {
            let reason = error.message.clone();
            self.fail(Some((&frame.id, error)), close::POLICY_VIOLATION, &reason);
            return;
        }
        let client = Arc::new(ClientInfo {
            conn_id: self.conn.id,
            client: params.client,
            role,
            scopes: admitted.scopes,
            protocol: protocol::PROTOCOL_VERSION,
            peer: self.peer,
            origin: self.origin.clone(),
            device_id: admitted.device_id,
            auth_method: admitted.auth_method.to_owned(),
        });
        self.budget.unlimit();
        let device_token = admitted
            .device_token
            .as_ref()
            .map(|t| (t.token.as_str(), t.issued_at_ms));
        // A revoke or unpair that ran while the handshake checked the store either finds this
        // connection now or is found here: the role that was granted a token must still hold it.
        self.endpoint.hub.track_device(&client);
        if admitted.device_token.is_some()
            && let Some(device_id) = &client.device_id
            && !self.endpoint.devices.role_active(device_id, &client.role)
        {
            self.fail(None, super::hub::DEVICE_REMOVED_CLOSE, "device removed");
            return;
        }
        // SPEC §12.6: the client's presence row is written before its hello-ok shows it.
        let presence = self.endpoint.hub.presence_join(&client);
        let hello = self.hello(
            &client,
            presence,
            device_token,
            admitted.recovery_scope.as_deref(),
        );
        self.answer(&frame.id, Ok(hello));
        // After hello-ok is queued, so no event can overtake it.
        self.conn.authenticate(Grant {
            role: client.role.clone(),
            scopes: client.scopes.clone(),
        });
        self.endpoint.hub.presence_greeted(client.conn_id);
        self.client = Some(Arc::clone(&client));
        self.endpoint
            .handlers
            .notify(&ConnectionEvent::Opened(client));
    }

    /// The browser-origin check (ws-origin-policy-D1kTEwPF.mjs:160-175; origin-check:48-76):
    /// made for every client that sent `Origin`, and for the Control UI and webchat clients
    /// even without it. `Err` carries Node's `details.reason`.
    fn origin_allowed(&self, params: &protocol::ConnectParams) -> Result<(), &'static str> {
        let browser_client = matches!(
            params.client_id(),
            "openclaw-control-ui" | "openclaw-browser-copilot" | "webchat-ui"
        ) || params.mode == "webchat";
        let origin = self
            .origin
            .as_deref()
            .map(str::trim)
            .filter(|o| !o.is_empty());
        let Some(origin) = origin else {
            return if browser_client {
                Err("origin missing or invalid")
            } else {
                Ok(())
            };
        };
        let local = self.ingress.kind == IngressKind::DirectLocal;
        if protocol::origin_listed(&self.endpoint.options.allowed_origins, origin)
            || same_trusted_origin(&self.ingress, origin)
            || (local && protocol::is_loopback_origin(origin))
        {
            Ok(())
        } else {
            Err("origin not allowed")
        }
    }

    /// Node's check that a same-origin Control UI it bundles is the build it serves
    /// (message-handler-D5c0StBB.mjs:2870-2882, 3021-3045): only when this gateway serves a
    /// bundled UI and has a build id; a client build of `dev`, a configured UI, or another
    /// origin than the `Host` is exempt. `Some` is the refusal (`UNAVAILABLE`, close 1008).
    fn control_ui_build_mismatch(&self, params: &protocol::ConnectParams) -> Option<MethodError> {
        if self.endpoint.control_ui != Some(ControlUiBuildSource::Bundled)
            || params.client_id() != "openclaw-control-ui"
        {
            return None;
        }
        let gateway_build = self.endpoint.options.build_id.as_deref().map(str::trim)?;
        let client_build = params
            .client
            .get("buildId")
            .and_then(Value::as_str)
            .map(str::trim);
        let same_host = match (self.origin.as_deref(), self.ingress.host_header.as_deref()) {
            (Some(origin), Some(host)) => origin_host(origin).is_some_and(|h| h == host),
            _ => false,
        };
        if gateway_build.is_empty()
            || client_build == Some("dev")
            || !same_host
            || client_build == Some(gateway_build)
        {
            return None;
        }
        Some(
            MethodError::unavailable(
                "protocol mismatch: Control UI updated; reload this page to continue",
            )
            .with_retry(false, None)
            .with_details(json!({
                "code": "PROTOCOL_MISMATCH",
                "gatewayBuildId": gateway_build,
                "reloadRequired": true,
            })),
        )
    }

    /// `hello-ok` for `client`, whose snapshot shows it `presence` (SPEC §12.8).
    fn hello(
        &self,
        client: &ClientInfo,
        presence: Vec<Value>,
        device_token: Option<(&str, u64)>,
        recovery_scope: Option<&str>,
    ) -> Value {
        let endpoint = &self.endpoint;
        let options = &endpoint.options;
        let hub = &endpoint.hub;
        let (health, health_version) = hub.health_state();
        let admin =
            client.role == "operator" && scopes::scope_satisfied(scopes::ADMIN, &client.scopes);
        protocol::hello_ok(protocol::Hello {
            server_version: &options.server_version,
            build_id: options.build_id.as_deref(),
            boot_id: &hub.boot_id,
            control_ui_build_source: endpoint.control_ui.map(ControlUiBuildSource::as_str),
            conn_id: client.conn_id,
            methods: &endpoint.method_names,
            events: &endpoint.event_names,
            capabilities: &options.capabilities,
            presence,
            presence_version: hub.presence_version(),
            health,
            health_version,
            admin: admin.then(|| protocol::AdminSnapshot {
                config_path: &endpoint.paths.config_path,
                state_dir: &endpoint.paths.state_dir,
                auth_mode: match endpoint.auth {
                    Auth::None => "none",
                    Auth::Token(_) => "token",
                    Auth::Password(_) => "password",
                },
            }),
            uptime_ms: hub.uptime().as_millis() as u64,
            auth_method: &client.auth_method,
            role: &client.role,
            scopes: &client.scopes,
            recovery_scope,
            device_token,
            max_payload: options.max_payload,
            max_buffered_bytes: options.max_buffered_bytes,
            tick_interval_ms: options.tick_interval.as_millis() as u64,
        })
    }

    /// SPEC §12.2: one request after the handshake, authorized as Node authorizes it
    /// ([`scopes::authorize`]: health, role, node, scope upgrades, admin, scope), then the
    /// handler lookup, then the host's handler.
    fn request(&mut self, text: &str, client: Arc<ClientInfo>) {
        let frame = match protocol::parse_request(text) {
            Ok(frame) => frame,
            Err(invalid) => {
                self.answer_invalid_frame(&invalid.id, &invalid.why);
                return;
            }
        };
        // Cluster mode: never answer as leader once the lease may have expired, not even the
        // first request read after the process resumed from a pause.
        if !self.endpoint.leads() {
            let error = MethodError::unavailable(
                "this gateway is no longer its cluster's leader; reconnect to reach the leader",
            );
            self.fail(
                Some((&frame.id, error)),
                close::SERVICE_RESTART,
                "service restart",
            );
            return;
        }
        let endpoint = Arc::clone(&self.endpoint);
        let method = endpoint.methods.get(&frame.method);
        let registration = method.map_or(Registration::None, Method::registration);
        let params = frame.params.unwrap_or(Value::Null);
        let authorized = scopes::authorize(
            &frame.method,
            registration,
            &client.role,
            &client.scopes,
            &params,
        );
        match authorized {
            Err(Refusal::WrongRole(role)) => {
                let error = MethodError::invalid_request(format!("unauthorized role: {role}"));
                self.answer(&frame.id, Err(error));
                return;
            }
            Err(Refusal::MissingScope { missing, required }) => {
                self.answer(&frame.id, Err(protocol::missing_scope(missing, &required)));
                return;
            }
            Ok(()) => {}
        }
        if frame.method == "connect" {
            // A second `connect` is authorized like any method (MH:3498): Node's table gives it
            // `operator.admin`, so a node got `unauthorized role: node` and an operator without
            // admin `missing scope: operator.admin` above; only an admin hears this.
            let error = MethodError::invalid_request("connect is only valid as the first request");
            self.answer(&frame.id, Err(error));
            return;
        }
        let hub = &endpoint.hub;
        let Some(method) = method else {
            // SPEC §12.5: a node host's publications (`node.skills.update`,
            // `node.pluginTools.update`, `node.runnerInventory.update`, `node.event`) that the
            // host did not register reach this line (node methods, node caller) and get
            // `unknown method: <m>`: the one answer after which `openclaw node run` marks a
            // publication unsupported and sends it no more on this connection
            // (`classifyNodeMethodFailure`, SSM:203-207; `unauthorized role: node` does that
            // only for `node.runnerInventory.update` on protocol 4). Its `node.event` host
            // stats go out every 60 s whatever the answer (SSM:233-248): one failure is logged.
            let result = match frame.method.as_str() {
                "health" => Ok(hub.health(params.get("probe") == Some(&Value::Bool(true)))),
                method => Err(protocol::unknown_method(method)),
            };
            self.answer(&frame.id, result);
            return;
        };
        if scopes::is_control_plane_write(&frame.method)
            && let Err(retry_after) = endpoint.control_plane.spend(
                &frame.method,
                client.device_id.as_deref(),
                self.peer.ip(),
                std::time::Instant::now(),
            )
        {
            let error = budget::refusal(&frame.method, retry_after);
            self.answer(&frame.id, Err(error));
            return;
        }
        let id = hub.register_request(self.conn.id, frame.id, frame.method.clone());
        let request = MethodRequest {
            id,
            method: frame.method,
            params,
            client,
        };
        let responder = Responder::new(id, hub);
        let handler = &method.handler;
        if std::panic::catch_unwind(AssertUnwindSafe(|| handler.call(request, responder))).is_err()
        {
            hub.respond(
                id,
                Err(MethodError::unavailable("the method handler failed")),
            );
        }
    }
}

/// Ends our side of `socket` and reads what the peer still sends, for at most
/// [`CLOSE_LINGER`].
async fn drain(mut socket: WebSocketStream<Metered>) {
    let io = socket.get_mut();
    let _ = tokio::time::timeout(CLOSE_LINGER, async {
        let _ = io.shutdown().await;
        let mut buf = vec![0u8; 4096];
        while let Ok(1..) = io.read(&mut buf).await {}
    })
    .await;
}

/// The `host[:port]` of a browser origin as the URL parser gives it (lowercase, the scheme's
/// default port left out), to compare with the `Host` header (origin-check-Dh0t_-zy.mjs:37-41).
fn origin_host(origin: &str) -> Option<String> {
    let (scheme, rest) = origin.trim().split_once("://")?;
    let authority = rest.split('/').next()?.to_ascii_lowercase();
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => ":80",
        "https" | "wss" => ":443",
        _ => "",
    };
    let host = match authority.strip_suffix(default_port) {
        Some(host) if !default_port.is_empty() => host.to_owned(),
        _ => authority,
    };
    (!host.is_empty()).then_some(host)
}
