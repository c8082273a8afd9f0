import CGateway
import Foundation

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
        let ms = retryAfter.flatMap { try? milliseconds($0, "retryAfter") }
        return (try? GatewayJSON(Wire(code: code, message: message, retryable: retryable, retryAfterMs: ms)))
            ?? GatewayJSON(raw: #"{"code":"UNAVAILABLE","message":"unencodable error"}"#)
    }
}

/// The methods the host answers (Swift closures, run as tasks), the events it sends (listed in
/// `hello-ok`), and how long a request may wait for its answer before the client gets
/// `UNAVAILABLE` (default 30 s).
public struct GatewayMethods: Sendable {
    public typealias Handler = @Sendable (GatewayRequest) async throws -> GatewayJSON

    struct Method: Sendable {
        let scope: String?
        let handler: Handler
    }

    var methods: [String: Method] = [:]
    public var events: [String] = []
    public var requestTimeout: Duration?

    public init() {}

    /// Answers `name` with `handler`'s JSON. `scope` is the scope a caller must have been
    /// granted (e.g. `"operator.read"`), or nil for none.
    public mutating func method(_ name: String, scope: String? = nil, _ handler: @escaping Handler) {
        methods[name] = Method(scope: scope, handler: handler)
    }

    /// Answers `name` with `handler`'s value, encoded with `JSONEncoder`.
    public mutating func method<T: Encodable>(
        _ name: String, scope: String? = nil,
        _ handler: @escaping @Sendable (GatewayRequest) async throws -> T
    ) {
        method(name, scope: scope) { request in try GatewayJSON(try await handler(request)) }
    }

    /// Advertises an event the host sends with `broadcast` or `sendEvent`.
    public mutating func event(_ name: String) {
        events.append(name)
    }
}

/// A `gw_handlers` made from `GatewayMethods` for one `gw_serve`, freed with it.
final class HandlersHandle {
    let pointer: OpaquePointer

    init(_ methods: GatewayMethods) throws {
        guard let pointer = gw_handlers_new() else { throw GatewayError.last(GW_ERR_PANIC.rawValue) }
        self.pointer = pointer
        for (name, method) in methods.methods.sorted(by: { $0.key < $1.key }) {
            if let scope = method.scope {
                try check(gw_handlers_add_method(pointer, name, scope))
            } else {
                try check(gw_handlers_add_method(pointer, name, nil))
            }
        }
        for event in methods.events { try check(gw_handlers_add_event(pointer, event)) }
        if let timeout = methods.requestTimeout {
            try check(gw_handlers_set_request_timeout_ms(pointer, try milliseconds(timeout, "requestTimeout")))
        }
    }

    deinit { gw_handlers_free(pointer) }
}

/// The `gw_server` pointer as the library's callbacks and late answers see it: written by
/// `gw_serve` before any request arrives, cleared (under the mutex) before `gw_shutdown`, so
/// no task answers a freed server.
///
/// `@unchecked Sendable` because `gw_serve` must write the server through a raw pointer; the
/// invariant: after `init`, `out.pointee` is read and written only with `mutex` held (by `with`
/// and `take`), except by `gw_serve`, which writes it once before any callback can read it.
final class ServerSlot: @unchecked Sendable {
    private let mutex = NSLock()
    /// Where `gw_serve` writes the server: stable memory, read by callbacks.
    let out = UnsafeMutablePointer<OpaquePointer?>.allocate(capacity: 1)

    init() { out.initialize(to: nil) }
    deinit { out.deallocate() }

    /// Runs `body` with the live server, or returns `nil` once it is shut down.
    func with<T>(_ body: (OpaquePointer) -> T) -> T? {
        mutex.lock()
        defer { mutex.unlock() }
        return out.pointee.map(body)
    }

    /// Takes the server out: later `with` calls see none.
    func take() -> ServerPointer? {
        mutex.lock()
        defer { mutex.unlock() }
        defer { out.pointee = nil }
        return out.pointee.map(ServerPointer.init)
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
