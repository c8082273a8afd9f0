//! A state dir shared by two hosts (issue 13). Each "host" is a process tree in its own UTS, PID
//! and mount namespaces: its own host name, its own boot id and machine id (files bind-mounted
//! over `/proc/sys/kernel/random/boot_id` and `/etc/machine-id` in its mount namespace), its
//! own boot time (`btime` in a copy of `/proc/stat` bound over it: the moment the host boots),
//! and the shared dir at the same path for both. Some cases give both hosts one machine id (a
//! container image with a baked-in one), or leave them the kernel's boot id (containers on one
//! kernel: only the PID namespaces differ). Two grounds:
//!
//! - `bindfs`: each host reaches one underlying directory through its own FUSE mount, whose
//!   `flock`s are local to that mount: the beacon of a gateway on the other host looks free,
//!   as on NFS with `local_lock=all`, many FUSE and SMB set-ups, virtiofs;
//! - `plain`: both use the directory itself, so the beacon is seen across hosts, as on NFSv4
//!   with coherent locks.
//!
//! Whatever the ground, a gateway never takes a lock held on another machine: it refuses at
//! once naming that host and pid, `gateway unlock --force` is the way out, and a host that
//! rebooted reclaims its own lock at once.
//!
//! Cleanup: a host's namespaces live as long as its pid 1, a shell that exits when its stdin
//! (a pipe from this test) closes, and is SIGKILLed when `unshare` dies (`--kill-child`).
//! Everything in a PID namespace dies with its pid 1, and the FUSE mount with the last process
//! of its mount namespace, so a host leaves nothing behind however the test ends.
#![cfg(target_os = "linux")] // Linux namespaces and bindfs.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use common::*;

/// How long any one step may take on a loaded 2-core machine; steps that succeed never wait
/// for it.
const PATIENCE: Duration = Duration::from_secs(60);
/// The lock timeout the gateways here are given: long enough that "refused at once" (well under
/// it) cannot be a timeout.
const LOCK_TIMEOUT_MS: &str = "60000";
/// Well under [`LOCK_TIMEOUT_MS`] and the 30 s stale window: what "at once" allows.
const AT_ONCE: Duration = Duration::from_secs(20);
/// Start races: rounds, and racers per host in each.
const ROUNDS: usize = 20;
const RACERS_PER_HOST: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ground {
    /// A FUSE mount (bindfs) of one directory per host: locks local to each mount.
    Bindfs,
    /// The directory itself: locks shared by both hosts.
    Plain,
}

/// How every acquire's line about the ground under the lock dir starts (logged as a warning,
/// so shown, where locks are not coherent across hosts).
const GROUND_LINE: &str = "gateway: lock dir ";

/// A refusal's stderr without its first line, the ground's warning: present on bindfs, whose
/// locks stay on each host, and absent on a plain directory.
fn refusal_after_ground(exit: &Exit, ground: Ground) -> Vec<&str> {
    let lines = exit.stderr_lines();
    match ground {
        Ground::Bindfs => {
            assert!(
                lines
                    .first()
                    .is_some_and(|line| line.starts_with(GROUND_LINE)
                        && line.contains("not coherent across hosts")),
                "no warning about the ground: {exit}"
            );
            lines[1..].to_vec()
        }
        Ground::Plain => lines,
    }
}

/// The shared directory and everything the hosts need, under one temp dir.
struct Lab {
    ground: Ground,
    root: tempfile::TempDir,
}

impl Lab {
    fn new(ground: Ground) -> Self {
        assert!(
            Path::new("/etc/machine-id").exists(),
            "these tests bind a file over /etc/machine-id: create it (systemd-machine-id-setup)"
        );
        if ground == Ground::Bindfs {
            let found = Command::new("bindfs").arg("--version").output();
            assert!(
                found.is_ok_and(|out| out.status.success()),
                "bindfs is missing: apt-get install bindfs (scripts/test.sh installs it)"
            );
        }
        let root = tempfile::Builder::new()
            .prefix("gateway-shared-")
            .tempdir()
            .unwrap();
        for dir in ["underlying", "shared", "homes"] {
            std::fs::create_dir(root.path().join(dir)).unwrap();
        }
        Self { ground, root }
    }

    fn root(&self) -> PathBuf {
        self.root.path().canonicalize().unwrap()
    }

    /// The shared dir, at the same path on every host (so the config lock has the same name).
    fn shared(&self) -> PathBuf {
        self.root().join("shared")
    }

    /// The state dir every host uses.
    fn state_dir(&self) -> PathBuf {
        self.shared().join("state")
    }

    /// The lock dir as this test process sees it: the underlying directory itself.
    fn lock_dir(&self) -> PathBuf {
        let seen = match self.ground {
            Ground::Bindfs => self.root().join("underlying"),
            Ground::Plain => self.shared(),
        };
        // SAFETY: getuid has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() };
        seen.join("state/tmp").join(format!("openclaw-{uid}"))
    }

    /// Both lock files' bytes, as this test process sees them (`None`: absent).
    fn lock_files(&self) -> [Option<Vec<u8>>; 2] {
        let config = gateway::paths::config_lock_name(&self.state_dir().join("openclaw.json"));
        ["gateway.state.lock", config.as_str()]
            .map(|name| std::fs::read(self.lock_dir().join(name)).ok())
    }

    /// Waits for the lock dir to be empty. On a FUSE mount a file unlinked while open stays as
    /// `.fuse_hidden…` until its last descriptor closes, a moment after its holder is gone.
    fn lock_dir_empties(&self) -> bool {
        wait_until(PATIENCE, || self.lock_dir_entries().is_empty())
    }

    fn lock_dir_entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.lock_dir())
            .map(|dir| {
                dir.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Boots a host: its own namespaces, host name, boot id, boot time and machine id, and
    /// (bindfs) its own FUSE mount of the shared dir.
    fn boot(&self, name: &str, machine_id: &str) -> Host {
        self.boot_with(name, machine_id, BootId::Own)
    }

    /// [`Lab::boot`], with the boot id `boot_id` says.
    fn boot_with(&self, name: &str, machine_id: &str, boot_id: BootId) -> Host {
        let boot_id = match boot_id {
            BootId::Own => uuid_v4(),
            BootId::Kernel => std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .unwrap()
                .trim()
                .to_owned(),
        };
        let ids = self.root().join(format!("{name}-{}", uuid_v4()));
        std::fs::create_dir(&ids).unwrap();
        std::fs::write(ids.join("boot_id"), format!("{boot_id}\n")).unwrap();
        std::fs::write(ids.join("machine-id"), format!("{machine_id}\n")).unwrap();
        std::fs::write(ids.join("stat"), stat_booted_now()).unwrap();
        let fuse_source = match self.ground {
            Ground::Bindfs => self.root().join("underlying"),
            Ground::Plain => PathBuf::new(),
        };
        let mut unshare = Command::new("unshare");
        unshare
            .args([
                "--uts",
                "--pid",
                "--mount",
                "--fork",
                "--kill-child",
                "--mount-proc",
            ])
            .args(["--propagation", "private", "sh", "-c"])
            .arg(
                r#"set -e
                hostname "$1"
                mount --bind "$2/boot_id" /proc/sys/kernel/random/boot_id
                mount --bind "$2/machine-id" /etc/machine-id
                mount --bind "$2/stat" /proc/stat
                if [ -n "$3" ]; then bindfs "$3" "$4"; fi
                echo ready
                read _until_the_test_lets_go || true"#,
            )
            .arg("sh")
            .arg(name)
            .arg(&ids)
            .arg(&fuse_source)
            .arg(self.shared())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = unshare.spawn().expect("unshare starts");
        let keepalive = child.stdin.take().unwrap();
        let stdout = pipe_lines(child.stdout.take().unwrap());
        let mut host = Host {
            name: name.to_owned(),
            machine_id: machine_id.to_owned(),
            boot_id,
            unshare: child,
            init: 0,
            _keepalive: keepalive,
            home: self.root().join("homes").join(name),
            state_dir: self.state_dir(),
        };
        if stdout.recv_timeout(PATIENCE).as_deref() != Ok("ready") {
            let mut stderr = String::new();
            let _ = host.unshare.kill();
            let _ = host.unshare.wait();
            let _ = host
                .unshare
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr);
            panic!("host {name} did not boot: {stderr}");
        }
        host.init = only_child(host.unshare.id());
        std::fs::create_dir_all(&host.home).unwrap();
        host
    }

    /// `host` reboots: all its processes gone, the same name and machine id, a new boot id,
    /// and a boot time later than anything it wrote by more than the rule's margin (whole
    /// seconds, as `btime` has them).
    fn reboot(&self, host: Host) -> Host {
        let (name, machine_id, boot_id) = (
            host.name.clone(),
            host.machine_id.clone(),
            host.boot_id.clone(),
        );
        drop(host);
        std::thread::sleep(gateway::test_support::BOOT_TIME_MARGIN + Duration::from_secs(2));
        let rebooted = self.boot(&name, &machine_id);
        assert_ne!(rebooted.boot_id, boot_id);
        rebooted
    }
}

/// Which boot id a host gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BootId {
    /// One of its own: another kernel.
    Own,
    /// The kernel's: containers on one kernel, each in its own PID namespace.
    Kernel,
}

/// This kernel's `/proc/stat` with `btime` (when the boot began, seconds since the epoch) now.
fn stat_booted_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    assert!(
        stat.lines().any(|line| line.starts_with("btime ")),
        "{stat}"
    );
    stat.lines()
        .map(|line| {
            if line.starts_with("btime ") {
                format!("btime {now}\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect()
}

/// A random UUID v4, the shape of a Linux boot id.
fn uuid_v4() -> String {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut bytes)
        .unwrap();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The one child of `pid` (global pid), once it has one.
fn only_child(pid: u32) -> u32 {
    let mut child = None;
    let found = wait_until(PATIENCE, || {
        child = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .ok()
            .and_then(|text| text.split_whitespace().next()?.parse().ok());
        child.is_some()
    });
    assert!(found, "process {pid} has no child");
    child.unwrap()
}

/// SIGKILLs the children of `pid` (our `nsenter`: its child is the program in the host).
fn kill_children(pid: u32) {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) else {
        return;
    };
    for child in text
        .split_whitespace()
        .filter_map(|p| p.parse::<libc::pid_t>().ok())
    {
        // SAFETY: signalling the child of our own nsenter child.
        unsafe { libc::kill(child, libc::SIGKILL) };
    }
}

/// A "machine": its namespaces' pid 1, and the pipe that keeps it alive.
struct Host {
    name: String,
    machine_id: String,
    boot_id: String,
    unshare: Child,
    /// Global pid of the namespaces' pid 1.
    init: u32,
    /// Closed on drop: pid 1 reads EOF and exits, and the namespaces die with it.
    _keepalive: ChildStdin,
    home: PathBuf,
    state_dir: PathBuf,
}

impl Host {
    /// `gateway <args>` on this host, with a scrubbed environment and the shared state dir.
    fn gateway(&self, args: &[&str]) -> Command {
        self.inside(&[env!("CARGO_BIN_EXE_gateway")], args)
    }

    /// `program <args>` entered into this host's namespaces (a child of `nsenter`, pid N in
    /// the host's PID namespace).
    fn inside(&self, program: &[&str], args: &[&str]) -> Command {
        let mut command = Command::new("nsenter");
        for name in gateway::ENVIRONMENT_VARIABLES {
            command.env_remove(name);
        }
        command
            .args([
                "--target",
                &self.init.to_string(),
                "--uts",
                "--pid",
                "--mount",
                "--",
            ])
            .args(program)
            .args(args)
            .env("HOME", &self.home)
            .env("OPENCLAW_STATE_DIR", &self.state_dir)
            .stdin(Stdio::null());
        command
    }

    /// Starts `gateway run <args>` here and waits for its ready line.
    fn serve(&self, args: &[&str]) -> Served {
        let mut command = self.gateway(&[&["run"], args].concat());
        Served::spawn(&mut command)
            .unwrap_or_else(|exit| panic!("gateway run on {} did not start: {exit}", self.name))
    }

    /// Runs `gateway <args>` here to its exit; at [`PATIENCE`] it is killed (a gateway that
    /// serves when it should have been refused), and the exit says so.
    fn run(&self, args: &[&str]) -> Exit {
        self.run_command(self.gateway(args))
    }

    /// [`Host::run`], under systemd as far as the gateway can tell (`INVOCATION_ID`).
    fn run_supervised(&self, args: &[&str]) -> Exit {
        let mut command = self.gateway(args);
        command.env("INVOCATION_ID", "shared-state-test");
        self.run_command(command)
    }

    fn run_command(&self, mut command: Command) -> Exit {
        let started = Instant::now();
        let mut nsenter = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nsenter starts");
        let read = |mut stream: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = stream.read_to_string(&mut text);
                text
            })
        };
        let stdout = read(Box::new(nsenter.stdout.take().unwrap()));
        let stderr = read(Box::new(nsenter.stderr.take().unwrap()));
        let status = wait_with_timeout(&mut nsenter, PATIENCE);
        if status.is_none() {
            // Its child holds the pipes: kill it too, or the reads never end.
            kill_children(nsenter.id());
            let _ = nsenter.kill();
            let _ = nsenter.wait();
        }
        Exit {
            code: status.and_then(|s| s.code()),
            stdout: stdout.join().unwrap(),
            stderr: stderr.join().unwrap(),
            elapsed: started.elapsed(),
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // SIGKILL to `unshare` SIGKILLs pid 1 (`--kill-child`): the namespace dies.
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
        // Everything in it is gone once pid 1 is.
        wait_until(PATIENCE, || {
            !Path::new(&format!("/proc/{}", self.init)).exists()
        });
    }
}

/// A `gateway run` serving on some host.
struct Served {
    nsenter: Child,
    /// Its pid on its host (what it prints and records).
    pid: u32,
    /// Its pid here, to signal it.
    global_pid: u32,
    port: u16,
    stderr: Receiver<String>,
}

impl Served {
    fn spawn(command: &mut Command) -> Result<Self, Exit> {
        let started = Instant::now();
        let mut nsenter = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nsenter starts");
        let stdout = pipe_lines(nsenter.stdout.take().unwrap());
        let stderr = pipe_lines(nsenter.stderr.take().unwrap());
        match stdout.recv_timeout(PATIENCE) {
            Ok(line) => {
                let (pid, port) = parse_ready_line(&line).unwrap_or_else(|| panic!("{line:?}"));
                Ok(Self {
                    global_pid: only_child(nsenter.id()),
                    nsenter,
                    pid,
                    port,
                    stderr,
                })
            }
            Err(_) => {
                let status = wait_with_timeout(&mut nsenter, Duration::from_secs(10));
                // Its child holds the pipes: kill it too, or the reads never end.
                kill_children(nsenter.id());
                let _ = nsenter.kill();
                let _ = nsenter.wait();
                Err(Exit {
                    code: status.and_then(|s| s.code()),
                    stdout: stdout.iter().collect::<Vec<_>>().join("\n"),
                    stderr: stderr.iter().collect::<Vec<_>>().join("\n"),
                    elapsed: started.elapsed(),
                })
            }
        }
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: signalling a process of this test (the child of our nsenter child).
        unsafe { libc::kill(self.global_pid as libc::pid_t, signal) };
    }

    /// SIGTERM; the exit code.
    fn terminate(mut self) -> Option<i32> {
        self.signal(libc::SIGTERM);
        wait_with_timeout(&mut self.nsenter, PATIENCE).and_then(|status| status.code())
    }

    /// SIGKILL: its lock files stay behind.
    fn sigkill(mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.nsenter.wait();
    }

    fn is_running(&mut self) -> bool {
        self.nsenter.try_wait().ok().flatten().is_none()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if self.is_running() {
            self.signal(libc::SIGKILL);
            let _ = self.nsenter.wait();
        }
    }
}

/// The refusal a gateway on another machine gets.
fn held_by(host: &Host, pid: u32) -> String {
    format!(
        "gateway already running on host {} (pid {pid}); if that gateway is gone, run `gateway unlock --force` on this machine",
        host.name
    )
}

fn run_args(port: u16) -> Vec<String> {
    vec![
        "--port".into(),
        port.to_string(),
        "--lock-timeout-ms".into(),
        LOCK_TIMEOUT_MS.into(),
    ]
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

// --- host A serves; host B refuses at once, naming it ---------------------------------------

fn another_host_is_refused_at_once_and_its_files_untouched(ground: Ground) {
    let lab = Lab::new(ground);
    let a = lab.boot("host-a", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    let b = lab.boot("host-b", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
    let served = a.serve(&strs(&run_args(free_port())));
    let before = lab.lock_files();
    assert!(
        before.iter().all(Option::is_some),
        "{:?}",
        lab.lock_dir_entries()
    );
    let recorded: serde_json::Value = serde_json::from_slice(before[0].as_ref().unwrap()).unwrap();
    assert_eq!(recorded["hostname"], "host-a");
    assert_eq!(recorded["bootId"], a.boot_id.as_str());
    // A hash of it: machine-id(5) asks that the id itself stay confidential.
    assert_eq!(
        recorded["machineId"],
        gateway::test_support::machine_id_hash(&a.machine_id).as_str()
    );
    let bytes = String::from_utf8_lossy(before[0].as_ref().unwrap()).into_owned();
    assert!(!bytes.contains(&a.machine_id), "{bytes}");
    assert_eq!(recorded["pid"], served.pid);

    // Its own port: without the host rule B would serve beside A, on one config.
    let exit = b.run(&strs(
        &[vec!["run".to_owned()], run_args(free_port())].concat(),
    ));
    assert_eq!(exit.code, Some(1), "{exit}");
    assert_eq!(
        refusal_after_ground(&exit, lab.ground),
        [format!(
            "Gateway failed to start: {}",
            held_by(&a, served.pid)
        )],
        "{exit}"
    );
    assert!(exit.elapsed < AT_ONCE, "not at once: {exit}");
    assert_eq!(lab.lock_files(), before, "A's lock files were touched");
    assert!(healthy(served.port));

    // Under a service manager B does not exit at once (a restart loop): it retries as with a
    // holder whose health cannot be confirmed, then exits 1 at the end of the window.
    let mut args = run_args(free_port());
    args.extend(
        [
            "--supervised-retry-ms",
            "100",
            "--supervised-window-ms",
            "500",
        ]
        .map(String::from),
    );
    let exit = b.run_supervised(&strs(&[vec!["run".to_owned()], args].concat()));
    assert_eq!(exit.code, Some(1), "{exit}");
    let refusal = held_by(&a, served.pid);
    let retry =
        format!("gateway: {refusal}; its health cannot be checked from here, retrying in 100 ms");
    let said = exit.stderr_lines();
    let (last, retries) = said.split_last().unwrap();
    assert_eq!(
        *last,
        format!("Gateway failed to start: {refusal}"),
        "{exit}"
    );
    let retries: Vec<&&str> = retries
        .iter()
        .filter(|line| !line.starts_with(GROUND_LINE))
        .collect();
    assert!(!retries.is_empty(), "{exit}");
    assert!(retries.iter().all(|line| **line == retry), "{exit}");
    assert!(exit.elapsed >= Duration::from_millis(400), "{exit}");
    assert_eq!(lab.lock_files(), before, "A's lock files were touched");

    // `status` on B names A's host and says it cannot be probed from here.
    let status = b.run(&["status", "--json"]);
    let json: serde_json::Value =
        serde_json::from_str(&status.stdout).unwrap_or_else(|e| panic!("{e}: {status}"));
    assert_eq!(json["running"], true, "{json}");
    assert_eq!(json["onOtherHost"], true, "{json}");
    assert_eq!(json["host"], "host-a", "{json}");
    assert_eq!(json["pid"], served.pid, "{json}");
    assert_eq!(json["healthy"], false, "{json}");
    let status = b.run(&["status"]);
    assert_eq!(status.code, Some(1), "running, health unknown: {status}");
    let mut lines = status.stdout.lines();
    assert_eq!(
        lines.next(),
        Some(format!(
            "gateway running on host host-a (pid {}), another machine: its health cannot be checked from here; if it is gone, run `gateway unlock --force`",
            served.pid
        ).as_str()),
        "{status}"
    );
    let ground_line = lines.next().unwrap_or_default();
    assert!(ground_line.starts_with("lock dir on "), "{status}");
    assert_eq!(
        ground_line.contains("not coherent across hosts"),
        lab.ground == Ground::Bindfs,
        "{status}"
    );

    assert_eq!(served.terminate(), Some(0));
    assert!(lab.lock_dir_empties(), "{:?}", lab.lock_dir_entries());
}

#[test]
fn on_bindfs_another_host_is_refused_at_once_and_its_files_untouched() {
    another_host_is_refused_at_once_and_its_files_untouched(Ground::Bindfs);
}

#[test]
fn on_a_plain_dir_another_host_is_refused_at_once_and_its_files_untouched() {
    another_host_is_refused_at_once_and_its_files_untouched(Ground::Plain);
}

// --- 16 racers from two hosts: exactly one winner, 20 rounds ---------------------------------

/// One `gateway run` of a race, held behind the barrier.
struct Racer {
    host: usize,
    nsenter: Child,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    ready: Option<(u32, u16)>,
    exit: Option<Option<i32>>,
    errors: Vec<String>,
}

impl Racer {
    fn poll(&mut self) {
        for line in self.stdout.try_iter() {
            if let Some(ready) = parse_ready_line(&line) {
                self.ready = Some(ready);
            }
        }
        // The ground's warning on bindfs (every acquire logs it) is not a refusal.
        self.errors.extend(
            self.stderr
                .try_iter()
                .filter(|line| !line.starts_with(GROUND_LINE)),
        );
        if self.exit.is_none() {
            self.exit = self.nsenter.try_wait().unwrap().map(|s| s.code());
        }
    }

    fn settled(&self) -> bool {
        self.ready.is_some() || self.exit.is_some()
    }
}

impl Drop for Racer {
    fn drop(&mut self) {
        if self.exit.is_none() && self.nsenter.try_wait().ok().flatten().is_none() {
            kill_children(self.nsenter.id());
            let _ = self.nsenter.wait();
        }
    }
}

fn racers_from_two_hosts_have_exactly_one_winner(ground: Ground) {
    let lab = Lab::new(ground);
    let hosts = [
        lab.boot("host-a", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
        lab.boot("host-b", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"),
    ];
    let mut wins = [0usize; 2];
    for round in 0..ROUNDS {
        // A port per host: a loser that took the lock anyway would serve, not fail to bind.
        let ports = [free_port(), free_port()];
        let (gate, release) = std::io::pipe().unwrap();
        let mut racers: Vec<Racer> = (0..2 * RACERS_PER_HOST)
            .map(|i| {
                let host = i % 2;
                let args = run_args(ports[host]);
                let mut command = hosts[host].inside(
                    &["sh", "-c", r#"echo armed; read _gate; exec "$@""#, "sh"],
                    &[&[env!("CARGO_BIN_EXE_gateway"), "run"][..], &strs(&args)].concat(),
                );
                command
                    .stdin(gate.try_clone().unwrap())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                let mut nsenter = command.spawn().unwrap();
                Racer {
                    host,
                    stdout: pipe_lines(nsenter.stdout.take().unwrap()),
                    stderr: pipe_lines(nsenter.stderr.take().unwrap()),
                    nsenter,
                    ready: None,
                    exit: None,
                    errors: Vec::new(),
                }
            })
            .collect();
        drop(gate);
        for racer in &racers {
            let armed = racer.stdout.recv_timeout(PATIENCE);
            assert_eq!(
                armed.as_deref(),
                Ok("armed"),
                "round {round}: a racer did not arm"
            );
        }
        // EOF on every racer's stdin at once: they go.
        drop(release);
        let describe = |racers: &[Racer]| {
            racers
                .iter()
                .map(|r| {
                    format!(
                        "  host {} ready {:?} exit {:?} stderr {:?}\n",
                        r.host, r.ready, r.exit, r.errors
                    )
                })
                .collect::<String>()
        };
        let settled = wait_until(PATIENCE, || {
            racers.iter_mut().for_each(Racer::poll);
            racers.iter().all(Racer::settled)
        });
        assert!(
            settled,
            "round {round} did not settle:\n{}",
            describe(&racers)
        );
        // Every loser's last words, up to the end of its pipe.
        wait_until(Duration::from_secs(5), || {
            racers.iter_mut().for_each(Racer::poll);
            racers
                .iter()
                .all(|r| r.ready.is_some() || !r.errors.is_empty())
        });
        let winners: Vec<usize> = (0..racers.len())
            .filter(|&i| racers[i].ready.is_some() && racers[i].exit.is_none())
            .collect();
        assert_eq!(winners.len(), 1, "round {round}:\n{}", describe(&racers));
        let winner = winners[0];
        let (winner_pid, _) = racers[winner].ready.unwrap();
        let winner_host = &hosts[racers[winner].host];
        wins[racers[winner].host] += 1;
        for (i, racer) in racers.iter().enumerate().filter(|(i, _)| *i != winner) {
            assert_eq!(
                racer.exit,
                Some(Some(1)),
                "round {round}, racer {i}:\n{}",
                describe(&racers)
            );
            let said = racer.errors.join("\n");
            if racer.host == racers[winner].host {
                assert!(
                    said.starts_with(&format!(
                        "Gateway failed to start: gateway already running (pid {winner_pid})"
                    )),
                    "round {round}, racer {i} on the winner's host:\n{}",
                    describe(&racers)
                );
            } else {
                assert_eq!(
                    said,
                    format!(
                        "Gateway failed to start: {}",
                        held_by(winner_host, winner_pid)
                    ),
                    "round {round}, racer {i} on the other host:\n{}",
                    describe(&racers)
                );
            }
        }
        // The winner stops; its files go with it.
        let winner_global = only_child(racers[winner].nsenter.id());
        // SAFETY: signalling the child of our nsenter child.
        unsafe { libc::kill(winner_global as libc::pid_t, libc::SIGTERM) };
        let status = wait_with_timeout(&mut racers[winner].nsenter, PATIENCE);
        assert_eq!(status.and_then(|s| s.code()), Some(0), "round {round}");
        racers[winner].exit = Some(Some(0));
        assert!(
            lab.lock_dir_empties(),
            "round {round}: {:?}",
            lab.lock_dir_entries()
        );
    }
    eprintln!("wins by host over {ROUNDS} rounds ({ground:?}): {wins:?}");
}

#[test]
fn on_bindfs_racers_from_two_hosts_have_exactly_one_winner() {
    racers_from_two_hosts_have_exactly_one_winner(Ground::Bindfs);
}

#[test]
fn on_a_plain_dir_racers_from_two_hosts_have_exactly_one_winner() {
    racers_from_two_hosts_have_exactly_one_winner(Ground::Plain);
}

// --- a host that rebooted reclaims its own lock at once ----------------------------------------

fn a_rebooted_host_reclaims_its_own_lock_at_once(ground: Ground) {
    let lab = Lab::new(ground);
    let a = lab.boot("host-a", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    let b = lab.boot("host-b", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
    let served = a.serve(&strs(&run_args(free_port())));
    let pid = served.pid;
    drop(served); // SIGKILLed: A's files stay behind.
    let left = lab.lock_files();
    assert!(
        left.iter().all(Option::is_some),
        "{:?}",
        lab.lock_dir_entries()
    );

    // A is down hard; from B its lock is still another machine's, and B cannot tell it is dead.
    let a = lab.reboot(a);
    let exit = b.run(&strs(
        &[vec!["run".to_owned()], run_args(free_port())].concat(),
    ));
    assert_eq!(
        refusal_after_ground(&exit, lab.ground),
        [format!("Gateway failed to start: {}", held_by(&a, pid))],
        "{exit}"
    );
    assert_eq!(lab.lock_files(), left);

    // A, rebooted (same machine id, new boot id), knows that every process of its last boot
    // is gone: it reclaims at once, not after the stale window or the lock timeout.
    let started = Instant::now();
    let mut args = run_args(free_port());
    args.push("--verbose".into());
    let served = a.serve(&strs(&args));
    assert!(started.elapsed() < AT_ONCE, "{:?}", started.elapsed());
    let mut said: Vec<String> = Vec::new();
    let reclaimed = wait_until(PATIENCE, || {
        said.extend(served.stderr.try_iter());
        said.iter()
            .any(|line| line.starts_with("gateway: reclaiming stale gateway lock "))
    });
    assert!(reclaimed, "{said:?}");
    let recorded: serde_json::Value =
        serde_json::from_slice(lab.lock_files()[0].as_ref().unwrap()).unwrap();
    assert_eq!(recorded["bootId"], a.boot_id.as_str());
    assert_eq!(recorded["pid"], served.pid);
    assert_eq!(served.terminate(), Some(0));
}

#[test]
fn on_bindfs_a_rebooted_host_reclaims_its_own_lock_at_once() {
    a_rebooted_host_reclaims_its_own_lock_at_once(Ground::Bindfs);
}

#[test]
fn on_a_plain_dir_a_rebooted_host_reclaims_its_own_lock_at_once() {
    a_rebooted_host_reclaims_its_own_lock_at_once(Ground::Plain);
}

// --- clones with one machine id: another machine, not an earlier boot ------------------------

fn clones_with_one_machine_id_never_reclaim_each_other(ground: Ground) {
    let lab = Lab::new(ground);
    // One image, its machine id baked in: two replicas, each booted (its own boot id and boot
    // time) before A writes its lock.
    let baked = "cccccccccccccccccccccccccccccccc";
    let a = lab.boot("replica-a", baked);
    let b = lab.boot("replica-b", baked);
    let served = a.serve(&strs(&run_args(free_port())));
    let held = lab.lock_files();

    // A's file was written after B's boot began: not an earlier boot of B's machine, so B does
    // not reclaim it; it serves beside A without the boot-time rule.
    let exit = b.run(&strs(
        &[vec!["run".to_owned()], run_args(free_port())].concat(),
    ));
    assert_eq!(exit.code, Some(1), "{exit}");
    assert_eq!(
        refusal_after_ground(&exit, lab.ground),
        [format!(
            "Gateway failed to start: {}",
            held_by(&a, served.pid)
        )],
        "{exit}"
    );
    assert!(exit.elapsed < AT_ONCE, "not at once: {exit}");
    assert_eq!(lab.lock_files(), held, "A's lock files were touched");

    // `gateway unlock` without --force judges by the same rule.
    let exit = b.run(&["unlock"]);
    assert_eq!(exit.code, Some(1), "{exit}");
    assert_eq!(lab.lock_files(), held, "unlock removed a live clone's lock");
    assert!(healthy(served.port));
    assert_eq!(served.terminate(), Some(0));
}

#[test]
fn on_bindfs_clones_with_one_machine_id_never_reclaim_each_other() {
    clones_with_one_machine_id_never_reclaim_each_other(Ground::Bindfs);
}

#[test]
fn on_a_plain_dir_clones_with_one_machine_id_never_reclaim_each_other() {
    clones_with_one_machine_id_never_reclaim_each_other(Ground::Plain);
}

// --- containers on one kernel: pids of another PID namespace are not judged --------------------

fn containers_on_one_kernel_judge_by_the_beacon_not_the_pid(ground: Ground) {
    let lab = Lab::new(ground);
    // Two pods on one node: the kernel's boot id, each its own PID namespace (both gateways
    // have small pids there, often the same one).
    let a = lab.boot_with("pod-a", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", BootId::Kernel);
    let b = lab.boot_with("pod-b", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", BootId::Kernel);
    assert_eq!(a.boot_id, b.boot_id);
    let served = a.serve(&strs(&run_args(free_port())));
    let pid = served.pid;
    let held = lab.lock_files();
    let recorded: serde_json::Value = serde_json::from_slice(held[0].as_ref().unwrap()).unwrap();
    assert!(recorded["pidNs"].is_string(), "{recorded}");

    let run_b = || {
        b.run(&strs(
            &[vec!["run".to_owned()], run_args(free_port())].concat(),
        ))
    };
    let exit = run_b();
    assert_eq!(exit.code, Some(1), "{exit}");
    let said = refusal_after_ground(&exit, lab.ground);
    match ground {
        // Each pod's own FUSE mount: A's beacon is not seen, and A's pid in B's namespace is
        // nobody (or B itself): without the namespace rule, B takes the lock.
        Ground::Bindfs => assert_eq!(
            said,
            [format!("Gateway failed to start: {}", held_by(&a, pid))],
            "{exit}"
        ),
        // One kernel sees A's beacon: alive, and healthy on its port.
        Ground::Plain => assert!(
            said.len() == 1
                && said[0].starts_with(&format!(
                    "Gateway failed to start: gateway already running (pid {pid})"
                )),
            "{exit}"
        ),
    }
    assert!(exit.elapsed < AT_ONCE, "not at once: {exit}");
    assert_eq!(lab.lock_files(), held, "A's lock files were touched");

    // A dies without a word.
    served.sigkill();
    match ground {
        // B still cannot see whether A's beacon is held: refused, `unlock --force` is the way.
        Ground::Bindfs => {
            let exit = run_b();
            assert_eq!(
                refusal_after_ground(&exit, lab.ground),
                [format!("Gateway failed to start: {}", held_by(&a, pid))],
                "{exit}"
            );
            assert_eq!(lab.lock_files(), held);
        }
        // This kernel sees every lock on the file: a free beacon is a gone holder, reclaimed
        // at once.
        Ground::Plain => {
            let started = Instant::now();
            let served = b.serve(&strs(&run_args(free_port())));
            assert!(started.elapsed() < AT_ONCE, "{:?}", started.elapsed());
            let recorded: serde_json::Value =
                serde_json::from_slice(lab.lock_files()[0].as_ref().unwrap()).unwrap();
            assert_eq!(recorded["hostname"], "pod-b");
            assert_eq!(served.terminate(), Some(0));
        }
    }
}

#[test]
fn on_bindfs_containers_on_one_kernel_judge_by_the_beacon_not_the_pid() {
    containers_on_one_kernel_judge_by_the_beacon_not_the_pid(Ground::Bindfs);
}

#[test]
fn on_a_plain_dir_containers_on_one_kernel_judge_by_the_beacon_not_the_pid() {
    containers_on_one_kernel_judge_by_the_beacon_not_the_pid(Ground::Plain);
}

// --- gateway unlock ----------------------------------------------------------------------------

/// `said` is `prefix`, an age (`5s`, `1m 2s`), then `suffix`.
fn assert_refusal(said: &str, prefix: &str, suffix: &str) {
    let age = said
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_suffix(suffix))
        .unwrap_or_else(|| panic!("{said:?}\nis not {prefix:?} AGE {suffix:?}"));
    assert!(
        humantime::parse_duration(age).is_ok(),
        "not an age: {age:?} in {said:?}"
    );
}

fn unlock_removes_another_machine_s_lock_only_with_force(ground: Ground) {
    let lab = Lab::new(ground);
    let a = lab.boot("host-a", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    let b = lab.boot("host-b", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
    let served = a.serve(&strs(&run_args(free_port())));
    let (pid, port) = (served.pid, served.port);
    let held = lab.lock_files();
    // The paths as the hosts see them (and name them).
    let lock_dir = lab
        .state_dir()
        .join("tmp")
        .join(lab.lock_dir().file_name().unwrap());
    let state_lock = lock_dir.join("gateway.state.lock");
    let config_lock = lock_dir.join(gateway::paths::config_lock_name(
        &lab.state_dir().join("openclaw.json"),
    ));

    // On A's own machine a live gateway's lock is never removed, forced or not.
    for force in [&["unlock"][..], &["unlock", "--force"]] {
        let exit = a.run(force);
        assert_eq!(exit.code, Some(1), "{exit}");
        let said = exit.stderr_lines();
        assert_eq!(said.len(), 1, "{exit}");
        assert_refusal(
            said[0],
            &format!(
                "gateway unlock: refusing to unlock {}: gateway (pid {pid}, port {port}, locked ",
                config_lock.display()
            ),
            " ago) is alive on this machine; stop that gateway first (gateway unlock never removes a live gateway's lock)",
        );
        assert_eq!(lab.lock_files(), held);
    }

    // From B, without --force: refused, naming A.
    let exit = b.run(&["unlock"]);
    assert_eq!(exit.code, Some(1), "{exit}");
    let said = exit.stderr_lines();
    assert_eq!(said.len(), 1, "{exit}");
    match ground {
        // B cannot see A's beacon: A may be alive or gone; only the user knows.
        Ground::Bindfs => assert_eq!(said[0], format!("gateway unlock: {}", held_by(&a, pid))),
        // B sees A's beacon: A is alive, certainly.
        Ground::Plain => assert_refusal(
            said[0],
            &format!(
                "gateway unlock: refusing to unlock {}: gateway (pid {pid}, port {port}, locked ",
                config_lock.display()
            ),
            " ago) is alive on host host-a (the file system shares its lock); stop that gateway first (gateway unlock never removes a live gateway's lock)",
        ),
    }
    assert_eq!(lab.lock_files(), held);

    // A's gateway dies without a word (its machine stays up): B still cannot tell, so it takes
    // --force.
    served.sigkill();
    let exit = b.run(&["unlock"]);
    assert_eq!(
        exit.stderr_lines(),
        [format!("gateway unlock: {}", held_by(&a, pid))],
        "{exit}"
    );
    assert_eq!(lab.lock_files(), held);
    let exit = b.run(&["unlock", "--force"]);
    assert_eq!(exit.code, Some(0), "{exit}");
    let lines: Vec<&str> = exit.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{exit}");
    for (line, path) in lines.iter().zip([&config_lock, &state_lock]) {
        let prefix = format!(
            "removed {}: held by gateway pid {pid} on host host-a (another machine), locked ",
            path.display()
        );
        assert!(
            line.starts_with(&prefix) && line.ends_with(" ago"),
            "{line:?}"
        );
    }
    assert!(lab.lock_dir_empties(), "{:?}", lab.lock_dir_entries());

    // Now B serves.
    let served = b.serve(&strs(&run_args(free_port())));
    let recorded: serde_json::Value =
        serde_json::from_slice(lab.lock_files()[0].as_ref().unwrap()).unwrap();
    assert_eq!(recorded["hostname"], "host-b");
    assert_eq!(served.terminate(), Some(0));
}

#[test]
fn on_bindfs_unlock_removes_another_machine_s_lock_only_with_force() {
    unlock_removes_another_machine_s_lock_only_with_force(Ground::Bindfs);
}

#[test]
fn on_a_plain_dir_unlock_removes_another_machine_s_lock_only_with_force() {
    unlock_removes_another_machine_s_lock_only_with_force(Ground::Plain);
}
