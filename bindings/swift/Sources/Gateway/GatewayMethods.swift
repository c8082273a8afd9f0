import CGateway
import Foundation
import Synchronization

/// JSON text, as the protocol carries it (a request's `params`, a result, an event payload).
public struct GatewayJSON: Sendable, Equatable, CustomStringConvertible {
    /// The JSON text, e.g. `{"up":true}`.
    public let text: String

    /// JSON text as is (the library checks that it is JSON).
    public init(raw text: String) { self.text = text }

    /// `value` encoded with `JSONEncoder`.
    public init<T: Encodable>(_ value: T) throws {
        text = String(decoding: try JSONEncoder().encode(value), as: UTF8.self)
    }

    /// `null`.
    public static let null = GatewayJSON(raw: "null")

    /// The JSON decoded as `type`.
    public func decode<T: Decodable>(_ type: T.Type = T.self) throws -> T {
        try JSONDecoder().decode(type, from: Data(text.utf8))
    }

    public var description: String { text }
}

/// A request from a WebSocket client for one of the host's methods.
public struct GatewayRequest: Sendable {
    /// Gateway-wide id of the request (never 0).
    public let id: UInt64
    public let method: String
    /// The request's `params` (`null` when it had none).
    public let params: GatewayJSON
    /// The client's connection, for `GatewayServer.sendEvent(to:event:payload:)`.
    public let connectionID: UInt64
}

/// What a method handler throws to answer with a protocol error (`res` with `ok: false`).
/// Any other error thrown by a handler answers `UNAVAILABLE` with the error's description.
public struct GatewayMethodError: Error, Sendable, Equatable {
    public var code: String
    public var message: String
    public var retryable: Bool?
    public var retryAfter: Duration?

    public init(code: String, message: String, retryable: Bool? = nil, retryAfter: Duration? = nil) {
        self.code = code
        self.message = message
        self.retryable = retryable
        self.retryAfter = retryAfter
    }

    var json: GatewayJSON {
        struct Wire: Encodable {
            let code: String, message: String, retryable: Bool?, retryAfterMs: UInt32?
        }
        let ms: UInt32? = retryAfter.flatMap { try? milliseconds($0, "retryAfter") }
        return (try? GatewayJSON(Wire(code: code, message: message, retryable: retryable, retryAfterMs: ms)))
            ?? GatewayJSON(raw: #"{"code":"UNAVAILABLE","message":"unencodable error"}"#)
    }
}

/// The methods the host answers (Swift closures, run as tasks) and the events it sends (listed
/// in `hello-ok`). How long a request may wait for its answer is
/// `GatewayServeOptions.requestTimeout`.
public struct GatewayMethods: Sendable {
    public typealias Handler = @Sendable (GatewayRequest) async throws -> GatewayJSON

    struct Method: Sendable {
        let name: String
        let scope: String?
        let handler: Handler
    }

    /// In the order registered, duplicates included: the library judges them.
    var methods: [Method] = []
    public var events: [String] = []
    /// The scopes given with `event(_:scope:)`, by event.
    public var eventScopes: [String: String] = [:]

    public init() {}

    /// Answers `name` with `handler`'s JSON. `scope` is the operator scope a caller must have
    /// been granted (e.g. `"operator.read"`), `"node"` for a method only node hosts may call, or
    /// nil for the scope OpenClaw's own method of that name needs, else `operator.admin`.
    /// `"health"` replaces the built-in one. A name registered twice, an empty one, or `"connect"` (the handshake) makes `serve`
    /// throw `.invalidArgument` with the library's reason.
    public mutating func method(_ name: String, scope: String? = nil, _ handler: @escaping Handler) {
        methods.append(Method(name: name, scope: scope, handler: handler))
    }

    /// Answers `name` with `handler`'s value, encoded with `JSONEncoder`.
    public mutating func method<T: Encodable>(
        _ name: String, scope: String? = nil,
        _ handler: @escaping @Sendable (GatewayRequest) async throws -> T
    ) {
        method(name, scope: scope) { request in try GatewayJSON(try await handler(request)) }
    }

    /// The handler of each method, once the library accepted them (so each name is there once).
    var handlers: [String: Handler] {
        Dictionary(methods.map { ($0.name, $0.handler) }, uniquingKeysWith: { first, _ in first })
    }

    /// Advertises an event the host sends with `broadcast` or `sendEvent`. Both send it only
    /// to the operators holding `scope` (an operator scope, e.g. `"operator.pairing"`), or with
    /// nil to those holding the scope OpenClaw gives an event of that name, else
    /// `operator.read`. An event neither registered nor OpenClaw's is sent to nobody; a scope
    /// for an event the gateway itself emits (`tick`, `health`, `presence`, …) is refused.
    public mutating func event(_ name: String, scope: String? = nil) {
        events.append(name)
        if let scope { eventScopes[name] = scope }
    }
}

/// A `gw_handlers` made from `GatewayMethods` for one `gw_serve`, freed with it.
final class HandlersHandle {
    let pointer: OpaquePointer

    init(_ methods: GatewayMethods) throws {
        guard let pointer = gw_handlers_new() else { throw GatewayError.last(GW_ERR_PANIC.rawValue) }
        self.pointer = pointer
        for method in methods.methods {
            if let scope = method.scope {
                try check(gw_handlers_add_method(pointer, method.name, scope))
            } else {
                try check(gw_handlers_add_method(pointer, method.name, nil))
            }
        }
        for event in methods.events {
            if let scope = methods.eventScopes[event] {
                try check(gw_handlers_add_event_with_scope(pointer, event, scope))
            } else {
                try check(gw_handlers_add_event(pointer, event))
            }
        }
    }

    deinit { gw_handlers_free(pointer) }
}

/// The `gw_server` as late answers and the host's calls see it. Known from the first of
/// `on_connection`, `on_request` (both may come before `gw_serve` returns, and carry the
/// server) and `gw_serve`'s return; taken out (under the mutex) before `gw_shutdown`, so no
/// task answers a freed server.
final class ServerSlot: Sendable {
    private enum State {
        /// `gw_serve` has not told us the server yet.
        case starting
        case live(ServerPointer)
        /// Taken for `gw_shutdown`.
        case stopped
    }

    private let state = Mutex(State.starting)

    /// Records the server, unless it is known already or shut down.
    func publish(_ server: OpaquePointer) {
        state.withLock { state in
            if case .starting = state { state = .live(ServerPointer(pointer: server)) }
        }
    }

    /// Runs `body` with the live server, or returns `nil` when there is none (any more).
    func with<T: Sendable>(_ body: (OpaquePointer) -> T) -> T? {
        state.withLock { state in
            guard case .live(let server) = state else { return nil }
            return body(server.pointer)
        }
    }

    /// Takes the server out: later `with` calls see none.
    func take() -> ServerPointer? {
        state.withLock { state in
            defer { state = .stopped }
            guard case .live(let server) = state else { return nil }
            return server
        }
    }
}

/// Answers a request on the live server, if it still is.
func respond(_ slot: ServerSlot, _ request: UInt64, ok: Bool, _ json: GatewayJSON) -> UInt32? {
    var text = json.text
    return slot.with { server in
        text.withUTF8 { bytes in
            bytes.withMemoryRebound(to: CChar.self) {
                gw_respond(server, request, ok, $0.baseAddress, $0.count)
            }
        }
    }
}
