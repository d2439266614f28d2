//! `ferrojob plan|apply|export|import-powerjob`: jobs as code, through
//! `ferrojob::client::{jobs_file, plan, powerjob}`. Wiring only: arguments in, library calls,
//! output (the plan's human form, or its JSON with `--json`).
//!
//! ```text
//! ferrojob plan -f jobs.toml --app billing            # what apply would do
//! ferrojob apply -f jobs.toml --prune                 # do it; delete what the file omits
//! ferrojob export --app billing > jobs.toml           # --format json for JSON
//! ferrojob import-powerjob -f export.json --app billing -o jobs.toml
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use ferrojob::client::plan::{apply, export, fetch_state, plan};
use ferrojob::client::powerjob::{import, ImportOptions};
use ferrojob::client::{Format, JobsFile};

use crate::remote::{print_json, runtime, Conn};

/// `ferrojob plan` and `ferrojob apply`.
#[derive(Debug, Clone, clap::Args)]
pub struct PlanArgs {
    /// The jobs file (`*.toml` or `*.json`).
    #[arg(short = 'f', long = "file")]
    file: PathBuf,
    /// App name or id (default: the file's `app`).
    #[arg(long, env = "FERROJOB_APP")]
    app: Option<String>,
    /// Also delete the app's jobs and workflows the file does not name.
    #[arg(long)]
    prune: bool,
}

/// `ferrojob export`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    /// App name or id.
    #[arg(long, env = "FERROJOB_APP")]
    app: String,
    /// `toml` (default) or `json`; with `-o`, the file's extension decides.
    #[arg(long)]
    format: Option<Format>,
    /// Write to this file instead of standard output.
    #[arg(short = 'o', long = "output")]
    output: Option<PathBuf>,
}

/// `ferrojob import-powerjob`.
#[derive(Debug, Clone, clap::Args)]
pub struct ImportArgs {
    /// PowerJob's job export (the JSON of `exportJob`: one job, its ResultDTO, or an array).
    #[arg(short = 'f', long = "file")]
    file: PathBuf,
    /// The app the written file is for.
    #[arg(long, env = "FERROJOB_APP")]
    app: Option<String>,
    /// IANA zone of the CRON and DAILY_TIME_INTERVAL jobs (PowerJob's server zone).
    #[arg(long)]
    time_zone: Option<String>,
    /// `PROCESSOR_INFO=NAME`: run the PowerJob processor PROCESSOR_INFO (e.g. a Java class)
    /// as the ferrojob processor NAME (repeat for more).
    #[arg(long = "processor", value_name = "PROCESSOR_INFO=NAME")]
    processors: Vec<String>,
    /// `toml` (default) or `json`; with `-o`, the file's extension decides.
    #[arg(long)]
    format: Option<Format>,
    /// Write to this file instead of standard output.
    #[arg(short = 'o', long = "output")]
    output: Option<PathBuf>,
}

/// The app: `--app`, else the file's; both given must agree.
fn app_of(arg: &Option<String>, file: &JobsFile) -> Result<String> {
    match (arg, &file.app) {
        (Some(a), Some(f)) if a != f => {
            bail!("--app {a:?} but the file describes app {f:?}")
        }
        (Some(a), _) => Ok(a.clone()),
        (None, Some(f)) => Ok(f.clone()),
        (None, None) => Err(ferrojob::client::JobsFileError::NoApp.into()),
    }
}

fn write_out(output: &Option<PathBuf>, format: Option<Format>, file: &JobsFile) -> Result<()> {
    let format = match (output, format) {
        (_, Some(f)) => f,
        (Some(path), None) => Format::from_path(path)?,
        (None, None) => Format::Toml,
    };
    let text = file.render(format)?;
    match output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
        }
        None => {
            std::io::stdout().write_all(text.as_bytes())?;
            Ok(())
        }
    }
}

/// `ferrojob plan` (`execute` false) and `ferrojob apply` (`execute` true).
pub fn plan_or_apply(conn: &Conn, args: &PlanArgs, execute: bool) -> Result<()> {
    let file = JobsFile::read(&args.file)?;
    let app = app_of(&args.app, &file)?;
    let client = conn.client()?;
    runtime()?.block_on(async {
        let state = fetch_state(&client, &app).await?;
        let plan = plan(&file, &state, args.prune)?;
        if conn.json() {
            print_json(&plan)?;
        } else {
            println!("{plan}");
        }
        if execute && !plan.is_empty() {
            let done = apply(&client, &app, &plan, &state).await?;
            if !conn.json() {
                println!("applied {done} change(s) to app {app:?}");
            }
        }
        Ok(())
    })
}

/// `ferrojob export`.
pub fn export_cmd(conn: &Conn, args: &ExportArgs) -> Result<()> {
    let client = conn.client()?;
    runtime()?.block_on(async {
        let state = fetch_state(&client, &args.app).await?;
        write_out(&args.output, args.format, &export(&args.app, &state)?)
    })
}

/// `ferrojob import-powerjob`: writes the jobs file; the report goes to standard error.
pub fn import_cmd(args: &ImportArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let mut processors = BTreeMap::new();
    for p in &args.processors {
        let Some((info, name)) = p.split_once('=') else {
            bail!("--processor {p:?}: expected PROCESSOR_INFO=NAME");
        };
        processors.insert(info.trim().to_owned(), name.trim().to_owned());
    }
    let imported = import(
        &text,
        &ImportOptions {
            time_zone: args.time_zone.clone(),
            processors,
        },
    )?;
    write_out(
        &args.output,
        args.format,
        &imported.to_file(args.app.clone()),
    )?;
    for n in &imported.notes {
        eprintln!("note: {:?} {}: {}", n.job, n.field, n.note);
    }
    for s in &imported.skipped {
        eprintln!("skipped: {:?}: {}", s.job, s.reason);
    }
    eprintln!(
        "{} job(s) imported, {} skipped",
        imported.jobs.len(),
        imported.skipped.len()
    );
    Ok(())
}
