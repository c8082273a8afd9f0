//! The macOS App Sandbox (issue 10, item 6), through the variable the sandbox sets: with
//! `APP_SANDBOX_CONTAINER_ID` in the environment, `gateway run` and `gateway status` refuse the
//! default state dir (HOME is the app's container there) and say what to pass; given a state
//! dir, they work as anywhere else.

mod common;

use std::time::Duration;

use common::*;

const CONTAINER: &str = "com.example.SandboxedHost";

fn assert_refusal(line: &str, env: &TestEnv) {
    let default_dir = env.state_dir().display().to_string();
    for needle in [
        default_dir.as_str(),
        CONTAINER,
        "OPENCLAW_STATE_DIR",
        "com.apple.security.temporary-exception.files.home-relative-path.read-write",
    ] {
        assert!(line.contains(needle), "{needle:?} missing from {line:?}");
    }
}

#[test]
fn a_sandboxed_run_without_a_state_dir_is_refused_at_once() {
    let env = TestEnv::new();
    let mut command = env.command(&["run", "--port", &free_port().to_string()]);
    command.env("APP_SANDBOX_CONTAINER_ID", CONTAINER);
    let exit = run_to_exit(command, Duration::from_secs(10));
    assert_eq!(exit.code, Some(1), "{exit:?}");
    let lines = exit.stderr_lines();
    assert_eq!(lines.len(), 1, "{exit:?}");
    assert!(
        lines[0].starts_with("Gateway failed to start: refusing to use the default state dir "),
        "{exit:?}"
    );
    assert_refusal(lines[0], &env);
    assert!(exit.stdout.is_empty(), "{exit:?}");
    // Refused before anything was made: no state dir, no lock dir.
    assert!(!env.state_dir().exists());
    // A profile's state dir is as much the container's.
    let mut command = env.command(&["run", "--profile", "work", "--port", "0"]);
    command.env("APP_SANDBOX_CONTAINER_ID", CONTAINER);
    let exit = run_to_exit(command, Duration::from_secs(10));
    assert_eq!(exit.code, Some(1), "{exit:?}");
    assert!(
        exit.stderr.contains(".openclaw-work") && exit.stderr.contains(CONTAINER),
        "{exit:?}"
    );
}

#[test]
fn a_sandboxed_status_without_a_state_dir_is_refused() {
    let env = TestEnv::new();
    let mut command = env.command(&["status"]);
    command.env("APP_SANDBOX_CONTAINER_ID", CONTAINER);
    let exit = run_to_exit(command, Duration::from_secs(10));
    assert_eq!(exit.code, Some(1), "{exit:?}");
    let lines = exit.stderr_lines();
    assert_eq!(lines.len(), 1, "{exit:?}");
    assert!(
        lines[0].starts_with("gateway status failed: refusing to use the default state dir "),
        "{exit:?}"
    );
    assert_refusal(lines[0], &env);
}

#[test]
fn a_sandboxed_run_with_an_explicit_state_dir_serves_and_excludes() {
    let env = TestEnv::new();
    let state_dir = env.state_dir();
    let sandboxed = |args: &[&str]| {
        let mut command = env.command(args);
        command
            .env("APP_SANDBOX_CONTAINER_ID", CONTAINER)
            .env("OPENCLAW_STATE_DIR", &state_dir);
        command
    };
    let gateway = GatewayProcess::spawn(sandboxed(&["run", "--port", &free_port().to_string()]))
        .unwrap_or_else(|exit| panic!("a sandboxed gateway with a state dir starts: {exit:?}"));
    assert!(healthy(gateway.port));
    assert_eq!(env.lock_dir_entries().len(), 2);

    // An unsandboxed gateway on the same state dir is excluded by it, and the other way round.
    let exit = run_to_exit(
        env.command(&["run", "--port", &free_port().to_string()]),
        Duration::from_secs(10),
    );
    assert_eq!(exit.code, Some(1), "{exit:?}");
    assert!(
        exit.stderr
            .contains(&format!("gateway already running (pid {})", gateway.pid)),
        "{exit:?}"
    );
    let exit = run_to_exit(sandboxed(&["status"]), Duration::from_secs(10));
    assert_eq!(exit.code, Some(0), "{exit:?}");
    assert_eq!(gateway.terminate(), 0);
}
