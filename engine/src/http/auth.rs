//! Bearer-token authorization.
//!
//! - Admin routes (`POST /v1/apps`) need the admin token: no token is 401, any other token
//!   403 (the HTTP layer cannot tell an app secret from a wrong token without a lookup by
//!   secret, and either way the caller is not the admin).
//! - App routes (`/v1/apps/{app}/...`) accept the admin token or the secret of `{app}`. No
//!   token, a wrong token, another app's secret, and a non-admin token naming an app that does
//!   not exist are all the same 401, so a caller without the admin token cannot learn which
//!   apps exist. With the admin token an unknown app is 404.
//! - An authorized request takes a token from its app's bucket (the admin's on admin
//!   routes) when [`HttpConfig::api_rate`](super::HttpConfig::api_rate) is set; an empty
//!   bucket is 429 with `Retry-After`. Requests that fail authorization take none.
//! - Tokens are compared in constant time (in the longer of the two lengths); an empty
//!   admin token or app secret never matches.

use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;

use super::failure::Failure;
use super::rate::retry_after_secs;
use super::Shared;
use crate::api::{ApiError, AppRef, ErrorCode};

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

impl Shared {
    fn is_admin(&self, token: &str) -> bool {
        !self.admin_token.is_empty() && ct_eq(token.as_bytes(), self.admin_token.as_bytes())
    }

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

    /// Admits the admin token only (within the admin's rate).
    pub(crate) fn authorize_admin(&self, headers: &HeaderMap) -> Result<(), Failure> {
        let token = bearer(headers).ok_or_else(missing_token)?;
        if self.is_admin(token) {
            // App names are path segments: `/` cannot be one, so the key is the admin's own.
            self.admit("/")
        } else {
            Err(ApiError::new(ErrorCode::Forbidden, "this route needs the admin token").into())
        }
    }

    /// Admits the admin token or `app`'s secret (within the app's rate), and answers the app.
    pub(crate) fn authorize_app(&self, headers: &HeaderMap, app: &str) -> Result<AppRef, Failure> {
        let found = self.authenticate_app(headers, app)?;
        self.admit(&found.name)?;
        Ok(found)
    }

    fn authenticate_app(&self, headers: &HeaderMap, app: &str) -> Result<AppRef, Failure> {
        let token = bearer(headers).ok_or_else(missing_token)?;
        if self.is_admin(token) {
            return Ok(self.api.resolve_app(app)?);
        }
        let denied = || Failure::unauthorized("the token is not valid for this app");
        match self.api.resolve_app(app) {
            Ok(found) => {
                if !found.secret.is_empty() && ct_eq(token.as_bytes(), found.secret.as_bytes()) {
                    Ok(found)
                } else {
                    Err(denied())
                }
            }
            // Do not tell a caller without the admin token whether the app exists.
            Err(e) if matches!(e.code, ErrorCode::NotFound | ErrorCode::InvalidArgument) => {
                Err(denied())
            }
            Err(e) => Err(e.into()),
        }
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
