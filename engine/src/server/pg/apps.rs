//! Apps, their API tokens, secret rotation and deletion.
//!
//! The checks that read before they write (a token id taken, an app that still has jobs)
//! first wait for every write queued before them, so that they see what the log store's
//! would: every write submitted, committed or not.

use tokio_postgres::Row;

use crate::api::TokenRole;
use crate::ids::AppId;
use crate::server::error::RepoError;
use crate::server::records::{AppRecord, MAX_NAME_LEN};
use crate::server::repo::Commit;
use crate::server::token_repo::{role_byte, role_of, PreviousSecretRecord, TokenRecord};
use crate::time_expression::EpochMs;

use super::tables::{self, Op, Table, Val};
use super::{big, get, i64s, text, unsigned, PgRepo};

impl PgRepo {
    pub(super) fn create_app(
        &self,
        name: &str,
        secret: &str,
        now: EpochMs,
    ) -> Result<Commit<AppRecord>, RepoError> {
        let mut app = AppRecord {
            id: AppId(0),
            name: name.to_owned(),
            secret: secret.to_owned(),
            created_at: now,
        };
        app.validate()?;
        let mut inner = self.lock();
        if inner.app_names.contains_key(name) {
            return Err(RepoError::Conflict {
                what: "app",
                name: name.to_owned(),
            });
        }
        app.id = AppId(self.alloc(&self.app_ids, 1)?);
        let ops = vec![Self::app_op(&app)?];
        tables::check_text(&ops)?;
        inner.app_names.insert(name.to_owned(), app.id);
        Ok(self.submit(ops, app))
    }

    pub(super) fn get_app(&self, id: AppId) -> Result<AppRecord, RepoError> {
        match self.query_opt(
            "SELECT id, name, secret, created_at FROM apps WHERE id = $1",
            vec![Box::new(big(id.0)?)],
        )? {
            Some(row) => Self::app_from(&row),
            None => Err(RepoError::not_found("app", id.0)),
        }
    }

    pub(super) fn get_app_by_name(&self, name: &str) -> Result<AppRecord, RepoError> {
        if name.len() > MAX_NAME_LEN {
            let shown: String = name.chars().take(32).collect();
            return Err(RepoError::not_found("app", format!("{shown}...")));
        }
        match self.query_opt(
            "SELECT id, name, secret, created_at FROM apps WHERE name = $1",
            vec![Box::new(name.to_owned())],
        )? {
            Some(row) => {
                let app = Self::app_from(&row)?;
                // Another server may have created it: the fence learns its partition.
                if let Some(f) = self.fencing.get() {
                    f.learn_app(app.id, &app.name);
                }
                Ok(app)
            }
            None => Err(RepoError::not_found("app", name)),
        }
    }

    pub(super) fn list_apps(&self) -> Result<Vec<AppRecord>, RepoError> {
        self.query(
            "SELECT id, name, secret, created_at FROM apps ORDER BY id",
            vec![],
        )?
        .iter()
        .map(Self::app_from)
        .collect()
    }

    pub(super) fn rotate_secret(
        &self,
        app: AppId,
        secret: &str,
        until: EpochMs,
    ) -> Result<Commit<AppRecord>, RepoError> {
        let mut rec = self.get_app(app)?;
        let previous = std::mem::replace(&mut rec.secret, secret.to_owned());
        rec.validate()?;
        let id = big(app.0)?;
        let ops = vec![
            Self::app_op(&rec)?,
            Op::Put(
                Table::AppPreviousSecrets,
                vec![i64s(Some(id)), text(&previous), i64s(Some(until))],
            ),
        ];
        Ok(self.submit(ops, rec))
    }

    pub(super) fn previous_secret(
        &self,
        app: AppId,
    ) -> Result<Option<PreviousSecretRecord>, RepoError> {
        let row = self.query_opt(
            "SELECT secret, valid_until FROM app_previous_secrets WHERE app_id = $1",
            vec![Box::new(big(app.0)?)],
        )?;
        row.map(|row| {
            Ok(PreviousSecretRecord {
                secret: get(&row, 0)?,
                until: get(&row, 1)?,
            })
        })
        .transpose()
    }

    pub(super) fn delete_app(&self, app: AppId) -> Result<Commit<()>, RepoError> {
        let rec = self.get_app(app)?;
        self.settle()?;
        let id = big(app.0)?;
        let row = self.query_opt(
            "SELECT EXISTS (SELECT 1 FROM jobs WHERE app_id = $1) \
                 OR EXISTS (SELECT 1 FROM workflows WHERE app_id = $1)",
            vec![Box::new(id)],
        )?;
        if let Some(row) = row {
            if get::<bool>(&row, 0)? {
                return Err(RepoError::invalid(
                    "app",
                    format!("app {} still has jobs or workflows", rec.name),
                ));
            }
        }
        let mut ops = vec![
            Op::Delete(Table::Apps, vec![i64s(Some(id))]),
            Op::Delete(Table::AppPreviousSecrets, vec![i64s(Some(id))]),
        ];
        for row in self.query(
            "SELECT id FROM api_tokens WHERE app_id = $1",
            vec![Box::new(id)],
        )? {
            ops.push(Op::Delete(
                Table::ApiTokens,
                vec![i64s(Some(get(&row, 0)?))],
            ));
        }
        ops.extend(self.delete_calendars_ops(app)?);
        ops.extend(self.audit_delete_ops(app)?);
        let commit = self.submit(ops, ());
        self.lock().app_names.remove(&rec.name);
        Ok(commit)
    }

    // ----- API tokens -----

    pub(super) fn create_token(
        &self,
        token: TokenRecord,
    ) -> Result<Commit<TokenRecord>, RepoError> {
        self.get_app(token.app_id)?;
        token.validate()?;
        self.settle()?;
        if self.token(token.id)?.is_some() {
            return Err(RepoError::Conflict {
                what: "token",
                name: token.id.to_string(),
            });
        }
        let ops = vec![Op::Put(
            Table::ApiTokens,
            vec![
                i64s(Some(big(token.id)?)),
                i64s(Some(big(token.app_id.0)?)),
                text(&token.name),
                text(role_of(token.role).as_str()),
                Val::Bytes(token.hash.to_vec()),
                i64s(Some(token.created_at)),
                i64s(token.expires_at),
            ],
        )];
        Ok(self.submit(ops, token))
    }

    pub(super) fn token(&self, id: u64) -> Result<Option<TokenRecord>, RepoError> {
        // An id beyond a bigint cannot be stored, so it names no token.
        let Ok(id) = i64::try_from(id) else {
            return Ok(None);
        };
        self.query_opt(
            "SELECT id, app_id, name, role, hash, created_at, expires_at FROM api_tokens \
             WHERE id = $1",
            vec![Box::new(id)],
        )?
        .map(|row| token_from(&row))
        .transpose()
    }

    pub(super) fn list_tokens(&self, app: AppId) -> Result<Vec<TokenRecord>, RepoError> {
        self.query(
            "SELECT id, app_id, name, role, hash, created_at, expires_at FROM api_tokens \
             WHERE app_id = $1 ORDER BY id",
            vec![Box::new(big(app.0)?)],
        )?
        .iter()
        .map(token_from)
        .collect()
    }

    pub(super) fn revoke_token(&self, app: AppId, id: u64) -> Result<Commit<()>, RepoError> {
        match self.token(id)? {
            Some(t) if t.app_id == app => {}
            _ => return Err(RepoError::not_found("token", id)),
        }
        let ops = vec![Op::Delete(Table::ApiTokens, vec![i64s(Some(big(id)?))])];
        Ok(self.submit(ops, ()))
    }
}

/// A row of `id, app_id, name, role, hash, created_at, expires_at` of `api_tokens`.
fn token_from(row: &Row) -> Result<TokenRecord, RepoError> {
    let raw: i64 = get(row, 0)?;
    let corrupt = |what: String| RepoError::corrupt("api_tokens", &raw.to_be_bytes(), what);
    let role: String = get(row, 3)?;
    let role = match role.as_str() {
        "read" => TokenRole::Read,
        "operate" => TokenRole::Operate,
        "admin" => TokenRole::Admin,
        other => return Err(corrupt(format!("unknown role {other:?}"))),
    };
    let hash: Vec<u8> = get(row, 4)?;
    let hash: [u8; 32] = hash
        .try_into()
        .map_err(|h: Vec<u8>| corrupt(format!("a hash of {} bytes", h.len())))?;
    Ok(TokenRecord {
        id: unsigned("api_tokens", raw)?,
        app_id: AppId(unsigned("api_tokens", get(row, 1)?)?),
        name: get(row, 2)?,
        role: role_byte(role),
        hash,
        created_at: get(row, 5)?,
        expires_at: get(row, 6)?,
    })
}
