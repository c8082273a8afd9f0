//! Lock files for the tests that plant, judge or inspect them: stand-in owners that are real
//! processes, lock bodies as the Node gateway writes them, planted files, acquisition with a
//! watchdog, and snapshots of a lock dir. Used next to `common`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use gateway::{GatewayLock, GatewayLockError, GatewayOptions};

use crate::common::*;

/// The lock timeout of every test that expects a wait: short, and named in the message.
pub const TIMEOUT: Duration = Duration::from_millis(300);

/// The ownerId of files written "by someone else".
pub const FOREIGN_OWNER_ID: &str = "8a8c910f-4aa7-4540-ae8c-043ba516014d";

/// A real process that stands in for a lock owner; SIGKILLed and reaped on drop.
pub struct Owner {
    child: Child,
    pub pid: u32,
    _stdin: Option<ChildStdin>,
}

impl Owner {
    /// Spawns `command` with stdin piped (kept open, so `read` blocks) and output discarded.
    pub fn spawn(mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn a stand-in owner");
        let stdin = child.stdin.take();
        Self {
            pid: child.id(),
            child,
            _stdin: stdin,
        }
    }

    /// Like [`Owner::spawn`], but stderr comes back as lines.
    pub fn spawn_with_stderr(mut command: Command) -> (Self, mpsc::Receiver<String>) {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn a stand-in owner");
        let stdin = child.stdin.take();
        let stderr = pipe_lines(child.stderr.take().unwrap());
        let owner = Self {
            pid: child.id(),
            child,
            _stdin: stdin,
        };
        (owner, stderr)
    }

    /// `sleep 30`.
    pub fn sleep() -> Self {
        let mut command = Command::new("sleep");
        command.arg("30");
        Self::spawn(command)
    }

    /// Its start time, in the unit lock files record (see [`start_time_of`]).
    pub fn start_time(&self) -> u64 {
        start_time_of(self.pid)
    }

    /// Still running (not exited, not a zombie we have not reaped).
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Panics unless it is still running: nothing may have killed it.
    pub fn assert_running(&mut self) {
        assert!(
            self.is_running(),
            "stand-in owner {} was killed or exited",
            self.pid
        );
    }

    /// Waits until its argv0 is `argv0` (after an `exec` in the child), as the library reads
    /// argv: `/proc/<pid>/cmdline` on Linux, `KERN_PROCARGS2` on macOS.
    pub fn wait_for_argv0(&self, argv0: &str) {
        let ready = wait_until(Duration::from_secs(5), || {
            gateway::test_support::process_argv(self.pid)
                .is_some_and(|argv| argv.first().map(String::as_str) == Some(argv0))
        });
        assert!(ready, "pid {} never showed argv0 {argv0:?}", self.pid);
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A shell that records every catchable signal it receives in a file, so a test can prove
/// that judging it (alive or dead) never signals it.
pub struct TrapOwner {
    pub owner: Owner,
    pub record: PathBuf,
    _dir: tempfile::TempDir,
}

impl TrapOwner {
    pub fn spawn() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let record = dir.path().join("signals");
        let script = r#"trap 'echo got >> "$0"' USR1 USR2 TERM INT HUP QUIT ALRM PIPE CONT
echo ready
while :; do sleep 0.05; done"#;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(&record)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sh");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read the ready line");
        assert_eq!(line, "ready\n", "the trap is installed");
        let pid = child.id();
        Self {
            owner: Owner {
                child,
                pid,
                _stdin: None,
            },
            record,
            _dir: dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.owner.pid
    }

    /// Gives a stray signal time to be trapped, then checks none was and that it still runs.
    pub fn assert_never_signalled(&mut self) {
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            !self.record.exists(),
            "the owner was signalled: {:?}",
            std::fs::read_to_string(&self.record)
        );
        self.owner.assert_running();
    }

    /// The detector works: a real SIGUSR1 is recorded. Without this the test could not fail.
    pub fn prove_detector_works(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.pid() as libc::pid_t, libc::SIGUSR1) };
        assert!(
            wait_until(Duration::from_secs(3), || {
                std::fs::read_to_string(&self.record).is_ok_and(|s| s.contains("got"))
            }),
            "a trapped SIGUSR1 was not recorded"
        );
    }
}

/// A lock file body as the Node gateway writes it (pretty JSON, then a token line), naming
/// `pid` with `start_time` if given. No `port`: the verdict must rest on the pid alone, not on
/// a `/healthz` probe.
pub fn lock_body(pid: u32, start_time: Option<u64>) -> String {
    let mut object = serde_json::Map::new();
    object.insert("pid".into(), pid.into());
    object.insert("ownerId".into(), FOREIGN_OWNER_ID.into());
    object.insert("cronOwnerProjection".into(), "dynamic-default-v1".into());
    object.insert(
        "createdAt".into(),
        humantime::format_rfc3339_millis(std::time::SystemTime::now())
            .to_string()
            .into(),
    );
    object.insert(
        "configPath".into(),
        "/home/u/.openclaw/openclaw.json".into(),
    );
    object.insert("stateDir".into(), "/home/u/.openclaw".into());
    if let Some(start_time) = start_time {
        object.insert("startTime".into(), start_time.into());
    }
    let json = serde_json::to_string_pretty(&serde_json::Value::Object(object)).unwrap();
    format!("{json}\n\t\t\t\t\t\t\t\t{}\n", " \t".repeat(64))
}

/// Which of the two lock files a test plants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    State,
    Config,
}

pub const BOTH: [Position; 2] = [Position::State, Position::Config];

impl Position {
    pub fn path(self, env: &TestEnv) -> PathBuf {
        match self {
            Position::State => env.state_lock(),
            Position::Config => env.config_lock(),
        }
    }
}

/// What acquisition must do with a planted lock file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The owner is alive (or unknown): wait the whole timeout, then fail naming this pid.
    Waits(u32),
    /// The owner is provably dead: its file is replaced by ours before the deadline.
    Reclaimed,
}

/// Runs `GatewayLock::acquire` on another thread and fails the test (instead of hanging it)
/// when it does not return within 10 s.
pub fn acquire_guarded(options: &GatewayOptions) -> Result<GatewayLock, GatewayLockError> {
    let (tx, rx) = mpsc::channel();
    let options = options.clone();
    std::thread::spawn(move || {
        let _ = tx.send(GatewayLock::acquire(&options));
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("acquire returned within 10 s (did it block on the lock path?)")
}

/// Plants `body` at `position` in a fresh env, acquires with a 300 ms timeout and checks the
/// outcome. Both positions matter: a conflict on the config lock must also release the state
/// lock taken just before.
pub fn plant_and_acquire(position: Position, body: &str, expect: Expect) {
    let env = TestEnv::new();
    let path = position.path(&env);
    write_lock(&path, body);
    let options = env.options().port(0).timeout(TIMEOUT);
    plant_checked(&env, &options, &path, body.as_bytes(), expect, position);
}

/// The checks of [`plant_and_acquire`] for a file already planted at `path`.
pub fn plant_checked(
    env: &TestEnv,
    options: &GatewayOptions,
    path: &Path,
    planted: &[u8],
    expect: Expect,
    position: Position,
) {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let started = Instant::now();
    let result = acquire_guarded(options);
    let elapsed = started.elapsed();
    match expect {
        Expect::Waits(pid) => {
            let err = result.err().unwrap_or_else(|| {
                panic!("{position:?}: acquired over a lock whose owner (pid {pid}) is alive")
            });
            assert_eq!(
                err.to_string(),
                format!(
                    "gateway already running (pid {pid}); lock timeout after {}ms",
                    TIMEOUT.as_millis()
                ),
                "{position:?}"
            );
            assert_eq!(err.holder_pid(), Some(pid), "{position:?}");
            assert!(
                elapsed >= TIMEOUT,
                "{position:?}: gave up after {elapsed:?}, before the timeout"
            );
            assert_eq!(
                std::fs::read(path).unwrap(),
                planted,
                "{position:?}: a live owner's file was changed"
            );
            assert_eq!(
                env.lock_dir_entries(),
                vec![name],
                "{position:?}: only the planted file is left (the state lock taken first is released)"
            );
        }
        Expect::Reclaimed => {
            let lock = result.unwrap_or_else(|err| {
                panic!("{position:?}: a dead owner's lock was not reclaimed: {err}")
            });
            assert!(
                elapsed < TIMEOUT,
                "{position:?}: took {elapsed:?}; a dead owner is reclaimed before the deadline"
            );
            let payload = read_payload(path);
            assert_eq!(payload.pid, std::process::id(), "{position:?}");
            assert_eq!(
                payload.owner_id.as_deref(),
                Some(lock.owner_id()),
                "{position:?}"
            );
            drop(lock);
            assert!(
                env.lock_dir_entries().is_empty(),
                "{position:?}: {:?}",
                env.lock_dir_entries()
            );
        }
    }
}

/// Writes a lock file with the given JSON body (and no token line).
pub fn write_lock(path: &Path, body: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let dir = path.parent().unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(path, body).unwrap();
}

/// A process's start time as the library reads it for lock files: clock ticks since boot
/// (field 22 of `/proc/<pid>/stat`) on Linux, whole seconds since the epoch on macOS.
pub fn start_time_of(pid: u32) -> u64 {
    gateway::test_support::process_start_time(pid)
        .unwrap_or_else(|| panic!("the start time of pid {pid} cannot be read"))
}

/// A pid that is not running now (a child that has been reaped).
pub fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// Parses a lock file with the library's own reader.
pub fn read_payload(path: &Path) -> gateway::test_support::LockPayload {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    gateway::test_support::LockPayload::parse(&bytes)
        .unwrap_or_else(|| panic!("{} has no payload", path.display()))
}

/// Everything about one directory entry that a change would show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntrySnapshot {
    pub bytes: Option<Vec<u8>>,
    pub ino: u64,
    pub mode: u32,
    pub uid: u32,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
}

/// A directory and its entries, to prove that something changed nothing. The directory's own
/// mtime also catches a file that was created and removed again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirSnapshot {
    pub dir: Option<EntrySnapshot>,
    pub entries: BTreeMap<String, EntrySnapshot>,
}

fn entry_snapshot(path: &Path) -> Option<EntrySnapshot> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    Some(EntrySnapshot {
        bytes: meta
            .is_file()
            .then(|| std::fs::read(path).expect("read a regular file")),
        ino: meta.ino(),
        mode: meta.mode(),
        uid: meta.uid(),
        mtime: (meta.mtime(), meta.mtime_nsec()),
        ctime: (meta.ctime(), meta.ctime_nsec()),
    })
}

pub fn snapshot(dir: &Path) -> DirSnapshot {
    let entries = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    (name, entry_snapshot(&e.path()).expect("entry"))
                })
                .collect()
        })
        .unwrap_or_default();
    DirSnapshot {
        dir: entry_snapshot(dir),
        entries,
    }
}
