//! The holder's periodic re-check (PostgreSQL does the same): does each lock path still name
//! the file we hold? One thread serves every lock in the process, started at the first lock,
//! so acquiring and releasing spawn and join nothing.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::options::{LogLevel, Logger};

type LostHandler = dyn Fn(&Path) + Send + Sync;

/// One lock's files under watch; dropping it (or `stop`) ends the watch.
pub(super) struct LockWatch {
    entry: Arc<Entry>,
}

struct Entry {
    /// Each lock path with the device and inode of the file we hold there.
    files: Vec<(PathBuf, (u64, u64))>,
    interval: Duration,
    logger: Mutex<Logger>,
    lost: Mutex<Lost>,
}

/// The lost path, once found, and who to tell; a handler set after the loss is told at once.
#[derive(Default)]
struct Lost {
    path: Option<PathBuf>,
    handler: Option<Arc<LostHandler>>,
}

struct Watcher {
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    /// Each watched lock with the instant its next check is due (`None`: never, the interval
    /// reaches past what an `Instant` can hold).
    entries: Vec<(Option<Instant>, Arc<Entry>)>,
    /// When the thread will next look, if it sleeps towards an instant (`None`: until woken).
    /// A new lock due no sooner needs no wake-up, which keeps `acquire` free of one.
    next_look: Option<Instant>,
}

fn watcher() -> &'static Watcher {
    static WATCHER: OnceLock<&'static Watcher> = OnceLock::new();
    WATCHER.get_or_init(|| {
        let watcher: &'static Watcher = Box::leak(Box::new(Watcher {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        }));
        // Without the thread nothing is re-checked; locks still work, so this only logs.
        if let Err(err) = std::thread::Builder::new()
            .name("gateway-lock-watch".into())
            .spawn(move || watch_loop(watcher))
        {
            Logger::default().log(
                LogLevel::Warn,
                &format!("cannot start the lock re-check thread: {err}"),
            );
        }
        watcher
    })
}

fn relock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl LockWatch {
    pub(super) fn start(
        files: Vec<(PathBuf, (u64, u64))>,
        interval: Duration,
        logger: Logger,
    ) -> Self {
        let entry = Arc::new(Entry {
            files,
            interval,
            logger: Mutex::new(logger),
            lost: Mutex::new(Lost::default()),
        });
        let watcher = watcher();
        let due = Instant::now().checked_add(interval);
        let mut state = relock(&watcher.state);
        state.entries.push((due, Arc::clone(&entry)));
        if due.is_some_and(|due| state.next_look.is_none_or(|next_look| due < next_look)) {
            watcher.wake.notify_one();
        }
        Self { entry }
    }

    pub(super) fn is_lost(&self) -> bool {
        relock(&self.entry.lost).path.is_some()
    }

    pub(super) fn set_logger(&self, logger: Logger) {
        *relock(&self.entry.logger) = logger;
    }

    pub(super) fn set_handler(&self, handler: Box<LostHandler>) {
        let handler: Arc<LostHandler> = Arc::from(handler);
        let already_lost = {
            let mut lost = relock(&self.entry.lost);
            lost.handler = Some(Arc::clone(&handler));
            lost.path.clone()
        };
        // Called outside the mutex, so the handler may ask `is_lost`.
        if let Some(path) = already_lost {
            handler(&path);
        }
    }
}

impl std::fmt::Debug for LockWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockWatch")
            .field("interval", &self.entry.interval)
            .field("lost", &relock(&self.entry.lost).path)
            .finish()
    }
}

impl Drop for LockWatch {
    fn drop(&mut self) {
        relock(&watcher().state)
            .entries
            .retain(|(_, entry)| !Arc::ptr_eq(entry, &self.entry));
    }
}

fn watch_loop(watcher: &Watcher) {
    let mut state = relock(&watcher.state);
    loop {
        let now = Instant::now();
        let mut found = Vec::new();
        state.entries.retain_mut(|(due, entry)| {
            if due.is_none_or(|due| due > now) {
                return true;
            }
            match entry.lost_file() {
                Some(path) => {
                    found.push((Arc::clone(entry), path));
                    false // Reported once; no longer watched.
                }
                None => {
                    *due = now.checked_add(entry.interval);
                    true
                }
            }
        });
        if !found.is_empty() {
            // Report with the state unlocked (a handler may release its lock, which takes it),
            // then look again at once.
            state.next_look = Some(now);
            drop(state);
            for (entry, path) in found {
                // A host's handler or logger that panics must not end the re-check of every
                // other lock in the process.
                let _ =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| entry.report(path)));
            }
            state = relock(&watcher.state);
            continue;
        }
        state.next_look = state.entries.iter().filter_map(|(due, _)| *due).min();
        state = match state.next_look {
            Some(due) => {
                let timeout = due.saturating_duration_since(Instant::now());
                watcher
                    .wake
                    .wait_timeout(state, timeout)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
            None => watcher.wake.wait(state).unwrap_or_else(|e| e.into_inner()),
        };
    }
}

impl Entry {
    /// The first lock path that no longer names the file we hold.
    fn lost_file(&self) -> Option<PathBuf> {
        self.files
            .iter()
            .find(|(path, (dev, ino))| {
                !std::fs::symlink_metadata(path)
                    .is_ok_and(|meta| meta.dev() == *dev && meta.ino() == *ino)
            })
            .map(|(path, _)| path.clone())
    }

    fn report(&self, path: PathBuf) {
        let handler = {
            let mut lost = relock(&self.lost);
            lost.path = Some(path.clone());
            lost.handler.clone()
        };
        let logger = relock(&self.logger).clone();
        logger.log(
            LogLevel::Error,
            &format!(
                "gateway lock file {} was removed or replaced; another gateway may start on this config: restart this gateway to take the lock again",
                path.display()
            ),
        );
        if let Some(handler) = handler {
            handler(&path);
        }
    }
}
