//! `ferrojob job versions|rollback`, `ferrojob workflow versions|rollback` and
//! `ferrojob audit list`: definition versions, rollback and an app's audit trail, through the
//! Rust client.

use anyhow::Result;
use ferrojob::api::{AuditQuery, AuditView, JobVersionView, PageQuery, WorkflowVersionView};
use ferrojob::client::Client;
use ferrojob::ids::{JobId, WorkflowId};

use crate::fmt_ms;
use crate::remote::{print_json, print_page, runtime, AppArg, Conn};

/// What `... versions` lists: a page, or one version in full.
#[derive(Debug, clap::Args)]
pub struct VersionsArgs {
    /// Page size (1 to 1000).
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// `--cursor` printed by the previous page.
    #[arg(long)]
    pub cursor: Option<u64>,
    /// Print this version's definition in full (JSON) instead of the listing.
    #[arg(long)]
    pub show: Option<u64>,
}

impl VersionsArgs {
    fn page(&self) -> PageQuery {
        PageQuery {
            limit: Some(self.limit),
            cursor: self.cursor,
        }
    }
}

fn job_version_line(v: &JobVersionView) -> String {
    let j = &v.job;
    let kind = serde_json::to_string(&j.time_expression_type).unwrap_or_default();
    format!(
        "v{:<4} {} {:<24} {} {:<18} enabled={} processor={}",
        v.version,
        fmt_ms(v.updated_at),
        j.name,
        kind.trim_matches('"'),
        j.time_expression,
        j.enabled,
        j.processor
    )
}

fn workflow_version_line(v: &WorkflowVersionView) -> String {
    let d = &v.definition;
    let kind = serde_json::to_string(&d.time_expression_type).unwrap_or_default();
    format!(
        "v{:<4} {:<24} {} {:<18} nodes={} edges={}",
        v.version,
        d.name,
        kind.trim_matches('"'),
        d.time_expression,
        d.nodes.len(),
        d.edges.len()
    )
}

/// `ferrojob job versions`.
pub async fn job_versions(
    client: &Client,
    json: bool,
    app: &AppArg,
    id: JobId,
    args: &VersionsArgs,
) -> Result<()> {
    if let Some(v) = args.show {
        return print_json(&client.job_version(&app.app, id, v).await?);
    }
    let page = client.job_versions(&app.app, id, args.page()).await?;
    print_page(json, &page, &page.items, page.next_cursor, job_version_line)
}

/// `ferrojob job rollback`.
pub async fn job_rollback(
    client: &Client,
    json: bool,
    app: &AppArg,
    id: JobId,
    version: u64,
) -> Result<()> {
    let view = client.rollback_job(&app.app, id, version).await?;
    if json {
        return print_json(&view);
    }
    println!("{id} rolled back to version {version}");
    Ok(())
}

/// `ferrojob workflow versions`.
pub async fn workflow_versions(
    client: &Client,
    json: bool,
    app: &AppArg,
    id: WorkflowId,
    args: &VersionsArgs,
) -> Result<()> {
    if let Some(v) = args.show {
        return print_json(&client.workflow_version(&app.app, id, v).await?);
    }
    let page = client.workflow_versions(&app.app, id, args.page()).await?;
    print_page(
        json,
        &page,
        &page.items,
        page.next_cursor,
        workflow_version_line,
    )
}

/// `ferrojob workflow rollback`.
pub async fn workflow_rollback(
    client: &Client,
    json: bool,
    app: &AppArg,
    id: WorkflowId,
    version: u64,
) -> Result<()> {
    let view = client.rollback_workflow(&app.app, id, version).await?;
    if json {
        return print_json(&view);
    }
    println!("{id} rolled back to version {version}");
    Ok(())
}

/// `ferrojob audit ...`
#[derive(Debug, clap::Subcommand)]
pub enum AuditCmd {
    /// The app's audit trail, newest first: every change and command made through the API,
    /// who made it (the token) and from which address (admin role).
    List {
        #[command(flatten)]
        app: AppArg,
        /// Only records of this target (`job/12`, `workflow/3`, `instance/40`, ...).
        #[arg(long)]
        target: Option<String>,
        /// Page size (1 to 1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// `--cursor` printed by the previous page.
        #[arg(long)]
        cursor: Option<u64>,
    },
}

fn audit_line(r: &AuditView) -> String {
    let e = &r.entry;
    let who = match e.token_id {
        Some(t) => format!("{}:{t}", e.actor),
        None => e.actor.clone(),
    };
    format!(
        "{} #{:<5} {:<22} {:<8} {:<21} {:<20} {:<16} {}",
        fmt_ms(r.time),
        r.seq,
        who,
        e.role,
        e.peer,
        e.action,
        e.target,
        e.summary
    )
}

/// Runs one `ferrojob audit` command.
pub fn audit(conn: &Conn, cmd: &AuditCmd) -> Result<()> {
    let client = conn.client()?;
    runtime()?.block_on(async {
        match cmd {
            AuditCmd::List {
                app,
                target,
                limit,
                cursor,
            } => {
                let query = AuditQuery {
                    limit: Some(*limit),
                    cursor: *cursor,
                    target: target.clone(),
                };
                let page = client.list_audit(&app.app, &query).await?;
                print_page(
                    conn.json(),
                    &page,
                    &page.items,
                    page.next_cursor,
                    audit_line,
                )
            }
        }
    })
}
