//! The HTTP side of `/`: answers the upgrade request (101, or 426/400 when it is not a proper
//! one), then runs the upgraded connection on its own task from the challenge to its end.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::stream::SplitStream;
use hyper::body::Incoming;
use hyper::header::{
    CONNECTION, HeaderMap, HeaderName, HeaderValue, ORIGIN, SEC_WEBSOCKET_ACCEPT,
    SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use hyper::upgrade::OnUpgrade;
use hyper::{Request, Response, StatusCode};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::conn::{Conn, WriterEnd};
use super::endpoint::Endpoint;
use super::handlers::ConnectionEvent;
use super::hub::Slot;
use super::metered::{MAX_FRAME_HEADER, Metered, ReadBudget, TUNGSTENITE_READ_BUFFER};
use super::session::Session;
use crate::options::LogLevel;
use crate::server::OpenConnection;
use crate::server::http::Body;
use crate::server::locality::{self, Ingress};
use crate::server::protocol::{self, close};
use crate::server::response::plain;

/// Answers an upgrade request at `/` and serves the connection on its own task, which holds
/// `open` (so that a shutdown waits for it) until the connection ends.
pub(crate) fn accept(
    endpoint: &Arc<Endpoint>,
    request: &mut Request<Incoming>,
    peer: SocketAddr,
    open: OpenConnection,
) -> Response<Body> {
    let headers = request.headers();
    if !(has_token(headers, &UPGRADE, "websocket") && has_token(headers, &CONNECTION, "upgrade")) {
        let mut response = plain(StatusCode::UPGRADE_REQUIRED, "Upgrade Required");
        response
            .headers_mut()
            .insert(UPGRADE, HeaderValue::from_static("websocket"));
        return response;
    }
    let key = headers
        .get(SEC_WEBSOCKET_KEY)
        .map(|k| k.as_bytes().to_vec());
    let version_ok = headers
        .get(SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() == b"13");
    let (Some(key), true, &hyper::Method::GET) = (key, version_ok, request.method()) else {
        let mut response = plain(StatusCode::BAD_REQUEST, "Bad WebSocket upgrade request");
        response
            .headers_mut()
            .insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        return response;
    };
    let origin = headers
        .get(ORIGIN)
        .map(|o| String::from_utf8_lossy(o.as_bytes()).into_owned());
    let ingress = locality::ingress(peer, headers);
    let on_upgrade = hyper::upgrade::on(request);
    let (slot, admitted) = endpoint.hub.open_slot();
    if !admitted {
        endpoint.hub.logger.log(
            LogLevel::Warn,
            &format!(
                "refusing a WebSocket client from {peer}: {} connections open (max_connections)",
                endpoint.options.max_connections
            ),
        );
    }
    let upgrade = Box::new(Upgrade {
        endpoint: Arc::clone(endpoint),
        on_upgrade,
        peer,
        origin,
        ingress,
        admitted,
    });
    tokio::spawn(serve(upgrade, slot, open));
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(
        SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&derive_accept_key(&key)).expect("base64 is a header value"),
    );
    response
}

/// What [`accept`] learnt of an upgrade request, for the connection's task.
struct Upgrade {
    endpoint: Arc<Endpoint>,
    on_upgrade: OnUpgrade,
    peer: SocketAddr,
    origin: Option<String>,
    ingress: Ingress,
    /// Within `max_connections`.
    admitted: bool,
}

/// One upgraded connection, holding `slot` and `open` until it ends: the challenge (or, past
/// `max_connections` or in a shutdown, a close), the session, and the `Closed` notification.
///
/// The task's future is what every open connection keeps, so it holds little but the session:
/// the steps before it run in a boxed future of their own, which is freed once they are done
/// (inline, their state took the task's future from 1.4 KB to 3 KB for the connection's life).
async fn serve(upgrade: Box<Upgrade>, _slot: Slot, _open: OpenConnection) {
    let Some((mut session, stream, writer)) = Box::pin(start(upgrade)).await else {
        return;
    };
    session.run(stream, writer).await;
    let endpoint = &session.endpoint;
    endpoint.hub.unregister(session.conn.id);
    session.conn.kill();
    if let Some(client) = session.client.take() {
        endpoint.hub.presence_leave(client.conn_id);
        endpoint.handlers.notify(&ConnectionEvent::Closed(client));
    }
}

/// The upgrade, the WebSocket over it, the connection's writer and its first frame: the
/// challenge, or the close of a connection that may not be served.
async fn start(
    upgrade: Box<Upgrade>,
) -> Option<(
    Session,
    SplitStream<WebSocketStream<Metered>>,
    JoinHandle<WriterEnd>,
)> {
    let Upgrade {
        endpoint,
        on_upgrade,
        peer,
        origin,
        ingress,
        admitted,
    } = *upgrade;
    let upgraded = on_upgrade.await.ok()?;
    let options = &endpoint.options;
    let budget = Arc::new(ReadBudget::new(
        options.max_preauth_payload + MAX_FRAME_HEADER,
    ));
    let io = Metered::new(upgraded, Arc::clone(&budget));
    let config = WebSocketConfig::default()
        .read_buffer_size(TUNGSTENITE_READ_BUFFER)
        .write_buffer_size(64 * 1024)
        .max_message_size(Some(options.max_payload))
        .max_frame_size(Some(options.max_payload));
    let socket = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
    let (sink, stream) = socket.split();
    let hub = &endpoint.hub;
    let nonce = uuid::Uuid::new_v4();
    let (conn, writer) = Conn::start(hub.next_conn_id(), sink, options.max_buffered_bytes);
    if !admitted {
        conn.close(close::TRY_AGAIN_LATER, "too many connections");
    } else if hub.register(&conn) {
        let challenge = protocol::connect_challenge(&nonce, &options.challenge_capabilities);
        conn.push_text(challenge.into(), false);
    } else {
        conn.close(close::SERVICE_RESTART, "service restart");
    }
    let session = Session {
        endpoint,
        conn,
        peer,
        origin,
        ingress,
        nonce,
        budget,
        client: None,
        closing: !admitted,
        held_refusal: None,
    };
    Some((session, stream, writer))
}

fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|part| part.trim().eq_ignore_ascii_case(token))
        })
    })
}
