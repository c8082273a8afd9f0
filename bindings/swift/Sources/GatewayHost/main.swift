// A whole host (the README's example): run the gateway in-process for a while (60 s, or the
// first argument), answering `echo` and broadcasting `demo.tick`, then shut down. A second copy
// prints the holder (pid, port) and exits 1, as the Node gateway does.
import Foundation
import Gateway

let seconds = CommandLine.arguments.dropFirst().first.flatMap { Int($0) } ?? 60
do {
    let lock = try GatewayLock.acquire(.fromEnvironment())  // SPEC §1: OPENCLAW_* and ~/.openclaw
    var methods = GatewayMethods()
    methods.method("echo") { request in request.params }     // answered as a task; may throw
    methods.event("demo.tick")
    let server = try GatewayServer.serve(lock: lock, methods: methods)
    print("listening on ws://127.0.0.1:\(server.port) (pid \(getpid()))")
    for n in 0..<seconds {
        try server.broadcast(event: "demo.tick", payload: ["n": n])
        try await Task.sleep(for: .seconds(1))
    }
    try await server.shutdown(timeout: .seconds(5))          // port free, lock files gone
} catch {
    FileHandle.standardError.write(Data("Gateway failed to start: \(error)\n".utf8))
    exit(1)
}
