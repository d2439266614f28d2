//! Credentials of the OpenAPI: an app's API tokens and their roles, the app routes, and the
//! worker secret's rotation.
//!
//! An API token opens one app's routes with one [`TokenRole`]. The server keeps only its
//! SHA-256 ([`token_hash`], computed by the HTTP layer and the server) and shows the token
//! once, in [`TokenCreated`]. A token reads `fjt_<id>_<64 hex digits>`: the id finds the
//! stored hash without a search, the 256 random bits make the hash safe to keep unsalted.
//!
//! | role | opens |
//! |---|---|
//! | [`TokenRole::Read`] | every `GET` of the app |
//! | [`TokenRole::Operate`] | `read`, and run, stop, cancel, retry, enable, disable, mark-success, alarm channel tests |
//! | [`TokenRole::Admin`] | `operate`, and create, update, copy, delete jobs, workflows and alarm channels; tokens; the worker secret's rotation |

use serde::{Deserialize, Serialize};

use crate::ids::AppId;
use crate::time_expression::EpochMs;

/// Most live (not revoked) tokens an app holds.
pub const MAX_TOKENS_PER_APP: usize = 64;
/// Longest token name, in bytes.
pub const MAX_TOKEN_NAME_LEN: usize = 128;
/// Shortest worker secret of an app created or rotated now, in bytes (apps stored by older
/// servers keep working with shorter ones).
pub const MIN_NEW_SECRET_LEN: usize = 16;
/// Longest overlap of a secret rotation, seconds (30 days).
pub const MAX_OVERLAP_SECS: u64 = 30 * 24 * 3600;
/// Default overlap of a secret rotation, seconds (1 hour).
pub const DEFAULT_OVERLAP_SECS: u64 = 3600;
/// The prefix of every API token.
pub const TOKEN_PREFIX: &str = "fjt_";

/// What a token may do in its app; ordered, each role includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenRole {
    /// Every `GET` route of the app.
    Read,
    /// `read`, and runs, stops, retries, enable and disable.
    Operate,
    /// `operate`, and definitions (create, update, delete), tokens and the worker secret.
    Admin,
}

impl TokenRole {
    /// The JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenRole::Read => "read",
            TokenRole::Operate => "operate",
            TokenRole::Admin => "admin",
        }
    }
}

impl std::fmt::Display for TokenRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TokenRole {
    type Err = String;
    fn from_str(s: &str) -> Result<TokenRole, String> {
        match s {
            "read" => Ok(TokenRole::Read),
            "operate" => Ok(TokenRole::Operate),
            "admin" => Ok(TokenRole::Admin),
            _ => Err(format!(
                "unknown role {s:?}: expected read, operate or admin"
            )),
        }
    }
}

/// `POST /v1/apps/{app}/tokens` body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// What the token is for (1 to [`MAX_TOKEN_NAME_LEN`] bytes; not unique).
    pub name: String,
    /// Its role.
    pub role: TokenRole,
    /// Seconds from now until it stops working; absent = it never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_secs: Option<u64>,
}

/// A token as listed: everything but the token itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenView {
    /// Its id (the `<id>` of `fjt_<id>_...`).
    pub id: u64,
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: TokenRole,
    /// Creation time, epoch ms.
    pub created_at: EpochMs,
    /// When it stops working, epoch ms; absent = never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<EpochMs>,
}

/// `POST /v1/apps/{app}/tokens` answer (201): the only time the token is shown.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCreated {
    /// The token's description.
    #[serde(flatten)]
    pub view: TokenView,
    /// The bearer token; the server keeps only its hash.
    pub token: String,
}

impl std::fmt::Debug for TokenCreated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCreated")
            .field("view", &self.view)
            .finish_non_exhaustive()
    }
}

/// `GET /v1/apps/{app}/tokens` answer: the app's live tokens, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenList {
    /// The tokens.
    pub items: Vec<TokenView>,
}

/// A stored token as the HTTP layer checks it.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenGrant {
    /// The token's id.
    pub id: u64,
    /// The app it opens.
    pub app_id: AppId,
    /// Its role.
    pub role: TokenRole,
    /// SHA-256 of the token.
    pub hash: [u8; 32],
    /// When it stops working, epoch ms; `None` = never.
    pub expires_at: Option<EpochMs>,
}

impl std::fmt::Debug for TokenGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenGrant")
            .field("id", &self.id)
            .field("app_id", &self.app_id)
            .field("role", &self.role)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// An app as `GET /v1/apps` and `GET /v1/apps/{app}` show it (never its secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppView {
    /// The app's id.
    pub id: AppId,
    /// Its name.
    pub name: String,
    /// Creation time, epoch ms.
    pub created_at: EpochMs,
    /// While a rotation's overlap lasts: when the previous worker secret stops working,
    /// epoch ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret_until: Option<EpochMs>,
}

/// `GET /v1/apps` answer (admin): every app, by id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppList {
    /// The apps.
    pub items: Vec<AppView>,
}

/// `DELETE /v1/apps/{app}?force=` query.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteAppQuery {
    /// Delete the app's jobs and workflows too; without it an app that has any is refused
    /// (409).
    #[serde(default)]
    pub force: Option<bool>,
}

/// `POST /v1/apps/{app}/rotate-secret` body.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// The new worker secret ([`MIN_NEW_SECRET_LEN`] bytes or more); absent = the server
    /// generates one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// How long the previous secret keeps working, seconds (at most [`MAX_OVERLAP_SECS`],
    /// default [`DEFAULT_OVERLAP_SECS`]; 0 ends it at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap_secs: Option<u64>,
}

impl std::fmt::Debug for RotateSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotateSecret")
            .field("overlap_secs", &self.overlap_secs)
            .finish_non_exhaustive()
    }
}

/// `POST /v1/apps/{app}/rotate-secret` answer.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRotated {
    /// The new worker secret (shown here once when the server generated it; the one sent
    /// otherwise).
    pub secret: String,
    /// When the previous secret stops working, epoch ms.
    pub previous_secret_until: EpochMs,
}

impl std::fmt::Debug for SecretRotated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretRotated")
            .field("previous_secret_until", &self.previous_secret_until)
            .finish_non_exhaustive()
    }
}

/// The id of a token of the form `fjt_<id>_<64 hex digits>`; `None` for any other text.
pub fn token_id(token: &str) -> Option<u64> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    if secret.len() != 64 || !secret.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    id.parse().ok()
}

/// SHA-256 of `token`, as stored.
#[cfg(any(feature = "server", feature = "http"))]
pub fn token_hash(token: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}

/// Checks the name and secret of an app created now: the name is not all digits (`{app}`
/// in a route would read it as an id) and the secret has [`MIN_NEW_SECRET_LEN`] bytes.
pub fn check_new_app(name: &str, secret: &str) -> Result<(), super::ApiError> {
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
        return Err(super::ApiError::invalid(
            "name",
            "must not be all digits (routes read a number as an app id)",
        ));
    }
    check_new_secret(secret)
}

/// Checks a worker secret set now: at least [`MIN_NEW_SECRET_LEN`] bytes.
pub fn check_new_secret(secret: &str) -> Result<(), super::ApiError> {
    if secret.len() < MIN_NEW_SECRET_LEN {
        return Err(super::ApiError::invalid(
            "secret",
            format!(
                "must be at least {MIN_NEW_SECRET_LEN} bytes, got {}",
                secret.len()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn token_ids_parse_only_from_well_formed_tokens() {
        let hex = "0123456789abcdef".repeat(4);
        assert_eq!(token_id(&format!("fjt_42_{hex}")), Some(42));
        assert_eq!(token_id(&format!("fjt_42_{}", &hex[1..])), None);
        assert_eq!(token_id(&format!("fjt__{hex}")), None);
        assert_eq!(token_id(&format!("fjt_-1_{hex}")), None);
        assert_eq!(token_id(&format!("xyz_42_{hex}")), None);
        assert_eq!(token_id(&format!("fjt_42_{}g", &hex[1..])), None);
        assert_eq!(token_id("fjt_1"), None);
    }

    #[test]
    fn roles_are_ordered_and_named() {
        assert!(TokenRole::Read < TokenRole::Operate && TokenRole::Operate < TokenRole::Admin);
        for r in [TokenRole::Read, TokenRole::Operate, TokenRole::Admin] {
            assert_eq!(r.as_str().parse::<TokenRole>(), Ok(r));
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{r}\""));
        }
        assert!("owner".parse::<TokenRole>().is_err());
    }

    #[test]
    fn new_apps_need_long_secrets_and_non_numeric_names() {
        assert!(check_new_app("shop", "0123456789abcdef").is_ok());
        assert!(check_new_app("shop", "0123456789abcde").is_err());
        assert!(check_new_app("2", "0123456789abcdef").is_err());
        assert!(check_new_app("2b", "0123456789abcdef").is_ok());
    }
}
