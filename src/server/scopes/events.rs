//! Who gets a broadcast event (SPEC §12.7): Node's event → scope table, the `plugin.` rule, and
//! the events the gateway itself emits, whose gate a host cannot change.

use super::{
    ADMIN, APPROVALS, OPERATOR_ROLE, OPERATOR_SCOPES, PAIRING, QUESTIONS, READ, SESSIONS_READ,
    TALK, WRITE, scope_satisfied,
};

/// The role and scopes a connection was granted at the handshake: what broadcasts are judged
/// by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// `operator` or `node`.
    pub role: String,
    /// The scopes granted (ignored for role `node`).
    pub scopes: Vec<String>,
}

/// Who a broadcast event reaches (SPEC §12.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventGate {
    /// Every authenticated connection, nodes included.
    Everyone,
    /// Operators holding a scope that satisfies one of these.
    Operators(&'static [&'static str]),
}

impl EventGate {
    /// Whether a connection with `role` and `granted` scopes gets the event (`hasEventScope`,
    /// SS:3088-3097).
    pub fn admits(self, role: &str, granted: &[String]) -> bool {
        match self {
            EventGate::Everyone => true,
            EventGate::Operators(any_of) => {
                role == OPERATOR_ROLE && any_of.iter().any(|s| scope_satisfied(s, granted))
            }
        }
    }

    /// Operators holding `scope` (one of [`OPERATOR_SCOPES`], else `None`).
    pub fn operators_with(scope: &str) -> Option<Self> {
        let i = OPERATOR_SCOPES.iter().position(|known| *known == scope)?;
        Some(EventGate::Operators(std::slice::from_ref(
            &OPERATOR_SCOPES[i],
        )))
    }
}

/// Node's event → scope table (`EVENT_SCOPE_GUARDS`, SS:3021-3087), sorted by name.
pub(super) static EVENT_GATES: [(&str, &[&str]); 65] = [
    ("agent", &[READ]),
    ("board.changed", &[READ]),
    ("board.command", &[READ]),
    ("chat", &[READ]),
    ("chat.metadata.changed", &[READ, SESSIONS_READ]),
    ("chat.send_timing", &[READ]),
    ("chat.side_result", &[READ]),
    ("config.changed", &[READ]),
    ("controlUi.sessionPullRequests.changed", &[READ]),
    ("cron", &[READ]),
    ("device.pair.changed", &[PAIRING]),
    ("device.pair.requested", &[PAIRING]),
    ("device.pair.resolved", &[PAIRING]),
    ("device.pair.setup.completed", &[PAIRING]),
    ("device.pair.setup.deliveryUncertain", &[PAIRING]),
    ("exec.approval.requested", &[APPROVALS]),
    ("exec.approval.resolved", &[APPROVALS]),
    ("gateway.suspension", &[]),
    ("health", &[]),
    ("heartbeat", &[]),
    ("mentions.changed", &[READ]),
    ("node.hostStats", &[READ]),
    ("node.pair.requested", &[PAIRING]),
    ("node.pair.resolved", &[PAIRING]),
    ("node.presence", &[READ]),
    ("node.runnerInventory.changed", &[READ]),
    ("openclaw.approval.requested", &[APPROVALS]),
    ("openclaw.approval.resolved", &[APPROVALS]),
    ("plugin.approval.requested", &[APPROVALS]),
    ("plugin.approval.resolved", &[APPROVALS]),
    ("plugins.changed", &[READ]),
    ("plugins.controlUi.changed", &[READ]),
    ("plugins.install.progress", &[ADMIN]),
    ("portal.changed", &[READ]),
    ("presence", &[READ]),
    ("progressCard.changed", &[READ]),
    ("question.requested", &[QUESTIONS]),
    ("question.resolved", &[QUESTIONS]),
    ("session.approval", &[APPROVALS]),
    ("session.message", &[READ]),
    ("session.observer", &[READ]),
    ("session.operation", &[READ]),
    ("session.sharing", &[READ]),
    ("session.sharing.evidence", &[READ]),
    ("session.suggestion", &[READ]),
    ("session.tool", &[READ]),
    ("session.typing", &[READ]),
    ("sessions.catalog.host", &[READ]),
    ("sessions.changed", &[READ]),
    ("shutdown", &[]),
    ("skills.changed", &[READ]),
    ("talk.event", &[READ]),
    ("talk.mode", &[TALK]),
    ("talk.voice.change", &[TALK]),
    ("task", &[READ]),
    ("task.suggestion", &[READ]),
    ("terminal.data", &[ADMIN]),
    ("terminal.exit", &[ADMIN]),
    ("tick", &[]),
    ("ui.command", &[READ]),
    ("update.available", &[]),
    ("update.run.changed", &[ADMIN]),
    ("users.prefs.changed", &[READ]),
    ("voicewake.changed", &[READ]),
    ("voicewake.routing.changed", &[READ]),
];

/// Node's gate for `event`: its table, else `operator.write` for a `plugin.` event; `None` for
/// an event Node drops (SS:3092-3096).
pub fn core_event_gate(event: &str) -> Option<EventGate> {
    match EVENT_GATES.binary_search_by(|(name, _)| (*name).cmp(event)) {
        Ok(i) => Some(match EVENT_GATES[i].1 {
            [] => EventGate::Everyone,
            scopes => EventGate::Operators(scopes),
        }),
        Err(_) if event.starts_with("plugin.") => EventGate::operators_with(WRITE),
        Err(_) => None,
    }
}

/// Events the gateway itself emits (`tick`, `health` and `shutdown` now; `presence` and the
/// `device.pair.*` pair as the presence and pairing parts land): they go by Node's table
/// whatever the host registers, so a host cannot narrow or widen who hears the core
/// ([`Handlers::add_event_with_scope`](crate::Handlers::add_event_with_scope) refuses a scope
/// for them).
const CORE_EMITTED_EVENTS: [&str; 6] = [
    "device.pair.requested",
    "device.pair.resolved",
    "health",
    "presence",
    "shutdown",
    "tick",
];

/// Whether the gateway itself emits `event` (see [`CORE_EMITTED_EVENTS`]).
pub fn is_core_emitted_event(event: &str) -> bool {
    CORE_EMITTED_EVENTS.contains(&event)
}
