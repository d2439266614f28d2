//! The app and token operations of [`NodeApi`]: API tokens (created with 256 random bits,
//! stored as their SHA-256), the app listing and deletion, and the worker secret's rotation.

use rand::RngCore;

use crate::api::Api;
use crate::api::{
    check_new_secret, token_hash, ApiError, AppList, AppRef, AppView, CreateToken, JobQuery,
    RotateSecret, SecretRotated, TokenCreated, TokenGrant, TokenList, TokenView, WorkflowQuery,
    DEFAULT_OVERLAP_SECS, MAX_OVERLAP_SECS, MAX_TOKENS_PER_APP, MAX_TOKEN_NAME_LEN, TOKEN_PREFIX,
};
use crate::server::token_repo::{role_byte, role_of, TokenRecord, MAX_TOKEN_ID};
use crate::server::AppRecord;

use super::api::NodeApi;

/// Most delete rounds of a forced app deletion (workflows nested in workflows are deleted
/// outermost first, one level a round).
const FORCE_ROUNDS: usize = 16;

/// Ids drawn for a new token before giving up (a collision among 2^53 ids is rare).
const ID_DRAWS: usize = 8;

/// 32 random bytes, hex.
fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn view(t: &TokenRecord) -> TokenView {
    TokenView {
        id: t.id,
        name: t.name.clone(),
        role: role_of(t.role),
        created_at: t.created_at,
        expires_at: t.expires_at,
    }
}

impl NodeApi {
    pub(super) fn token_grant_of(&self, id: u64) -> Result<Option<TokenGrant>, ApiError> {
        Ok(self.0.repo.token(id)?.map(|t| TokenGrant {
            id: t.id,
            app_id: t.app_id,
            role: role_of(t.role),
            hash: t.hash,
            expires_at: t.expires_at,
        }))
    }

    pub(super) async fn create_token_of(
        &self,
        app: AppRef,
        req: CreateToken,
    ) -> Result<TokenCreated, ApiError> {
        let sh = &self.0;
        let name = req.name.trim();
        if name.is_empty() || name.len() > MAX_TOKEN_NAME_LEN || name.chars().any(char::is_control)
        {
            return Err(ApiError::invalid(
                "name",
                format!("must be 1 to {MAX_TOKEN_NAME_LEN} bytes without control characters"),
            ));
        }
        let now = sh.now();
        let expires_at = match req.expires_in_secs {
            None => None,
            Some(0) => return Err(ApiError::invalid("expires_in_secs", "must be at least 1")),
            Some(s) => Some(
                i64::try_from(s.saturating_mul(1000)).map_or(i64::MAX, |ms| now.saturating_add(ms)),
            ),
        };
        let held = sh.repo.list_tokens(app.id)?.len();
        if held >= MAX_TOKENS_PER_APP {
            return Err(ApiError::conflict(format!(
                "app {} already has {held} tokens, the most an app may hold ({MAX_TOKENS_PER_APP}); revoke one first",
                app.name
            )));
        }
        let mut saved = None;
        for _ in 0..ID_DRAWS {
            let id = (rand::random::<u64>() & MAX_TOKEN_ID).max(1);
            let token = format!("{TOKEN_PREFIX}{id}_{}", random_hex());
            let record = TokenRecord {
                id,
                app_id: app.id,
                name: name.to_owned(),
                role: role_byte(req.role),
                hash: token_hash(&token),
                created_at: now,
                expires_at,
            };
            match sh.repo.create_token(record) {
                Ok(commit) => {
                    saved = Some((sh.await_commit(commit).await?, token));
                    break;
                }
                Err(crate::server::RepoError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        let (saved, token) =
            saved.ok_or_else(|| ApiError::internal("no free token id was drawn"))?;
        let id = saved.id;
        tracing::info!(app = %app.name, token = id, role = %req.role, "API token created");
        Ok(TokenCreated {
            view: view(&saved),
            token,
        })
    }

    pub(super) fn list_tokens_of(&self, app: &AppRef) -> Result<TokenList, ApiError> {
        let items = self.0.repo.list_tokens(app.id)?.iter().map(view).collect();
        Ok(TokenList { items })
    }

    pub(super) async fn revoke_token_of(&self, app: AppRef, id: u64) -> Result<(), ApiError> {
        let sh = &self.0;
        sh.await_commit(sh.repo.revoke_token(app.id, id)?).await?;
        tracing::info!(app = %app.name, token = id, "API token revoked");
        Ok(())
    }

    fn app_view(&self, rec: &AppRecord) -> Result<AppView, ApiError> {
        let now = self.0.now();
        let previous = self.0.repo.previous_secret(rec.id)?;
        Ok(AppView {
            id: rec.id,
            name: rec.name.clone(),
            created_at: rec.created_at,
            previous_secret_until: previous.map(|p| p.until).filter(|&u| u > now),
        })
    }

    pub(super) fn list_apps_of(&self) -> Result<AppList, ApiError> {
        let apps = self.0.repo.list_apps()?;
        let items = apps
            .iter()
            .map(|a| self.app_view(a))
            .collect::<Result<_, _>>()?;
        Ok(AppList { items })
    }

    pub(super) fn get_app_of(&self, app: &AppRef) -> Result<AppView, ApiError> {
        self.app_view(&self.0.repo.get_app(app.id)?)
    }

    pub(super) async fn delete_app_of(&self, app: AppRef, force: bool) -> Result<(), ApiError> {
        if force {
            self.delete_definitions(&app).await?;
        }
        let sh = &self.0;
        let commit = sh.repo.delete_app(app.id).map_err(|e| match e {
            crate::server::RepoError::Invalid { .. } => ApiError::conflict(format!(
                "app {} still has jobs or workflows: delete them first, or pass force=true",
                app.name
            )),
            e => e.into(),
        })?;
        // Forgotten before the write is acknowledged: no new worker or request reaches it.
        sh.step(|core, _| core.remove_app(app.id));
        sh.await_commit(commit).await?;
        tracing::info!(app = %app.name, force, "app deleted");
        Ok(())
    }

    /// Deletes every workflow, then every job of `app` (a forced deletion). A workflow
    /// nested in another goes in the round after its parent; a round that deletes nothing
    /// (a running instance, say) ends it with that round's refusal.
    async fn delete_definitions(&self, app: &AppRef) -> Result<(), ApiError> {
        for _ in 0..FORCE_ROUNDS {
            let page = WorkflowQuery {
                limit: Some(500),
                ..WorkflowQuery::default()
            };
            let workflows = self.list_workflows(app.clone(), page).await?.items;
            if workflows.is_empty() {
                break;
            }
            let mut deleted = 0usize;
            let mut refused = None;
            for w in workflows {
                match self.delete_workflow(app.clone(), w.id).await {
                    Ok(()) => deleted += 1,
                    Err(e) => refused = Some(e),
                }
            }
            if let (0, Some(e)) = (deleted, refused) {
                return Err(e);
            }
        }
        loop {
            let page = JobQuery {
                limit: Some(500),
                ..JobQuery::default()
            };
            let jobs = self.list_jobs(app.clone(), page).await?.items;
            if jobs.is_empty() {
                return Ok(());
            }
            for j in jobs {
                self.delete_job(app.clone(), j.id).await?;
            }
        }
    }

    pub(super) async fn rotate_secret_of(
        &self,
        app: AppRef,
        req: RotateSecret,
    ) -> Result<SecretRotated, ApiError> {
        let sh = &self.0;
        let secret = match req.secret {
            Some(s) => {
                check_new_secret(&s)?;
                s
            }
            None => random_hex(),
        };
        let overlap = req.overlap_secs.unwrap_or(DEFAULT_OVERLAP_SECS);
        if overlap > MAX_OVERLAP_SECS {
            return Err(ApiError::invalid(
                "overlap_secs",
                format!("must be at most {MAX_OVERLAP_SECS}"),
            ));
        }
        let until = sh
            .now()
            .saturating_add(i64::try_from(overlap * 1000).unwrap_or(i64::MAX));
        let saved = sh
            .await_commit(sh.repo.rotate_secret(app.id, &secret, until)?)
            .await?;
        sh.step(|core, _| core.add_app(saved));
        tracing::info!(app = %app.name, overlap_secs = overlap, "worker secret rotated");
        Ok(SecretRotated {
            secret,
            previous_secret_until: until,
        })
    }
}
