//! Device identity as OpenClaw verifies it (SPEC §11.1–11.3): the public key's encodings, the
//! device id derived from it, the v3 and v2 signed payloads, and the six proof checks of a
//! `connect`'s `device` block with their exact answers. The signature itself is ed25519-dalek's.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::protocol::MethodError;

/// How far `signedAt` may be from the gateway's clock, either way (MH:826).
pub const SIGNATURE_SKEW_MS: u64 = 120_000;

/// Longer key or signature strings are refused before decoding (ED:9-20).
const MAX_ENCODED_LEN: usize = 4096;

/// DER of an Ed25519 SubjectPublicKeyInfo, before the 32 key bytes (ED:4).
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Standard base64 that takes padding or none and ignores stray trailing bits, as Node's
/// `Buffer.from(s, "base64")` does.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// The `device` block of `connect` (SPEC §11.1; all five fields checked by the schema).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceBlock {
    /// The claimed device id.
    pub id: String,
    /// The public key: raw 32 bytes in base64url (Node clients), base64, or a PEM.
    pub public_key: String,
    /// The Ed25519 signature of the payload, base64url or base64.
    pub signature: String,
    /// When the client signed (ms since the epoch; Node clients use the challenge's `ts`).
    pub signed_at: u64,
    /// The challenge nonce the client signed.
    pub nonce: String,
}

/// Decodes base64 or base64url as Node's permissive decoder does (ED:14-20): `-`/`_` become
/// `+`/`/`, padding is optional, characters outside the alphabet are dropped and the first `=`
/// ends the data.
fn decode_lenient(input: &str) -> Option<Vec<u8>> {
    if input.len() > MAX_ENCODED_LEN {
        return None;
    }
    let mut clean: String = input
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .take_while(|c| *c != '=')
        .filter(|c| c.is_ascii_alphanumeric() || *c == '+' || *c == '/')
        .collect();
    // A lone trailing character carries fewer than 8 bits: Node drops it.
    if clean.len() % 4 == 1 {
        clean.pop();
    }
    LENIENT.decode(clean).ok()
}

/// The raw key bytes of a PEM `PUBLIC KEY`: the SPKI prefix of Ed25519 and 32 bytes.
fn decode_pem(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with("-----"))
        .collect();
    let der = LENIENT.decode(body.trim_end_matches('=')).ok()?;
    let raw = der.strip_prefix(&SPKI_PREFIX[..])?;
    (raw.len() == 32).then(|| raw.to_vec())
}

/// The raw bytes of `device.publicKey` (SPEC §11.1): a PEM when it contains `BEGIN`, else
/// permissive base64/base64url. Not necessarily 32 bytes: Node derives an id from any
/// non-empty decoding and fails only the signature check.
pub fn decode_public_key(public_key: &str) -> Option<Vec<u8>> {
    let raw = if public_key.contains("BEGIN") {
        decode_pem(public_key)?
    } else {
        decode_lenient(public_key)?
    };
    (!raw.is_empty()).then_some(raw)
}

/// The key in the form the store keeps and Node clients send: base64url without padding.
pub fn normalize_public_key(public_key: &str) -> Option<String> {
    decode_public_key(public_key)
        .map(|raw| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw))
}

/// The device id of a key: lowercase hex SHA-256 of its raw bytes (DI:461-471).
pub fn device_id(public_key: &str) -> Option<String> {
    let raw = decode_public_key(public_key)?;
    Some(
        Sha256::digest(&raw)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    )
}

/// Whether `signature` is `public_key`'s Ed25519 signature of the UTF-8 bytes of `payload`.
pub fn verify_signature(public_key: &str, payload: &str, signature: &str) -> bool {
    let Some(raw) = decode_public_key(public_key) else {
        return false;
    };
    let Ok(key_bytes) = <[u8; 32]>::try_from(raw.as_slice()) else {
        return false;
    };
    let Ok(key) = VerifyingKey::from_bytes(&key_bytes) else {
        return false;
    };
    let Some(signature) = decode_lenient(signature) else {
        return false;
    };
    let Ok(signature) = Signature::from_slice(&signature) else {
        return false;
    };
    key.verify(payload.as_bytes(), &signature).is_ok()
}

/// Trims, then lowercases ASCII `A`–`Z` only (DA:2-7): how `platform` and `deviceFamily`
/// enter the v3 payload.
pub fn normalize_metadata(value: Option<&str>) -> String {
    value
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Everything a signed payload is built from, as the server fills it (SPEC §11.2).
#[derive(Debug, Clone, Copy)]
pub struct PayloadFields<'a> {
    /// `device.id` as sent.
    pub device_id: &'a str,
    /// `client.id`.
    pub client_id: &'a str,
    /// `client.mode`.
    pub client_mode: &'a str,
    /// The parsed role (`operator` when omitted).
    pub role: &'a str,
    /// The `scopes` of `connect` as received.
    pub scopes: &'a [String],
    /// `device.signedAt`.
    pub signed_at_ms: u64,
    /// `auth.token ?? auth.deviceToken ?? auth.bootstrapToken ?? ""`.
    pub token: &'a str,
    /// `device.nonce`, trimmed.
    pub nonce: &'a str,
    /// `client.platform` (v3 only).
    pub platform: Option<&'a str>,
    /// `client.deviceFamily` (v3 only).
    pub device_family: Option<&'a str>,
}

impl PayloadFields<'_> {
    fn common(&self, version: &str) -> String {
        [
            version,
            self.device_id,
            self.client_id,
            self.client_mode,
            self.role,
            &self.scopes.join(","),
            &self.signed_at_ms.to_string(),
            self.token,
            self.nonce,
        ]
        .join("|")
    }

    /// `v3|deviceId|clientId|clientMode|role|scopes|signedAtMs|token|nonce|platform|deviceFamily`.
    pub fn v3(&self) -> String {
        format!(
            "{}|{}|{}",
            self.common("v3"),
            normalize_metadata(self.platform),
            normalize_metadata(self.device_family)
        )
    }

    /// `v2|deviceId|clientId|clientMode|role|scopes|signedAtMs|token|nonce` (the Control UI's).
    pub fn v2(&self) -> String {
        self.common("v2")
    }
}

/// Which payload the signature matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadVersion {
    /// The Node CLI's and node host's.
    V3,
    /// The bundled Control UI's.
    V2,
}

/// Why a `device` block was refused (SPEC §11.3), in the order the checks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofFailure {
    /// The key's derived id is not `device.id`.
    IdMismatch,
    /// `signedAt` is more than 120 s from now.
    Expired,
    /// The nonce is blank.
    NonceMissing,
    /// The nonce is not this connection's challenge.
    NonceMismatch,
    /// Neither the v3 nor the v2 payload verifies.
    SignatureInvalid,
    /// The key does not decode.
    PublicKeyInvalid,
}

impl ProofFailure {
    /// The `message` of the answer and the close reason.
    pub fn message(self) -> &'static str {
        match self {
            Self::IdMismatch => "device identity mismatch",
            Self::Expired => "device signature expired",
            Self::NonceMissing => "device nonce required",
            Self::NonceMismatch => "device nonce mismatch",
            Self::SignatureInvalid => "device signature invalid",
            Self::PublicKeyInvalid => "device public key invalid",
        }
    }

    /// `details.code` (CED:119-129).
    pub fn code(self) -> &'static str {
        match self {
            Self::IdMismatch => "DEVICE_AUTH_DEVICE_ID_MISMATCH",
            Self::Expired => "DEVICE_AUTH_SIGNATURE_EXPIRED",
            Self::NonceMissing => "DEVICE_AUTH_NONCE_REQUIRED",
            Self::NonceMismatch => "DEVICE_AUTH_NONCE_MISMATCH",
            Self::SignatureInvalid => "DEVICE_AUTH_SIGNATURE_INVALID",
            Self::PublicKeyInvalid => "DEVICE_AUTH_PUBLIC_KEY_INVALID",
        }
    }

    /// `details.reason`.
    pub fn reason(self) -> &'static str {
        match self {
            Self::IdMismatch => "device-id-mismatch",
            Self::Expired => "device-signature-stale",
            Self::NonceMissing => "device-nonce-missing",
            Self::NonceMismatch => "device-nonce-mismatch",
            Self::SignatureInvalid => "device-signature",
            Self::PublicKeyInvalid => "device-public-key",
        }
    }

    /// The `res` error: `INVALID_REQUEST` with `details:{code, reason}` (MH:853-889).
    pub fn error(self) -> MethodError {
        MethodError::invalid_request(self.message())
            .with_details(json!({ "code": self.code(), "reason": self.reason() }))
    }
}

/// A `device` block that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenDevice {
    /// `device.id` (equal to the key's derived id).
    pub id: String,
    /// The key, base64url without padding.
    pub public_key: String,
    /// Which payload the signature matched.
    pub version: PayloadVersion,
}

/// Runs the six checks of SPEC §11.3 in Node's order (MH:891-932). `fields` are the payload
/// fields other than the device's own (`device_id`, `signed_at_ms` and `nonce` are taken from
/// `device`); `challenge_nonce` is the one this connection was sent.
pub fn check_proof(
    device: &DeviceBlock,
    fields: PayloadFields<'_>,
    challenge_nonce: &str,
    now_ms: u64,
) -> Result<ProvenDevice, ProofFailure> {
    if device_id(&device.public_key).as_deref() != Some(device.id.as_str()) {
        return Err(ProofFailure::IdMismatch);
    }
    if now_ms.abs_diff(device.signed_at) > SIGNATURE_SKEW_MS {
        return Err(ProofFailure::Expired);
    }
    let nonce = device.nonce.trim();
    if nonce.is_empty() {
        return Err(ProofFailure::NonceMissing);
    }
    if nonce != challenge_nonce {
        return Err(ProofFailure::NonceMismatch);
    }
    let fields = PayloadFields {
        device_id: &device.id,
        signed_at_ms: device.signed_at,
        nonce,
        ..fields
    };
    let version = if verify_signature(&device.public_key, &fields.v3(), &device.signature) {
        PayloadVersion::V3
    } else if verify_signature(&device.public_key, &fields.v2(), &device.signature) {
        PayloadVersion::V2
    } else {
        return Err(ProofFailure::SignatureInvalid);
    };
    let public_key =
        normalize_public_key(&device.public_key).ok_or(ProofFailure::PublicKeyInvalid)?;
    Ok(ProvenDevice {
        id: device.id.clone(),
        public_key,
        version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    // SPEC §11.2's vectors, checked with OpenClaw's own builders and verifier.
    const PUBLIC_KEY: &str = "6kpsY-KcUgq-9VB7Ey7F-ZVHdq6-vnuSQh7qaRRG0iw";
    const DEVICE_ID: &str = "fe812c12f3ab4ce6ac5db69ac352f906cb1b11ef43fb33e252ef7ff552263889";
    const NONCE: &str = "2f1e8a4c-3b7d-4e15-9a0c-6d5b4f3e2a10";
    const SIGNED_AT: u64 = 1_790_190_000_000;
    const V3_PAYLOAD: &str = "v3|fe812c12f3ab4ce6ac5db69ac352f906cb1b11ef43fb33e252ef7ff552263889|cli|cli|operator|operator.admin,operator.read|1790190000000|tok-123|2f1e8a4c-3b7d-4e15-9a0c-6d5b4f3e2a10|linux|";
    const V3_SIGNATURE: &str =
        "UsMdoBZBzsO5TVusaWki__tIs-HbHaZOsqCP923EM8kt1LPbkWn4mI_InQcX92bCDbWar46N6EqOPU2e0UQjCQ";
    const V2_PAYLOAD: &str = "v2|fe812c12f3ab4ce6ac5db69ac352f906cb1b11ef43fb33e252ef7ff552263889|openclaw-control-ui|webchat|operator|operator.read|1790190000000||2f1e8a4c-3b7d-4e15-9a0c-6d5b4f3e2a10";
    const V2_SIGNATURE: &str =
        "Lv49zuA7Mvcs7c_iaayCnlsNcU_ywX-_0DSf8tiWYje6j6Z7WS-IwR1IwTgWio4tJsvdtSY6kZhdGcWq_-FgAQ";

    fn v3_scopes() -> Vec<String> {
        vec!["operator.admin".into(), "operator.read".into()]
    }

    fn v3_fields(scopes: &[String]) -> PayloadFields<'_> {
        PayloadFields {
            device_id: DEVICE_ID,
            client_id: "cli",
            client_mode: "cli",
            role: "operator",
            scopes,
            signed_at_ms: SIGNED_AT,
            token: "tok-123",
            nonce: NONCE,
            platform: Some(" Linux "),
            device_family: None,
        }
    }

    fn v3_device() -> DeviceBlock {
        DeviceBlock {
            id: DEVICE_ID.into(),
            public_key: PUBLIC_KEY.into(),
            signature: V3_SIGNATURE.into(),
            signed_at: SIGNED_AT,
            nonce: NONCE.into(),
        }
    }

    #[test]
    fn the_spec_vectors_derive_build_and_verify() {
        let seed = SigningKey::from_bytes(&[7; 32]);
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(seed.verifying_key().as_bytes());
        assert_eq!(encoded, PUBLIC_KEY);
        assert_eq!(device_id(PUBLIC_KEY).unwrap(), DEVICE_ID);
        let scopes = v3_scopes();
        assert_eq!(v3_fields(&scopes).v3(), V3_PAYLOAD);
        let v2 = PayloadFields {
            client_id: "openclaw-control-ui",
            client_mode: "webchat",
            scopes: &["operator.read".to_owned()],
            token: "",
            ..v3_fields(&scopes)
        };
        assert_eq!(v2.v2(), V2_PAYLOAD);
        assert!(verify_signature(PUBLIC_KEY, V3_PAYLOAD, V3_SIGNATURE));
        assert!(verify_signature(PUBLIC_KEY, V2_PAYLOAD, V2_SIGNATURE));
        // Ed25519 is deterministic: dalek's signature is the vector's.
        let ours = seed.sign(V3_PAYLOAD.as_bytes()).to_bytes();
        assert_eq!(
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(ours),
            V3_SIGNATURE
        );
    }

    #[test]
    fn keys_decode_in_every_form_node_accepts() {
        let raw = decode_public_key(PUBLIC_KEY).unwrap();
        let standard = base64::engine::general_purpose::STANDARD.encode(&raw);
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(&raw);
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(&der)
        );
        for form in [
            PUBLIC_KEY.to_owned(),
            standard.clone(),
            standard.trim_end_matches('=').to_owned(),
            format!("{PUBLIC_KEY}=="),
            format!(" {PUBLIC_KEY}\n"),
            pem,
        ] {
            assert_eq!(device_id(&form).as_deref(), Some(DEVICE_ID), "{form:?}");
            assert_eq!(normalize_public_key(&form).as_deref(), Some(PUBLIC_KEY));
            assert!(
                verify_signature(&form, V3_PAYLOAD, V3_SIGNATURE),
                "{form:?}"
            );
        }
        // Signatures decode as permissively.
        let signature = decode_lenient(V3_SIGNATURE).unwrap();
        let standard = base64::engine::general_purpose::STANDARD.encode(signature);
        assert!(verify_signature(PUBLIC_KEY, V3_PAYLOAD, &standard));
        // Short keys still have an id (Node derives one) but verify nothing.
        assert!(device_id("AAAA").is_some());
        assert!(!verify_signature("AAAA", V3_PAYLOAD, V3_SIGNATURE));
        for bad in ["", "====", "!!!", &"A".repeat(4097)] {
            assert_eq!(device_id(bad), None, "{bad:?}");
        }
        let wrong_prefix = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        assert_eq!(device_id(wrong_prefix), None);
    }

    #[test]
    fn v3_metadata_is_trimmed_and_ascii_lowercased_only() {
        for (given, entered) in [
            (None, ""),
            (Some(""), ""),
            (Some("  "), ""),
            (Some(" MacOS 15.1 "), "macos 15.1"),
            (Some("ÄNDROID"), "Ändroid"),
        ] {
            assert_eq!(normalize_metadata(given), entered, "{given:?}");
        }
    }

    #[test]
    fn proof_checks_run_in_order_and_answer_exactly() {
        let scopes = v3_scopes();
        let fields = v3_fields(&scopes);
        let proven = check_proof(&v3_device(), fields, NONCE, SIGNED_AT + 5).unwrap();
        assert_eq!(proven.version, PayloadVersion::V3);
        assert_eq!(proven.public_key, PUBLIC_KEY);
        // The Control UI's v2 signature passes through the v3-first fallback.
        let read = vec!["operator.read".to_owned()];
        let v2_fields = PayloadFields {
            client_id: "openclaw-control-ui",
            client_mode: "webchat",
            scopes: &read,
            token: "",
            ..fields
        };
        let v2_device = DeviceBlock {
            signature: V2_SIGNATURE.into(),
            nonce: format!("  {NONCE} "),
            ..v3_device()
        };
        let proven = check_proof(&v2_device, v2_fields, NONCE, SIGNED_AT).unwrap();
        assert_eq!(proven.version, PayloadVersion::V2);

        type Breaker = fn(&mut DeviceBlock);
        let cases: [(&str, Breaker, ProofFailure); 10] = [
            (
                "another id",
                |d| d.id = d.id.replace('f', "0"),
                ProofFailure::IdMismatch,
            ),
            (
                "upper-case id",
                |d| d.id = d.id.to_uppercase(),
                ProofFailure::IdMismatch,
            ),
            (
                "an undecodable key",
                |d| d.public_key = "!!".into(),
                ProofFailure::IdMismatch,
            ),
            (
                "signed too long ago",
                |d| d.signed_at -= 120_001,
                ProofFailure::Expired,
            ),
            (
                "signed in the future",
                |d| d.signed_at += 120_001,
                ProofFailure::Expired,
            ),
            (
                "a blank nonce",
                |d| d.nonce = "  ".into(),
                ProofFailure::NonceMissing,
            ),
            (
                "another nonce",
                |d| d.nonce = uuid_like(),
                ProofFailure::NonceMismatch,
            ),
            (
                "a broken signature",
                |d| d.signature = d.signature.replace('U', "V"),
                ProofFailure::SignatureInvalid,
            ),
            (
                "a truncated signature",
                |d| d.signature.truncate(40),
                ProofFailure::SignatureInvalid,
            ),
            (
                "another payload's signature",
                |d| d.signature = V2_SIGNATURE.into(),
                ProofFailure::SignatureInvalid,
            ),
        ];
        for (what, breaker, failure) in cases {
            let mut device = v3_device();
            breaker(&mut device);
            // The skew window is checked against `now`: keep `now` at the original signing time.
            assert_eq!(
                check_proof(&device, fields, NONCE, SIGNED_AT),
                Err(failure),
                "{what}"
            );
        }
        // The window's edge is inclusive, both ways.
        for now in [SIGNED_AT + SIGNATURE_SKEW_MS, SIGNED_AT - SIGNATURE_SKEW_MS] {
            assert!(check_proof(&v3_device(), fields, NONCE, now).is_ok());
        }
        // Any payload field that differs breaks the signature.
        let other_scopes = vec!["operator.read".to_owned(), "operator.admin".to_owned()];
        for changed in [
            PayloadFields {
                role: "node",
                ..fields
            },
            PayloadFields {
                scopes: &other_scopes,
                ..fields
            },
            PayloadFields {
                token: "tok-124",
                ..fields
            },
            PayloadFields {
                platform: Some("darwin"),
                ..fields
            },
            PayloadFields {
                client_mode: "ui",
                ..fields
            },
        ] {
            assert_eq!(
                check_proof(&v3_device(), changed, NONCE, SIGNED_AT),
                Err(ProofFailure::SignatureInvalid)
            );
        }
        let error = ProofFailure::NonceMismatch.error();
        assert_eq!(
            serde_json::to_string(&error).unwrap(),
            r#"{"code":"INVALID_REQUEST","message":"device nonce mismatch","details":{"code":"DEVICE_AUTH_NONCE_MISMATCH","reason":"device-nonce-mismatch"}}"#
        );
    }

    fn uuid_like() -> String {
        "00000000-0000-4000-8000-000000000000".into()
    }
}
