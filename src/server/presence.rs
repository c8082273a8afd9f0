//! Presence (SPEC §12.6): who is connected to this gateway and who was lately, as Node keeps it
//! (`system-presence-BhyW53Ym.mjs`): the gateway's own row, one row per non-ephemeral client,
//! kept after it disconnects until it has been quiet for five minutes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::server::{locality, scopes};

/// A row not written or touched for this long is dropped on the next read (SP:12).
pub(crate) const TTL: Duration = Duration::from_millis(300_000);
/// Rows kept, the gateway's own among them; the least recently written of the others go
/// first (SP:13, 185-189).
pub(crate) const MAX_ENTRIES: usize = 200;

/// A moment, as both clocks see it: `instant` orders freshness (immune to clock changes),
/// `ms` is the `ts` written into rows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct At {
    pub instant: Instant,
    pub ms: u64,
}

impl At {
    pub fn now() -> Self {
        Self {
            instant: Instant::now(),
            ms: crate::server::protocol::now_ms(),
        }
    }
}

/// What a connecting client says about itself that presence keeps.
#[derive(Debug, Clone)]
pub(crate) struct Arrival<'a> {
    pub conn_id: u64,
    /// The `client` object of `connect`.
    pub client: &'a Map<String, Value>,
    pub role: &'a str,
    /// The effective scopes.
    pub scopes: &'a [String],
    pub device_id: Option<&'a str>,
    /// The peer's address, or `None` when it is local (Node leaves `ip` out then).
    pub ip: Option<String>,
}

struct Row {
    entry: Map<String, Value>,
    fresh: Instant,
}

/// The gateway's presence rows, the `stateVersion.presence` counter, and what each open
/// connection is to presence.
pub(crate) struct PresenceStore {
    own: Map<String, Value>,
    rows: HashMap<String, Row>,
    version: u64,
    recipients: HashMap<u64, Recipient>,
    /// Each node's registered session: the connection that joined last under its node id
    /// (Node's node registry, `node-registry-zajLqj5_.mjs:341-408`).
    node_sessions: HashMap<String, u64>,
}

/// An authenticated connection as presence sees it.
#[derive(Debug, Clone)]
pub(crate) struct Recipient {
    /// Its row, when it is tracked.
    pub key: Option<String>,
    /// Whether it gets rows and `presence` events ([`readable_by`]).
    pub reads: bool,
    /// For role `node`: its node id ([`node_id`]), under which it is the node's session.
    pub node: Option<String>,
}

/// The id Node's node registry files a node-role connection under: its device id, else its
/// `client.id` (`node-registry-zajLqj5_.mjs:344`).
pub(crate) fn node_id(role: &str, device_id: Option<&str>, client_id: &str) -> Option<String> {
    (role == "node").then(|| device_id.unwrap_or(client_id).to_owned())
}

/// The `ip` a client's row shows: none for a loopback peer, IPv4-mapped loopback included
/// (Node leaves out a direct-local client's address and any loopback one, MH:3199, 3321);
/// else the peer's address, an IPv4-mapped one written as IPv4.
pub(crate) fn reported_ip(peer: IpAddr) -> Option<String> {
    (!locality::is_loopback_ip(peer)).then(|| peer.to_canonical().to_string())
}

/// Whether a client is an ephemeral control-plane connection that presence does not track:
/// `mode` `cli`, `backend` or `probe` (`message-channel-DDcHHhpX.mjs:19-22`).
pub(crate) fn is_ephemeral(mode: &str) -> bool {
    matches!(
        mode.trim().to_ascii_lowercase().as_str(),
        "cli" | "backend" | "probe"
    )
}

/// Whether a recipient may see presence rows (PP:47-66): an operator holding `operator.read`.
/// Everyone else gets `[]` from `system-presence` and `hello-ok`, and no `presence` event.
pub(crate) fn readable_by(role: &str, scopes: &[String]) -> bool {
    role == "operator" && scopes::scope_satisfied(scopes::READ, scopes)
}

/// The row key of a tracked client (MH:2920-2923): a node by its device (or instance), any other
/// client by its connection; lowercase. `None` for an ephemeral client.
pub(crate) fn key_of(arrival: &Arrival<'_>) -> Option<String> {
    let text = |name: &str| arrival.client.get(name).and_then(Value::as_str);
    if is_ephemeral(text("mode").unwrap_or("")) {
        return None;
    }
    let conn = arrival.conn_id.to_string();
    let key = if arrival.role == "node" {
        arrival
            .device_id
            .or(text("instanceId"))
            .unwrap_or(conn.as_str())
    } else {
        conn.as_str()
    };
    Some(key.to_lowercase())
}

impl PresenceStore {
    /// A store holding the gateway's own row (SP:40-73), which never expires.
    pub fn new(own: Map<String, Value>) -> Self {
        Self {
            own,
            rows: HashMap::new(),
            version: 1,
            recipients: HashMap::new(),
            node_sessions: HashMap::new(),
        }
    }

    /// Remembers an authenticated connection until [`leave`](Self::leave); a node's becomes
    /// its node's session, replacing an older one.
    pub fn join(&mut self, conn_id: u64, recipient: Recipient) {
        if let Some(node) = &recipient.node {
            self.node_sessions.insert(node.clone(), conn_id);
        }
        self.recipients.insert(conn_id, recipient);
    }

    /// Forgets a connection and marks its row `disconnect` (WSC:421-431); `true` when a row
    /// changed. A node's connection marks it only while it is the node's session: one that
    /// a newer connection of the same node replaced leaves the row alone
    /// (`node-registry-zajLqj5_.mjs:424-447` answers `null` for it).
    pub fn leave(&mut self, conn_id: u64, at: At) -> bool {
        let Some(recipient) = self.recipients.remove(&conn_id) else {
            return false;
        };
        let session = match &recipient.node {
            None => true,
            Some(node) if self.node_sessions.get(node) == Some(&conn_id) => {
                self.node_sessions.remove(node);
                true
            }
            Some(_) => false,
        };
        match recipient.key {
            Some(key) if session => {
                self.disconnect(&key, at);
                true
            }
            _ => false,
        }
    }

    /// The connection's row key, when it is tracked.
    pub fn key_of_conn(&self, conn_id: u64) -> Option<&str> {
        self.recipients.get(&conn_id)?.key.as_deref()
    }

    /// Whether the connection gets `presence` events.
    pub fn reads(&self, conn_id: u64) -> bool {
        self.recipients.get(&conn_id).is_some_and(|r| r.reads)
    }

    /// `stateVersion.presence`: 1 before any change (HS:20).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Counts one change to be broadcast; returns the new version (PE:6-16).
    pub fn bump(&mut self) -> u64 {
        self.version += 1;
        self.version
    }

    /// Upserts the row of a connecting client as Node does (MH:3195-3215; SP:155-168) and
    /// returns its key, or `None` for an ephemeral client.
    pub fn connect(&mut self, arrival: &Arrival<'_>, at: At) -> Option<String> {
        let key = key_of(arrival)?;
        let client = arrival.client;
        let text = |name: &str| {
            client
                .get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        let mut fields = Map::new();
        let mut put = |name: &str, value: Option<&str>| {
            if let Some(value) = value {
                fields.insert(name.to_owned(), Value::from(value));
            }
        };
        put("host", text("displayName").or(text("id")));
        put("clientId", text("id"));
        put("ip", arrival.ip.as_deref());
        put("version", text("version"));
        put("platform", text("platform"));
        put("deviceFamily", text("deviceFamily"));
        put("modelIdentifier", text("modelIdentifier"));
        put("timeZone", text("timeZone"));
        put("mode", text("mode"));
        put("deviceId", arrival.device_id);
        let instance = if arrival.role == "node" {
            arrival.device_id.or(text("instanceId"))
        } else {
            text("instanceId")
        };
        put("instanceId", instance);
        put("reason", Some("connect"));
        fields.insert("roles".into(), json!([arrival.role]));
        fields.insert("scopes".into(), json!(arrival.scopes));
        self.upsert(&key, fields, at);
        Some(key)
    }

    /// The row of a client that disconnected stays, marked so (WSC:421-431).
    fn disconnect(&mut self, key: &str, at: At) {
        let mut fields = Map::new();
        fields.insert("reason".into(), Value::from("disconnect"));
        self.upsert(key, fields, at);
        if let Some(row) = self.rows.get_mut(key) {
            row.entry.remove("watchedSessions");
        }
    }

    /// A pong from the client: its row is fresh again (WSC:1218-1221). An expired row is not
    /// recreated.
    pub fn touch(&mut self, key: &str, at: At) {
        if let Some(row) = self.rows.get_mut(key) {
            row.entry.insert("ts".into(), Value::from(at.ms));
            row.fresh = at.instant;
        }
    }

    /// Every row, newest `ts` first, after dropping expired rows and those past the cap
    /// (SP:181-191); the gateway's own row is refreshed and always there.
    pub fn list(&mut self, at: At) -> Vec<Value> {
        self.own.insert("ts".into(), Value::from(at.ms));
        self.rows
            .retain(|_, row| at.instant.saturating_duration_since(row.fresh) <= TTL);
        // The own row counts toward the cap but is never dropped (SP:185-189).
        let others = MAX_ENTRIES - 1;
        if self.rows.len() > others {
            let mut by_age: Vec<(Instant, String)> = self
                .rows
                .iter()
                .map(|(key, row)| (row.fresh, key.clone()))
                .collect();
            by_age.sort();
            for (_, key) in by_age.into_iter().take(self.rows.len() - others) {
                self.rows.remove(&key);
            }
        }
        let mut list: Vec<Value> = std::iter::once(&self.own)
            .chain(self.rows.values().map(|row| &row.entry))
            .map(|entry| Value::Object(entry.clone()))
            .collect();
        list.sort_by_key(|entry| std::cmp::Reverse(entry["ts"].as_u64().unwrap_or(0)));
        list
    }

    /// Node's `upsertPresence`: merges `fields` over the existing row, unions `roles` and
    /// `scopes`, stamps `ts`, and keeps a `text` (`Node: <host> · mode <mode>` when none).
    fn upsert(&mut self, key: &str, fields: Map<String, Value>, at: At) {
        let mut entry = self
            .rows
            .remove(key)
            .map(|row| row.entry)
            .unwrap_or_default();
        for list in ["roles", "scopes"] {
            let mut merged: Vec<Value> = Vec::new();
            let old = entry.get(list).and_then(Value::as_array).cloned();
            let new = fields.get(list).and_then(Value::as_array).cloned();
            for item in old.into_iter().chain(new).flatten() {
                if item.as_str().is_some_and(|s| !s.trim().is_empty()) && !merged.contains(&item) {
                    merged.push(item);
                }
            }
            entry.remove(list);
            if !merged.is_empty() {
                entry.insert(list.to_owned(), Value::Array(merged));
            }
        }
        for (name, value) in fields {
            if name != "roles" && name != "scopes" {
                entry.insert(name, value);
            }
        }
        entry.insert("ts".into(), Value::from(at.ms));
        if entry.get("text").is_none_or(|t| t.as_str() == Some("")) {
            let field = |name: &str| {
                entry
                    .get(name)
                    .and_then(Value::as_str)
                    .unwrap_or("unknown")
                    .to_owned()
            };
            let text = format!("Node: {} · mode {}", field("host"), field("mode"));
            entry.insert("text".into(), Value::from(text));
        }
        self.rows.insert(
            key.to_owned(),
            Row {
                entry,
                fresh: at.instant,
            },
        );
    }
}

/// The gateway's own row (SP:40-73): host name, primary LAN IPv4 (else the host name), the
/// version it reports, platform, device family and machine model as Node names them, a
/// per-gateway instance id.
pub(crate) fn own_entry(version: &str, instance_id: &str) -> Map<String, Value> {
    let host = hostname();
    let ip = primary_ipv4().unwrap_or_else(|| host.clone());
    let (platform, family) = platform();
    let text = format!("Gateway: {host} ({ip}) · app {version} · mode gateway · reason self");
    let mut own = Map::new();
    own.insert("host".into(), host.into());
    own.insert("ip".into(), ip.into());
    own.insert("version".into(), version.into());
    own.insert("platform".into(), platform.into());
    own.insert("deviceFamily".into(), family.into());
    if let Some(model) = model_identifier() {
        own.insert("modelIdentifier".into(), model.into());
    }
    own.insert("mode".into(), "gateway".into());
    own.insert("reason".into(), "self".into());
    own.insert("instanceId".into(), instance_id.into());
    own.insert("text".into(), text.into());
    own.insert("ts".into(), crate::server::protocol::now_ms().into());
    own
}

/// The machine's model as Node reads it (`machine-model-BiU9ZpvZ.mjs:9-29`): on macOS
/// `hw.model` (`sysctl -n hw.model`); on Linux the DMI product name, else the device tree's
/// model; elsewhere none. Read once per process.
fn model_identifier() -> Option<String> {
    static MODEL: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    MODEL.get_or_init(read_model_identifier).clone()
}

#[cfg(target_os = "macos")]
fn read_model_identifier() -> Option<String> {
    let model = sysctl_string::<256>(c"hw.model")?.trim().to_owned();
    (!model.is_empty()).then_some(model)
}

/// macOS: the string sysctl `name` (up to its first NUL), read into `N` bytes; `None` when
/// the call fails (including a value longer than `N`).
#[cfg(target_os = "macos")]
fn sysctl_string<const N: usize>(name: &std::ffi::CStr) -> Option<String> {
    let mut buf = [0u8; N];
    let mut len = buf.len();
    // SAFETY: the name is NUL-terminated; `buf` is writable for `len` bytes, and `len` is
    // updated to the bytes written.
    let rc = unsafe {
        libc::sysctlbyname(
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    if rc != 0 {
        return None;
    }
    let text = &buf[..len.min(buf.len())];
    let end = text.iter().position(|b| *b == 0).unwrap_or(text.len());
    Some(String::from_utf8_lossy(&text[..end]).into_owned())
}

#[cfg(target_os = "linux")]
fn read_model_identifier() -> Option<String> {
    [
        "/sys/devices/virtual/dmi/id/product_name",
        "/proc/device-tree/model",
    ]
    .iter()
    .find_map(|file| linux_model(&std::fs::read(file).ok()?))
}

#[cfg(not(any(target_os = "macos", target_os = "linux")))]
fn read_model_identifier() -> Option<String> {
    None
}

/// A Linux model file's text as Node keeps it: trimmed, trailing NULs (the device tree's)
/// removed, none when blank, at most 64 UTF-16 units without splitting a pair.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn linux_model(raw: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let model = text.trim().trim_end_matches('\0').trim();
    if model.is_empty() {
        return None;
    }
    let mut units = 0;
    let kept = model
        .chars()
        .take_while(|c| {
            units += c.len_utf16();
            units <= 64
        })
        .collect();
    Some(kept)
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is writable for its whole length; gethostname NUL-terminates within it or
    // fails.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The address a route to the outside would leave from (no packet is sent: a UDP `connect`
/// only picks the route), when it is a private or otherwise non-loopback IPv4. Node picks the
/// first non-internal IPv4 of the interfaces; this asks the kernel for the one it would use.
fn primary_ipv4() -> Option<String> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    match socket.local_addr().ok()?.ip() {
        std::net::IpAddr::V4(ip) if !ip.is_loopback() && !ip.is_unspecified() => {
            Some(ip.to_string())
        }
        _ => None,
    }
}

/// `platform` and `deviceFamily` as Node writes them: `macos <version>` / `Mac`, `linux
/// <release>` / `Linux`, `<os> <release>` / `<os>`.
fn platform() -> (String, String) {
    let release = uname_release();
    match std::env::consts::OS {
        "macos" => (format!("macos {}", macos_version()), "Mac".into()),
        "linux" => (format!("linux {release}"), "Linux".into()),
        os => (format!("{os} {release}"), os.into()),
    }
}

fn uname_release() -> String {
    // SAFETY: an all-zero utsname is valid; uname fills it or fails.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a valid, writable utsname.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return String::new();
    }
    // SAFETY: uname NUL-terminates `release` within the struct.
    let release = unsafe { std::ffi::CStr::from_ptr(uts.release.as_ptr()) };
    release.to_string_lossy().into_owned()
}

/// The macOS product version (`kern.osproductversion`, what `sw_vers` prints), else the
/// Darwin release.
#[cfg(target_os = "macos")]
fn macos_version() -> String {
    sysctl_string::<64>(c"kern.osproductversion").unwrap_or_else(uname_release)
}

#[cfg(not(target_os = "macos"))]
fn macos_version() -> String {
    uname_release()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> PresenceStore {
        PresenceStore::new(own_entry("9.9.9", "self-id"))
    }

    fn client(mode: &str) -> Map<String, Value> {
        json!({"id": "openclaw-macos", "version": "2026.9.6", "platform": "macos 15",
               "mode": mode, "displayName": "Ada's Mac", "instanceId": "Inst-1"})
        .as_object()
        .unwrap()
        .clone()
    }

    fn arrival<'a>(
        conn_id: u64,
        client: &'a Map<String, Value>,
        role: &'a str,
        scopes: &'a [String],
    ) -> Arrival<'a> {
        Arrival {
            conn_id,
            client,
            role,
            scopes,
            device_id: None,
            ip: None,
        }
    }

    fn at(base: Instant, ms: u64) -> At {
        At {
            instant: base + Duration::from_millis(ms),
            ms: 1_800_000_000_000 + ms,
        }
    }

    #[test]
    fn who_is_tracked_and_under_which_key() {
        let scopes = vec!["operator.read".to_owned()];
        let cases: &[(&str, &str, Option<&str>, Option<&str>)] = &[
            // mode, role, device id → key
            ("ui", "operator", None, Some("7")),
            ("webchat", "operator", Some("DEV"), Some("7")),
            ("node", "node", Some("ABC"), Some("abc")),
            ("node", "node", None, Some("inst-1")),
            ("cli", "operator", None, None),
            ("CLI", "operator", None, None),
            ("probe", "operator", Some("dev"), None),
            ("backend", "node", Some("dev"), None),
        ];
        for (mode, role, device, key) in cases {
            let client = client(mode);
            let mut arrival = arrival(7, &client, role, &scopes);
            arrival.device_id = *device;
            assert_eq!(
                key_of(&arrival).as_deref(),
                *key,
                "{mode} {role} {device:?}"
            );
        }
    }

    #[test]
    fn projection_shows_rows_only_to_operators_that_read() {
        let cases: &[(&str, &[&str], bool)] = &[
            ("operator", &["operator.read"], true),
            ("operator", &["operator.write"], true),
            ("operator", &["operator.admin"], true),
            ("operator", &["operator.pairing"], false),
            ("operator", &[], false),
            ("node", &["operator.admin"], false),
            ("node", &[], false),
        ];
        for (role, scopes, readable) in cases {
            let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
            assert_eq!(readable_by(role, &scopes), *readable, "{role} {scopes:?}");
        }
    }

    #[test]
    fn a_connect_row_is_built_as_node_builds_it_and_stays_after_disconnect() {
        let base = Instant::now();
        let mut store = store();
        assert_eq!(store.version(), 1);
        let client = client("ui");
        let scopes = vec!["operator.read".to_owned()];
        let mut arrival = arrival(3, &client, "operator", &scopes);
        arrival.ip = Some("192.0.2.7".into());
        let key = store.connect(&arrival, at(base, 10));
        store.join(
            3,
            Recipient {
                key,
                reads: true,
                node: None,
            },
        );
        let list = store.list(at(base, 20));
        assert_eq!(list.len(), 2);
        let own = &list[0];
        assert_eq!(
            (&own["mode"], &own["reason"]),
            (&json!("gateway"), &json!("self"))
        );
        assert_eq!(own["ts"], 1_800_000_000_020u64);
        assert!(own["text"].as_str().unwrap().starts_with("Gateway: "));
        assert_eq!(
            list[1],
            json!({"host": "Ada's Mac", "clientId": "openclaw-macos", "ip": "192.0.2.7",
                   "version": "2026.9.6", "platform": "macos 15", "mode": "ui",
                   "instanceId": "Inst-1", "reason": "connect", "roles": ["operator"],
                   "scopes": ["operator.read"], "ts": 1_800_000_000_010u64,
                   "text": "Node: Ada's Mac · mode ui"})
        );
        assert!(store.leave(3, at(base, 30)));
        assert!(!store.leave(3, at(base, 31)), "left once");
        let row = store.list(at(base, 40))[1].clone();
        assert_eq!(
            (&row["reason"], &row["ts"]),
            (&json!("disconnect"), &json!(1_800_000_000_030u64))
        );
        assert_eq!(row["roles"], json!(["operator"]));
        assert_eq!(store.bump(), 2);
    }

    #[test]
    fn roles_and_scopes_accumulate_across_connects() {
        let base = Instant::now();
        let mut store = store();
        let client = client("node");
        let (read, none) = (vec!["operator.read".to_owned()], Vec::new());
        let mut first = arrival(1, &client, "node", &none);
        first.device_id = Some("dev1");
        store.connect(&first, at(base, 1));
        let mut second = arrival(2, &client, "node", &read);
        second.device_id = Some("dev1");
        store.connect(&second, at(base, 2));
        let list = store.list(at(base, 3));
        assert_eq!(list.len(), 2, "one device, one row: {list:?}");
        assert_eq!(list[1]["roles"], json!(["node"]));
        assert_eq!(list[1]["scopes"], json!(["operator.read"]));
        assert_eq!(list[1]["instanceId"], "dev1");
    }

    #[test]
    fn rows_expire_after_the_ttl_unless_touched() {
        let base = Instant::now();
        let mut store = store();
        let (a, b) = (client("ui"), client("webchat"));
        let none = Vec::new();
        let ka = store
            .connect(&arrival(1, &a, "operator", &none), at(base, 0))
            .unwrap();
        store.connect(&arrival(2, &b, "operator", &none), at(base, 0));
        store.touch(&ka, at(base, 200_000));
        assert_eq!(
            store.list(at(base, 300_000)).len(),
            3,
            "exactly the TTL is kept"
        );
        let list = store.list(at(base, 300_001));
        assert_eq!(list.len(), 2, "the untouched row expired: {list:?}");
        assert_eq!(list[1]["mode"], "ui");
        assert_eq!(list[1]["ts"], 1_800_000_200_000u64);
        store.touch("2", at(base, 300_002));
        assert_eq!(
            store.list(at(base, 500_001)).len(),
            1,
            "expired rows are not recreated"
        );
        assert_eq!(store.list(at(base, 10_000_000))[0]["reason"], "self");
    }

    /// Node marks a node's row `disconnect` only when its registered session closes: an older
    /// connection of the same device that a newer one replaced leaves the row as it is.
    #[test]
    fn a_node_s_row_is_marked_disconnect_only_by_its_registered_session() {
        let base = Instant::now();
        let mut store = store();
        let node_client = client("node");
        let none = Vec::new();
        for conn in [1, 2] {
            let mut node = arrival(conn, &node_client, "node", &none);
            node.device_id = Some("dev1");
            let key = store.connect(&node, at(base, conn));
            let node = node_id("node", Some("dev1"), "node-host");
            store.join(
                conn,
                Recipient {
                    key,
                    reads: false,
                    node,
                },
            );
        }
        let reason = |store: &mut PresenceStore, ms| store.list(at(base, ms))[1]["reason"].clone();
        assert!(!store.leave(1, at(base, 10)), "the replaced connection");
        assert_eq!(reason(&mut store, 11), "connect");
        assert!(store.leave(2, at(base, 20)), "the node's session");
        assert_eq!(reason(&mut store, 21), "disconnect");

        // Any other client's row is marked by its own connection.
        let ui = client("ui");
        let key = store.connect(&arrival(3, &ui, "operator", &none), at(base, 30));
        store.join(
            3,
            Recipient {
                key,
                reads: false,
                node: node_id("operator", None, "openclaw-macos"),
            },
        );
        assert!(store.leave(3, at(base, 40)));
    }

    #[test]
    fn node_ids_and_reported_addresses() {
        assert_eq!(
            node_id("node", Some("dev"), "node-host").as_deref(),
            Some("dev")
        );
        assert_eq!(
            node_id("node", None, "node-host").as_deref(),
            Some("node-host")
        );
        assert_eq!(node_id("operator", Some("dev"), "cli"), None);
        let cases: &[(&str, Option<&str>)] = &[
            ("127.0.0.1", None),
            ("127.8.9.10", None),
            ("::1", None),
            ("::ffff:127.0.0.1", None),
            ("192.0.2.7", Some("192.0.2.7")),
            ("::ffff:192.0.2.7", Some("192.0.2.7")),
            ("2001:db8::1", Some("2001:db8::1")),
        ];
        for (peer, shown) in cases {
            let peer: IpAddr = peer.parse().unwrap();
            assert_eq!(reported_ip(peer).as_deref(), *shown, "{peer}");
        }
    }

    #[test]
    fn a_linux_model_file_is_read_as_node_reads_it() {
        let long = "M".repeat(70);
        let emoji = format!("{}😀x", "a".repeat(63));
        let cases: &[(&[u8], Option<&str>)] = &[
            (
                b"Standard PC (Q35 + ICH9, 2009)\n",
                Some("Standard PC (Q35 + ICH9, 2009)"),
            ),
            (
                b"Raspberry Pi 4 Model B Rev 1.4\0",
                Some("Raspberry Pi 4 Model B Rev 1.4"),
            ),
            (b"  \n", None),
            (b"\0\0", None),
            (long.as_bytes(), Some(&long[..64])),
            // 63 units, then a pair that would make 65: cut before it.
            (emoji.as_bytes(), Some(&emoji[..63])),
        ];
        for (raw, model) in cases {
            assert_eq!(linux_model(raw).as_deref(), *model, "{raw:?}");
        }
        let own = own_entry("1", "id");
        let keys: Vec<&str> = own.keys().map(String::as_str).collect();
        if own.contains_key("modelIdentifier") {
            let at = keys.iter().position(|k| *k == "modelIdentifier").unwrap();
            assert_eq!(keys[at - 1], "deviceFamily", "Node's field order: {keys:?}");
        }
    }

    #[test]
    fn at_most_two_hundred_rows_the_oldest_dropped_newest_first() {
        let base = Instant::now();
        let mut store = store();
        let client = client("ui");
        let none = Vec::new();
        for conn in 0..(MAX_ENTRIES as u64 + 5) {
            store.connect(&arrival(conn, &client, "operator", &none), at(base, conn));
        }
        let list = store.list(at(base, 1_000));
        assert_eq!(list.len(), MAX_ENTRIES, "the own row counts toward the cap");
        assert_eq!(list[0]["reason"], "self");
        let ts: Vec<u64> = list[1..]
            .iter()
            .map(|e| e["ts"].as_u64().unwrap())
            .collect();
        assert!(ts.windows(2).all(|w| w[0] > w[1]), "newest first");
        assert_eq!(
            *ts.last().unwrap(),
            1_800_000_000_006,
            "the six oldest dropped"
        );
    }
}
