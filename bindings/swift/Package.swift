// swift-tools-version: 6.0
// The Swift package of the gateway: `CGateway` is the C ABI (include/gateway.h over the Rust
// static library libgateway.a), `Gateway` the Swift API over it. Swift 6 language mode: the
// compiler checks every Sendable claim (macOS 15 for the standard library's `Mutex`).
//
// Linux (or macOS without Xcode): build the library first and give the linker a directory that
// holds libgateway.a but not libgateway.so (else -lgateway picks the shared one):
//   cargo build --release --lib && mkdir -p target/static && cp target/release/libgateway.a target/static/
//   swift build --package-path bindings/swift -Xlinker -L$PWD/target/static
// (scripts/swift-test.sh does this in a Debian 13 root, where Swift is packaged.)
// macOS with Xcode: scripts/build-xcframework.sh writes bindings/swift/Gateway.xcframework, which
// this manifest then uses instead of the system library (no linker flags needed).
import Foundation
import PackageDescription

let xcframework = "Gateway.xcframework"
let useXCFramework = FileManager.default.fileExists(
    atPath: Context.packageDirectory + "/" + xcframework)

let cGateway: Target = useXCFramework
    ? .binaryTarget(name: "CGateway", path: xcframework)
    // module.modulemap: the committed header, and `link "gateway"` (the search path comes from
    // the command line: never unsafeFlags in a library target).
    : .systemLibrary(name: "CGateway", path: "Sources/CGateway")

let package = Package(
    name: "Gateway",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "Gateway", targets: ["Gateway"]),
        .executable(name: "gateway-swift-host", targets: ["GatewayHost"]),
    ],
    targets: [
        cGateway,
        .target(name: "Gateway", dependencies: ["CGateway"]),
        // The README's ten-line host; the tests also run it as "a second process".
        .executableTarget(name: "GatewayHost", dependencies: ["Gateway"]),
        .testTarget(name: "GatewayTests", dependencies: ["Gateway", "CGateway"]),
    ],
    swiftLanguageModes: [.v6]
)
