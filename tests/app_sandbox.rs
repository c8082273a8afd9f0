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

/// `gateway ARGS` as the sandbox runs it, to its exit.
fn run_sandboxed(env: &TestEnv, args: &[&str]) -> Exit {
    let mut command = env.command(args);
    command.env("APP_SANDBOX_CONTAINER_ID", CONTAINER);
    run_to_exit(command, Duration::from_secs(10))
}

/// `exit` is the refusal of the default state dir: exit code 1 and one stderr line, `context`
/// then the message that names the dir, the container and what to pass.
fn assert_refused(exit: &Exit, env: &TestEnv, context: &str) {
    assert_eq!(exit.code, Some(1), "{exit:?}");
    let lines = exit.stderr_lines();
    assert_eq!(lines.len(), 1, "{exit:?}");
    let expected = format!("{context}refusing to use the default state dir ");
    assert!(lines[0].starts_with(&expected), "{exit:?}");
    assert_refusal(lines[0], env);
}

#[test]
fn a_sandboxed_run_without_a_state_dir_is_refused_at_once() {
    let env = TestEnv::new();
    let exit = run_sandboxed(&env, &["run", "--port", &free_port().to_string()]);
    assert_refused(&exit, &env, "Gateway failed to start: ");
    assert!(exit.stdout.is_empty(), "{exit:?}");
    // Refused before anything was made: no state dir, no lock dir.
    assert!(!env.state_dir().exists());
    // A profile's state dir is as much the container's.
    let exit = run_sandboxed(&env, &["run", "--profile", "work", "--port", "0"]);
    assert_eq!(exit.code, Some(1), "{exit:?}");
    assert!(
        exit.stderr.contains(".openclaw-work") && exit.stderr.contains(CONTAINER),
        "{exit:?}"
    );
}

#[test]
fn a_sandboxed_status_without_a_state_dir_is_refused() {
    let env = TestEnv::new();
    let exit = run_sandboxed(&env, &["status"]);
    assert_refused(&exit, &env, "gateway status failed: ");
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
