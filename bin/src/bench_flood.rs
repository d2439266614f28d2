//! `ferrojob bench flood`: dispatch throughput and latency with and without an attack on the
//! server's ports.
//!
//! Starts a `ferrojob-server` process (LogStore in a temp dir, the limits of the README's
//! "Limits" table at their defaults unless `--server-arg` changes them) and `--workers`
//! workers with the `noop` processor in this process. Then, `--rounds` times, it measures a
//! batch of `--instances` API runs through the HTTP OpenAPI exactly as `bench dispatch
//! --connect` does (durable instances/s, dispatch latency from the server's histogram), once
//! quiet and once while an attacker process (this executable's hidden `bench flood-attack`)
//! hits both ports from up to 250 loopback source addresses (`127.0.2.x`):
//!
//! - worker port: connections that never send a byte (`--idle-connections`), connections
//!   that announce a 4 MiB frame or trickle a small one byte by byte
//!   (`--big-frame-connections`), and back-to-back handshakes with a wrong secret for the
//!   real app (`--bad-handshakes`; these come from 127.0.0.1, the workers' own address, as
//!   the handshake client picks no source);
//! - HTTP port: clients that pipeline requests for the 160 KB OpenAPI document and read one
//!   byte a second (`--slow-readers`), and requests with a 1 MiB header (`--big-headers`).
//!
//! A closed attack connection is reopened after `--reopen-ms`, so the pressure stays on.
//! With `--control` (the default), each round then measures a third time while a burner
//! (`bench flood-burn`) takes exactly as much CPU as the attacker took during the flood
//! measurement and does nothing else: on a machine the attacker shares with the server,
//! control ÷ quiet is what the attacker's CPU alone costs, and flood ÷ control what the
//! attack costs the server itself.
//! Reported per measurement: the dispatch figures, the server's resident set and open files
//! (sampled every 100 ms) and its CPU time; overall: the server's peak resident set
//! (`VmHWM`), the attacker's CPU time (on a 2-core machine it competes with the server), the
//! worker port's limit counters, and the workers' reconnects (worker-port handshakes
//! completed after the workers first registered, from `/metrics`: the attacker never
//! completes one). Every row goes to `--report` (default
//! `$CARGO_TARGET_DIR/bench-reports/flood.json`).

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ferrojob::api::{CreateApp, JobBody};
use ferrojob::client::Client;
use ferrojob::time_expression::TimeExpressionType;
use ferrojob::worker::{Worker, WorkerConfig};
use serde::Serialize;
use serde_json::Value;

use super::flood_attack::{AttackLoad, AttackStats};
use super::harness::{self, ChildProc, ServerProc, Usage};
use super::{Load, Measured};

/// `ferrojob bench flood` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct FloodArgs {
    /// Quiet/flood pairs, measured alternately (quiet first).
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// API runs per measurement.
    #[arg(long, default_value_t = 50_000)]
    instances: u64,
    /// Workers (noop processor), in this process.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Run requests outstanding at once.
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    #[command(flatten)]
    attack: AttackLoad,
    /// From the attacker being ready to the start of the flood measurement, ms.
    #[arg(long, default_value_t = 2000)]
    warmup_ms: u64,
    /// From the attacker's stop to the next quiet measurement, ms.
    #[arg(long, default_value_t = 2000)]
    cooldown_ms: u64,
    /// Skip the control measurement (a burner taking the attacker's CPU, no attack).
    #[arg(long)]
    no_control: bool,
    /// One more flag for the server (repeat it), e.g. `--server-arg=--max-handshaking=64`.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
    /// Report file; default `$CARGO_TARGET_DIR/bench-reports/flood.json` (or
    /// `target/bench-reports/flood.json`).
    #[arg(long)]
    report: Option<PathBuf>,
}

/// One measurement, quiet or under flood.
#[derive(Debug, Serialize)]
struct MeasurementRow {
    function: &'static str,
    param: String,
    round: u32,
    instances: u64,
    workers: usize,
    in_flight: usize,
    #[serde(flatten)]
    measured: Measured,
    server_max_rss_bytes: u64,
    server_max_open_fds: u64,
    server_cpu_ms: u64,
    /// Lines the server logged (WARN and above) during the measurement.
    server_log_lines: u64,
    attacker_cpu_ms: u64,
    /// The control's burner CPU during the measurement.
    burner_cpu_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    attack: Option<AttackStats>,
}

/// What runs next to the server during one measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing.
    Quiet,
    /// The attacker.
    Flood,
    /// A burner taking the CPU the attacker took in this round, and nothing else.
    Control,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Quiet => "quiet",
            Phase::Flood => "flood",
            Phase::Control => "control",
        }
    }
}

/// The whole run.
#[derive(Debug, Serialize)]
struct SummaryRow {
    function: &'static str,
    param: String,
    rounds: u32,
    instances: u64,
    quiet_median_per_s: f64,
    flood_median_per_s: f64,
    /// Flood ÷ quiet durable instances/s, per round.
    flood_to_quiet_ratios: Vec<f64>,
    flood_to_quiet_median_ratio: f64,
    /// Control ÷ quiet durable instances/s, per round (empty with `--no-control`).
    control_to_quiet_ratios: Vec<f64>,
    control_to_quiet_median_ratio: Option<f64>,
    quiet_median_p99_us: u64,
    flood_median_p99_us: u64,
    server_peak_rss_bytes: u64,
    server_max_open_fds: u64,
    worker_reconnects: u64,
    connected_workers_at_end: u64,
    failed_instances: u64,
    attack: AttackLoad,
    limit_counters: Value,
    goal_throughput_met: bool,
}

/// Samples a process's resident set and open files every 100 ms until stopped; answers the
/// largest of each.
struct Sampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(u64, u64)>,
}

impl Sampler {
    fn start(usage: impl Fn() -> Usage + Send + 'static) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let (mut rss, mut fds) = (0, 0);
            loop {
                let u = usage();
                rss = rss.max(u.rss_bytes);
                fds = fds.max(u.open_fds);
                if flag.load(Ordering::Relaxed) {
                    return (rss, fds);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Sampler { stop, task }
    }

    async fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or((0, 0))
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// The worker port's counters in `/metrics` (`ferrojob_transport_*_total`), by name.
fn transport_counters(metrics: &str) -> serde_json::Map<String, Value> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("ferrojob_transport_"))
        .filter_map(|l| {
            let (name, value) = l.split_once(' ')?;
            Some((
                name.to_owned(),
                Value::from(value.trim().parse::<u64>().ok()?),
            ))
        })
        .collect()
}

const ESTABLISHED: &str = "ferrojob_transport_connections_established_total";

/// Runs `bench flood` and reports it.
pub(super) async fn flood(args: &FloodArgs, json: bool) -> Result<()> {
    if args.rounds == 0 || args.instances == 0 || args.workers == 0 || args.in_flight == 0 {
        bail!("--rounds, --instances, --workers and --in-flight must be at least 1");
    }
    if args.attack.sources == 0 || args.attack.sources > 250 {
        bail!("--sources must be 1 to 250");
    }
    let exe = std::env::current_exe().context("locating this executable")?;
    let dir = tempfile::Builder::new()
        .prefix("ferrojob-bench-flood-")
        .tempdir()
        .context("creating a temp data dir")?;
    let server = ServerProc::spawn(
        &dir.path().join("data"),
        &dir.path().join("server.log"),
        &args.server_args,
    )?;
    let server_pid_usage = {
        let pid = server.proc.pid();
        move || Usage::of(pid)
    };
    let client = Client::new(&format!("http://{}", server.http), &server.token)?;
    let (app, secret) = ("bench-flood", "bench-flood-secret-01");
    client
        .create_app(&CreateApp {
            name: app.into(),
            secret: secret.into(),
        })
        .await?;
    let mut workers = Vec::new();
    for _ in 0..args.workers {
        let config = WorkerConfig::new(server.transport, app, secret);
        workers.push(Worker::builder(config).builtins().start().await?);
    }
    super::wait_for_workers(&client, app, args.workers).await?;
    let established_at_start = harness::metric(&client.metrics().await?, ESTABLISHED) as u64;

    let mut measurements = Vec::new();
    let (mut ratios, mut control_ratios) = (Vec::new(), Vec::new());
    let (mut quiet_p99, mut flood_p99) = (Vec::new(), Vec::new());
    let (mut quiet_rate, mut flood_rate) = (Vec::new(), Vec::new());
    let phases: &[Phase] = if args.no_control {
        &[Phase::Quiet, Phase::Flood]
    } else {
        &[Phase::Quiet, Phase::Flood, Phase::Control]
    };
    for round in 1..=args.rounds {
        // Cores the attacker took during this round's flood measurement.
        let mut attacker_cores = 0.0;
        for &phase in phases {
            let mut rival = match phase {
                Phase::Quiet => None,
                Phase::Flood => {
                    let mut command = Command::new(&exe);
                    command
                        .env("RUST_LOG", "error")
                        .args(["bench", "flood-attack", "--transport"])
                        .arg(server.transport.to_string())
                        .arg("--http")
                        .arg(server.http.to_string())
                        .args(["--app", app])
                        .args(args.attack.to_args());
                    Some(ChildProc::spawn(command, "flood-attack ready")?.0)
                }
                Phase::Control => {
                    let mut command = Command::new(&exe);
                    command
                        .args(["bench", "flood-burn", "--cores"])
                        .arg(format!("{attacker_cores:.3}"));
                    Some(ChildProc::spawn(command, "flood-burn ready")?.0)
                }
            };
            if rival.is_some() {
                tokio::time::sleep(Duration::from_millis(args.warmup_ms)).await;
            }
            let function = phase.name();
            let job = client
                .create_job(
                    app,
                    &JobBody::new(
                        format!("noop-{round}-{function}"),
                        TimeExpressionType::Api,
                        "",
                        "noop",
                    ),
                )
                .await?
                .id;
            let cpu_before = server.proc.usage().cpu_ms;
            let log_lines_before = server.log_lines();
            let rival_cpu_before = rival.as_ref().map_or(0, |a| a.usage().cpu_ms);
            let sampler = Sampler::start(server_pid_usage);
            let load = Load {
                instances: args.instances,
                in_flight: args.in_flight,
                rate: 0,
                read_back: false,
                cpu: super::cpu::CpuClock::default(),
            };
            let bar = super::progress_bar(args.instances, json);
            let started = Instant::now();
            let measured = super::measure(&client, None, app, job, load, &bar).await?;
            let elapsed = started.elapsed();
            bar.finish_and_clear();
            let (max_rss, max_fds) = sampler.finish().await;
            let server_cpu_ms = server.proc.usage().cpu_ms.saturating_sub(cpu_before);
            let server_log_lines = server.log_lines().saturating_sub(log_lines_before);
            let rival_cpu_ms = rival
                .as_ref()
                .map_or(0, |a| a.usage().cpu_ms.saturating_sub(rival_cpu_before));
            let attack = match (phase, rival.as_mut()) {
                (Phase::Flood, Some(a)) => {
                    attacker_cores = rival_cpu_ms as f64 / elapsed.as_secs_f64().max(1e-3) / 1000.0;
                    a.close_stdin();
                    let line = a.next_line(Duration::from_secs(10)).unwrap_or_default();
                    let stats: AttackStats = serde_json::from_str(&line)
                        .with_context(|| format!("the attacker's report {line:?}"))?;
                    a.wait_exit(Duration::from_secs(5));
                    Some(stats)
                }
                (_, Some(burner)) => {
                    burner.close_stdin();
                    burner.wait_exit(Duration::from_secs(5));
                    None
                }
                (_, None) => None,
            };
            drop(rival);
            if !json {
                println!(
                    "round {round} {function:>7}: {:>8.0} durable instances/s, dispatch p99 {:>6} µs; server RSS ≤ {:.1} MiB, ≤ {max_fds} open files, CPU {server_cpu_ms} ms, {server_log_lines} log lines{}",
                    measured.durable_instances_per_s,
                    measured.dispatch_p99_us,
                    max_rss as f64 / (1024.0 * 1024.0),
                    match phase {
                        Phase::Quiet => String::new(),
                        Phase::Flood => format!("; attacker CPU {rival_cpu_ms} ms"),
                        Phase::Control => format!("; burner CPU {rival_cpu_ms} ms"),
                    }
                );
            }
            match phase {
                Phase::Quiet => {
                    quiet_rate.push(measured.durable_instances_per_s);
                    quiet_p99.push(measured.dispatch_p99_us as f64);
                }
                Phase::Flood => {
                    flood_rate.push(measured.durable_instances_per_s);
                    flood_p99.push(measured.dispatch_p99_us as f64);
                    if let Some(quiet) = quiet_rate.last() {
                        ratios.push(measured.durable_instances_per_s / quiet);
                    }
                }
                Phase::Control => {
                    if let Some(quiet) = quiet_rate.last() {
                        control_ratios.push(measured.durable_instances_per_s / quiet);
                    }
                }
            }
            if phase != Phase::Quiet {
                tokio::time::sleep(Duration::from_millis(args.cooldown_ms)).await;
            }
            measurements.push(MeasurementRow {
                function,
                param: format!("{}x{}/round{round}", args.instances, args.workers),
                round,
                instances: args.instances,
                workers: args.workers,
                in_flight: args.in_flight,
                measured,
                server_max_rss_bytes: max_rss,
                server_max_open_fds: max_fds,
                server_cpu_ms,
                server_log_lines,
                attacker_cpu_ms: if phase == Phase::Flood {
                    rival_cpu_ms
                } else {
                    0
                },
                burner_cpu_ms: if phase == Phase::Control {
                    rival_cpu_ms
                } else {
                    0
                },
                attack,
            });
        }
    }
    let metrics = client.metrics().await?;
    let usage = server.proc.usage();
    let flood_to_quiet_median_ratio = median(ratios.clone());
    let summary = SummaryRow {
        function: "flood_summary",
        param: format!("{}x{}", args.instances, args.workers),
        rounds: args.rounds,
        instances: args.instances,
        quiet_median_per_s: median(quiet_rate),
        flood_median_per_s: median(flood_rate),
        flood_to_quiet_ratios: ratios,
        flood_to_quiet_median_ratio,
        control_to_quiet_median_ratio: (!control_ratios.is_empty())
            .then(|| median(control_ratios.clone())),
        control_to_quiet_ratios: control_ratios,
        quiet_median_p99_us: median(quiet_p99) as u64,
        flood_median_p99_us: median(flood_p99) as u64,
        server_peak_rss_bytes: usage.peak_rss_bytes,
        server_max_open_fds: measurements
            .iter()
            .map(|p| p.server_max_open_fds)
            .max()
            .unwrap_or(0),
        worker_reconnects: (harness::metric(&metrics, ESTABLISHED) as u64)
            .saturating_sub(established_at_start),
        connected_workers_at_end: harness::metric(&metrics, "ferrojob_connected_workers") as u64,
        failed_instances: measurements.iter().map(|p| p.measured.failed).sum(),
        attack: args.attack.clone(),
        limit_counters: Value::Object(transport_counters(&metrics)),
        goal_throughput_met: flood_to_quiet_median_ratio >= 0.8,
    };
    for w in workers {
        w.shutdown().await;
    }
    drop(server);
    let mut rows = measurements
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<Vec<Value>, _>>()?;
    rows.push(serde_json::to_value(&summary)?);
    let report = args
        .report
        .clone()
        .unwrap_or_else(|| harness::default_report("flood"));
    harness::write_report(&report, &rows)?;
    if json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!(
            "flood ÷ quiet durable instances/s: {} (median {:.2}; goal ≥ 0.80 {})",
            summary
                .flood_to_quiet_ratios
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(", "),
            summary.flood_to_quiet_median_ratio,
            if summary.goal_throughput_met {
                "met"
            } else {
                "NOT met"
            }
        );
        if let Some(control) = summary.control_to_quiet_median_ratio {
            println!(
                "control (a burner taking the attacker's CPU, no attack) ÷ quiet: {} (median {control:.2})",
                summary
                    .control_to_quiet_ratios
                    .iter()
                    .map(|r| format!("{r:.2}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
        }
        println!(
            "  median: quiet {:.0}/s p99 {} µs, flood {:.0}/s p99 {} µs",
            summary.quiet_median_per_s,
            summary.quiet_median_p99_us,
            summary.flood_median_per_s,
            summary.flood_median_p99_us
        );
        println!(
            "  server peak RSS {:.1} MiB, ≤ {} open files; worker reconnects {}, workers connected at the end {}; instances not SUCCEED {}",
            summary.server_peak_rss_bytes as f64 / (1024.0 * 1024.0),
            summary.server_max_open_fds,
            summary.worker_reconnects,
            summary.connected_workers_at_end,
            summary.failed_instances
        );
        println!("  worker-port counters: {}", summary.limit_counters);
        println!("  rows written to {}", report.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_counters_are_read_by_name() {
        let text = "# HELP ferrojob_transport_x_total h\nferrojob_transport_preauth_pool_full_total 12\nferrojob_transport_connections_established_total 2\nferrojob_other 1\n";
        let c = transport_counters(text);
        assert_eq!(c.get("preauth_pool_full_total"), Some(&Value::from(12u64)));
        assert_eq!(
            c.get("connections_established_total"),
            Some(&Value::from(2u64))
        );
        assert_eq!(c.len(), 2);
    }
}
