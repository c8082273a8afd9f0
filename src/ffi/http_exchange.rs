//! `gw_http_exchange`: one request to a C host's HTTP route and its answer, as the Rust
//! [`HttpRequest`] and the [`Response`] its handler returns: the request's parts, its body read
//! from a host thread, and the response given whole or streamed through a [`BodyWriter`].
//!
//! [`HttpRequest`]: crate::HttpRequest

use std::ffi::{CString, c_char};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{HeaderMap, Response};
use tokio::sync::{mpsc, oneshot};

use super::boundary::{c_string, non_null, null_argument, result_boundary, utf8_argument};
use super::result::{fail, gw_result};
use crate::server::{Body, BodyError, BodySendError, BodyWriter, HttpRequest, RequestBody};

/// Chunks a streamed response may have queued before `gw_http_exchange_write` waits for the
/// client.
const STREAM_CAPACITY: usize = 8;

/// One request to a host route (see `gw_serve_options_add_http_route`) and its answer.
///
/// The route's callback is given it; from then on the host owns it and frees it with
/// `gw_http_exchange_free` exactly once, answered or not, from any thread. In between, every
/// `gw_http_exchange_*` call is safe from any thread, at once (the reads are served one at a
/// time, as are the calls that answer), inside the callback or later, and stays safe after the
/// server was shut down: the calls that reach the client then fail with `GW_ERR_NOT_FOUND` or
/// `GW_ERR_HTTP_BODY`.
///
/// The client gets exactly one answer: the first `gw_http_exchange_respond` or
/// `gw_http_exchange_start` (a later one is `GW_ERR_NOT_FOUND`). An exchange freed (or aborted)
/// before either answers the client `500`, so no client waits for an answer that will not
/// come; until then the client waits, as long as the connection lasts.
pub struct gw_http_exchange {
    method: CString,
    path: CString,
    query: CString,
    peer: CString,
    /// Each header name once (lowercase) with its values joined by `", "`, in arrival order.
    headers: Vec<(HeaderName, CString)>,
    headers_json: CString,
    authenticated: bool,
    body: Mutex<BodyReader>,
    response: Mutex<Answer>,
}

/// What the exchange has answered so far.
enum Answer {
    /// Nothing yet: the handler's future waits on the other end.
    Waiting(oneshot::Sender<Response<Body>>),
    /// The head is sent; the body goes through the writer.
    Streaming(BodyWriter),
    /// Answered, finished, aborted, or the client was found gone.
    Done,
}

/// A request for the next chunk of the body, answered by [`pump_body`].
type ChunkRequest = oneshot::Sender<Result<Option<Bytes>, BodyError>>;

/// The host's side of the request body.
struct BodyReader {
    /// Asks [`pump_body`] for the next chunk; `None` once the body ended or failed.
    next: Option<mpsc::UnboundedSender<ChunkRequest>>,
    /// What is left of the last chunk.
    pending: Bytes,
    /// Why the body failed, given again to every later read.
    failed: Option<String>,
}

/// Reads `body` one chunk per request, on the gateway's runtime (where the route's limits and
/// timeouts run), until the exchange is freed or the server stops.
async fn pump_body(mut body: RequestBody, mut requests: mpsc::UnboundedReceiver<ChunkRequest>) {
    while let Some(reply) = requests.recv().await {
        let _ = reply.send(body.chunk().await);
    }
}

impl gw_http_exchange {
    /// The exchange for `request`, and the answer the route's future waits for. Starts the task
    /// that reads the body, so it must run on the gateway's runtime.
    pub(crate) fn begin(
        request: HttpRequest,
        authenticated: bool,
    ) -> (Self, oneshot::Receiver<Response<Body>>) {
        let (next, requests) = mpsc::unbounded_channel();
        let (answer, answered) = oneshot::channel();
        let exchange = Self {
            method: c_string(request.method.as_str().to_owned()),
            path: c_string(request.path().into_owned()),
            query: c_string(request.uri.query().unwrap_or("").to_owned()),
            peer: c_string(request.peer.to_string()),
            headers: joined_headers(&request.headers),
            headers_json: c_string(headers_json(&request.headers)),
            authenticated,
            body: Mutex::new(BodyReader {
                next: Some(next),
                pending: Bytes::new(),
                failed: None,
            }),
            response: Mutex::new(Answer::Waiting(answer)),
        };
        tokio::spawn(pump_body(request.body, requests));
        (exchange, answered)
    }

    fn answer(&self) -> MutexGuard<'_, Answer> {
        self.response.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn answer_mut(&mut self) -> &mut Answer {
        self.response.get_mut().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for gw_http_exchange {
    fn drop(&mut self) {
        // Unanswered: the sender goes and the route answers 500. Streaming: cut short, so the
        // client cannot take a body the host never finished for a whole one.
        let answer = std::mem::replace(self.answer_mut(), Answer::Done);
        if let Answer::Streaming(writer) = answer {
            writer.abort("the host freed the exchange without finishing the response");
        }
    }
}

fn joined_headers(headers: &HeaderMap) -> Vec<(HeaderName, CString)> {
    headers
        .keys()
        .map(|name| (name.clone(), c_string(joined_value(headers, name))))
        .collect()
}

/// Every value of `name`, joined by `", "` as HTTP allows for a repeated header (bytes that
/// are not UTF-8 become U+FFFD).
fn joined_value(headers: &HeaderMap, name: &HeaderName) -> String {
    headers
        .get_all(name)
        .iter()
        .map(|value| String::from_utf8_lossy(value.as_bytes()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `{"name": "value", ...}`, lowercase names, repeated headers joined: shaped like Node's
/// `req.headers` (which keeps `set-cookie` as an array and joins `cookie` with `; `; one rule
/// here keeps the header's values as sent, in order).
fn headers_json(headers: &HeaderMap) -> String {
    let object: serde_json::Map<String, serde_json::Value> = headers
        .keys()
        .map(|name| (name.as_str().to_owned(), joined_value(headers, name).into()))
        .collect();
    serde_json::Value::Object(object).to_string()
}

/// The exchange behind a pointer argument.
///
/// # Safety
///
/// `exchange` is NULL or a live `gw_http_exchange`.
unsafe fn live<'a>(
    function: &str,
    exchange: *const gw_http_exchange,
) -> Result<&'a gw_http_exchange, gw_result> {
    let exchange = non_null(function, "exchange", exchange.cast_mut())?;
    // SAFETY: non-NULL and live, by the contract.
    Ok(unsafe { &*exchange })
}

/// A string of the exchange, for the accessors that return one (NULL for a NULL exchange).
///
/// # Safety
///
/// `exchange` is NULL or a live `gw_http_exchange`.
unsafe fn text(
    function: &'static str,
    exchange: *const gw_http_exchange,
    pick: impl FnOnce(&gw_http_exchange) -> *const c_char,
) -> *const c_char {
    super::boundary::boundary(function, || {
        // SAFETY: NULL or live, by the contract.
        unsafe { exchange.as_ref() }.map_or(std::ptr::null(), pick)
    })
}

/// The request's method, e.g. `"GET"`. NULL when `exchange` is NULL.
///
/// Returns a NUL-terminated string owned by the exchange, valid until `gw_http_exchange_free`.
/// Any thread.
///
/// # Safety
///
/// `exchange` is NULL or a live `gw_http_exchange`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_http_exchange_method(
    exchange: *const gw_http_exchange,
) -> *const c_char {
    // SAFETY: forwarded contract.
    unsafe { text("gw_http_exchange_method", exchange, |e| e.method.as_ptr()) }
}

/// The request's path as the gateway routed it: the URL's pathname as Node's `new URL()` gives
/// it (dot segments resolved, percent-encoding otherwise kept), e.g. `"/hooks/github"`. NULL
/// when `exchange` is NULL.
///
/// Returns a NUL-terminated string owned by the exchange, valid until `gw_http_exchange_free`.
/// Any thread.
///
/// # Safety
///
/// `exchange` is NULL or a live `gw_http_exchange`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_http_exchange_path(exchange: *const gw_http_exchange) -> *const c_char {
    // SAFETY: forwarded contract.
    unsafe { text("gw_http_exchange_path", exchange, |e| e.path.as_ptr()) }
}

/// The request's query as sent, without the `?` (`""` when there is none), e.g. `"a=1&b=2"`.
/// NULL when `exchange` is NULL.
///
/// Returns a NUL-terminated string owned by the exchange, valid until `gw_http_exchange_free`.
/// Any thread.
///
/// # Safety
///
/// `exchange` is NULL or a live `gw_http_exchange`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_http_exchange_query(
    exchange: *const gw_http_exchange,
) -> *const c_char {
    // SAFETY: forwarded contract.
    unsafe { text("gw_http_exchange_query", exchange, |e| e.query.as_ptr()) }
}

/// Who sent the request: the TCP peer's address and port, e.g. `"127.0.0.1:53122"` or
/// `"[::1]:53122"`. NULL when `exchange` is NULL.
///
/// Returns a NUL-terminated string owned by the exchange, valid until `gw_http_exchange_free`.
/// Any thread.
///
/// # Safety
///
/// `exchange` is NULL or a live `gw_http_exchange`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_http_exchange_peer(exchange: *const gw_http_exchange) -> *const c_char {
    // SAFETY: forwarded contract.
    unsafe { text("gw_http_exchange_peer", exchange, |e| e.peer.as_ptr()) }
}

/// The request's header `name` (any case), its values joined by `", "` when it was sent more
/// than once; NULL when the request has no such header (or an argument is NULL or not
/// UTF-8). Bytes of a value that are not UTF-8 are given as U+FFFD.
///
/// Returns a NUL-terminated string owned by the exchange, valid until `gw_http_exchange_free`.
/// Any thread.
///
/// # Safety
///
/// `exchange` is NULL or a live `gw_http_exchange`; `name` is NULL or a NUL-terminated
/// string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_http_exchange_header(
    exchange: *const gw_http_exchange,
    name: *const c_char,
) -> *const c_char {
    let find = |e: &gw_http_exchange| {
        // SAFETY: NULL or NUL-terminated, by the contract.
        let Ok(name) = (unsafe { utf8_argument("gw_http_exchange_header", "name", name) }) else {
            return std::ptr::null();
        };
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
            return std::ptr::null();
        };
        e.headers
            .iter()
            .find(|(known, _)| *known == name)
            .map_or(std::ptr::null(), |(_, value)| value.as_ptr())
    };
    // SAFETY: forwarded contract.
    unsafe { text("gw_http_exchange_header", exchange, find) }
}

/// Every header of the request as a JSON object, shaped like Node's `req.headers`: lowercase
/// names, each repeated header's values joined by `", "` (also `set-cookie` and `cookie`), e.g. `{"host":"127.0.0.1:18789","accept":"text/html"}`. NULL
/// when `exchange` is NULL. When `len` is not NULL it is set to the length without the NUL.
///
/// Returns a NUL-terminated UTF-8 string owned by the exchange, valid until
/// `gw_http_exchange_free`. Any thread.
///
/// # Safety
///
/// `exchange` is NULL or a live `gw_http_exchange`; `len` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_http_exchange_headers_json(
    exchange: *const gw_http_exchange,
    len: *mut usize,
) -> *const c_char {
    let json = |e: &gw_http_exchange| {
        // SAFETY: NULL or writable, by the contract.
        if let Some(len) = unsafe { len.as_mut() } {
            *len = e.headers_json.as_bytes().len();
        }
        e.headers_json.as_ptr()
    };
    // SAFETY: forwarded contract.
    unsafe { text("gw_http_exchange_headers_json", exchange, json) }
}

/// Whether the request passed the gateway's auth: true on every request to a route registered
/// with `GW_HTTP_ROUTE_GATEWAY_AUTH` (the gateway answers the others `401` / `429` before the
/// callback; with the gateway's auth mode none, it lets everyone through), false on a public
/// route and when `exchange` is NULL. Any thread.
///
/// # Safety
///
/// `exchange` is NULL or a live `gw_http_exchange`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_http_exchange_authenticated(exchange: *const gw_http_exchange) -> bool {
    super::boundary::boundary("gw_http_exchange_authenticated", || {
        // SAFETY: NULL or live, by the contract.
        unsafe { exchange.as_ref() }.is_some_and(|e| e.authenticated)
    })
}

/// `GW_ERR_WRONG_THREAD` when called on one of the gateway's worker threads (a route callback
/// included), where waiting would stall the server.
fn off_the_workers(function: &str, what: &str) -> Result<(), gw_result> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(fail(
            gw_result::GW_ERR_WRONG_THREAD,
            format!(
                "{function} was called on a gateway worker thread (a route callback), where \
                 {what} would stall the server: call it from a thread of your own"
            ),
        ));
    }
    Ok(())
}

/// Reads the next bytes of the request body into `buf` (at most `cap`), waiting for them to
/// arrive, and writes how many to `*n`: 0 at the end of the body (and on every read after it).
/// The body is never buffered whole: each read takes what the client has sent, so a body
/// larger than memory is read in a loop.
///
/// `GW_ERR_HTTP_BODY` when the body cannot be read (the message says which): it is larger than
/// the route's `max_body_bytes` (the client is answered `413`), the client sent nothing within
/// the idle timeout, the client went away, or the server stopped; every later read fails the
/// same way. `GW_ERR_WRONG_THREAD` on a gateway worker thread (inside the route callback):
/// read from a thread of your own. `GW_ERR_INVALID_ARGUMENT` when `cap` is 0;
/// `GW_ERR_NULL_ARGUMENT` when a pointer is NULL. `*n` is written only on `GW_OK`.
///
/// Blocks; any thread but the gateway's workers. Reads of one exchange from several threads
/// are served one at a time.
///
/// # Safety
///
/// `exchange` is NULL or a live `gw_http_exchange`; `buf` is NULL or `cap` writable bytes;
/// `n` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_http_exchange_read(
    exchange: *const gw_http_exchange,
    buf: *mut u8,
    cap: usize,
    n: *mut usize,
) -> gw_result {
    const FUNCTION: &str = "gw_http_exchange_read";
    result_boundary(FUNCTION, || {
        // SAFETY: forwarded contract.
        let exchange = unsafe { live(FUNCTION, exchange) }?;
        let buf = non_null(FUNCTION, "buf", buf)?;
        let n = non_null(FUNCTION, "n", n)?;
        if cap == 0 {
            return Err(fail(
                gw_result::GW_ERR_INVALID_ARGUMENT,
                format!("{FUNCTION}: cap is 0: give a buffer of at least 1 byte"),
            ));
        }
        off_the_workers(FUNCTION, "waiting for the request body")?;
        let mut reader = exchange.body.lock().unwrap_or_else(|e| e.into_inner());
        let got = reader.read(FUNCTION, cap)?;
        // SAFETY: `buf` has `cap` writable bytes and `got` is at most `cap` long; `n` is
        // writable, by the contract.
        unsafe {
            std::ptr::copy_nonoverlapping(got.as_ptr(), buf, got.len());
            n.write(got.len());
        }
        Ok(())
    })
}

impl BodyReader {
    /// The next at most `cap` bytes; empty at the end.
    fn read(&mut self, function: &str, cap: usize) -> Result<Bytes, gw_result> {
        loop {
            if let Some(why) = &self.failed {
                return Err(fail(
                    gw_result::GW_ERR_HTTP_BODY,
                    format!("{function}: {why}"),
                ));
            }
            if !self.pending.is_empty() {
                let take = cap.min(self.pending.len());
                return Ok(self.pending.split_to(take));
            }
            let Some(next) = &self.next else {
                return Ok(Bytes::new());
            };
            let (reply, chunk) = oneshot::channel();
            let stopped = "the gateway stopped: the request body can no longer be read";
            let chunk = match next.send(reply) {
                Ok(()) => chunk.blocking_recv().map_err(|_| stopped.to_owned()),
                Err(_) => Err(stopped.to_owned()),
            };
            match chunk {
                Ok(Ok(Some(bytes))) => self.pending = bytes,
                Ok(Ok(None)) => self.next = None,
                Ok(Err(err)) => {
                    self.next = None;
                    self.failed = Some(format!("the request body failed: {err}"));
                }
                Err(why) => {
                    self.next = None;
                    self.failed = Some(why);
                }
            }
        }
    }
}

/// A response head from the host's arguments: `status` 200–599 and `headers_json`, an object
/// whose values are strings or arrays of strings (`{"content-type": "text/plain",
/// "set-cookie": ["a=1", "b=2"]}`).
///
/// # Safety
///
/// `headers_json` is NULL or `headers_len` readable bytes.
unsafe fn head(
    function: &str,
    status: u16,
    headers_json: *const c_char,
    headers_len: usize,
) -> Result<hyper::http::response::Builder, gw_result> {
    let invalid = |message: String| fail(gw_result::GW_ERR_INVALID_ARGUMENT, message);
    if !(200..=599).contains(&status) {
        return Err(invalid(format!(
            "{function}: status {status} is not a final HTTP status: give one from 200 to 599"
        )));
    }
    let mut builder = Response::builder().status(status);
    if headers_json.is_null() {
        return Ok(builder);
    }
    // SAFETY: forwarded contract.
    let headers = unsafe {
        super::boundary::json_argument(function, "headers_json", headers_json, headers_len)
    }?;
    let serde_json::Value::Object(headers) = headers else {
        return Err(invalid(format!(
            "{function}: headers_json is not a JSON object: give {{\"name\": \"value\", ...}}"
        )));
    };
    for (name, values) in headers {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid(format!("{function}: {name:?} is not an HTTP header name")))?;
        if header == header::CONTENT_LENGTH || header == header::TRANSFER_ENCODING {
            return Err(invalid(format!(
                "{function}: the gateway sets {name:?} itself from the body: leave it out"
            )));
        }
        let values = match values {
            serde_json::Value::String(value) => vec![serde_json::Value::String(value)],
            serde_json::Value::Array(values) => values,
            _ => Vec::new(),
        };
        if values.is_empty() {
            return Err(invalid(format!(
                "{function}: header {name:?} is neither a string nor an array of strings"
            )));
        }
        for value in values {
            let value = value
                .as_str()
                .and_then(|v| HeaderValue::from_str(v).ok())
                .ok_or_else(|| {
                    invalid(format!(
                        "{function}: header {name:?} has a value that is not a string of \
                         visible characters: {value}"
                    ))
                })?;
            builder = builder.header(&header, value);
        }
    }
    Ok(builder)
}

/// Sends `response` as the exchange's answer, or says why not.
fn send_head(
    function: &str,
    exchange: &gw_http_exchange,
    response: Response<Body>,
    then: impl FnOnce() -> Answer,
) -> Result<(), gw_result> {
    let mut answer = exchange.answer();
    match std::mem::replace(&mut *answer, Answer::Done) {
        Answer::Waiting(waiting) => {
            if waiting.send(response).is_err() {
                return Err(client_gone(function));
            }
            *answer = then();
            Ok(())
        }
        other => {
            *answer = other;
            Err(fail(
                gw_result::GW_ERR_NOT_FOUND,
                format!("{function}: the exchange was answered already"),
            ))
        }
    }
}

fn client_gone(function: &str) -> gw_result {
    fail(
        gw_result::GW_ERR_NOT_FOUND,
        format!(
            "{function}: the HTTP client is gone (or the gateway stopped): nobody reads the answer"
        ),
    )
}

/// Answers the request whole: `status` (200–599), the headers in `headers_json` (`headers_len`
/// bytes of UTF-8 JSON, an object whose values are strings or arrays of strings, e.g.
/// `{"content-type":"application/json","set-cookie":["a=1","b=2"]}`; NULL for none) and the
/// `body_len` bytes at `body` (NULL when `body_len` is 0), all copied before it returns. The
/// gateway sets `content-length` (and adds Node's security headers where the host set none).
///
/// `GW_ERR_NOT_FOUND` when the exchange was answered already (by this call or
/// `gw_http_exchange_start`), or the client is gone or the server stopped.
/// `GW_ERR_INVALID_ARGUMENT` for a status outside 200–599, headers that are not such an object
/// or not valid HTTP (the message names the header), or `content-length` /
/// `transfer-encoding` among them; the exchange then still waits for its answer.
/// `GW_ERR_NULL_ARGUMENT` when `exchange` is NULL, or `body` is NULL with a length.
///
/// Never blocks; any thread, the route callback included.
///
/// # Safety
///
/// `exchange` is NULL or a live `gw_http_exchange`; `headers_json` is NULL or `headers_len`
/// readable bytes; `body` is NULL or `body_len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_http_exchange_respond(
    exchange: *const gw_http_exchange,
    status: u16,
    headers_json: *const c_char,
    headers_len: usize,
    body: *const u8,
    body_len: usize,
) -> gw_result {
    const FUNCTION: &str = "gw_http_exchange_respond";
    result_boundary(FUNCTION, || {
        // SAFETY: forwarded contract.
        let exchange = unsafe { live(FUNCTION, exchange) }?;
        // SAFETY: forwarded contract.
        let builder = unsafe { head(FUNCTION, status, headers_json, headers_len) }?;
        let bytes = match (body.is_null(), body_len) {
            (_, 0) => Bytes::new(),
            (true, _) => return Err(null_argument(FUNCTION, "body")),
            (false, len) => {
                // SAFETY: `body_len` readable bytes, by the contract.
                let body = unsafe { std::slice::from_raw_parts(body, len) };
                Bytes::copy_from_slice(body)
            }
        };
        let response = builder.body(Body::full(bytes)).map_err(|err| {
            fail(
                gw_result::GW_ERR_INVALID_ARGUMENT,
                format!("{FUNCTION}: {err}"),
            )
        })?;
        send_head(FUNCTION, exchange, response, || Answer::Done)
    })
}

/// Starts a streamed answer: sends `status` (200–599) and the headers in `headers_json` (as
/// for `gw_http_exchange_respond`), after which the body goes out chunked, chunk by chunk, as
/// `gw_http_exchange_write` gives it, until `gw_http_exchange_finish` (or is cut short by
/// `gw_http_exchange_abort`, or by `gw_http_exchange_free` without a finish). For a download,
/// server-sent events (`{"content-type":"text/event-stream"}`), a long poll.
///
/// Results as `gw_http_exchange_respond`. Never blocks; any thread, the route callback
/// included.
///
/// # Safety
///
/// `exchange` is NULL or a live `gw_http_exchange`; `headers_json` is NULL or `headers_len`
/// readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_http_exchange_start(
    exchange: *const gw_http_exchange,
    status: u16,
    headers_json: *const c_char,
    headers_len: usize,
) -> gw_result {
    const FUNCTION: &str = "gw_http_exchange_start";
    result_boundary(FUNCTION, || {
        // SAFETY: forwarded contract.
        let exchange = unsafe { live(FUNCTION, exchange) }?;
        // SAFETY: forwarded contract.
        let builder = unsafe { head(FUNCTION, status, headers_json, headers_len) }?;
        let (writer, body) = Body::channel(STREAM_CAPACITY);
        let response = builder.body(body).map_err(|err| {
            fail(
                gw_result::GW_ERR_INVALID_ARGUMENT,
                format!("{FUNCTION}: {err}"),
            )
        })?;
        send_head(FUNCTION, exchange, response, || Answer::Streaming(writer))
    })
}

/// Sends the `len` bytes at `data` (copied; 0 sends nothing) as the next chunk of a streamed
/// answer. Waits while the client has not taken the chunks before it (a few are queued), so a
/// slow client slows the writer instead of filling memory.
///
/// `GW_ERR_NOT_FOUND` when the client is gone or the server stopped (stop writing: nobody
/// reads), or the answer was finished or aborted already. `GW_ERR_INVALID_ARGUMENT` when
/// `gw_http_exchange_start` was not called (or the exchange was answered whole).
/// `GW_ERR_WRONG_THREAD` on a gateway worker thread (inside the route callback): write from a
/// thread of your own. `GW_ERR_NULL_ARGUMENT` when `exchange` is NULL, or `data` is NULL with
/// a length.
///
/// Blocks; any thread but the gateway's workers. Each write is queued whole; writes from
/// several threads at once go in the order they find room. A write waiting for the client
/// returns `GW_ERR_NOT_FOUND` as soon as another thread aborts the answer.
///
/// # Safety
///
/// `exchange` is NULL or a live `gw_http_exchange`; `data` is NULL or `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_http_exchange_write(
    exchange: *const gw_http_exchange,
    data: *const u8,
    len: usize,
) -> gw_result {
    const FUNCTION: &str = "gw_http_exchange_write";
    result_boundary(FUNCTION, || {
        // SAFETY: forwarded contract.
        let exchange = unsafe { live(FUNCTION, exchange) }?;
        if data.is_null() && len > 0 {
            return Err(null_argument(FUNCTION, "data"));
        }
        off_the_workers(FUNCTION, "waiting for the client")?;
        // A clone, so the lock is not held while the client is waited for: finish and abort
        // (which never block) take it, and an abort wakes this send.
        let writer = match &*exchange.answer() {
            Answer::Streaming(writer) => writer.clone(),
            Answer::Waiting(_) => {
                return Err(fail(
                    gw_result::GW_ERR_INVALID_ARGUMENT,
                    format!(
                        "{FUNCTION}: no answer is streaming: call gw_http_exchange_start first"
                    ),
                ));
            }
            Answer::Done => return Err(complete(FUNCTION)),
        };
        if len == 0 {
            return Ok(());
        }
        // SAFETY: `len` readable bytes, by the contract.
        let chunk = Bytes::copy_from_slice(unsafe { std::slice::from_raw_parts(data, len) });
        match writer.blocking_send(chunk) {
            Ok(()) => Ok(()),
            Err(BodySendError::Closed) => {
                let mut answer = exchange.answer();
                if matches!(&*answer, Answer::Streaming(_)) {
                    *answer = Answer::Done;
                }
                Err(client_gone(FUNCTION))
            }
            Err(BodySendError::Aborted) => Err(complete(FUNCTION)),
            Err(err @ BodySendError::OnGatewayWorker) => Err(fail(
                gw_result::GW_ERR_WRONG_THREAD,
                format!("{FUNCTION}: {err}"),
            )),
        }
    })
}

fn complete(function: &str) -> gw_result {
    fail(
        gw_result::GW_ERR_NOT_FOUND,
        format!(
            "{function}: the answer is complete (answered whole, finished or aborted) or its \
             client is gone"
        ),
    )
}

/// Ends a streamed answer normally: the client gets the final chunk and sees a whole body.
///
/// `GW_ERR_NOT_FOUND` when the answer was finished or aborted already (or answered whole);
/// `GW_ERR_INVALID_ARGUMENT` when `gw_http_exchange_start` was not called;
/// `GW_ERR_NULL_ARGUMENT` when `exchange` is NULL. Never blocks; any thread.
///
/// # Safety
///
/// `exchange` is NULL or a live `gw_http_exchange`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_http_exchange_finish(exchange: *const gw_http_exchange) -> gw_result {
    const FUNCTION: &str = "gw_http_exchange_finish";
    result_boundary(FUNCTION, || {
        // SAFETY: forwarded contract.
        let exchange = unsafe { live(FUNCTION, exchange) }?;
        let mut answer = exchange.answer();
        match std::mem::replace(&mut *answer, Answer::Done) {
            Answer::Streaming(writer) => {
                writer.finish();
                Ok(())
            }
            Answer::Waiting(waiting) => {
                *answer = Answer::Waiting(waiting);
                Err(fail(
                    gw_result::GW_ERR_INVALID_ARGUMENT,
                    format!(
                        "{FUNCTION}: no answer is streaming: call gw_http_exchange_start first"
                    ),
                ))
            }
            Answer::Done => Err(fail(
                gw_result::GW_ERR_NOT_FOUND,
                format!(
                    "{FUNCTION}: the answer is complete already (answered whole, finished or aborted)"
                ),
            )),
        }
    })
}

/// Gives up on the answer: a streamed one is cut short (the connection closes without the
/// final chunk, so the client sees an incomplete body, never a truncated one that looks whole);
/// one not started yet is answered `500`.
///
/// `GW_ERR_NOT_FOUND` when the answer is complete already (answered whole, finished or
/// aborted); `GW_ERR_NULL_ARGUMENT` when `exchange` is NULL. Never blocks; any thread.
///
/// # Safety
///
/// `exchange` is NULL or a live `gw_http_exchange`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_http_exchange_abort(exchange: *const gw_http_exchange) -> gw_result {
    const FUNCTION: &str = "gw_http_exchange_abort";
    result_boundary(FUNCTION, || {
        // SAFETY: forwarded contract.
        let exchange = unsafe { live(FUNCTION, exchange) }?;
        match std::mem::replace(&mut *exchange.answer(), Answer::Done) {
            Answer::Streaming(writer) => {
                writer.abort("the host aborted the response");
                Ok(())
            }
            // Dropping the sender answers 500 (see `gw_http_route_fn`'s route).
            Answer::Waiting(_) => Ok(()),
            Answer::Done => Err(fail(
                gw_result::GW_ERR_NOT_FOUND,
                format!(
                    "{FUNCTION}: the answer is complete already (answered whole, finished or aborted)"
                ),
            )),
        }
    })
}

/// Frees the exchange. Unanswered, the client gets `500`; a streamed answer not finished is
/// cut short as `gw_http_exchange_abort` cuts it; what is left of the request body is
/// discarded. NULL is harmless.
///
/// Never blocks; any thread, the route callback included.
///
/// # Safety
///
/// `exchange` is NULL or the `gw_http_exchange` a route callback was given, not freed yet, and
/// not used afterwards (nor by another thread during the call).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_http_exchange_free(exchange: *mut gw_http_exchange) {
    // SAFETY: NULL or boxed by the route and given to the host, never used again, by the
    // contract.
    unsafe { super::boundary::free_handle("gw_http_exchange_free", exchange) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::boundary::last_error;

    /// What a response head may carry: each case's status and headers JSON, and the refusal's
    /// message (`None`: accepted).
    #[test]
    fn a_response_head_is_a_final_status_and_a_json_object_of_headers() {
        let cases: [(u16, Option<&str>, Option<&str>); 13] = [
            (200, None, None),
            (599, Some(r#"{"content-type":"text/plain"}"#), None),
            (
                204,
                Some(r#"{"set-cookie":["a=1","b=2"],"X-Mixed-Case":"v"}"#),
                None,
            ),
            (199, None, Some("status 199 is not a final HTTP status")),
            (600, None, Some("status 600 is not a final HTTP status")),
            (101, None, Some("give one from 200 to 599")),
            (200, Some("[]"), Some("headers_json is not a JSON object")),
            (200, Some("{"), Some("headers_json is not valid JSON")),
            (
                200,
                Some(r#"{"bad name":"v"}"#),
                Some("\"bad name\" is not an HTTP header name"),
            ),
            (
                200,
                Some(r#"{"x":"a\u0000b"}"#),
                Some("not a string of visible characters"),
            ),
            (
                200,
                Some(r#"{"x":[]}"#),
                Some("neither a string nor an array of strings"),
            ),
            (
                200,
                Some(r#"{"Content-Length":"3"}"#),
                Some("sets \"Content-Length\" itself"),
            ),
            (
                200,
                Some(r#"{"transfer-encoding":"chunked"}"#),
                Some("sets \"transfer-encoding\""),
            ),
        ];
        for (status, headers, refusal) in cases {
            let (ptr, len) =
                headers.map_or((std::ptr::null(), 0), |h| (h.as_ptr().cast(), h.len()));
            // SAFETY: NULL or `len` readable bytes.
            let built = unsafe { head("f", status, ptr, len) };
            match (built, refusal) {
                (Ok(builder), None) => {
                    let response = builder.body(()).unwrap();
                    assert_eq!(response.status().as_u16(), status);
                }
                (Err(result), Some(message)) => {
                    assert_eq!(result, gw_result::GW_ERR_INVALID_ARGUMENT, "{headers:?}");
                    assert!(last_error().contains(message), "{}", last_error());
                }
                (Ok(_), Some(message)) => panic!("{status} {headers:?} accepted; want {message:?}"),
                (Err(_), None) => panic!("{status} {headers:?} refused: {}", last_error()),
            }
        }
        let cookies = r#"{"set-cookie":["a=1","b=2"]}"#;
        // SAFETY: `cookies.len()` readable bytes.
        let builder = unsafe { head("f", 200, cookies.as_ptr().cast(), cookies.len()) };
        let response = builder.unwrap().body(()).unwrap();
        let cookies: Vec<_> = response.headers().get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
    }

    #[test]
    fn request_headers_are_joined_as_node_gives_them() {
        let mut headers = HeaderMap::new();
        headers.append("x-demo", HeaderValue::from_static("one"));
        headers.append("host", HeaderValue::from_static("h"));
        headers.append("x-demo", HeaderValue::from_static("two"));
        headers.append("x-bytes", HeaderValue::from_bytes(b"a\xffb").unwrap());
        let json: serde_json::Value = serde_json::from_str(&headers_json(&headers)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"x-demo": "one, two", "host": "h", "x-bytes": "a\u{FFFD}b"})
        );
        let joined = joined_headers(&headers);
        assert_eq!(joined.len(), 3);
        assert_eq!(joined[0].0, "x-demo");
        assert_eq!(joined[0].1.as_c_str(), c"one, two");
    }
}
