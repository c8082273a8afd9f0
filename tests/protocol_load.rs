//! The protocol under load: 1,000 concurrent clients, and a slow consumer that must not grow
//! the server's memory.

mod common;
mod wsclient;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use gateway::{Auth, Handlers, ProtocolOptions};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use wsclient::{Client, TestGateway, connect_params, raise_nofile_limit, rss_bytes};

const CLIENTS: usize = 1000;

/// One test at a time: the RSS figures are the process's, and 1,000 clients need the CPU.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_clients_are_all_answered() {
    let _serial = SERIAL.lock().await;
    raise_nofile_limit(4 * CLIENTS as u64 + 256);
    let handlers =
        Handlers::new().method_with_scope("echo", "operator.read", |request| async move {
            Ok(json!({ "conn": request.conn_id(), "echo": request.params }))
        });
    let server = TestGateway::start(
        Auth::Token("load-token".into()),
        ProtocolOptions::default(),
        handlers,
    );
    let port = server.port;
    let started = Instant::now();
    // Everyone stays connected until all are done, so all 1,000 are open at once.
    let barrier = Arc::new(tokio::sync::Barrier::new(CLIENTS + 1));
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                let mut params = connect_params();
                params["auth"] = json!({ "token": "load-token" });
                params["scopes"] = json!(["operator.read"]);
                let mut client = Client::open(port).await;
                let res = client.connect_with(params).await;
                assert_eq!(res["ok"], true, "client {i}: {res}");
                let conn: u64 = res["payload"]["server"]["connId"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                let health = client.call(&format!("h{i}"), "health", Value::Null).await;
                assert_eq!(
                    (&health["id"], &health["ok"]),
                    (&json!(format!("h{i}")), &json!(true))
                );
                let echo = client
                    .call(&format!("e{i}"), "echo", json!({ "i": i }))
                    .await;
                assert_eq!(echo["id"], format!("e{i}"));
                assert_eq!(echo["payload"], json!({ "conn": conn, "echo": { "i": i } }));
                barrier.wait().await;
                client
            })
        })
        .collect();
    barrier.wait().await;
    assert_eq!(server.gateway().handle().connection_count(), CLIENTS);
    let elapsed = started.elapsed();
    let mut clients = Vec::with_capacity(CLIENTS);
    for task in tasks {
        clients.push(task.await.unwrap());
    }
    eprintln!("{CLIENTS} clients: challenge → connect → health → echo in {elapsed:?}");
    drop(clients);
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.gateway().handle().connection_count() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.gateway().handle().connection_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_closed_and_memory_stays_bounded() {
    let _serial = SERIAL.lock().await;
    const LIMIT: usize = 8 * 1024 * 1024;
    let protocol = ProtocolOptions {
        max_buffered_bytes: LIMIT,
        ..ProtocolOptions::default()
    };
    // `blob` is broadcast to operator.read holders, as both clients are.
    let server = TestGateway::start(Auth::None, protocol, Handlers::new().event("blob"));
    let mut params = connect_params();
    params["scopes"] = json!(["operator.read"]);
    // A well-behaved client that keeps reading alongside.
    let (reader, _) = Client::connected(server.port, params.clone()).await;
    let (slow, _) = Client::connected(server.port, params).await;
    let events = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&events);
    let received = tokio::spawn(async move {
        let mut reader = reader;
        while let Ok(Some(Ok(message))) =
            tokio::time::timeout(Duration::from_secs(1), reader.ws.next()).await
        {
            // Only the broadcasts: a `health` refresh (every 60 s) may come in between.
            if let Message::Text(text) = message
                && text.contains(r#""event":"blob""#)
            {
                counter.fetch_add(1, Ordering::Release);
            }
        }
    });
    let before = rss_bytes();
    let chunk = "x".repeat(64 * 1024);
    let handle = server.gateway().handle().clone();
    // 128 MiB worth of events for a client that reads none of them.
    let broadcasts = 2048;
    let read = Arc::clone(&events);
    let blaster = tokio::task::spawn_blocking(move || {
        let mut peak = 0;
        for n in 0..broadcasts {
            handle.broadcast("blob", &json!({ "n": n, "data": chunk }));
            if n % 32 == 31 {
                peak = peak.max(rss_bytes());
                // The reader is never more than ~2 MiB behind, however slow the machine.
                let deadline = Instant::now() + Duration::from_secs(10);
                while read.load(Ordering::Acquire) + 32 < n && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }
        peak
    });
    let peak = blaster.await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.gateway().handle().connection_count() > 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        server.gateway().handle().connection_count(),
        1,
        "the slow consumer is closed, the reader is not"
    );
    let growth = peak.saturating_sub(before);
    eprintln!(
        "slow consumer: RSS before {} MiB, peak {} MiB (+{} MiB)",
        before >> 20,
        peak >> 20,
        growth >> 20
    );
    // The slow client's queue is capped at 8 MiB; the reader's is drained continuously.
    assert!(growth < 48 * 1024 * 1024, "RSS grew by {growth} bytes");
    received.await.unwrap();
    assert_eq!(
        events.load(Ordering::Acquire),
        broadcasts,
        "the reading client got every event"
    );
    drop(slow);
}
