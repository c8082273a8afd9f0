//! The lock file format shared with OpenClaw's Node gateway (SPEC §3).

use std::time::SystemTime;

use serde_json::Value;

use super::host::HostIdentity;

/// Files larger than this are judged to carry no payload.
pub const MAX_LOCK_FILE_BYTES: usize = 1 << 20;

/// What a lock file says about its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockPayload {
    /// The owner's pid.
    pub pid: u32,
    /// Random UUID v4, the same in both files of one acquisition. Absent in older files.
    pub owner_id: Option<String>,
    /// ISO-8601 UTC with milliseconds, as written.
    pub created_at: Option<String>,
    /// The config file the owner serves (the config lock's name hashes it).
    pub config_path: Option<String>,
    /// The owner's state dir.
    pub state_dir: Option<String>,
    /// The port the owner listens on, once it is bound.
    pub port: Option<u16>,
    /// Linux: clock ticks since boot; macOS: seconds since the epoch (SPEC §4).
    pub start_time: Option<u64>,
    /// The host the owner runs on (`hostname`, `bootId`, `machineId`, `pidNs`: ours, after SPEC §3's
    /// fields). Node drops them: its `LockPayloadSchema` is a zod `object()`, which strips
    /// unknown keys (`dist/gateway-lock-CYjRlApN.mjs:25-41`). Empty in a file that records none.
    pub host: HostIdentity,
}

impl LockPayload {
    /// Renders the file: pretty JSON in SPEC order, `\n`, the ownership token line, `\n`.
    pub fn render(&self, token: &[u8; 16]) -> Vec<u8> {
        /// The fields in the order OpenClaw writes them; absent ones are left out.
        #[derive(serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Fields<'a> {
            pid: u32,
            #[serde(skip_serializing_if = "Option::is_none")]
            owner_id: Option<&'a str>,
            cron_owner_projection: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            created_at: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            config_path: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            state_dir: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            port: Option<u16>,
            #[serde(skip_serializing_if = "Option::is_none")]
            start_time: Option<u64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            hostname: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            boot_id: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            machine_id: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            pid_ns: Option<&'a str>,
        }
        let fields = Fields {
            pid: self.pid,
            owner_id: self.owner_id.as_deref(),
            cron_owner_projection: "dynamic-default-v1",
            created_at: self.created_at.as_deref(),
            config_path: self.config_path.as_deref(),
            state_dir: self.state_dir.as_deref(),
            port: self.port,
            start_time: self.start_time,
            hostname: self.host.hostname.as_deref(),
            boot_id: self.host.boot_id.as_deref(),
            machine_id: self.host.machine_id.as_deref(),
            pid_ns: self.host.pid_ns.as_deref(),
        };
        let mut out = Vec::with_capacity(512);
        serde_json::to_writer_pretty(&mut out, &fields)
            .expect("strings and numbers always serialize");
        out.push(b'\n');
        out.extend_from_slice(&token_line(token));
        out.push(b'\n');
        out
    }

    /// Parses a lock file written by either implementation. `None` means "no payload": empty,
    /// too large, not JSON, or no positive integer `pid`.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        if bytes.len() > MAX_LOCK_FILE_BYTES {
            return None;
        }
        let Value::Object(object) = serde_json::from_slice::<Value>(bytes).ok()? else {
            return None;
        };
        let pid = object
            .get("pid")?
            .as_u64()
            .filter(|pid| (1..=i32::MAX as u64).contains(pid))? as u32;
        let text = |name: &str| object.get(name)?.as_str().map(str::to_owned);
        // Trimmed, empty as absent: the same cleaning as our own host's values get.
        let host_text = |name: &str| {
            let value = object.get(name)?.as_str()?.trim();
            (!value.is_empty()).then(|| value.to_owned())
        };
        Some(Self {
            pid,
            owner_id: text("ownerId"),
            created_at: text("createdAt"),
            config_path: text("configPath"),
            state_dir: text("stateDir"),
            port: object
                .get("port")
                .and_then(Value::as_u64)
                .and_then(|port| u16::try_from(port).ok())
                .filter(|port| *port != 0),
            start_time: object.get("startTime").and_then(number_as_u64),
            host: HostIdentity {
                boot_id: host_text("bootId"),
                machine_id: host_text("machineId"),
                hostname: host_text("hostname"),
                pid_ns: host_text("pidNs"),
                boot_started: None,
            },
        })
    }

    /// When the file says it was created, if it says so in a form we can read.
    pub fn created_at_time(&self) -> Option<SystemTime> {
        humantime::parse_rfc3339_weak(self.created_at.as_deref()?).ok()
    }
}

/// `createdAt` for now: `2026-11-21T00:36:45.087Z`.
pub fn timestamp_now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// The reclaim guard's contents: the compact form
/// `{"pid":N,"createdAt":"…","bootId":"…","machineId":"…","pidNs":"…"}` and `\n`, so a reclaimer
/// of either implementation can tell whether the guard's owner died (and ours, where its pid
/// means something: this boot, an earlier boot of this machine, which PID namespace).
pub fn guard_contents(pid: u32) -> Vec<u8> {
    guard_contents_at(pid, &timestamp_now(), HostIdentity::this())
}

fn guard_contents_at(pid: u32, created_at: &str, host: &HostIdentity) -> Vec<u8> {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Guard<'a> {
        pid: u32,
        created_at: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        boot_id: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        machine_id: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pid_ns: Option<&'a str>,
    }
    let mut out = serde_json::to_vec(&Guard {
        pid,
        created_at,
        boot_id: host.boot_id.as_deref(),
        machine_id: host.machine_id.as_deref(),
        pid_ns: host.pid_ns.as_deref(),
    })
    .expect("a number and a string always serialize");
    out.push(b'\n');
    out
}

/// 8 tabs, then one character per bit of the token: tab for 1, space for 0.
fn token_line(token: &[u8; 16]) -> Vec<u8> {
    let mut line = vec![b'\t'; 8];
    line.extend(
        token
            .iter()
            .flat_map(|byte| (0..8).rev().map(move |bit| (byte >> bit) & 1))
            .map(|bit| if bit == 1 { b'\t' } else { b' ' }),
    );
    line
}

fn number_as_u64(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0 && f.fract() == 0.0)
            .map(|f| f as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Milliseconds since the Unix epoch.
    fn unix_millis(time: SystemTime) -> u64 {
        time.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_millis() as u64
    }

    const NODE_FILE: &str = "{\n  \"pid\": 19915,\n  \"ownerId\": \"8a8c910f-4aa7-4540-ae8c-043ba516014d\",\n  \"cronOwnerProjection\": \"dynamic-default-v1\",\n  \"createdAt\": \"2026-11-21T00:36:45.087Z\",\n  \"configPath\": \"/home/u/.openclaw/openclaw.json\",\n  \"stateDir\": \"/home/u/.openclaw\",\n  \"port\": 28789,\n  \"startTime\": 61695\n}\n\t\t\t\t\t\t\t\t \t  \t \t  \t \t  \t \t  \t \t  \t \t  \t \t  \t \t  \t \t  \t \t  \t \t  \t \t  \t \t  \t \t  \t \t  \t \t  \t \t  \t \t  \t \t  \t \t  \t \t  \t \t  \t \t  \t \t  \t \t  \t \t \n";

    #[test]
    fn reads_a_node_written_file() {
        let payload = LockPayload::parse(NODE_FILE.as_bytes()).unwrap();
        assert_eq!(payload.pid, 19915);
        assert_eq!(
            payload.owner_id.as_deref(),
            Some("8a8c910f-4aa7-4540-ae8c-043ba516014d")
        );
        assert_eq!(payload.port, Some(28789));
        assert_eq!(payload.start_time, Some(61695));
        assert_eq!(
            payload.config_path.as_deref(),
            Some("/home/u/.openclaw/openclaw.json")
        );
        assert_eq!(
            unix_millis(payload.created_at_time().unwrap()),
            1_795_221_405_087
        );
    }

    #[test]
    fn round_trips_in_spec_order() {
        let payload = LockPayload::parse(NODE_FILE.as_bytes()).unwrap();
        let mut token = [0u8; 16];
        token[0] = 0b1010_0000;
        let rendered = payload.render(&token);
        let text = String::from_utf8(rendered.clone()).unwrap();
        let (json, token_line) = text.trim_end_matches('\n').rsplit_once('\n').unwrap();
        assert_eq!(json, NODE_FILE.split("\n\t").next().unwrap());
        assert_eq!(token_line.len(), 8 + 128);
        assert!(token_line.starts_with("\t\t\t\t\t\t\t\t\t \t "));
        assert!(token_line[11..].bytes().all(|b| b == b' '));
        assert_eq!(LockPayload::parse(&rendered), Some(payload));
    }

    #[test]
    fn a_node_file_records_no_host() {
        let payload = LockPayload::parse(NODE_FILE.as_bytes()).unwrap();
        assert_eq!(payload.host, HostIdentity::default());
    }

    #[test]
    fn the_host_follows_spec_fields_and_round_trips() {
        let mut payload = LockPayload::parse(NODE_FILE.as_bytes()).unwrap();
        payload.host = HostIdentity {
            boot_id: Some("0b7e5c1a-1111-4222-8333-444455556666".into()),
            machine_id: Some("4c4c4544004d3510".into()),
            hostname: Some("host-a".into()),
            pid_ns: Some("4:4026531836".into()),
            boot_started: None,
        };
        let rendered = payload.render(&[0; 16]);
        let text = String::from_utf8(rendered.clone()).unwrap();
        let spec_part = NODE_FILE.split("\n}\n").next().unwrap();
        let json = text.split("\n}\n").next().unwrap();
        assert_eq!(
            json,
            format!(
                "{spec_part},\n  \"hostname\": \"host-a\",\n  \"bootId\": \"0b7e5c1a-1111-4222-8333-444455556666\",\n  \"machineId\": \"4c4c4544004d3510\",\n  \"pidNs\": \"4:4026531836\""
            )
        );
        assert_eq!(LockPayload::parse(&rendered), Some(payload));
    }

    #[test]
    fn host_values_are_trimmed_and_blank_is_absent() {
        let payload =
            LockPayload::parse(br#"{"pid":7,"bootId":" b1\n","machineId":"  ","hostname":7}"#)
                .unwrap();
        assert_eq!(payload.host.boot_id.as_deref(), Some("b1"));
        assert_eq!(payload.host.machine_id, None);
        assert_eq!(payload.host.hostname, None);
    }

    #[test]
    fn reclaim_guard_is_the_compact_form() {
        let guard = guard_contents_at(4242, "2026-11-21T00:36:45.087Z", &HostIdentity::default());
        assert_eq!(
            guard,
            b"{\"pid\":4242,\"createdAt\":\"2026-11-21T00:36:45.087Z\"}\n"
        );
        assert_eq!(LockPayload::parse(&guard).map(|p| p.pid), Some(4242));
        let host = HostIdentity {
            boot_id: Some("b-1".into()),
            machine_id: Some("m-1".into()),
            hostname: Some("not recorded".into()),
            pid_ns: Some("4:7".into()),
            boot_started: None,
        };
        let guard = guard_contents_at(4242, "2026-11-21T00:36:45.087Z", &host);
        assert_eq!(
            guard,
            b"{\"pid\":4242,\"createdAt\":\"2026-11-21T00:36:45.087Z\",\"bootId\":\"b-1\",\"machineId\":\"m-1\",\"pidNs\":\"4:7\"}\n"
        );
        let parsed = LockPayload::parse(&guard).unwrap();
        assert_eq!(parsed.host.boot_id.as_deref(), Some("b-1"));
        assert_eq!(parsed.host.machine_id.as_deref(), Some("m-1"));
        assert_eq!(parsed.host.pid_ns.as_deref(), Some("4:7"));
    }

    #[test]
    fn reads_the_older_compact_form() {
        let payload = LockPayload::parse(
            br#"{"pid":77,"createdAt":"2025-01-01T00:00:00.000Z","configPath":"/c.json","extra":[1]}"#,
        )
        .unwrap();
        assert_eq!(payload.pid, 77);
        assert_eq!(payload.start_time, None);
        assert_eq!(payload.owner_id, None);
    }

    #[test]
    fn no_payload_cases() {
        let big = format!(
            "{{\"pid\":1,\"pad\":\"{}\"}}",
            "x".repeat(MAX_LOCK_FILE_BYTES)
        );
        for bytes in [
            &b""[..],
            b"garbage",
            b"[1,2]",
            br#"{"pid":0}"#,
            br#"{"pid":-3}"#,
            br#"{"pid":"12"}"#,
            br#"{"pid":1.5}"#,
            br#"{"createdAt":"2025-01-01T00:00:00.000Z"}"#,
            big.as_bytes(),
        ] {
            assert_eq!(
                LockPayload::parse(bytes),
                None,
                "{:?}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(40)])
            );
        }
    }
}
