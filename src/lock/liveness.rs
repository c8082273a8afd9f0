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
        Some(argv) if looks_like_gateway(&argv) => Liveness::Alive,
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

/// Does argv look like an OpenClaw gateway (SPEC §4 step 4)?
pub fn looks_like_gateway(argv: &[String]) -> bool {
    const ENTRY_SUFFIXES: [&str; 6] = [
        "dist/index.js",
        "dist/entry.js",
        "openclaw.mjs",
        "scripts/run-node.mjs",
        "src/entry.ts",
        "src/index.ts",
    ];
    let Some(argv0) = argv.first() else {
        return false;
    };
    let has_gateway_arg = argv.iter().any(|arg| arg == "gateway");
    let has_entry = argv
        .iter()
        .any(|arg| ENTRY_SUFFIXES.iter().any(|suffix| arg.ends_with(suffix)));
    (has_gateway_arg && has_entry)
        || argv0 == "openclaw"
        || argv0.ends_with("/openclaw")
        || argv0 == "openclaw-gateway"
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

#[cfg(target_os = "linux")]
fn process_argv(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    if raw.is_empty() {
        return None;
    }
    Some(
        raw.split(|b| *b == 0)
            .filter(|arg| !arg.is_empty())
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
    // SAFETY: the buffer is valid for `size` bytes for the duration of the call.
    let written = unsafe {
        libc::proc_pidinfo(
            pid as libc::c_int,
            libc::PROC_PIDTBSDINFO,
            0,
            (&mut info as *mut libc::proc_bsdinfo).cast(),
            size,
        )
    };
    (written == size).then_some(info)
}

#[cfg(target_os = "macos")]
fn process_argv(pid: u32) -> Option<Vec<String>> {
    let mut mib = [libc::CTL_KERN, libc::KERN_PROCARGS2, pid as libc::c_int];
    let mut size: libc::size_t = 0;
    // SAFETY: a NULL buffer asks only for the size.
    if unsafe {
        libc::sysctl(
            mib.as_mut_ptr(),
            3,
            std::ptr::null_mut(),
            &mut size,
            std::ptr::null_mut(),
            0,
        )
    } != 0
    {
        return None;
    }
    let mut buf = vec![0u8; size];
    // SAFETY: `buf` is valid for `size` bytes.
    if unsafe {
        libc::sysctl(
            mib.as_mut_ptr(),
            3,
            buf.as_mut_ptr().cast(),
            &mut size,
            std::ptr::null_mut(),
            0,
        )
    } != 0
    {
        return None;
    }
    buf.truncate(size);
    // Layout: argc (i32), the executable path, NUL padding, then argc NUL-terminated args.
    let argc = i32::from_ne_bytes(buf.get(..4)?.try_into().ok()?) as usize;
    let rest = &buf[4..];
    let exec_end = rest.iter().position(|b| *b == 0)?;
    let args = rest[exec_end..]
        .split(|b| *b == 0)
        .filter(|arg| !arg.is_empty())
        .take(argc)
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect();
    Some(args)
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn is_zombie(_pid: u32) -> bool {
    false
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
pub fn process_start_time(_pid: u32) -> Option<u64> {
    None
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn process_argv(_pid: u32) -> Option<Vec<String>> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn gateway_argv_shapes() {
        assert!(looks_like_gateway(&argv(&[
            "node",
            "/x/dist/index.js",
            "gateway"
        ])));
        assert!(looks_like_gateway(&argv(&[
            "bun",
            "src/entry.ts",
            "gateway",
            "--port",
            "1"
        ])));
        assert!(looks_like_gateway(&argv(&[
            "/usr/local/bin/openclaw",
            "tui"
        ])));
        assert!(looks_like_gateway(&argv(&["openclaw-gateway"])));
        assert!(!looks_like_gateway(&argv(&[
            "node",
            "/x/dist/index.js",
            "tui"
        ])));
        assert!(!looks_like_gateway(&argv(&["sleep", "gateway"])));
        assert!(!looks_like_gateway(&[]));
    }

    #[test]
    fn own_process_is_running_and_has_a_start_time() {
        assert!(pid_is_running(std::process::id()));
        assert!(own_start_time().is_some());
        assert!(!pid_is_running(0));
        assert!(!pid_is_running(u32::MAX));
    }
}
