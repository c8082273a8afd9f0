//! Which machine, and which boot of it, a lock file was written on: the identity our lock files
//! record, and how a checker's own compares with it (issue 13).
//!
//! A pid means something only to the kernel that gave it out. The boot id names that kernel
//! (every container on it shares it); the machine id outlives reboots, so a file from an earlier
//! boot of this same machine can be told from one written on another machine.
//!
//! Where each comes from:
//! - Linux: `/proc/sys/kernel/random/boot_id`, `/etc/machine-id` (else
//!   `/var/lib/dbus/machine-id`), `gethostname(2)`.
//! - macOS: `sysctl kern.bootsessionuuid` (else `kern.boottime`, seconds and microseconds), the
//!   host UUID from `gethostuuid(2)` (the IOPlatformUUID, from libSystem: no IOKit to link; the
//!   App Sandbox refuses it, so a sandboxed app records none), `gethostname(3)`. Not
//!   `kern.uuid`: that names the kernel's build, the same on every Mac that runs it.
//!
//! Each is read once per process, trimmed; an empty or unreadable one is absent. The machine id
//! is recorded only as a hash: machine-id(5) asks that the id itself stay confidential.
//!
//! A machine id alone does not prove "this machine": container images and cloned VMs carry a
//! baked-in one. A file is of an earlier boot of this machine only when it also predates this
//! boot (Linux: `btime` in `/proc/stat`; macOS: `kern.boottime`). A boot id alone does not make
//! pids comparable either: containers on one kernel share it and each has its own PID
//! namespace, so our files record that namespace too (Linux).

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

/// The host a lock file was written on, as far as it says. Files written by OpenClaw's Node
/// gateway (and by us before issue 13) say nothing: every field is `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostIdentity {
    /// The running kernel's boot id: changes at every boot.
    pub boot_id: Option<String>,
    /// A hash of the machine's id ([`machine_id_hash`]): the same across reboots, and on every
    /// clone of one image.
    pub machine_id: Option<String>,
    /// The host name, for people (never used to decide).
    pub hostname: Option<String>,
    /// Linux: the PID namespace the pid was given out in, as `dev:ino` of `/proc/self/ns/pid`.
    pub pid_ns: Option<String>,
    /// When this boot began. Read for our own host only: files do not record it.
    pub boot_started: Option<SystemTime>,
}

/// How much earlier than this boot's start a file must say it was written to be taken for an
/// earlier boot's: the boot time is worked out from the uptime and the wall clock, which may
/// have been stepped since.
pub const BOOT_TIME_MARGIN: Duration = Duration::from_secs(5);

/// Where a lock file's holder ran, seen from this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whereabouts {
    /// This boot of this machine (or the file does not say): SPEC §4's rules apply.
    ThisBoot,
    /// This boot (the same kernel), another PID namespace: its pid means nothing here, but its
    /// beacon does, where the file system is local.
    OtherPidNamespace,
    /// This machine (the same machine id), and the file predates this boot: every process of
    /// that boot is gone.
    EarlierBoot,
    /// Another machine, or one we cannot tell apart from another: its pid means nothing here.
    OtherMachine,
}

impl HostIdentity {
    /// This process's host, read once.
    pub fn this() -> &'static HostIdentity {
        static THIS: OnceLock<HostIdentity> = OnceLock::new();
        THIS.get_or_init(|| HostIdentity {
            boot_id: read_boot_id(),
            machine_id: read_machine_id().map(|id| machine_id_hash(&id)),
            hostname: read_hostname(),
            pid_ns: read_pid_ns(),
            boot_started: read_boot_started(),
        })
    }

    /// Where the holder of a file recording `self`, written at `written` (its `createdAt`, else
    /// its mtime), ran, seen from `here`.
    ///
    /// - No boot id in the file (Node's, or older): judged as before, [`Whereabouts::ThisBoot`].
    /// - Our boot id unreadable: it might be this boot, so another machine's (never reclaimed).
    /// - The same boot id: this boot; in another PID namespace when both record theirs and they
    ///   differ (a file or a checker that records none is judged as before).
    /// - Another boot id: an earlier boot of this machine only when the machine ids match and
    ///   the file was written more than [`BOOT_TIME_MARGIN`] before this boot began; else
    ///   another machine (a clone with a baked-in machine id, running now).
    pub fn whereabouts(&self, written: Option<SystemTime>, here: &HostIdentity) -> Whereabouts {
        let Some(recorded_boot) = &self.boot_id else {
            return Whereabouts::ThisBoot;
        };
        let Some(our_boot) = &here.boot_id else {
            return Whereabouts::OtherMachine;
        };
        if our_boot == recorded_boot {
            return match (&self.pid_ns, &here.pid_ns) {
                (Some(recorded), Some(ours)) if recorded != ours => Whereabouts::OtherPidNamespace,
                _ => Whereabouts::ThisBoot,
            };
        }
        let same_machine =
            matches!((&self.machine_id, &here.machine_id), (Some(r), Some(o)) if r == o);
        let before_this_boot = match (written, here.boot_started) {
            (Some(written), Some(booted)) => written + BOOT_TIME_MARGIN < booted,
            _ => false,
        };
        if same_machine && before_this_boot {
            Whereabouts::EarlierBoot
        } else {
            Whereabouts::OtherMachine
        }
    }

    /// How to name the host to people: its host name, else its machine id, else its boot id.
    pub fn display_name(&self) -> String {
        self.hostname
            .as_ref()
            .or(self.machine_id.as_ref())
            .or(self.boot_id.as_ref())
            .cloned()
            .unwrap_or_else(|| "an unnamed host".to_owned())
    }
}

/// What a lock file records of a machine id: the SHA-256 of an application key and the id, in
/// hex, cut to 32 characters (as systemd's `sd_id128_get_machine_app_specific` does, a value
/// that names the machine to us without giving its id away).
pub fn machine_id_hash(machine_id: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"openclaw-gateway lock machine id v1\n");
    hasher.update(machine_id.as_bytes());
    let digest = hasher.finalize();
    let mut hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    hex.truncate(32);
    hex
}

/// Trimmed; empty is absent.
fn clean(raw: &str) -> Option<String> {
    let trimmed = raw.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

#[cfg(target_os = "linux")]
fn read_text(path: &str) -> Option<String> {
    clean(&std::fs::read_to_string(path).ok()?)
}

fn read_hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is valid for `buf.len()` bytes; gethostname writes at most that many.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return None;
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    clean(&String::from_utf8_lossy(&buf[..end]))
}

#[cfg(target_os = "linux")]
fn read_boot_id() -> Option<String> {
    read_text("/proc/sys/kernel/random/boot_id")
}

#[cfg(target_os = "linux")]
fn read_machine_id() -> Option<String> {
    read_text("/etc/machine-id").or_else(|| read_text("/var/lib/dbus/machine-id"))
}

/// This boot's start, from `btime` (seconds since the epoch) in `/proc/stat`.
#[cfg(target_os = "linux")]
fn read_boot_started() -> Option<SystemTime> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let seconds: u64 = stat
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    (seconds > 0).then(|| SystemTime::UNIX_EPOCH + Duration::from_secs(seconds))
}

/// Our PID namespace as `dev:ino` of `/proc/self/ns/pid` (the same for every process in it).
#[cfg(target_os = "linux")]
fn read_pid_ns() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata("/proc/self/ns/pid").ok()?;
    Some(format!("{}:{}", meta.dev(), meta.ino()))
}

#[cfg(not(target_os = "linux"))]
fn read_pid_ns() -> Option<String> {
    None
}

#[cfg(target_os = "macos")]
fn read_boot_started() -> Option<SystemTime> {
    let boottime = sysctl_boottime()?;
    Some(
        SystemTime::UNIX_EPOCH
            + Duration::from_secs(boottime.tv_sec as u64)
            + Duration::from_micros(boottime.tv_usec as u64),
    )
}

/// `kern.boottime`, when set.
#[cfg(target_os = "macos")]
fn sysctl_boottime() -> Option<libc::timeval> {
    let mut boottime = libc::timeval {
        tv_sec: 0,
        tv_usec: 0,
    };
    let mut size = std::mem::size_of::<libc::timeval>();
    // SAFETY: `boottime` is valid for `size` bytes; the kernel writes at most that.
    let read = unsafe {
        libc::sysctlbyname(
            c"kern.boottime".as_ptr(),
            (&raw mut boottime).cast(),
            &mut size,
            std::ptr::null_mut(),
            0,
        )
    };
    (read == 0 && boottime.tv_sec > 0 && boottime.tv_usec >= 0).then_some(boottime)
}

#[cfg(target_os = "macos")]
fn read_boot_id() -> Option<String> {
    sysctl_string(c"kern.bootsessionuuid").or_else(|| {
        let boottime = sysctl_boottime()?;
        Some(format!(
            "boottime-{}.{:06}",
            boottime.tv_sec, boottime.tv_usec
        ))
    })
}

#[cfg(target_os = "macos")]
fn read_machine_id() -> Option<String> {
    let mut uuid = [0u8; 16];
    let wait = libc::timespec {
        tv_sec: 1,
        tv_nsec: 0,
    };
    // SAFETY: `uuid` is the 16 bytes of a uuid_t; `wait` is a valid timespec.
    if unsafe { libc::gethostuuid(uuid.as_mut_ptr(), &wait) } != 0 || uuid == [0; 16] {
        return None;
    }
    Some(
        uuid::Uuid::from_bytes(uuid)
            .hyphenated()
            .to_string()
            .to_uppercase(),
    )
}

/// A string sysctl by name, `None` when it is missing or empty.
#[cfg(target_os = "macos")]
fn sysctl_string(name: &std::ffi::CStr) -> Option<String> {
    let mut buf = [0u8; 128];
    let mut size = buf.len();
    // SAFETY: `buf` is valid for `size` bytes; the kernel writes at most that and says how many.
    let read = unsafe {
        libc::sysctlbyname(
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            &mut size,
            std::ptr::null_mut(),
            0,
        )
    };
    if read != 0 {
        return None;
    }
    let bytes = &buf[..size.min(buf.len())];
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    clean(&String::from_utf8_lossy(&bytes[..end]))
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn read_boot_id() -> Option<String> {
    None
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn read_machine_id() -> Option<String> {
    None
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn read_boot_started() -> Option<SystemTime> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use Whereabouts::{EarlierBoot, OtherMachine, OtherPidNamespace, ThisBoot};

    /// When "this boot" began in the table below.
    fn booted() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn host(boot: Option<&str>, machine: Option<&str>) -> HostIdentity {
        HostIdentity {
            boot_id: boot.map(str::to_owned),
            machine_id: machine.map(str::to_owned),
            hostname: Some("h".to_owned()),
            pid_ns: None,
            boot_started: Some(booted()),
        }
    }

    fn in_ns(mut host: HostIdentity, pid_ns: &str) -> HostIdentity {
        host.pid_ns = Some(pid_ns.to_owned());
        host
    }

    /// The host rule, one row per case: (why, recorded in the file, written this long before
    /// this boot began (negative: after), ours, where the holder is).
    #[test]
    fn where_the_holder_ran_row_by_row() {
        const HOUR: i64 = 3600;
        let h = host;
        #[rustfmt::skip]
        let table: &[(&str, HostIdentity, i64, HostIdentity, Whereabouts)] = &[
            ("a Node file records no host: judged as before",
                h(None, None),             HOUR, h(Some("b1"), Some("m1")), ThisBoot),
            ("no boot id, a machine id: still judged as before",
                h(None, Some("m2")),       HOUR, h(Some("b1"), Some("m1")), ThisBoot),
            ("same boot id: this boot (containers on one kernel too)",
                h(Some("b1"), Some("m9")), -HOUR, h(Some("b1"), Some("m1")), ThisBoot),
            ("same boot id, the same PID namespace: this boot",
                in_ns(h(Some("b1"), None), "4:1"), -HOUR, in_ns(h(Some("b1"), None), "4:1"), ThisBoot),
            ("same boot id, another PID namespace: its pid is not ours to judge",
                in_ns(h(Some("b1"), None), "4:1"), -HOUR, in_ns(h(Some("b1"), None), "4:2"), OtherPidNamespace),
            ("same boot id, no PID namespace recorded: judged as before",
                h(Some("b1"), None),       -HOUR, in_ns(h(Some("b1"), None), "4:2"), ThisBoot),
            ("same boot id, ours unknown: judged as before",
                in_ns(h(Some("b1"), None), "4:1"), -HOUR, h(Some("b1"), None), ThisBoot),
            ("same machine, another boot, written before it: rebooted since",
                h(Some("b0"), Some("m1")), HOUR, h(Some("b1"), Some("m1")), EarlierBoot),
            ("same machine id, written since this boot began: a clone running now",
                h(Some("b0"), Some("m1")), -HOUR, h(Some("b1"), Some("m1")), OtherMachine),
            ("same machine id, written within the margin of this boot's start: cannot tell",
                h(Some("b0"), Some("m1")), 2, h(Some("b1"), Some("m1")), OtherMachine),
            ("another machine id: another machine",
                h(Some("b0"), Some("m2")), HOUR, h(Some("b1"), Some("m1")), OtherMachine),
            ("another boot id, no machine id recorded: cannot tell, another machine",
                h(Some("b0"), None),       HOUR, h(Some("b1"), Some("m1")), OtherMachine),
            ("another boot id, no machine id of ours: cannot tell, another machine",
                h(Some("b0"), Some("m1")), HOUR, h(Some("b1"), None),       OtherMachine),
            ("our boot id unreadable: cannot compare, another machine",
                h(Some("b1"), Some("m1")), HOUR, h(None, Some("m1")),       OtherMachine),
        ];
        for (why, recorded, before_boot, here, expected) in table {
            let written = if *before_boot >= 0 {
                booted() - Duration::from_secs(before_boot.unsigned_abs())
            } else {
                booted() + Duration::from_secs(before_boot.unsigned_abs())
            };
            assert_eq!(
                recorded.whereabouts(Some(written), here),
                *expected,
                "{why}"
            );
        }
        let mut here = h(Some("b1"), Some("m1"));
        let earlier = h(Some("b0"), Some("m1"));
        let long_ago = Some(booted() - Duration::from_secs(86_400));
        assert_eq!(
            earlier.whereabouts(None, &here),
            OtherMachine,
            "no write time: cannot tell"
        );
        here.boot_started = None;
        assert_eq!(
            earlier.whereabouts(long_ago, &here),
            OtherMachine,
            "no boot time: cannot tell"
        );
    }

    #[test]
    fn the_machine_id_is_recorded_as_a_hash() {
        let hash = machine_id_hash("4c4c4544004d3510804a");
        assert_eq!(hash.len(), 32);
        assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(!hash.contains("4c4c4544"));
        assert_eq!(hash, machine_id_hash("4c4c4544004d3510804a"));
        assert_ne!(hash, machine_id_hash("4c4c4544004d3510804b"));
    }

    #[test]
    fn display_name_prefers_the_host_name() {
        let mut host = host(Some("b"), Some("m"));
        assert_eq!(host.display_name(), "h");
        host.hostname = None;
        assert_eq!(host.display_name(), "m");
        host.machine_id = None;
        assert_eq!(host.display_name(), "b");
    }

    #[test]
    fn values_are_trimmed_and_empty_is_absent() {
        assert_eq!(clean(" abc\n"), Some("abc".to_owned()));
        assert_eq!(clean("\n \t"), None);
        assert_eq!(clean(""), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_host_is_read_from_the_kernel() {
        let this = HostIdentity::this();
        assert_eq!(this.boot_id, read_text("/proc/sys/kernel/random/boot_id"));
        assert!(this.boot_id.is_some());
        assert!(this.hostname.is_some());
        assert_eq!(this.pid_ns.as_ref().map(|ns| ns.contains(':')), Some(true));
        let booted = this.boot_started.expect("btime in /proc/stat");
        assert!(booted < SystemTime::now());
        let now = Some(SystemTime::now());
        assert_eq!(this.whereabouts(now, this), Whereabouts::ThisBoot);
        if let Some(raw) = read_machine_id() {
            assert_eq!(this.machine_id, Some(machine_id_hash(&raw)));
        }
    }
}
