import CGateway

/// Where and how the gateway locks and listens (SPEC §1). A field left `nil` keeps the
/// library's default, resolved when the lock is acquired: from the home directory only, or
/// also from the `OPENCLAW_*` environment for options made by `fromEnvironment()`.
public struct GatewayOptions: Sendable, Equatable {
    /// Which addresses the gateway listens on.
    public enum Bind: Sendable, Equatable {
        /// `127.0.0.1`, plus `[::1]` when it can be had (the default).
        case loopback
        /// `0.0.0.0`; needs a token or a password.
        case lan
        /// A host name or IP address of your choosing.
        case host(String)
    }

    /// What WebSocket clients must present.
    public enum Auth: Sendable, Equatable {
        /// No secret (the default unless the environment sets one).
        case disabled
        case token(String)
        case password(String)
    }

    /// Retrying a taken port (OpenClaw: 20 attempts, 500 ms apart).
    public struct BindRetry: Sendable, Equatable {
        public var attempts: Int
        public var interval: Duration
        public init(attempts: Int, interval: Duration) {
            self.attempts = attempts
            self.interval = interval
        }
    }

    /// 1...65535, or 0 to let the OS pick a free port (see `GatewayLock.port`). Default 18789.
    public var port: Int?
    public var bind: Bind?
    /// Instead of `~/.openclaw`.
    public var stateDirectory: String?
    /// The config path, whose SHA-256 names the config lock.
    public var configPath: String?
    /// Instead of `<state>/tmp/openclaw-<uid>`.
    public var lockDirectory: String?
    /// A named profile (`^[a-z0-9][a-z0-9_-]{0,63}$`): `~/.openclaw-NAME` and its own port.
    public var profile: String?
    /// The `dev` profile on port 19001.
    public var dev: Bool?
    /// Skip the config lock, as `OPENCLAW_ALLOW_MULTI_GATEWAY=1` does.
    public var allowMulti: Bool?
    /// How long acquiring waits for a live holder that does not answer `/healthz` (default 5 s).
    public var timeout: Duration?
    /// How often acquiring looks again while it waits (default 100 ms).
    public var pollInterval: Duration?
    /// How old a lock file without a payload must be to be reclaimed (default 30 s).
    public var staleAfter: Duration?
    /// How often a holder checks that its lock files are still its own (default 60 s).
    public var recheckInterval: Duration?
    public var bindRetry: BindRetry?
    public var auth: Auth?
    /// Cluster mode: one gateway per config across machines, elected in etcd (see
    /// `GatewayCluster`). `nil`: off.
    public var cluster: GatewayCluster?

    /// Resolve what is left unset from the process environment when used (`gw_options_from_env`).
    public private(set) var usesEnvironment = false

    /// The defaults; no `OPENCLAW_*` variable is consulted.
    public init(
        port: Int? = nil, bind: Bind? = nil, stateDirectory: String? = nil,
        configPath: String? = nil, lockDirectory: String? = nil, profile: String? = nil,
        dev: Bool? = nil, allowMulti: Bool? = nil, timeout: Duration? = nil,
        pollInterval: Duration? = nil, staleAfter: Duration? = nil,
        recheckInterval: Duration? = nil, bindRetry: BindRetry? = nil, auth: Auth? = nil,
        cluster: GatewayCluster? = nil
    ) {
        self.port = port
        self.bind = bind
        self.stateDirectory = stateDirectory
        self.configPath = configPath
        self.lockDirectory = lockDirectory
        self.profile = profile
        self.dev = dev
        self.allowMulti = allowMulti
        self.timeout = timeout
        self.pollInterval = pollInterval
        self.staleAfter = staleAfter
        self.recheckInterval = recheckInterval
        self.bindRetry = bindRetry
        self.auth = auth
        self.cluster = cluster
    }

    /// The defaults resolved from the environment as SPEC §1 says (`OPENCLAW_HOME`,
    /// `OPENCLAW_STATE_DIR`, `OPENCLAW_CONFIG_PATH`, `OPENCLAW_GATEWAY_PORT`,
    /// `OPENCLAW_ALLOW_MULTI_GATEWAY`, `OPENCLAW_GATEWAY_TOKEN`, `OPENCLAW_GATEWAY_PASSWORD`);
    /// fields set afterwards override them. Throws `.invalidArgument` naming a bad variable.
    public static func fromEnvironment() throws -> GatewayOptions {
        var options = GatewayOptions()
        options.usesEnvironment = true
        _ = try OptionsHandle(options)  // validates the environment now
        return options
    }
}

/// A `gw_options` made from a `GatewayOptions` for one call, freed with it.
final class OptionsHandle {
    let pointer: OpaquePointer

    /// `log` is handed to the library, which releases it when the options and every lock and
    /// server made with them are gone.
    init(_ options: GatewayOptions, log: (@Sendable (GatewayLogLevel, String) -> Void)? = nil) throws {
        try checkABIVersion()
        guard let pointer = gw_options_new() else { throw GatewayError.last(GW_ERR_PANIC.rawValue) }
        self.pointer = pointer
        // From here on deinit frees the pointer, also when a setter throws.
        if options.usesEnvironment { try check(gw_options_from_env(pointer)) }
        if let log {
            // The library owns this reference from here (also when the call fails) and gives it
            // back through LogBox.free, once.
            try check(gw_options_set_log(
                pointer, LogBox.callback, Unmanaged.passRetained(LogBox(log)).toOpaque(), LogBox.free))
        }
        if let port = options.port { try check(gw_options_set_port(pointer, try uint32(port, "port"))) }
        switch options.bind {
        case nil: break
        case .loopback: try check(gw_options_set_bind_loopback(pointer))
        case .lan: try check(gw_options_set_bind_lan(pointer))
        case .host(let host): try check(gw_options_set_bind_host(pointer, host))
        }
        if let path = options.stateDirectory { try check(gw_options_set_state_dir(pointer, path)) }
        if let path = options.configPath { try check(gw_options_set_config_path(pointer, path)) }
        if let path = options.lockDirectory { try check(gw_options_set_lock_dir(pointer, path)) }
        if let name = options.profile { try check(gw_options_set_profile(pointer, name)) }
        if let dev = options.dev { try check(gw_options_set_dev(pointer, dev)) }
        if let allow = options.allowMulti { try check(gw_options_set_allow_multi(pointer, allow)) }
        if let t = options.timeout {
            try check(gw_options_set_timeout_ms(pointer, try milliseconds(t, "timeout")))
        }
        if let t = options.pollInterval {
            try check(gw_options_set_poll_interval_ms(pointer, try milliseconds(t, "pollInterval")))
        }
        if let t = options.staleAfter {
            try check(gw_options_set_stale_after_ms(pointer, try milliseconds(t, "staleAfter")))
        }
        if let t = options.recheckInterval {
            try check(gw_options_set_recheck_interval_ms(pointer, try milliseconds(t, "recheckInterval")))
        }
        if let retry = options.bindRetry {
            try check(gw_options_set_bind_retry(
                pointer, try uint32(retry.attempts, "bindRetry.attempts"),
                try milliseconds(retry.interval, "bindRetry.interval")))
        }
        switch options.auth {
        case nil: break
        case .disabled: try check(gw_options_set_auth_none(pointer))
        case .token(let token): try check(gw_options_set_auth_token(pointer, token))
        case .password(let password): try check(gw_options_set_auth_password(pointer, password))
        }
        if let cluster = options.cluster { try cluster.apply(to: pointer) }
    }

    deinit { gw_options_free(pointer) }
}

/// A non-negative Int as the C ABI's uint32_t (the library checks narrower ranges itself).
func uint32(_ value: Int, _ name: String) throws -> UInt32 {
    guard let value = UInt32(exactly: value) else {
        throw GatewayError.invalidArgument("\(name) must be between 0 and \(UInt32.max), not \(value)")
    }
    return value
}

/// A duration in whole milliseconds (rounded up) as the C ABI's `uint32_t` or `uint64_t`.
func milliseconds<T: FixedWidthInteger & UnsignedInteger>(_ duration: Duration, _ name: String) throws -> T {
    let (seconds, attoseconds) = duration.components
    let ms = (Double(seconds) * 1000 + Double(attoseconds) / 1e15).rounded(.up)
    guard let value = T(exactly: ms) else {
        throw GatewayError.invalidArgument("\(name) must be between 0 and \(T.max) ms, not \(duration)")
    }
    return value
}
