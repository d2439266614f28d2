//! `ferrojob sim`: one deterministic simulation of a server and its workers, or of a cluster
//! of servers sharing a simulated database.

use std::time::Instant;

use anyhow::{bail, Result};
use clap::Args as ClapArgs;

/// Runs the real server core, worker cores and log store on virtual time; one seed decides
/// everything, so a failing seed replays bit for bit.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Decides latencies, run durations and outcomes, and the faults.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Job instances to create (scheduled fires and runs).
    #[arg(long, default_value_t = 10_000)]
    instances: u64,
    /// Workers of the simulated app (with `--servers` above 1: of each app).
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// Servers: above 1, a cluster sharing a simulated database (leases, fenced writes),
    /// with server pauses longer than a lease and cuts from the database among the faults.
    #[arg(long, default_value_t = 1)]
    servers: usize,
    /// No faults: no crashes, cuts, slow fsyncs, duplicates or clock jumps.
    #[arg(long)]
    no_faults: bool,
    /// Print the events of this instance id, and every fault, to stderr.
    #[arg(long)]
    trace_instance: Option<u64>,
    /// Most server crashes to inject (each restart loads the store's hint and replays the log
    /// after it).
    #[arg(long)]
    max_server_crashes: Option<u64>,
}

/// Runs it; an invariant violation is an error (exit code 2) after the report.
pub fn run(args: &Args) -> Result<()> {
    if args.workers == 0 {
        bail!("--workers must be at least 1");
    }
    if !(1..=16).contains(&args.servers) {
        bail!("--servers must be 1 to 16");
    }
    let mut config = ferrojob::sim::SimConfig::new(args.seed, args.instances, args.workers);
    config.faults = !args.no_faults;
    config.trace = args.trace_instance;
    config.max_server_crashes = args.max_server_crashes;
    config.servers = args.servers;
    let started = Instant::now();
    let report = ferrojob::sim::run(config);
    let secs = started.elapsed().as_secs_f64();
    println!("{report}");
    println!(
        "{:.1} s wall, {:.0} simulated events/s, {:.0} simulated instances/s",
        secs,
        report.events as f64 / secs.max(1e-9),
        report.instances as f64 / secs.max(1e-9)
    );
    if report.violations.is_empty() {
        return Ok(());
    }
    for v in &report.violations {
        println!("VIOLATION {v}");
    }
    bail!(
        "{} invariant violations; replay with: ferrojob sim --seed {} --instances {} --workers {}{}{}",
        report.violations.len(),
        args.seed,
        args.instances,
        args.workers,
        if args.servers > 1 {
            format!(" --servers {}", args.servers)
        } else {
            String::new()
        },
        if args.no_faults { " --no-faults" } else { "" }
    )
}
