import Foundation
import XCTest

@testable import Gateway

/// A device key for a test client: the Rust example `device_signer` signs with it (Swift on
/// Linux has no Ed25519; scripts/swift-test.sh builds the example and names it in
/// GATEWAY_DEVICE_SIGNER).
struct TestDevice {
    let seed: UInt8

    /// `{"id", "publicKey", "signature"}` for `payload`.
    func sign(_ payload: String) throws -> [String: String] {
        guard let signer = ProcessInfo.processInfo.environment["GATEWAY_DEVICE_SIGNER"] else {
            throw GatewayMethodError(
                code: "NO_SIGNER",
                message: "GATEWAY_DEVICE_SIGNER is not set: run these tests with scripts/swift-test.sh")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: signer)
        process.arguments = [String(seed), payload]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw GatewayMethodError(code: "SIGNER", message: "device_signer exited \(process.terminationStatus)")
        }
        return try JSONSerialization.jsonObject(with: data) as! [String: String]
    }

    var id: String { get throws { try sign("")["id"]! } }

    /// Connects as the OpenClaw CLI with `token`, named `name`, asking for operator.read, with a
    /// device block signed for this connection's challenge (the v3 payload of SPEC §11.2); the
    /// `res` and the client.
    func connect(port: Int, token: String, name: String) throws -> ([String: Any], WebSocketClient) {
        let client = try WebSocketClient(port: port)
        let challenge = try client.event("connect.challenge")["payload"] as! [String: Any]
        try sendConnect(on: client, challenge: challenge, token: token, name: name)
        return (try client.response(to: "c1"), client)
    }

    /// Sends `connect` (id `c1`) on `client`, whose `connect.challenge` payload was `challenge`,
    /// as client `clientId` in `mode` on `platform`, asking for `scopes` as an operator, with
    /// `token` (none when nil) and a device block signing the v3 payload of SPEC §11.2.
    func sendConnect(
        on client: WebSocketClient, challenge: [String: Any], clientId: String = "cli",
        mode: String = "cli", platform: String = "linux", scopes: [String] = ["operator.read"],
        token: String?, name: String
    ) throws {
        let nonce = challenge["nonce"] as! String
        let signedAt = challenge["ts"] as! Int
        let id = try self.id
        let joined = scopes.joined(separator: ",")
        let pinned = platform.trimmingCharacters(in: .whitespaces).lowercased()
        let payload = "v3|\(id)|\(clientId)|\(mode)|operator|\(joined)|\(signedAt)|\(token ?? "")|\(nonce)|\(pinned)|"
        let signed = try sign(payload)
        var params: [String: Any] = [
            "minProtocol": 4, "maxProtocol": 4, "role": "operator", "scopes": scopes,
            "client": ["id": clientId, "version": "1.0.0", "platform": platform, "mode": mode, "displayName": name],
            "device": [
                "id": signed["id"]!, "publicKey": signed["publicKey"]!, "signature": signed["signature"]!,
                "signedAt": signedAt, "nonce": nonce,
            ] as [String: Any],
        ]
        if let token { params["auth"] = ["token": token] }
        try client.send(["type": "req", "id": "c1", "method": "connect", "params": params])
    }
}

final class PairingTests: XCTestCase {
    /// Requests a host decides later, written to the store file before serving (the format the
    /// library documents): listed, approved with scopes of the host's choosing, rejected.
    func testTheHostDecidesPendingRequestsThroughTheServer() async throws {
        let state = try temporaryStateDirectory()
        let store = "\(state)/pairing/devices.json"
        try FileManager.default.createDirectory(atPath: "\(state)/pairing", withIntermediateDirectories: true)
        let now = Int(Date().timeIntervalSince1970 * 1000)
        let pending = ["a", "b"].map { id in
            #"{"requestId":"req-\#(id)","deviceId":"dev-\#(id)","publicKey":"k","clientId":"cli","clientMode":"cli","role":"operator","scopes":[],"isRepair":false,"ts":\#(now)}"#
        }
        try #"{"version":1,"devices":[],"pending":[\#(pending.joined(separator: ","))]}"#
            .write(toFile: store, atomically: true, encoding: .utf8)

        XCTAssertThrowsError(try GatewayServer.serve(
            lock: GatewayLock.acquire(GatewayOptions(port: 0, stateDirectory: state)),
            options: GatewayServeOptions(pairingStorePath: "relative.json"))) { error in
            guard case .invalidArgument(let message) = error as? GatewayError else { return XCTFail("\(error)") }
            XCTAssertTrue(message.contains("is relative"), message)
        }
        let server = try GatewayServer.serve(
            lock: GatewayLock.acquire(GatewayOptions(port: 0, stateDirectory: state)),
            options: GatewayServeOptions(pairingStorePath: store))
        let listed = try server.pairingRequests().text
        XCTAssertTrue(listed.contains("\"req-a\"") && listed.contains("\"req-b\""), listed)
        try server.approvePairing(requestID: "req-a", scopes: ["operator.read"])
        XCTAssertThrowsError(try server.approvePairing(requestID: "req-a")) { error in
            guard case .notFound(let message) = error as? GatewayError else { return XCTFail("\(error)") }
            XCTAssertTrue(message.contains("no pending pairing request req-a"), message)
        }
        try server.rejectPairing(requestID: "req-b")
        XCTAssertEqual(try server.pairingRequests().text, "[]")
        let devices = try server.pairedDevices().text
        XCTAssertTrue(devices.contains(#""deviceId":"dev-a""#) && devices.contains(#""scopes":["operator.read"]"#), devices)
        try server.revokeDeviceToken(deviceID: "dev-a", role: "operator") // approval issued it
        XCTAssertThrowsError(try server.revokeDeviceToken(deviceID: "dev-a", role: "operator"))
        try server.removePairedDevice("dev-a")
        XCTAssertEqual(try server.pairedDevices().text, "[]")
        let setupCode = try server.issueBootstrapToken(roles: ["node"], ttl: .seconds(60))
        XCTAssertEqual(setupCode.count, 43, setupCode)
        XCTAssertThrowsError(try server.issueBootstrapToken(roles: [])) { error in
            guard case .invalidArgument(let message) = error as? GatewayError else { return XCTFail("\(error)") }
            XCTAssertTrue(message.contains("names no role"), message)
        }
        try await server.shutdown(timeout: .seconds(2))
        XCTAssertThrowsError(try server.pairingRequests()) { error in
            guard case .notFound = error as? GatewayError else { return XCTFail("\(error)") }
        }
    }

    /// A Swift policy decides signed clients as they connect: approves one, rejects one, leaves
    /// one pending, which the host approves later, after which it connects.
    func testASwiftPolicyApprovesRejectsAndLeavesPendingAndTheHostApprovesLater() async throws {
        let asked = Recorder<String>()
        weak var released: Sentinel?
        let token = "s3cret-token"
        let server = try { () throws -> GatewayServer in
            let owned = Sentinel()
            released = owned
            let policy = GatewayPairingPolicy { request, context in
                _ = owned
                asked.append(context.text)
                if request.text.contains(#""displayName":"approve-me""#) { return .approve(scopes: ["operator.read"]) }
                if request.text.contains(#""displayName":"reject-me""#) { return .reject }
                return .pending
            }
            return try GatewayServer.serve(
                lock: GatewayLock.acquire(
                    GatewayOptions(port: 0, stateDirectory: try temporaryStateDirectory(), auth: .token(token))),
                options: GatewayServeOptions(pairingPolicy: policy))
        }()

        let (approved, _) = try TestDevice(seed: 21).connect(port: server.port, token: token, name: "approve-me")
        XCTAssertEqual(approved["ok"] as? Bool, true, "\(approved)")
        XCTAssertTrue(asked.all.first?.contains(#""reason":"not-paired""#) == true, "\(asked.all)")
        // Node's silent rule without auto-approve-local: a new device is never silent.
        XCTAssertTrue(
            asked.all.first?.contains(#""silentLocalWithoutAutoApprove":false"#) == true, "\(asked.all)")

        let (rejected, _) = try TestDevice(seed: 22).connect(port: server.port, token: token, name: "reject-me")
        XCTAssertEqual((rejected["error"] as? [String: Any])?["code"] as? String, "NOT_PAIRED", "\(rejected)")

        let waiting = TestDevice(seed: 23)
        let (pending, _) = try waiting.connect(port: server.port, token: token, name: "wait-for-me")
        let details = (pending["error"] as? [String: Any])?["details"] as? [String: Any]
        let requestID = try XCTUnwrap(details?["requestId"] as? String, "\(pending)")
        XCTAssertTrue(try server.pairingRequests().text.contains(requestID))
        try server.approvePairing(requestID: requestID)
        let (connected, _) = try waiting.connect(port: server.port, token: token, name: "wait-for-me")
        XCTAssertEqual(connected["ok"] as? Bool, true, "\(connected)")
        let devices = try server.pairedDevices().text
        let (approvedID, rejectedID, waitingID) =
            (try TestDevice(seed: 21).id, try TestDevice(seed: 22).id, try waiting.id)
        XCTAssertTrue(devices.contains(approvedID) && devices.contains(waitingID), devices)
        XCTAssertFalse(devices.contains(rejectedID), devices)

        try await server.shutdown(timeout: .seconds(2))
        XCTAssertTrue(eventually { released == nil }, "the policy leaked after shutdown")
    }
}
