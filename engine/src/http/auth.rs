//! Bearer-token authorization.
//!
//! - Server-wide routes (`POST /v1/apps`, `GET /v1/apps`, `DELETE /v1/apps/{app}`) need the
//!   admin token: no token is 401, any other token 403.
//! - App routes (`/v1/apps/{app}/...`) accept the admin token (every role), or an API token
//!   of `{app}` (`fjt_<id>_<hex>`, see [`crate::api::token`]) whose role is at least the
//!   route's: `read` for `GET`, `operate` for runs, stops, retries, enable and disable,
//!   `admin` for definitions, tokens and deletions. A token of another role is 403 naming
//!   both roles.
//!   With [`HttpConfig::app_secret_tokens`](super::HttpConfig::app_secret_tokens) the
//!   app's worker secret also opens its routes as an `admin` token (the compatibility mode of
//!   servers that predate API tokens); without it the secret is refused like any wrong
//!   token. No token, a wrong, revoked or expired token, another app's token, and a token
//!   naming an app that does not exist are all the same 401, so a caller without the admin
//!   token cannot learn which apps exist. With the admin token an unknown app is 404.
//! - An authorized request takes a token from its app's bucket (the admin's on admin
//!   routes) when [`HttpConfig::api_rate`](super::HttpConfig::api_rate) is set; an empty
//!   bucket is 429 with `Retry-After`. A batch of runs (`POST .../jobs/{id}/runs`) takes
//!   one token per run: the rest once its body is read (a batch beyond the bucket's burst
//!   is 413). Requests that fail authorization take none, but count
//!   against their source address (`guard`, [`super::failures`]).
//! - Tokens are compared in constant time: the admin token and the compatibility secret
//!   byte for byte (in the longer of the two lengths), API tokens by their SHA-256; an empty
//!   admin token or app secret never matches.

use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;

use super::failure::Failure;
use super::rate::retry_after_secs;
use super::Shared;
use crate::api::{token_hash, token_id, Api, ApiError, AppRef, ErrorCode, TokenRole};
use crate::time_expression::EpochMs;

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive, surrounding spaces
/// ignored); `None` when the header is missing, not ASCII, of another scheme, or empty.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty()).then_some(token)
}

/// `a == b`, in time that depends only on the longer length, not on where they differ.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let len = a.len().max(b.len());
    // Different lengths are a difference too, folded in without an early return.
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..len {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= std::hint::black_box(x ^ y);
    }
    diff == 0
}

fn missing_token() -> Failure {
    Failure::unauthorized("missing `Authorization: Bearer <token>` header")
}

/// What a token opens in one app.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    /// The app.
    pub(crate) app: AppRef,
    /// The role in it.
    pub(crate) role: TokenRole,
    /// Opened with the admin token (which may also switch apps in the console).
    pub(crate) admin: bool,
}

/// Why a token opens nothing.
#[derive(Debug)]
pub(crate) enum Denied {
    /// The token is not valid for the app (or the app does not exist and the token is not
    /// the admin token).
    Invalid,
    /// The admin token named an app that does not exist, or the [`Api`] failed.
    Api(ApiError),
}

/// The tokens the server accepts besides API tokens.
#[derive(Clone)]
pub(crate) struct Credentials {
    /// The admin token (empty: none).
    pub(crate) admin_token: std::sync::Arc<str>,
    /// Whether an app's worker secret opens its routes as an `admin` token.
    pub(crate) app_secret_tokens: bool,
}

impl Credentials {
    pub(crate) fn is_admin(&self, token: &str) -> bool {
        !self.admin_token.is_empty() && ct_eq(token.as_bytes(), self.admin_token.as_bytes())
    }

    /// What `token` opens in `app` at `now` (epoch ms). The one check behind both the
    /// OpenAPI and the console's sign-in.
    pub(crate) fn authenticate(
        &self,
        api: &dyn Api,
        app: &str,
        token: &str,
        now: EpochMs,
    ) -> Result<Grant, Denied> {
        if self.is_admin(token) {
            let app = api.resolve_app(app).map_err(Denied::Api)?;
            return Ok(Grant {
                app,
                role: TokenRole::Admin,
                admin: true,
            });
        }
        let found = match api.resolve_app(app) {
            Ok(found) => found,
            // Do not tell a caller without the admin token whether the app exists.
            Err(e) if matches!(e.code, ErrorCode::NotFound | ErrorCode::InvalidArgument) => {
                return Err(Denied::Invalid)
            }
            Err(e) => return Err(Denied::Api(e)),
        };
        if let Some(id) = token_id(token) {
            let grant = api.token_grant(id).map_err(Denied::Api)?;
            let Some(grant) = grant else {
                return Err(Denied::Invalid);
            };
            let hash_ok = ct_eq(&token_hash(token), &grant.hash);
            let live = grant.expires_at.is_none_or(|t| now < t);
            if hash_ok && live && grant.app_id == found.id {
                return Ok(Grant {
                    app: found,
                    role: grant.role,
                    admin: false,
                });
            }
            return Err(Denied::Invalid);
        }
        if self.app_secret_tokens
            && !found.secret.is_empty()
            && ct_eq(token.as_bytes(), found.secret.as_bytes())
        {
            return Ok(Grant {
                app: found,
                role: TokenRole::Admin,
                admin: false,
            });
        }
        Err(Denied::Invalid)
    }
}

impl Shared {
    /// Takes a token from `principal`'s bucket, or answers 429.
    fn admit(&self, principal: &str) -> Result<(), Failure> {
        let Some(rate) = &self.rate else {
            return Ok(());
        };
        rate.check(principal, self.clock.now_ms())
            .map_err(|wait_ms| {
                self.metrics.rate_limited();
                Failure::rate_limited(retry_after_secs(wait_ms))
            })
    }

    /// Takes `more` tokens from app `principal`'s bucket beyond the one its request took
    /// (one per run of a batch), or answers 429 — or 413 when `more + 1` is beyond the
    /// bucket's burst, which no wait would make room for.
    pub(crate) fn admit_more(&self, principal: &str, more: u64) -> Result<(), Failure> {
        let Some(rate) = &self.rate else {
            return Ok(());
        };
        if more == 0 {
            return Ok(());
        }
        let burst = rate.burst();
        if more.saturating_add(1) > burst {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "runs: {} runs take {} tokens of the app's request rate, whose burst is {burst}; send at most {burst} runs in one request",
                    more.saturating_add(1),
                    more.saturating_add(1)
                ),
            )
            .into());
        }
        rate.take(principal, more, self.clock.now_ms())
            .map_err(|wait_ms| {
                self.metrics.rate_limited();
                Failure::rate_limited(retry_after_secs(wait_ms))
            })
    }

    /// Admits the admin token only (within the admin's rate).
    pub(crate) fn authorize_admin(&self, headers: &HeaderMap) -> Result<(), Failure> {
        let token = bearer(headers).ok_or_else(missing_token)?;
        if self.credentials.is_admin(token) {
            // App names are path segments: `/` cannot be one, so the key is the admin's own.
            self.admit("/")
        } else {
            Err(Failure::not_admin())
        }
    }

    /// Admits the admin token or a token of `app` with at least the role `need` (within the
    /// app's rate), and answers the app.
    pub(crate) fn authorize_app(
        &self,
        headers: &HeaderMap,
        app: &str,
        need: TokenRole,
    ) -> Result<AppRef, Failure> {
        let token = bearer(headers).ok_or_else(missing_token)?;
        let grant = self
            .credentials
            .authenticate(&*self.api, app, token, self.clock.now_ms())
            .map_err(|d| match d {
                Denied::Invalid => Failure::unauthorized("the token is not valid for this app"),
                Denied::Api(e) => e.into(),
            })?;
        if grant.role < need {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "this token's role is `{}`; this route needs `{need}`",
                    grant.role
                ),
            )
            .into());
        }
        self.admit(&grant.app.name)?;
        Ok(grant.app)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn bearer_parses_the_scheme_case_insensitively() {
        assert_eq!(bearer(&headers("Bearer abc")), Some("abc"));
        assert_eq!(bearer(&headers("bearer   abc  ")), Some("abc"));
        assert_eq!(bearer(&headers("Basic abc")), None);
        assert_eq!(bearer(&headers("Bearer ")), None);
        assert_eq!(bearer(&headers("Bearer")), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
    }

    #[test]
    fn ct_eq_is_equality() {
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(b"secret", b"secret"));
        assert!(!ct_eq(b"secret", b"secreT"));
        assert!(!ct_eq(b"secret", b"secret2"));
        assert!(!ct_eq(b"secret", b""));
        // A zero byte past the end is still a difference in length.
        assert!(!ct_eq(b"a", b"a\0"));
    }
}
