import Foundation
import XCTest

@testable import Gateway

/// Cluster mode from Swift (issue 14). The store-less tests always run; the others need a real
/// etcd, whose client URLs `scripts/swift-test.sh` passes in `GATEWAY_TEST_ETCD` (it starts one
/// member on loopback when etcd is installed). Leadership lost on a store that stops answering
/// is tested from C (tests/c_abi.rs), where the test can stop the store.
final class ClusterTests: XCTestCase {
    /// A "host" of its own (state dir, config, lock dir) in cluster `name` on `endpoints`.
    func hostOptions(_ endpoints: [String], name: String, wait: GatewayCluster.Wait = .failAtOnce,
                     cancel: GatewayCancel? = nil) throws -> GatewayOptions {
        GatewayOptions(
            port: 0, stateDirectory: try temporaryStateDirectory(), timeout: .milliseconds(300),
            // A long lease: no case waits one out, and a loaded machine must not miss a renew
            // deadline (which fences the leader) mid-case.
            cluster: GatewayCluster(etcd: endpoints, name: name, ttl: .seconds(30), wait: wait, cancel: cancel))
    }

    func etcd() throws -> [String] {
        guard let urls = ProcessInfo.processInfo.environment["GATEWAY_TEST_ETCD"], !urls.isEmpty else {
            throw XCTSkip("GATEWAY_TEST_ETCD is not set (scripts/swift-test.sh sets it when etcd is installed)")
        }
        return urls.split(separator: ",").map(String.init)
    }

    /// Bad settings are `.invalidArgument` naming what is wrong, before any store is asked.
    func testBadClusterSettingsAreTypedErrors() throws {
        let cases: [(GatewayCluster, String)] = [
            (GatewayCluster(etcd: ["10.0.0.1:2379"]), "is not an http:// URL"),
            (GatewayCluster(etcd: ["http://127.0.0.1:1"], ttl: .milliseconds(1500)), "is not a whole number of seconds"),
            (GatewayCluster(etcd: ["http://127.0.0.1:1"], name: "no spaces"), "is not 1-128 letters"),
        ]
        for (cluster, want) in cases {
            var options = GatewayOptions(port: 0, stateDirectory: try temporaryStateDirectory())
            options.cluster = cluster
            XCTAssertThrowsError(try GatewayLock.acquire(options).release()) { error in
                guard case .invalidArgument(let message) = error as? GatewayError else {
                    return XCTFail("expected invalidArgument for \(cluster), got \(error)")
                }
                XCTAssertTrue(message.contains(want), message)
            }
        }
    }

    /// A store nobody answers at is `.clusterUnavailable` naming it; a cancelled standby is
    /// `.cancelled`; without cluster mode a lock has no token and is no leader.
    func testWithoutAStoreTheErrorsAreTypedAndNothingIsHeld() throws {
        let nobody = "http://127.0.0.1:1"
        let options = try hostOptions([nobody], name: "swift-nobody")
        XCTAssertThrowsError(try GatewayLock.acquire(options).release()) { error in
            guard case .clusterUnavailable(let message) = error as? GatewayError else {
                return XCTFail("expected clusterUnavailable, got \(error)")
            }
            XCTAssertTrue(message.contains(nobody), message)
        }
        XCTAssertThrowsError(try GatewayLock.clusterLeader(options)) { error in
            guard case .clusterUnavailable = error as? GatewayError else {
                return XCTFail("expected clusterUnavailable, got \(error)")
            }
        }
        XCTAssertEqual(lockFiles(in: lockDirectory(of: options.stateDirectory!)), [])

        let cancel = GatewayCancel()
        cancel.cancel()
        let cancelled = try hostOptions([nobody], name: "swift-nobody", wait: .forever, cancel: cancel)
        XCTAssertThrowsError(try GatewayLock.acquire(cancelled).release()) { error in
            guard case .cancelled = error as? GatewayError else { return XCTFail("expected cancelled, got \(error)") }
        }

        let plain = try GatewayLock.acquire(GatewayOptions(port: 0, stateDirectory: try temporaryStateDirectory()))
        XCTAssertNil(plain.fencingToken)
        XCTAssertFalse(plain.isLeader)
        plain.release()
        XCTAssertThrowsError(try GatewayLock.clusterLeader(GatewayOptions(stateDirectory: try temporaryStateDirectory()))) {
            guard case .invalidArgument = $0 as? GatewayError else { return XCTFail("expected invalidArgument, got \($0)") }
        }
    }

    /// One leader with a fencing token; a standby refused with the leader's host, pid and port;
    /// a standby cancelled from another thread; one taking over with a larger token when the
    /// leader lets go; a served leader says the same, and its shutdown is no leadership lost.
    func testOneLeadsTheOthersStandByAndOneTakesOver() async throws {
        let endpoints = try etcd()
        let name = "swift-\(getpid())"
        let first = try hostOptions(endpoints, name: name)
        let leader = try GatewayLock.acquire(first)
        let token = try XCTUnwrap(leader.fencingToken)
        XCTAssertGreaterThan(token, 0)
        XCTAssertTrue(leader.isLeader)
        let port = leader.port

        let seen = try XCTUnwrap(try GatewayLock.clusterLeader(first))
        XCTAssertEqual(seen.pid, getpid())
        XCTAssertEqual(seen.port, port)
        XCTAssertEqual(seen.fencingToken, token)
        XCTAssertFalse(seen.host.isEmpty)

        XCTAssertThrowsError(try GatewayLock.acquire(try hostOptions(endpoints, name: name)).release()) { error in
            guard case .clusterLeader(let host, let pid, let holderPort, let message) = error as? GatewayError else {
                return XCTFail("expected clusterLeader, got \(error)")
            }
            XCTAssertEqual(host, seen.host)
            XCTAssertEqual(pid, getpid())
            XCTAssertEqual(holderPort, port)
            XCTAssertTrue(message.contains("fencing token \(token)"), message)
        }

        let cancel = GatewayCancel()
        let standby = try hostOptions(endpoints, name: name, wait: .forever, cancel: cancel)
        Thread.detachNewThread {
            Thread.sleep(forTimeInterval: 0.3)
            cancel.cancel()
        }
        XCTAssertThrowsError(try GatewayLock.acquire(standby).release()) { error in
            guard case .cancelled = error as? GatewayError else { return XCTFail("expected cancelled, got \(error)") }
        }

        let next = try hostOptions(endpoints, name: name, wait: .forever)
        let tookOver = Recorder<UInt64>()
        let waiting = Thread {
            do {
                let lock = try GatewayLock.acquire(next)
                tookOver.append(lock.fencingToken ?? 0)
                lock.release()
            } catch {
                XCTFail("the standby failed: \(error)")
            }
        }
        waiting.start()
        try await Task.sleep(for: .milliseconds(300))
        XCTAssertEqual(tookOver.all, [], "a standby led while the leader held")
        leader.release()
        XCTAssertTrue(eventually(seconds: 10) { !tookOver.all.isEmpty }, "the standby never took over")
        XCTAssertGreaterThan(tookOver.all.first ?? 0, token)

        let states = Recorder<GatewayStateChange>()
        let server = try GatewayServer.serve(
            lock: GatewayLock.acquire(try hostOptions(endpoints, name: name)), onStateChange: { states.append($0) })
        XCTAssertTrue(server.isLeader)
        XCTAssertGreaterThan(try XCTUnwrap(server.fencingToken), tookOver.all.first ?? 0)
        try await server.shutdown()
        XCTAssertNil(server.fencingToken)
        XCTAssertEqual(states.all, [.ready, .stopped(drained: true)])
        XCTAssertNil(try GatewayLock.clusterLeader(first), "the leader did not resign")
    }
}
