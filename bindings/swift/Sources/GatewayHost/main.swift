// A whole host (the README's example): run the gateway in-process for a while (60 s, or the
// first argument), answering `echo` and broadcasting `demo.tick`, then shut down. A second copy
// prints the holder (pid, port) and exits 1, as the Node gateway does.
import Foundation
import Gateway

struct Health: Encodable { let ok: Bool, ticks: Int }

let seconds = CommandLine.arguments.dropFirst().first.flatMap { Int($0) } ?? 60
do {
    var methods = GatewayMethods()
    methods.method("echo", scope: "operator.read") { request in request.params }  // a task; may throw
    methods.event("demo.tick")
    let server = try GatewayServer.serve(
        lock: GatewayLock.acquire(.fromEnvironment()),       // SPEC §1: OPENCLAW_* and ~/.openclaw
        options: GatewayServeOptions(requestTimeout: .seconds(10)),
        methods: methods)
    print("listening on ws://127.0.0.1:\(server.port) (pid \(getpid()))")
    for n in 0..<seconds {
        try server.broadcast(event: "demo.tick", payload: ["n": n])
        try server.setHealth(Health(ok: true, ticks: n + 1))  // what `health` answers from now on
        try await Task.sleep(for: .seconds(1))
    }
    try await server.shutdown(timeout: .seconds(5))          // port free, lock files gone
} catch {
    FileHandle.standardError.write(Data("Gateway failed to start: \(error)\n".utf8))
    exit(1)
}
