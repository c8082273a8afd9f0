//! Where the gateway keeps its state and locks, and which port it uses (SPEC §1).
//!
//! Everything here is a pure function of an environment lookup, so the same rules serve
//! `GatewayOptions::from_env()` (the process environment) and tests (a map).

use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::GatewayLockError;

/// The port a gateway uses when nothing else says otherwise.
pub const DEFAULT_PORT: u16 = 18789;
/// The port of the `--dev` profile.
pub const DEV_PORT: u16 = 19001;
/// The name of the per-state-dir lock file.
pub const STATE_LOCK_NAME: &str = "gateway.state.lock";

/// A way to look up an environment variable; `None` when unset.
pub(crate) type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, as an [`EnvLookup`]. Non-UTF-8 values count as unset.
pub(crate) fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The home directory: `OPENCLAW_HOME` (with `~` expanded), else `HOME`, else the OS home.
pub(crate) fn home_dir(env: EnvLookup) -> PathBuf {
    let os_home = || {
        non_empty(env("HOME"))
            .map(PathBuf::from)
            .or_else(passwd_home)
            .unwrap_or_else(|| PathBuf::from("/"))
    };
    match non_empty(env("OPENCLAW_HOME")) {
        Some(raw) => expand_tilde(&raw, &os_home()),
        None => os_home(),
    }
}

/// The state dir (SPEC §1), without a profile.
pub(crate) fn state_dir(env: EnvLookup, home: &Path) -> PathBuf {
    if let Some(raw) = non_empty(env("OPENCLAW_STATE_DIR")) {
        return absolute(expand_tilde(&raw, home));
    }
    let current = home.join(".openclaw");
    let legacy = home.join(".clawdbot");
    if current.exists() || !legacy.exists() {
        current
    } else {
        legacy
    }
}

/// The state dir of a named profile: `~/.openclaw-NAME`.
pub(crate) fn profile_state_dir(home: &Path, profile: &str) -> PathBuf {
    home.join(format!(".openclaw-{profile}"))
}

/// The config path for a state dir: `OPENCLAW_CONFIG_PATH`, else the first existing of
/// `openclaw.json` and `clawdbot.json`, else `openclaw.json`.
pub(crate) fn config_path(env: EnvLookup, home: &Path, state_dir: &Path) -> PathBuf {
    if let Some(raw) = non_empty(env("OPENCLAW_CONFIG_PATH")) {
        return absolute(expand_tilde(&raw, home));
    }
    let current = state_dir.join("openclaw.json");
    let legacy = state_dir.join("clawdbot.json");
    if current.exists() || !legacy.exists() {
        current
    } else {
        legacy
    }
}

/// Checks a profile name: `^[a-z0-9][a-z0-9_-]{0,63}$`, case-insensitive. `default` means no
/// profile and returns `Ok(None)`.
pub(crate) fn validate_profile(name: &str) -> Result<Option<&str>, GatewayLockError> {
    let bytes = name.as_bytes();
    let valid = !bytes.is_empty()
        && bytes.len() <= 64
        && bytes[0].is_ascii_alphanumeric()
        && bytes[1..]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-');
    if !valid {
        return Err(GatewayLockError::InvalidOption(format!(
            "invalid profile name {name:?}: use 1 to 64 letters, digits, '_' or '-', starting with a letter or digit"
        )));
    }
    Ok((!name.eq_ignore_ascii_case("default")).then_some(name))
}

/// The port of a named profile: `20000 + fnv1a32(name) % 40000`.
pub fn profile_port(profile: &str) -> u16 {
    let hash = profile.bytes().fold(2_166_136_261u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(16_777_619)
    });
    // 20000 + a value below 40000 always fits in a u16.
    (20_000 + hash % 40_000) as u16
}

/// Parses `OPENCLAW_GATEWAY_PORT`: `1234`, `host:1234` or `[v6]:1234`.
pub(crate) fn parse_env_port(raw: &str) -> Result<u16, GatewayLockError> {
    let trimmed = raw.trim();
    let digits = match trimmed.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() => port,
        _ => trimmed,
    };
    parse_port(digits).ok_or_else(|| {
        GatewayLockError::InvalidOption(format!(
            "invalid gateway port {raw:?} in OPENCLAW_GATEWAY_PORT: expected a number from 1 to 65535"
        ))
    })
}

fn parse_port(digits: &str) -> Option<u16> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u16>().ok().filter(|port| *port != 0)
}

/// The lock dir: `<canonical state dir>/tmp/openclaw-<uid>`.
pub(crate) fn lock_dir(state_dir: &Path) -> PathBuf {
    canonicalize_existing_prefix(state_dir)
        .join("tmp")
        .join(format!("openclaw-{}", current_uid()))
}

/// The config lock's file name: `gateway.<first 8 hex of sha256(config path)>.lock`.
pub fn config_lock_name(config_path: &Path) -> String {
    let digest = Sha256::digest(config_path.to_string_lossy().as_bytes());
    let hex: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("gateway.{hex}.lock")
}

/// The realpath of the longest existing ancestor of `path`, plus the missing tail.
pub(crate) fn canonicalize_existing_prefix(path: &Path) -> PathBuf {
    let path = absolute(path.to_path_buf());
    let mut tail = Vec::new();
    let mut current = path.as_path();
    loop {
        if let Some(real) = realpath(current) {
            return tail.iter().rev().fold(real, |acc, part| acc.join(part));
        }
        match (current.parent(), current.file_name()) {
            (Some(parent), Some(name)) => {
                tail.push(name.to_owned());
                current = parent;
            }
            _ => return path,
        }
    }
}

/// The canonical path of an existing `path`. On Linux the kernel names what one `open` found
/// (`/proc/self/fd`), one walk instead of a `readlink` per component.
fn realpath(path: &Path) -> Option<PathBuf> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::OpenOptionsExt;
        if let Ok(opened) = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
            .open(path)
            && let Ok(real) = std::fs::read_link(format!("/proc/self/fd/{}", opened.as_raw_fd()))
            && real.is_absolute()
        {
            return Some(real);
        }
    }
    path.canonicalize().ok()
}

pub(crate) fn current_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

fn expand_tilde(raw: &str, home: &Path) -> PathBuf {
    match raw.strip_prefix('~') {
        Some("") => home.to_path_buf(),
        Some(rest) if rest.starts_with('/') => home.join(&rest[1..]),
        _ => PathBuf::from(raw),
    }
}

fn absolute(path: PathBuf) -> PathBuf {
    if path.is_absolute() {
        return path;
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    path.components()
        .fold(cwd, |acc, component| match component {
            Component::CurDir => acc,
            other => acc.join(other),
        })
}

pub(crate) fn passwd_home() -> Option<PathBuf> {
    use std::ffi::CStr;
    use std::os::unix::ffi::OsStrExt;
    let mut buf = vec![0 as libc::c_char; 4096];
    // SAFETY: a zeroed passwd is a valid out-parameter for getpwuid_r.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the duration of the call and `buf` is as long as said.
    let rc = unsafe {
        libc::getpwuid_r(
            current_uid(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() || pwd.pw_dir.is_null() {
        return None;
    }
    // SAFETY: on success pw_dir points at a NUL-terminated string inside `buf`.
    let dir = unsafe { CStr::from_ptr(pwd.pw_dir) };
    Some(PathBuf::from(std::ffi::OsStr::from_bytes(dir.to_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_ports_match_openclaw() {
        assert_eq!(profile_port("rescue"), 23532);
        assert_eq!(profile_port("ops"), 55291);
    }

    #[test]
    fn config_lock_name_matches_openclaw() {
        assert_eq!(
            config_lock_name(Path::new("/home/u/.openclaw/openclaw.json")),
            "gateway.53bf3fdf.lock"
        );
    }

    #[test]
    fn env_port_forms() {
        assert_eq!(parse_env_port("1234").unwrap(), 1234);
        assert_eq!(parse_env_port("127.0.0.1:4321").unwrap(), 4321);
        assert_eq!(parse_env_port("[::1]:5555").unwrap(), 5555);
        for bad in ["", "0", "65536", "abc", "12a", "host:", "-1"] {
            let err = parse_env_port(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn profile_names() {
        assert_eq!(validate_profile("Work_1").unwrap(), Some("Work_1"));
        assert_eq!(validate_profile("DEFAULT").unwrap(), None);
        for bad in ["", "-x", "a b", "é", &"a".repeat(65)] {
            assert!(validate_profile(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn canonical_prefix_keeps_missing_tail() {
        let dir = std::env::temp_dir().canonicalize().unwrap();
        let path = dir.join("gateway-missing-a/b");
        assert_eq!(canonicalize_existing_prefix(&path), path);
    }

    #[test]
    fn tilde_expansion() {
        let home = Path::new("/h");
        assert_eq!(expand_tilde("~", home), PathBuf::from("/h"));
        assert_eq!(expand_tilde("~/x", home), PathBuf::from("/h/x"));
        assert_eq!(expand_tilde("/abs", home), PathBuf::from("/abs"));
    }
}
