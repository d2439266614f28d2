//! An app's API tokens, its previous worker secret during a rotation, and the app's deletion.
//!
//! | table              | key                          | value                    | purpose |
//! |--------------------|------------------------------|--------------------------|---------|
//! | `api_tokens`       | token id (8)                 | [`TokenRecord`]          | tokens by id (the id is in the token) |
//! | `app_tokens`       | app id (8) ++ token id (8)   | empty                    | an app's tokens |
//! | `app_prev_secrets` | app id (8)                   | [`PreviousSecretRecord`] | the secret a rotation replaced, and until when it still works |
//!
//! A token record holds the SHA-256 of the token, never the token. Token ids are drawn at
//! random by the caller (53 bits, so that they stay exact as JSON numbers in every client)
//! rather than counted; [`LogRepo::create_token`] refuses an id that is taken.
//! A revoked token's rows are deleted. Deleting an app deletes its record, its name, its
//! tokens, its previous secret and its audit trail in one batch; the caller removes its jobs
//! and workflows first (the repository refuses while index rows of either remain).

use ferrojob_store::{Batch, KeyRange, Scan};
use rkyv::{Archive, Deserialize, Serialize};

use crate::ids::AppId;
use crate::time_expression::EpochMs;

use super::codec::{decode, encode};
use super::error::RepoError;
use super::keys::{self, APPS, APP_JOBS, APP_NAMES};
use super::records::AppRecord;
use super::repo::{Commit, LogRepo};
use super::workflow_repo::APP_WORKFLOWS;

/// Tokens by id.
pub const API_TOKENS: &str = "api_tokens";
/// Index: app id ++ token id.
pub const APP_TOKENS: &str = "app_tokens";
/// The previous worker secret of an app during a rotation's overlap.
pub const APP_PREV_SECRETS: &str = "app_prev_secrets";

/// Largest token id: 2^53 - 1, exact as a JSON number in every client.
pub const MAX_TOKEN_ID: u64 = (1 << 53) - 1;

/// An API token: its app, role and hash.
#[derive(Clone, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Random, 1 to 2^53 - 1.
    pub id: u64,
    /// The app it opens.
    pub app_id: AppId,
    /// What it is for.
    pub name: String,
    /// 0 read, 1 operate, 2 admin.
    pub role: u8,
    /// SHA-256 of the token.
    pub hash: [u8; 32],
    /// Creation time, ms since the epoch.
    pub created_at: EpochMs,
    /// When it stops working, ms since the epoch; `None` = never.
    pub expires_at: Option<EpochMs>,
}

impl std::fmt::Debug for TokenRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRecord")
            .field("id", &self.id)
            .field("app_id", &self.app_id)
            .field("name", &self.name)
            .field("role", &self.role)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl TokenRecord {
    /// Invalid if the id is 0 or beyond [`MAX_TOKEN_ID`], or the role byte beyond 2.
    pub fn validate(&self) -> Result<(), RepoError> {
        if self.id == 0 || self.id > MAX_TOKEN_ID {
            return Err(RepoError::invalid("id", "a token id is 1 to 2^53 - 1"));
        }
        if self.role > role_byte(crate::api::TokenRole::Admin) {
            return Err(RepoError::invalid(
                "role",
                "a role is 0 (read), 1 (operate) or 2 (admin)",
            ));
        }
        Ok(())
    }
}

/// The worker secret a rotation replaced.
#[derive(Clone, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct PreviousSecretRecord {
    /// The replaced secret.
    pub secret: String,
    /// Until when handshakes may still prove it, ms since the epoch (exclusive).
    pub until: EpochMs,
}

impl std::fmt::Debug for PreviousSecretRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreviousSecretRecord")
            .field("until", &self.until)
            .finish_non_exhaustive()
    }
}

impl LogRepo {
    /// Stores `token`; Conflict if its id is taken (the caller draws another), Invalid if
    /// [`TokenRecord::validate`] refuses it.
    pub fn create_token(&self, token: TokenRecord) -> Result<Commit<TokenRecord>, RepoError> {
        self.get_app(token.app_id)?;
        token.validate()?;
        if self.store.get(API_TOKENS, &keys::id(token.id))?.is_some() {
            return Err(RepoError::Conflict {
                what: "token",
                name: token.id.to_string(),
            });
        }
        let batch = Batch::new()
            .put(API_TOKENS, keys::id(token.id), encode(API_TOKENS, &token)?)
            .put(APP_TOKENS, keys::pair(token.app_id.0, token.id), Vec::new());
        Ok(self.submit(batch, token))
    }

    /// Token `id`, if it exists.
    pub fn token(&self, id: u64) -> Result<Option<TokenRecord>, RepoError> {
        let key = keys::id(id);
        match self.store.get(API_TOKENS, &key)? {
            None => Ok(None),
            Some(v) => decode(API_TOKENS, &key, &v).map(Some),
        }
    }

    /// Every token of `app`, by id.
    pub fn list_tokens(&self, app: AppId) -> Result<Vec<TokenRecord>, RepoError> {
        let mut out = Vec::new();
        for kv in Scan::new(&*self.store, APP_TOKENS, KeyRange::prefix(&keys::id(app.0))) {
            let (k, _) = kv?;
            let id = keys::read_child(APP_TOKENS, &k)?;
            if let Some(t) = self.token(id)? {
                out.push(t);
            }
        }
        Ok(out)
    }

    /// Deletes token `id` of `app`; NotFound if `app` has no such token.
    pub fn revoke_token(&self, app: AppId, id: u64) -> Result<Commit<()>, RepoError> {
        match self.token(id)? {
            Some(t) if t.app_id == app => {}
            _ => return Err(RepoError::not_found("token", id)),
        }
        let batch = Batch::new()
            .delete(API_TOKENS, keys::id(id).to_vec())
            .delete(APP_TOKENS, keys::pair(app.0, id).to_vec());
        Ok(self.submit(batch, ()))
    }

    /// Replaces `app`'s secret with `secret` and keeps the old one as `previous`'s secret
    /// until `previous.until`, in one batch; answers the updated record.
    pub fn rotate_secret(
        &self,
        app: AppId,
        secret: &str,
        until: EpochMs,
    ) -> Result<Commit<AppRecord>, RepoError> {
        let mut rec = self.get_app(app)?;
        let previous = PreviousSecretRecord {
            secret: std::mem::replace(&mut rec.secret, secret.to_owned()),
            until,
        };
        rec.validate()?;
        let batch = Batch::new()
            .put(APPS, keys::id(app.0), encode(APPS, &rec)?)
            .put(
                APP_PREV_SECRETS,
                keys::id(app.0),
                encode(APP_PREV_SECRETS, &previous)?,
            );
        Ok(self.submit(batch, rec))
    }

    /// The secret `app`'s last rotation replaced, with its end (which may be past).
    pub fn previous_secret(&self, app: AppId) -> Result<Option<PreviousSecretRecord>, RepoError> {
        let key = keys::id(app.0);
        match self.store.get(APP_PREV_SECRETS, &key)? {
            None => Ok(None),
            Some(v) => decode(APP_PREV_SECRETS, &key, &v).map(Some),
        }
    }

    /// Deletes `app` (record, name, tokens, previous secret, calendars) in one batch; Invalid while it
    /// still has jobs or workflows. The name is free for a new app once this is submitted.
    pub fn delete_app(&self, app: AppId) -> Result<Commit<()>, RepoError> {
        let rec = self.get_app(app)?;
        let prefix = keys::id(app.0);
        for table in [APP_JOBS, APP_WORKFLOWS] {
            if let Some(kv) = Scan::new(&*self.store, table, KeyRange::prefix(&prefix)).next() {
                kv?;
                return Err(RepoError::invalid(
                    "app",
                    format!("app {} still has jobs or workflows", rec.name),
                ));
            }
        }
        let mut batch = Batch::new()
            .delete(APPS, prefix.to_vec())
            .delete(APP_NAMES, rec.name.as_bytes().to_vec())
            .delete(APP_PREV_SECRETS, prefix.to_vec());
        for kv in Scan::new(&*self.store, APP_TOKENS, KeyRange::prefix(&prefix)) {
            let (k, _) = kv?;
            let id = keys::read_child(APP_TOKENS, &k)?;
            batch = batch
                .delete(API_TOKENS, keys::id(id).to_vec())
                .delete(APP_TOKENS, k);
        }
        let batch = self.delete_calendars_ops(batch, app)?;
        let batch = self.without_audit(batch, app)?;
        let commit = self.submit(batch, ());
        self.forget_app_name(&rec.name);
        Ok(commit)
    }
}

/// The role byte of a [`TokenRecord`].
pub fn role_byte(role: crate::api::TokenRole) -> u8 {
    match role {
        crate::api::TokenRole::Read => 0,
        crate::api::TokenRole::Operate => 1,
        crate::api::TokenRole::Admin => 2,
    }
}

/// The role of a [`TokenRecord`]'s byte; an unknown byte reads as `read`, the least.
pub fn role_of(byte: u8) -> crate::api::TokenRole {
    match byte {
        2 => crate::api::TokenRole::Admin,
        1 => crate::api::TokenRole::Operate,
        _ => crate::api::TokenRole::Read,
    }
}
