//! The gate between the host's request and connection callbacks and `gw_shutdown`: the
//! server those callbacks are given is freed only once none runs, and none starts after.

use std::sync::{Condvar, Mutex, MutexGuard};

/// Counts the callbacks in progress; `stop` closes the gate and waits for them.
#[derive(Default)]
pub(crate) struct CallGate {
    calls: Mutex<Calls>,
    changed: Condvar,
}

#[derive(Default)]
struct Calls {
    stopped: bool,
    running: usize,
}

/// One callback in progress; dropping it lets `stop` go on.
pub(crate) struct Call<'a>(&'a CallGate);

impl Drop for Call<'_> {
    fn drop(&mut self) {
        let mut calls = self.0.calls();
        calls.running -= 1;
        // Only `stop` waits, and only for the last call: no wake-up on every request.
        if calls.stopped && calls.running == 0 {
            self.0.changed.notify_all();
        }
    }
}

impl CallGate {
    fn calls(&self) -> MutexGuard<'_, Calls> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A callback begins; `None` once `stop` was called.
    pub(crate) fn enter(&self) -> Option<Call<'_>> {
        let mut calls = self.calls();
        if calls.stopped {
            return None;
        }
        calls.running += 1;
        Some(Call(self))
    }

    /// No callback starts from now on; returns once none is running.
    pub(crate) fn stop(&self) {
        let mut calls = self.calls();
        calls.stopped = true;
        let _idle = self
            .changed
            .wait_while(calls, |calls| calls.running > 0)
            .unwrap_or_else(|e| e.into_inner());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[test]
    fn stop_waits_for_the_running_call_and_lets_none_start() {
        let gate = Arc::new(CallGate::default());
        let call = gate.enter().expect("open before stop");
        let stopper = {
            let gate = Arc::clone(&gate);
            std::thread::spawn(move || gate.stop())
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!stopper.is_finished(), "stop returned while a call ran");
        drop(call);
        stopper.join().unwrap();
        assert!(gate.enter().is_none());
    }
}
