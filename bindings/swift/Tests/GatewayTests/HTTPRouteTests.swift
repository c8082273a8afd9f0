import Foundation
import Synchronization
import XCTest

@testable import Gateway

#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// What a server sent for one request: its status, head and body (de-chunked), and whether the
/// body ended as HTTP says (the final chunk, or all of `content-length`).
struct HTTPReply {
    var status = 0
    var head = ""
    var body = [UInt8]()
    var chunked = false
    var complete = false

    var text: String { String(decoding: body, as: UTF8.self) }
}

/// One request on its own connection (`Connection: close`), read to the end.
func httpRequest(port: Int, _ head: String, body: [UInt8] = []) throws -> HTTPReply {
    let fd = try connectLoopback(port: port)
    defer { close(fd) }
    var timeout = timeval(tv_sec: 30, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    try sendAll(fd, Array("\(head)\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8) + body)
    var raw = [UInt8]()
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n <= 0 { break }
        raw += buffer[..<n]
    }
    return parseReply(raw)
}

func parseReply(_ raw: [UInt8]) -> HTTPReply {
    var reply = HTTPReply()
    let separator = Array("\r\n\r\n".utf8)
    guard let end = (0...max(0, raw.count - 4)).first(where: { raw.count >= 4 && Array(raw[$0..<$0 + 4]) == separator })
    else { return reply }
    reply.head = String(decoding: raw[..<end], as: UTF8.self)
    reply.status = Int(reply.head.split(separator: " ").dropFirst().first ?? "") ?? 0
    let lower = reply.head.lowercased()
    var rest = Array(raw[(end + 4)...])
    reply.chunked = lower.contains("\r\ntransfer-encoding: chunked")
    guard reply.chunked else {
        reply.body = rest
        reply.complete = lower.contains("\r\ncontent-length: \(rest.count)")
        return reply
    }
    while let lineEnd = (0..<max(0, rest.count - 1)).first(where: { rest[$0] == 13 && rest[$0 + 1] == 10 }) {
        let size = Int(String(decoding: rest[..<lineEnd], as: UTF8.self), radix: 16) ?? 0
        rest.removeFirst(lineEnd + 2)
        if size == 0 {
            reply.complete = true
            break
        }
        guard rest.count >= size + 2 else { break }
        reply.body += rest[..<size]
        rest.removeFirst(size + 2)
    }
    return reply
}

/// Host routes from Swift against a real HTTP client over TCP: closures answering whole or
/// streamed, a body read in a loop, an unanswered exchange answered 500, bad routes refused.
final class HTTPRouteTests: XCTestCase {
    func serve(_ routes: [GatewayHTTPRoute]) throws -> GatewayServer {
        let lockOptions = GatewayOptions(port: 0, stateDirectory: try temporaryStateDirectory())
        return try GatewayServer.serve(
            lock: GatewayLock.acquire(lockOptions), options: GatewayServeOptions(httpRoutes: routes))
    }

    func testARouteAnswersWholeWithWhatTheRequestCarried() throws {
        let server = try serve([
            GatewayHTTPRoute("GET", "/hello") { exchange in
                let text = "\(exchange.method) \(exchange.path) \(exchange.query) "
                    + "\(exchange.header("X-Name") ?? "-") \(exchange.headers["x-name"] ?? "-") "
                    + "\(exchange.peer.hasPrefix("127.0.0.1:")) \(exchange.authenticated)"
                try exchange.respond(status: 201, headers: ["content-type": "text/plain", "x-route": "hello"], text: text)
                XCTAssertThrowsError(try exchange.respond(status: 200, text: "again")) {
                    guard case .notFound = $0 as? GatewayError else { return XCTFail("\($0)") }
                }
            }
        ])
        let reply = try httpRequest(port: server.port, "GET /hello?a=1 HTTP/1.1\r\nX-Name: swift")
        XCTAssertEqual(reply.status, 201, reply.head)
        XCTAssertEqual(reply.text, "GET /hello a=1 swift swift true false")
        XCTAssertTrue(reply.complete)
        XCTAssertTrue(reply.head.lowercased().contains("\r\nx-route: hello"), reply.head)
    }

    func testAnUploadIsReadInALoopAndAnAnswerStreamed() throws {
        let reads = Atomic<Int>(0)
        let server = try serve([
            GatewayHTTPRoute("POST", "/upload", prefix: true, maxBodyBytes: 8 << 20) { exchange in
                var total = 0
                var sum = 0
                while case let chunk = try exchange.read(), !chunk.isEmpty {
                    reads.add(1, ordering: .relaxed)
                    total += chunk.count
                    sum = chunk.reduce(sum) { ($0 + Int($1)) % 65521 }
                }
                try exchange.start(status: 200, headers: ["content-type": "text/event-stream"])
                for event in ["bytes=\(total)", "sum=\(sum)", "path=\(exchange.path)"] {
                    try exchange.write("data: \(event)\n\n")
                }
                try exchange.finish()
            }
        ])
        let upload = (0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let sum = upload.reduce(0) { ($0 + Int($1)) % 65521 }
        let reply = try httpRequest(
            port: server.port, "POST /upload/big HTTP/1.1\r\nContent-Length: \(upload.count)", body: upload)
        XCTAssertEqual(reply.status, 200, reply.head)
        XCTAssertTrue(reply.chunked && reply.complete, reply.head)
        XCTAssertEqual(reply.text, "data: bytes=\(upload.count)\n\ndata: sum=\(sum)\n\ndata: path=/upload/big\n\n")
        XCTAssertGreaterThan(reads.load(ordering: .relaxed), 1, "the body came in one read")
    }

    func testAnUnansweredExchangeIsAnswered500AndALargeBodyRefused() throws {
        let failure = Mutex<GatewayError?>(nil)
        let server = try serve([
            GatewayHTTPRoute(nil, "/silent") { _ in },
            GatewayHTTPRoute("POST", "/small", maxBodyBytes: 4) { exchange in
                do {
                    _ = try exchange.readAll()
                } catch let error as GatewayError {
                    failure.withLock { $0 = error }
                    try? exchange.respond(status: 413, text: "too large")
                }
            },
        ])
        XCTAssertEqual(try httpRequest(port: server.port, "DELETE /silent HTTP/1.1").status, 500)
        // Chunked, so that only reading finds it too large.
        let body = Array("4\r\nabcd\r\n4\r\nefgh\r\n0\r\n\r\n".utf8)
        let reply = try httpRequest(port: server.port, "POST /small HTTP/1.1\r\nTransfer-Encoding: chunked", body: body)
        XCTAssertEqual(reply.status, 413)
        guard case .httpBody(let message) = failure.withLock({ $0 }) else {
            return XCTFail("the read did not throw .httpBody: \(String(describing: failure.withLock { $0 }))")
        }
        XCTAssertTrue(message.contains("limit of 4 bytes"), message)
    }

    func testTheHTTPOptionsReachTheServer() throws {
        let root = try temporaryStateDirectory()
        try "<!doctype html><title>swift-ui</title>\n".write(
            toFile: root + "/index.html", atomically: true, encoding: .utf8)
        let options = GatewayServeOptions(
            httpRoutes: [GatewayHTTPRoute("GET", "/ping") { try $0.respond(status: 200, text: "pong") }],
            httpMaxHeaderBytes: 32768, httpHeaderTimeout: .seconds(30), httpBodyIdleTimeout: .seconds(30),
            strictTransportSecurity: "max-age=60", webSocketPaths: ["/ws"],
            controlUI: GatewayControlUI(
                root: root, basePath: "/openclaw", config: GatewayJSON(raw: #"{"assistantName":"Swift host"}"#),
                environment: GatewayJSON(raw: #"{"name":"test"}"#)))
        let lockOptions = GatewayOptions(port: 0, stateDirectory: try temporaryStateDirectory())
        let server = try GatewayServer.serve(lock: GatewayLock.acquire(lockOptions), options: options)
        let ping = try httpRequest(port: server.port, "GET /ping HTTP/1.1")
        XCTAssertEqual(ping.text, "pong")
        XCTAssertTrue(ping.head.lowercased().contains("\r\nstrict-transport-security: max-age=60"), ping.head)
        let upgrade = "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13"
        XCTAssertEqual(try httpRequest(port: server.port, "GET / HTTP/1.1" + upgrade).status, 404)

        // A directory without index.html is no UI: serve refuses it, naming what is missing.
        let bad = GatewayServeOptions(controlUI: GatewayControlUI(
            root: try temporaryStateDirectory(), basePath: "openclaw/"))
        XCTAssertThrowsError(try GatewayServer.serve(lock: GatewayLock.acquire(
            GatewayOptions(port: 0, stateDirectory: try temporaryStateDirectory())), options: bad)) {
            guard case .invalidArgument(let message) = $0 as? GatewayError else { return XCTFail("\($0)") }
            XCTAssertTrue(message.contains("index.html"), message)
        }
    }

    func testBadRoutesAreRefusedWithTheLibrarysReason() throws {
        let lockOptions = GatewayOptions(port: 0, stateDirectory: try temporaryStateDirectory())
        let cases: [(GatewayHTTPRoute, String)] = [
            (GatewayHTTPRoute("GET", "relative") { _ in }, "does not start with '/'"),
            (GatewayHTTPRoute("GET", "/zero", maxBodyBytes: 0) { _ in }, "max_body_bytes is 0"),
            (GatewayHTTPRoute("NOT A METHOD", "/x") { _ in }, "is not an HTTP method"),
        ]
        for (route, expected) in cases {
            XCTAssertThrowsError(try GatewayServer.serve(
                lock: GatewayLock.acquire(lockOptions), options: GatewayServeOptions(httpRoutes: [route]))
            ) {
                guard case .invalidArgument(let message) = $0 as? GatewayError else { return XCTFail("\($0)") }
                XCTAssertTrue(message.contains(expected), message)
            }
        }
    }
}
