//! The host requests waiting for an answer: registered when a client calls a host method,
//! taken by the answer, expired by the request timeout.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A host request waiting for its answer: where the `res` frame goes, and what it answers.
#[derive(Debug, PartialEq)]
pub(super) struct Pending {
    /// The connection the request came in on.
    pub conn: u64,
    /// The `id` of the client's `req` frame, echoed in the `res`.
    pub frame_id: Value,
    /// The method called (for the timeout's message).
    pub method: String,
}

/// Every host request of one gateway that is waiting for an answer, by gateway-unique id and by
/// deadline. Each is answered once: by [`take`](Self::take) or by [`expire`](Self::expire).
#[derive(Debug)]
pub(super) struct PendingRequests {
    timeout: Duration,
    next_id: u64,
    by_id: HashMap<u64, Pending>,
    /// Deadlines in the order they were set, which is their order in time because every
    /// request has the same timeout. Answered requests leave theirs here until it passes.
    deadlines: VecDeque<(Instant, u64)>,
}

impl PendingRequests {
    /// No request waits yet; each one registered waits at most `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            next_id: 1,
            by_id: HashMap::new(),
            deadlines: VecDeque::new(),
        }
    }

    /// Registers a request made at `now` and returns its id (never 0, never reused).
    pub fn register(&mut self, pending: Pending, now: Instant) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.by_id.insert(id, pending);
        self.deadlines.push_back((now + self.timeout, id));
        id
    }

    /// The request `id`, which is now answered; `None` when it was answered or expired before.
    pub fn take(&mut self, id: u64) -> Option<Pending> {
        self.by_id.remove(&id)
    }

    /// The requests whose deadline is `now` or earlier and that nobody answered; they are
    /// answered (with the timeout's error) by the caller.
    pub fn expire(&mut self, now: Instant) -> Vec<Pending> {
        let mut expired = Vec::new();
        while let Some(&(deadline, id)) = self.deadlines.front() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_front();
            if let Some(pending) = self.by_id.remove(&id) {
                expired.push(pending);
            }
        }
        expired
    }

    /// How long a request may wait.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(30);

    fn request(conn: u64, method: &str) -> Pending {
        Pending {
            conn,
            frame_id: Value::from(format!("{method}-{conn}")),
            method: method.to_owned(),
        }
    }

    #[test]
    fn ids_start_at_one_and_are_never_reused() {
        let mut pending = PendingRequests::new(TIMEOUT);
        let now = Instant::now();
        let first = pending.register(request(1, "a"), now);
        assert_eq!(first, 1);
        assert!(pending.take(first).is_some());
        let second = pending.register(request(1, "a"), now);
        assert_eq!(second, 2);
    }

    #[test]
    fn a_request_is_answered_once() {
        let mut pending = PendingRequests::new(TIMEOUT);
        let now = Instant::now();
        let id = pending.register(request(7, "echo"), now);
        assert_eq!(pending.take(id), Some(request(7, "echo")));
        assert_eq!(pending.take(id), None, "a second answer finds nothing");
        assert!(
            pending.expire(now + TIMEOUT).is_empty(),
            "an answered request does not also time out"
        );
        assert_eq!(pending.take(999), None, "no such request");
    }

    #[test]
    fn requests_expire_at_their_deadline_in_order_and_only_once() {
        let mut pending = PendingRequests::new(TIMEOUT);
        let start = Instant::now();
        let step = Duration::from_secs(1);
        let a = pending.register(request(1, "a"), start);
        let b = pending.register(request(2, "b"), start + step);
        let c = pending.register(request(3, "c"), start + 2 * step);
        assert!(pending.take(b).is_some());

        assert!(pending.expire(start + TIMEOUT - step).is_empty(), "not yet");
        assert_eq!(pending.expire(start + TIMEOUT), vec![request(1, "a")]);
        assert_eq!(
            pending.expire(start + TIMEOUT + 5 * step),
            vec![request(3, "c")],
            "b was answered, so only c is left"
        );
        assert_eq!(
            pending.take(a),
            None,
            "an expired request cannot be answered"
        );
        assert_eq!(pending.take(c), None);
        assert!(pending.expire(start + 10 * TIMEOUT).is_empty());
    }
}
