//! Is the process a lock file names still the gateway that wrote it? (SPEC §4, steps 2–4)
//!
//! Nothing here signals a process: `kill(pid, 0)` only asks the kernel whether it exists.

use super::format::LockPayload;

/// What we can prove about a recorded owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    Dead,
    /// Alive as a pid, but we cannot tell whether it is still the gateway: never reclaimed.
    Unknown,
}

/// Judges the owner a payload names by its pid, start time and, lacking that, its argv.
pub fn judge_owner(payload: &LockPayload) -> Liveness {
    if !pid_is_running(payload.pid) {
        return Liveness::Dead;
    }
    if let (Some(recorded), Some(current)) = (payload.start_time, process_start_time(payload.pid)) {
        return if recorded == current {
            Liveness::Alive
        } else {
            Liveness::Dead
        };
    }
    // No start time recorded (or none readable): argv decides. Unreadable argv is unknown,
    // never reclaimed (SPEC §4 step 4): on macOS that is every live process of another uid
    // unless we are root (`sysctl_procargsx`, bsd/kern/kern_sysctl.c: another uid without
    // `suser` is EINVAL). Its start time is readable (`sysctl(KERN_PROC_PID)`), so a lock that
    // records one is judged above, alive or dead; only one without it stays unknown here.
    match process_argv(payload.pid) {
        Some(argv) if is_gateway_argv(&argv) => Liveness::Alive,
        Some(_) => Liveness::Dead,
        None => Liveness::Unknown,
    }
}

/// `kill(pid, 0)` succeeds or fails with `EPERM`, and the process is not a zombie.
pub fn pid_is_running(pid: u32) -> bool {
    let Ok(raw) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if raw <= 0 {
        return false;
    }
    // SAFETY: signal 0 performs only the existence and permission check; nothing is sent.
    let exists = unsafe { libc::kill(raw, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    exists && !is_zombie(pid)
}

/// Does argv look like an OpenClaw gateway (SPEC §4 step 4)? Node's rule, on every platform
/// (`dist/gateway-process-argv-BVJwTten.mjs:19-36`, called with `allowGatewayBinary: true` by
/// `dist/gateway-lock-CYjRlApN.mjs:137`):
///
/// - every argument is compared trimmed, lowercased, with `\` read as `/`; blank arguments are
///   dropped first, as Node's `parseProcCmdline` (`:10-12`) drops them from a cmdline;
/// - it is a gateway when some argument is `gateway` and the process is OpenClaw: some argument
///   ends with an entry point (`dist/index.js`, ...) or argv0 (without `.exe`, `.cmd`, `.bat`) is
///   `openclaw` or ends with `/openclaw`;
/// - or, whatever its arguments, when argv0 is `openclaw-gateway` or ends with
///   `/openclaw-gateway`.
pub fn is_gateway_argv(argv: &[String]) -> bool {
    const ENTRY_SUFFIXES: [&str; 6] = [
        "dist/index.js",
        "dist/entry.js",
        "openclaw.mjs",
        "scripts/run-node.mjs",
        "src/entry.ts",
        "src/index.ts",
    ];
    let args: Vec<String> = argv
        .iter()
        .map(|arg| arg.trim().replace('\\', "/").to_lowercase())
        .filter(|arg| !arg.is_empty())
        .collect();
    let exe = args
        .first()
        .map_or("", |argv0| strip_windows_extension(argv0));
    let is_gateway_binary = exe == "openclaw-gateway" || exe.ends_with("/openclaw-gateway");
    let is_openclaw = exe == "openclaw"
        || exe.ends_with("/openclaw")
        || args
            .iter()
            .any(|arg| ENTRY_SUFFIXES.iter().any(|entry| arg.ends_with(entry)));
    let has_gateway_command = args.iter().any(|arg| arg == "gateway");
    (has_gateway_command && is_openclaw) || is_gateway_binary
}

/// `openclaw.exe` → `openclaw`: Node strips `/\.(bat|cmd|exe)$/i` from argv0 (already
/// lowercased here).
fn strip_windows_extension(argv0: &str) -> &str {
    [".bat", ".cmd", ".exe"]
        .iter()
        .find_map(|ext| argv0.strip_suffix(ext))
        .unwrap_or(argv0)
}

/// This process's own start time, in the unit lock files record. Read once per process (a
/// forked child has its own pid, and reads its own).
pub fn own_start_time() -> Option<u64> {
    static OWN: std::sync::OnceLock<(u32, Option<u64>)> = std::sync::OnceLock::new();
    let pid = std::process::id();
    match OWN.get_or_init(|| (pid, process_start_time(pid))) {
        (cached_pid, start_time) if *cached_pid == pid => *start_time,
        _ => process_start_time(pid),
    }
}

#[cfg(target_os = "linux")]
fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("State:"))
                .map(|state| state.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// Linux: `starttime` of `/proc/<pid>/stat`, clock ticks since boot.
#[cfg(target_os = "linux")]
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; fields resume after the last ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// Linux: `/proc/<pid>/cmdline`, split at each NUL (the last one ends the last argument).
/// Empty for a kernel thread: unknown.
#[cfg(target_os = "linux")]
pub fn process_argv(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let raw = raw.strip_suffix(&[0]).unwrap_or(&raw);
    if raw.is_empty() {
        return None;
    }
    Some(
        raw.split(|b| *b == 0)
            .map(|arg| String::from_utf8_lossy(arg).into_owned())
            .collect(),
    )
}

#[cfg(target_os = "macos")]
fn is_zombie(pid: u32) -> bool {
    kinfo_proc(pid).is_some_and(|proc| proc.zombie)
}

/// macOS: whole seconds since the Unix epoch, as `ps -o lstart` shows.
#[cfg(target_os = "macos")]
pub fn process_start_time(pid: u32) -> Option<u64> {
    kinfo_proc(pid).and_then(|proc| proc.start_time)
}

/// macOS: `sysctl(CTL_KERN, KERN_PROC, KERN_PROC_PID, pid)`, what `ps` reads, for any user's
/// process. Not `proc_pidinfo(PROC_PIDTBSDINFO)`: xnu answers that only for a process of our
/// own uid, unless we are root (bsd/kern/proc_info.c, `proc_pidinfo_internal`: the flavor is
/// `CHECK_SAME_USER`, and `proc_security_policy` returns `EPERM` for another uid without
/// `PRIV_GLOBAL_PROC_INFO`), so a lock naming another user's process (a reused pid) would stay
/// unknown and never be reclaimed. `sysctl_prochandle` (bsd/kern/kern_sysctl.c) checks no uid
/// and walks both the live and the zombie lists, so it sees zombies too. Its start time is
/// the number `proc_pidinfo` gave: both copy the same field, `p->p_start.tv_sec`
/// (`fill_user64_externproc`: `p_starttime.tv_sec`; `proc_pidbsdinfo`: `pbi_start_tvsec`;
/// xnu-11417.101.15), which is also what `ps -o lstart` prints (the number OpenClaw records).
#[cfg(target_os = "macos")]
fn kinfo_proc(pid: u32) -> Option<KinfoProc> {
    let raw = libc::c_int::try_from(pid).ok()?;
    let mut buf = [0u8; KINFO_PROC_SIZE];
    // One kinfo_proc, or nothing when no process has the pid.
    let size = sysctl(
        &mut [libc::CTL_KERN, libc::KERN_PROC, libc::KERN_PROC_PID, raw],
        &mut buf,
    )?;
    parse_kinfo_proc(buf.get(..size)?, pid)
}

/// macOS: `sysctl(mib)` into `buf`; the number of bytes the kernel wrote, `None` when it
/// fails.
#[cfg(target_os = "macos")]
fn sysctl(mib: &mut [libc::c_int], buf: &mut [u8]) -> Option<usize> {
    let mut size = buf.len();
    // SAFETY: `mib` holds `mib.len()` names; `buf` is valid for `size` bytes; the kernel
    // writes at most that and says how many in `size`.
    let read = unsafe {
        libc::sysctl(
            mib.as_mut_ptr(),
            libc::c_uint::try_from(mib.len()).ok()?,
            buf.as_mut_ptr().cast(),
            &mut size,
            std::ptr::null_mut(),
            0,
        )
    };
    (read == 0).then_some(size)
}

/// `sizeof(struct kinfo_proc)` for a 64-bit process, on arm64 and x86_64 alike.
const KINFO_PROC_SIZE: usize = 648;

/// What judging an owner needs of a macOS `struct kinfo_proc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(target_os = "macos"), allow(dead_code))] // Parsed everywhere, so tested on Linux.
struct KinfoProc {
    /// `kp_proc.p_starttime.tv_sec`; `None` if negative (no real process has one).
    start_time: Option<u64>,
    /// `kp_proc.p_stat == SZOMB`: exited, not yet reaped.
    zombie: bool,
}

/// Parses the `struct kinfo_proc` that `sysctl(KERN_PROC_PID)` returns for `pid`, from the
/// offsets of Apple's `<sys/sysctl.h>` and `<sys/proc.h>` for 64-bit processes (checked with
/// `_Static_assert`s against the macOS SDK headers zig ships, for both Apple targets, by
/// scripts/kinfo-proc-layout.c in scripts/macos-link.sh):
/// `kp_proc.p_starttime.tv_sec` (`i64`) at 0, `kp_proc.p_stat` (`char`) at 36,
/// `kp_proc.p_pid` (`i32`) at 40, native-endian. `None` unless the buffer is exactly one
/// `kinfo_proc` of that pid: the kernel returns no bytes (and success) when no process has the
/// pid, and another size would be a layout we do not know.
#[cfg_attr(not(target_os = "macos"), allow(dead_code))] // Parsed everywhere, so tested on Linux.
fn parse_kinfo_proc(buf: &[u8], pid: u32) -> Option<KinfoProc> {
    /// `SZOMB` of bsd/sys/proc.h: "Awaiting collection by parent".
    const SZOMB: u8 = 5;
    if buf.len() != KINFO_PROC_SIZE {
        return None;
    }
    let start_secs = i64::from_ne_bytes(buf[0..8].try_into().ok()?);
    let p_stat = buf[36];
    let p_pid = i32::from_ne_bytes(buf[40..44].try_into().ok()?);
    (u32::try_from(p_pid).ok()? == pid).then_some(KinfoProc {
        start_time: u64::try_from(start_secs).ok(),
        zombie: p_stat == SZOMB,
    })
}

/// macOS: `sysctl(KERN_PROCARGS2)` into a buffer of `KERN_ARGMAX` bytes (the most the kernel
/// ever returns, so no size query that a changing process could make too small), parsed by
/// [`parse_procargs2`].
#[cfg(target_os = "macos")]
pub fn process_argv(pid: u32) -> Option<Vec<String>> {
    let mut argmax = [0u8; std::mem::size_of::<libc::c_int>()];
    sysctl(&mut [libc::CTL_KERN, libc::KERN_ARGMAX], &mut argmax)?;
    let argmax = usize::try_from(libc::c_int::from_ne_bytes(argmax))
        .ok()
        .filter(|n| *n > 0)?;
    let mut buf = vec![0u8; argmax];
    let size = sysctl(
        &mut [libc::CTL_KERN, libc::KERN_PROCARGS2, pid as libc::c_int],
        &mut buf,
    )?;
    buf.truncate(size);
    parse_procargs2(&buf)
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn is_zombie(_pid: u32) -> bool {
    false
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
pub fn process_start_time(_pid: u32) -> Option<u64> {
    None
}

/// Elsewhere argv is not read: unknown.
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
pub fn process_argv(_pid: u32) -> Option<Vec<String>> {
    None
}

/// Parses what `sysctl(KERN_PROCARGS2)` returns on macOS: `argc` as a native-endian `i32`,
/// the executable path and its NUL, NUL padding, then `argc` NUL-terminated arguments, then
/// the environment (and Apple's own strings), which are not arguments.
///
/// Exactly `argc` strings are taken after the padding, empty ones included: skipping empty
/// strings would shift the count into the environment. `None` when the buffer ends before
/// `argc` complete strings (or is not this layout at all). One ambiguity is the format's own:
/// an empty argv0 cannot be told from padding, so it is skipped and the first environment
/// string read as the last argument (whatever then judges the argv sees a wrong one; it can
/// only come from a process that blanked its own argv0).
pub fn parse_procargs2(buf: &[u8]) -> Option<Vec<String>> {
    let argc = i32::from_ne_bytes(buf.get(..4)?.try_into().ok()?);
    let argc = usize::try_from(argc).ok()?;
    let rest = &buf[4..];
    let exec_path_end = rest.iter().position(|b| *b == 0)?;
    if argc == 0 {
        return Some(Vec::new());
    }
    let after_path = &rest[exec_path_end..];
    let args_start = after_path.iter().position(|b| *b != 0)?;
    let mut strings = after_path[args_start..].split_inclusive(|b| *b == 0);
    let mut args = Vec::with_capacity(argc.min(4096));
    for _ in 0..argc {
        let arg = strings.next()?.strip_suffix(&[0])?;
        args.push(String::from_utf8_lossy(arg).into_owned());
    }
    Some(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| a.to_string()).collect()
    }

    /// Node's rule, case by case: (argv, is it a gateway?).
    #[test]
    fn gateway_argv_rule() {
        let cases: &[(&[&str], bool)] = &[
            // `gateway` plus an entry point: Node running OpenClaw's gateway.
            (&["node", "/x/dist/index.js", "gateway"], true),
            (&["bun", "src/entry.ts", "gateway", "--port", "1"], true),
            (&["node", "/x/openclaw.mjs", "gateway", "run"], true),
            (&["node", "/x/scripts/run-node.mjs", "gateway"], true),
            // `gateway` plus an argv0 that is the openclaw launcher.
            (&["openclaw", "gateway"], true),
            (&["/usr/local/bin/openclaw", "gateway", "run"], true),
            // Case does not matter: every argument is lowercased first.
            (&["NODE", "/X/DIST/INDEX.JS", "GATEWAY"], true),
            (&["/Applications/OpenClaw/OpenClaw", "Gateway"], true),
            // Windows paths: `\` reads as `/`, and `.exe`/`.cmd`/`.bat` leave argv0.
            (
                &[r"C:\Program Files\OpenClaw\openclaw.exe", "gateway"],
                true,
            ),
            (&[r"C:\x\OPENCLAW.CMD", "gateway"], true),
            (&["node", r"C:\x\dist\entry.js", "gateway"], true),
            // Blank arguments are dropped and the rest trimmed, as Node's parseProcCmdline does.
            (&["", " node ", "/x/dist/index.js", " gateway "], true),
            // The gateway binary counts whatever its arguments.
            (&["openclaw-gateway"], true),
            (&["/opt/openclaw/bin/openclaw-gateway", "--port", "1"], true),
            (&["/opt/bin/OpenClaw-Gateway.exe"], true),
            // Not a gateway: OpenClaw running another command.
            (&["node", "/x/dist/index.js", "tui"], false),
            (&["/usr/local/bin/openclaw", "tui"], false),
            (&["openclaw"], false),
            // Not a gateway: `gateway` without OpenClaw.
            (&["sleep", "gateway"], false),
            (&["node", "/x/other.js", "gateway"], false),
            // Not a gateway: a name that only ends like one.
            (&["/usr/bin/myopenclaw", "gateway"], false),
            (&["/usr/bin/not-openclaw-gateway"], false),
            (&["node", "/x/index.js", "gateway"], false),
            // `gateway` must be a whole argument, not a part of one.
            (&["openclaw", "gateway-status"], false),
            (&["openclaw", "--gateway"], false),
            (&[], false),
            (&["", " "], false),
        ];
        for (args, expected) in cases {
            assert_eq!(is_gateway_argv(&argv(args)), *expected, "{args:?}");
        }
    }

    /// A KERN_PROCARGS2 buffer: argc, the exec path, `padding` NULs, then `strings` (each
    /// NUL-terminated): the arguments and, after them, the environment.
    fn procargs2(argc: i32, exec_path: &str, padding: usize, strings: &[&str]) -> Vec<u8> {
        let mut buf = argc.to_ne_bytes().to_vec();
        buf.extend_from_slice(exec_path.as_bytes());
        buf.push(0);
        buf.extend(std::iter::repeat_n(0, padding));
        for s in strings {
            buf.extend_from_slice(s.as_bytes());
            buf.push(0);
        }
        buf
    }

    #[test]
    fn procargs2_takes_exactly_argc_strings() {
        fn with_env(args: &[&'static str]) -> Vec<&'static str> {
            [args, &["PATH=/usr/bin", "HOME=/Users/u", "gateway"]].concat()
        }
        // (argc, NULs of padding, the strings after it, the argv expected)
        type Case = (i32, usize, Vec<&'static str>, Option<Vec<&'static str>>);
        let cases: &[Case] = &[
            // The environment after argv is never read as arguments.
            (
                2,
                7,
                with_env(&["/usr/local/bin/openclaw", "tui"]),
                Some(vec!["/usr/local/bin/openclaw", "tui"]),
            ),
            // Empty arguments count: skipping them would take `PATH=...` (and `gateway`).
            (
                4,
                3,
                with_env(&["node", "", "/x/dist/index.js", ""]),
                Some(vec!["node", "", "/x/dist/index.js", ""]),
            ),
            (
                3,
                1,
                with_env(&["sleep", "", ""]),
                Some(vec!["sleep", "", ""]),
            ),
            // No padding at all, and a lot of it.
            (1, 0, with_env(&["a"]), Some(vec!["a"])),
            (1, 200, vec!["a"], Some(vec!["a"])),
            // argc 0: no arguments.
            (0, 4, with_env(&[]), Some(vec![])),
            // The buffer ends before argc strings: unreadable, not a shorter argv.
            (3, 2, vec!["a", "b"], None),
            // A negative argc is no argc.
            (-1, 2, vec!["a"], None),
        ];
        for (argc, padding, strings, expected) in cases {
            let buf = procargs2(*argc, "/usr/local/bin/node", *padding, strings);
            let expected = expected
                .as_ref()
                .map(|args| args.iter().map(|a| a.to_string()).collect::<Vec<_>>());
            assert_eq!(parse_procargs2(&buf), expected, "{argc} {strings:?}");
        }
    }

    #[test]
    fn procargs2_rejects_truncated_buffers() {
        let full = procargs2(2, "/bin/sh", 3, &["sh", "gateway", "HOME=/"]);
        // Cut inside the last argument: its NUL is missing.
        let cut = full.iter().position(|b| *b == b'y').unwrap();
        assert_eq!(parse_procargs2(&full[..cut]), None);
        // Cut inside argc, or inside the exec path.
        assert_eq!(parse_procargs2(&full[..3]), None);
        assert_eq!(parse_procargs2(&full[..7]), None);
        assert_eq!(parse_procargs2(&[]), None);
    }

    /// A 64-bit `kinfo_proc` with these fields set, the rest zero.
    fn kinfo_proc_bytes(start_secs: i64, p_stat: u8, p_pid: i32) -> Vec<u8> {
        let mut buf = vec![0u8; KINFO_PROC_SIZE];
        buf[0..8].copy_from_slice(&start_secs.to_ne_bytes());
        buf[8..12].copy_from_slice(&123_456i32.to_ne_bytes()); // tv_usec: not part of it
        buf[36] = p_stat;
        buf[40..44].copy_from_slice(&p_pid.to_ne_bytes());
        buf
    }

    #[test]
    fn kinfo_proc_gives_start_seconds_and_zombie_state() {
        const SRUN: u8 = 2;
        const SSTOP: u8 = 4;
        const SZOMB: u8 = 5;
        // (the buffer, the pid asked about, what is read)
        let cases: &[(Vec<u8>, u32, Option<KinfoProc>)] = &[
            (
                kinfo_proc_bytes(1_796_000_000, SRUN, 4242),
                4242,
                Some(KinfoProc {
                    start_time: Some(1_796_000_000),
                    zombie: false,
                }),
            ),
            (
                kinfo_proc_bytes(1_796_000_000, SSTOP, 4242),
                4242,
                Some(KinfoProc {
                    start_time: Some(1_796_000_000),
                    zombie: false,
                }),
            ),
            // Exited, not reaped: still there, start time and all.
            (
                kinfo_proc_bytes(1_700_000_001, SZOMB, 77),
                77,
                Some(KinfoProc {
                    start_time: Some(1_700_000_001),
                    zombie: true,
                }),
            ),
            // A negative start time is no start time.
            (
                kinfo_proc_bytes(-1, SRUN, 77),
                77,
                Some(KinfoProc {
                    start_time: None,
                    zombie: false,
                }),
            ),
            // Another pid's record is not this pid's.
            (kinfo_proc_bytes(1_796_000_000, SRUN, 4243), 4242, None),
            (kinfo_proc_bytes(1_796_000_000, SRUN, -1), u32::MAX, None),
            // No process has the pid: the kernel wrote nothing.
            (Vec::new(), 4242, None),
            // A size that is not one 64-bit kinfo_proc: a layout we do not know.
            (
                kinfo_proc_bytes(1_796_000_000, SRUN, 4242)[..492].to_vec(),
                4242,
                None,
            ),
            (
                [
                    kinfo_proc_bytes(1, SRUN, 4242),
                    kinfo_proc_bytes(2, SRUN, 4242),
                ]
                .concat(),
                4242,
                None,
            ),
        ];
        for (buf, pid, expected) in cases {
            assert_eq!(parse_kinfo_proc(buf, *pid), *expected, "pid {pid}");
        }
    }

    #[test]
    fn own_process_is_running_and_has_a_start_time() {
        assert!(pid_is_running(std::process::id()));
        assert!(own_start_time().is_some());
        assert!(!pid_is_running(0));
        assert!(!pid_is_running(u32::MAX));
    }

    #[cfg(any(target_os = "linux", target_os = "macos"))]
    #[test]
    fn own_argv_is_read_as_std_sees_it() {
        let ours: Vec<String> = std::env::args().collect();
        assert_eq!(process_argv(std::process::id()), Some(ours));
    }
}
