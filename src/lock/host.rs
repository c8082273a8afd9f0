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
//! Each is read once per process, trimmed; an empty or unreadable one is absent.

use std::sync::OnceLock;

/// The host a lock file was written on, as far as it says. Files written by OpenClaw's Node
/// gateway (and by us before issue 13) say nothing: every field is `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostIdentity {
    /// The running kernel's boot id: changes at every boot.
    pub boot_id: Option<String>,
    /// The machine's id: the same across reboots.
    pub machine_id: Option<String>,
    /// The host name, for people (never used to decide).
    pub hostname: Option<String>,
}

/// Where a lock file's holder ran, seen from this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whereabouts {
    /// This boot of this machine (or the file does not say): SPEC §4's rules apply.
    ThisBoot,
    /// This machine, an earlier boot: every process of that boot is gone.
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
            machine_id: read_machine_id(),
            hostname: read_hostname(),
        })
    }

    /// Where the holder of a file recording `self` ran, seen from `here`.
    ///
    /// A file without a boot id (Node's, or older) is judged as before: [`Whereabouts::ThisBoot`].
    /// A boot id we cannot compare with (ours unreadable) is treated as another machine's: it
    /// might be this boot's, so it is never reclaimed by pid, nor as an earlier boot's. The same machine id with another boot id is an earlier boot of this machine.
    pub fn whereabouts(&self, here: &HostIdentity) -> Whereabouts {
        let Some(recorded_boot) = &self.boot_id else {
            return Whereabouts::ThisBoot;
        };
        // Without our own boot id this could be this boot: nothing may be reclaimed by pid.
        let Some(our_boot) = &here.boot_id else {
            return Whereabouts::OtherMachine;
        };
        if our_boot == recorded_boot {
            return Whereabouts::ThisBoot;
        }
        match (&self.machine_id, &here.machine_id) {
            (Some(recorded), Some(ours)) if recorded == ours => Whereabouts::EarlierBoot,
            _ => Whereabouts::OtherMachine,
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

#[cfg(target_os = "macos")]
fn read_boot_id() -> Option<String> {
    sysctl_string(c"kern.bootsessionuuid").or_else(|| {
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
        (read == 0 && boottime.tv_sec > 0)
            .then(|| format!("boottime-{}.{:06}", boottime.tv_sec, boottime.tv_usec))
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

#[cfg(test)]
mod tests {
    use super::*;
    use Whereabouts::{EarlierBoot, OtherMachine, ThisBoot};

    fn host(boot: Option<&str>, machine: Option<&str>) -> HostIdentity {
        HostIdentity {
            boot_id: boot.map(str::to_owned),
            machine_id: machine.map(str::to_owned),
            hostname: Some("h".to_owned()),
        }
    }

    /// The host rule, one row per case: (why, recorded in the file, ours, where the holder is).
    #[test]
    fn where_the_holder_ran_row_by_row() {
        #[rustfmt::skip]
        let table: &[(&str, HostIdentity, HostIdentity, Whereabouts)] = &[
            ("a Node file records no host: judged as before",
                host(None, None),             host(Some("b1"), Some("m1")), ThisBoot),
            ("no boot id, a machine id: still judged as before",
                host(None, Some("m2")),       host(Some("b1"), Some("m1")), ThisBoot),
            ("same boot id: this boot (containers on one kernel too)",
                host(Some("b1"), Some("m9")), host(Some("b1"), Some("m1")), ThisBoot),
            ("same machine, another boot: rebooted since",
                host(Some("b0"), Some("m1")), host(Some("b1"), Some("m1")), EarlierBoot),
            ("another machine id: another machine",
                host(Some("b0"), Some("m2")), host(Some("b1"), Some("m1")), OtherMachine),
            ("another boot id, no machine id recorded: cannot tell, another machine",
                host(Some("b0"), None),       host(Some("b1"), Some("m1")), OtherMachine),
            ("another boot id, no machine id of ours: cannot tell, another machine",
                host(Some("b0"), Some("m1")), host(Some("b1"), None),       OtherMachine),
            ("our boot id unreadable: cannot compare, another machine",
                host(Some("b1"), Some("m1")), host(None, Some("m1")),       OtherMachine),
        ];
        for (why, recorded, here, expected) in table {
            assert_eq!(recorded.whereabouts(here), *expected, "{why}");
        }
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
        assert_eq!(this.whereabouts(this), Whereabouts::ThisBoot);
    }
}
