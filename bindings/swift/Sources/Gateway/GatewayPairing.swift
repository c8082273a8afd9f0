import CGateway

/// What a pairing policy decided about one request (SPEC §11.5).
public enum GatewayPairingDecision: Sendable, Equatable {
    /// Leave it pending: the client is told `pairing required`; approve it later with
    /// `GatewayServer.approvePairing(requestID:scopes:)`.
    case pending
    /// Pair now, with the requested scopes (`nil`) or `scopes`.
    case approve(scopes: [String]?)
    /// Refuse it.
    case reject
}

/// The host's say over who pairs: decides each pairing request as it arrives, on a library
/// thread, possibly on several at once; it must decide at once. Without one, the library uses
/// Node's `silent` rule (a device on this host pairs at once, any other waits for the host).
///
/// `request` is the request as `device.pair.requested` carries it (`requestId`, `deviceId`,
/// `publicKey`, `displayName`?, `platform`?, `clientId`, `clientMode`, `role`, `scopes`,
/// `isRepair`, `ts`, ...); `context` is what the handshake knows (`reason`, `locality`,
/// `hasOrigin`, `uiClient`, `authMethod`, `recordExists`, `silentLocal`: what Node's default
/// rule decides, and `silentLocalWithoutAutoApprove`: what it decides with Node's
/// `autoApproveLocal` off). Equal only to itself.
public struct GatewayPairingPolicy: Sendable, Equatable {
    let box: PairingPolicyBox

    public init(_ decide: @escaping @Sendable (_ request: GatewayJSON, _ context: GatewayJSON) -> GatewayPairingDecision) {
        box = PairingPolicyBox(decide)
    }

    public static func == (left: GatewayPairingPolicy, right: GatewayPairingPolicy) -> Bool {
        left.box === right.box
    }
}

/// A policy's closure, owned by the library: retained into the userdata of
/// `gw_serve_options_set_pairing_policy` and released by `free`, which the library calls
/// exactly once, when the options and every server served with them are gone.
final class PairingPolicyBox: Sendable {
    let decide: @Sendable (GatewayJSON, GatewayJSON) -> GatewayPairingDecision

    init(_ decide: @escaping @Sendable (GatewayJSON, GatewayJSON) -> GatewayPairingDecision) { self.decide = decide }

    /// The `gw_pairing_fn` whose userdata is a retained `PairingPolicyBox`.
    static var callback: gw_pairing_fn {
        { userdata, request, requestLength, context, contextLength, decision in
            let box = Unmanaged<PairingPolicyBox>.fromOpaque(userdata!).takeUnretainedValue()
            let decided = box.decide(
                GatewayJSON(raw: text(request, requestLength)), GatewayJSON(raw: text(context, contextLength)))
            switch decided {
            case .pending:
                break
            case .approve(scopes: nil):
                _ = gw_pairing_decision_approve(decision, nil)
            case .approve(scopes: let scopes?):
                let json = (try? GatewayJSON(scopes).text) ?? "[]"
                _ = gw_pairing_decision_approve(decision, json)
            case .reject:
                _ = gw_pairing_decision_reject(decision)
            }
        }
    }

    /// The finalizer that releases it.
    static var free: @convention(c) (UnsafeMutableRawPointer?) -> Void {
        { userdata in Unmanaged<PairingPolicyBox>.fromOpaque(userdata!).release() }
    }
}

/// The profile `gw_bootstrap_token_issue` reads (absent optionals are left out).
private struct BootstrapProfileJSON: Encodable {
    let roles: [String]
    let scopes: [String]
    let deviceId: String?
    let publicKey: String?
    let ttlMs: UInt64?
}

/// `len` bytes of UTF-8 from the library, copied.
private func text(_ bytes: UnsafePointer<CChar>?, _ length: Int) -> String {
    String(decoding: UnsafeRawBufferPointer(start: bytes.map(UnsafeRawPointer.init), count: length), as: UTF8.self)
}

extension GatewayServer {
    /// The pairing requests waiting for the host, oldest first, as a JSON array.
    public func pairingRequests() throws -> GatewayJSON {
        try withServerString { gw_pairing_requests($0, $1) }
    }

    /// Approves a pending request with its requested scopes (`nil`) or `scopes`, added to what
    /// the device had, and broadcasts `device.pair.resolved`: the device's next connect passes.
    /// Throws `.notFound` when no such request is pending, `.runtime` when the store could not
    /// be saved (nothing changed).
    public func approvePairing(requestID: String, scopes: [String]? = nil) throws {
        let json = try scopes.map { try GatewayJSON($0).text }
        try withServerCall { server in
            if let json { return gw_pairing_approve(server, requestID, json) }
            return gw_pairing_approve(server, requestID, nil)
        }
    }

    /// Rejects a pending request and broadcasts `device.pair.resolved`; throws `.notFound`
    /// when no such request is pending.
    public func rejectPairing(requestID: String) throws {
        try withServerCall { gw_pairing_reject($0, requestID) }
    }

    /// The paired devices, oldest approval first, as a JSON array (no tokens).
    public func pairedDevices() throws -> GatewayJSON {
        try withServerString { gw_paired_devices($0, $1) }
    }

    /// Unpairs a device (its tokens and pending requests go too) and closes its live
    /// connections, in every role, with 4001 `device removed`; throws `.notFound` when it is
    /// not paired.
    public func removePairedDevice(_ deviceID: String) throws {
        try withServerCall { gw_paired_device_remove($0, deviceID) }
    }

    /// Revokes a device's token for `role`: connects presenting it are refused from now on, the
    /// device must pair again for the role, and its live connections in that role are closed
    /// with 4001 `device removed`. Throws `.notFound` when the device has no active token for
    /// the role.
    public func revokeDeviceToken(deviceID: String, role: String) throws {
        try withServerCall { gw_device_token_revoke($0, deviceID, role) }
    }

    /// Issues a bootstrap token (a setup code) for a profile (SPEC §11.7 step 2): a device that
    /// sends it as `auth.bootstrapToken` with a signed device block, in one of `roles` and
    /// within `scopes`, connects without the shared secret, is paired with `roles` and
    /// `scopes`, and gets its device token. Good once, for `ttl` (default 10 minutes, Node's);
    /// with `deviceID`/`publicKey` only that device may use it. Throws `.invalidArgument` for
    /// no role or a zero `ttl`, `.runtime` when the store could not be saved.
    public func issueBootstrapToken(
        roles: [String], scopes: [String] = [], deviceID: String? = nil, publicKey: String? = nil,
        ttl: Duration? = nil
    ) throws -> String {
        var ttlMs: UInt64?
        if let ttl {
            let ms: UInt64 = try milliseconds(ttl, "ttl")
            ttlMs = ms
        }
        let profile = BootstrapProfileJSON(
            roles: roles, scopes: scopes, deviceId: deviceID, publicKey: publicKey, ttlMs: ttlMs)
        let json = try GatewayJSON(profile).text
        var token: String?
        try withServerCall { server in
            var out: UnsafeMutablePointer<CChar>?
            let code = gw_bootstrap_token_issue(server, json, &out)
            if code == GW_OK.rawValue, let out {
                token = String(cString: out)
                gw_string_free(out)
            }
            return code
        }
        return token ?? ""
    }

    /// A call that gives back a string the library allocated (freed here).
    private func withServerString(
        _ body: (OpaquePointer, UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> UInt32
    ) throws -> GatewayJSON {
        var result: GatewayJSON?
        try withServerCall { server in
            var out: UnsafeMutablePointer<CChar>?
            let code = body(server, &out)
            if code == GW_OK.rawValue, let out {
                result = GatewayJSON(raw: String(cString: out))
                gw_string_free(out)
            }
            return code
        }
        return result ?? .null
    }
}
