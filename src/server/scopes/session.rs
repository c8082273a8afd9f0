//! The session fallbacks (SPEC §12.3; MS:12-122): the methods whose `operator.read` or
//! `operator.write` need a session scope also meets, and the params of a session mutation that
//! ask for `operator.admin` instead.

use serde_json::Value;

use super::{ADMIN, SESSIONS_READ, SESSIONS_WRITE, WRITE};

/// Methods whose `operator.read` need is also met by `operator.sessions.read` (MS:12-33).
pub(super) const SESSION_READ_METHODS: [&str; 20] = [
    "chat.history",
    "chat.message.get",
    "chat.metadata",
    "chat.startup",
    "session.members.list",
    "session.members.listEvidence",
    "sessions.branches.list",
    "sessions.describe",
    "sessions.files.get",
    "sessions.files.list",
    "sessions.get",
    "sessions.list",
    "sessions.messages.subscribe",
    "sessions.messages.unsubscribe",
    "sessions.preview",
    "sessions.resolve",
    "sessions.search",
    "sessions.setInvolvement",
    "sessions.subscribe",
    "sessions.viewers.set",
];

/// Methods whose write need is also met by `operator.sessions.write`, unless the params ask for
/// an admin-level change (MS:34-53).
pub(super) const SESSION_WRITE_METHODS: [&str; 18] = [
    "chat.abort",
    "chat.send",
    "question.get",
    "question.list",
    "question.request",
    "question.resolve",
    "question.waitAnswer",
    "sessions.abort",
    "sessions.create",
    "sessions.delete",
    "sessions.fork",
    "sessions.goal.clear",
    "sessions.goal.update",
    "sessions.patch",
    "sessions.patchMany",
    "sessions.recover",
    "sessions.send",
    "sessions.steer",
];

/// The session scope that may stand in for `method`'s scope (`resolveSessionMethodScope`,
/// MS:55-58).
pub fn session_scope(method: &str, params: &Value) -> Option<&'static str> {
    if SESSION_READ_METHODS.binary_search(&method).is_ok() {
        return Some(SESSIONS_READ);
    }
    let write = SESSION_WRITE_METHODS.binary_search(&method).is_ok()
        && session_mutation_scope(method, params) != Some(ADMIN);
    write.then_some(SESSIONS_WRITE)
}

/// The scope a session mutation needs from its params (MS:59-122), for the methods that have
/// such a rule.
pub(super) fn session_mutation_scope(method: &str, params: &Value) -> Option<&'static str> {
    const PATCH_MUTATIONS: [&str; 15] = [
        "label",
        "autoLabel",
        "icon",
        "color",
        "category",
        "boardFace",
        "boardPresentation",
        "pinned",
        "archived",
        "unread",
        "model",
        "agentRuntime",
        "thinkingLevel",
        "fastMode",
        "permissionMode",
    ];
    const PATCH_ENVELOPE: [&str; 6] = [
        "key",
        "agentId",
        "expectedSessionId",
        "expectedLifecycleRevision",
        "expectedPermissionMode",
        "expectedMarkedUnreadAt",
    ];
    const DELETE_FIELDS: [&str; 5] = [
        "key",
        "agentId",
        "deleteTranscript",
        "expectedSessionId",
        "archivedOnly",
    ];
    let fields = params.as_object();
    let admin_if = |admin: bool| Some(if admin { ADMIN } else { WRITE });
    let full_or_sandbox = |f: &serde_json::Map<String, Value>| {
        f.get("permissionMode") == Some(&Value::from("full")) || f.contains_key("sandboxMode")
    };
    match method {
        "sessions.recover" => Some(WRITE),
        "sessions.create" => {
            let Some(f) = fields else { return Some(WRITE) };
            let incognito = |key: &str| {
                f.get(key)
                    .and_then(Value::as_str)
                    .is_some_and(is_incognito_session_key)
            };
            admin_if(
                f.get("incognito") == Some(&Value::Bool(true))
                    || incognito("key")
                    || incognito("parentSessionKey")
                    || f.contains_key("execNode")
                    || f.contains_key("toolOverrides")
                    || f.get("permissionMode") == Some(&Value::from("full")),
            )
        }
        "sessions.patch" => {
            let Some(f) = fields else { return Some(WRITE) };
            admin_if(
                full_or_sandbox(f)
                    || !f.keys().all(|k| {
                        PATCH_ENVELOPE.contains(&k.as_str())
                            || PATCH_MUTATIONS.contains(&k.as_str())
                    }),
            )
        }
        "sessions.patchMany" => {
            let Some(patch) = fields
                .and_then(|f| f.get("patch"))
                .and_then(Value::as_object)
            else {
                return Some(WRITE);
            };
            admin_if(
                full_or_sandbox(patch)
                    || !patch.keys().all(|k| PATCH_MUTATIONS.contains(&k.as_str())),
            )
        }
        "sessions.delete" => {
            let Some(f) = fields else { return Some(ADMIN) };
            admin_if(
                f.get("archivedOnly") != Some(&Value::Bool(true))
                    || !f.keys().all(|k| DELETE_FIELDS.contains(&k.as_str())),
            )
        }
        _ => None,
    }
}

/// `^agent:<id>:(dashboard|subagent|internal-session-effects):incognito-<rest>$` after trim and
/// lowercase, no `:` in `<id>` or `<rest>` (`session-key-CUi_tcgF.mjs:5-10`).
fn is_incognito_session_key(key: &str) -> bool {
    let key = key.trim().to_lowercase();
    let parts: Vec<&str> = key.split(':').collect();
    matches!(
        parts.as_slice(),
        ["agent", id, "dashboard" | "subagent" | "internal-session-effects", tail]
            if !id.is_empty() && tail.strip_prefix("incognito-").is_some_and(|rest| !rest.is_empty())
    )
}
