import CGateway
import Foundation

/// How loud a log line is.
public enum GatewayLogLevel: UInt32, Sendable, Comparable {
    case debug = 0, info, warn, error

    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
}

/// A change in a served gateway's life.
public enum GatewayStateChange: Sendable, Equatable {
    /// The port accepts and `/readyz` answers (during `serve`, before it returns).
    case ready
    /// A lock file was deleted or replaced while held: another gateway may start on this
    /// config. The server keeps serving until shut down.
    case lockLost
    /// The listeners are closed and the lock released; `drained` is false when open
    /// connections were cut off at the shutdown's timeout.
    case stopped(drained: Bool)
}

/// The host's closures, owned by the library while it serves: retained into `userdata` by
/// `serve` and released by `free_userdata`, which the library calls exactly once.
final class CallbackBox: @unchecked Sendable {  // immutable; the closures are @Sendable
    let log: (@Sendable (GatewayLogLevel, String) -> Void)?
    let onStateChange: (@Sendable (GatewayStateChange) -> Void)?
    let methods: GatewayMethods
    let slot: ServerSlot

    init(log: (@Sendable (GatewayLogLevel, String) -> Void)?,
         onStateChange: (@Sendable (GatewayStateChange) -> Void)?,
         methods: GatewayMethods, slot: ServerSlot) {
        self.log = log
        self.onStateChange = onStateChange
        self.methods = methods
        self.slot = slot
    }

    static func from(_ userdata: UnsafeMutableRawPointer?) -> CallbackBox {
        Unmanaged<CallbackBox>.fromOpaque(userdata!).takeUnretainedValue()
    }
}

/// `len` bytes of UTF-8 from the library, copied.
private func string(_ bytes: UnsafePointer<CChar>?, _ length: Int) -> String {
    String(decoding: UnsafeRawBufferPointer(start: bytes.map(UnsafeRawPointer.init), count: length), as: UTF8.self)
}

/// A running gateway: it holds the lock and serves the HTTP probes and the WebSocket protocol
/// on threads the library owns, until `shutdown(timeout:)` or until the object goes away
/// (`deinit` shuts down with a 5 s timeout, blocking). Any thread may use it.
public final class GatewayServer: @unchecked Sendable {  // all state is in the thread-safe slot
    private let slot: ServerSlot

    /// The port the server listens on.
    public let port: Int

    /// The closures' box, weakly: for tests that prove `free_userdata` releases it.
    weak var callbackBox: CallbackBox?

    private init(slot: ServerSlot, box: CallbackBox) {
        self.slot = slot
        self.port = slot.with { Int(gw_server_port($0)) } ?? 0
        self.callbackBox = box
    }

    deinit {
        if let pointer = slot.take() { gw_shutdown(pointer, 5000) }
    }

    /// Serves on the lock's listener(s) and returns once ready (`/readyz` answers 200). The lock
    /// is consumed, also when this throws. `methods` are answered by Swift closures run as
    /// tasks; `log` and `onStateChange` are called on library threads, possibly several at
    /// once, and must return quickly.
    public static func serve(
        lock: GatewayLock,
        methods: GatewayMethods = GatewayMethods(),
        log: (@Sendable (GatewayLogLevel, String) -> Void)? = nil,
        onStateChange: (@Sendable (GatewayStateChange) -> Void)? = nil
    ) throws -> GatewayServer {
        let lockPointer = lock.take()  // consumed whatever happens below
        do {
            try checkABIVersion()
        } catch {
            gw_lock_release(lockPointer)
            throw error
        }
        let handlers: HandlersHandle
        do {
            handlers = try HandlersHandle(methods)
        } catch {
            gw_lock_release(lockPointer)
            throw error
        }
        let slot = ServerSlot()
        let box = CallbackBox(log: log, onStateChange: onStateChange, methods: methods, slot: slot)
        var callbacks = gw_callbacks()
        callbacks.size = MemoryLayout<gw_callbacks>.size
        callbacks.userdata = Unmanaged.passRetained(box).toOpaque()
        callbacks.handlers = handlers.pointer
        if log != nil {
            callbacks.log = { userdata, level, message, length in
                CallbackBox.from(userdata).log?(GatewayLogLevel(rawValue: level) ?? .error, string(message, length))
            }
        }
        if onStateChange != nil {
            callbacks.state = { userdata, state, result in
                let change: GatewayStateChange
                switch state {
                case 1: change = .ready
                case 2: change = .lockLost
                case 3: change = .stopped(drained: result == 0)
                default: return  // a state of a newer library
                }
                CallbackBox.from(userdata).onStateChange?(change)
            }
        }
        if !methods.methods.isEmpty {
            callbacks.on_request = { userdata, id, method, methodLength, params, paramsLength, connection in
                let box = CallbackBox.from(userdata)
                let request = GatewayRequest(
                    id: id, method: string(method, methodLength),
                    params: GatewayJSON(raw: string(params, paramsLength)), connectionID: connection)
                answer(request, with: box.methods.methods[request.method]?.handler, on: box.slot)
            }
        }
        callbacks.free_userdata = { userdata in
            Unmanaged<CallbackBox>.fromOpaque(userdata!).release()
        }
        // gw_serve owns the lock and the retained box from here, whatever it returns; it writes
        // the server into the slot before any request can arrive.
        try withExtendedLifetime(handlers) {
            try check(gw_serve(lockPointer, &callbacks, slot.out))
        }
        return GatewayServer(slot: slot, box: box)
    }

    /// Sends `event` with `payload` to every authenticated client (none is fine).
    public func broadcast(event: String, payload: GatewayJSON = .null) throws {
        try withServer { server in
            var text = payload.text
            return text.withUTF8 { bytes in
                bytes.withMemoryRebound(to: CChar.self) { gw_broadcast(server, event, $0.baseAddress, $0.count) }
            }
        }
    }

    /// Sends `event` with `payload`, encoded with `JSONEncoder`, to every authenticated client.
    public func broadcast<T: Encodable>(event: String, payload: T) throws {
        try broadcast(event: event, payload: GatewayJSON(payload))
    }

    /// Sends `event` to the client on `connection` (`GatewayRequest.connectionID`); throws
    /// `.notFound` when it is gone.
    public func sendEvent(to connection: UInt64, event: String, payload: GatewayJSON = .null) throws {
        try withServer { server in
            var text = payload.text
            return text.withUTF8 { bytes in
                bytes.withMemoryRebound(to: CChar.self) {
                    gw_send_event(server, connection, event, $0.baseAddress, $0.count)
                }
            }
        }
    }

    private func withServer(_ body: (OpaquePointer) -> UInt32) throws {
        // The message belongs to the thread of the failed call: read it inside the slot's lock.
        let failure: GatewayError? = slot.with { server in
            let code = body(server)
            return code == 0 ? nil : GatewayError.last(code)
        } ?? GatewayError.notFound("the gateway server is shut down")
        if let failure { throw failure }
    }

    /// Shuts down gracefully: stops accepting, closes every listener, lets open connections
    /// finish for at most `timeout`, then releases the lock. When it returns the port is free
    /// and no lock file of ours remains. Throws `.timeout` when connections were cut off (the
    /// server is stopped all the same). A no-op once shut down. Blocks a thread of its own,
    /// not the caller's. Answers still pending are dropped (their clients see the shutdown).
    public func shutdown(timeout: Duration = .seconds(5)) async throws {
        let ms = try milliseconds(timeout, "timeout")
        guard let pointer = slot.take() else { return }
        let server = HandOver(pointer: pointer)
        let (code, message): (UInt32, String) = await withCheckedContinuation { done in
            Thread.detachNewThread {
                let code = gw_shutdown(server.pointer, ms)
                // The message is per thread: read it on the thread that failed.
                done.resume(returning: (code, code == 0 ? "" : String(cString: gw_last_error_message())))
            }
        }
        if code != 0 { throw GatewayError(code: code, message: message) }
    }
}

/// Runs a method's handler as a task and answers with what it returns or throws.
private func answer(_ request: GatewayRequest, with handler: GatewayMethods.Handler?, on slot: ServerSlot) {
    guard let handler else {
        let error = GatewayMethodError(code: "UNAVAILABLE", message: "no handler for \(request.method)")
        _ = respond(slot, request.id, ok: false, error.json)
        return
    }
    Task.detached {
        var reply: (ok: Bool, json: GatewayJSON)
        do {
            reply = (true, try await handler(request))
        } catch let error as GatewayMethodError {
            reply = (false, error.json)
        } catch {
            reply = (false, GatewayMethodError(code: "UNAVAILABLE", message: "\(error)").json)
        }
        if respond(slot, request.id, ok: reply.ok, reply.json) == 2 {  // not JSON: say so
            let error = GatewayMethodError(code: "UNAVAILABLE", message: "the handler answered invalid JSON")
            _ = respond(slot, request.id, ok: false, error.json)
        }
    }
}

/// A `gw_server` handed to the thread that shuts it down (any thread may call `gw_shutdown`).
private struct HandOver: @unchecked Sendable {
    let pointer: OpaquePointer
}
