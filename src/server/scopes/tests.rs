//! The rules of SPEC §12.2–12.4 and 12.7 case by case: read the tables to learn them.

use serde_json::{Value, json};

use super::*;

fn granted(scopes: &[&str]) -> Vec<String> {
    scopes.iter().map(|s| s.to_string()).collect()
}

#[test]
fn the_method_table_has_node_s_counts_per_scope_and_is_sorted() {
    // SPEC §12.4's table, scope by scope.
    let expected = [
        ("node", 11),
        ("dynamic", 13),
        (READ, 162),
        (WRITE, 95),
        (ADMIN, 148),
        (APPROVALS, 16),
        (QUESTIONS, 5),
        (PAIRING, 14),
        (TALK, 17),
        (SESSIONS_WRITE, 1),
    ];
    for (scope, count) in expected {
        let found = table::CORE_METHODS
            .iter()
            .filter(|(_, s)| match s {
                MethodScope::Node => scope == "node",
                MethodScope::Dynamic => scope == "dynamic",
                MethodScope::Operator(o) => *o == scope,
            })
            .count();
        assert_eq!(found, count, "{scope}");
    }
    assert_eq!(table::CORE_METHODS.len(), 482);
    assert!(table::CORE_METHODS.windows(2).all(|w| w[0].0 < w[1].0));
    assert!(table::CONTROL_PLANE_WRITES.windows(2).all(|w| w[0] < w[1]));
    assert!(events::EVENT_GATES.windows(2).all(|w| w[0].0 < w[1].0));
    assert!(
        session::SESSION_READ_METHODS
            .windows(2)
            .all(|w| w[0] < w[1])
    );
    assert!(
        session::SESSION_WRITE_METHODS
            .windows(2)
            .all(|w| w[0] < w[1])
    );
    for method in table::CONTROL_PLANE_WRITES {
        assert!(core_method_scope(method).is_some(), "{method}");
    }
}

#[test]
fn lookups_in_the_tables() {
    #[rustfmt::skip]
    let cases: [(&str, Option<MethodScope>); 8] = [
        ("health", Some(MethodScope::Operator(READ))),
        ("system-presence", Some(MethodScope::Operator(READ))),
        ("config.get", Some(MethodScope::Operator(READ))),
        ("config.apply", Some(MethodScope::Operator(ADMIN))),
        ("node.event", Some(MethodScope::Node)),
        ("skills.bins", Some(MethodScope::Node)),
        ("sessions.patch", Some(MethodScope::Dynamic)),
        ("my.own.method", None),
    ];
    for (method, scope) in cases {
        assert_eq!(core_method_scope(method), scope, "{method}");
    }
    assert!(is_control_plane_write("config.apply"));
    assert!(!is_control_plane_write("config.get"));
}

#[test]
fn which_granted_set_satisfies_which_scope() {
    // (required, granted, satisfied)
    #[rustfmt::skip]
    let cases: [(&str, &[&str], bool); 17] = [
        (READ, &[READ], true),
        (READ, &[WRITE], true),
        (READ, &[ADMIN], true),
        (READ, &[SESSIONS_READ], false),
        (WRITE, &[READ], false),
        (TALK, &[WRITE], true),
        (TALK_SECRETS, &[WRITE], false),
        (SESSIONS_READ, &[READ], true),
        (SESSIONS_READ, &[SESSIONS_WRITE], true),
        (SESSIONS_WRITE, &[WRITE], true),
        (SESSIONS_WRITE, &[READ], false),
        (APPROVALS, &[WRITE], false),
        (PAIRING, &[PAIRING], true),
        (PAIRING, &[], false),
        // Only operator scopes can be satisfied, even by admin or by themselves.
        ("custom.thing", &["custom.thing"], false),
        ("custom.thing", &[ADMIN], false),
        ("node", &["node"], false),
    ];
    for (required, scopes, satisfied) in cases {
        assert_eq!(
            scope_satisfied(required, &granted(scopes)),
            satisfied,
            "{required} with {scopes:?}"
        );
    }
}

/// One row of the authorization table: method, registration, role, granted, params, answer.
type Case = (
    &'static str,
    Registration<'static>,
    &'static str,
    &'static [&'static str],
    Value,
    Result<(), Refusal>,
);

/// Shorthands for the authorization table.
fn ok() -> Result<(), Refusal> {
    Ok(())
}
fn wrong(role: &str) -> Result<(), Refusal> {
    Err(Refusal::WrongRole(role.into()))
}
fn missing(scope: &'static str, required: &[&'static str]) -> Result<(), Refusal> {
    Err(Refusal::MissingScope {
        missing: scope,
        required: required.to_vec(),
    })
}

#[test]
fn who_may_call_what_in_node_s_order() {
    use Registration::{None as Unregistered, Scoped, Unscoped};
    // (method, how the host registered it, role, granted, params, answer)
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        // 1. health: every role, no scope.
        ("health", Unregistered, "node", &[], json!({}), ok()),
        ("health", Unregistered, "operator", &[], json!({}), ok()),
        // 2. Node methods only for nodes; everything else, known or not, only for operators.
        ("node.event", Unregistered, "operator", &[ADMIN], json!({}), wrong("operator")),
        ("status", Unregistered, "node", &[], json!({}), wrong("node")),
        ("no.such.method", Unregistered, "node", &[], json!({}), wrong("node")),
        ("host.method", Scoped(READ), "node", &[], json!({}), wrong("node")),
        ("host.nodeish", Scoped("node"), "operator", &[ADMIN], json!({}), wrong("operator")),
        // 3. Nodes need no scope for node methods, registered or not.
        ("node.event", Unregistered, "node", &[], json!({}), ok()),
        ("node.skills.update", Unscoped, "node", &[], json!({}), ok()),
        ("host.nodeish", Scoped("node"), "node", &[], json!({}), ok()),
        // 4. Scope upgrades are for everyone.
        ("device.scopes.requestUpgrade", Unregistered, "operator", &[], json!({}), ok()),
        // 5. Admin passes everything else.
        ("no.such.method", Unregistered, "operator", &[ADMIN], json!({}), ok()),
        ("config.apply", Unscoped, "operator", &[ADMIN], json!({}), ok()),
        // 6. The registered scope, else Node's table, else admin.
        ("host.method", Scoped(READ), "operator", &[WRITE], json!({}), ok()),
        ("host.method", Scoped(APPROVALS), "operator", &[WRITE], json!({}), missing(APPROVALS, &[APPROVALS])),
        ("status", Unscoped, "operator", &[READ], json!({}), ok()),
        ("status", Unscoped, "operator", &[], json!({}), missing(READ, &[READ])),
        ("system-presence", Unregistered, "operator", &[READ], json!({}), ok()),
        ("host.method", Unscoped, "operator", &[READ, WRITE], json!({}), missing(ADMIN, &[ADMIN])),
        ("no.such.method", Unregistered, "operator", &[WRITE], json!({}), missing(ADMIN, &[ADMIN])),
        ("config.anything.new", Unregistered, "operator", &[WRITE], json!({}), missing(ADMIN, &[ADMIN])),
        // A registered scope beats Node's table.
        ("config.get", Scoped(ADMIN), "operator", &[READ], json!({}), missing(ADMIN, &[ADMIN])),
        // … but under a prefix Node reserves for admins, a host method that is not Node's needs
        // admin whatever it was registered with; Node's own methods there keep their scope.
        ("config.custom", Scoped(READ), "operator", &[READ], json!({}), missing(ADMIN, &[ADMIN])),
        ("exec.approvals.mine", Scoped(APPROVALS), "operator", &[APPROVALS], json!({}), missing(ADMIN, &[ADMIN])),
        ("update.mine", Scoped("node"), "node", &[], json!({}), wrong("node")),
        ("wizard.mine", Scoped(ADMIN), "operator", &[ADMIN], json!({}), ok()),
        ("config.get", Scoped(READ), "operator", &[READ], json!({}), ok()),
        ("config.get", Unscoped, "operator", &[READ], json!({}), ok()),
        ("configure.mine", Scoped(READ), "operator", &[READ], json!({}), ok()),
        // Session fallbacks: a session-read method also takes operator.sessions.read …
        ("sessions.list", Unscoped, "operator", &[SESSIONS_READ], json!({}), ok()),
        ("status", Unscoped, "operator", &[SESSIONS_READ], json!({}), missing(READ, &[READ])),
        // … and a session-write method operator.sessions.write, unless it asks for admin.
        ("chat.send", Unscoped, "operator", &[SESSIONS_WRITE], json!({}), ok()),
        ("question.request", Unscoped, "operator", &[SESSIONS_WRITE], json!({}), ok()),
        ("sessions.patch", Unscoped, "operator", &[SESSIONS_WRITE], json!({"key": "k", "label": "x"}), ok()),
        ("sessions.patch", Unscoped, "operator", &[WRITE], json!({"key": "k", "sandboxMode": "on"}), missing(ADMIN, &[ADMIN])),
        // Dynamic methods judge their params.
        ("agent", Unscoped, "operator", &[WRITE], json!({"message": "hello"}), ok()),
        ("agent", Unscoped, "operator", &[WRITE], json!({"message": "/reset now"}), missing(ADMIN, &[ADMIN])),
        ("talk.config", Unscoped, "operator", &[READ], json!({"includeSecrets": true}), missing(TALK_SECRETS, &[READ, TALK_SECRETS])),
        ("talk.config", Unscoped, "operator", &[READ], json!({}), ok()),
        ("plugins.sessionAction", Unscoped, "operator", &[PAIRING], json!({"pluginId": "p"}), ok()),
        ("plugins.sessionAction", Unscoped, "operator", &[READ], json!({"pluginId": "p", "actionId": "a"}), missing(WRITE, &[ADMIN, READ, WRITE, APPROVALS, QUESTIONS, PAIRING, TALK_SECRETS])),
        ("plugins.sessionAction", Unscoped, "operator", &[READ], json!(null), missing(WRITE, &[WRITE])),
        ("plugins.sessionAction", Unscoped, "operator", &[], json!({}), missing(WRITE, &[WRITE])),
    ];
    for (method, registration, role, scopes, params, answer) in cases {
        assert_eq!(
            authorize(method, registration, role, &granted(scopes), &params),
            answer,
            "{method} ({registration:?}) by {role} with {scopes:?} and {params}"
        );
    }
}

#[test]
fn dynamic_methods_read_their_params() {
    #[rustfmt::skip]
    let cases: [(&str, Value, &[&str]); 28] = [
        ("agent", json!({"message": "/new"}), &[ADMIN]),
        ("agent", json!({"message": "/RESET\tplease"}), &[ADMIN]),
        ("agent", json!({"message": "/newer"}), &[WRITE]),
        ("agent", json!(null), &[WRITE]),
        ("node.invoke", json!({"command": "system.run"}), &[WRITE]),
        ("node.invoke", json!({"command": "fs.listDir"}), &[ADMIN]),
        ("node.invoke", json!({"command": "browser.proxy"}), &[ADMIN]),
        ("node.invoke", json!({"command": "browser.proxy", "params": {"method": "post", "path": "profiles/create/"}}), &[WRITE]),
        // A slash is prepended only when missing: `//…` is no profile path, so admin.
        ("node.invoke", json!({"command": "browser.proxy", "params": {"method": "POST", "path": "//profiles/create"}}), &[ADMIN]),
        ("node.invoke", json!({"command": "browser.proxy", "params": {"method": "DELETE", "path": "//profiles/p"}}), &[ADMIN]),
        ("node.invoke", json!({"command": "browser.proxy", "params": {"method": "DELETE", "path": "/profiles/p//"}}), &[WRITE]),
        ("node.invoke", json!({"command": "browser.proxy", "params": {"method": "POST", "path": " //reset-profile"}}), &[ADMIN]),
        ("talk.config", json!({"includeSecrets": true}), &[READ, TALK_SECRETS]),
        ("environments.list", json!({"runtimeId": "r"}), &[WRITE]),
        ("environments.list", json!({"runtimeId": ""}), &[READ]),
        ("channels.pairing.approve", json!({"bootstrapCommandOwner": true}), &[PAIRING, ADMIN]),
        ("channels.pairing.approve", json!({}), &[PAIRING]),
        ("fs.listDir", json!({"nodeId": null}), &[ADMIN]),
        ("fs.listDir", json!({"path": "/"}), &[WRITE]),
        ("sessions.create", json!({"key": "agent:a:dashboard:incognito-1"}), &[ADMIN]),
        ("sessions.create", json!({"key": "agent:a:dashboard:main"}), &[WRITE]),
        ("sessions.patchMany", json!({"patch": {"pinned": true}}), &[WRITE]),
        ("sessions.patchMany", json!({"patch": {"secret": 1}}), &[ADMIN]),
        ("sessions.delete", json!({"key": "k", "archivedOnly": true}), &[WRITE]),
        ("sessions.delete", json!({"key": "k"}), &[ADMIN]),
        ("sessions.dispatch", json!({"deviceId": "d"}), &[WRITE]),
        ("sessions.dispatch", json!({"key": "k"}), &[ADMIN]),
        ("sessions.move", json!({"target": {"kind": "profile"}}), &[ADMIN]),
    ];
    for (method, params, scopes) in cases {
        assert_eq!(dynamic_scopes(method, &params), scopes, "{method} {params}");
    }
}

#[test]
fn who_gets_which_event() {
    let (operator, node) = (OPERATOR_ROLE, NODE_ROLE);
    // (event, role, granted, delivered)
    #[rustfmt::skip]
    let cases: [(&str, &str, &[&str], bool); 16] = [
        ("tick", node, &[], true),
        ("health", node, &[], true),
        ("shutdown", operator, &[], true),
        ("heartbeat", node, &[], true),
        ("presence", operator, &[READ], true),
        ("presence", operator, &[WRITE], true),
        ("presence", operator, &[], false),
        ("presence", node, &[ADMIN], false),
        ("chat.metadata.changed", operator, &[SESSIONS_READ], true),
        ("device.pair.requested", operator, &[READ, WRITE], false),
        ("device.pair.requested", operator, &[PAIRING], true),
        ("exec.approval.requested", operator, &[APPROVALS], true),
        ("plugin.anything", operator, &[WRITE], true),
        ("plugin.anything", operator, &[READ], false),
        ("plugin.anything", node, &[], false),
        ("terminal.data", operator, &[WRITE], false),
    ];
    for (event, role, scopes, delivered) in cases {
        let gate = core_event_gate(event).unwrap_or_else(|| panic!("{event} has a gate"));
        assert_eq!(
            gate.admits(role, &granted(scopes)),
            delivered,
            "{event} to {role} with {scopes:?}"
        );
    }
    // An event Node does not know is dropped for everyone.
    assert_eq!(core_event_gate("demo.tick"), None);
    assert_eq!(core_event_gate("connect.challenge"), None);
    assert_eq!(
        EventGate::operators_with(PAIRING),
        Some(EventGate::Operators(&[PAIRING]))
    );
    assert_eq!(EventGate::operators_with("custom"), None);
}

#[test]
fn what_a_role_s_granted_scopes_allow_as_pairing_judges_it() {
    // (role, requested, allowed) → the first request not covered, as OSC:38-47 answers.
    type Case<'a> = (&'a str, &'a [&'a str], &'a [&'a str], Option<&'a str>);
    let cases: &[Case] = &[
        ("operator", &[READ], &[WRITE], None),
        ("operator", &[ADMIN], &[WRITE], Some(ADMIN)),
        ("operator", &[SESSIONS_READ], &[READ], None),
        ("operator", &[" operator.read "], &[" operator.read"], None),
        ("operator", &["", "  ", READ], &[READ], None),
        ("operator", &[WRITE, "", ADMIN], &[READ], Some(WRITE)),
        (
            "operator",
            &["node.camera"],
            &["node.camera"],
            Some("node.camera"),
        ),
        ("operator", &[], &[], None),
        ("node", &["node.camera"], &["node.camera"], None),
        (
            "node",
            &["node.camera"],
            &["node.screen"],
            Some("node.camera"),
        ),
        ("node", &[" node.camera "], &["node.camera"], None),
        ("node", &[""], &[], None),
        ("node", &[READ], &[READ], Some(READ)),
        ("node", &[READ], &[ADMIN], Some(READ)),
        ("node", &["nodes.x"], &["nodes.x"], Some("nodes.x")),
        (" node ", &["node.camera"], &["node.camera"], None),
    ];
    for (role, requested, allowed, missing) in cases {
        let (requested, allowed) = (granted(requested), granted(allowed));
        assert_eq!(
            missing_requested_scope(role, &requested, &allowed).map(str::trim),
            *missing,
            "{role} {requested:?} within {allowed:?}"
        );
        assert_eq!(
            role_scopes_allow(role, &requested, &allowed),
            missing.is_none()
        );
    }
}

#[test]
fn effective_scopes_list_each_scope_once_in_first_seen_order() {
    assert_eq!(
        unique(granted(&[WRITE, READ, WRITE, ADMIN, READ])),
        granted(&[WRITE, READ, ADMIN])
    );
    assert_eq!(unique(Vec::new()), Vec::<String>::new());
}
