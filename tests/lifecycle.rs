//! What a served gateway tells its host: ready, lock lost, stopped (drained or not), and where
//! its log lines go (`ServeOptions::on_state`, `ServeOptions::logger`, `ShutdownReport`).

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use gateway::{Gateway, GatewayLock, GatewayState, Logger, ServeOptions, StateHandler};

type Record = Arc<Mutex<Vec<String>>>;

fn recording() -> (ServeOptions, Record) {
    let record: Record = Arc::default();
    let states = Arc::clone(&record);
    let logs = Arc::clone(&record);
    let options = ServeOptions {
        on_state: Some(StateHandler::new(move |state| {
            states.lock().unwrap().push(format!("{state:?}"))
        })),
        logger: Some(Logger::new(move |_, line| {
            logs.lock().unwrap().push(format!("log {line}"))
        })),
        ..ServeOptions::default()
    };
    (options, record)
}

#[test]
fn ready_then_stopped_drained() {
    let env = TestEnv::new();
    let lock = GatewayLock::acquire(&env.options().port(0)).unwrap();
    let (options, record) = recording();
    let gateway = Gateway::serve(lock, options).unwrap();
    assert_eq!(*record.lock().unwrap(), ["Ready"]);
    assert!(healthy(gateway.port()));

    let report = gateway.shutdown(Duration::from_secs(2));
    assert!(report.drained);
    let record = record.lock().unwrap();
    assert!(
        record[1].starts_with("log gateway stopped in "),
        "{record:?}"
    );
    assert_eq!(record.last().unwrap(), "Stopped { drained: true }");
    assert!(env.lock_dir_entries().is_empty());
}

#[test]
fn lock_lost_is_told_and_logged_to_the_serve_logger() {
    let env = TestEnv::new();
    let options = env
        .options()
        .port(0)
        .recheck_interval(Duration::from_millis(20));
    let lock = GatewayLock::acquire(&options).unwrap();
    let (serve_options, record) = recording();
    let gateway = Gateway::serve(lock, serve_options).unwrap();
    std::fs::remove_file(env.state_lock()).unwrap();
    let lost = format!(
        "{:?}",
        GatewayState::LockLost {
            path: env.state_lock()
        }
    );
    assert!(
        wait_until(Duration::from_secs(5), || record
            .lock()
            .unwrap()
            .contains(&lost)),
        "{record:?}"
    );
    // The re-check's own message went to the serve logger, not the options' default one.
    assert!(record.lock().unwrap().iter().any(|line| {
        line.starts_with("log gateway lock file ") && line.contains("was removed or replaced")
    }));
    assert!(gateway.shutdown(Duration::from_secs(1)).drained);
}

#[test]
fn a_connection_open_past_the_timeout_is_not_drained() {
    let env = TestEnv::new();
    let lock = GatewayLock::acquire(&env.options().port(free_port())).unwrap();
    let (options, record) = recording();
    let gateway = Gateway::serve(lock, options).unwrap();
    let port = gateway.port();
    let mut stuck = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stuck.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    assert!(
        wait_until_server_read(port, 1),
        "{:?}",
        tcp_sockets_on(port)
    );

    let report = gateway.shutdown(Duration::from_millis(100));
    assert!(!report.drained);
    assert_eq!(
        record.lock().unwrap().last().unwrap(),
        "Stopped { drained: false }"
    );
    assert!(port_is_free(port));
    assert!(env.lock_dir_entries().is_empty());
}
