//! What the lock dir stands on: the file system's type and mount options, and from them whether
//! the beacon (`flock`, SPEC §4) taken there is seen from other hosts (issue 13, "know the
//! ground").
//!
//! A state dir on shared storage is only as safe as the locks of that storage. On a local file
//! system one kernel sees every lock. NFS sends `flock` to the server (NFSv4, or NFSv3 through
//! NLM), so every client sees it, unless mounted `local_lock=all|flock` or `nolock`. SMB, FUSE
//! servers (sshfs, rclone, bindfs, the shared folders of VM and container desktops), virtiofs
//! and 9p keep locks in each client's kernel: a holder on another host leaves no trace here.
//!
//! Linux: `statfs` gives the family (`f_type`), and `/proc/self/mountinfo` the name with its
//! subtype (`fuse.bindfs`), the source and the options, for the mount holding the dir (the
//! longest mount point that is a prefix of the resolved path, preferring the mounts of the
//! dir's own device). macOS: `statfs` gives all there is (`f_fstypename`, `MNT_LOCAL`); mount
//! options are not visible there, so an NFS mount is taken as mounted by default (locks sent
//! to the server), which `nolocks` or `locallocks` would belie.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::options::LogLevel;

/// The file system holding a lock dir, as far as it can be told.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ground {
    /// The type as the system names it: `ext4`, `nfs4`, `fuse.bindfs`, `virtiofs`; on macOS
    /// `apfs`, `nfs`, `smbfs`, `macfuse`. `unknown` when nothing could be read.
    pub fs_type: String,
    /// Where that file system is mounted, when known.
    pub mount_point: Option<PathBuf>,
    /// What is mounted there (a device, `server:/export`, a FUSE mount's source), when known.
    pub source: Option<String>,
    /// The mount options that decide where locks go (`local_lock=…`, `nolock`, `vers=…`,
    /// `nobrl`), as mounted; empty where none is set or options are not visible (macOS).
    pub lock_options: Vec<String>,
    /// Whether a lock taken here is seen from other hosts.
    pub locks: LockReach,
}

/// Whether a `flock` taken on a file system is seen by a process on another host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum LockReach {
    /// A local file system: one host reaches it, and its kernel sees every lock.
    OneHost,
    /// Shared storage whose locks every client sees (NFS with locks sent to the server, a
    /// cluster file system).
    AcrossHosts,
    /// Shared (or possibly shared) storage whose locks each client keeps to itself: a gateway
    /// on another host sharing the state dir cannot see this one's beacon.
    NotCoherent,
    /// A type not known here.
    Unknown,
}

impl LockReach {
    /// In words, for `status` and the log.
    pub fn describe(self) -> &'static str {
        match self {
            Self::OneHost => "local (one host)",
            Self::AcrossHosts => "shared, locks coherent across hosts",
            Self::NotCoherent => "not coherent across hosts (locks are local to each client)",
            Self::Unknown => "unknown whether locks are seen across hosts",
        }
    }
}

impl Ground {
    /// `fuse.bindfs at /mnt from /srv/state: not coherent across hosts (…)`.
    pub fn describe(&self) -> String {
        let mut text = self.fs_type.clone();
        if let Some(mount_point) = &self.mount_point {
            text.push_str(&format!(" at {}", mount_point.display()));
        }
        // A source is worth naming for shared storage (a server, a FUSE mount's source); a
        // local disk's `/dev/vda` tells nothing.
        let shared = matches!(self.locks, LockReach::AcrossHosts | LockReach::NotCoherent);
        if let Some(source) = self.source.as_deref().filter(|_| shared) {
            text.push_str(&format!(" from {source}"));
        }
        if !self.lock_options.is_empty() {
            text.push_str(&format!(" ({})", self.lock_options.join(",")));
        }
        format!("{text}: {}", self.locks.describe())
    }

    /// The one line logged when a lock is acquired in `lock_dir`: Info where the beacon holds
    /// (or nothing is known against it), Warn where other hosts cannot see it.
    pub(crate) fn acquire_log_line(&self, lock_dir: &Path) -> (LogLevel, String) {
        let ground = self.describe();
        let dir = lock_dir.display();
        match self.locks {
            LockReach::NotCoherent => (
                LogLevel::Warn,
                format!(
                    "lock dir {dir} is on {ground}; a gateway on another host using this state dir cannot see this one's lock: give each host a state dir of its own (OPENCLAW_STATE_DIR), or see the README on shared state dirs"
                ),
            ),
            _ => (LogLevel::Info, format!("lock dir {dir} is on {ground}")),
        }
    }
}

/// The file system holding `path`, or its nearest existing ancestor when it does not exist yet
/// (what acquiring would create it on). Reads only; never fails: what cannot be read is left
/// out, down to `unknown`.
pub fn detect(path: &Path) -> Ground {
    let resolved = nearest_existing(path);
    detect_resolved(&resolved)
}

/// `path` with symlinks resolved, or its nearest ancestor that resolves.
fn nearest_existing(path: &Path) -> PathBuf {
    let mut candidate = Some(path);
    while let Some(dir) = candidate {
        if let Ok(resolved) = dir.canonicalize() {
            return resolved;
        }
        candidate = dir.parent();
    }
    PathBuf::from("/")
}

#[cfg(target_os = "linux")]
fn detect_resolved(path: &Path) -> Ground {
    use std::os::unix::fs::MetadataExt;
    let magic = statfs_magic(path);
    let dev = std::fs::metadata(path).ok().map(|meta| {
        let dev = meta.dev() as libc::dev_t;
        (libc::major(dev), libc::minor(dev))
    });
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .map(|text| parse_mountinfo(&text))
        .unwrap_or_default();
    let mount = mount_containing(&mounts, path, dev);
    let by_magic = magic.and_then(type_of_magic);
    // The mount's name is the better one (it has the FUSE subtype and the NFS version), but
    // `f_type` is the file system itself: trust the name only where the two agree.
    let mount = mount.filter(|mount| {
        by_magic.is_none_or(|(_, family)| same_family(family, family_of(&mount.fs_type)))
    });
    let Some(mount) = mount else {
        let (fs_type, family) = by_magic.unwrap_or(("unknown", Family::Unknown));
        return Ground {
            fs_type: fs_type.to_owned(),
            mount_point: None,
            source: None,
            lock_options: Vec::new(),
            locks: reach(family, &[]),
        };
    };
    let family = family_of(&mount.fs_type);
    Ground {
        fs_type: mount.fs_type.clone(),
        mount_point: Some(mount.mount_point.clone()),
        source: Some(mount.source.clone()),
        lock_options: lock_options(&mount.options),
        locks: reach(family, &mount.options),
    }
}

#[cfg(target_os = "macos")]
fn detect_resolved(path: &Path) -> Ground {
    let Some(found) = macos_statfs(path) else {
        return Ground {
            fs_type: "unknown".to_owned(),
            mount_point: None,
            source: None,
            lock_options: Vec::new(),
            locks: LockReach::Unknown,
        };
    };
    let family = match family_of(&found.fs_type) {
        Family::Unknown if found.local => Family::Local,
        family => family,
    };
    Ground {
        locks: reach(family, &[]),
        fs_type: found.fs_type,
        mount_point: Some(found.mount_point),
        source: Some(found.source),
        lock_options: Vec::new(),
    }
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn detect_resolved(_path: &Path) -> Ground {
    Ground {
        fs_type: "unknown".to_owned(),
        mount_point: None,
        source: None,
        lock_options: Vec::new(),
        locks: LockReach::Unknown,
    }
}

/// macOS `statfs`: the type's name, the mount point and source, and `MNT_LOCAL`.
#[cfg(target_os = "macos")]
struct MacStatfs {
    fs_type: String,
    mount_point: PathBuf,
    source: String,
    local: bool,
}

#[cfg(target_os = "macos")]
fn macos_statfs(path: &Path) -> Option<MacStatfs> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut found = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: `c_path` is NUL-terminated and `found` is large enough for the kernel to fill.
    if unsafe { libc::statfs(c_path.as_ptr(), found.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: statfs succeeded, so it filled `found`.
    let found = unsafe { found.assume_init() };
    let text = |chars: &[libc::c_char]| -> OsString {
        let bytes: Vec<u8> = chars
            .iter()
            .take_while(|c| **c != 0)
            .map(|c| *c as u8)
            .collect();
        OsString::from_vec(bytes)
    };
    Some(MacStatfs {
        fs_type: text(&found.f_fstypename).to_string_lossy().into_owned(),
        mount_point: PathBuf::from(text(&found.f_mntonname)),
        source: text(&found.f_mntfromname).to_string_lossy().into_owned(),
        local: found.f_flags & libc::MNT_LOCAL as u32 != 0,
    })
}

/// Linux `statfs(2)`'s `f_type`, the file system's magic number.
#[cfg(target_os = "linux")]
fn statfs_magic(path: &Path) -> Option<u32> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut found = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: `c_path` is NUL-terminated and `found` is large enough for the kernel to fill.
    if unsafe { libc::statfs(c_path.as_ptr(), found.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: statfs succeeded, so it filled `found`.
    let found = unsafe { found.assume_init() };
    // Magic numbers are 32 bits; `f_type` is a signed word, sign-extended on some targets.
    #[allow(clippy::unnecessary_cast)]
    Some((found.f_type as u64 & 0xffff_ffff) as u32)
}

/// What kind of file system a type is, as far as its locks go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    /// On a local disk or in memory.
    Local,
    /// FUSE on a local block device (`fuseblk`: ntfs-3g, exfat-fuse).
    FuseBlock,
    /// overlayfs (containers): its upper dir is local.
    Overlay,
    Nfs,
    /// A cluster file system whose locks every node sees (CephFS, GFS2, OCFS2).
    Cluster,
    Smb,
    /// A FUSE server: sshfs, rclone, s3fs, bindfs, macFUSE, the shared folders of desktops.
    Fuse,
    VirtioFs,
    NineP,
    /// Other network file systems (AFP, WebDAV, AFS).
    OtherNetwork,
    Unknown,
}

/// The family of a type by its name (mountinfo's, or macOS's `f_fstypename`).
fn family_of(fs_type: &str) -> Family {
    // FUSE by its kernel type, but an overlay of local directories (rootless Podman's
    // storage): one host's, whose locks this kernel keeps.
    if fs_type == "fuse.fuse-overlayfs" {
        return Family::Overlay;
    }
    let base = fs_type.split('.').next().unwrap_or(fs_type);
    match base {
        "ext2" | "ext3" | "ext4" | "xfs" | "btrfs" | "zfs" | "f2fs" | "bcachefs" | "jfs"
        | "reiserfs" | "tmpfs" | "ramfs" | "vfat" | "msdos" | "exfat" | "ntfs3" | "ntfs"
        | "hfs" | "hfsplus" | "apfs" | "udf" | "iso9660" | "squashfs" | "erofs" | "devtmpfs" => {
            Family::Local
        }
        "fuseblk" => Family::FuseBlock,
        "overlay" => Family::Overlay,
        "nfs" | "nfs4" => Family::Nfs,
        "ceph" | "gfs2" | "ocfs2" => Family::Cluster,
        "cifs" | "smb3" | "smb2" | "smbfs" => Family::Smb,
        "fuse" | "macfuse" | "osxfuse" | "fusefs" | "fuse-t" => Family::Fuse,
        "virtiofs" => Family::VirtioFs,
        "9p" => Family::NineP,
        "afpfs" | "webdav" | "afs" => Family::OtherNetwork,
        _ => Family::Unknown,
    }
}

/// `f_type` magic numbers (linux/magic.h) → a name and a family. FUSE, fuseblk and virtiofs
/// share one magic: mountinfo tells them apart.
#[cfg(any(target_os = "linux", test))]
fn type_of_magic(magic: u32) -> Option<(&'static str, Family)> {
    Some(match magic {
        0xef53 => ("ext4", Family::Local),
        0x5846_5342 => ("xfs", Family::Local),
        0x9123_683e => ("btrfs", Family::Local),
        0x2fc1_2fc1 => ("zfs", Family::Local),
        0xf2f5_2010 => ("f2fs", Family::Local),
        0x0102_1994 => ("tmpfs", Family::Local),
        0x4d44 => ("vfat", Family::Local),
        0x2011_bab0 => ("exfat", Family::Local),
        0x7366_746e => ("ntfs3", Family::Local),
        0x794c_7630 => ("overlay", Family::Overlay),
        0x6969 => ("nfs", Family::Nfs),
        0x00c3_6400 => ("ceph", Family::Cluster),
        0x0116_1970 => ("gfs2", Family::Cluster),
        0x7461_636f => ("ocfs2", Family::Cluster),
        0xff53_4d42 => ("cifs", Family::Smb),
        0xfe53_4d42 => ("smb3", Family::Smb),
        0x6573_5546 => ("fuse", Family::Fuse),
        0x0102_1997 => ("9p", Family::NineP),
        0x5346_414f => ("afs", Family::OtherNetwork),
        _ => return None,
    })
}

/// Whether the family `f_type` says and the one the mount's name says agree. FUSE's magic is
/// also fuseblk's, virtiofs's and fuse-overlayfs's.
#[cfg(target_os = "linux")]
fn same_family(by_magic: Family, by_name: Family) -> bool {
    by_magic == by_name
        || (by_magic == Family::Fuse
            && matches!(
                by_name,
                Family::FuseBlock | Family::VirtioFs | Family::Overlay
            ))
}

/// Whether a lock taken on this family, mounted with these options, is seen from other hosts.
fn reach(family: Family, options: &[String]) -> LockReach {
    match family {
        Family::Local | Family::FuseBlock | Family::Overlay => LockReach::OneHost,
        // `flock` goes to the server (NFSv4 natively, NFSv3 through NLM as a whole-file lock)
        // unless the client keeps `flock`s to itself: `local_lock=flock|all`, or `nolock`
        // (which implies `local_lock=all`).
        Family::Nfs => {
            let local = options.iter().any(|option| {
                option == "nolock" || option == "local_lock=all" || option == "local_lock=flock"
            });
            if local {
                LockReach::NotCoherent
            } else {
                LockReach::AcrossHosts
            }
        }
        Family::Cluster => LockReach::AcrossHosts,
        Family::Smb | Family::Fuse | Family::VirtioFs | Family::NineP | Family::OtherNetwork => {
            LockReach::NotCoherent
        }
        Family::Unknown => LockReach::Unknown,
    }
}

/// The options that say where locks go.
#[cfg(any(target_os = "linux", test))] // mountinfo: Linux's
fn lock_options(options: &[String]) -> Vec<String> {
    let mut found: Vec<String> = options
        .iter()
        .filter(|option| {
            option.starts_with("local_lock=")
                || option.starts_with("vers=")
                || option.starts_with("nfsvers=")
                || matches!(option.as_str(), "nolock" | "lock" | "nobrl")
        })
        .cloned()
        .collect();
    found.dedup();
    found
}

/// One line of `/proc/self/mountinfo`.
#[cfg(any(target_os = "linux", test))] // mountinfo: Linux's
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    /// `major:minor` of the file system's device (`st_dev` of its files).
    dev: Option<(u32, u32)>,
    mount_point: PathBuf,
    /// `fuse.bindfs`: the type with its subtype.
    fs_type: String,
    source: String,
    /// The per-mount options, then the file system's own (where NFS lists `local_lock=`).
    options: Vec<String>,
}

/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue` (proc(5)):
/// id, parent, dev, root, mount point, mount options, optional fields up to `-`, type, source,
/// super options. Paths and the source escape space, tab, newline and backslash as `\ooo`.
#[cfg(any(target_os = "linux", test))] // mountinfo: Linux's
fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_mountinfo_line).collect()
}

#[cfg(any(target_os = "linux", test))] // mountinfo: Linux's
fn parse_mountinfo_line(line: &str) -> Option<Mount> {
    let mut fields = line.split(' ');
    let _id = fields.next()?;
    let _parent = fields.next()?;
    let dev = fields
        .next()?
        .split_once(':')
        .and_then(|(major, minor)| Some((major.parse().ok()?, minor.parse().ok()?)));
    let _root = fields.next()?;
    let mount_point = PathBuf::from(unescape(fields.next()?));
    let mount_options = fields.next()?;
    // Optional fields (`shared:1`, `master:2`…) up to the separator.
    fields.by_ref().find(|field| *field == "-")?;
    let fs_type = fields.next()?.to_owned();
    let source = unescape(fields.next()?).to_string_lossy().into_owned();
    let super_options = fields.next().unwrap_or("");
    let options = mount_options
        .split(',')
        .chain(super_options.split(','))
        .filter(|option| !option.is_empty())
        .map(str::to_owned)
        .collect();
    Some(Mount {
        dev,
        mount_point,
        fs_type,
        source,
        options,
    })
}

/// `\040` → a space, and so on: the kernel's octal escapes in mountinfo.
#[cfg(any(target_os = "linux", test))] // mountinfo: Linux's
fn unescape(field: &str) -> OsString {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|digits| bytes[i] == b'\\' && digits.iter().all(|d| (b'0'..=b'7').contains(d)))
            .and_then(|digits| u8::from_str_radix(std::str::from_utf8(digits).ok()?, 8).ok());
        match octal {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    OsString::from_vec(out)
}

/// The mount holding `path` (resolved): the longest mount point that is a prefix of it, among
/// the mounts of its device where any is (a bind mount of another file system at a shorter
/// prefix is not it); the last listed of equals, which is mounted over the others.
#[cfg(any(target_os = "linux", test))] // mountinfo: Linux's
fn mount_containing<'a>(
    mounts: &'a [Mount],
    path: &Path,
    dev: Option<(u32, u32)>,
) -> Option<&'a Mount> {
    let holding = |same_dev: bool| {
        mounts
            .iter()
            .filter(|mount| path.starts_with(&mount.mount_point))
            .filter(|mount| !same_dev || (dev.is_some() && mount.dev == dev))
            .fold(None::<&Mount>, |best, mount| match best {
                Some(best)
                    if best.mount_point.as_os_str().len() > mount.mount_point.as_os_str().len() =>
                {
                    Some(best)
                }
                _ => Some(mount),
            })
    };
    // btrfs subvolumes report a device of their own, not the mount's: then by prefix alone.
    holding(true).or_else(|| holding(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(list: &str) -> Vec<String> {
        list.split(',').map(str::to_owned).collect()
    }

    /// Real lines (from Debian 12, a Kubernetes node, and an NFS client), one of each shape.
    const MOUNTINFO: &str = "\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
42 27 0:39 / /tmp/sfs/mnt rw,nosuid,nodev,relatime - fuse /tmp/sfs/dir rw,user_id=0,group_id=0,default_permissions,allow_other
43 27 0:40 / /srv/My\\040State\\011Dir rw,nosuid,nodev,relatime shared:5 master:1 - fuse.bindfs /data/back\\134slash rw,user_id=0,group_id=0,allow_other
61 27 0:52 / /mnt/nfs rw,relatime shared:30 - nfs4 fs.example:/export rw,vers=4.2,rsize=1048576,wsize=1048576,namlen=255,hard,proto=tcp,timeo=600,retrans=2,sec=sys,clientaddr=10.0.0.2,local_lock=none,addr=10.0.0.1
62 27 0:53 / /mnt/nfs-local rw,relatime - nfs fs.example:/old rw,vers=3,nolock,proto=tcp,local_lock=all,addr=10.0.0.1
63 27 0:54 / /mnt/share rw,relatime - cifs //nas/share rw,vers=3.1.1,cache=strict,nobrl,uid=0
64 27 0:55 / /mnt/share/inner rw,relatime - virtiofs myfs rw
65 27 0:56 /sub /mnt/nfs/bound rw,relatime - ext4 /dev/vdb rw
";

    #[test]
    fn mountinfo_lines_parse_with_their_escapes() {
        let mounts = parse_mountinfo(MOUNTINFO);
        assert_eq!(mounts.len(), 8);
        let bindfs = &mounts[2];
        assert_eq!(bindfs.dev, Some((0, 40)));
        assert_eq!(bindfs.mount_point, PathBuf::from("/srv/My State\tDir"));
        assert_eq!(bindfs.fs_type, "fuse.bindfs");
        assert_eq!(bindfs.source, "/data/back\\slash");
        assert_eq!(
            bindfs.options,
            options("rw,nosuid,nodev,relatime,rw,user_id=0,group_id=0,allow_other")
        );
        let nfs = &mounts[3];
        assert_eq!(
            (nfs.fs_type.as_str(), nfs.source.as_str()),
            ("nfs4", "fs.example:/export")
        );
        assert_eq!(
            lock_options(&nfs.options),
            options("vers=4.2,local_lock=none")
        );
        assert_eq!(
            lock_options(&mounts[4].options),
            options("vers=3,nolock,local_lock=all")
        );
        assert_eq!(
            lock_options(&mounts[5].options),
            options("vers=3.1.1,nobrl")
        );
    }

    #[test]
    fn lines_that_are_not_mountinfo_are_skipped() {
        for line in ["", "27 1 254:0 / / rw,relatime", "garbage"] {
            assert_eq!(parse_mountinfo_line(line), None, "{line:?}");
        }
        // A stray backslash is kept as it is.
        assert_eq!(unescape("a\\b\\04"), OsString::from("a\\b\\04"));
    }

    #[test]
    fn the_mount_holding_a_path_is_the_longest_prefix() {
        let mounts = parse_mountinfo(MOUNTINFO);
        let holding = |path: &str, dev: Option<(u32, u32)>| {
            mount_containing(&mounts, Path::new(path), dev)
                .map(|mount| mount.mount_point.to_string_lossy().into_owned())
        };
        let cases = [
            ("/home/u/.openclaw", Some((254, 0)), "/"),
            ("/mnt/nfs/state/tmp", Some((0, 52)), "/mnt/nfs"),
            ("/mnt/nfs-local/x", Some((0, 53)), "/mnt/nfs-local"),
            // Not `/mnt/nfs`: a prefix by components only.
            ("/mnt/nfsother", Some((254, 0)), "/"),
            ("/mnt/share/inner/state", Some((0, 55)), "/mnt/share/inner"),
            (
                "/srv/My State\tDir/state",
                Some((0, 40)),
                "/srv/My State\tDir",
            ),
            ("/mnt/nfs/bound/x", Some((0, 56)), "/mnt/nfs/bound"),
            // A btrfs subvolume's own device: by prefix alone.
            ("/mnt/nfs/bound/x", Some((0, 99)), "/mnt/nfs/bound"),
            ("/tmp/sfs/mnt/state", None, "/tmp/sfs/mnt"),
        ];
        for (path, dev, expected) in cases {
            assert_eq!(holding(path, dev).as_deref(), Some(expected), "{path}");
        }
    }

    /// The rule of this module, one row per kind of ground.
    #[test]
    fn whether_locks_reach_other_hosts() {
        use LockReach::*;
        let cases: &[(&str, &str, LockReach)] = &[
            ("ext4", "rw,relatime", OneHost),
            ("xfs", "rw", OneHost),
            ("btrfs", "rw,subvol=/home", OneHost),
            ("tmpfs", "rw", OneHost),
            ("overlay", "rw,lowerdir=/a,upperdir=/b", OneHost),
            ("fuse.fuse-overlayfs", "rw,user_id=0,group_id=0", OneHost),
            ("apfs", "", OneHost),
            ("fuseblk", "rw,allow_other", OneHost),
            ("nfs4", "rw,vers=4.2,local_lock=none", AcrossHosts),
            ("nfs4", "rw,vers=4.1,local_lock=posix", AcrossHosts),
            ("nfs", "rw,vers=3,local_lock=none", AcrossHosts),
            ("nfs", "", AcrossHosts),
            ("nfs4", "rw,vers=4.2,local_lock=all", NotCoherent),
            ("nfs4", "rw,vers=4.2,local_lock=flock", NotCoherent),
            ("nfs", "rw,vers=3,nolock,local_lock=all", NotCoherent),
            ("nfs", "rw,vers=3,nolock", NotCoherent),
            ("ceph", "rw,name=admin", AcrossHosts),
            ("cifs", "rw,vers=3.1.1", NotCoherent),
            ("smb3", "rw", NotCoherent),
            ("smbfs", "", NotCoherent),
            ("fuse", "rw,user_id=0", NotCoherent),
            ("fuse.bindfs", "rw,allow_other", NotCoherent),
            ("fuse.sshfs", "rw", NotCoherent),
            ("fuse.rclone", "rw", NotCoherent),
            ("macfuse", "", NotCoherent),
            ("virtiofs", "rw", NotCoherent),
            ("9p", "rw,trans=virtio", NotCoherent),
            ("webdav", "", NotCoherent),
            ("somethingnew", "rw", Unknown),
        ];
        for (fs_type, list, expected) in cases {
            let options: Vec<String> = list
                .split(',')
                .filter(|o| !o.is_empty())
                .map(str::to_owned)
                .collect();
            assert_eq!(
                reach(family_of(fs_type), &options),
                *expected,
                "{fs_type} {list}"
            );
        }
    }

    #[test]
    fn magic_numbers_agree_with_the_names() {
        for magic in [
            0xef53,
            0x6969,
            0x6573_5546,
            0xff53_4d42,
            0x0102_1997,
            0x794c_7630,
        ] {
            let (name, family) = type_of_magic(magic).unwrap();
            assert_eq!(family_of(name), family, "{magic:#x}");
        }
        assert_eq!(type_of_magic(0x1234_5678), None);
    }

    #[test]
    fn the_log_line_warns_only_where_other_hosts_cannot_see_the_lock() {
        let ground = |fs_type: &str, locks| Ground {
            fs_type: fs_type.to_owned(),
            mount_point: Some(PathBuf::from("/mnt")),
            source: Some("/srv/state".to_owned()),
            lock_options: Vec::new(),
            locks,
        };
        let dir = Path::new("/mnt/x/tmp/openclaw-0");
        let (level, line) = ground("ext4", LockReach::OneHost).acquire_log_line(dir);
        assert_eq!(level, LogLevel::Info);
        assert_eq!(
            line,
            "lock dir /mnt/x/tmp/openclaw-0 is on ext4 at /mnt: local (one host)"
        );
        let (level, line) = ground("fuse.bindfs", LockReach::NotCoherent).acquire_log_line(dir);
        assert_eq!(level, LogLevel::Warn);
        assert!(
            line.starts_with(
                "lock dir /mnt/x/tmp/openclaw-0 is on fuse.bindfs at /mnt from /srv/state: not coherent across hosts (locks are local to each client); "
            ),
            "{line}"
        );
        let (level, _) = ground("nfs4", LockReach::AcrossHosts).acquire_log_line(dir);
        assert_eq!(level, LogLevel::Info);
    }

    /// On this machine's own ground: the root is some file system, and a path that does not
    /// exist is judged by its nearest existing ancestor.
    #[test]
    fn detect_reads_the_nearest_existing_ancestor() {
        let root = tempfile::tempdir().unwrap();
        let missing = root.path().join("a/b/c");
        assert_eq!(detect(&missing), detect(root.path()));
        assert_ne!(detect(root.path()).fs_type, "unknown");
    }
}
