//! The test env: a fresh home and state dir per test, the paths SPEC §1 derives from it, and
//! the `gateway` command and library options pointed at it.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::process::GatewayProcess;

/// A fresh home with its own state dir, removed on drop.
pub struct TestEnv {
    pub root: tempfile::TempDir,
}

impl TestEnv {
    pub fn new() -> Self {
        Self {
            root: tempfile::Builder::new()
                .prefix("gateway-test-")
                .tempdir()
                .expect("temp dir"),
        }
    }

    pub fn home(&self) -> PathBuf {
        self.root.path().canonicalize().unwrap()
    }

    pub fn state_dir(&self) -> PathBuf {
        self.home().join(".openclaw")
    }

    pub fn config_path(&self) -> PathBuf {
        self.state_dir().join("openclaw.json")
    }

    /// `<state>/tmp/openclaw-<uid>`, as SPEC §1 says.
    pub fn lock_dir(&self) -> PathBuf {
        self.state_dir()
            .join("tmp")
            // SAFETY: getuid has no preconditions and cannot fail.
            .join(format!("openclaw-{}", unsafe { libc::getuid() }))
    }

    pub fn state_lock(&self) -> PathBuf {
        self.lock_dir().join("gateway.state.lock")
    }

    pub fn config_lock(&self) -> PathBuf {
        self.lock_dir()
            .join(gateway::paths::config_lock_name(&self.config_path()))
    }

    /// Names of the files in the lock dir (empty when it does not exist).
    pub fn lock_dir_entries(&self) -> Vec<String> {
        std::fs::read_dir(self.lock_dir())
            .map(|entries| {
                let mut names: Vec<String> = entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                names.sort();
                names
            })
            .unwrap_or_default()
    }

    /// Library options pointing at this env's state (no process environment consulted).
    pub fn options(&self) -> gateway::GatewayOptions {
        gateway::GatewayOptions::new()
            .state_dir(self.state_dir())
            .config_path(self.config_path())
    }

    /// `gateway <args>` with a scrubbed environment whose HOME is this env's home.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_gateway"));
        for name in gateway::ENVIRONMENT_VARIABLES {
            command.env_remove(name);
        }
        command
            .env("HOME", self.home())
            .args(args)
            .stdin(Stdio::null());
        command
    }

    /// Starts `gateway run <args>` and waits for its ready line.
    pub fn start(&self, args: &[&str]) -> GatewayProcess {
        GatewayProcess::spawn(self.command(&[&["run"], args].concat()))
            .unwrap_or_else(|exit| panic!("gateway run {args:?} did not start: {exit:?}"))
    }
}
