import CGateway
import Foundation

/// How loud a log line is.
public enum GatewayLogLevel: Sendable, Comparable {
    case debug, info, warn, error

    /// The level of a `gw_log_level` (a level of a newer library counts as an error).
    init(_ level: UInt32) {
        switch level {
        case GW_LOG_DEBUG.rawValue: self = .debug
        case GW_LOG_INFO.rawValue: self = .info
        case GW_LOG_WARN.rawValue: self = .warn
        default: self = .error
        }
    }
}

/// A change in a served gateway's life.
public enum GatewayStateChange: Sendable, Equatable {
    /// The port accepts and `/readyz` answers (during `serve`, before it returns).
    case ready
    /// A lock file was deleted or replaced while held: another gateway may start on this
    /// config. The server keeps serving until shut down.
    case lockLost
    /// Cluster mode: this gateway stopped serving as its cluster's leader (its lease could not
    /// be renewed in time, or the store says it expired): `/readyz` answers 503 and its clients
    /// were closed. Shut it down, then acquire again to stand by.
    case leadershipLost
    /// The listeners are closed and the lock released; `drained` is false when open
    /// connections were cut off at the shutdown's timeout.
    case stopped(drained: Bool)
}

/// A client that completed the handshake, or such a client going away.
public enum GatewayConnectionChange: Sendable, Equatable {
    /// `hello-ok` was sent to connection `id`; its requests follow. `client` is the object
    /// `{"connId", "client": {id, version, platform, mode, ...as sent}, "role", "scopes",
    /// "protocol", "peer", "origin"?}`.
    case opened(id: UInt64, client: GatewayJSON)
    /// The client on connection `id` is gone: `sendEvent(to: id, ...)` throws `.notFound`.
    case closed(id: UInt64)
}

/// The host's closures, owned by the library while it serves: retained into `userdata` by
/// `serve` and released by `free_userdata`, which the library calls exactly once.
final class CallbackBox: Sendable {
    let log: (@Sendable (GatewayLogLevel, String) -> Void)?
    let onStateChange: (@Sendable (GatewayStateChange) -> Void)?
    let onConnection: (@Sendable (GatewayConnectionChange) -> Void)?
    let handlers: [String: GatewayMethods.Handler]
    let slot: ServerSlot

    init(log: (@Sendable (GatewayLogLevel, String) -> Void)?,
         onStateChange: (@Sendable (GatewayStateChange) -> Void)?,
         onConnection: (@Sendable (GatewayConnectionChange) -> Void)?,
         methods: GatewayMethods, slot: ServerSlot) {
        self.log = log
        self.onStateChange = onStateChange
        self.onConnection = onConnection
        self.handlers = methods.handlers
        self.slot = slot
    }

    static func from(_ userdata: UnsafeMutableRawPointer?) -> CallbackBox {
        Unmanaged<CallbackBox>.fromOpaque(userdata!).takeUnretainedValue()
    }
}

/// A lock's `log` closure, owned by the library: retained into the userdata of
/// `gw_options_set_log` and released by `free`, which the library calls exactly once, when the
/// options and every lock and server that used the log are gone.
final class LogBox: Sendable {
    let log: @Sendable (GatewayLogLevel, String) -> Void

    init(_ log: @escaping @Sendable (GatewayLogLevel, String) -> Void) { self.log = log }

    /// The `gw_log_fn` whose userdata is a retained `LogBox`.
    static var callback: gw_log_fn {
        { userdata, level, message, length in
            Unmanaged<LogBox>.fromOpaque(userdata!).takeUnretainedValue().log(GatewayLogLevel(level), string(message, length))
        }
    }

    /// The finalizer that releases it.
    static var free: @convention(c) (UnsafeMutableRawPointer?) -> Void {
        { userdata in Unmanaged<LogBox>.fromOpaque(userdata!).release() }
    }
}

/// Where `gw_server_presence`'s reader leaves the text; read on the calling thread only.
private final class PresenceText {
    var text = "[]"
}

/// `len` bytes of UTF-8 from the library, copied.
private func string(_ bytes: UnsafePointer<CChar>?, _ length: Int) -> String {
    String(decoding: UnsafeRawBufferPointer(start: bytes.map(UnsafeRawPointer.init), count: length), as: UTF8.self)
}

/// A running gateway: it holds the lock and serves the HTTP probes and the WebSocket protocol
/// on threads the library owns, until `shutdown(timeout:)` or until the object goes away. Any
/// thread or task may use it.
///
/// Going away without `shutdown` is a shutdown too, but one nobody waits for: `deinit` returns
/// at once and a thread of its own shuts down (open connections get the serve options'
/// `dropTimeout`, 5 s by default), after which the port is free and the lock files are gone.
/// Call `shutdown(timeout:)` to know when that is; a process that exits before it is done
/// leaves lock files of a dead pid, which the next start reclaims at once.
public final class GatewayServer: Sendable {
    private let slot: ServerSlot
    /// What `deinit` gives `gw_shutdown` (`GatewayServeOptions.dropTimeout`).
    private let dropTimeout: UInt32

    /// The port the server listens on.
    public let port: Int

    private init(slot: ServerSlot, dropTimeout: UInt32) {
        self.slot = slot
        self.dropTimeout = dropTimeout
        self.port = slot.with { Int(gw_server_port($0)) } ?? 0
    }

    deinit {
        guard let server = slot.take() else { return }
        let timeout = dropTimeout
        Thread.detachNewThread { _ = gw_shutdown(server.pointer, timeout) }
    }

    /// Serves on the lock's listener(s) with `options` and returns once ready (`/readyz`
    /// answers 200). The lock is used up, also when this throws. `methods` are answered by
    /// Swift closures run as tasks; `log`, `onStateChange` and `onConnection` are called on
    /// library threads, possibly several at once, and must return quickly. Some of them may
    /// run before `serve` returns (a client may connect as soon as the port accepts).
    /// `onConnection` hears of one connection in order, and `.opened(id:)` has returned before
    /// any handler of that connection's requests starts. `healthSource` produces the health
    /// snapshot at each refresh (at start, every `healthRefreshInterval`, when `health` finds
    /// the cache stale, after a connect at most once an interval; `nil` keeps the previous
    /// one); it is called on library threads and must return quickly. Throws
    /// `.invalidArgument` naming a bad option or method.
    public static func serve(
        lock: consuming GatewayLock,
        options: GatewayServeOptions = GatewayServeOptions(),
        methods: GatewayMethods = GatewayMethods(),
        log: (@Sendable (GatewayLogLevel, String) -> Void)? = nil,
        onStateChange: (@Sendable (GatewayStateChange) -> Void)? = nil,
        onConnection: (@Sendable (GatewayConnectionChange) -> Void)? = nil,
        healthSource: (@Sendable () -> GatewayJSON?)? = nil
    ) throws -> GatewayServer {
        let lockPointer = lock.take()  // released or served whatever happens below
        let handlers: HandlersHandle
        let serveOptions: ServeOptionsHandle
        do {
            try checkABIVersion()
            handlers = try HandlersHandle(methods)
            serveOptions = try ServeOptionsHandle(options)
            if let healthSource { try serveOptions.setHealthSource(healthSource) }
        } catch {
            gw_lock_release(lockPointer)
            throw error
        }
        let slot = ServerSlot()
        let box = CallbackBox(
            log: log, onStateChange: onStateChange, onConnection: onConnection, methods: methods, slot: slot)
        var callbacks = gw_callbacks()
        callbacks.size = MemoryLayout<gw_callbacks>.size
        callbacks.userdata = Unmanaged.passRetained(box).toOpaque()
        callbacks.handlers = handlers.pointer
        if log != nil {
            callbacks.log = { userdata, level, message, length in
                CallbackBox.from(userdata).log?(GatewayLogLevel(level), string(message, length))
            }
        }
        if onStateChange != nil {
            callbacks.state = { userdata, state, result in
                let change: GatewayStateChange
                switch state {
                case GW_STATE_READY.rawValue: change = .ready
                case GW_STATE_LOCK_LOST.rawValue:
                    change = result == GW_ERR_LEADERSHIP_LOST.rawValue ? .leadershipLost : .lockLost
                case GW_STATE_STOPPED.rawValue: change = .stopped(drained: result == GW_OK.rawValue)
                default: return  // a state of a newer library
                }
                CallbackBox.from(userdata).onStateChange?(change)
            }
        }
        if !methods.methods.isEmpty {
            callbacks.on_request = { userdata, server, id, method, methodLength, params, paramsLength, connection in
                let box = CallbackBox.from(userdata)
                // A client may call before gw_serve returns: this is how the slot learns the
                // server then.
                box.slot.publish(server!)
                let request = GatewayRequest(
                    id: id, method: string(method, methodLength),
                    params: GatewayJSON(raw: string(params, paramsLength)), connectionID: connection)
                answer(request, with: box.handlers[request.method], on: box.slot)
            }
        }
        if onConnection != nil {
            callbacks.on_connection = { userdata, server, connection, opened, client, length in
                let box = CallbackBox.from(userdata)
                // A client may connect before gw_serve returns: the slot learns the server here
                // too, so the host's calls work from its first connection on.
                box.slot.publish(server!)
                // The library calls this on the connection's session before it reads the
                // connection's next frame: onConnection(.opened) returns before any of its
                // requests reaches on_request, so before its first handler starts.
                box.onConnection?(
                    opened ? .opened(id: connection, client: GatewayJSON(raw: string(client, length)))
                        : .closed(id: connection))
            }
        }
        callbacks.free_userdata = { userdata in
            Unmanaged<CallbackBox>.fromOpaque(userdata!).release()
        }
        // gw_serve owns the lock and the retained box from here, whatever it returns.
        var server: OpaquePointer?
        do {
            try withExtendedLifetime((handlers, serveOptions)) {
                try check(gw_serve(lockPointer, &callbacks, serveOptions.pointer, &server))
            }
        } catch {
            // A server that on_request saw went with the failed gw_serve: late answers must not
            // reach it (and nothing may shut it down).
            _ = slot.take()
            throw error
        }
        slot.publish(server!)
        return GatewayServer(slot: slot, dropTimeout: options.dropTimeoutMilliseconds)
    }

    /// Replaces the health snapshot that the `health` method answers (by default
    /// `{"ok":true,"ts":<now>,"durationMs":0}`) and sends it to every authenticated client as
    /// a `health` event. Throws `.invalidArgument` when it is not JSON.
    public func setHealth(_ snapshot: GatewayJSON) throws {
        try withServer { server in
            var text = snapshot.text
            return text.withUTF8 { bytes in
                bytes.withMemoryRebound(to: CChar.self) { gw_set_health(server, $0.baseAddress, $0.count) }
            }
        }
    }

    /// `setHealth(_:)` with `snapshot` encoded by `JSONEncoder`.
    public func setHealth<T: Encodable>(_ snapshot: T) throws {
        try setHealth(GatewayJSON(snapshot))
    }

    /// The presence list (SPEC §12.6), a JSON array newest first: the gateway's own row
    /// (`"mode":"gateway"`, `"reason":"self"`) and one row per non-ephemeral client of the last
    /// five minutes (`"reason"` `connect` or `disconnect`). What `system-presence` answers.
    public func presence() throws -> GatewayJSON {
        let box = PresenceText()
        try withServer { server in
            gw_server_presence(server, { userdata, json, length in
                Unmanaged<PresenceText>.fromOpaque(userdata!).takeUnretainedValue().text = string(json, length)
            }, Unmanaged.passUnretained(box).toOpaque())
        }
        return GatewayJSON(raw: box.text)
    }

    /// WebSocket connections open now, authenticated or not (0 once shut down).
    public var connectionCount: Int {
        slot.with { gw_server_connection_count($0) } ?? 0
    }

    /// Cluster mode: the fencing token of the lock served on (`GatewayLock.fencingToken`);
    /// `nil` without cluster mode or once shut down.
    public var fencingToken: UInt64? {
        slot.with { server -> UInt64? in
            var token: UInt64 = 0
            return gw_server_fencing_token(server, &token) == GW_OK.rawValue ? token : nil
        } ?? nil
    }

    /// Cluster mode: true while this gateway may act as its cluster's leader; false from the
    /// moment it stops (before `.leadershipLost` is reported), without cluster mode, and once
    /// shut down.
    public var isLeader: Bool {
        slot.with { gw_server_is_leader($0) } ?? false
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

    /// Sends `event` to the client on `connection` (`GatewayRequest.connectionID`), with its
    /// next `seq`, when the event's scope admits it (as `broadcast` would); throws `.notFound`
    /// when it is gone.
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

    /// Runs a `gw_*` call on the live server; throws its failure (`.notFound` once shut down).
    func withServerCall(_ body: (OpaquePointer) -> UInt32) throws {
        try withServer(body)
    }

    private func withServer(_ body: (OpaquePointer) -> UInt32) throws {
        // The message belongs to the thread of the failed call: read it inside the slot's lock.
        let failure: GatewayError? = slot.with { server in
            let code = body(server)
            return code == GW_OK.rawValue ? nil : GatewayError.last(code)
        } ?? GatewayError.notFound("the gateway server is shut down")
        if let failure { throw failure }
    }

    /// Shuts down gracefully: stops accepting, closes every listener, lets open connections
    /// finish for at most `timeout`, then releases the lock. When it returns the port is free
    /// and no lock file of ours remains. Throws `.timeout` when connections were cut off (the
    /// server is stopped all the same). A no-op once shut down. Blocks a thread of its own,
    /// not the caller's. Answers still pending are dropped (their clients see the shutdown).
    public func shutdown(timeout: Duration = .seconds(5)) async throws {
        let ms: UInt32 = try milliseconds(timeout, "timeout")
        guard let pointer = slot.take() else { return }
        let failure: GatewayError? = await withCheckedContinuation { done in
            Thread.detachNewThread {
                let code = gw_shutdown(pointer.pointer, ms)
                // The message is per thread: read it on the thread that failed.
                done.resume(returning: code == GW_OK.rawValue ? nil : GatewayError.last(code))
            }
        }
        if let failure { throw failure }
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
        if respond(slot, request.id, ok: reply.ok, reply.json) == GW_ERR_INVALID_ARGUMENT.rawValue {
            // Not JSON: say so.
            let error = GatewayMethodError(code: "UNAVAILABLE", message: "the handler answered invalid JSON")
            _ = respond(slot, request.id, ok: false, error.json)
        }
    }
}

/// A `gw_server` as it crosses threads: to the thread that shuts it down, and in `ServerSlot`.
/// `@unchecked` because the C type cannot say it, but include/gateway.h does: `gw_respond`,
/// `gw_broadcast`, `gw_send_event`, `gw_set_health`, `gw_server_port` and
/// `gw_server_connection_count` are safe from any thread at once while the server is live, and
/// `gw_shutdown` from any thread but a library callback. What keeps it live is `ServerSlot`: the
/// host's calls run under its lock, `gw_shutdown` only on a pointer taken out of it, and the
/// library calls `on_request` and `on_connection` (the other users) never once `gw_shutdown`
/// began freeing it.
struct ServerPointer: @unchecked Sendable {
    let pointer: OpaquePointer
}
