import Foundation
import XCTest

@testable import Gateway

/// What a `GatewayLock` owns and reports: its log closure, an adopted listener, its loss.
final class LockTests: XCTestCase {
    /// Port 0 (the OS picks), a state dir of the test's own, a short wait for a live holder.
    func makeOptions() throws -> GatewayOptions {
        GatewayOptions(port: 0, stateDirectory: try temporaryStateDirectory(), timeout: .milliseconds(300))
    }

    /// The library owns the `log` given to `acquire` (its finalizer releases it): alive while a
    /// lock or its server may log, released once the last of them is gone, and at once when
    /// acquiring fails. Nothing on the Swift side keeps it.
    func testTheLockLogIsReleasedByTheLibraryWhenTheLastUserIsGone() async throws {
        let options = try makeOptions()
        weak var sentinel: Sentinel?
        /// A log closure that alone owns a new `sentinel`.
        func logOwningASentinel() -> @Sendable (GatewayLogLevel, String) -> Void {
            let owned = Sentinel()
            sentinel = owned
            return { _, _ in _ = owned }
        }

        // Released with the lock.
        let lock = try GatewayLock.acquire(options, log: logOwningASentinel())
        XCTAssertNotNil(sentinel, "the log was released while its lock is held")
        lock.release()
        XCTAssertTrue(eventually { sentinel == nil }, "releasing the lock did not release its log")

        // Kept by the server the lock became, released at its shutdown.
        let server = try GatewayServer.serve(lock: GatewayLock.acquire(options, log: logOwningASentinel()))
        XCTAssertEqual(try httpGet(port: server.port, path: "/healthz").status, 200)
        XCTAssertNotNil(sentinel, "the log was released while its server runs")
        try await server.shutdown()
        // The server object is still alive: only the library's finalizer can release it.
        XCTAssertTrue(eventually { sentinel == nil }, "shutting down did not release the lock's log")
        _ = server

        // Released when acquiring fails (here: another lock holds the config).
        let holder = try GatewayLock.acquire(options)
        XCTAssertThrowsError(try GatewayLock.acquire(options, log: logOwningASentinel()).port) { error in
            guard case .alreadyRunning = error as? GatewayError else {
                return XCTFail("expected alreadyRunning, got \(error)")
            }
        }
        XCTAssertTrue(eventually { sentinel == nil }, "a failed acquire kept its log")
        holder.release()

        // Released by a server dropped without shutdown, once its own thread has shut it down.
        _ = try GatewayServer.serve(lock: GatewayLock.acquire(options, log: logOwningASentinel()))
        XCTAssertTrue(eventually(seconds: 10) { sentinel == nil }, "a dropped server kept the lock's log")
    }

    /// Socket activation: the lock adopts a listening socket, takes its port, and the server
    /// answers on it.
    func testAcquireWithAListeningSocketServesOnIt() async throws {
        let options = try makeOptions()
        let lockDir = lockDirectory(of: options.stateDirectory!)
        let (fd, port) = try listeningSocket()
        let lock = try GatewayLock.acquire(options, listener: fd)
        XCTAssertEqual(lock.port, port, "the lock did not take the socket's port")
        XCTAssertFalse(lockFiles(in: lockDir).isEmpty, "the file locks were not taken")

        let server = try GatewayServer.serve(lock: lock)
        XCTAssertEqual(server.port, port)
        let health = try httpGet(port: port, path: "/healthz")
        XCTAssertEqual(health.status, 200, health.body)
        XCTAssertEqual(try GatewayLock.status(options).port, port, "the lock file records another port")

        try await server.shutdown(timeout: .seconds(2))
        XCTAssertTrue(canBind(port: port), "the adopted socket is still open after shutdown")
        XCTAssertEqual(lockFiles(in: lockDir), [])
    }

    /// The library owns the socket on every return: a failed acquire closes it, whether the
    /// Swift side refused the options or the library refused the lock.
    func testAFailedAcquireWithAListenerClosesIt() throws {
        let options = try makeOptions()

        var bad = options
        bad.port = -1  // refused by the Swift side, before the library has the socket
        let refused = try listeningSocket()
        XCTAssertThrowsError(try GatewayLock.acquire(bad, listener: refused.fd).port) { error in
            guard case .invalidArgument = error as? GatewayError else {
                return XCTFail("expected invalidArgument, got \(error)")
            }
        }
        XCTAssertTrue(canBind(port: refused.port), "options refused: the socket was left open")

        let holder = try GatewayLock.acquire(options)
        let taken = try listeningSocket()
        XCTAssertThrowsError(try GatewayLock.acquire(options, listener: taken.fd).port) { error in
            guard case .alreadyRunning(let pid, _, _) = error as? GatewayError else {
                return XCTFail("expected alreadyRunning, got \(error)")
            }
            XCTAssertEqual(pid, getpid())
        }
        XCTAssertTrue(canBind(port: taken.port), "lock refused: the socket was left open")
        holder.release()
    }

    /// `isLost` turns true once the re-check finds a lock file deleted, on a lock not served.
    func testIsLostOnceALockFileIsDeleted() throws {
        var options = try makeOptions()
        options.recheckInterval = .milliseconds(50)
        let lockDir = lockDirectory(of: options.stateDirectory!)
        let lock = try GatewayLock.acquire(options, log: { _, _ in })  // its error line stays off stderr
        usleep(200_000)  // a few re-checks that find everything in place
        XCTAssertFalse(lock.isLost, "an intact lock reported lost")

        let files = lockFiles(in: lockDir)
        XCTAssertFalse(files.isEmpty)
        for name in files { try FileManager.default.removeItem(atPath: "\(lockDir)/\(name)") }
        let deadline = Date().addingTimeInterval(2)
        while !lock.isLost, Date() < deadline { usleep(10_000) }
        XCTAssertTrue(lock.isLost, "the re-check never noticed the deleted lock files")
        lock.release()
    }

    /// A lock file written by a gateway on another machine (issue 13): refused at once with its
    /// host and pid, removed by `unlock` only with `force`, and a live lock never removed.
    func testAnotherMachinesLockIsRefusedAndUnlockedOnlyWithForce() throws {
        let options = try makeOptions()
        let lockDir = lockDirectory(of: options.stateDirectory!)
        try FileManager.default.createDirectory(
            atPath: lockDir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let planted = """
            {"pid":4242,"createdAt":"2026-11-21T00:36:45.087Z","port":18789,\
            "hostname":"host-elsewhere","bootId":"b-elsewhere","machineId":"m-elsewhere"}

            """
        XCTAssertTrue(
            FileManager.default.createFile(
                atPath: "\(lockDir)/gateway.state.lock", contents: Data(planted.utf8),
                attributes: [.posixPermissions: 0o600]))

        XCTAssertThrowsError(try GatewayLock.acquire(options).port) { error in
            guard case .heldByOtherHost(let host, let pid, let port, let message) = error as? GatewayError else {
                return XCTFail("expected heldByOtherHost, got \(error)")
            }
            XCTAssertEqual(host, "host-elsewhere")
            XCTAssertEqual(pid, 4242)
            XCTAssertEqual(port, 18789)
            XCTAssertEqual(
                message,
                "gateway already running on host host-elsewhere (pid 4242); if that gateway is gone, run `gateway unlock --force` on this machine"
            )
        }
        XCTAssertThrowsError(try GatewayLock.unlock(options)) { error in
            guard case .heldByOtherHost = error as? GatewayError else {
                return XCTFail("expected heldByOtherHost, got \(error)")
            }
        }
        XCTAssertEqual(lockFiles(in: lockDir), ["gateway.state.lock"])
        XCTAssertEqual(try GatewayLock.unlock(options, force: true), 1)
        XCTAssertEqual(lockFiles(in: lockDir), [])

        let lock = try GatewayLock.acquire(options)
        XCTAssertThrowsError(try GatewayLock.unlock(options, force: true)) { error in
            guard case .alreadyRunning(let pid, _, _) = error as? GatewayError else {
                return XCTFail("expected alreadyRunning, got \(error)")
            }
            XCTAssertEqual(pid, getpid())
        }
        lock.release()
        XCTAssertEqual(try GatewayLock.unlock(options), 0)
    }
}
