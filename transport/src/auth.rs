//! Handshake proofs: HMAC-SHA256 keyed by the app secret. The secret never crosses the wire.
//!
//! ```text
//! binding      = role | u32le(len channel) | channel
//! proof        = HMAC-SHA256(secret, "ferrojob/handshake/v2" | binding | server_nonce
//!                            | client_nonce | u32le(len app) | app | u32le(len addr) | addr)
//! server_proof = HMAC-SHA256(secret, "ferrojob/accept/v2" | binding | client_nonce
//!                            | server_nonce)
//! ```
//! - Both nonces are fresh random bytes per connection, so a recorded proof is useless on
//!   another connection; the server proof lets the worker reject a peer without the secret.
//! - `role` is the [`Role`] of the accepting end, one byte: the scheduling server, or a
//!   worker's peer listener. A client says which one it meant to reach, so a worker's peer
//!   listener can never pass for the server (nor a relay turn one handshake into the other),
//!   and a proof made for a peer does not open the server.
//! - `channel` is the TLS channel binding ([`crate::tls`]; empty on plain TCP): a proof
//!   made inside one TLS connection does not verify inside another, so a relay that
//!   terminates TLS on both sides cannot forward a handshake.
//!
//! What the proofs cannot do: every holder of an app's secret (each of its workers) can
//! compute the server proof for that app. What keeps a worker from posing as the server to
//! other workers is TLS: workers check the server's certificate, whose key workers never
//! hold. On plain TCP the server proof only shows that the peer knows the app secret.
//!
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
    /// The secret `app_name` had before its last rotation, while workers may still prove it
    /// (the rotation's overlap); `None` otherwise. A proof of either secret is accepted, and
    /// the server proves the one the worker proved.
    fn previous_secret(&self, app_name: &str) -> Option<AppSecret> {
        let _ = app_name;
        None
    }

    /// Whether this server serves `app_name`'s workers, asked once a handshake proved the
    /// secret: a server of a cluster that does not hold the app's partition refuses with
    /// [`NotServed`], and the connection closes with
    /// [`ErrorCode::NotOwner`](crate::message::ErrorCode::NotOwner) naming the owner it
    /// knows. A single server serves every app it has a secret for.
    fn serves(&self, app_name: &str) -> Result<(), NotServed> {
        let _ = app_name;
        Ok(())
    }
}

/// A server's refusal of an app's workers: another server of the cluster serves the app.
/// Its text is the detail of the `NotOwner` close frame, and [`NotServed::parse`] reads it
/// back on the worker's side.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotServed {
    /// The server that holds the app's partition, as the cluster names it.
    #[error("{NOT_SERVED_PREFIX}{0}")]
    OwnedBy(String),
    /// This server does not know which server holds it now.
    #[error("{NOT_SERVED_UNKNOWN}")]
    OwnerUnknown,
}

const NOT_SERVED_PREFIX: &str = "app served by server ";
const NOT_SERVED_UNKNOWN: &str = "app not served here; its server is not known to this one";

impl NotServed {
    /// The refusal a `NotOwner` close frame's detail carries, when it is one.
    pub fn parse(detail: &str) -> Option<NotServed> {
        if detail == NOT_SERVED_UNKNOWN {
            return Some(NotServed::OwnerUnknown);
        }
        let owner = detail.strip_prefix(NOT_SERVED_PREFIX)?;
        (!owner.is_empty()).then(|| NotServed::OwnedBy(owner.to_owned()))
    }
}

impl AppSecrets for HashMap<String, AppSecret> {
    fn secret(&self, app_name: &str) -> Option<AppSecret> {
        self.get(app_name).cloned()
    }
}

/// The role of a handshake's accepting end, bound into both proofs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// The scheduling server's worker port.
    #[default]
    Server,
    /// A worker's listener for other workers (TaskTracker and ProcessorTracker traffic).
    Worker,
}

impl Role {
    fn byte(self) -> u8 {
        match self {
            Role::Server => 1,
            Role::Worker => 2,
        }
    }
}

/// What a handshake binds besides the secret and the nonces: the accepting end's role and
/// the TLS channel (`None` on plain TCP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Binding {
    /// The role of the accepting end.
    pub role: Role,
    /// The TLS channel binding, if the connection runs over TLS.
    pub channel: Option<[u8; crate::tls::CHANNEL_BINDING_LEN]>,
}

impl Binding {
    fn update(&self, mac: &mut HmacSha256) {
        mac.update(&[self.role.byte()]);
        let channel: &[u8] = match &self.channel {
            Some(c) => c,
            None => &[],
        };
        update_prefixed(mac, channel);
    }
}

fn update_prefixed(mac: &mut HmacSha256, field: &[u8]) {
    // Length-prefixed so that ("ab", "c") and ("a", "bc") sign differently.
    let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
    mac.update(&len.to_le_bytes());
    mac.update(field);
}

fn client_mac(
    secret: &AppSecret,
    binding: &Binding,
    server_nonce: &[u8; NONCE_LEN],
    client_nonce: &[u8; NONCE_LEN],
    app_name: &str,
    worker_address: &str,
) -> HmacSha256 {
    let mut mac = secret.mac();
    mac.update(b"ferrojob/handshake/v2");
    binding.update(&mut mac);
    mac.update(server_nonce);
    mac.update(client_nonce);
    for field in [app_name, worker_address] {
        update_prefixed(&mut mac, field.as_bytes());
    }
    mac
}

/// The client's proof of knowing `secret`.
pub fn client_proof(
    secret: &AppSecret,
    binding: &Binding,
    server_nonce: &[u8; NONCE_LEN],
    client_nonce: &[u8; NONCE_LEN],
    app_name: &str,
    worker_address: &str,
) -> [u8; NONCE_LEN] {
    client_mac(
        secret,
        binding,
        server_nonce,
        client_nonce,
        app_name,
        worker_address,
    )
    .finalize()
    .into_bytes()
    .into()
}

/// Checks a client's proof in constant time.
pub fn verify_client_proof(
    secret: &AppSecret,
    binding: &Binding,
    server_nonce: &[u8; NONCE_LEN],
    client_nonce: &[u8; NONCE_LEN],
    app_name: &str,
    worker_address: &str,
    proof: &[u8; NONCE_LEN],
) -> bool {
    client_mac(
        secret,
        binding,
        server_nonce,
        client_nonce,
        app_name,
        worker_address,
    )
    .verify_slice(proof)
    .is_ok()
}

fn server_mac(
    secret: &AppSecret,
    binding: &Binding,
    client_nonce: &[u8; NONCE_LEN],
    server_nonce: &[u8; NONCE_LEN],
) -> HmacSha256 {
    let mut mac = secret.mac();
    mac.update(b"ferrojob/accept/v2");
    binding.update(&mut mac);
    mac.update(client_nonce);
    mac.update(server_nonce);
    mac
}

/// The server's proof of knowing `secret`.
pub fn server_proof(
    secret: &AppSecret,
    binding: &Binding,
    client_nonce: &[u8; NONCE_LEN],
    server_nonce: &[u8; NONCE_LEN],
) -> [u8; NONCE_LEN] {
    server_mac(secret, binding, client_nonce, server_nonce)
        .finalize()
        .into_bytes()
        .into()
}

/// Checks a server's proof in constant time.
pub fn verify_server_proof(
    secret: &AppSecret,
    binding: &Binding,
    client_nonce: &[u8; NONCE_LEN],
    server_nonce: &[u8; NONCE_LEN],
    proof: &[u8; NONCE_LEN],
) -> bool {
    server_mac(secret, binding, client_nonce, server_nonce)
        .verify_slice(proof)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: Binding = Binding {
        role: Role::Server,
        channel: None,
    };

    #[test]
    fn proof_verifies_only_with_the_same_inputs() {
        let s = AppSecret::new("s3cret");
        let p = client_proof(&s, &SERVER, &[1; 32], &[2; 32], "app", "w:1");
        assert!(verify_client_proof(
            &s, &SERVER, &[1; 32], &[2; 32], "app", "w:1", &p
        ));
        assert!(!verify_client_proof(
            &AppSecret::new("other"),
            &SERVER,
            &[1; 32],
            &[2; 32],
            "app",
            "w:1",
            &p
        ));
        assert!(!verify_client_proof(
            &s, &SERVER, &[9; 32], &[2; 32], "app", "w:1", &p
        ));
        assert!(!verify_client_proof(
            &s, &SERVER, &[1; 32], &[2; 32], "ap", "pw:1", &p
        ));
        let sp = server_proof(&s, &SERVER, &[2; 32], &[1; 32]);
        assert!(verify_server_proof(&s, &SERVER, &[2; 32], &[1; 32], &sp));
        assert!(!verify_server_proof(&s, &SERVER, &[1; 32], &[2; 32], &sp));
        assert_ne!(&sp, &p);
        assert_eq!(format!("{s:?}"), "AppSecret(..)");
    }

    #[test]
    fn proofs_bind_the_role_of_the_accepting_end() {
        let s = AppSecret::new("s3cret");
        let peer = Binding {
            role: Role::Worker,
            channel: None,
        };
        // A worker's peer listener answers with a worker-role proof: a client that meant to
        // reach the server rejects it, and the other way round.
        let sp = server_proof(&s, &peer, &[2; 32], &[1; 32]);
        assert!(verify_server_proof(&s, &peer, &[2; 32], &[1; 32], &sp));
        assert!(!verify_server_proof(&s, &SERVER, &[2; 32], &[1; 32], &sp));
        // A handshake a worker made towards a peer does not open the server.
        let p = client_proof(&s, &peer, &[1; 32], &[2; 32], "app", "w:1");
        assert!(!verify_client_proof(
            &s, &SERVER, &[1; 32], &[2; 32], "app", "w:1", &p
        ));
    }

    #[test]
    fn proofs_bind_the_tls_channel() {
        let s = AppSecret::new("s3cret");
        let on = |c: u8| Binding {
            role: Role::Server,
            channel: Some([c; 32]),
        };
        let p = client_proof(&s, &on(7), &[1; 32], &[2; 32], "app", "w:1");
        assert!(verify_client_proof(
            &s,
            &on(7),
            &[1; 32],
            &[2; 32],
            "app",
            "w:1",
            &p
        ));
        assert!(!verify_client_proof(
            &s,
            &on(8),
            &[1; 32],
            &[2; 32],
            "app",
            "w:1",
            &p
        ));
        assert!(!verify_client_proof(
            &s, &SERVER, &[1; 32], &[2; 32], "app", "w:1", &p
        ));
        let sp = server_proof(&s, &on(7), &[2; 32], &[1; 32]);
        assert!(!verify_server_proof(&s, &on(8), &[2; 32], &[1; 32], &sp));
    }
}
