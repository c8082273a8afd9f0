import CGateway

/// Cluster mode's settings (`GatewayOptions.cluster`): after the local lock, acquiring
/// campaigns for the cluster's leadership in etcd; only the leader binds and serves, the others
/// stand by (or fail at once, naming the leader).
public struct GatewayCluster: Sendable, Equatable {
    /// How long `GatewayLock.acquire` stands by while another gateway leads.
    public enum Wait: Sendable, Equatable {
        /// Throw `.clusterLeader` at once, naming the leader (the default).
        case failAtOnce
        /// Stand by up to this long (whole milliseconds, at least 1), then throw
        /// `.clusterLeader`.
        case upTo(Duration)
        /// Stand by until this gateway leads (end it with a `GatewayCancel`).
        case forever
    }

    /// The etcd members' client URLs, e.g. `http://10.0.0.2:2379`.
    public var endpoints: [String]
    /// Gateways with the same name (and store) elect one leader. Default: from the config
    /// path; give one when the machines keep their configs at different paths.
    public var name: String?
    /// The lease's TTL: whole seconds, at least 2 s (default 5 s). A leader that dies is
    /// replaced about this long after.
    public var ttl: Duration?
    public var wait: Wait
    /// Ends a standby's wait from another task or thread.
    public var cancel: GatewayCancel?

    public init(
        etcd endpoints: [String], name: String? = nil, ttl: Duration? = nil, wait: Wait = .failAtOnce,
        cancel: GatewayCancel? = nil
    ) {
        self.endpoints = endpoints
        self.name = name
        self.ttl = ttl
        self.wait = wait
        self.cancel = cancel
    }

    func apply(to pointer: OpaquePointer) throws {
        try check(gw_options_set_cluster_etcd(pointer, endpoints.joined(separator: ",")))
        if let name { try check(gw_options_set_cluster_name(pointer, name)) }
        if let ttl { try check(gw_options_set_cluster_ttl_ms(pointer, try milliseconds(ttl, "cluster.ttl"))) }
        switch wait {
        case .failAtOnce: try check(gw_options_set_cluster_wait_ms(pointer, UInt32(GW_CLUSTER_FAIL_AT_ONCE)))
        case .forever: try check(gw_options_set_cluster_wait_ms(pointer, UInt32.max))
        case .upTo(let limit):
            // Shorter than "for ever" by construction: the longest finite wait is one ms less.
            let ms: UInt32 = try milliseconds(limit, "cluster.wait")
            try check(gw_options_set_cluster_wait_ms(pointer, max(1, min(ms, UInt32.max - 1))))
        }
        if let cancel { try check(gw_options_set_cluster_cancel(pointer, cancel.pointer)) }
    }
}

/// Ends a cluster standby's wait (`gw_cancel`): set it as `GatewayCluster.cancel`, then call
/// `cancel()` from any task or thread while `GatewayLock.acquire` stands by, which then throws
/// `.cancelled`. Once cancelled it stays so: every later acquire with it throws at once (use a
/// new one to stand by again).
public final class GatewayCancel: @unchecked Sendable, Equatable {
    // @unchecked: gw_cancel_trigger is safe from any thread at once (include/gateway.h), and
    // the pointer never changes.
    let pointer: OpaquePointer

    public init() {
        // NULL only on a panic in the library, which allocates nothing else here.
        pointer = gw_cancel_new()!
    }

    deinit { gw_cancel_free(pointer) }

    /// Cancels: a standby's wait ends with `.cancelled` within about 250 ms.
    public func cancel() {
        _ = gw_cancel_trigger(pointer)
    }

    public static func == (lhs: GatewayCancel, rhs: GatewayCancel) -> Bool { lhs === rhs }
}

/// The gateway that leads a cluster, as its claim in the store says
/// (`GatewayLock.clusterLeader`).
public struct GatewayClusterLeader: Sendable, Equatable {
    /// Its host name (else its machine id's hash).
    public var host: String
    /// Its pid on its own machine: never signal it here unless `host` is this machine.
    public var pid: Int32
    /// The port it serves on, `nil` when unknown.
    public var port: Int?
    /// The store revision at which it took the cluster key.
    public var fencingToken: UInt64
    /// When it became leader, in milliseconds since the Unix epoch (its own clock).
    public var sinceMilliseconds: UInt64
}
