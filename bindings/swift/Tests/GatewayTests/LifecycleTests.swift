import Foundation
import XCTest

@testable import Gateway

final class LifecycleTests: XCTestCase {
    /// Port 0 (the OS picks), a state dir of the test's own, a short wait for a live holder.
    func makeOptions() throws -> GatewayOptions {
        GatewayOptions(port: 0, stateDirectory: try temporaryStateDirectory(), timeout: .milliseconds(300))
    }

    func testAcquireServeHealthzShutdownFreesThePort() async throws {
        let options = try makeOptions()
        let lockDir = lockDirectory(of: options.stateDirectory!)
        let lock = try GatewayLock.acquire(options)
        let port = lock.port
        XCTAssertNotEqual(port, 0)
        XCTAssertFalse(lockFiles(in: lockDir).isEmpty, "no lock file while the lock is held")

        let states = Recorder<GatewayStateChange>()
        let server = try GatewayServer.serve(lock: lock, onStateChange: { states.append($0) })
        XCTAssertEqual(server.port, port)
        XCTAssertEqual(states.all, [.ready])

        let health = try httpGet(port: port, path: "/healthz")
        XCTAssertEqual(health.status, 200, health.body)

        let status = try GatewayLock.status(options)
        XCTAssertTrue(status.running)
        XCTAssertTrue(status.healthy)
        XCTAssertEqual(status.pid, getpid())
        XCTAssertEqual(status.port, port)

        XCTAssertFalse(canBind(port: port))
        try await server.shutdown(timeout: .seconds(2))
        XCTAssertTrue(canBind(port: port), "the port is still taken after shutdown")
        XCTAssertEqual(lockFiles(in: lockDir), [], "lock files left after shutdown")
        XCTAssertEqual(states.all, [.ready, .stopped(drained: true)])
        XCTAssertFalse(try GatewayLock.status(options).running)
        try await server.shutdown()  // a no-op the second time

        // The same config and port can be had again at once.
        let again = try GatewayLock.acquire(GatewayOptions(port: port, stateDirectory: options.stateDirectory))
        XCTAssertEqual(again.port, port)
    }

    func testSecondAcquireInProcessIsAlreadyRunningWithOurPid() throws {
        let options = try makeOptions()
        // Held but not serving: the holder does not answer /healthz, so acquire waits `timeout`.
        let lock = try GatewayLock.acquire(options)
        let port = lock.port
        assertAlreadyRunning(options, port: port)
        // Serving and healthy: refused at once.
        let server = try GatewayServer.serve(lock: lock)
        let started = Date()
        assertAlreadyRunning(options, port: port)
        XCTAssertLessThan(Date().timeIntervalSince(started), 0.25, "a healthy holder should fail now")
        _ = server
    }

    /// The holder is named by typed values, from the library (not read from the message).
    func assertAlreadyRunning(_ options: GatewayOptions, port: Int, line: UInt = #line) {
        XCTAssertThrowsError(try GatewayLock.acquire(options).port, line: line) { error in
            guard case .alreadyRunning(let pid, let holderPort, let message) = error as? GatewayError else {
                return XCTFail("expected alreadyRunning, got \(error)", line: line)
            }
            XCTAssertEqual(pid, getpid(), line: line)
            XCTAssertEqual(holderPort, port, line: line)
            XCTAssertTrue(message.hasPrefix("gateway already running (pid \(getpid()))"), message, line: line)
        }
    }

    func testASecondProcessIsRefused() throws {
        let options = try makeOptions()
        let server = try GatewayServer.serve(lock: GatewayLock.acquire(options))

        let child = Process()
        child.executableURL = try hostExecutable()
        child.arguments = ["1"]
        child.environment = [
            "HOME": options.stateDirectory!,
            "OPENCLAW_STATE_DIR": options.stateDirectory!,
            "OPENCLAW_GATEWAY_PORT": String(server.port),
        ]
        let stderr = Pipe()
        child.standardError = stderr
        child.standardOutput = Pipe()
        try child.run()
        let output = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        child.waitUntilExit()
        XCTAssertEqual(child.terminationStatus, 1, output)
        XCTAssertTrue(
            output.contains("gateway already running (pid \(getpid())); it is healthy on ws://127.0.0.1:\(server.port)"),
            output)
        XCTAssertEqual(try httpGet(port: server.port, path: "/healthz").status, 200, "the holder was disturbed")
    }

    /// The example host, built next to this test bundle.
    func hostExecutable() throws -> URL {
        #if os(macOS)
        let directory = Bundle(for: Self.self).bundleURL.deletingLastPathComponent()
        #else
        let directory = Bundle.main.executableURL!.deletingLastPathComponent()
        #endif
        let host = directory.appendingPathComponent("gateway-swift-host")
        guard FileManager.default.isExecutableFile(atPath: host.path) else {
            throw XCTSkip("\(host.path) is not built (swift build builds it)")
        }
        return host
    }

    func testDeinitWithoutShutdownReleasesEverything() throws {
        let options = try makeOptions()
        let lockDir = lockDirectory(of: options.stateDirectory!)
        weak var sentinel: Sentinel?
        var port = 0
        do {
            let owned = Sentinel()
            sentinel = owned
            let server = try GatewayServer.serve(lock: GatewayLock.acquire(options), log: { _, _ in _ = owned })
            port = server.port
            XCTAssertEqual(try httpGet(port: port, path: "/healthz").status, 200)
        }
        // deinit shuts down on a thread of its own: the port is freed first, the lock files last.
        XCTAssertTrue(eventually { lockFiles(in: lockDir).isEmpty }, "deinit left lock files")
        XCTAssertTrue(canBind(port: port), "deinit left the port taken")
        XCTAssertTrue(eventually { sentinel == nil }, "the closures given to serve leaked")

        // A lock dropped without release() is released too.
        do { _ = try GatewayLock.acquire(options) }
        let lock = try GatewayLock.acquire(options)
        let held = lock.port
        lock.release()
        XCTAssertEqual(lockFiles(in: lockDir), [])
        XCTAssertTrue(canBind(port: held), "release() left the port taken")
    }

    /// A client that never answers the close handshake holds a graceful shutdown to its
    /// timeout; `deinit` must not hold its caller's thread that long.
    func testDeinitReturnsAtOnceAndShutsDownOnAThreadOfItsOwn() throws {
        let options = try makeOptions()
        let lockDir = lockDirectory(of: options.stateDirectory!)
        var port = 0
        var client: WebSocketClient?
        let dropped: Date
        do {
            let server = try GatewayServer.serve(lock: GatewayLock.acquire(options))
            port = server.port
            client = try WebSocketClient(port: port)  // never reads again: never answers a close
            dropped = Date()
        }
        let returnedAfter = Date().timeIntervalSince(dropped)
        XCTAssertLessThan(returnedAfter, 0.5, "deinit blocked its thread for \(returnedAfter) s")
        XCTAssertFalse(lockFiles(in: lockDir).isEmpty, "the shutdown did not wait for the silent client")
        XCTAssertTrue(eventually(seconds: 10) { lockFiles(in: lockDir).isEmpty }, "lock files left")
        let finishedAfter = Date().timeIntervalSince(dropped)
        XCTAssertGreaterThan(finishedAfter, 2 * returnedAfter, "the client did not hold the shutdown")
        XCTAssertTrue(canBind(port: port), "the port is still taken after the shutdown")
        _ = client
    }

    func testClosuresAreReleasedAtShutdownAndWhenServeFails() async throws {
        let options = try makeOptions()
        weak var sentinel: Sentinel?
        var server: GatewayServer?
        do {
            let owned = Sentinel()
            sentinel = owned
            server = try GatewayServer.serve(lock: GatewayLock.acquire(options), log: { _, _ in _ = owned })
        }
        XCTAssertNotNil(sentinel, "the library let go of the closures while serving")
        try await server?.shutdown()
        // The server object is still alive: only the library's free_userdata can release them.
        XCTAssertTrue(eventually { sentinel == nil }, "free_userdata never released the closures")
        _ = server

        // serve refusing its methods still frees the closures it was given, and the lock.
        var methods = GatewayMethods()
        methods.method("connect") { _ in GatewayJSON.null }
        do {
            let owned = Sentinel()
            sentinel = owned
            XCTAssertThrowsError(
                try GatewayServer.serve(lock: GatewayLock.acquire(options), methods: methods, log: { _, _ in _ = owned })
            ) { error in
                guard case .invalidArgument = error as? GatewayError else {
                    return XCTFail("expected invalidArgument, got \(error)")
                }
            }
        }
        XCTAssertNil(sentinel, "a failed serve leaked its closures")
        XCTAssertNoThrow(try GatewayLock.acquire(options).port, "a failed serve kept the lock")
    }

    /// The lock's `log` hears its re-check, also once the lock is served without a `log` of
    /// the server's own, for as long as the server runs.
    func testTheLockLogsToItsLogClosureWhileServed() async throws {
        var options = try makeOptions()
        options.recheckInterval = .milliseconds(50)
        let lockDir = lockDirectory(of: options.stateDirectory!)
        let lines = Recorder<(GatewayLogLevel, String)>()
        let states = Recorder<GatewayStateChange>()
        let lock = try GatewayLock.acquire(options, log: { lines.append(($0, $1)) })
        let server = try GatewayServer.serve(lock: lock, onStateChange: { states.append($0) })

        for name in lockFiles(in: lockDir) { try FileManager.default.removeItem(atPath: "\(lockDir)/\(name)") }
        XCTAssertTrue(eventually { states.all.contains(.lockLost) }, "the re-check never noticed")
        let errors = lines.all.filter { $0.0 == .error }.map(\.1)
        XCTAssertTrue(errors.contains { $0.contains("was removed or replaced") }, "\(lines.all)")
        try await server.shutdown()
    }

    func testOptionsValidation() throws {
        let state = try temporaryStateDirectory()
        func invalid(_ options: GatewayOptions, _ expected: String? = nil, line: UInt = #line) {
            XCTAssertThrowsError(try GatewayLock.acquire(options).port, line: line) { error in
                guard case .invalidArgument(let message) = error as? GatewayError else {
                    return XCTFail("expected invalidArgument, got \(error)", line: line)
                }
                if let expected { XCTAssertTrue(message.contains(expected), message, line: line) }
            }
        }
        invalid(GatewayOptions(port: 70000, stateDirectory: state))
        invalid(GatewayOptions(port: -1, stateDirectory: state), "port")
        invalid(GatewayOptions(stateDirectory: state, profile: "Not a profile!"))
        invalid(GatewayOptions(stateDirectory: state, profile: "work", dev: true))
        invalid(GatewayOptions(port: 0, bind: .lan, stateDirectory: state),
                "Refusing to bind gateway to lan without auth.")
        invalid(GatewayOptions(port: 0, stateDirectory: state, auth: .token("")))
        invalid(GatewayOptions(stateDirectory: state, timeout: .seconds(-1)), "timeout")
        invalid(GatewayOptions(stateDirectory: state, pollInterval: .seconds(10_000_000)), "pollInterval")
        XCTAssertThrowsError(try GatewayLock.status(GatewayOptions(profile: "bad name")))
        XCTAssertEqual(lockFiles(in: lockDirectory(of: state)), [])

        // fromEnvironment() validates the environment when called.
        setenv("OPENCLAW_GATEWAY_PORT", "not-a-port", 1)
        defer { unsetenv("OPENCLAW_GATEWAY_PORT") }
        XCTAssertThrowsError(try GatewayOptions.fromEnvironment()) { error in
            guard case .invalidArgument(let message) = error as? GatewayError else {
                return XCTFail("expected invalidArgument, got \(error)")
            }
            XCTAssertTrue(message.contains("OPENCLAW_GATEWAY_PORT"), message)
        }
        setenv("OPENCLAW_GATEWAY_PORT", "18999", 1)
        setenv("OPENCLAW_STATE_DIR", state, 1)
        defer { unsetenv("OPENCLAW_STATE_DIR") }
        let fromEnvironment = try GatewayOptions.fromEnvironment()
        XCTAssertTrue(fromEnvironment.usesEnvironment)
        XCTAssertEqual(try GatewayLock.status(fromEnvironment).port, 18999, "the environment was not used")
        XCTAssertEqual(try GatewayLock.status(GatewayOptions(stateDirectory: state)).port, 18789)
        // ... and fields set afterwards override it.
        var overridden = fromEnvironment
        overridden.port = 70000
        invalid(overridden)
    }
}
