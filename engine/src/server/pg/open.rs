//! Opening: connections, migrations, and the state read at open.

use dashmap::DashMap;
use std::collections::HashMap;
use std::sync::Arc;
use tokio_postgres::{Client, NoTls, Row};

use crate::ids::{AppId, JobId, WorkflowId};
use crate::server::error::RepoError;
use crate::server::records::TriggerRecord;

use super::{db, error_text, schema, READERS};
use super::{get, unsigned};

/// Everything read at open.
pub(super) struct Opened {
    pub(super) readers: Vec<Arc<Client>>,
    pub(super) writer: Client,
    pub(super) app_names: HashMap<String, AppId>,
    pub(super) triggers: DashMap<JobId, TriggerRecord>,
    pub(super) wf_triggers: DashMap<WorkflowId, TriggerRecord>,
}

pub(super) async fn connect(url: String) -> Result<Client, RepoError> {
    let (client, conn) = tokio_postgres::connect(&url, NoTls).await.map_err(db)?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::warn!(error = %error_text(&e), "postgres connection ended");
        }
    });
    Ok(client)
}

async fn migrate(client: &mut Client) -> Result<(), RepoError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (\
                version integer PRIMARY KEY, \
                applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .map_err(db)?;
    let tx = client.transaction().await.map_err(db)?;
    tx.batch_execute("LOCK TABLE schema_migrations IN EXCLUSIVE MODE")
        .await
        .map_err(db)?;
    let applied: Vec<i32> = tx
        .query("SELECT version FROM schema_migrations", &[])
        .await
        .map_err(db)?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()
        .map_err(db)?;
    let current = applied.iter().copied().max().unwrap_or(0);
    if current > schema::LATEST {
        return Err(RepoError::Database(format!(
            "the database's schema is version {current}, newer than this ferrojob's ({}): \
             upgrade ferrojob",
            schema::LATEST
        )));
    }
    // Every migration not applied yet, in order, also one numbered below the newest applied:
    // versions are reserved ahead, so a database may have a later one before an earlier one.
    for (version, sql) in schema::MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        tx.batch_execute(sql).await.map_err(db)?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[version],
        )
        .await
        .map_err(db)?;
        tracing::info!(version, "postgres schema migrated");
    }
    tx.commit().await.map_err(db)
}

pub(super) async fn open_all(url: String) -> Result<Opened, RepoError> {
    let mut writer = connect(url.clone()).await?;
    migrate(&mut writer).await?;
    let mut readers = Vec::with_capacity(READERS);
    for _ in 0..READERS {
        readers.push(Arc::new(connect(url.clone()).await?));
    }
    let mut app_names = HashMap::new();
    for row in writer
        .query("SELECT id, name FROM apps", &[])
        .await
        .map_err(db)?
    {
        let id: i64 = get(&row, 0)?;
        app_names.insert(get::<String>(&row, 1)?, AppId(unsigned("apps", id)?));
    }
    let triggers = DashMap::new();
    for row in writer
        .query("SELECT job_id, next_trigger, runs FROM triggers", &[])
        .await
        .map_err(db)?
    {
        let (id, rec) = trigger_row("triggers", &row)?;
        triggers.insert(JobId(id), rec);
    }
    let wf_triggers = DashMap::new();
    for row in writer
        .query(
            "SELECT workflow_id, next_trigger, runs FROM workflow_triggers",
            &[],
        )
        .await
        .map_err(db)?
    {
        let (id, rec) = trigger_row("workflow_triggers", &row)?;
        wf_triggers.insert(WorkflowId(id), rec);
    }
    Ok(Opened {
        readers,
        writer,
        app_names,
        triggers,
        wf_triggers,
    })
}

pub(super) fn trigger_row(
    table: &'static str,
    row: &Row,
) -> Result<(u64, TriggerRecord), RepoError> {
    let id: i64 = get(row, 0)?;
    let next: Option<i64> = get(row, 1)?;
    let runs: i64 = get(row, 2)?;
    Ok((
        unsigned(table, id)?,
        TriggerRecord {
            next_trigger: next,
            runs: unsigned(table, runs)?,
        },
    ))
}
