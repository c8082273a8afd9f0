//! A lock file as a checker sees it: its bytes, identity, age, payload, and whether a holder's
//! beacon is on it. Reading only; never follows a link or blocks on a FIFO (SPEC §2).

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::time::{Duration, SystemTime};

use super::beacon;
use super::dir::LockDir;
use super::format::{LockPayload, MAX_LOCK_FILE_BYTES};
use crate::error::GatewayLockError;

/// A lock file as a checker saw it.
#[derive(Debug, Clone)]
pub struct Observed {
    pub bytes: Vec<u8>,
    pub dev: u64,
    pub ino: u64,
    pub modified: SystemTime,
    /// A holder of ours has the `flock`: the owner is alive, certainly.
    pub beacon_held: bool,
    pub payload: Option<LockPayload>,
}

impl Observed {
    /// How old the file says it is: `createdAt` when readable, else its mtime.
    pub fn age(&self) -> Duration {
        let created = self
            .payload
            .as_ref()
            .and_then(LockPayload::created_at_time)
            .or_else(|| created_at_without_payload(&self.bytes))
            .unwrap_or(self.modified);
        SystemTime::now()
            .duration_since(created)
            .unwrap_or(Duration::ZERO)
    }

    /// The same inode with the same bytes: nothing changed since the other look.
    pub fn same_file(&self, other: &Observed) -> bool {
        self.dev == other.dev && self.ino == other.ino && self.bytes == other.bytes
    }
}

fn created_at_without_payload(bytes: &[u8]) -> Option<SystemTime> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    humantime::parse_rfc3339_weak(value.get("createdAt")?.as_str()?).ok()
}

/// How a checker tells whether a holder of ours is alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BeaconProbe {
    /// Try a shared `flock` and drop it at once (acquire, reclaim).
    Flock,
    /// For `status`, taking nothing. Linux: test for the holder's OFD lock (`F_OFD_GETLK`),
    /// then look its `flock` up in `/proc/locks`. macOS: `F_GETLK` with a whole-file write
    /// lock, which reports the holder's `flock`. Other systems, and a Linux without a readable
    /// `/proc/locks`, fall back to [`BeaconProbe::Flock`].
    Passive,
}

/// Reads the lock file `name` without following links or blocking on FIFOs. `Ok(None)`: it is
/// gone.
pub fn inspect(
    dir: &LockDir,
    name: &str,
    probe: BeaconProbe,
) -> Result<Option<Observed>, GatewayLockError> {
    let path = || dir.join(name);
    let file = match dir.open(name, libc::O_RDONLY | libc::O_NONBLOCK, 0) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(GatewayLockError::UnsafeLockFile {
                path: path(),
                problem: "it is a symbolic link".into(),
            });
        }
        Err(source) => {
            return Err(GatewayLockError::LockIo {
                path: path(),
                source,
            });
        }
    };
    let io_error = |source| GatewayLockError::LockIo {
        path: path(),
        source,
    };
    let meta = file.metadata().map_err(io_error)?;
    if !meta.is_file() {
        let kind = if meta.is_dir() {
            "it is a directory"
        } else if meta.file_type().is_fifo() {
            "it is a FIFO"
        } else {
            "it is not a regular file"
        };
        return Err(GatewayLockError::UnsafeLockFile {
            path: path(),
            problem: kind.into(),
        });
    }
    let bytes = read_capped(&file).map_err(io_error)?;
    let beacon_held = match probe {
        BeaconProbe::Flock => beacon::held_flock(&file),
        BeaconProbe::Passive => beacon::held_passive(&file, meta.dev(), meta.ino()),
    }
    .map_err(io_error)?;
    Ok(Some(Observed {
        payload: LockPayload::parse(&bytes),
        bytes,
        dev: meta.dev(),
        ino: meta.ino(),
        modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        beacon_held,
    }))
}

fn read_capped(file: &File) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    file.take(MAX_LOCK_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}
