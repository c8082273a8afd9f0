import Foundation
import Synchronization
import XCTest

@testable import Gateway

/// Presence read by the host, the health source's refreshes, and the hello-ok fields a Swift
/// host sets (SPEC §12.6–12.8), seen by a raw WebSocket client.
final class PresenceTests: XCTestCase {
    func testTheHealthSourceRefreshesAndTheHostReadsPresence() throws {
        let refreshes = Atomic<Int>(0)
        let options = GatewayServeOptions(
            serverVersion: "swift-host 2", buildID: "swift-build 1", capabilities: ["swift-contract-v1"],
            challengeCapabilities: ["swift-connect-v1"], healthRefreshInterval: .milliseconds(200))
        let lockOptions = GatewayOptions(port: 0, stateDirectory: try temporaryStateDirectory())
        let server = try GatewayServer.serve(
            lock: GatewayLock.acquire(lockOptions), options: options,
            healthSource: {
                let n = refreshes.add(1, ordering: .relaxed).newValue
                return GatewayJSON(raw: #"{"ok":true,"source":"swift","refresh":\#(n)}"#)
            })
        XCTAssertGreaterThanOrEqual(refreshes.load(ordering: .relaxed), 1, "one refresh at start")

        let client = try WebSocketClient(port: server.port)
        let challenge = try client.event("connect.challenge")["payload"] as? [String: Any]
        XCTAssertEqual(challenge?["capabilities"] as? [String], ["swift-connect-v1"], "\(challenge ?? [:])")
        // An app signs in with a device identity (auth none: paired silently on loopback).
        try TestDevice(seed: 21).sendConnect(
            on: client, challenge: challenge ?? [:], clientId: "openclaw-macos", mode: "ui",
            platform: "macos 15", token: nil, name: "swift-app")
        let hello = try client.response(to: "c1")["payload"] as? [String: Any]
        let serverBlock = hello?["server"] as? [String: Any]
        XCTAssertEqual(serverBlock?["version"] as? String, "swift-host 2", "\(hello ?? [:])")
        XCTAssertEqual(serverBlock?["buildId"] as? String, "swift-build 1", "\(hello ?? [:])")
        XCTAssertEqual((hello?["features"] as? [String: Any])?["capabilities"] as? [String], ["swift-contract-v1"])
        let snapshot = hello?["snapshot"] as? [String: Any]
        XCTAssertEqual((snapshot?["health"] as? [String: Any])?["source"] as? String, "swift", "\(hello ?? [:])")

        // Refreshes arrive as `health` events with a rising stateVersion.health.
        func healthVersion() throws -> Int {
            let event = try client.event("health")
            XCTAssertEqual((event["payload"] as? [String: Any])?["source"] as? String, "swift", "\(event)")
            return (event["stateVersion"] as? [String: Any])?["health"] as? Int ?? -1
        }
        let first = try healthVersion()
        let second = try healthVersion()
        XCTAssertGreaterThan(second, first)

        // The host reads presence: its own row and the app that connected.
        let rows = try JSONSerialization.jsonObject(with: Data(try server.presence().text.utf8)) as? [[String: Any]]
        XCTAssertTrue(rows?.contains { $0["reason"] as? String == "self" && $0["version"] as? String == "swift-host 2" }
                      ?? false, "\(rows ?? [])")
        XCTAssertTrue(rows?.contains { $0["host"] as? String == "swift-app" && $0["reason"] as? String == "connect" }
                      ?? false, "\(rows ?? [])")

        try server.setHealth(GatewayJSON(raw: #"{"ok":false,"source":"setHealth"}"#))
        while true {
            let event = try client.event("health")
            if (event["payload"] as? [String: Any])?["source"] as? String == "setHealth" { break }
        }
    }

    func testTheHealthSourceIsReleasedWithTheServer() async throws {
        weak var watched: Sentinel?
        do {
            let sentinel = Sentinel()
            watched = sentinel
            let lockOptions = GatewayOptions(port: 0, stateDirectory: try temporaryStateDirectory())
            let server = try GatewayServer.serve(
                lock: GatewayLock.acquire(lockOptions), healthSource: { [sentinel] in
                    _ = sentinel
                    return nil
                })
            try await server.shutdown(timeout: .seconds(2))
        }
        XCTAssertTrue(eventually { watched == nil }, "the health source was never released")
    }
}
