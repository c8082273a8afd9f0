//! A Rust host of the gateway: it takes the lock, serves OpenClaw's protocol, answers an
//! `echo` method, pushes a `demo.tick` event every few seconds, and stops on Ctrl-C.
//!
//! ```sh
//! OPENCLAW_GATEWAY_TOKEN=secret cargo run --example rust_host
//! # then, from any protocol-4 client: connect with auth.token "secret", call "echo"
//! ```

use std::time::Duration;

use gateway::{
    ConnectionEvent, Gateway, GatewayLock, GatewayOptions, Handlers, MethodError, ServeOptions,
};
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = GatewayOptions::from_env()?; // SPEC §1: OPENCLAW_* and ~/.openclaw
    let lock = GatewayLock::acquire(&options)?; // this process is now the gateway

    let handlers = Handlers::new()
        // Clients granted operator.read may call `echo`; it answers with its params.
        .method_with_scope("echo", "operator.read", |request| async move {
            if request.params.is_null() {
                return Err(MethodError::invalid_request("echo needs params"));
            }
            Ok(json!({ "echo": request.params, "conn": request.conn_id() }))
        })
        .event("demo.tick")
        .on_connection(|event| match event {
            ConnectionEvent::Opened(client) => {
                eprintln!(
                    "client {} connected ({})",
                    client.conn_id,
                    client.client_id()
                )
            }
            ConnectionEvent::Closed(client) => eprintln!("client {} left", client.conn_id),
        });
    let gateway = Gateway::serve(
        lock,
        ServeOptions {
            handlers,
            ..ServeOptions::default()
        },
    )?;
    println!("listening on ws://127.0.0.1:{}", gateway.port());

    // The host's own loop: a periodic event, until Ctrl-C.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let events = gateway.handle();
    runtime.block_on(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        let mut n = 0u64;
        loop {
            tokio::select! {
                _ = every.tick() => {
                    n += 1;
                    events.broadcast("demo.tick", &json!({ "n": n }));
                }
                _ = tokio::signal::ctrl_c() => break,
            }
        }
    });
    gateway.shutdown(Duration::from_secs(5)); // shutdown event, 1012, port free, lock gone
    Ok(())
}
