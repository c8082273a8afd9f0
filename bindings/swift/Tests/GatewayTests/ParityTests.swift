import Foundation
import XCTest

/// Swift reaches all of the C ABI: adding a function or a callback to include/gateway.h fails
/// here until the Swift wrapper uses it (the Rust ↔ C half is tests/c_abi.rs's knob table).
final class ParityTests: XCTestCase {
    /// C functions the wrapper has no call for, and why that is right.
    let notWrapped = [
        "gw_result_name": "GatewayError's cases are the result names (ResultCodeTests checks them)",
    ]

    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func header() throws -> String {
        try String(contentsOf: root.appendingPathComponent("include/gateway.h"), encoding: .utf8)
    }

    /// All of Sources/Gateway, as one text.
    func wrapper() throws -> String {
        let sources = root.appendingPathComponent("bindings/swift/Sources/Gateway")
        return try FileManager.default.contentsOfDirectory(atPath: sources.path).sorted()
            .filter { $0.hasSuffix(".swift") }
            .map { try String(contentsOf: sources.appendingPathComponent($0), encoding: .utf8) }
            .joined(separator: "\n")
    }

    func matches(_ pattern: String, in text: String) throws -> [String] {
        let regex = try NSRegularExpression(pattern: pattern, options: .anchorsMatchLines)
        return regex.matches(in: text, range: NSRange(text.startIndex..., in: text)).map {
            String(text[Range($0.range(at: 1), in: text)!])
        }
    }

    func testEveryCFunctionIsCalledByTheWrapper() throws {
        // A declaration starts at column 0: `gw_result gw_serve(`, `struct gw_lock *gw_...(`.
        let functions = try matches(#"^(?!typedef)[A-Za-z][\w *]*?\b(gw_\w+)\("#, in: header())
        XCTAssertGreaterThan(functions.count, 40, "the header parse found too few functions")
        let swift = try wrapper()
        for function in functions where notWrapped[function] == nil {
            XCTAssertTrue(swift.contains("\(function)("), "\(function) has no Swift call: wrap it in Sources/Gateway")
        }
        for function in notWrapped.keys {
            XCTAssertTrue(functions.contains(function), "\(function) is gone from the header: drop it here")
        }
    }

    func testEveryCallbackIsSetByTheWrapper() throws {
        let text = try header()
        guard let start = text.range(of: "typedef struct gw_callbacks {"),
            let end = text.range(of: "} gw_callbacks;", range: start.upperBound..<text.endIndex)
        else { return XCTFail("no gw_callbacks struct in include/gateway.h") }
        let body = String(text[start.upperBound..<end.lowerBound])
        // `    gw_log_fn log;` or `    void (*free_userdata)(void *userdata);` (not comments).
        let regex = try NSRegularExpression(
            pattern: #"^    (?![ /*])(?:.*\(\*(\w+)\)\(.*|.*?(\w+));$"#, options: .anchorsMatchLines)
        let names = regex.matches(in: body, range: NSRange(body.startIndex..., in: body)).compactMap { match in
            [1, 2].compactMap { Range(match.range(at: $0), in: body).map { String(body[$0]) } }.first
        }
        XCTAssertTrue(Set(names).isSuperset(of: ["size", "userdata", "log", "free_userdata", "on_request"]),
                      "the gw_callbacks parse found \(names)")
        let swift = try wrapper()
        for field in names {
            XCTAssertTrue(swift.contains("callbacks.\(field) ="), "gw_callbacks.\(field) is never set by the wrapper")
        }
    }
}
