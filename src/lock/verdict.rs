//! What to do about a lock file that exists: the decision of SPEC §4, after the host test of
//! issue 13 (a pid means something only on the boot of the machine that recorded it). The tests
//! below hold its cases in tables: the decision on the evidence, and the step from a file as a
//! checker saw it (age, recorded pid and host, our own pid, the owner's process) to that evidence.

use std::path::Path;
use std::time::Duration;

use super::ground::{self, LockReach};
use super::host::{HostIdentity, Whereabouts};
use super::inspect::Observed;
use super::liveness::{self, Liveness};

/// What to do about an existing lock file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Provably dead owner (or one of an earlier boot of this machine), or no payload and older
    /// than the stale window.
    Reclaimable,
    /// A live owner (beacon held, or pid and start time match).
    Alive { pid: u32, port: Option<u16> },
    /// Unknown owner, or a young file without payload: wait and look again.
    Wait { pid: Option<u32>, port: Option<u16> },
    /// The owner runs on another machine: its pid, start time and argv mean nothing here, and
    /// its `/healthz` is not ours to probe. Never reclaimed; refused at once. `beacon_held`: the
    /// file system shares locks between hosts and the owner is certainly alive.
    OtherHost {
        pid: u32,
        port: Option<u16>,
        beacon_held: bool,
    },
}

/// Judges the lock file at `path` as a checker saw it; `stale` is the stale window.
pub(crate) fn judge(observed: &Observed, stale: Duration, path: &Path) -> Verdict {
    judge_from(observed, stale, HostIdentity::this(), || {
        locks_are_local(path)
    })
}

/// Whether every `flock` on the file system holding `path` is seen by this kernel: a local
/// file system (one host). Asked only of a holder in another PID namespace of this kernel.
pub(crate) fn locks_are_local(path: &Path) -> bool {
    ground::detect(path).locks == LockReach::OneHost
}

/// [`judge`], seen from the host `here`; `locks_local` says whether the file's `flock`s are all
/// seen by this kernel.
pub(crate) fn judge_from(
    observed: &Observed,
    stale: Duration,
    here: &HostIdentity,
    locks_local: impl FnOnce() -> bool,
) -> Verdict {
    let payload = observed.payload.as_ref();
    let written = payload
        .and_then(|p| p.created_at_time())
        .unwrap_or(observed.modified);
    let evidence = Evidence {
        beacon_held: observed.beacon_held,
        recorded: payload.map(|p| (p.pid, p.port)),
        whereabouts: payload.map_or(Whereabouts::ThisBoot, |p| {
            p.host.whereabouts(Some(written), here)
        }),
        names_this_process: payload.is_some_and(|p| p.pid == std::process::id()),
        // Looked at only without a payload, so the age (a second parse of the file when it
        // has no `createdAt`) is not worked out on every acquire.
        older_than_stale: payload.is_none() && observed.age() > stale,
    };
    decide(evidence, locks_local, || {
        payload.map_or(Liveness::Unknown, liveness::judge_owner)
    })
}

/// What the decision looks at, about one lock file.
#[derive(Debug, Clone, Copy)]
struct Evidence {
    /// A holder of ours has the file's `flock`.
    beacon_held: bool,
    /// The pid and port the payload records; `None`: no payload (empty, unparseable, no pid).
    recorded: Option<(u32, Option<u16>)>,
    /// Where the recorded owner ran (this boot when the file does not say).
    whereabouts: Whereabouts,
    /// The recorded pid is this process's.
    names_this_process: bool,
    /// Without a payload: older than the stale window, by `createdAt`, else by mtime.
    older_than_stale: bool,
}

/// The decision itself. `owner` judges the recorded pid (running, start time, argv: see
/// `liveness`); it is asked only when the beacon is free and the payload names another process
/// of this boot of this machine, in our PID namespace. `locks_local` (whether this kernel sees
/// every `flock` on the file) is asked only of a holder in another PID namespace.
fn decide(
    evidence: Evidence,
    locks_local: impl FnOnce() -> bool,
    owner: impl FnOnce() -> Liveness,
) -> Verdict {
    let Some((pid, port)) = evidence.recorded else {
        return if evidence.beacon_held {
            // Created and locked, not yet written: a holder of ours is starting.
            Verdict::Wait {
                pid: None,
                port: None,
            }
        } else if evidence.older_than_stale {
            Verdict::Reclaimable
        } else {
            Verdict::Wait {
                pid: None,
                port: None,
            }
        };
    };
    match (evidence.whereabouts, evidence.beacon_held) {
        (Whereabouts::ThisBoot, _) => {}
        // Another container on this kernel: its pid, start time and argv are another
        // namespace's, but its beacon is a lock this kernel keeps.
        (Whereabouts::OtherPidNamespace, true) => return Verdict::Alive { pid, port },
        // A free beacon proves the holder gone only where this kernel sees every lock on the
        // file; on a FUSE or network mount of each container's own, the holder's is not seen.
        (Whereabouts::OtherPidNamespace, false) => {
            return if locks_local() {
                Verdict::Reclaimable
            } else {
                Verdict::OtherHost {
                    pid,
                    port,
                    beacon_held: false,
                }
            };
        }
        // Every process of an earlier boot is gone.
        (Whereabouts::EarlierBoot, false) => return Verdict::Reclaimable,
        // A beacon on a file "of an earlier boot" is held on another kernel: a machine cloned
        // with our machine id. Another machine, then.
        (Whereabouts::EarlierBoot, true) | (Whereabouts::OtherMachine, _) => {
            return Verdict::OtherHost {
                pid,
                port,
                beacon_held: evidence.beacon_held,
            };
        }
    }
    if evidence.beacon_held {
        return Verdict::Alive { pid, port };
    }
    // Every holder in this process keeps the beacon, so a file naming our pid without it was
    // left by an earlier process that had the same pid.
    if evidence.names_this_process {
        return Verdict::Reclaimable;
    }
    match owner() {
        Liveness::Dead => Verdict::Reclaimable,
        Liveness::Alive => Verdict::Alive { pid, port },
        Liveness::Unknown => Verdict::Wait {
            pid: Some(pid),
            port,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Liveness::{Alive, Dead, Unknown};

    const PID: u32 = 4242;
    const PORT: u16 = 18789;
    const PAYLOAD: Option<(u32, Option<u16>)> = Some((PID, Some(PORT)));
    const NO_PORT: Option<(u32, Option<u16>)> = Some((PID, None));
    const NO_PAYLOAD: Option<(u32, Option<u16>)> = None;

    const ALIVE: Verdict = Verdict::Alive {
        pid: PID,
        port: Some(PORT),
    };
    const WAIT: Verdict = Verdict::Wait {
        pid: Some(PID),
        port: Some(PORT),
    };
    const WAIT_EMPTY: Verdict = Verdict::Wait {
        pid: None,
        port: None,
    };
    const RECLAIM: Verdict = Verdict::Reclaimable;

    /// why, beacon held, recorded pid and port, names this process, older than stale, owner,
    /// verdict.
    type Row = (
        &'static str,
        bool,
        Option<(u32, Option<u16>)>,
        bool,
        bool,
        Option<Liveness>,
        Verdict,
    );

    /// SPEC §4, one row per case. `owner` is what the pid, start time and argv say of the
    /// recorded owner; `None` means the rule must not even ask.
    #[test]
    fn the_liveness_decision_row_by_row() {
        #[rustfmt::skip]
        let table: &[Row] = &[
            // why,                                                beacon, payload,    our pid, old,   owner,         verdict
            ("the beacon proves the owner alive",                   true,  PAYLOAD,    false,   false, None,          ALIVE),
            ("the beacon wins over a pid from another namespace",   true,  PAYLOAD,    false,   true,  None,          ALIVE),
            ("a held file not yet written: a holder is starting",   true,  NO_PAYLOAD, false,   false, None,          WAIT_EMPTY),
            ("a held file is never stale, however old",             true,  NO_PAYLOAD, false,   true,  None,          WAIT_EMPTY),
            ("no payload, young: maybe a Node gateway mid-write",   false, NO_PAYLOAD, false,   false, None,          WAIT_EMPTY),
            ("no payload, older than the stale window",             false, NO_PAYLOAD, false,   true,  None,          RECLAIM),
            ("our pid without our beacon: an earlier process",      false, PAYLOAD,    true,    false, None,          RECLAIM),
            ("the owner is provably dead",                          false, PAYLOAD,    false,   false, Some(Dead),    RECLAIM),
            ("pid and start time (or argv) say alive",              false, PAYLOAD,    false,   false, Some(Alive),   ALIVE),
            ("alive, with no port recorded",                        false, NO_PORT,    false,   false, Some(Alive),   Verdict::Alive { pid: PID, port: None }),
            ("unknown owner: wait, never reclaim",                  false, PAYLOAD,    false,   false, Some(Unknown), WAIT),
            ("unknown owner, however old: still wait",              false, PAYLOAD,    false,   true,  Some(Unknown), WAIT),
            ("a live owner's file is not stale by age",             false, PAYLOAD,    false,   true,  Some(Alive),   ALIVE),
            ("a dead owner's young file is reclaimed at once",      false, NO_PORT,    false,   false, Some(Dead),    RECLAIM),
        ];
        for &(why, beacon_held, recorded, names_this_process, older_than_stale, owner, verdict) in
            table
        {
            let evidence = Evidence {
                beacon_held,
                recorded,
                whereabouts: Whereabouts::ThisBoot,
                names_this_process,
                older_than_stale,
            };
            let owner = || owner.unwrap_or_else(|| panic!("{why}: asked about the owner"));
            let local = || panic!("{why}: asked about the ground");
            assert_eq!(decide(evidence, local, owner), verdict, "{why}");
        }
    }

    /// why, where the owner ran, beacon held, recorded pid and port, names this process (in our
    /// namespace), locks local to this kernel, owner, verdict.
    type HostRow = (
        &'static str,
        Whereabouts,
        bool,
        Option<(u32, Option<u16>)>,
        bool,
        Option<bool>,
        Option<Liveness>,
        Verdict,
    );

    /// Issue 13: where the owner ran comes first. Off this boot of this machine the pid is never
    /// asked about (`None` in the owner column: asking panics).
    #[test]
    fn the_host_decision_row_by_row() {
        use Whereabouts::{EarlierBoot, OtherMachine, OtherPidNamespace, ThisBoot};
        let other = |beacon_held| Verdict::OtherHost {
            pid: PID,
            port: Some(PORT),
            beacon_held,
        };
        #[rustfmt::skip]
        let table: &[HostRow] = &[
            // why,                                                   where,             beacon, payload, our pid, local,       owner,       verdict
            ("this boot: SPEC §4 as before, the pid decides",         ThisBoot,          false,  PAYLOAD, false,   None,        Some(Dead),  RECLAIM),
            ("this boot, a live pid",                                 ThisBoot,          false,  PAYLOAD, false,   None,        Some(Alive), ALIVE),
            ("another PID namespace, beacon held: alive",             OtherPidNamespace, true,   PAYLOAD, false,   None,        None,        ALIVE),
            ("another PID namespace, our pid there is not us",        OtherPidNamespace, true,   PAYLOAD, true,    None,        None,        ALIVE),
            ("another PID namespace, free beacon, local fs: gone",    OtherPidNamespace, false,  PAYLOAD, true,    Some(true),  None,        RECLAIM),
            ("another PID namespace, free beacon, per-container FUSE: refuse", OtherPidNamespace, false, PAYLOAD, true, Some(false), None, other(false)),
            ("an earlier boot of this machine: its owner is gone",    EarlierBoot,       false,  PAYLOAD, false,   None,        None,        RECLAIM),
            ("an earlier boot, held: a clone of this machine",        EarlierBoot,       true,   PAYLOAD, false,   None,        None,        other(true)),
            ("another machine, beacon free: says nothing, refuse",    OtherMachine,      false,  PAYLOAD, false,   None,        None,        other(false)),
            ("another machine, beacon held (coherent locks): alive",  OtherMachine,      true,   PAYLOAD, false,   None,        None,        other(true)),
            ("another machine, no port recorded",                     OtherMachine,      false,  NO_PORT, false,   None,        None,        Verdict::OtherHost { pid: PID, port: None, beacon_held: false }),
        ];
        for &(why, whereabouts, beacon_held, recorded, names_this_process, local, owner, verdict) in
            table
        {
            let evidence = Evidence {
                beacon_held,
                recorded,
                whereabouts,
                names_this_process,
                older_than_stale: false,
            };
            let owner = || owner.unwrap_or_else(|| panic!("{why}: asked about the owner"));
            let local = || local.unwrap_or_else(|| panic!("{why}: asked about the ground"));
            assert_eq!(decide(evidence, local, owner), verdict, "{why}");
        }
    }

    /// The stale window of the `judge` rows.
    const STALE: Duration = Duration::from_secs(30);
    /// Well past [`STALE`].
    const AN_HOUR: Duration = Duration::from_secs(3600);

    /// Who the file's payload names, as real processes (the `judge` rows ask the system).
    #[derive(Debug, Clone, Copy)]
    enum Names {
        /// This test process, with its own start time.
        Us,
        /// A child that exited and was reaped.
        ExitedChild,
        /// A running child, with its start time.
        RunningChild,
        /// The running child's pid with another start time: the pid was reused.
        ReusedPid,
    }

    /// What a file's bytes are.
    #[derive(Debug, Clone, Copy)]
    enum Bytes {
        /// A payload naming a process, port [`PORT`].
        Payload(Names),
        /// Nothing written yet.
        Empty,
        /// No pid, so no payload, but a `createdAt` this long ago.
        CreatedAgo(Duration),
        /// No pid, and a `createdAt` this far in the future (a clock set back).
        CreatedIn(Duration),
    }

    /// The verdict a `judge` row expects; the pid and port come from the payload.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Expect {
        Reclaim,
        /// `Alive` with the payload's pid and port.
        Alive,
        /// `Wait` with no pid or port: nothing recorded.
        WaitEmpty,
    }

    /// What `inspect` would have built from a file with `bytes`, modified `modified_ago`.
    fn observed(bytes: Vec<u8>, modified_ago: Duration, beacon_held: bool) -> Observed {
        Observed {
            payload: crate::lock::format::LockPayload::parse(&bytes),
            bytes,
            dev: 0,
            ino: 0,
            modified: std::time::SystemTime::now() - modified_ago,
            beacon_held,
        }
    }

    fn rfc3339(at: std::time::SystemTime) -> String {
        humantime::format_rfc3339_millis(at).to_string()
    }

    /// The step before the decision, from a file as a checker saw it: age by `createdAt` else
    /// mtime, the recorded pid and port, our own pid. Real files' bytes, real processes.
    #[test]
    fn judging_an_observed_file_row_by_row() {
        use Bytes::{CreatedAgo, CreatedIn, Empty, Payload};
        use Names::{ExitedChild, ReusedPid, RunningChild, Us};
        /// A child killed and reaped however the test ends.
        struct Running(std::process::Child);
        impl Drop for Running {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let running = Running(
            std::process::Command::new("sleep")
                .arg("60")
                .spawn()
                .expect("sleep starts"),
        );
        let running = &running.0;
        let mut exited = std::process::Command::new("true")
            .spawn()
            .expect("true starts");
        exited.wait().expect("true exits");
        let running_start = liveness::process_start_time(running.id());
        assert!(
            running_start.is_some(),
            "the child's start time is readable"
        );

        #[rustfmt::skip]
        let table: &[(&str, Bytes, Duration, bool, Expect)] = &[
            // why,                                                     bytes,                      mtime ago,      beacon, verdict
            ("nothing written, mtime an hour ago: stale",               Empty,                      AN_HOUR,        false, Expect::Reclaim),
            ("nothing written, mtime now: maybe mid-write",             Empty,                      Duration::ZERO, false, Expect::WaitEmpty),
            ("nothing written but held: however old, a holder starts",  Empty,                      AN_HOUR,        true,  Expect::WaitEmpty),
            ("no pid, createdAt an hour ago wins over a new mtime",     CreatedAgo(AN_HOUR),        Duration::ZERO, false, Expect::Reclaim),
            ("no pid, createdAt now wins over an old mtime",            CreatedAgo(Duration::ZERO), AN_HOUR,        false, Expect::WaitEmpty),
            ("no pid, createdAt in the future: age zero, not stale",    CreatedIn(AN_HOUR),         AN_HOUR,        false, Expect::WaitEmpty),
            ("our own pid and start time without our beacon: reclaim",  Payload(Us),                Duration::ZERO, false, Expect::Reclaim),
            ("our own pid with the beacon: alive",                      Payload(Us),                Duration::ZERO, true,  Expect::Alive),
            ("a reaped child's pid: dead",                              Payload(ExitedChild),       Duration::ZERO, false, Expect::Reclaim),
            ("a running pid with its start time: alive",                Payload(RunningChild),      Duration::ZERO, false, Expect::Alive),
            ("alive, and the file an hour old: age does not matter",    Payload(RunningChild),      AN_HOUR,        false, Expect::Alive),
            ("a running pid with another start time: reused, dead",     Payload(ReusedPid),         Duration::ZERO, false, Expect::Reclaim),
            ("the beacon wins over a start time that does not match",   Payload(ReusedPid),         Duration::ZERO, true,  Expect::Alive),
        ];
        for &(why, bytes, modified_ago, beacon_held, expect) in table {
            let bytes = match bytes {
                Payload(names) => {
                    let (pid, start_time) = match names {
                        Us => (std::process::id(), liveness::own_start_time()),
                        ExitedChild => (exited.id(), None),
                        RunningChild => (running.id(), running_start),
                        ReusedPid => (running.id(), running_start.map(|start| start + 1)),
                    };
                    crate::lock::format::LockPayload {
                        pid,
                        owner_id: None,
                        created_at: Some(crate::lock::format::timestamp_now()),
                        config_path: None,
                        state_dir: None,
                        port: Some(PORT),
                        start_time,
                        host: HostIdentity::this().clone(),
                    }
                    .render(&[0; 16])
                }
                Empty => Vec::new(),
                CreatedAgo(ago) => {
                    let at = rfc3339(std::time::SystemTime::now() - ago);
                    format!(r#"{{"createdAt":"{at}"}}"#).into_bytes()
                }
                CreatedIn(ahead) => {
                    let at = rfc3339(std::time::SystemTime::now() + ahead);
                    format!(r#"{{"createdAt":"{at}"}}"#).into_bytes()
                }
            };
            let observed = observed(bytes, modified_ago, beacon_held);
            let recorded = observed.payload.as_ref().map(|p| (p.pid, p.port));
            let expected = match expect {
                Expect::Reclaim => RECLAIM,
                Expect::WaitEmpty => WAIT_EMPTY,
                Expect::Alive => {
                    let (pid, port) = recorded.unwrap_or_else(|| panic!("{why}: no payload"));
                    Verdict::Alive { pid, port }
                }
            };
            let here = HostIdentity::this();
            assert_eq!(
                judge_from(&observed, STALE, here, || true),
                expected,
                "{why}"
            );
        }
    }

    /// The host step on real files: a live child's own pid and start time, recorded by a file
    /// that says it was written on an earlier boot, or on another machine.
    #[test]
    fn a_live_pid_means_nothing_off_this_boot() {
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .expect("sleep starts");
        let start_time = liveness::process_start_time(child.id());
        let now = std::time::SystemTime::now();
        let here = HostIdentity {
            boot_id: Some("boot-now".into()),
            machine_id: Some("machine-1".into()),
            hostname: Some("here".into()),
            pid_ns: Some("4:1".into()),
            boot_started: Some(now - Duration::from_secs(600)),
        };
        // Written this long ago (this boot began 10 minutes ago), in PID namespace `pid_ns`.
        let file = |boot: &str, machine: &str, ago: Duration, pid_ns: &str| {
            let bytes = crate::lock::format::LockPayload {
                pid: child.id(),
                owner_id: None,
                created_at: Some(rfc3339(now - ago)),
                config_path: None,
                state_dir: None,
                port: Some(PORT),
                start_time,
                host: HostIdentity {
                    boot_id: Some(boot.into()),
                    machine_id: Some(machine.into()),
                    hostname: Some("there".into()),
                    pid_ns: Some(pid_ns.into()),
                    boot_started: None,
                },
            }
            .render(&[0; 16]);
            observed(bytes, Duration::ZERO, false)
        };
        let (just_now, an_hour_ago) = (Duration::ZERO, AN_HOUR);
        let refused = |pid| Verdict::OtherHost {
            pid,
            port: Some(PORT),
            beacon_held: false,
        };
        let pid = child.id();
        let cases = [
            (
                "this boot: the live pid says alive",
                file("boot-now", "machine-1", just_now, "4:1"),
                Verdict::Alive {
                    pid,
                    port: Some(PORT),
                },
            ),
            (
                "an earlier boot: reclaimed, live pid or not",
                file("boot-before", "machine-1", an_hour_ago, "4:1"),
                RECLAIM,
            ),
            (
                "our machine id, written since this boot began: a clone, refused",
                file("boot-before", "machine-1", just_now, "4:1"),
                refused(pid),
            ),
            (
                "this boot, another PID namespace, per-container mount: refused",
                file("boot-now", "machine-1", just_now, "4:2"),
                refused(pid),
            ),
            (
                "another machine: refused, live pid or not",
                file("boot-x", "machine-2", an_hour_ago, "4:1"),
                refused(pid),
            ),
        ];
        for (why, observed, expected) in cases {
            assert_eq!(
                judge_from(&observed, STALE, &here, || false),
                expected,
                "{why}"
            );
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}
