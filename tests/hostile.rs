//! The lock directory and files are hostile ground (SPEC §2): what is there is checked, refused
//! with an error that names the path and the problem, and never followed, changed or removed.
//! And what we create is private whatever the umask.

mod common;
mod lockkit;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use common::*;
use gateway::GatewayLockError;
use lockkit::*;

fn uid() -> u32 {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() }
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn dir_message(path: &Path, problem: &str) -> String {
    format!(
        "refusing to use gateway lock directory {}: {problem}; remove it or make it a directory owned by uid {} with mode 0700",
        path.display(),
        uid()
    )
}

fn file_message(path: &Path, problem: &str) -> String {
    format!(
        "refusing to use gateway lock file {}: {problem}; remove it and start again",
        path.display()
    )
}

/// Acquisition and status must both refuse the lock dir with `message`, as the CLI does.
fn assert_lock_dir_refused(env: &TestEnv, problem: &str) {
    let message = dir_message(&env.lock_dir(), problem);
    let err = acquire_guarded(&env.options().port(0).timeout(TIMEOUT)).unwrap_err();
    assert!(
        matches!(err, GatewayLockError::UnsafeLockDir { .. }),
        "{err:?}"
    );
    assert_eq!(err.to_string(), message);
    let err = gateway::status(&env.options().port(free_port())).unwrap_err();
    assert_eq!(err.to_string(), message);
}

/// `gateway run` refuses too: exit 1, the message on stderr, no ready line.
fn assert_cli_refuses(env: &TestEnv, message: &str) {
    let port = free_port().to_string();
    let output = env
        .command(&["run", "--port", &port, "--lock-timeout-ms", "300"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains(&format!("Gateway failed to start: {message}")),
        "stderr: {stderr}"
    );
    assert!(output.stdout.is_empty());
    assert!(port_is_free(port.parse().unwrap()), "nothing stays bound");
}

#[test]
fn a_lock_dir_that_is_a_symlink_is_refused_and_its_target_untouched() {
    let env = TestEnv::new();
    let target = env.home().join("elsewhere");
    std::fs::create_dir(&target).unwrap();
    set_mode(&target, 0o700);
    std::fs::write(target.join("keep"), b"keep me\n").unwrap();
    std::fs::create_dir_all(env.lock_dir().parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&target, env.lock_dir()).unwrap();
    let before = snapshot(&target);

    assert_lock_dir_refused(&env, "it is a symbolic link");
    assert_cli_refuses(&env, &dir_message(&env.lock_dir(), "it is a symbolic link"));

    assert_eq!(
        snapshot(&target),
        before,
        "the symlink's target is untouched"
    );
    assert_eq!(std::fs::read_link(env.lock_dir()).unwrap(), target);
}

#[test]
#[cfg(target_os = "linux")] // chown to uid 65534 needs root: our Linux runs are root, a Mac's are not
fn a_lock_dir_owned_by_another_uid_is_refused_and_left_as_is() {
    let env = TestEnv::new();
    let dir = env.lock_dir();
    std::fs::create_dir_all(&dir).unwrap();
    set_mode(&dir, 0o700);
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
    let before = snapshot(&dir);

    assert_lock_dir_refused(&env, "it is owned by uid 65534");

    // We are root and could write there: nothing was created, chmod'ed or chown'ed.
    assert_eq!(snapshot(&dir), before);
    let meta = std::fs::symlink_metadata(&dir).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o7777), (65534, 0o700));
}

/// A user who may not even read another uid's private lock dir still gets it refused for what
/// it is (its owner), not a bare "Permission denied".
#[test]
#[cfg(target_os = "linux")] // setpriv (util-linux) runs the gateway as nobody
fn another_users_private_lock_dir_is_refused_by_owner_for_a_non_root_user() {
    const NOBODY: u32 = 65534;
    let env = TestEnv::new();
    let dir = env
        .state_dir()
        .join("tmp")
        .join(format!("openclaw-{NOBODY}"));
    std::fs::create_dir_all(&dir).unwrap();
    set_mode(&dir, 0o700);
    // Everything above it may be walked by anyone, as a home directory usually is.
    for ancestor in dir.ancestors().skip(1) {
        set_mode(ancestor, 0o755);
        if ancestor == env.home() {
            break;
        }
    }
    let before = snapshot(&dir);
    let message = format!(
        "refusing to use gateway lock directory {}: it is owned by uid {}; remove it or make it a directory owned by uid {NOBODY} with mode 0700",
        dir.display(),
        uid()
    );
    let as_nobody = |args: &[&str]| {
        let as_nobody = &[
            &format!("--reuid={NOBODY}") as &str,
            &format!("--regid={NOBODY}"),
            "--clear-groups",
        ];
        wrapped(&env.command(args), "setpriv", as_nobody)
            .output()
            .unwrap()
    };

    let port = free_port().to_string();
    let run = as_nobody(&["run", "--port", &port, "--lock-timeout-ms", "300"]);
    assert_eq!(run.status.code(), Some(1), "{run:?}");
    assert_eq!(
        String::from_utf8_lossy(&run.stderr).trim_end(),
        format!("Gateway failed to start: {message}")
    );
    let status = as_nobody(&["status"]);
    assert_eq!(status.status.code(), Some(1), "{status:?}");
    assert_eq!(
        String::from_utf8_lossy(&status.stderr).trim_end(),
        format!("gateway status failed: {message}")
    );
    assert_eq!(snapshot(&dir), before);
}

#[test]
fn a_lock_dir_open_to_group_or_others_is_refused_and_left_as_is() {
    for mode in [0o777, 0o750, 0o701] {
        let env = TestEnv::new();
        let dir = env.lock_dir();
        std::fs::create_dir_all(&dir).unwrap();
        set_mode(&dir, mode);
        let before = snapshot(&dir);

        assert_lock_dir_refused(
            &env,
            &format!("its mode is {mode:04o}, open to group or others"),
        );

        assert_eq!(snapshot(&dir), before, "mode {mode:04o}");
        let meta = std::fs::symlink_metadata(&dir).unwrap();
        assert_eq!(meta.mode() & 0o7777, mode, "never chmod'ed");
    }
}

#[test]
fn a_lock_dir_that_is_a_file_is_refused() {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.lock_dir().parent().unwrap()).unwrap();
    std::fs::write(env.lock_dir(), b"not a dir").unwrap();
    assert_lock_dir_refused(&env, "it is not a directory");
    assert_eq!(std::fs::read(env.lock_dir()).unwrap(), b"not a dir");
}

/// Plants `make(path)` at each lock path in turn and checks the refusal: acquire and status
/// fail naming the path and `problem`, the planted thing is still there, and no other file
/// (a state lock taken before the config lock) is left behind.
fn assert_lock_path_refused(problem: &str, make: impl Fn(&TestEnv, &Path)) {
    for position in BOTH {
        let env = TestEnv::new();
        let path = position.path(&env);
        std::fs::create_dir_all(env.lock_dir()).unwrap();
        set_mode(&env.lock_dir(), 0o700);
        make(&env, &path);
        let before = snapshot(&env.lock_dir());
        let name = path.file_name().unwrap().to_string_lossy().into_owned();

        let err = acquire_guarded(&env.options().port(0).timeout(TIMEOUT)).unwrap_err();
        assert!(
            matches!(err, GatewayLockError::UnsafeLockFile { .. }),
            "{position:?}: {err:?}"
        );
        assert_eq!(
            err.to_string(),
            file_message(&path, problem),
            "{position:?}"
        );
        assert_eq!(env.lock_dir_entries(), vec![name], "{position:?}");
        if position == Position::State {
            // Status reads the state lock first, and refuses it the same way.
            let err = status_guarded(&env).unwrap_err();
            assert_eq!(err.to_string(), file_message(&path, problem));
        }
        let after = snapshot(&env.lock_dir());
        assert_eq!(
            after.entries, before.entries,
            "{position:?}: the planted path is untouched"
        );
    }
}

fn status_guarded(env: &TestEnv) -> Result<gateway::GatewayStatus, GatewayLockError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let options = env.options().port(free_port());
    std::thread::spawn(move || {
        let _ = tx.send(gateway::status(&options));
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("status returned within 10 s")
}

#[test]
fn a_lock_path_that_is_a_symlink_to_a_victim_is_refused_never_followed() {
    let victim_dir = tempfile::tempdir().unwrap();
    let victim = victim_dir.path().join("victim");
    std::fs::write(&victim, b"precious bytes\n").unwrap();
    set_mode(&victim, 0o644);
    let before = snapshot(victim_dir.path());

    assert_lock_path_refused("it is a symbolic link", |_, path| {
        std::os::unix::fs::symlink(&victim, path).unwrap();
    });

    let after = snapshot(victim_dir.path());
    assert_eq!(after.entries, before.entries, "the victim's bytes and mode");
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious bytes\n");
}

#[test]
fn a_dangling_lock_symlink_is_refused_and_its_target_never_created() {
    let target_dir = tempfile::tempdir().unwrap();
    let target = target_dir.path().join("created-through-the-link");

    assert_lock_path_refused("it is a symbolic link", |_, path| {
        std::os::unix::fs::symlink(&target, path).unwrap();
    });

    assert!(!target.exists(), "O_CREAT followed the symlink");
    assert!(snapshot(target_dir.path()).entries.is_empty());
}

#[test]
fn a_lock_path_that_is_a_fifo_is_refused_without_blocking() {
    assert_lock_path_refused("it is a FIFO", |_, path| {
        let c_path = CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    });
}

#[test]
fn a_lock_path_that_is_a_directory_is_refused_and_its_contents_kept() {
    assert_lock_path_refused("it is a directory", |_, path| {
        std::fs::create_dir(path).unwrap();
        std::fs::write(path.join("inside"), b"x").unwrap();
    });
}

#[test]
fn files_are_0600_and_the_lock_dir_0700_under_umask_000() {
    let env = TestEnv::new();
    let port = free_port().to_string();
    // Linux reads the gateway's umask from /proc below; elsewhere the shell checks its own
    // before the exec, which keeps it.
    let script = if cfg!(target_os = "linux") {
        r#"umask 000; exec "$0" "$@""#
    } else {
        r#"umask 000; [ "$(umask)" = 0000 ] || { echo "umask is $(umask)" >&2; exit 97; }; exec "$0" "$@""#
    };
    let mut command = std::process::Command::new("sh");
    command
        .args(["-c", script])
        .arg(env!("CARGO_BIN_EXE_gateway"))
        .args(["run", "--port", &port])
        .env_clear()
        .env("HOME", env.home())
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    let gateway = GatewayProcess::spawn(command).unwrap();

    // The test means something only if the gateway really runs with umask 000.
    #[cfg(target_os = "linux")]
    {
        let status = std::fs::read_to_string(format!("/proc/{}/status", gateway.pid)).unwrap();
        assert!(
            status.lines().any(|l| l == "Umask:\t0000"),
            "{}",
            status
                .lines()
                .find(|l| l.starts_with("Umask"))
                .unwrap_or("")
        );
    }

    let mode = |path: &Path| std::fs::symlink_metadata(path).unwrap().mode() & 0o7777;
    assert_eq!(mode(&env.lock_dir()), 0o700, "lock dir");
    assert_eq!(mode(&env.state_lock()), 0o600, "state lock");
    assert_eq!(mode(&env.config_lock()), 0o600, "config lock");
    assert_eq!(
        env.lock_dir_entries().len(),
        2,
        "{:?}",
        env.lock_dir_entries()
    );
    // On Linux the two locks of one acquisition are two names of one locked inode, and
    // nothing else links to it; elsewhere (no O_TMPFILE to link) they are two files.
    let state = std::fs::symlink_metadata(env.state_lock()).unwrap();
    let config = std::fs::symlink_metadata(env.config_lock()).unwrap();
    let names = if cfg!(target_os = "linux") { 2 } else { 1 };
    for meta in [&state, &config] {
        assert!(meta.file_type().is_file() && meta.uid() == uid() && meta.nlink() == names);
    }
    if cfg!(target_os = "linux") {
        assert_eq!((state.dev(), state.ino()), (config.dev(), config.ino()));
    }
    assert_eq!(gateway.terminate(), 0);
    assert!(env.lock_dir_entries().is_empty());
}
