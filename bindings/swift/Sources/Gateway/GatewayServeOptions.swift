import CGateway

/// How a served gateway runs (SPEC §9): its threads, the WebSocket protocol's limits and
/// policies. A field left `nil` keeps the library's default; the library checks each value
/// when `GatewayServer.serve` is called and throws `.invalidArgument` naming a bad one.
public struct GatewayServeOptions: Sendable, Equatable {
    /// Throttling of wrong credentials per client (address, or browser origin) and credential
    /// class (shared secret, device token, bootstrap token): a client that gives `maxFailures`
    /// wrong ones within `window` is refused for `lockout`.
    public struct AuthThrottle: Sendable, Equatable {
        public var maxFailures: Int
        public var window: Duration
        public var lockout: Duration
        public init(maxFailures: Int, window: Duration, lockout: Duration) {
            self.maxFailures = maxFailures
            self.window = window
            self.lockout = lockout
        }
    }

    /// Threads that run the connections (default: the number of cores, at most 4).
    public var workerThreads: Int?
    /// How long open connections get when the server goes away without `shutdown` (default
    /// 5 s; zero closes them at once).
    public var dropTimeout: Duration?
    /// Origins whose WebSocket clients are allowed besides the loopback ones, which always
    /// are (e.g. `"https://app.example.com"`; `"*"` allows every origin).
    public var allowedOrigins: [String]
    /// A client that sends no valid `connect` within this is closed (default 15 s).
    public var handshakeTimeout: Duration?
    /// How often clients get a `tick` event (default 30 s).
    public var tickInterval: Duration?
    /// A WebSocket ping every interval; a peer silent for a whole interval after one is
    /// dropped (default 30 s).
    public var pingInterval: Duration?
    /// How long a request may wait for its method's answer before the client gets
    /// `UNAVAILABLE` (default 30 s).
    public var requestTimeout: Duration?
    /// WebSocket connections served at once; past it a client is closed with 1013 (default
    /// 10000).
    public var maxConnections: Int?
    /// Bytes a client may send before it is authenticated (default 64 KiB).
    public var maxPreauthPayload: Int?
    /// The largest frame a client may send after the handshake (default 25 MiB).
    public var maxPayload: Int?
    /// Unsent bytes a client may have queued before it is closed as a slow consumer (default
    /// 50 MiB).
    public var maxBufferedBytes: Int?
    /// Default (Node's): 10 wrong credentials per minute lock a client out for five minutes;
    /// a loopback peer without `Origin` is never locked out, only answered late.
    public var authThrottle: AuthThrottle?
    /// `server.version` in `hello-ok` (default the library's version).
    public var serverVersion: String?
    /// Decides pairing requests as they arrive (default: Node's `silent` rule).
    public var pairingPolicy: GatewayPairingPolicy?
    /// Where paired devices and device tokens are kept: an absolute file path (default
    /// `<state dir>/gateway/devices.json`).
    public var pairingStorePath: String?
    /// `server.buildId` in `hello-ok` (at most 96 characters; default none).
    public var buildID: String?
    /// `features.capabilities` in `hello-ok`: the wire contracts the host keeps (default
    /// none). Each is a promise to clients: list only what the host implements.
    public var capabilities: [String]
    /// `capabilities` of the `connect.challenge` event: what the host honours in `connect`
    /// (default none; OpenClaw's `model-catalog-snapshot` only if the host reads `modelCatalog`).
    public var challengeCapabilities: [String]
    /// How often the health snapshot is refreshed and sent as a `health` event, and how old a
    /// cached one may be when `health` answers it (default 60 s).
    public var healthRefreshInterval: Duration?
    /// The host's HTTP routes on the gateway port, tried in this order (default none).
    public var httpRoutes: [GatewayHTTPRoute]
    /// The largest HTTP request head read; past it `431` (default 64 KiB).
    public var httpMaxHeaderBytes: Int?
    /// TCP connections open at once on the port, HTTP and WebSocket alike (default 10240).
    public var httpMaxConnections: Int?
    /// An HTTP request head not complete within this closes the connection (default 30 s).
    public var httpHeaderTimeout: Duration?
    /// A request body silent this long fails its read and the client gets `408` (default 30 s).
    public var httpBodyIdleTimeout: Duration?
    /// `Strict-Transport-Security` on every HTTP response (default none).
    public var strictTransportSecurity: String?
    /// The exact paths where a WebSocket upgrade is accepted (default empty: every path but
    /// OpenClaw's reserved ones, as Node).
    public var webSocketPaths: [String]
    /// OpenClaw's Control UI served on the gateway port (default none).
    public var controlUI: GatewayControlUI?

    /// The defaults.
    public init(
        workerThreads: Int? = nil, dropTimeout: Duration? = nil, allowedOrigins: [String] = [],
        handshakeTimeout: Duration? = nil, tickInterval: Duration? = nil,
        pingInterval: Duration? = nil, requestTimeout: Duration? = nil,
        maxConnections: Int? = nil, maxPreauthPayload: Int? = nil, maxPayload: Int? = nil,
        maxBufferedBytes: Int? = nil, authThrottle: AuthThrottle? = nil,
        serverVersion: String? = nil, pairingPolicy: GatewayPairingPolicy? = nil,
        pairingStorePath: String? = nil, buildID: String? = nil, capabilities: [String] = [],
        challengeCapabilities: [String] = [], healthRefreshInterval: Duration? = nil,
        httpRoutes: [GatewayHTTPRoute] = [], httpMaxHeaderBytes: Int? = nil, httpMaxConnections: Int? = nil,
        httpHeaderTimeout: Duration? = nil, httpBodyIdleTimeout: Duration? = nil,
        strictTransportSecurity: String? = nil, webSocketPaths: [String] = [],
        controlUI: GatewayControlUI? = nil
    ) {
        self.workerThreads = workerThreads
        self.dropTimeout = dropTimeout
        self.allowedOrigins = allowedOrigins
        self.handshakeTimeout = handshakeTimeout
        self.tickInterval = tickInterval
        self.pingInterval = pingInterval
        self.requestTimeout = requestTimeout
        self.maxConnections = maxConnections
        self.maxPreauthPayload = maxPreauthPayload
        self.maxPayload = maxPayload
        self.maxBufferedBytes = maxBufferedBytes
        self.authThrottle = authThrottle
        self.serverVersion = serverVersion
        self.pairingPolicy = pairingPolicy
        self.pairingStorePath = pairingStorePath
        self.buildID = buildID
        self.capabilities = capabilities
        self.challengeCapabilities = challengeCapabilities
        self.healthRefreshInterval = healthRefreshInterval
        self.httpRoutes = httpRoutes
        self.httpMaxHeaderBytes = httpMaxHeaderBytes
        self.httpMaxConnections = httpMaxConnections
        self.httpHeaderTimeout = httpHeaderTimeout
        self.httpBodyIdleTimeout = httpBodyIdleTimeout
        self.strictTransportSecurity = strictTransportSecurity
        self.webSocketPaths = webSocketPaths
        self.controlUI = controlUI
    }

    /// The timeout `deinit` gives `gw_shutdown`: the library's default unless set.
    var dropTimeoutMilliseconds: UInt32 {
        dropTimeout.flatMap { try? milliseconds($0, "dropTimeout") } ?? 5000
    }
}

/// A `gw_serve_options` made from `GatewayServeOptions` for one `gw_serve`, freed with it.
final class ServeOptionsHandle {
    let pointer: OpaquePointer

    init(_ options: GatewayServeOptions) throws {
        guard let pointer = gw_serve_options_new() else { throw GatewayError.last(GW_ERR_PANIC.rawValue) }
        self.pointer = pointer
        // From here on deinit frees the pointer, also when a setter throws.
        if let n = options.workerThreads {
            try check(gw_serve_options_set_worker_threads(pointer, try nonNegative(n, "workerThreads")))
        }
        if let t = options.dropTimeout {
            try check(gw_serve_options_set_drop_timeout_ms(pointer, try milliseconds(t, "dropTimeout")))
        }
        for origin in options.allowedOrigins {
            try check(gw_serve_options_add_allowed_origin(pointer, origin))
        }
        if let t = options.handshakeTimeout {
            try check(gw_serve_options_set_handshake_timeout_ms(pointer, try milliseconds(t, "handshakeTimeout")))
        }
        if let t = options.tickInterval {
            try check(gw_serve_options_set_tick_interval_ms(pointer, try milliseconds(t, "tickInterval")))
        }
        if let t = options.pingInterval {
            try check(gw_serve_options_set_ping_interval_ms(pointer, try milliseconds(t, "pingInterval")))
        }
        if let t = options.requestTimeout {
            try check(gw_serve_options_set_request_timeout_ms(pointer, try milliseconds(t, "requestTimeout")))
        }
        if let n = options.maxConnections {
            try check(gw_serve_options_set_max_connections(pointer, try nonNegative(n, "maxConnections")))
        }
        if let n = options.maxPreauthPayload {
            try check(gw_serve_options_set_max_preauth_payload(pointer, try nonNegative(n, "maxPreauthPayload")))
        }
        if let n = options.maxPayload {
            try check(gw_serve_options_set_max_payload(pointer, try nonNegative(n, "maxPayload")))
        }
        if let n = options.maxBufferedBytes {
            try check(gw_serve_options_set_max_buffered_bytes(pointer, try nonNegative(n, "maxBufferedBytes")))
        }
        if let throttle = options.authThrottle {
            try check(gw_serve_options_set_auth_throttle(
                pointer, try uint32(throttle.maxFailures, "authThrottle.maxFailures"),
                try milliseconds(throttle.window, "authThrottle.window"),
                try milliseconds(throttle.lockout, "authThrottle.lockout")))
        }
        if let version = options.serverVersion {
            try check(gw_serve_options_set_server_version(pointer, version))
        }
        if let policy = options.pairingPolicy {
            // The library owns the retained box from here, whatever the result.
            try check(gw_serve_options_set_pairing_policy(
                pointer, PairingPolicyBox.callback, Unmanaged.passRetained(policy.box).toOpaque(),
                PairingPolicyBox.free))
        }
        if let path = options.pairingStorePath {
            try check(gw_serve_options_set_pairing_store_path(pointer, path))
        }
        if let id = options.buildID {
            try check(gw_serve_options_set_build_id(pointer, id))
        }
        for capability in options.capabilities {
            try check(gw_serve_options_add_capability(pointer, capability))
        }
        for capability in options.challengeCapabilities {
            try check(gw_serve_options_add_challenge_capability(pointer, capability))
        }
        if let t = options.healthRefreshInterval {
            try check(gw_serve_options_set_health_refresh_interval_ms(
                pointer, try milliseconds(t, "healthRefreshInterval")))
        }
        for route in options.httpRoutes {
            try route.add(to: pointer)
        }
        if let n = options.httpMaxHeaderBytes {
            try check(gw_serve_options_set_http_max_header_bytes(pointer, try nonNegative(n, "httpMaxHeaderBytes")))
        }
        if let n = options.httpMaxConnections {
            try check(gw_serve_options_set_http_max_connections(pointer, try nonNegative(n, "httpMaxConnections")))
        }
        if let t = options.httpHeaderTimeout {
            try check(gw_serve_options_set_http_header_timeout_ms(pointer, try milliseconds(t, "httpHeaderTimeout")))
        }
        if let t = options.httpBodyIdleTimeout {
            try check(gw_serve_options_set_http_body_idle_timeout_ms(
                pointer, try milliseconds(t, "httpBodyIdleTimeout")))
        }
        if let value = options.strictTransportSecurity {
            try check(gw_serve_options_set_http_strict_transport_security(pointer, value))
        }
        for path in options.webSocketPaths {
            try check(gw_serve_options_add_websocket_path(pointer, path))
        }
        if let ui = options.controlUI {
            try ui.apply(to: pointer)
        }
    }

    deinit { gw_serve_options_free(pointer) }

    /// Makes `source` produce the health snapshot at each refresh (see
    /// `GatewayServer.serve(healthSource:)`).
    func setHealthSource(_ source: @escaping @Sendable () -> GatewayJSON?) throws {
        // The library owns this reference from here (also when the call fails) and gives it
        // back through HealthBox.free, once.
        try check(gw_serve_options_set_health_source(
            pointer, HealthBox.callback, Unmanaged.passRetained(HealthBox(source)).toOpaque(), HealthBox.free))
    }
}

/// A health source handed to the library, which releases it through `free`.
final class HealthBox: Sendable {
    let source: @Sendable () -> GatewayJSON?

    init(_ source: @escaping @Sendable () -> GatewayJSON?) { self.source = source }

    /// The `gw_health_fn` whose userdata is a retained `HealthBox`.
    static var callback: gw_health_fn {
        { userdata, reply in
            guard let snapshot = Unmanaged<HealthBox>.fromOpaque(userdata!).takeUnretainedValue().source() else {
                return
            }
            var text = snapshot.text
            // Not JSON: the reply stays empty, so the previous snapshot is kept.
            _ = text.withUTF8 { bytes in
                bytes.withMemoryRebound(to: CChar.self) { gw_health_reply_set(reply, $0.baseAddress, $0.count) }
            }
        }
    }

    /// The finalizer that releases it.
    static var free: @convention(c) (UnsafeMutableRawPointer?) -> Void {
        { userdata in Unmanaged<HealthBox>.fromOpaque(userdata!).release() }
    }
}

/// A count or size as the C ABI's `size_t` (which Swift sees as `Int`): never negative.
func nonNegative(_ value: Int, _ name: String) throws -> Int {
    guard value >= 0 else {
        throw GatewayError.invalidArgument("\(name) is \(value): give it a positive value (or leave it nil for the default)")
    }
    return value
}
