//! `ferrojob`: the command-line tool. Wiring only: parse arguments, set up logging, call the
//! library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod alarm_cmd;
mod bench;
mod calendar_cmd;
mod cluster_cmd;
mod demo;
mod embedded_demo;
mod history_cmd;
mod jobs_cmd;
mod remote;
mod sim_cmd;
mod store_cmd;
mod token_cmd;
mod validate;
mod workflow_cmd;

pub use ferrojob_bin::fmt_ms;

/// mimalloc: the glibc allocator costs the dispatch path ~30 % of its CPU (measured).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// ferrojob: a fast, exact, durable job scheduler.
#[derive(Debug, Parser)]
#[command(name = "ferrojob", version, about)]
struct Cli {
    #[command(flatten)]
    conn: remote::Conn,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the next trigger times of a time expression, one RFC 3339 timestamp per line.
    Validate(validate::Args),
    /// Start a server (LogStore in ./ferrojob-data) and two workers, create sample jobs and
    /// show their instances live (Ctrl-C stops everything).
    Demo(demo::Args),
    /// Apps: create, list, delete (admin token), show, rotate the worker secret.
    #[command(subcommand)]
    App(remote::AppCmd),
    /// API tokens of an app, with their roles: create, list, revoke.
    #[command(subcommand)]
    Token(token_cmd::TokenCmd),
    /// Jobs of an app.
    #[command(subcommand)]
    Job(Box<remote::JobCmd>),
    /// Instances (runs) of an app's jobs.
    #[command(subcommand)]
    Instance(remote::InstanceCmd),
    /// Workers of an app.
    #[command(subcommand)]
    Worker(remote::WorkerCmd),
    /// Alarms of an app: their delivery history and the channels they go to.
    #[command(subcommand)]
    Alarm(alarm_cmd::AlarmCmd),
    /// Calendars of an app: named sets of excluded dates (holidays) jobs and workflows do
    /// not fire on.
    #[command(subcommand)]
    Calendar(calendar_cmd::CalendarCmd),
    /// The audit trail of an app: who changed what, from where.
    #[command(subcommand)]
    Audit(history_cmd::AuditCmd),
    /// Workflows (DAGs of jobs and decisions) of an app, and their instances.
    #[command(subcommand)]
    Workflow(Box<workflow_cmd::WorkflowCmd>),
    /// Show what `apply` would create, change (field by field) and delete for an app.
    Plan(jobs_cmd::PlanArgs),
    /// Make an app's jobs and workflows match a jobs file (TOML or JSON); idempotent.
    Apply(jobs_cmd::PlanArgs),
    /// Write an app's jobs and workflows as a jobs file.
    Export(jobs_cmd::ExportArgs),
    /// Convert PowerJob's job export (JSON) into a jobs file.
    ImportPowerjob(jobs_cmd::ImportArgs),
    /// Load benchmarks of a whole server with workers.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
    /// A server's store directory, offline: check it (read-only) or salvage it.
    #[command(subcommand)]
    Store(store_cmd::StoreCmd),
    /// A cluster of servers on PostgreSQL: its servers and who holds which partition.
    #[command(subcommand)]
    Cluster(cluster_cmd::ClusterCmd),
    /// A deterministic simulation of a server, its workers and faults on virtual time:
    /// checks the invariants, exits non-zero on a violation.
    Sim(sim_cmd::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The store commands print a full report; the store's own warnings would repeat it.
    let default_log = match cli.command {
        Command::Store(_) | Command::Sim(_) => "error",
        _ => "warn",
    };
    ferrojob_bin::init_logging(default_log);
    let result = match &cli.command {
        Command::Validate(args) => validate::run(args),
        Command::Demo(args) => demo::run(args),
        Command::App(cmd) => remote::app(&cli.conn, cmd),
        Command::Token(cmd) => token_cmd::token(&cli.conn, cmd),
        Command::Job(cmd) => remote::job(&cli.conn, cmd),
        Command::Instance(cmd) => remote::instance(&cli.conn, cmd),
        Command::Worker(cmd) => remote::worker(&cli.conn, cmd),
        Command::Alarm(cmd) => alarm_cmd::alarm(&cli.conn, cmd),
        Command::Calendar(cmd) => calendar_cmd::calendar(&cli.conn, cmd),
        Command::Audit(cmd) => history_cmd::audit(&cli.conn, cmd),
        Command::Workflow(cmd) => workflow_cmd::workflow(&cli.conn, cmd),
        Command::Plan(args) => jobs_cmd::plan_or_apply(&cli.conn, args, false),
        Command::Apply(args) => jobs_cmd::plan_or_apply(&cli.conn, args, true),
        Command::Export(args) => jobs_cmd::export_cmd(&cli.conn, args),
        Command::ImportPowerjob(args) => jobs_cmd::import_cmd(args),
        Command::Bench(cmd) => bench::run(cmd, &cli.conn),
        Command::Sim(args) => sim_cmd::run(args),
        Command::Cluster(cmd) => cluster_cmd::run(cmd, cli.conn.json()),
        Command::Store(cmd) => match store_cmd::run(cmd) {
            // Damage found by `check`: exit 1, errors exit 2.
            Ok(false) => return ExitCode::from(1),
            Ok(true) => Ok(()),
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            let tls = e.chain().any(|c| {
                matches!(
                    c.downcast_ref::<ferrojob::client::ClientError>(),
                    Some(ferrojob::client::ClientError::Tls { .. })
                )
            });
            if tls {
                eprintln!("hint: give the CA that signed the server's certificate with --tls-ca FILE (PEM)");
            }
            ExitCode::from(2)
        }
    }
}
