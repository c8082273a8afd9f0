import Foundation
import XCTest

@testable import Gateway

/// A minimal WebSocket client over a raw socket (RFC 6455: masked text frames out, unmasked
/// frames in): URLSessionWebSocketTask is not dependable in swift-corelibs-foundation.
final class WebSocketClient {
    let fd: Int32

    /// Upgrades a connection to 127.0.0.1:port, with `headers` added to the request.
    init(port: Int, headers: [String: String] = [:]) throws {
        fd = try connectLoopback(port: port)
        let key = Data((0..<16).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        let extra = headers.map { "\($0.key): \($0.value)\r\n" }.joined()
        try sendAll(fd, Array(("GET / HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nUpgrade: websocket\r\n"
            + "Connection: Upgrade\r\nSec-WebSocket-Key: \(key)\r\nSec-WebSocket-Version: 13\r\n"
            + extra + "\r\n").utf8))
        var head = [UInt8]()
        while !head.suffix(4).elementsEqual(Array("\r\n\r\n".utf8)) { head += try receiveExactly(fd, count: 1) }
        let status = String(decoding: head, as: UTF8.self)
        guard status.hasPrefix("HTTP/1.1 101") else {
            close(fd)
            throw GatewayMethodError(code: "HANDSHAKE", message: status)
        }
    }

    deinit { close(fd) }

    func send(_ object: [String: Any]) throws {
        let payload = [UInt8](try JSONSerialization.data(withJSONObject: object))
        var frame: [UInt8] = [0x81]  // FIN, text
        let count = payload.count
        let lengthBytes: [Int]
        switch count {
        case ..<126: lengthBytes = []
        case ..<65536: lengthBytes = [count >> 8, count]
        default: lengthBytes = (0..<8).reversed().map { count >> ($0 * 8) }
        }
        let marker: UInt8 = count < 126 ? UInt8(count) : lengthBytes.count == 2 ? 126 : 127
        frame.append(0x80 | marker)  // masked, as every client frame must be
        frame += lengthBytes.map { UInt8(truncatingIfNeeded: $0) }
        let mask: [UInt8] = (0..<4).map { _ in UInt8.random(in: 0...255) }
        frame += mask
        for (index, byte) in payload.enumerated() { frame.append(byte ^ mask[index % 4]) }
        try sendAll(fd, frame)
    }

    /// The next text frame, as a JSON object (pings and other control frames are skipped).
    func receive() throws -> [String: Any] {
        while true {
            let head = try bytes(2)
            var length = Int(head[1] & 0x7F)
            if length == 126 { length = try bytes(2).reduce(0) { $0 << 8 | Int($1) } }
            if length == 127 { length = try bytes(8).reduce(0) { $0 << 8 | Int($1) } }
            let payload = try bytes(length)
            switch head[0] & 0x0F {
            case 1:
                return try JSONSerialization.jsonObject(with: Data(payload)) as! [String: Any]
            case 8:  // close: "<code> <reason>"
                let code = payload.count >= 2 ? Int(payload[0]) << 8 | Int(payload[1]) : 1005
                let reason = String(decoding: payload.dropFirst(2), as: UTF8.self)
                throw GatewayMethodError(code: "CLOSED", message: "\(code) \(reason)")
            default:
                continue
            }
        }
    }

    /// Waits for the challenge and sends `connect` (no secret) with `scopes`; the `res`.
    func connect(scopes: [String] = ["operator.read"]) throws -> [String: Any] {
        _ = try event("connect.challenge")
        try send([
            "type": "req", "id": "connect", "method": "connect",
            "params": [
                "minProtocol": 4, "maxProtocol": 4, "scopes": scopes,
                "client": ["id": "gateway-client", "version": "1.0.0", "platform": "linux", "mode": "backend"],
            ] as [String: Any],
        ])
        return try response(to: "connect")
    }

    /// The next `res` for `id`, skipping events.
    func response(to id: String) throws -> [String: Any] {
        while true {
            let frame = try receive()
            if frame["type"] as? String == "res", frame["id"] as? String == id { return frame }
        }
    }

    /// The next event named `name`.
    func event(_ name: String) throws -> [String: Any] {
        while true {
            let frame = try receive()
            if frame["type"] as? String == "event", frame["event"] as? String == name { return frame }
        }
    }

    private func bytes(_ count: Int) throws -> [UInt8] {
        try receiveExactly(fd, count: count)
    }
}

final class MethodTests: XCTestCase {
    struct Echo: Codable, Equatable {
        let echo: [String: Int]
        let from: String
    }

    /// The test's methods; `swift.raw` owns `sentinel`.
    func methods(owning sentinel: Sentinel) -> GatewayMethods {
        var methods = GatewayMethods()
        methods.method("swift.echo", scope: "operator.read") { request -> Echo in
            let params = try request.params.decode([String: Int].self)
            try await Task.sleep(for: .milliseconds(10))  // answers later, from a task
            return Echo(echo: params, from: "swift")
        }
        methods.method("swift.fail", scope: "operator.read") { _ -> GatewayJSON in
            throw GatewayMethodError(code: "E_SWIFT", message: "refused in Swift", retryable: true)
        }
        methods.method("swift.raw", scope: "operator.read") { request in
            _ = sentinel
            return GatewayJSON(raw: #"{"conn":\#(request.connectionID)}"#)
        }
        methods.event("swift.tick")
        methods.event("swift.pair", scope: "operator.pairing")  // broadcast to pairing operators only
        return methods
    }

    func testSwiftMethodHandlerAnswersAWebSocketClient() async throws {
        weak var sentinel: Sentinel?
        let options = GatewayOptions(port: 0, stateDirectory: try temporaryStateDirectory())
        let server = try { () throws -> GatewayServer in
            let owned = Sentinel()
            sentinel = owned
            return try GatewayServer.serve(lock: GatewayLock.acquire(options), methods: methods(owning: owned))
        }()

        let client = try WebSocketClient(port: server.port)
        XCTAssertEqual(try client.event("connect.challenge")["event"] as? String, "connect.challenge")
        try client.send([
            "type": "req", "id": "c1", "method": "connect",
            "params": [
                "minProtocol": 4, "maxProtocol": 4, "scopes": ["operator.read"],
                "client": ["id": "gateway-client", "version": "1.0.0", "platform": "linux", "mode": "backend"],
            ] as [String: Any],
        ])
        let hello = try client.response(to: "c1")
        XCTAssertEqual(hello["ok"] as? Bool, true, "\(hello)")
        let features = (hello["payload"] as? [String: Any])?["features"] as? [String: Any]
        XCTAssertEqual(Set(features?["methods"] as? [String] ?? []),
                       ["health", "system-presence", "swift.echo", "swift.fail", "swift.raw"])
        XCTAssertTrue((features?["events"] as? [String] ?? []).contains("swift.tick"))
        XCTAssertTrue((features?["events"] as? [String] ?? []).contains("swift.pair"))

        try client.send(["type": "req", "id": "e1", "method": "swift.echo", "params": ["x": 1]])
        let echo = try client.response(to: "e1")
        XCTAssertEqual(echo["ok"] as? Bool, true, "\(echo)")
        let payload = try JSONSerialization.data(withJSONObject: echo["payload"] as Any)
        XCTAssertEqual(try JSONDecoder().decode(Echo.self, from: payload), Echo(echo: ["x": 1], from: "swift"))

        try client.send(["type": "req", "id": "f1", "method": "swift.fail"])
        let failed = try client.response(to: "f1")
        XCTAssertEqual(failed["ok"] as? Bool, false)
        let error = failed["error"] as? [String: Any]
        XCTAssertEqual(error?["code"] as? String, "E_SWIFT", "\(failed)")
        XCTAssertEqual(error?["message"] as? String, "refused in Swift")
        XCTAssertEqual(error?["retryable"] as? Bool, true)

        try client.send(["type": "req", "id": "r1", "method": "swift.raw"])
        let raw = try client.response(to: "r1")
        let connection = (raw["payload"] as? [String: Any])?["conn"] as? Int
        XCTAssertNotNil(connection, "\(raw)")

        // The client holds operator.read: swift.pair (operator.pairing) passes it by.
        try server.broadcast(event: "swift.pair", payload: ["n": 0])
        try server.broadcast(event: "swift.tick", payload: ["n": 1])
        let tick = try client.event("swift.tick")
        XCTAssertEqual((tick["payload"] as? [String: Any])?["n"] as? Int, 1, "\(tick)")
        XCTAssertEqual(tick["seq"] as? Int, 1, "swift.pair reached a client without operator.pairing: \(tick)")
        try server.sendEvent(to: UInt64(connection ?? 0), event: "swift.tick", payload: GatewayJSON(raw: #"{"n":2}"#))
        XCTAssertEqual((try client.event("swift.tick")["payload"] as? [String: Any])?["n"] as? Int, 2)
        XCTAssertThrowsError(try server.sendEvent(to: 999_999, event: "swift.tick")) { error in
            guard case .notFound = error as? GatewayError else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try server.broadcast(event: "swift.tick", payload: GatewayJSON(raw: "{not json")))

        try await server.shutdown(timeout: .seconds(2))
        XCTAssertEqual(try client.event("shutdown")["event"] as? String, "shutdown")
        XCTAssertThrowsError(try server.broadcast(event: "swift.tick")) { error in
            guard case .notFound = error as? GatewayError else { return XCTFail("\(error)") }
        }
        XCTAssertTrue(eventually { sentinel == nil }, "the handlers leaked after shutdown")
    }

    func testOnConnectionHearsAClientComeAndGo() throws {
        let changes = Recorder<GatewayConnectionChange>()
        let options = GatewayOptions(port: 0, stateDirectory: try temporaryStateDirectory())
        let server = try GatewayServer.serve(lock: GatewayLock.acquire(options), onConnection: { changes.append($0) })
        var client: WebSocketClient? = try WebSocketClient(port: server.port)
        let hello = try client?.connect()
        let connection = ((hello?["payload"] as? [String: Any])?["server"] as? [String: Any])?["connId"] as? String
        XCTAssertTrue(eventually { changes.all.count == 1 }, "no opened: \(changes.all)")
        guard case .opened(let id, let info)? = changes.all.first else {
            return XCTFail("expected opened first, got \(changes.all)")
        }
        XCTAssertEqual(String(id), connection, "hello-ok names another connection")
        struct Info: Decodable { struct Client: Decodable { let id: String }; let client: Client; let scopes: [String] }
        let decoded = try info.decode(Info.self)
        XCTAssertEqual(decoded.client.id, "gateway-client")
        XCTAssertEqual(decoded.scopes, ["operator.read"])

        client = nil
        XCTAssertTrue(eventually { changes.all.count == 2 }, "no closed: \(changes.all)")
        XCTAssertEqual(changes.all.last, .closed(id: id))
        XCTAssertThrowsError(try server.sendEvent(to: id, event: "swift.tick")) { error in
            guard case .notFound = error as? GatewayError else { return XCTFail("\(error)") }
        }
    }

    /// `onConnection(.opened)` has returned before any handler of that connection's requests
    /// starts, even when it is slow, and also for clients that come before `serve` returns (the
    /// adopted listener queues them up before the server exists).
    func testOnConnectionOpenedPrecedesTheConnectionsRequests() throws {
        let options = GatewayOptions(port: 0, stateDirectory: try temporaryStateDirectory())
        let (fd, port) = try listeningSocket()
        let lock = try GatewayLock.acquire(options, listener: fd)
        let timeline = Recorder<String>()
        var methods = GatewayMethods()
        methods.method("swift.first", scope: "operator.read") { request in
            timeline.append("request \(request.connectionID)")
            return GatewayJSON.null
        }

        // Clients on threads of their own, connecting while serve starts: each calls the moment
        // it has its hello-ok.
        let clients = 4
        let done = DispatchGroup()
        let failures = Recorder<String>()
        for _ in 0..<clients {
            done.enter()
            Thread.detachNewThread {
                defer { done.leave() }
                do {
                    let client = try WebSocketClient(port: port)
                    let hello = try client.connect()
                    guard hello["ok"] as? Bool == true else { return failures.append("connect: \(hello)") }
                    try client.send(["type": "req", "id": "m1", "method": "swift.first"])
                    let answer = try client.response(to: "m1")
                    if answer["ok"] as? Bool != true { failures.append("swift.first: \(answer)") }
                } catch {
                    failures.append("\(error)")
                }
            }
        }
        let server = try GatewayServer.serve(lock: lock, methods: methods, onConnection: { change in
            guard case .opened(let id, _) = change else { return }
            usleep(50_000)  // a slow observer: the connection's request must wait for it
            timeline.append("opened \(id)")
        })
        XCTAssertEqual(done.wait(timeout: .now() + 10), .success, "the clients did not finish")
        XCTAssertEqual(failures.all, [])

        let events = timeline.all
        let requests = events.filter { $0.hasPrefix("request ") }
        XCTAssertEqual(requests.count, clients, "\(events)")
        for request in requests {
            let id = request.dropFirst("request ".count)
            guard let opened = events.firstIndex(of: "opened \(id)") else {
                XCTFail("connection \(id) called without an opened: \(events)")
                continue
            }
            XCTAssertLessThan(opened, events.firstIndex(of: request)!, "a handler ran before opened: \(events)")
        }
        _ = server
    }

    /// The library's rules (the Rust `Handlers::add_method`), with its words.
    func testMethodsTheLibraryRefusesMakeServeThrow() throws {
        let options = GatewayOptions(port: 0, stateDirectory: try temporaryStateDirectory())
        let refusals: [(names: [String], message: String)] = [
            (["connect"], "method \"connect\" is the handshake"),
            (["swift.echo", "swift.echo"], "method \"swift.echo\" is registered twice"),
            ([""], "a method name is empty"),
        ]
        for (names, expected) in refusals {
            var methods = GatewayMethods()
            for name in names { methods.method(name) { _ in GatewayJSON.null } }
            XCTAssertThrowsError(try GatewayServer.serve(lock: GatewayLock.acquire(options), methods: methods)) {
                guard case .invalidArgument(let message) = $0 as? GatewayError else { return XCTFail("\($0)") }
                XCTAssertTrue(message.hasPrefix(expected), "\(names): \(message)")
            }
            // serve used the lock up also when it threw: the config can be had again.
            XCTAssertNoThrow(try GatewayLock.acquire(options).port)
        }
    }
}
