//! A device identity for test clients: an Ed25519 key (ed25519-dalek), its id, and the signed
//! `device` block of `connect` exactly as SPEC §11.2 builds it (the v3 payload). Used next to
//! `wsclient`.
#![allow(dead_code)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::wsclient::Client;

/// One device's key pair.
pub struct DeviceKey {
    key: SigningKey,
}

impl DeviceKey {
    /// The key whose seed is 32 bytes of `seed` (SPEC §11.2's vectors use 7).
    pub fn from_seed(seed: u8) -> Self {
        Self {
            key: SigningKey::from_bytes(&[seed; 32]),
        }
    }

    /// The raw public key, base64url without padding, as `device.publicKey` carries it.
    pub fn public_key(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.key.verifying_key().as_bytes())
    }

    /// Lowercase hex SHA-256 of the raw public key (SPEC §11.1).
    pub fn id(&self) -> String {
        Sha256::digest(self.key.verifying_key().as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The v3 payload of SPEC §11.2 for `params` (the connect params as sent).
    pub fn payload(&self, params: &Value, nonce: &str, signed_at: u64) -> String {
        let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
        let lower = |v: &Value| text(v).trim().to_ascii_lowercase();
        let client = &params["client"];
        let scopes: Vec<String> = params["scopes"]
            .as_array()
            .map(|s| s.iter().map(text).collect())
            .unwrap_or_default();
        let auth = &params["auth"];
        let token = [
            &auth["token"],
            &auth["deviceToken"],
            &auth["bootstrapToken"],
        ]
        .into_iter()
        .find(|v| v.is_string())
        .map(text)
        .unwrap_or_default();
        format!(
            "v3|{}|{}|{}|{}|{}|{signed_at}|{token}|{}|{}|{}",
            self.id(),
            text(&client["id"]),
            text(&client["mode"]),
            params["role"].as_str().unwrap_or("operator"),
            scopes.join(","),
            nonce.trim(),
            lower(&client["platform"]),
            lower(&client["deviceFamily"]),
        )
    }

    /// `params` with a `device` block signed for the challenge `nonce` at `signed_at`.
    pub fn sign(&self, mut params: Value, nonce: &str, signed_at: u64) -> Value {
        let signature = self
            .key
            .sign(self.payload(&params, nonce, signed_at).as_bytes());
        params["device"] = json!({
            "id": self.id(),
            "publicKey": self.public_key(),
            "signature": URL_SAFE_NO_PAD.encode(signature.to_bytes()),
            "signedAt": signed_at,
            "nonce": nonce,
        });
        params
    }

    /// Opens a connection, signs `params` for its challenge and sends `connect`; the `res`.
    pub async fn connect(&self, port: u16, params: Value) -> (Client, Value) {
        let mut client = Client::open(port).await;
        let challenge = client.challenge().await;
        let nonce = challenge["payload"]["nonce"].as_str().unwrap().to_owned();
        let signed_at = challenge["payload"]["ts"].as_u64().unwrap();
        let params = self.sign(params, &nonce, signed_at);
        client
            .send(json!({"type": "req", "id": "c1", "method": "connect", "params": params}))
            .await;
        let res = client.recv().await;
        (client, res)
    }
}

/// The `connect` params of the OpenClaw CLI with a token, asking for `scopes`.
pub fn cli_params(token: &str, scopes: &[&str], display_name: &str) -> Value {
    json!({
        "minProtocol": 4,
        "maxProtocol": 4,
        "client": {"id": "cli", "version": "1.0.0", "platform": "linux", "mode": "cli",
                   "displayName": display_name},
        "role": "operator",
        "scopes": scopes,
        "auth": {"token": token},
    })
}

/// SPEC §11.2's test vector: the helper signs as OpenClaw's own code does.
pub fn check_against_the_spec_vector() {
    let key = DeviceKey::from_seed(7);
    assert_eq!(
        key.public_key(),
        "6kpsY-KcUgq-9VB7Ey7F-ZVHdq6-vnuSQh7qaRRG0iw"
    );
    assert_eq!(
        key.id(),
        "fe812c12f3ab4ce6ac5db69ac352f906cb1b11ef43fb33e252ef7ff552263889"
    );
    let params = json!({
        "client": {"id": "cli", "mode": "cli", "platform": " Linux "},
        "scopes": ["operator.admin", "operator.read"],
        "auth": {"token": "tok-123"},
    });
    let nonce = "2f1e8a4c-3b7d-4e15-9a0c-6d5b4f3e2a10";
    let signed = key.sign(params, nonce, 1_790_190_000_000);
    assert_eq!(
        signed["device"]["signature"],
        "UsMdoBZBzsO5TVusaWki__tIs-HbHaZOsqCP923EM8kt1LPbkWn4mI_InQcX92bCDbWar46N6EqOPU2e0UQjCQ"
    );
}
