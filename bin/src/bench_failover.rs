//! `ferrojob bench failover`: how long an app goes without a dispatch when the server that
//! owns it is killed, and where that time goes.
//!
//! Starts `--servers` `ferrojob-server --cluster` processes (the binary next to this one)
//! sharing the PostgreSQL database `--store`, each with fixed ports and an id of its own,
//! waits until every partition sits with its rendezvous owner, and creates one app per
//! server, each placed on its own server (its partition's preferred owner), with a
//! FIXED_RATE job of `--period-ms` (the `noop` processor) and a `ferrojob-worker` process
//! given every server's address. Then, `--kills` times, kill `k` takes down server
//! `k mod n`, the owner of app `k mod n`:
//!
//! 1. waits until the owner has dispatched a run of its app (the steady state);
//! 2. notes the wall clock, `kill -9`s the owner and reaps it;
//! 3. reads the killed owner's lease (when it runs out, by the database's clock), then polls
//!    every 10 ms, the surviving servers all at once: the lease row (granted to another
//!    server), the app's job route (`GET /v1/apps/{app}/jobs/{id}`: a server that does not
//!    act for the app refuses it, so an answer means the partition is loaded), the app's
//!    workers (listed once the worker connected to the new owner) and the job's instances,
//!    until one lists an instance whose dispatch time (`actual_trigger_time`) is after the
//!    owner was reaped: only a live server can have dispatched it, so it is the new owner's
//!    first run. The **failover time** is that dispatch time minus the wall clock noted
//!    before the kill (both the same machine's clock, millisecond resolution);
//! 4. restarts the killed server with the same id and ports and waits until the partitions
//!    settle again (the restarted server takes its partitions back by a drain).
//!
//! A server that does not act for the app forwards the job route to the server it reads as
//! holding the partition, which answers only once it has loaded it: an answer from any
//! server still means the partition is loaded.
//! Prints p50/p99/max of the failover and of each step between the milestones (nearest
//! rank: with 20 kills the p99 is the largest) and writes one row to `--report` (default
//! `$CARGO_TARGET_DIR/bench-reports/failover.json`) with every kill's milestones. The
//! database should be a fresh one; the servers' ids and the apps carry the start time, so a
//! second run in the same database does not meet the first one's rows.

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

use ferrojob::cluster::{partition_of, PartitionId};
use ferrojob::server::pg::lease::{self, LeaseRow};

use super::cluster::{free_port, owner_of, spread_apps_named, wait_settled, TOKEN};
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
    /// Kill → the new owner answers the app's job route (the partition is loaded).
    acting_p50_ms: i64,
    acting_p99_ms: i64,
    acting_max_ms: i64,
    /// Kill → the killed owner's lease runs out in the database.
    lease_expired_p50_ms: i64,
    lease_expired_p99_ms: i64,
    lease_expired_max_ms: i64,
    /// Lease out → granted to another server.
    granted_after_expiry_p50_ms: i64,
    granted_after_expiry_p99_ms: i64,
    granted_after_expiry_max_ms: i64,
    /// Granted → loaded.
    loaded_after_grant_p50_ms: i64,
    loaded_after_grant_p99_ms: i64,
    loaded_after_grant_max_ms: i64,
    /// Loaded → the worker is listed by the new owner.
    connected_after_load_p50_ms: i64,
    connected_after_load_p99_ms: i64,
    connected_after_load_max_ms: i64,
    /// Worker listed → the first run dispatched.
    dispatched_after_connect_p50_ms: i64,
    dispatched_after_connect_p99_ms: i64,
    dispatched_after_connect_max_ms: i64,
    /// Every kill's milestones, in order.
    kill_phases: Vec<Kill>,
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

/// One kill's milestones, in milliseconds after the kill (this machine's wall clock, which the
/// servers and the database share).
#[derive(Debug, Clone, Copy, Serialize)]
struct Kill {
    /// The server killed (its index).
    server: usize,
    /// When the killed owner's lease ran out in the database.
    lease_expired_ms: i64,
    /// When the database showed the lease granted to another server (to the poll's
    /// resolution).
    granted_ms: i64,
    /// When the new owner first answered the app's job route: the partition is loaded.
    loaded_ms: i64,
    /// When the new owner first listed the app's worker: the worker found it.
    worker_connected_ms: i64,
    /// When the new owner dispatched its first run (the failover time).
    dispatched_ms: i64,
}

/// The nearest-rank p50, p99 and max of one field over the kills.
fn quantiles(kills: &[Kill], field: impl Fn(&Kill) -> i64) -> [i64; 3] {
    let v: Vec<i64> = kills.iter().map(field).collect();
    [
        nearest_rank(&v, 0.50),
        nearest_rank(&v, 0.99),
        v.iter().copied().max().unwrap_or(0),
    ]
}

/// What one poll of the surviving servers saw, wall clock ms.
#[derive(Default)]
struct Seen {
    granted: Option<i64>,
    loaded: Option<i64>,
    connected: Option<i64>,
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
    let db = lease::connect(&args.store).await?;
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

    // One app per server, each owned by its server, each with a job and a worker given every
    // address: kill k takes down server k mod n, the owner of app k mod n.
    let secret = "bench-failover-secret";
    let every: Vec<String> = members.iter().map(|m| m.transport.to_string()).collect();
    let mut apps = Vec::new();
    let mut workers = Vec::new();
    for (app, owner) in spread_apps_named(&ids, args.servers, &format!("failover-{stamp}"))? {
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
        let worker_log = dir.path().join(format!("worker-{owner}.log"));
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
            .arg(dir.path().join(format!("worker-{owner}")));
        let (worker, _) = ChildProc::spawn(command, "ferrojob-worker ready")?;
        workers.push(worker);
        apps.push((app, job, owner));
    }

    let load_average_start = load_average();
    let mut kills = Vec::new();
    for k in 0..args.kills {
        let (app, job, _) = apps.get(k as usize % apps.len()).context("no app")?.clone();
        let owner = owner_of(&app, &ids).context("no owner")?;
        let partition = partition_of(&app);
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
        // The killed owner's lease, by the database's clock: it runs out `expires_in_ms`
        // after this read.
        let held = lease_of(&db, partition).await?;
        let lease_expired_at = now_ms() + held.as_ref().and_then(|l| l.expires_in_ms).unwrap_or(0);
        let held_epoch = held.map(|l| l.epoch);
        let started = Instant::now();
        let mut seen = Seen::default();
        let (dispatched, by) = 'poll: loop {
            if seen.granted.is_none() {
                if let Some(l) = lease_of(&db, partition).await? {
                    if Some(l.epoch) != held_epoch && l.is_live() {
                        seen.granted = Some(now_ms());
                    }
                }
            }
            let mut probes = tokio::task::JoinSet::new();
            for (i, m) in members.iter().enumerate() {
                if i == owner || m.proc.is_none() {
                    continue;
                }
                let (client, app) = (m.client.clone(), app.clone());
                probes.spawn(async move {
                    let (loaded, workers, dispatched) = tokio::join!(
                        client.get_job(&app, job),
                        client.list_workers(&app),
                        first_dispatch_after(&client, &app, job, reaped_at),
                    );
                    let connected = workers.is_ok_and(|w| !w.workers.is_empty());
                    let dispatched = dispatched.ok().flatten();
                    (i, loaded.is_ok(), connected, dispatched, now_ms())
                });
            }
            let mut found = None;
            while let Some(probe) = probes.join_next().await {
                let (i, loaded, connected, dispatched, at) = probe?;
                if loaded {
                    seen.loaded.get_or_insert(at);
                }
                if connected {
                    seen.connected.get_or_insert(at);
                }
                if let Some(t) = dispatched {
                    found = Some((t, i));
                }
            }
            if let Some(found) = found {
                break 'poll found;
            }
            if started.elapsed() > timeout {
                bail!("no other server dispatched a run within {timeout:?} of kill {k}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        // A milestone not seen before the dispatch was passed between two polls.
        let at = |t: Option<i64>| t.unwrap_or(dispatched).min(dispatched) - killed_at;
        let kill = Kill {
            server: owner,
            lease_expired_ms: lease_expired_at - killed_at,
            granted_ms: at(seen.granted),
            loaded_ms: at(seen.loaded),
            worker_connected_ms: at(seen.connected),
            dispatched_ms: dispatched - killed_at,
        };
        if !json {
            println!(
                "kill {}/{}: {} killed; lease out {} ms, granted {} ms, loaded {} ms, worker connected {} ms, first run dispatched by {} at {} ms",
                k + 1,
                args.kills,
                ids.get(owner).map_or("?", |i| i.as_str()),
                kill.lease_expired_ms,
                kill.granted_ms,
                kill.loaded_ms,
                kill.worker_connected_ms,
                ids.get(by).map_or("?", |i| i.as_str()),
                kill.dispatched_ms,
            );
        }
        kills.push(kill);

        members
            .get_mut(owner)
            .context("no owner")?
            .start(&server_exe, args)?;
        settle(&members).await?;
    }
    let load_average_end = load_average();
    drop(workers);

    let [failover_p50_ms, failover_p99_ms, failover_max_ms] =
        quantiles(&kills, |k| k.dispatched_ms);
    let [lease_expired_p50_ms, lease_expired_p99_ms, lease_expired_max_ms] =
        quantiles(&kills, |k| k.lease_expired_ms);
    let [granted_after_expiry_p50_ms, granted_after_expiry_p99_ms, granted_after_expiry_max_ms] =
        quantiles(&kills, |k| k.granted_ms - k.lease_expired_ms);
    let [loaded_after_grant_p50_ms, loaded_after_grant_p99_ms, loaded_after_grant_max_ms] =
        quantiles(&kills, |k| k.loaded_ms - k.granted_ms);
    let [connected_after_load_p50_ms, connected_after_load_p99_ms, connected_after_load_max_ms] =
        quantiles(&kills, |k| k.worker_connected_ms - k.loaded_ms);
    let [dispatched_after_connect_p50_ms, dispatched_after_connect_p99_ms, dispatched_after_connect_max_ms] =
        quantiles(&kills, |k| k.dispatched_ms - k.worker_connected_ms);
    let [acting_p50_ms, acting_p99_ms, acting_max_ms] = quantiles(&kills, |k| k.loaded_ms);
    let row = Row {
        function: "failover",
        param: format!("{}servers-lease{}ms", args.servers, args.lease_ms),
        servers: args.servers,
        lease_ms: args.lease_ms,
        period_ms: args.period_ms,
        kills: kills.len(),
        failover_p50_ms,
        failover_p99_ms,
        failover_max_ms,
        failover_ms: kills.iter().map(|k| k.dispatched_ms).collect(),
        acting_p50_ms,
        acting_p99_ms,
        acting_max_ms,
        lease_expired_p50_ms,
        lease_expired_p99_ms,
        lease_expired_max_ms,
        granted_after_expiry_p50_ms,
        granted_after_expiry_p99_ms,
        granted_after_expiry_max_ms,
        loaded_after_grant_p50_ms,
        loaded_after_grant_p99_ms,
        loaded_after_grant_max_ms,
        connected_after_load_p50_ms,
        connected_after_load_p99_ms,
        connected_after_load_max_ms,
        dispatched_after_connect_p50_ms,
        dispatched_after_connect_p99_ms,
        dispatched_after_connect_max_ms,
        kill_phases: kills.clone(),
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
            "{} kills over {} servers, lease {} ms, FIXED_RATE {} ms (load average {:.1} → {:.1})",
            row.kills,
            row.servers,
            row.lease_ms,
            row.period_ms,
            row.load_average_start,
            row.load_average_end
        );
        let line = |what: &str, q: [i64; 3]| {
            println!(
                "  {what:<44} p50 {:>5} ms  p99 {:>5} ms  max {:>5} ms",
                q[0], q[1], q[2]
            );
        };
        line(
            "kill → first run dispatched by the new owner",
            [failover_p50_ms, failover_p99_ms, failover_max_ms],
        );
        println!("  where the time goes:");
        line(
            "kill → lease out in the database",
            [
                lease_expired_p50_ms,
                lease_expired_p99_ms,
                lease_expired_max_ms,
            ],
        );
        line(
            "lease out → granted to another server",
            [
                granted_after_expiry_p50_ms,
                granted_after_expiry_p99_ms,
                granted_after_expiry_max_ms,
            ],
        );
        line(
            "granted → partition loaded (job route answers)",
            [
                loaded_after_grant_p50_ms,
                loaded_after_grant_p99_ms,
                loaded_after_grant_max_ms,
            ],
        );
        line(
            "loaded → worker connected (listed)",
            [
                connected_after_load_p50_ms,
                connected_after_load_p99_ms,
                connected_after_load_max_ms,
            ],
        );
        line(
            "worker connected → first run dispatched",
            [
                dispatched_after_connect_p50_ms,
                dispatched_after_connect_p99_ms,
                dispatched_after_connect_max_ms,
            ],
        );
        println!("  report: {}", report.display());
    }
    drop(members);
    Ok(())
}

/// The lease row of `partition`, if it was ever granted.
async fn lease_of(db: &tokio_postgres::Client, partition: PartitionId) -> Result<Option<LeaseRow>> {
    Ok(lease::leases(db)
        .await?
        .into_iter()
        .find(|l| l.partition == partition))
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
