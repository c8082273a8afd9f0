import CGateway
import Foundation

/// A route on the gateway port (SPEC §13): requests whose method and path match go to
/// `handler`, after the probes and the WebSocket upgrade. Add it to
/// `GatewayServeOptions.httpRoutes`. Equal only to itself (and its copies).
public struct GatewayHTTPRoute: Sendable, Equatable {
    /// Answers one request. Runs on a thread of its own (never a gateway worker), so it may
    /// read the body in a loop and write a streamed answer, both of which wait; several run at
    /// once. An exchange the handler neither answered nor kept is answered `500` when it goes
    /// away (also when the handler throws).
    public typealias Handler = @Sendable (GatewayHTTPExchange) throws -> Void

    /// `"GET"`, `"POST"`, …; `nil`: any method.
    public let method: String?
    /// Starts with `/`; compared with the request's path as sent.
    public let path: String
    /// Also every path below `path` (`/hooks` matches `/hooks/a`, not `/hooksx`).
    public let prefix: Bool
    /// Callers need the gateway's bearer token or password (others get `401` / `429`).
    public let gatewayAuth: Bool
    /// The largest request body read; past it a read throws `.httpBody` and the client gets
    /// `413`.
    public let maxBodyBytes: UInt64
    let box: HTTPRouteBox

    /// A route; the library checks it when `GatewayServer.serve` is called and throws
    /// `.invalidArgument` naming what is wrong (a relative path, a bad method, a zero limit).
    public init(
        _ method: String?, _ path: String, prefix: Bool = false, gatewayAuth: Bool = false,
        maxBodyBytes: UInt64 = 1024 * 1024, _ handler: @escaping Handler
    ) {
        self.method = method
        self.path = path
        self.prefix = prefix
        self.gatewayAuth = gatewayAuth
        self.maxBodyBytes = maxBodyBytes
        self.box = HTTPRouteBox(handler)
    }

    public static func == (left: GatewayHTTPRoute, right: GatewayHTTPRoute) -> Bool {
        left.box === right.box
    }

    /// Registers the route on `options` (the library owns a retained box from here).
    func add(to options: OpaquePointer) throws {
        let flags = (prefix ? GW_HTTP_ROUTE_PREFIX.rawValue : 0) | (gatewayAuth ? GW_HTTP_ROUTE_GATEWAY_AUTH.rawValue : 0)
        let userdata = Unmanaged.passRetained(box).toOpaque()
        if let method {
            try check(gw_serve_options_add_http_route(
                options, method, path, flags, maxBodyBytes, HTTPRouteBox.callback, userdata, HTTPRouteBox.free))
        } else {
            try check(gw_serve_options_add_http_route(
                options, nil, path, flags, maxBodyBytes, HTTPRouteBox.callback, userdata, HTTPRouteBox.free))
        }
    }
}

/// A route's handler, owned by the library: retained into the userdata of
/// `gw_serve_options_add_http_route` and released by `free`, which the library calls exactly
/// once, when the options and every server served with them are gone.
final class HTTPRouteBox: Sendable {
    let handler: GatewayHTTPRoute.Handler

    init(_ handler: @escaping GatewayHTTPRoute.Handler) { self.handler = handler }

    /// The `gw_http_route_fn` whose userdata is a retained `HTTPRouteBox`: it must not block,
    /// so the handler runs on a thread of its own.
    static var callback: gw_http_route_fn {
        { userdata, exchange in
            let handler = Unmanaged<HTTPRouteBox>.fromOpaque(userdata!).takeUnretainedValue().handler
            let owned = GatewayHTTPExchange(exchange!)
            Thread.detachNewThread { try? handler(owned) }
        }
    }

    /// The finalizer that releases it.
    static var free: @convention(c) (UnsafeMutableRawPointer?) -> Void {
        { userdata in Unmanaged<HTTPRouteBox>.fromOpaque(userdata!).release() }
    }
}

/// One request to a route and its answer (`gw_http_exchange`). Answer it once: whole with
/// `respond`, or streamed with `start`, `write`… and `finish`. Going away unanswered answers
/// `500`; a streamed answer not finished is cut short. Any thread may use it, at once; after the
/// server is gone its calls throw (`.notFound`, `.httpBody`).
public final class GatewayHTTPExchange: @unchecked Sendable {
    // @unchecked: include/gateway.h makes every gw_http_exchange_* call safe from any thread
    // at once; only gw_http_exchange_free must come last, which deinit guarantees.
    private let pointer: OpaquePointer

    /// `"GET"`, `"POST"`, …
    public let method: String
    /// The path as sent, e.g. `/hooks/github`.
    public let path: String
    /// The query without the `?` (`""` when there is none).
    public let query: String
    /// The TCP peer, e.g. `127.0.0.1:53122`.
    public let peer: String
    /// Whether the request came with the gateway's auth (always, on a `gatewayAuth` route).
    public let authenticated: Bool

    init(_ pointer: OpaquePointer) {
        self.pointer = pointer
        method = String(cString: gw_http_exchange_method(pointer))
        path = String(cString: gw_http_exchange_path(pointer))
        query = String(cString: gw_http_exchange_query(pointer))
        peer = String(cString: gw_http_exchange_peer(pointer))
        authenticated = gw_http_exchange_authenticated(pointer)
    }

    deinit { gw_http_exchange_free(pointer) }

    /// The header `name` (any case), repeated values joined by `", "`; `nil` when absent.
    public func header(_ name: String) -> String? {
        gw_http_exchange_header(pointer, name).map { String(cString: $0) }
    }

    /// Every header, Node's `req.headers`: lowercase names, repeated values joined.
    public var headers: [String: String] {
        var length = 0
        guard let json = gw_http_exchange_headers_json(pointer, &length) else { return [:] }
        let data = Data(bytes: json, count: length)
        return (try? JSONDecoder().decode([String: String].self, from: data)) ?? [:]
    }

    /// The next bytes of the request body (at most `maxLength`), waiting for them; empty at
    /// the end. Read in a loop: the body is never held whole. Throws `.httpBody` when it is
    /// larger than the route's `maxBodyBytes`, the client went quiet or away, or the server
    /// stopped.
    public func read(maxLength: Int = 64 * 1024) throws -> [UInt8] {
        guard maxLength > 0 else { throw GatewayError.invalidArgument("maxLength is \(maxLength): give at least 1") }
        var buffer = [UInt8](repeating: 0, count: maxLength)
        var count = 0
        try buffer.withUnsafeMutableBufferPointer { bytes in
            try check(gw_http_exchange_read(pointer, bytes.baseAddress, bytes.count, &count))
        }
        buffer.removeSubrange(count...)
        return buffer
    }

    /// The whole request body (within the route's limit); throws as `read`.
    public func readAll() throws -> [UInt8] {
        var all = [UInt8]()
        while case let chunk = try read(), !chunk.isEmpty { all += chunk }
        return all
    }

    /// Answers whole: `status` (200–599), `headers` (no `content-length`: the gateway sets it)
    /// and `body`. Throws `.notFound` when it was answered already or the client is gone,
    /// `.invalidArgument` for a bad status or header.
    public func respond(status: Int, headers: [String: String] = [:], body: [UInt8] = []) throws {
        let code = try statusCode(status)
        let json = try headersJSON(headers)
        try body.withUnsafeBufferPointer { bytes in
            try check(gw_http_exchange_respond(pointer, code, json, json.utf8.count, bytes.baseAddress, bytes.count))
        }
    }

    /// `respond` with a UTF-8 text body.
    public func respond(status: Int, headers: [String: String] = [:], text: String) throws {
        try respond(status: status, headers: headers, body: Array(text.utf8))
    }

    /// Starts a streamed answer (sent chunked): `write` each chunk, then `finish` (or `abort`).
    /// Throws as `respond`.
    public func start(status: Int, headers: [String: String] = [:]) throws {
        let json = try headersJSON(headers)
        try check(gw_http_exchange_start(pointer, try statusCode(status), json, json.utf8.count))
    }

    /// Sends the next chunk, waiting while the client is behind. Throws `.notFound` when the
    /// client is gone (stop writing), `.invalidArgument` before `start`.
    public func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBufferPointer { try check(gw_http_exchange_write(pointer, $0.baseAddress, $0.count)) }
    }

    /// `write` of UTF-8 text.
    public func write(_ text: String) throws { try write(Array(text.utf8)) }

    /// Ends a streamed answer: the client sees a whole body.
    public func finish() throws { try check(gw_http_exchange_finish(pointer)) }

    /// Cuts a streamed answer short (the client sees it incomplete), or answers `500` one not
    /// started.
    public func abort() throws { try check(gw_http_exchange_abort(pointer)) }

    private func statusCode(_ status: Int) throws -> UInt16 {
        guard let code = UInt16(exactly: status) else {
            throw GatewayError.invalidArgument("status \(status) is not an HTTP status: give one from 200 to 599")
        }
        return code
    }

    private func headersJSON(_ headers: [String: String]) throws -> String {
        String(decoding: try JSONEncoder().encode(headers), as: UTF8.self)
    }
}

/// OpenClaw's Control UI (a built `dist/control-ui/`, unmodified) served on the gateway port,
/// after the host's routes (SPEC §13.3). The directory is read when `GatewayServer.serve` is
/// called, which throws `.invalidArgument` naming what is wrong with it.
public struct GatewayControlUI: Sendable, Equatable {
    /// The built UI's directory (`index.html`, `assets/`, …).
    public var root: String
    /// `""` (the site's root) or Node's normal form, e.g. `/openclaw`.
    public var basePath: String
    /// Keys of `control-ui-config.json` (a JSON object, e.g. `{"assistantName":"Ada"}`).
    public var config: GatewayJSON?
    /// `gateway.controlUi.environment`, inserted into `index.html`.
    public var environment: GatewayJSON?
    /// A UI shipped with this gateway build, which reloads when the server's build id differs
    /// (default false: a configured build, which never does).
    public var bundled: Bool
    /// The UI's terminal (default off).
    public var terminalEnabled: Bool

    public init(
        root: String, basePath: String = "", config: GatewayJSON? = nil, environment: GatewayJSON? = nil,
        bundled: Bool = false, terminalEnabled: Bool = false
    ) {
        self.root = root
        self.basePath = basePath
        self.config = config
        self.environment = environment
        self.bundled = bundled
        self.terminalEnabled = terminalEnabled
    }

    func apply(to options: OpaquePointer) throws {
        try check(gw_serve_options_set_control_ui(options, root, basePath))
        if var config = config?.text {
            try config.withUTF8 { bytes in
                try bytes.withMemoryRebound(to: CChar.self) {
                    try check(gw_serve_options_set_control_ui_config_json(options, $0.baseAddress, $0.count))
                }
            }
        }
        if var environment = environment?.text {
            try environment.withUTF8 { bytes in
                try bytes.withMemoryRebound(to: CChar.self) {
                    try check(gw_serve_options_set_control_ui_environment_json(options, $0.baseAddress, $0.count))
                }
            }
        }
        try check(gw_serve_options_set_control_ui_bundled(options, bundled))
        try check(gw_serve_options_set_control_ui_terminal(options, terminalEnabled))
    }
}
