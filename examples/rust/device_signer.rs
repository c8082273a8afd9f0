//! How an OpenClaw client proves its device identity (SPEC §11.1–11.2): an Ed25519 key, the
//! device id (hex SHA-256 of the raw public key), and a signature over the connect payload.
//!
//!     cargo run --example device_signer -- <seed byte 0-255> '<payload>'
//!
//! prints `{"id", "publicKey", "signature"}` (base64url without padding) for the key whose seed
//! is 32 copies of the byte. The Swift tests sign their device blocks with it (Swift on Linux
//! has no Ed25519 of its own); a real client keeps a random key instead.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer, SigningKey};
use sha2::{Digest, Sha256};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(seed), Some(payload)) =
        (args.first().and_then(|s| s.parse::<u8>().ok()), args.get(1))
    else {
        eprintln!("usage: device_signer <seed byte 0-255> <payload>");
        std::process::exit(2);
    };
    let key = SigningKey::from_bytes(&[seed; 32]);
    let public = key.verifying_key();
    let id: String = Sha256::digest(public.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let signature = key.sign(payload.as_bytes());
    println!(
        "{}",
        serde_json::json!({
            "id": id,
            "publicKey": URL_SAFE_NO_PAD.encode(public.as_bytes()),
            "signature": URL_SAFE_NO_PAD.encode(signature.to_bytes()),
        })
    );
}
