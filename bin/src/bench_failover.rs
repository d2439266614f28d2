//! `ferrojob bench failover`: how long an app goes without a dispatch when the server that
//! owns it is killed.
//!
//! Starts `--servers` `ferrojob-server --cluster` processes (the binary next to this one)
//! sharing the PostgreSQL database `--store`, each with fixed ports and an id of its own,
//! waits until every partition sits with its rendezvous owner, creates an app on its owner
//! with a FIXED_RATE job of `--period-ms` (the `noop` processor) and starts one
//! `ferrojob-worker` process given every server's address. Then, `--kills` times:
//!
//! 1. waits until the app's owner has dispatched a run (the steady state);
//! 2. notes the wall clock, `kill -9`s the owner and reaps it;
//! 3. polls the other servers every 20 ms for the job's instances (read from the database)
//!    until one lists an instance whose dispatch time (`actual_trigger_time`) is after the
//!    owner was reaped: only a live server can have dispatched it, so it is the new owner's
//!    first run. The **failover time** is that dispatch time minus the wall clock noted
//!    before the kill (both the same machine's clock, millisecond resolution). It covers
//!    the lease running out in the database, another server taking the partition and
//!    loading it, the worker finding and connecting to the new owner, and the next
//!    dispatch (at most one period later, or at once for a misfired trigger);
//! 4. restarts the killed server with the same id and ports and waits until the partitions
//!    settle again (the restarted server takes its partitions back by a drain).
//!
//! Also measured: the time until another server first answered the app's job route
//! (`GET /v1/apps/{app}/jobs/{id}`, answered 503 until a live server acts for the app: the
//! others forward it to the dead owner until they see the new one),
//! to the poll's 20 ms: the takeover alone, before the worker has found the new owner. Prints p50/p99/max (nearest rank: with 20
//! kills the p99 is the largest) and writes one row to `--report` (default
//! `$CARGO_TARGET_DIR/bench-reports/failover.json`). The database should be a fresh one;
//! the servers' ids and the app carry the start time, so a second run in the same database
//! does not meet the first one's rows.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ferrojob::api::{InstanceQuery, JobBody};
use ferrojob::client::Client;
use ferrojob::cluster::ServerId;
use ferrojob::ids::JobId;
use ferrojob::time_expression::TimeExpressionType;
use serde::Serialize;

use super::cluster::{free_port, owner_of, wait_settled, TOKEN};
use super::harness::{self, ChildProc};

/// `ferrojob bench failover` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct FailoverArgs {
    /// The PostgreSQL database the servers share (`postgres://…`; a fresh one).
    #[arg(long)]
    store: String,
    /// Owners to kill, one after the other.
    #[arg(long, default_value_t = 20)]
    kills: u32,
    /// Server processes (2 to 9).
    #[arg(long, default_value_t = 3)]
    servers: usize,
    /// The partitions' lease, ms (the servers' `--lease-ms`).
    #[arg(long, default_value_t = ferrojob_bin::server_config::DEFAULT_LEASE_MS)]
    lease_ms: u64,
    /// The FIXED_RATE job's period, ms.
    #[arg(long, default_value_t = 100)]
    period_ms: u64,
    /// Give up on any one wait (settling, takeover, a run) after this many seconds.
    #[arg(long, default_value_t = 60)]
    timeout_s: u64,
    /// Report file; default `$CARGO_TARGET_DIR/bench-reports/failover.json` (or
    /// `target/bench-reports/failover.json`).
    #[arg(long)]
    report: Option<PathBuf>,
}

/// The report row (units in the names).
#[derive(Debug, Serialize)]
struct Row {
    function: &'static str,
    param: String,
    servers: usize,
    lease_ms: u64,
    period_ms: u64,
    kills: usize,
    failover_p50_ms: i64,
    failover_p99_ms: i64,
    failover_max_ms: i64,
    /// Every kill's failover time, in order.
    failover_ms: Vec<i64>,
    acting_p50_ms: i64,
    acting_p99_ms: i64,
    acting_max_ms: i64,
    /// The 1-minute load average before the first kill and after the last.
    load_average_start: f64,
    load_average_end: f64,
}

/// One server process of the cluster: what it is started with, and the process while it
/// runs.
struct Member {
    id: ServerId,
    http: SocketAddr,
    transport: SocketAddr,
    data_dir: PathBuf,
    log: PathBuf,
    client: Client,
    proc: Option<ChildProc>,
}

impl Member {
    fn new(id: &str, dir: &Path) -> Result<Member> {
        let http = free_port()?;
        Ok(Member {
            id: ServerId::new(id)?,
            http,
            transport: free_port()?,
            data_dir: dir.join(id),
            log: dir.join(format!("{id}.log")),
            client: Client::new(&format!("http://{http}"), TOKEN)?,
            proc: None,
        })
    }

    /// Starts (or restarts) the process; a port still held by the killed one is retried.
    fn start(&mut self, exe: &Path, args: &FailoverArgs) -> Result<()> {
        let mut last = None;
        for _ in 0..10 {
            let stderr = std::fs::File::options()
                .create(true)
                .append(true)
                .open(&self.log)
                .with_context(|| format!("opening {}", self.log.display()))?;
            let mut command = Command::new(exe);
            command
                .stderr(stderr)
                .env("RUST_LOG", "warn")
                .arg("--data-dir")
                .arg(&self.data_dir)
                .args(["--http", &self.http.to_string()])
                .args(["--listen", &self.transport.to_string()])
                .args(["--admin-token", TOKEN, "--api-rate-per-sec", "0"])
                .args(["--store", &args.store, "--cluster"])
                .args(["--server-id", self.id.as_str()])
                .args(["--lease-ms", &args.lease_ms.to_string()])
                .args(["--min-period-ms", &args.period_ms.to_string()])
                // The poll reads the newest 1000 instances: keep at least those.
                .args(["--keep-finished-runs", "2000"]);
            match ChildProc::spawn(command, "ferrojob-server ready") {
                Ok((proc, _)) => {
                    self.proc = Some(proc);
                    return Ok(());
                }
                Err(e) => {
                    last = Some(e);
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
        let e = last.context("never tried")?;
        Err(e).with_context(|| format!("starting {} (its log: {})", self.id, self.log.display()))
    }
}

/// Milliseconds since the Unix epoch, this machine's wall clock (as the servers' clocks).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The 1-minute load average (`/proc/loadavg`), 0 where unreadable.
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// The nearest-rank `q` quantile of `samples` (0 when empty): the smallest sample with at
/// least `q` of them at or below it.
fn nearest_rank(samples: &[i64], q: f64) -> i64 {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.clamp(1, sorted.len().max(1)) - 1)
        .copied()
        .unwrap_or(0)
}

/// The earliest dispatch time after `after_ms` among the newest 1000 instances of `job`
/// that `client`'s server lists (or its owner, to which it forwards); `Err` when the server
/// refuses (no live server acts for the app), `Ok(None)` when there is none yet.
async fn first_dispatch_after(
    client: &Client,
    app: &str,
    job: JobId,
    after_ms: i64,
) -> Result<Option<i64>> {
    let page = client
        .list_instances(
            app,
            &InstanceQuery {
                job_id: Some(job),
                limit: Some(1000),
                ..InstanceQuery::default()
            },
        )
        .await?;
    Ok(page
        .items
        .iter()
        .filter_map(|i| i.actual_trigger_time)
        .filter(|t| *t > after_ms)
        .min())
}

/// Runs `bench failover` and reports it.
pub(super) async fn failover(args: &FailoverArgs, json: bool) -> Result<()> {
    if args.kills == 0 || args.period_ms == 0 || !(2..=9).contains(&args.servers) {
        bail!("--kills and --period-ms must be at least 1, --servers 2 to 9");
    }
    if !(args.store.starts_with("postgres://") || args.store.starts_with("postgresql://")) {
        bail!("--store takes a postgres:// URL");
    }
    let server_exe = harness::sibling_exe("ferrojob-server")?;
    let worker_exe = harness::sibling_exe("ferrojob-worker")?;
    let timeout = Duration::from_secs(args.timeout_s);
    let dir = tempfile::Builder::new()
        .prefix("ferrojob-bench-failover-")
        .tempdir()
        .context("creating a temp dir")?;
    let stamp = now_ms();
    let mut members = (0..args.servers)
        .map(|i| Member::new(&format!("failover-{stamp}-{i}"), dir.path()))
        .collect::<Result<Vec<_>>>()?;
    for m in &mut members {
        m.start(&server_exe, args)?;
    }
    let ids: Vec<ServerId> = members.iter().map(|m| m.id.clone()).collect();
    let settle = |members: &[Member]| {
        let view: Vec<(Client, ServerId)> = members
            .iter()
            .map(|m| (m.client.clone(), m.id.clone()))
            .collect();
        async move {
            let refs: Vec<(&Client, &ServerId)> = view.iter().map(|(c, i)| (c, i)).collect();
            wait_settled(&refs, timeout).await
        }
    };
    settle(&members).await?;

    let app = format!("failover-{stamp}");
    let secret = "bench-failover-secret";
    let owner = owner_of(&app, &ids).context("no owner")?;
    let owner_client = &members.get(owner).context("no owner")?.client;
    super::create_app(owner_client, &app, secret).await?;
    let job = owner_client
        .create_job(
            &app,
            &JobBody::new(
                "rate",
                TimeExpressionType::FixedRate,
                args.period_ms.to_string(),
                "noop",
            ),
        )
        .await?
        .id;
    let every: Vec<String> = members.iter().map(|m| m.transport.to_string()).collect();
    let worker_log = dir.path().join("worker.log");
    let mut command = Command::new(&worker_exe);
    command
        .env("RUST_LOG", "warn")
        .stderr(
            std::fs::File::create(&worker_log)
                .with_context(|| format!("creating {}", worker_log.display()))?,
        )
        .args(["--server", &every.join(",")])
        .args(["--app", &app, "--secret", secret])
        .args(["--heartbeat-interval-ms", "200"])
        .arg("--data-dir")
        .arg(dir.path().join("worker"));
    let (_worker, _) = ChildProc::spawn(command, "ferrojob-worker ready")?;

    let load_average_start = load_average();
    let mut failover_ms = Vec::new();
    let mut acting_ms = Vec::new();
    for k in 0..args.kills {
        let owner = owner_of(&app, &ids).context("no owner")?;
        // The steady state: the owner runs the job.
        let since = now_ms();
        let started = Instant::now();
        loop {
            let client = &members.get(owner).context("no owner")?.client;
            if let Ok(Some(_)) = first_dispatch_after(client, &app, job, since).await {
                break;
            }
            if started.elapsed() > timeout {
                bail!("the owner dispatched nothing within {timeout:?} before kill {k}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let killed_at = now_ms();
        let victim = members.get_mut(owner).context("no owner")?;
        victim
            .proc
            .take()
            .context("the owner is not running")?
            .kill()?;
        let reaped_at = now_ms();
        let started = Instant::now();
        let mut acting = None;
        let (dispatched, by) = 'poll: loop {
            for (i, m) in members.iter().enumerate() {
                if i == owner {
                    continue;
                }
                if acting.is_none() && m.client.get_job(&app, job).await.is_ok() {
                    acting = Some(now_ms());
                }
                if let Ok(Some(t)) = first_dispatch_after(&m.client, &app, job, reaped_at).await {
                    break 'poll (t, i);
                }
            }
            if started.elapsed() > timeout {
                bail!("no other server dispatched a run within {timeout:?} of kill {k}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let failover = dispatched - killed_at;
        let acting = acting.unwrap_or(dispatched) - killed_at;
        if !json {
            println!(
                "kill {}/{}: {} killed, first run dispatched by {} after {failover} ms (acting after {acting} ms)",
                k + 1,
                args.kills,
                ids.get(owner).map_or("?", |i| i.as_str()),
                ids.get(by).map_or("?", |i| i.as_str()),
            );
        }
        failover_ms.push(failover);
        acting_ms.push(acting);

        members
            .get_mut(owner)
            .context("no owner")?
            .start(&server_exe, args)?;
        settle(&members).await?;
    }
    let load_average_end = load_average();

    let row = Row {
        function: "failover",
        param: format!("{}servers-lease{}ms", args.servers, args.lease_ms),
        servers: args.servers,
        lease_ms: args.lease_ms,
        period_ms: args.period_ms,
        kills: failover_ms.len(),
        failover_p50_ms: nearest_rank(&failover_ms, 0.50),
        failover_p99_ms: nearest_rank(&failover_ms, 0.99),
        failover_max_ms: failover_ms.iter().copied().max().unwrap_or(0),
        acting_p50_ms: nearest_rank(&acting_ms, 0.50),
        acting_p99_ms: nearest_rank(&acting_ms, 0.99),
        acting_max_ms: acting_ms.iter().copied().max().unwrap_or(0),
        failover_ms,
        load_average_start,
        load_average_end,
    };
    let report = args
        .report
        .clone()
        .unwrap_or_else(|| harness::default_report("failover"));
    harness::write_report(&report, &[serde_json::to_value(&row)?])?;
    if json {
        println!("{}", serde_json::to_string(&row)?);
    } else {
        println!(
            "{} kills, {} servers, lease {} ms, FIXED_RATE {} ms (load average {:.1} → {:.1})",
            row.kills,
            row.servers,
            row.lease_ms,
            row.period_ms,
            row.load_average_start,
            row.load_average_end
        );
        println!(
            "  kill → first run dispatched by the new owner: p50 {} ms, p99 {} ms, max {} ms",
            row.failover_p50_ms, row.failover_p99_ms, row.failover_max_ms
        );
        println!(
            "  kill → another server answers the app's job route: p50 {} ms, p99 {} ms, max {} ms",
            row.acting_p50_ms, row.acting_p99_ms, row.acting_max_ms
        );
        println!("  report: {}", report.display());
    }
    drop(members);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let twenty: Vec<i64> = (1..=20).rev().collect();
        assert_eq!(nearest_rank(&twenty, 0.50), 10);
        assert_eq!(nearest_rank(&twenty, 0.99), 20);
        assert_eq!(nearest_rank(&twenty, 1.0), 20);
        assert_eq!(nearest_rank(&[7], 0.99), 7);
        assert_eq!(nearest_rank(&[], 0.5), 0);
        assert_eq!(nearest_rank(&[3, 1], 0.0), 1);
    }
}
