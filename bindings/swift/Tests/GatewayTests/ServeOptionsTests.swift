import Foundation
import XCTest

@testable import Gateway

/// Each `GatewayServeOptions` knob reaches the server: seen by a raw WebSocket client.
final class ServeOptionsTests: XCTestCase {
    func serve(_ options: GatewayServeOptions, methods: GatewayMethods = GatewayMethods()) throws -> GatewayServer {
        let lockOptions = GatewayOptions(port: 0, stateDirectory: try temporaryStateDirectory())
        return try GatewayServer.serve(lock: GatewayLock.acquire(lockOptions), options: options, methods: methods)
    }

    func testMaxConnectionsClosesTheClientPastIt() throws {
        let server = try serve(GatewayServeOptions(maxConnections: 1))
        var first: WebSocketClient? = try WebSocketClient(port: server.port)
        XCTAssertTrue(eventually { server.connectionCount == 1 }, "the first client was not counted")

        let second = try WebSocketClient(port: server.port)
        XCTAssertThrowsError(try second.event("connect.challenge")) { error in
            let message = (error as? GatewayMethodError)?.message ?? "\(error)"
            XCTAssertTrue(message.hasPrefix("1013 "), "expected a 1013 close, got \(message)")
        }
        XCTAssertEqual(try first?.connect()["ok"] as? Bool, true, "the first client was disturbed")

        first = nil  // closes its socket: there is room again
        XCTAssertTrue(eventually { server.connectionCount == 0 }, "the first client is still counted")
        XCTAssertEqual(try WebSocketClient(port: server.port).connect()["ok"] as? Bool, true)
    }

    func testRequestTimeoutAnswersUnavailable() throws {
        var methods = GatewayMethods()
        methods.method("swift.slow", scope: "operator.read") { _ -> GatewayJSON in
            try await Task.sleep(for: .seconds(3))
            return .null
        }
        let server = try serve(GatewayServeOptions(requestTimeout: .milliseconds(200)), methods: methods)
        let client = try WebSocketClient(port: server.port)
        XCTAssertEqual(try client.connect()["ok"] as? Bool, true)

        let sent = Date()
        try client.send(["type": "req", "id": "s1", "method": "swift.slow"])
        let answer = try client.response(to: "s1")
        XCTAssertLessThan(Date().timeIntervalSince(sent), 2, "the request timeout did not apply")
        XCTAssertEqual(answer["ok"] as? Bool, false, "\(answer)")
        XCTAssertEqual((answer["error"] as? [String: Any])?["code"] as? String, "UNAVAILABLE", "\(answer)")
    }

    func testHelloOkCarriesTheVersionAndPolicy() throws {
        let server = try serve(GatewayServeOptions(
            tickInterval: .milliseconds(1500), maxPayload: 4096, maxBufferedBytes: 8192,
            serverVersion: "swift-host 9.9"))
        let hello = try WebSocketClient(port: server.port).connect()
        let payload = hello["payload"] as? [String: Any]
        XCTAssertEqual((payload?["server"] as? [String: Any])?["version"] as? String, "swift-host 9.9", "\(hello)")
        let policy = payload?["policy"] as? [String: Any]
        XCTAssertEqual(policy?["tickIntervalMs"] as? Int, 1500, "\(hello)")
        XCTAssertEqual(policy?["maxPayload"] as? Int, 4096, "\(hello)")
        XCTAssertEqual(policy?["maxBufferedBytes"] as? Int, 8192, "\(hello)")
    }

    func testAllowedOriginsLetAnOriginIn() throws {
        let origin = ["Origin": "https://app.example.com"]
        let closed = try serve(GatewayServeOptions())
        let refused = try WebSocketClient(port: closed.port, headers: origin).connect()
        XCTAssertEqual(refused["ok"] as? Bool, false, "\(refused)")
        XCTAssertEqual(
            (refused["error"] as? [String: Any])?["message"] as? String,
            "origin not allowed (open the Control UI from the gateway host or allow it in gateway.controlUi.allowedOrigins)")

        // The Control UI from an allowed origin, with a device identity (on auth none it skips
        // pairing, SPEC §11.4).
        let open = try serve(GatewayServeOptions(allowedOrigins: ["https://app.example.com"]))
        let client = try WebSocketClient(port: open.port, headers: origin)
        let challenge = try client.event("connect.challenge")["payload"] as! [String: Any]
        try TestDevice(seed: 22).sendConnect(
            on: client, challenge: challenge, clientId: "openclaw-control-ui", mode: "webchat",
            scopes: [], token: nil, name: "swift-ui")
        let allowed = try client.response(to: "c1")
        XCTAssertEqual(allowed["ok"] as? Bool, true, "\(allowed)")
    }

    func testDropTimeoutIsWhatDeinitGivesOpenConnections() throws {
        let options = GatewayOptions(port: 0, stateDirectory: try temporaryStateDirectory())
        let lockDir = lockDirectory(of: options.stateDirectory!)
        var client: WebSocketClient?
        let dropped: Date
        do {
            let server = try GatewayServer.serve(lock: GatewayLock.acquire(options),
                                                 options: GatewayServeOptions(dropTimeout: .zero))
            client = try WebSocketClient(port: server.port)  // silent: would hold a drain for 1 s
            dropped = Date()
        }
        XCTAssertTrue(eventually { lockFiles(in: lockDir).isEmpty }, "lock files left")
        XCTAssertLessThan(Date().timeIntervalSince(dropped), 0.9, "the silent client was waited for")
        _ = client
    }

    func testInvalidServeOptionsAreRefusedAndTheLockReleased() throws {
        let lockOptions = GatewayOptions(port: 0, stateDirectory: try temporaryStateDirectory())
        let cases: [(GatewayServeOptions, String)] = [
            (GatewayServeOptions(workerThreads: 0), ""),
            (GatewayServeOptions(workerThreads: -1), "workerThreads"),
            (GatewayServeOptions(maxConnections: 0), ""),
            (GatewayServeOptions(requestTimeout: .zero), ""),
            (GatewayServeOptions(handshakeTimeout: .seconds(-1)), "handshakeTimeout"),
            (GatewayServeOptions(allowedOrigins: [""]), ""),
            (GatewayServeOptions(serverVersion: ""), ""),
        ]
        for (options, expected) in cases {
            XCTAssertThrowsError(try GatewayServer.serve(lock: GatewayLock.acquire(lockOptions), options: options)) {
                guard case .invalidArgument(let message) = $0 as? GatewayError else {
                    return XCTFail("\(options): expected invalidArgument, got \($0)")
                }
                XCTAssertFalse(message.isEmpty, "\(options)")
                if !expected.isEmpty { XCTAssertTrue(message.contains(expected), message) }
            }
        }
        // Each refusal released its lock: the config can be had again.
        XCTAssertNoThrow(try GatewayLock.acquire(lockOptions).port)
    }

    struct Snapshot: Codable, Equatable {
        let ok: Bool
        let reason: String
    }

    func testSetHealthChangesWhatHealthAnswers() throws {
        let server = try serve(GatewayServeOptions())
        let client = try WebSocketClient(port: server.port)
        XCTAssertEqual(try client.connect()["ok"] as? Bool, true)
        try client.send(["type": "req", "id": "h1", "method": "health"])
        let before = try client.response(to: "h1")["payload"] as? [String: Any]
        XCTAssertEqual(before?["ok"] as? Bool, true, "the default snapshot: \(before ?? [:])")

        try server.setHealth(Snapshot(ok: false, reason: "set from Swift"))
        let event = try client.event("health")["payload"] as? [String: Any]
        XCTAssertEqual(event?["reason"] as? String, "set from Swift", "\(event ?? [:])")
        try client.send(["type": "req", "id": "h2", "method": "health"])
        let after = try client.response(to: "h2")["payload"]
        let decoded = try JSONDecoder().decode(Snapshot.self, from: JSONSerialization.data(withJSONObject: after as Any))
        XCTAssertEqual(decoded, Snapshot(ok: false, reason: "set from Swift"))

        XCTAssertThrowsError(try server.setHealth(GatewayJSON(raw: "{not json"))) { error in
            guard case .invalidArgument = error as? GatewayError else { return XCTFail("\(error)") }
        }
    }
}
