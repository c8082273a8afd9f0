import CGateway
import Foundation
import XCTest

@testable import Gateway

/// Every `gw_result` of include/gateway.h becomes the `GatewayError` case of its name and back,
/// and no case stands for a number the header lacks: adding a result to the C ABI fails here
/// until Swift has it, and so does mapping one to the wrong case.
final class ResultCodeTests: XCTestCase {
    /// (name, number) of each enumerator of `enum gw_result` in the committed header.
    func headerResults() throws -> [(name: String, code: UInt32)] {
        let header = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("include/gateway.h")
        let text = try String(contentsOf: header, encoding: .utf8)
        guard let start = text.range(of: "enum gw_result\n"),
            let end = text.range(of: "};", range: start.upperBound..<text.endIndex)
        else {
            XCTFail("no `enum gw_result { ... };` in \(header.path)")
            return []
        }
        let pattern = try NSRegularExpression(pattern: #"^\s*(GW_[A-Z_]+)\s*=\s*(\d+),"#, options: .anchorsMatchLines)
        let body = String(text[start.upperBound..<end.lowerBound])
        return pattern.matches(in: body, range: NSRange(body.startIndex..., in: body)).map { match in
            let name = String(body[Range(match.range(at: 1), in: body)!])
            let code = UInt32(body[Range(match.range(at: 2), in: body)!])!
            return (name, code)
        }
    }

    /// `GW_ERR_LOCK_IO` → `lockio`, `lockIO` → `lockio`: the names to compare.
    func folded(_ name: String) -> String {
        name.replacingOccurrences(of: "GW_ERR_", with: "").replacingOccurrences(of: "_", with: "").lowercased()
    }

    func testEveryResultCodeHasTheSwiftCaseOfItsName() throws {
        let results = try headerResults()
        XCTAssertGreaterThanOrEqual(results.count, 14, "the header parse found too few results")
        XCTAssertEqual(results.first?.name, "GW_OK")
        for (name, code) in results where code != GW_OK.rawValue {
            let error = GatewayError(code: code, message: "m")
            // The case's name, as Swift spells it: `addrInUse` for GW_ERR_ADDR_IN_USE.
            let caseName = Mirror(reflecting: error).children.first?.label ?? "\(error)"
            XCTAssertEqual(folded(caseName), folded(name), "\(name) = \(code) becomes .\(caseName)")
            XCTAssertEqual(error.code, code, "\(name): .\(caseName).code")
            XCTAssertEqual(error.message, "m", name)
            XCTAssertEqual(String(cString: gw_result_name(code)), name, "the library names \(code) otherwise")
        }
        // The other way: no Swift case for a number the header does not have.
        let known = Set(results.map(\.code))
        for code in UInt32(1)...64 where !known.contains(code) {
            guard case .unknown = GatewayError(code: code, message: "m") else {
                XCTFail("GatewayError has a case for \(code), which include/gateway.h lacks")
                continue
            }
        }
    }

    func testABIVersion() {
        XCTAssertEqual(gatewayABIVersion, UInt32(GATEWAY_ABI_VERSION), "the header changed its ABI: update the wrapper")
        XCTAssertEqual(gw_abi_version(), gatewayABIVersion)
        XCTAssertNoThrow(try checkABIVersion())
    }
}
