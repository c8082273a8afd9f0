import CGateway

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
    /// The `log` closure the library calls without owning it (`gw_options_set_log`): retained
    /// here, by hand because `discard self` needs trivial fields, until the lock is released
    /// or its server shut down.
    private let logger: Unmanaged<LogBox>?

    private init(_ pointer: OpaquePointer, logger: LogBox?) {
        self.pointer = pointer
        self.logger = logger.map { Unmanaged.passRetained($0) }
    }

    deinit {
        gw_lock_release(pointer)
        logger?.release()  // after the release: the lock no longer logs
    }

    /// Takes the state lock, the config lock, then binds the port (SPEC §5–6). Blocks for up to
    /// `options.timeout` while a live holder does not answer `/healthz`; fails at once when it
    /// does. Throws e.g. `.alreadyRunning(pid: 4242, port: 18789, message: "gateway already
    /// running (pid 4242); it is healthy on ws://127.0.0.1:18789")`.
    ///
    /// `log` hears every line of acquiring and of the lock's re-check after it (e.g.
    /// `reclaiming stale gateway lock ...`), all levels, on any thread; without it warnings and
    /// errors go to stderr. A server keeps it unless `serve` is given a `log` of its own.
    public static func acquire(
        _ options: GatewayOptions = GatewayOptions(),
        log: (@Sendable (GatewayLogLevel, String) -> Void)? = nil
    ) throws -> GatewayLock {
        let logger = log.map(LogBox.init)
        let handle = try OptionsHandle(options, logger: logger)
        var lock: OpaquePointer?
        try withExtendedLifetime(logger) { try check(gw_lock_acquire(handle.pointer, &lock)) }
        return GatewayLock(lock!, logger: logger)
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

    /// The port held (the real one when 0 was asked for).
    public var port: Int { Int(gw_lock_port(pointer)) }

    /// Closes the listener(s) and removes the lock files that are still ours, now.
    public consuming func release() {
        let (pointer, logger) = take()
        withExtendedLifetime(logger) { gw_lock_release(pointer) }
    }

    /// Hands the C handle over (to `gw_serve`, which owns it from then on) without releasing
    /// it, with the log closure the library may call until the lock or its server is gone.
    consuming func take() -> (OpaquePointer, LogBox?) {
        let pointer = self.pointer
        let logger = self.logger?.takeRetainedValue()
        discard self
        return (pointer, logger)
    }
}
