//! Handshake proofs: HMAC-SHA256 keyed by the app secret. The secret never crosses the wire.
//!
//! ```text
//! proof        = HMAC-SHA256(secret, "ferrojob/handshake/v1" | server_nonce | client_nonce
//!                                    | u32le(len app) | app | u32le(len addr) | addr)
//! server_proof = HMAC-SHA256(secret, "ferrojob/accept/v1" | client_nonce | server_nonce)
//! ```
//! Both nonces are fresh random bytes per connection, so a recorded proof is useless on
//! another connection; the server proof lets the worker reject an impostor server.
//! Proofs are compared in constant time (`hmac::Mac::verify_slice`).

use std::collections::HashMap;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::message::NONCE_LEN;

type HmacSha256 = Hmac<Sha256>;

/// An app's shared secret. `Debug` does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct AppSecret(Vec<u8>);

impl AppSecret {
    /// Wraps secret bytes (any length; HMAC accepts every key length).
    pub fn new(bytes: impl Into<Vec<u8>>) -> AppSecret {
        AppSecret(bytes.into())
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length, so this never fails; fall back to an empty key
        // rather than panic if a future hmac version says otherwise.
        HmacSha256::new_from_slice(&self.0)
            .unwrap_or_else(|_| <HmacSha256 as Mac>::new(&Default::default()))
    }
}

impl std::fmt::Debug for AppSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppSecret(..)")
    }
}

/// Where the server looks up app secrets during handshakes.
pub trait AppSecrets: Send + Sync + std::fmt::Debug {
    /// The secret of `app_name`, or `None` for an unknown app.
    fn secret(&self, app_name: &str) -> Option<AppSecret>;
}

impl AppSecrets for HashMap<String, AppSecret> {
    fn secret(&self, app_name: &str) -> Option<AppSecret> {
        self.get(app_name).cloned()
    }
}

fn client_mac(
    secret: &AppSecret,
    server_nonce: &[u8; NONCE_LEN],
    client_nonce: &[u8; NONCE_LEN],
    app_name: &str,
    worker_address: &str,
) -> HmacSha256 {
    let mut mac = secret.mac();
    mac.update(b"ferrojob/handshake/v1");
    mac.update(server_nonce);
    mac.update(client_nonce);
    for field in [app_name, worker_address] {
        // Length-prefixed so that ("ab", "c") and ("a", "bc") sign differently.
        let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
        mac.update(&len.to_le_bytes());
        mac.update(field.as_bytes());
    }
    mac
}

/// The client's proof of knowing `secret`.
pub fn client_proof(
    secret: &AppSecret,
    server_nonce: &[u8; NONCE_LEN],
    client_nonce: &[u8; NONCE_LEN],
    app_name: &str,
    worker_address: &str,
) -> [u8; NONCE_LEN] {
    client_mac(secret, server_nonce, client_nonce, app_name, worker_address)
        .finalize()
        .into_bytes()
        .into()
}

/// Checks a client's proof in constant time.
pub fn verify_client_proof(
    secret: &AppSecret,
    server_nonce: &[u8; NONCE_LEN],
    client_nonce: &[u8; NONCE_LEN],
    app_name: &str,
    worker_address: &str,
    proof: &[u8; NONCE_LEN],
) -> bool {
    client_mac(secret, server_nonce, client_nonce, app_name, worker_address)
        .verify_slice(proof)
        .is_ok()
}

fn server_mac(
    secret: &AppSecret,
    client_nonce: &[u8; NONCE_LEN],
    server_nonce: &[u8; NONCE_LEN],
) -> HmacSha256 {
    let mut mac = secret.mac();
    mac.update(b"ferrojob/accept/v1");
    mac.update(client_nonce);
    mac.update(server_nonce);
    mac
}

/// The server's proof of knowing `secret`.
pub fn server_proof(
    secret: &AppSecret,
    client_nonce: &[u8; NONCE_LEN],
    server_nonce: &[u8; NONCE_LEN],
) -> [u8; NONCE_LEN] {
    server_mac(secret, client_nonce, server_nonce)
        .finalize()
        .into_bytes()
        .into()
}

/// Checks a server's proof in constant time.
pub fn verify_server_proof(
    secret: &AppSecret,
    client_nonce: &[u8; NONCE_LEN],
    server_nonce: &[u8; NONCE_LEN],
    proof: &[u8; NONCE_LEN],
) -> bool {
    server_mac(secret, client_nonce, server_nonce)
        .verify_slice(proof)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proof_verifies_only_with_the_same_inputs() {
        let s = AppSecret::new("s3cret");
        let p = client_proof(&s, &[1; 32], &[2; 32], "app", "w:1");
        assert!(verify_client_proof(
            &s, &[1; 32], &[2; 32], "app", "w:1", &p
        ));
        assert!(!verify_client_proof(
            &AppSecret::new("other"),
            &[1; 32],
            &[2; 32],
            "app",
            "w:1",
            &p
        ));
        assert!(!verify_client_proof(
            &s, &[9; 32], &[2; 32], "app", "w:1", &p
        ));
        assert!(!verify_client_proof(
            &s, &[1; 32], &[2; 32], "ap", "pw:1", &p
        ));
        let sp = server_proof(&s, &[2; 32], &[1; 32]);
        assert!(verify_server_proof(&s, &[2; 32], &[1; 32], &sp));
        assert!(!verify_server_proof(&s, &[1; 32], &[2; 32], &sp));
        assert_ne!(&sp, &p);
        assert_eq!(format!("{s:?}"), "AppSecret(..)");
    }
}
