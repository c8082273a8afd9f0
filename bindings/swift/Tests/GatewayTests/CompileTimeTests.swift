import Foundation
import XCTest

/// What the type system refuses: code a host must not be able to write, type-checked by the
/// compiler against the `Gateway` module this test was built with.
final class CompileTimeTests: XCTestCase {
    /// The compiler's complaints about `code` (a `main.swift` that imports Gateway), or nil
    /// when it compiles.
    func compile(_ code: String) throws -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin"
        guard let swiftc = path.split(separator: ":").map({ "\($0)/swiftc" })
            .first(where: FileManager.default.isExecutableFile(atPath:))
        else { throw XCTSkip("no swiftc on PATH (\(path))") }
        #if os(macOS)
        let built = Bundle(for: Self.self).bundleURL.deletingLastPathComponent()
        #else
        let built = Bundle.main.executableURL!.deletingLastPathComponent()
        #endif
        let modules = built.appendingPathComponent("Modules")
        guard FileManager.default.fileExists(atPath: modules.appendingPathComponent("Gateway.swiftmodule").path)
        else { throw XCTSkip("no Gateway.swiftmodule in \(modules.path)") }
        let moduleMap = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Sources/CGateway/module.modulemap")

        let source = URL(fileURLWithPath: try temporaryStateDirectory()).appendingPathComponent("main.swift")
        try ("import Gateway\n" + code).write(to: source, atomically: true, encoding: .utf8)
        let compiler = Process()
        compiler.executableURL = URL(fileURLWithPath: swiftc)
        // -emit-sil: ownership is checked by the mandatory SIL passes, after type checking.
        compiler.arguments = ["-emit-sil", "-o", "/dev/null", "-swift-version", "6", "-I", modules.path,
                              "-Xcc", "-fmodule-map-file=\(moduleMap.path)", source.path]
        let output = Pipe()
        compiler.standardOutput = output
        compiler.standardError = output
        try compiler.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        compiler.waitUntilExit()
        return compiler.terminationStatus == 0 ? nil : text
    }

    func testALockIsUsedExactlyOnce() throws {
        let acquire = "func host() throws {\n    let lock = try GatewayLock.acquire()\n"
        // The control: one use compiles (so a failure below is the type system's doing).
        XCTAssertNil(try compile(acquire + "    _ = try GatewayServer.serve(lock: lock)\n}\n"))

        let twice = [
            "served twice": "    _ = try GatewayServer.serve(lock: lock)\n    _ = try GatewayServer.serve(lock: lock)\n",
            "used after serve": "    _ = try GatewayServer.serve(lock: lock)\n    _ = lock.port\n",
            "served after release": "    lock.release()\n    _ = try GatewayServer.serve(lock: lock)\n",
            "copied": "    let copy = lock\n    _ = try GatewayServer.serve(lock: lock)\n    copy.release()\n",
        ]
        for (misuse, body) in twice {
            let complaints = try compile(acquire + body + "}\n")
            XCTAssertNotNil(complaints, "a lock \(misuse) compiles")
            XCTAssertTrue(complaints?.contains("consumed more than once") ?? false
                || complaints?.contains("used after consume") ?? false,
                "\(misuse): \(complaints ?? "")")
        }
    }
}
