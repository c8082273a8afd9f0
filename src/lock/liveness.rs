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
    bsd_info(pid).is_some_and(|info| info.pbi_status == libc::SZOMB)
}

/// macOS: whole seconds since the Unix epoch, as `ps -o lstart` shows.
#[cfg(target_os = "macos")]
pub fn process_start_time(pid: u32) -> Option<u64> {
    bsd_info(pid).map(|info| info.pbi_start_tvsec)
}

#[cfg(target_os = "macos")]
fn bsd_info(pid: u32) -> Option<libc::proc_bsdinfo> {
    let size = std::mem::size_of::<libc::proc_bsdinfo>() as libc::c_int;
    // SAFETY: a zeroed proc_bsdinfo is a valid out-buffer of `size` bytes.
    let mut info: libc::proc_bsdinfo = unsafe { std::mem::zeroed() };
    // `arg` 1, not 0: xnu's proc_pidinfo (bsd/kern/proc_info.c) looks a pid up among zombies
    // (`proc_find_zombref`) only for PROC_PIDTBSDINFO with `arg != 0` ("Check if we need to
    // look for zombies"); with 0 a zombie is ESRCH, and we would never see SZOMB.
    // SAFETY: the buffer is valid for `size` bytes for the duration of the call.
    let written = unsafe {
        libc::proc_pidinfo(
            pid as libc::c_int,
            libc::PROC_PIDTBSDINFO,
            1,
            (&mut info as *mut libc::proc_bsdinfo).cast(),
            size,
        )
    };
    (written == size).then_some(info)
}

/// macOS: `sysctl(KERN_PROCARGS2)` into a buffer of `KERN_ARGMAX` bytes (the most the kernel
/// ever returns, so no size query that a changing process could make too small), parsed by
/// [`parse_procargs2`].
#[cfg(target_os = "macos")]
pub fn process_argv(pid: u32) -> Option<Vec<String>> {
    let mut argmax: libc::c_int = 0;
    let mut argmax_size = std::mem::size_of::<libc::c_int>();
    let mut argmax_mib = [libc::CTL_KERN, libc::KERN_ARGMAX];
    // SAFETY: the out-buffer is one c_int and `argmax_size` says so.
    let asked = unsafe {
        libc::sysctl(
            argmax_mib.as_mut_ptr(),
            2,
            (&mut argmax as *mut libc::c_int).cast(),
            &mut argmax_size,
            std::ptr::null_mut(),
            0,
        )
    };
    let argmax = usize::try_from(argmax)
        .ok()
        .filter(|n| asked == 0 && *n > 0)?;
    let mut buf = vec![0u8; argmax];
    let mut size = buf.len();
    let mut mib = [libc::CTL_KERN, libc::KERN_PROCARGS2, pid as libc::c_int];
    // SAFETY: `buf` is valid for `size` bytes; the kernel writes at most that and says how
    // many it wrote in `size`.
    let read = unsafe {
        libc::sysctl(
            mib.as_mut_ptr(),
            3,
            buf.as_mut_ptr().cast(),
            &mut size,
            std::ptr::null_mut(),
            0,
        )
    };
    if read != 0 {
        return None;
    }
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
