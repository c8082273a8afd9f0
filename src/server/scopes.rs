//! Operator scopes (SPEC §12.3): which granted set satisfies which required scope.
//!
//! Skeleton shared by the issue-11 parts: the roles part grows this file (Node's method → scope
//! table, dynamic methods, event gates); the others only call [`scope_satisfied`].

#![allow(dead_code)] // skeleton: the roles part of issue 11 uses all of it

/// The scope that satisfies every operator scope.
pub const ADMIN: &str = "operator.admin";
/// Read access; also satisfied by `operator.write`.
pub const READ: &str = "operator.read";
/// Write access.
pub const WRITE: &str = "operator.write";

/// Whether `granted` satisfies `required` (SPEC §12.3, OSC:10-13): only `operator.*` scopes can
/// be satisfied; `operator.admin` satisfies all of them, `operator.write` the read, talk and
/// session ones, and `operator.sessions.read` is also satisfied by `operator.read` or
/// `operator.sessions.write`.
pub fn scope_satisfied(required: &str, granted: &[String]) -> bool {
    if !required.starts_with("operator.") {
        return false;
    }
    let has = |scope: &str| granted.iter().any(|g| g == scope);
    has(required)
        || has(ADMIN)
        || (matches!(
            required,
            "operator.read"
                | "operator.talk"
                | "operator.sessions.read"
                | "operator.sessions.write"
        ) && has(WRITE))
        || (required == "operator.sessions.read" && (has(READ) || has("operator.sessions.write")))
}

/// Whether `granted` satisfies every scope of `required`.
pub fn scopes_satisfied(required: &[String], granted: &[String]) -> bool {
    required.iter().all(|r| scope_satisfied(r, granted))
}
