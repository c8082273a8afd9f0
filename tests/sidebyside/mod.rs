//! Two runs of one real client compared: what each run showed (`Observed`), the table that
//! sets them side by side (`compare`), and what a run's frames say, read off the recording tap
//! (`common::tap`): who connected, how `connect` was answered, each method's answers, the closes.
//! Used next to `common` by `tests/real_clients.rs`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::tap::{Direction, Record, Seen, Tap};

/// What one client run showed. `agree` rows must be equal for both gateways; `both` rows too,
/// when both runs have them (a method's answers: a client that closes early leaves some
/// unanswered, at the mercy of timing); `info` rows are shown beside them.
#[derive(Default)]
pub struct Observed {
    pub agree: BTreeMap<String, Value>,
    pub both: BTreeMap<String, Value>,
    pub info: BTreeMap<String, Value>,
}

impl Observed {
    pub fn agree(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        self.agree.insert(key.into(), value.into());
    }

    pub fn both(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        self.both.insert(key.into(), value.into());
    }

    pub fn info(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        self.info.insert(key.into(), value.into());
    }
}

/// Prints the table for `client` and fails naming every `agree` row that differs.
pub fn compare(client: &str, node: &Observed, ours: &Observed) {
    let show = |v: Option<&Value>| v.map_or("(absent)".to_owned(), |v| v.to_string());
    let mut differ = Vec::new();
    let mut table = format!("\n== {client}: field | Node | ours\n");
    let keys = |a: &BTreeMap<String, Value>, b: &BTreeMap<String, Value>| {
        let mut keys: Vec<String> = a.keys().chain(b.keys()).cloned().collect();
        keys.sort();
        keys.dedup();
        keys
    };
    for key in keys(&node.agree, &ours.agree) {
        let (n, o) = (node.agree.get(&key), ours.agree.get(&key));
        let verdict = if n == o { "same" } else { "DIFFERS" };
        if n != o {
            differ.push(format!("{key}: Node {} / ours {}", show(n), show(o)));
        }
        table += &format!("{verdict:7} {key} | {} | {}\n", show(n), show(o));
    }
    for key in keys(&node.both, &ours.both) {
        let (n, o) = (node.both.get(&key), ours.both.get(&key));
        let verdict = match (n, o) {
            (Some(n), Some(o)) if n == o => "same",
            (Some(_), Some(_)) => {
                differ.push(format!("{key}: Node {} / ours {}", show(n), show(o)));
                "DIFFERS"
            }
            _ => "one run",
        };
        table += &format!("{verdict:7} {key} | {} | {}\n", show(n), show(o));
    }
    for key in keys(&node.info, &ours.info) {
        let (n, o) = (node.info.get(&key), ours.info.get(&key));
        table += &format!("info    {key} | {} | {}\n", show(n), show(o));
    }
    println!("{table}");
    assert!(
        differ.is_empty(),
        "{client}: ours answers differently from the Node gateway on {} field(s):\n  {}\n{table}",
        differ.len(),
        differ.join("\n  ")
    );
}

/// The records of each connection, in order.
pub fn by_connection(records: &[Record]) -> BTreeMap<usize, Vec<Record>> {
    let mut map: BTreeMap<usize, Vec<Record>> = BTreeMap::new();
    for record in records {
        map.entry(record.conn).or_default().push(record.clone());
    }
    map
}

/// The `connect` request sent on a connection, if any.
pub fn connect_request(conn: &[Record]) -> Option<Value> {
    conn.iter()
        .filter(|r| r.direction == Direction::Up)
        .filter_map(Record::json)
        .find(|m| m["type"] == "req" && m["method"] == "connect")
}

/// The answer to the request `id` on a connection, with when it passed.
pub fn answer(conn: &[Record], id: &Value) -> Option<(Instant, Value)> {
    conn.iter()
        .filter(|r| r.direction == Direction::Down)
        .filter_map(|r| r.json().map(|m| (r.at, m)))
        .find(|(_, m)| m["type"] == "res" && &m["id"] == id)
}

/// An answer in one line: `hello-ok`, `ok`, or `CODE: message (DETAILS_CODE)`.
pub fn summary(res: &Value) -> Value {
    if res["ok"] == true {
        return if res["payload"]["type"] == "hello-ok" {
            "hello-ok".into()
        } else {
            "ok".into()
        };
    }
    let error = &res["error"];
    let mut text = format!(
        "{}: {}",
        error["code"].as_str().unwrap_or("?"),
        error["message"].as_str().unwrap_or("?")
    );
    if let Some(code) = error["details"]["code"].as_str() {
        text += &format!(" ({code})");
    }
    text.into()
}

/// What `hello-ok.auth` granted: method, role, scopes, and whether a device token came.
pub fn hello_auth(hello: &Value) -> Value {
    let auth = &hello["payload"]["auth"];
    json!({
        "method": auth["method"],
        "role": auth["role"],
        "scopes": auth["scopes"],
        "deviceToken": auth["deviceToken"].is_string(),
        "issuedAtMs": auth["issuedAtMs"].is_u64(),
    })
}

/// Who a connection's client says it is: `<client.id>/<mode>`, plus its display name.
pub fn client_label(connect: &Value) -> String {
    let client = &connect["params"]["client"];
    let mut label = format!(
        "{}/{}",
        client["id"].as_str().unwrap_or("?"),
        client["mode"].as_str().unwrap_or("?")
    );
    if let Some(name) = client["displayName"].as_str() {
        label += &format!(" {name}");
    }
    label
}

/// The closes on a connection: `<who> <code> <reason>`.
pub fn closes(conn: &[Record]) -> Vec<String> {
    conn.iter()
        .filter_map(|r| match &r.seen {
            Seen::Close(code, reason) => Some(format!(
                "{} {} {reason}",
                if r.direction == Direction::Down {
                    "gateway"
                } else {
                    "client"
                },
                code.map_or("-".to_owned(), |c| c.to_string())
            )),
            _ => None,
        })
        .collect()
}

/// Adds, for every connection the tap saw: its client, the challenge's capabilities, the
/// connect answer, `hello-ok.auth`, the server's close, and every method's distinct answers
/// (`agree` rows when `answers_agree`, else `info`). Keys start with `prefix`.
pub fn exchanges(records: &[Record], observed: &mut Observed, prefix: &str, answers_agree: bool) {
    let mut methods: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut connects: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for conn in by_connection(records).values() {
        let Some(connect) = connect_request(conn) else {
            continue;
        };
        let label = client_label(&connect);
        let challenge = conn
            .iter()
            .filter_map(Record::json)
            .find(|m| m["event"] == "connect.challenge");
        if let Some(challenge) = challenge {
            observed.info(
                format!("{prefix}{label}: challenge capabilities"),
                challenge["payload"]["capabilities"].clone(),
            );
        }
        let result = match answer(conn, &connect["id"]) {
            Some((_, res)) if res["ok"] == true => {
                json!({"answer": "hello-ok", "auth": hello_auth(&res)})
            }
            Some((_, res)) => json!({"answer": summary(&res), "closes": closes(conn)}),
            None => json!({"answer": null, "closes": closes(conn)}),
        };
        let seen = connects.entry(label.clone()).or_default();
        if !seen.contains(&result) {
            seen.push(result);
        }
        for request in conn
            .iter()
            .filter(|r| r.direction == Direction::Up)
            .filter_map(Record::json)
            .filter(|m| m["type"] == "req" && m["method"] != "connect")
        {
            let method = request["method"].as_str().unwrap_or("?").to_owned();
            let seen = methods.entry(format!("{label} {method}")).or_default();
            // A request the client gave up on before its answer came is not an answer.
            if let Some((_, res)) = answer(conn, &request["id"]) {
                let got = summary(&res);
                if !seen.contains(&got) {
                    seen.push(got);
                }
            }
        }
    }
    for (label, results) in connects {
        observed.agree(format!("{prefix}{label}: connect"), results);
    }
    for (key, answers) in methods {
        let key = format!("{prefix}{key}");
        if answers.is_empty() {
            observed.info(key, "unanswered");
        } else if answers_agree {
            observed.both(key, answers);
        } else {
            observed.info(key, answers);
        }
    }
}

/// Waits up to `timeout` for the first connection whose `connect` was answered; returns the
/// answer and when it passed.
pub fn first_connect_answer(tap: &Tap, timeout: Duration) -> Option<(usize, Instant, Value)> {
    let deadline = Instant::now() + timeout;
    loop {
        for (id, conn) in by_connection(&tap.records()) {
            if let Some(connect) = connect_request(&conn)
                && let Some((at, res)) = answer(&conn, &connect["id"])
            {
                return Some((id, at, res));
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
