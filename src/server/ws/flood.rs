//! Node's guard against a client that keeps calling what its role may not call (SPEC §12.2;
//! `UnauthorizedFloodGuard`, MH:175-216): `unauthorized role` answers are counted, any other
//! answer starts the count again, and the answer past the tenth in a row closes the connection.

use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

use crate::server::protocol::{MethodError, codes};

/// Consecutive `unauthorized role` answers a connection may get; the next one closes it
/// (`DEFAULT_CLOSE_AFTER`, MH:175).
const UNAUTHORIZED_ANSWERS_ALLOWED: u32 = 10;

/// The close reason Node gives (MH:363).
pub(super) const CLOSE_REASON: &str = "repeated unauthorized calls";

/// One connection's count of `unauthorized role` answers in a row. It is kept with the
/// connection, not the reader, because the host answers its requests from any thread.
#[derive(Default)]
pub(super) struct FloodGuard {
    unauthorized_in_a_row: AtomicU32,
}

impl FloodGuard {
    /// Counts an answer that went out (MH:351-370); `true` when the connection must close. A
    /// malformed frame's answer is not an answer to a request: do not count it (MH:246-254).
    pub fn answered(&self, result: &Result<Value, MethodError>) -> bool {
        match result {
            Err(error) if is_unauthorized_role(error) => {
                let count = self.unauthorized_in_a_row.fetch_add(1, Ordering::AcqRel) + 1;
                count > UNAUTHORIZED_ANSWERS_ALLOWED
            }
            _ => {
                self.unauthorized_in_a_row.store(0, Ordering::Release);
                false
            }
        }
    }
}

/// `INVALID_REQUEST` `unauthorized role: …`, whoever answered it (`isUnauthorizedRoleError`,
/// MH:212-215).
fn is_unauthorized_role(error: &MethodError) -> bool {
    error.code == codes::INVALID_REQUEST && error.message.starts_with("unauthorized role:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eleventh_unauthorized_answer_in_a_row_closes() {
        let guard = FloodGuard::default();
        let unauthorized = Err(MethodError::invalid_request("unauthorized role: node"));
        let other = Err(MethodError::invalid_request("unknown method: x"));
        for _ in 0..10 {
            assert!(!guard.answered(&unauthorized));
        }
        // Any other answer starts the count again, an error or not.
        assert!(!guard.answered(&other));
        for _ in 0..10 {
            assert!(!guard.answered(&unauthorized));
        }
        assert!(!guard.answered(&Ok(Value::Null)));
        for _ in 0..10 {
            assert!(!guard.answered(&unauthorized));
        }
        assert!(guard.answered(&unauthorized));
    }
}
