import Foundation
import Synchronization
import XCTest

#if canImport(Glibc)
import Glibc
let streamSocket = Int32(SOCK_STREAM.rawValue)
#else
import Darwin
let streamSocket = SOCK_STREAM
#endif

/// A fresh state dir (and so a fresh config path and lock dir) for one test.
func temporaryStateDirectory() throws -> String {
    var template = Array((NSTemporaryDirectory() + "/gateway-swift-XXXXXX").utf8CString)
    guard let made = mkdtemp(&template) else { throw POSIXError(.EIO) }
    // The library canonicalises the state dir; so do we, to find the lock dir.
    return URL(fileURLWithPath: String(cString: made)).resolvingSymlinksInPath().path
}

/// `<state>/tmp/openclaw-<uid>`, where the lock files live by default.
func lockDirectory(of stateDirectory: String) -> String {
    "\(stateDirectory)/tmp/openclaw-\(getuid())"
}

/// The lock files left in a lock dir.
func lockFiles(in directory: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
        .filter { !$0.hasPrefix(".") }
}

/// A connected TCP socket to 127.0.0.1:port, with 5 s send and receive timeouts.
func connectLoopback(port: Int) throws -> Int32 {
    let fd = socket(AF_INET, streamSocket, 0)
    guard fd >= 0 else { throw POSIXError(.EIO) }
    var timeout = timeval(tv_sec: 5, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var address = loopbackAddress(port: port)
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
    guard connected == 0 else {
        let code = errno
        close(fd)
        throw POSIXError(POSIXErrorCode(rawValue: code) ?? .EIO)
    }
    return fd
}

func loopbackAddress(port: Int) -> sockaddr_in {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    return address
}

func sendAll(_ fd: Int32, _ bytes: [UInt8]) throws {
    var sent = 0
    while sent < bytes.count {
        let n = bytes[sent...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { throw POSIXError(.EPIPE) }
        sent += n
    }
}

/// Reads exactly `count` bytes (or throws at EOF / timeout).
func receiveExactly(_ fd: Int32, count: Int) throws -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: count)
    var got = 0
    while got < count {
        let n = bytes[got...].withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { throw POSIXError(.ECONNRESET) }
        got += n
    }
    return bytes
}

/// GET over a raw socket (URLSession needs FoundationNetworking and libcurl on Linux; a
/// socket needs nothing): the status code and the body.
func httpGet(port: Int, path: String) throws -> (status: Int, body: String) {
    let fd = try connectLoopback(port: port)
    defer { close(fd) }
    try sendAll(fd, Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n\r\n".utf8))
    var response = [UInt8]()
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n <= 0 { break }
        response += buffer[..<n]
    }
    let text = String(decoding: response, as: UTF8.self)
    let statusLine = text.split(separator: "\r\n", maxSplits: 1).first ?? ""
    let status = statusLine.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
    let body = text.components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n")
    return (status, body)
}

/// Whether anyone could bind 127.0.0.1:port now (with SO_REUSEADDR, as servers do).
func canBind(port: Int) -> Bool {
    let fd = socket(AF_INET, streamSocket, 0)
    defer { close(fd) }
    var on: Int32 = 1
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, socklen_t(MemoryLayout<Int32>.size))
    var address = loopbackAddress(port: port)
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
        }
    }
}

/// Waits up to `seconds` for `condition` (for what the library does "soon after" a call).
func eventually(seconds: Double = 2, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while !condition() {
        if Date() > deadline { return false }
        usleep(10_000)
    }
    return true
}

/// Collects what library threads report.
final class Recorder<T: Sendable>: Sendable {
    private let items = Mutex<[T]>([])
    func append(_ item: T) { items.withLock { $0.append(item) } }
    var all: [T] { items.withLock { $0 } }
}

/// Something to own from a closure, to see when the closure is released.
final class Sentinel: Sendable {}

/// A TCP socket bound to 127.0.0.1 on a port the OS picks, listening (as systemd or launchd
/// would pass one in), and that port. With SO_REUSEADDR, as servers bind, so that the
/// connections it accepted and the server closed first (TIME_WAIT) do not keep `canBind` false.
func listeningSocket() throws -> (fd: Int32, port: Int) {
    let fd = socket(AF_INET, streamSocket, 0)
    guard fd >= 0 else { throw POSIXError(.EIO) }
    var on: Int32 = 1
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, socklen_t(MemoryLayout<Int32>.size))
    var address = loopbackAddress(port: 0)
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let named = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    guard bound == 0, named == 0, listen(fd, 16) == 0 else {
        let code = errno
        close(fd)
        throw POSIXError(POSIXErrorCode(rawValue: code) ?? .EIO)
    }
    return (fd, Int(UInt16(bigEndian: address.sin_port)))
}
