import CGateway

/// A failed gateway call: one case per `gw_result` of include/gateway.h (named as the result
/// is, `GW_ERR_LOCK_IO` → `lockIO`), each carrying the library's exact message (SPEC wording, e.g. `gateway already running (pid 4242); ...`).
public enum GatewayError: Error, Equatable, Sendable, CustomStringConvertible {
    /// `GW_ERR_NULL_ARGUMENT`: a handle was missing (e.g. a lock already served or released).
    case nullArgument(String)
    /// `GW_ERR_INVALID_ARGUMENT`: a bad option or environment variable; the message names it.
    case invalidArgument(String)
    /// `GW_ERR_ALREADY_RUNNING`: a live gateway holds the lock. `pid` is the holder's and
    /// `port` the one its lock file records, each `nil` when the library does not know it
    /// (`gw_last_error_holder` gives 0 for it, e.g. for a lock file that records no port).
    case alreadyRunning(pid: Int32?, port: Int?, message: String)
    /// `GW_ERR_ADDR_IN_USE`: the port is taken.
    case addrInUse(String)
    /// `GW_ERR_BIND`: binding or listening failed for another reason.
    case bind(String)
    /// `GW_ERR_LOCK_IO`: reading, creating or removing a lock file failed.
    case lockIO(String)
    /// `GW_ERR_LOCK_DIR_UNSAFE`: the lock directory is a symlink, someone else's, or open.
    case lockDirUnsafe(String)
    /// `GW_ERR_TIMEOUT`: shutdown cut off connections (the port is free and the lock released).
    case timeout(String)
    /// `GW_ERR_RUNTIME`: the server could not start.
    case runtime(String)
    /// `GW_ERR_PANIC`: a bug in the library; the call did nothing else.
    case panic(String)
    /// `GW_ERR_LOCK_FILE_UNSAFE`: a lock path is not a regular file.
    case lockFileUnsafe(String)
    /// `GW_ERR_LOCK_LOST`: a lock file was deleted or replaced while held.
    case lockLost(String)
    /// `GW_ERR_NOT_FOUND`: the request or connection named is gone (answered, timed out, closed).
    case notFound(String)
    /// `GW_ERR_HTTP_BODY`: a request body could not be read (past the route's limit, the client
    /// went quiet or away, the server stopped).
    case httpBody(String)
    /// `GW_ERR_WRONG_THREAD`: a call that waits was made on a gateway worker thread.
    case wrongThread(String)
    /// `GW_ERR_HELD_BY_OTHER_HOST`: the lock file records a gateway on another machine; it is
    /// never reclaimed here. `host` is its host name as recorded (`gw_last_error_holder_host`),
    /// `pid` and `port` its own (`nil` when unknown). The pid is that machine's: never signal it
    /// here. If that gateway is gone, `GatewayLock.unlock(_:force: true)` removes its lock.
    case heldByOtherHost(host: String, pid: Int32?, port: Int?, message: String)
    /// `GW_ERR_CLUSTER_LEADER`: cluster mode, and another gateway leads the cluster (this one
    /// was not asked to stand by, or its wait ran out). `host`, `pid` and `port` are the
    /// leader's (the pid is that machine's); the message also gives its fencing token.
    case clusterLeader(host: String, pid: Int32?, port: Int?, message: String)
    /// `GW_ERR_CLUSTER_UNAVAILABLE`: the cluster's store (etcd) did not answer or refused; the
    /// message names the endpoints and what the client saw. Nothing is held.
    case clusterUnavailable(String)
    /// `GW_ERR_LEADERSHIP_LOST`: this gateway stopped serving as its cluster's leader (a served
    /// gateway reports it as `GatewayStateChange.leadershipLost`).
    case leadershipLost(String)
    /// `GW_ERR_CANCELLED`: a standby's wait was cancelled (`GatewayCancel`); nothing is held.
    case cancelled(String)
    /// A result this wrapper does not know (a newer library); `code` is its number.
    case unknown(code: UInt32, message: String)
    /// The library implements another C ABI than this wrapper was written for.
    case abiMismatch(expected: UInt32, found: UInt32)

    /// The error for a `gw_result` other than `GW_OK`, with its message (and no holder).
    public init(code: UInt32, message: String) {
        switch code {
        case GW_ERR_NULL_ARGUMENT.rawValue: self = .nullArgument(message)
        case GW_ERR_INVALID_ARGUMENT.rawValue: self = .invalidArgument(message)
        case GW_ERR_ALREADY_RUNNING.rawValue: self = .alreadyRunning(pid: nil, port: nil, message: message)
        case GW_ERR_ADDR_IN_USE.rawValue: self = .addrInUse(message)
        case GW_ERR_BIND.rawValue: self = .bind(message)
        case GW_ERR_LOCK_IO.rawValue: self = .lockIO(message)
        case GW_ERR_LOCK_DIR_UNSAFE.rawValue: self = .lockDirUnsafe(message)
        case GW_ERR_TIMEOUT.rawValue: self = .timeout(message)
        case GW_ERR_RUNTIME.rawValue: self = .runtime(message)
        case GW_ERR_PANIC.rawValue: self = .panic(message)
        case GW_ERR_LOCK_FILE_UNSAFE.rawValue: self = .lockFileUnsafe(message)
        case GW_ERR_LOCK_LOST.rawValue: self = .lockLost(message)
        case GW_ERR_NOT_FOUND.rawValue: self = .notFound(message)
        case GW_ERR_HTTP_BODY.rawValue: self = .httpBody(message)
        case GW_ERR_WRONG_THREAD.rawValue: self = .wrongThread(message)
        case GW_ERR_HELD_BY_OTHER_HOST.rawValue: self = .heldByOtherHost(host: "", pid: nil, port: nil, message: message)
        case GW_ERR_CLUSTER_LEADER.rawValue: self = .clusterLeader(host: "", pid: nil, port: nil, message: message)
        case GW_ERR_CLUSTER_UNAVAILABLE.rawValue: self = .clusterUnavailable(message)
        case GW_ERR_LEADERSHIP_LOST.rawValue: self = .leadershipLost(message)
        case GW_ERR_CANCELLED.rawValue: self = .cancelled(message)
        default: self = .unknown(code: code, message: message)
        }
    }

    /// The `gw_result` number (`GW_OK`, 0, for `abiMismatch`, which is the wrapper's own).
    public var code: UInt32 {
        switch self {
        case .nullArgument: GW_ERR_NULL_ARGUMENT.rawValue
        case .invalidArgument: GW_ERR_INVALID_ARGUMENT.rawValue
        case .alreadyRunning: GW_ERR_ALREADY_RUNNING.rawValue
        case .addrInUse: GW_ERR_ADDR_IN_USE.rawValue
        case .bind: GW_ERR_BIND.rawValue
        case .lockIO: GW_ERR_LOCK_IO.rawValue
        case .lockDirUnsafe: GW_ERR_LOCK_DIR_UNSAFE.rawValue
        case .timeout: GW_ERR_TIMEOUT.rawValue
        case .runtime: GW_ERR_RUNTIME.rawValue
        case .panic: GW_ERR_PANIC.rawValue
        case .lockFileUnsafe: GW_ERR_LOCK_FILE_UNSAFE.rawValue
        case .lockLost: GW_ERR_LOCK_LOST.rawValue
        case .notFound: GW_ERR_NOT_FOUND.rawValue
        case .httpBody: GW_ERR_HTTP_BODY.rawValue
        case .wrongThread: GW_ERR_WRONG_THREAD.rawValue
        case .heldByOtherHost: GW_ERR_HELD_BY_OTHER_HOST.rawValue
        case .clusterLeader: GW_ERR_CLUSTER_LEADER.rawValue
        case .clusterUnavailable: GW_ERR_CLUSTER_UNAVAILABLE.rawValue
        case .leadershipLost: GW_ERR_LEADERSHIP_LOST.rawValue
        case .cancelled: GW_ERR_CANCELLED.rawValue
        case .unknown(let code, _): code
        case .abiMismatch: GW_OK.rawValue
        }
    }

    /// The library's message.
    public var message: String {
        switch self {
        case .nullArgument(let m), .invalidArgument(let m), .addrInUse(let m), .bind(let m),
            .lockIO(let m), .lockDirUnsafe(let m), .timeout(let m), .runtime(let m),
            .panic(let m), .lockFileUnsafe(let m), .lockLost(let m), .notFound(let m),
            .httpBody(let m), .wrongThread(let m), .clusterUnavailable(let m), .leadershipLost(let m),
            .cancelled(let m):
            return m
        case .alreadyRunning(_, _, let m), .heldByOtherHost(_, _, _, let m), .clusterLeader(_, _, _, let m),
            .unknown(_, let m):
            return m
        case .abiMismatch(let expected, let found):
            return "the gateway library implements C ABI \(found), this Swift wrapper needs \(expected)"
        }
    }

    public var description: String { message }

    /// The calling thread's last failure, as an error, with the holder it named. Call it right
    /// after the failed call, on the same thread.
    static func last(_ code: UInt32) -> GatewayError {
        let error = GatewayError(code: code, message: String(cString: gw_last_error_message()))
        var pid: UInt32 = 0
        var port: UInt16 = 0
        guard gw_last_error_holder(&pid, &port) == GW_OK.rawValue else { return error }
        // 0 is "unknown" for either.
        let holderPid = pid == 0 ? nil : Int32(bitPattern: pid)
        let holderPort = port == 0 ? nil : Int(port)
        switch error {
        case .alreadyRunning(_, _, let message):
            return .alreadyRunning(pid: holderPid, port: holderPort, message: message)
        case .heldByOtherHost(_, _, _, let message):
            return .heldByOtherHost(
                host: String(cString: gw_last_error_holder_host()), pid: holderPid, port: holderPort,
                message: message)
        case .clusterLeader(_, _, _, let message):
            return .clusterLeader(
                host: String(cString: gw_last_error_holder_host()), pid: holderPid, port: holderPort,
                message: message)
        default:
            return error
        }
    }
}

/// Throws the error for `code` unless it is `GW_OK`.
@inline(__always)
func check(_ code: UInt32) throws {
    if code != GW_OK.rawValue { throw GatewayError.last(code) }
}
