//! What to do about a lock file that exists: the decision of SPEC §4, with its table of cases
//! in the tests below.

use std::time::Duration;

use super::inspect::Observed;
use super::liveness::{self, Liveness};

/// What to do about an existing lock file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Provably dead owner, or no payload and older than the stale window.
    Reclaimable,
    /// A live owner (beacon held, or pid and start time match).
    Alive { pid: u32, port: Option<u16> },
    /// Unknown owner, or a young file without payload: wait and look again.
    Wait { pid: Option<u32>, port: Option<u16> },
}

/// Judges a lock file as a checker saw it; `stale` is the stale window.
pub(crate) fn judge(observed: &Observed, stale: Duration) -> Verdict {
    let payload = observed.payload.as_ref();
    let evidence = Evidence {
        beacon_held: observed.beacon_held,
        recorded: payload.map(|p| (p.pid, p.port)),
        names_this_process: payload.is_some_and(|p| p.pid == std::process::id()),
        older_than_stale: observed.age() > stale,
    };
    decide(evidence, || {
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
    /// The recorded pid is this process's.
    names_this_process: bool,
    /// Older than the stale window, by `createdAt`, else by mtime.
    older_than_stale: bool,
}

/// The decision itself. `owner` judges the recorded pid (running, start time, argv: see
/// `liveness`); it is asked only when the beacon is free and the payload names another process.
fn decide(evidence: Evidence, owner: impl FnOnce() -> Liveness) -> Verdict {
    if evidence.beacon_held {
        return match evidence.recorded {
            Some((pid, port)) => Verdict::Alive { pid, port },
            // Created and locked, not yet written: a holder of ours is starting.
            None => Verdict::Wait {
                pid: None,
                port: None,
            },
        };
    }
    let Some((pid, port)) = evidence.recorded else {
        return if evidence.older_than_stale {
            Verdict::Reclaimable
        } else {
            Verdict::Wait {
                pid: None,
                port: None,
            }
        };
    };
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
                names_this_process,
                older_than_stale,
            };
            let owner = || owner.unwrap_or_else(|| panic!("{why}: asked about the owner"));
            assert_eq!(decide(evidence, owner), verdict, "{why}");
        }
    }
}
