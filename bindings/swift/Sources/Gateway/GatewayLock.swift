import CGateway
import Foundation

/// The C ABI this wrapper was written for (`GATEWAY_ABI_VERSION`).
public let gatewayABIVersion: UInt32 = 2

/// The version of the library linked in, `MAJOR.MINOR.PATCH`.
public var gatewayLibraryVersion: String { String(cString: gw_version()) }

/// Compared once, at first use, with the ABI of the library linked in.
private let abiCheck: Result<Void, GatewayError> = {
    let found = gw_abi_version()
    return found == gatewayABIVersion
        ? .success(()) : .failure(.abiMismatch(expected: gatewayABIVersion, found: found))
}()

func checkABIVersion() throws {
    try abiCheck.get()
}

/// What `GatewayLock.status` found about the gateway holding a config's lock.
public struct GatewayStatus: Sendable, Equatable {
    /// A live gateway holds the lock.
    public var running: Bool
    /// Its `/healthz` answered.
    public var healthy: Bool
    /// A lock file is left by a provably dead owner (the next start reclaims it at once).
    public var stale: Bool
    /// The port the lock file records, else the port the options resolve to.
    public var port: Int
    /// The pid the lock file records (also when its owner is dead).
    public var pid: Int32?
    /// The holder's start time as recorded (Linux: clock ticks since boot; macOS: seconds
    /// since the epoch).
    public var startTime: UInt64?
}

/// Proof that this process is the gateway for a config and a port: both lock files are held
/// and the listener(s) bound. A noncopyable value, used up exactly once: by
/// `GatewayServer.serve(lock:)`, by `release()`, or released when it goes out of scope. Using
/// a lock after it was served or released does not compile.
public struct GatewayLock: ~Copyable {
    private let pointer: OpaquePointer

    private init(_ pointer: OpaquePointer) { self.pointer = pointer }

    deinit { gw_lock_release(pointer) }

    /// Takes the state lock, the config lock, then binds the port (SPEC §5–6). Blocks for up to
    /// `options.timeout` while a live holder does not answer `/healthz`; fails at once when it
    /// does. Throws e.g. `.alreadyRunning(pid: 4242, port: 18789, message: "gateway already
    /// running (pid 4242); it is healthy on ws://127.0.0.1:18789")`.
    ///
    /// `log` hears every line of acquiring and of the lock's re-check after it (e.g.
    /// `reclaiming stale gateway lock ...`), all levels, on any thread; without it warnings and
    /// errors go to stderr. A server keeps it unless `serve` is given a `log` of its own. The
    /// library owns the closure: it is released once the lock, or the server it became, is gone
    /// (at once when acquiring fails), and never called after that.
    public static func acquire(
        _ options: GatewayOptions = GatewayOptions(),
        log: (@Sendable (GatewayLogLevel, String) -> Void)? = nil
    ) throws -> GatewayLock {
        let handle = try OptionsHandle(options, log: log)
        var lock: OpaquePointer?
        try check(gw_lock_acquire(handle.pointer, &lock))
        return GatewayLock(lock!)
    }

    /// Socket activation: like `acquire(_:log:)`, but adopts `listener`, a bound and listening
    /// TCP socket (e.g. one systemd or launchd passed in), instead of binding. The port is the
    /// socket's (`options.port` and `options.bind` are not used to bind); both lock files are
    /// still taken. The library owns `listener` from this call on: it is closed with the lock,
    /// and at once when this throws, whatever the reason.
    public static func acquire(
        _ options: GatewayOptions = GatewayOptions(),
        listener: Int32,
        log: (@Sendable (GatewayLogLevel, String) -> Void)? = nil
    ) throws -> GatewayLock {
        let handle: OptionsHandle
        do {
            handle = try OptionsHandle(options, log: log)
        } catch {
            close(listener)  // the caller gave it away whatever happens
            throw error
        }
        var lock: OpaquePointer?
        try check(gw_lock_acquire_with_listener(handle.pointer, listener, &lock))
        return GatewayLock(lock!)
    }

    /// Looks at the gateway holding the options' lock without taking a lock, writing a file or
    /// signalling anyone, and probes its `/healthz` (up to 1 s). Throws only for bad options.
    public static func status(_ options: GatewayOptions = GatewayOptions()) throws -> GatewayStatus {
        let handle = try OptionsHandle(options)
        var found = gw_status()
        try check(gw_lock_status(handle.pointer, &found))
        return GatewayStatus(
            running: found.running, healthy: found.healthy, stale: found.stale,
            port: Int(found.port), pid: found.pid == 0 ? nil : Int32(bitPattern: found.pid),
            startTime: found.start_time == 0 ? nil : found.start_time)
    }

    /// Removes the lock files of a gateway that is gone (`gw_unlock`, what `gateway unlock`
    /// does): a stale lock always; a lock whose holder is on another machine only with `force`
    /// (only you can know that it is gone; without it, throws `.heldByOtherHost`); never a lock
    /// a live gateway holds (throws `.alreadyRunning`). Returns how many files were removed.
    @discardableResult
    public static func unlock(_ options: GatewayOptions = GatewayOptions(), force: Bool = false) throws -> Int {
        let handle = try OptionsHandle(options)
        var removed: UInt32 = 0
        try check(gw_unlock(handle.pointer, force, &removed))
        return Int(removed)
    }

    /// The port held (the real one when 0 was asked for).
    public var port: Int { Int(gw_lock_port(pointer)) }

    /// True once the lock's periodic re-check (every `GatewayOptions.recheckInterval`) found a
    /// lock file deleted or replaced: another gateway may start on this config. Serve or
    /// release such a lock as any other; a served one reports the loss as
    /// `GatewayStateChange.lockLost`.
    public var isLost: Bool { gw_lock_is_lost(pointer) }

    /// Cluster mode: the fencing token of this gateway's leadership, the store revision at which
    /// it took the cluster key (larger than every earlier leader's). Carry it into the writes
    /// you guard. `nil` without cluster mode.
    public var fencingToken: UInt64? {
        var token: UInt64 = 0
        return gw_lock_fencing_token(pointer, &token) == GW_OK.rawValue ? token : nil
    }

    /// Cluster mode: true while this gateway may act as its cluster's leader (its renew
    /// deadline still ahead, on a clock that counts while the process is stopped). Ask it right
    /// before each side effect you guard. False without cluster mode.
    public var isLeader: Bool { gw_lock_is_leader(pointer) }

    /// Cluster mode: the cluster's leader as the store says, read without taking part (no lock,
    /// no campaign); `nil` when none leads now. Throws `.clusterUnavailable` when the store
    /// cannot be read, `.invalidArgument` when `options.cluster` is `nil`.
    public static func clusterLeader(_ options: GatewayOptions) throws -> GatewayClusterLeader? {
        let handle = try OptionsHandle(options)
        var found = gw_cluster_leader()
        let code = gw_lock_cluster_leader(handle.pointer, &found)
        if code == GW_ERR_NOT_FOUND.rawValue { return nil }
        try check(code)
        let host = withUnsafeBytes(of: found.host) { bytes in
            String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
        }
        return GatewayClusterLeader(
            host: host, pid: Int32(bitPattern: found.pid), port: found.port == 0 ? nil : Int(found.port),
            fencingToken: found.fencing_token, sinceMilliseconds: found.since_ms)
    }

    /// Closes the listener(s) and removes the lock files that are still ours, now.
    public consuming func release() {
        gw_lock_release(take())
    }

    /// Hands the C handle over (to `gw_serve`, which owns it from then on) without releasing it.
    consuming func take() -> OpaquePointer {
        let pointer = self.pointer
        discard self
        return pointer
    }
}
