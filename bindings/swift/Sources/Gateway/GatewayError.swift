import CGateway

/// A failed gateway call: one case per `gw_result` of include/gateway.h, each carrying the
/// library's exact message (SPEC wording, e.g. `gateway already running (pid 4242); ...`).
public enum GatewayError: Error, Equatable, Sendable, CustomStringConvertible {
    /// `GW_ERR_NULL_ARGUMENT`: a handle was missing (e.g. a lock already served or released).
    case nullArgument(String)
    /// `GW_ERR_INVALID_ARGUMENT`: a bad option or environment variable; the message names it.
    case invalidArgument(String)
    /// `GW_ERR_ALREADY_RUNNING`: a live gateway holds the lock; `pid` is the holder's, when known.
    case alreadyRunning(pid: Int32?, message: String)
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
    /// A result this wrapper does not know (a newer library); `code` is its number.
    case unknown(code: UInt32, message: String)
    /// The library implements another C ABI than this wrapper was written for.
    case abiMismatch(expected: UInt32, found: UInt32)

    /// The error for a `gw_result` other than `GW_OK`, with its message.
    public init(code: UInt32, message: String) {
        switch code {
        case 1: self = .nullArgument(message)
        case 2: self = .invalidArgument(message)
        case 3: self = .alreadyRunning(pid: Self.holderPid(in: message), message: message)
        case 4: self = .addrInUse(message)
        case 5: self = .bind(message)
        case 6: self = .lockIO(message)
        case 7: self = .lockDirUnsafe(message)
        case 8: self = .timeout(message)
        case 9: self = .runtime(message)
        case 10: self = .panic(message)
        case 11: self = .lockFileUnsafe(message)
        case 12: self = .lockLost(message)
        case 13: self = .notFound(message)
        default: self = .unknown(code: code, message: message)
        }
    }

    /// The `gw_result` number (0 for `abiMismatch`, which is the wrapper's own).
    public var code: UInt32 {
        switch self {
        case .nullArgument: return 1
        case .invalidArgument: return 2
        case .alreadyRunning: return 3
        case .addrInUse: return 4
        case .bind: return 5
        case .lockIO: return 6
        case .lockDirUnsafe: return 7
        case .timeout: return 8
        case .runtime: return 9
        case .panic: return 10
        case .lockFileUnsafe: return 11
        case .lockLost: return 12
        case .notFound: return 13
        case .unknown(let code, _): return code
        case .abiMismatch: return 0
        }
    }

    /// The library's message.
    public var message: String {
        switch self {
        case .nullArgument(let m), .invalidArgument(let m), .addrInUse(let m), .bind(let m),
            .lockIO(let m), .lockDirUnsafe(let m), .timeout(let m), .runtime(let m),
            .panic(let m), .lockFileUnsafe(let m), .lockLost(let m), .notFound(let m):
            return m
        case .alreadyRunning(_, let m), .unknown(_, let m):
            return m
        case .abiMismatch(let expected, let found):
            return "the gateway library implements C ABI \(found), this Swift wrapper needs \(expected)"
        }
    }

    public var description: String { message }

    /// The calling thread's last failure, as an error. Call it right after the failed call,
    /// on the same thread.
    static func last(_ code: UInt32) -> GatewayError {
        GatewayError(code: code, message: String(cString: gw_last_error_message()))
    }

    /// "gateway already running (pid 4242); ..." → 4242: the SPEC's wording names the holder so.
    private static func holderPid(in message: String) -> Int32? {
        guard let start = message.range(of: "(pid ") else { return nil }
        let digits = message[start.upperBound...].prefix(while: { $0.isNumber })
        return Int32(digits)
    }
}

/// Throws the error for `code` unless it is `GW_OK`.
@inline(__always)
func check(_ code: UInt32) throws {
    if code != 0 { throw GatewayError.last(code) }
}
