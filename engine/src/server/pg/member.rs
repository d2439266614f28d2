//! A server's membership of the cluster: the task that keeps its heartbeat in
//! `cluster_servers`, runs its [`Ownership`] machine against the `leases` table and tells the
//! rest of the server, through [`Partitions`], which partitions it acts for.
//!
//! ```text
//!             ┌──────────────── Member's loop (never awaits the database) ───────────────┐
//!   timer ───►│ Ownership::handle_timeout ─► commands ─► database task (one connection,  │
//!   answers ─►│ Ownership::handle              ◄── answers ─┘ in order, each bounded by  │
//!             │                                               request_timeout)           │
//!             │ events ─► Partitions::acting / stop (Drain: stop, then Input::Stopped)    │
//!             └───────────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! The loop and the database work are two tasks, so that a slow or hung database never holds
//! up the machine's deadlines: a partition whose renew does not come back is stopped at its
//! local deadline by the timer alone. Every database call is cut off after the machine's
//! `request_timeout` and answered [`Input::Failed`]; a call that went through anyway is
//! harmless (see [`crate::cluster::ownership`] on lost answers).
//!
//! Every `heartbeat_every` the database task renews this server's row (live for
//! `server_ttl`) and reads the live servers: the membership view the machine spreads the
//! partitions by. A view that could not be read changes nothing. In the same round it reads
//! which live server holds each partition and where its HTTP API answers ([`Homes`], what
//! the HTTP API forwards an app's requests by); a read that fails keeps the last one.
//!
//! When the server's writes lose their session mid-transaction ([`WriterStatus::failures`]
//! grows, see [`Partitions::writer_status`]), its cached state may be ahead of the database:
//! the machine is told [`Input::StateLost`], which stops every held partition and releases its
//! lease, and acquires them again, so that each is loaded afresh under a new epoch.
//!
//! Leaving ([`Member::leave`]): the machine is given a view without this server, which
//! drains every partition (the server stops acting for each, then releases its lease), and
//! the server's row is deleted, so the others take its partitions at once instead of after
//! the leases expire. [`Member::abandon`] stops the tasks without any of that, as a crash
//! would: the others take over once the database says the leases expired.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use crate::clock::Clock;
use crate::cluster::ownership::{Command, Event, Input, InvalidConfig, Ownership, OwnershipConfig};
use crate::cluster::{Epoch, MonoUs, PartitionId, ServerId, PARTITION_COUNT};

use super::lease::{self, LeaseError, ServerRow};

/// Commands and heartbeats waiting for the database task at most: the machine queues at most
/// four commands per partition between two polls, and one heartbeat is in flight at a time.
const MAX_DB_QUEUE: usize = 4 * PARTITION_COUNT as usize + 2;

/// Settings of a server's membership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberConfig {
    /// This server.
    pub server: ServerId,
    /// Where workers and clients reach it (`host:port`), announced in `cluster_servers`:
    /// the first is where its workers connect (refusals of other servers name it).
    pub addresses: Vec<String>,
    /// The base URL of its HTTP API (`http://host:port`), announced in `cluster_servers`:
    /// where the other servers forward the requests of the apps this one owns. `None`: they
    /// answer those requests 503 instead.
    pub http_url: Option<String>,
    /// Lease timings.
    pub ownership: OwnershipConfig,
    /// How often the heartbeat is renewed and the live servers read (default 1 s).
    pub heartbeat_every: Duration,
    /// How long one heartbeat keeps this server in the others' view (default 5 s).
    pub server_ttl: Duration,
}

impl MemberConfig {
    /// Defaults for `server`, reachable at `addresses`.
    pub fn new(server: ServerId, addresses: Vec<String>) -> MemberConfig {
        MemberConfig {
            server,
            addresses,
            http_url: None,
            ownership: OwnershipConfig::default(),
            heartbeat_every: Duration::from_secs(1),
            server_ttl: Duration::from_secs(5),
        }
    }
}

/// Why a membership could not start.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    /// The lease timings do not fit together.
    #[error(transparent)]
    Config(#[from] InvalidConfig),
    /// A setting is out of range.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The setting.
        field: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// The first heartbeat failed (the database is unreachable, or the tables are missing).
    #[error(transparent)]
    Lease(#[from] LeaseError),
}

/// The rest of the server, as the membership sees it: told which partitions to act for.
/// Both calls are made from the membership's task and must not block for long.
pub trait Partitions: Send + Sync + 'static {
    /// From now on the server acts for `partition`, stamping `epoch` on its writes and on
    /// its messages to workers.
    fn acting(&self, partition: PartitionId, epoch: Epoch);
    /// The server stops acting for `partition` now (the lease was lost, its deadline passed,
    /// or it is handed to another server); it has stopped when this returns.
    fn stop(&self, partition: PartitionId);
    /// The live servers changed (ids or announced addresses): `live` is the new view, which
    /// spreads the partitions. Called before the view's drains; when leaving, with a view
    /// without this server.
    fn live_servers(&self, live: &[ServerRow]) {
        let _ = live;
    }
    /// The health of the server's fenced writes, watched from the start (`None`: nothing to
    /// watch). Each new failure makes the membership give up and acquire again every
    /// partition it holds (see the module docs).
    fn writer_status(&self) -> Option<watch::Receiver<WriterStatus>> {
        None
    }
}

/// The health of a server's fenced writes on PostgreSQL (its repository's writer).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStatus {
    /// Write transactions that failed (not refused by a fence or a unique constraint) since
    /// the start: each one made the server's cached state suspect.
    pub failures: u64,
    /// Times the writer opened a new session after losing one.
    pub reconnects: u64,
}

/// What the membership knows, for `/metrics` and `cluster status`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberStatus {
    /// The partitions acted for, with their epochs.
    pub acting: BTreeMap<PartitionId, Epoch>,
    /// The live servers of the last membership view read.
    pub live: Vec<ServerId>,
    /// Leases granted to this server since it started.
    pub acquired: u64,
    /// Partitions this server stopped acting for without handing them over (a renew refused,
    /// or the local deadline passed).
    pub lost: u64,
    /// Partitions handed to another server.
    pub handed_over: u64,
    /// The last granted renew's round trip, microseconds.
    pub last_renew_us: Option<u64>,
    /// The slowest granted renew's round trip, microseconds.
    pub max_renew_us: u64,
    /// Database calls that failed or were cut off.
    pub database_errors: u64,
    /// The fenced writes' health, as last seen.
    pub writer: WriterStatus,
}

impl MemberStatus {
    /// The status in the Prometheus text format.
    pub fn metrics_text(&self) -> String {
        let renew = |us: u64| us as f64 / 1e6;
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            ));
        };
        metric(
            "ferrojob_cluster_partitions_owned",
            "gauge",
            "Partitions this server acts for now.",
            self.acting.len().to_string(),
        );
        metric(
            "ferrojob_cluster_servers_live",
            "gauge",
            "Live servers in the last membership view read.",
            self.live.len().to_string(),
        );
        metric(
            "ferrojob_cluster_leases_acquired_total",
            "counter",
            "Partition leases granted to this server.",
            self.acquired.to_string(),
        );
        metric(
            "ferrojob_cluster_leases_lost_total",
            "counter",
            "Partitions this server stopped acting for without handing them over (renew refused or local deadline passed).",
            self.lost.to_string(),
        );
        metric(
            "ferrojob_cluster_partitions_handed_over_total",
            "counter",
            "Partitions this server handed to another server.",
            self.handed_over.to_string(),
        );
        metric(
            "ferrojob_cluster_lease_renew_seconds",
            "gauge",
            "Round trip of the last granted lease renew.",
            renew(self.last_renew_us.unwrap_or(0)).to_string(),
        );
        metric(
            "ferrojob_cluster_lease_renew_max_seconds",
            "gauge",
            "Round trip of the slowest granted lease renew since the start.",
            renew(self.max_renew_us).to_string(),
        );
        metric(
            "ferrojob_cluster_database_errors_total",
            "counter",
            "Lease and heartbeat calls that failed or got no answer in time.",
            self.database_errors.to_string(),
        );
        metric(
            "ferrojob_cluster_writer_failures_total",
            "counter",
            "Write transactions that failed (not refused by a fence): each made the server give up and load again every partition it held.",
            self.writer.failures.to_string(),
        );
        metric(
            "ferrojob_cluster_writer_reconnects_total",
            "counter",
            "Times the writer opened a new database session after losing one.",
            self.writer.reconnects.to_string(),
        );
        out
    }
}

/// Which live server holds each partition and where its HTTP API answers, as the membership
/// last read it from the database (every `heartbeat_every`; see the module docs). It may be
/// one read behind: a server that forwards by it to a former owner gets a refusal or no
/// connection, never a wrong answer.
#[derive(Debug, Default)]
pub struct Homes {
    by_partition: parking_lot::RwLock<BTreeMap<PartitionId, lease::PartitionHome>>,
}

impl Homes {
    /// The holder of `partition` and its HTTP API, when a live server holds it.
    pub fn of(&self, partition: PartitionId) -> Option<lease::PartitionHome> {
        self.by_partition.read().get(&partition).cloned()
    }

    fn replace(&self, homes: Vec<lease::PartitionHome>) {
        let homes = homes.into_iter().map(|h| (h.partition, h)).collect();
        *self.by_partition.write() = homes;
    }
}

/// Random text for a new cluster's forwarding key (32 bytes from a CSPRNG, hex).
fn fresh_key() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A request for the database task.
enum DbRequest {
    Lease(Command),
    Heartbeat,
    Leave(oneshot::Sender<()>),
}

/// What the database task answers.
enum DbAnswer {
    Lease {
        input: Option<Input>,
        renew_us: Option<u64>,
        failed: bool,
    },
    Membership(Result<Vec<ServerRow>, LeaseError>),
}

/// A running membership (see the module docs).
#[derive(Debug)]
pub struct Member {
    server: ServerId,
    status: watch::Receiver<MemberStatus>,
    homes: Arc<Homes>,
    forward_key: Arc<str>,
    leave: Option<oneshot::Sender<()>>,
    main: JoinHandle<()>,
    db: JoinHandle<()>,
}

impl Member {
    /// Connects to the database at `url` (migrated already: the server's repository does
    /// that), sends the first heartbeat, reads the cluster's forwarding key (writing one when
    /// it is the first server) and starts the membership's tasks.
    pub async fn start(
        url: &str,
        config: MemberConfig,
        clock: Arc<dyn Clock>,
        partitions: Arc<dyn Partitions>,
    ) -> Result<Member, MemberError> {
        let ownership = Ownership::new(config.server.clone(), config.ownership)?;
        if config.heartbeat_every.is_zero() || config.server_ttl <= config.heartbeat_every {
            return Err(MemberError::Invalid {
                field: "server_ttl",
                reason: "heartbeat_every must be positive and shorter than server_ttl",
            });
        }
        let client = lease::connect(url).await?;
        // A lock wait ends well before the request's own time-out.
        lease::bound_lock_waits(&client, config.ownership.request_timeout * 3 / 4).await?;
        lease::heartbeat(
            &client,
            &config.server,
            &config.addresses,
            config.http_url.as_deref(),
            config.server_ttl,
        )
        .await?;
        let forward_key: Arc<str> = Arc::from(lease::forward_key(&client, &fresh_key()).await?);
        let homes = Arc::new(Homes::default());
        homes.replace(lease::homes(&client).await?);
        let server = config.server.clone();
        let (requests, requests_rx) = mpsc::channel(MAX_DB_QUEUE);
        let (answers_tx, answers) = mpsc::channel(MAX_DB_QUEUE);
        let db = tokio::spawn(database_task(
            client,
            config.clone(),
            Arc::clone(&homes),
            requests_rx,
            answers_tx,
        ));
        let (status_tx, status) = watch::channel(MemberStatus::default());
        let (leave, leave_rx) = oneshot::channel();
        let writer = partitions.writer_status();
        let main = tokio::spawn(
            Looper {
                ownership,
                config,
                clock,
                partitions,
                requests,
                status: MemberStatus::default(),
                rows: Vec::new(),
                status_tx,
                heartbeat_in_flight: false,
                next_heartbeat: MonoUs::MIN,
            }
            .run(answers, leave_rx, writer),
        );
        Ok(Member {
            server,
            status,
            homes,
            forward_key,
            leave: Some(leave),
            main,
            db,
        })
    }

    /// What the membership knows now.
    pub fn status(&self) -> MemberStatus {
        self.status.borrow().clone()
    }

    /// This server.
    pub fn server(&self) -> &ServerId {
        &self.server
    }

    /// Which server holds each partition, and where its HTTP API answers.
    pub fn homes(&self) -> Arc<Homes> {
        Arc::clone(&self.homes)
    }

    /// The key every server of the cluster shares to mark the requests it forwards (see
    /// `crate::http`'s forwarding): a secret, as sensitive as the admin token.
    pub fn forward_key(&self) -> Arc<str> {
        Arc::clone(&self.forward_key)
    }

    /// A receiver that sees every change of the status.
    pub fn watch(&self) -> watch::Receiver<MemberStatus> {
        self.status.clone()
    }

    /// Hands every partition over and leaves the membership (see the module docs); gives up
    /// after `timeout`, leaving what is not released to expire.
    pub async fn leave(mut self, timeout: Duration) {
        if let Some(leave) = self.leave.take() {
            let _ = leave.send(());
        }
        if tokio::time::timeout(timeout, &mut self.main).await.is_err() {
            tracing::warn!("cluster membership: leaving took too long; the leases will expire");
        }
        self.main.abort();
        self.db.abort();
    }

    /// Stops at once without releasing or leaving anything, as a crash would.
    pub fn abandon(self) {
        self.main.abort();
        self.db.abort();
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.main.abort();
        self.db.abort();
    }
}

/// Carries out the database requests in order on one connection, each bounded by the
/// machine's `request_timeout`.
async fn database_task(
    client: Client,
    config: MemberConfig,
    homes: Arc<Homes>,
    mut requests: mpsc::Receiver<DbRequest>,
    answers: mpsc::Sender<DbAnswer>,
) {
    let limit = config.ownership.request_timeout;
    let me = &config.server;
    while let Some(request) = requests.recv().await {
        let answer = match request {
            DbRequest::Lease(command) => {
                let is_renew = matches!(command, Command::Renew { .. });
                let started = Instant::now();
                match tokio::time::timeout(limit, lease::carry_out(&client, me, command.clone()))
                    .await
                {
                    Ok(input) => {
                        let failed = matches!(input, Some(Input::Failed { .. }));
                        let renew_us = (is_renew && matches!(input, Some(Input::Renewed { .. })))
                            .then(|| {
                                u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX)
                            });
                        DbAnswer::Lease {
                            input,
                            renew_us,
                            failed,
                        }
                    }
                    Err(_) => {
                        tracing::warn!(?command, "cluster membership: lease call timed out");
                        DbAnswer::Lease {
                            input: command.failed(),
                            renew_us: None,
                            failed: true,
                        }
                    }
                }
            }
            DbRequest::Heartbeat => {
                let call = async {
                    let url = config.http_url.as_deref();
                    lease::heartbeat(&client, me, &config.addresses, url, config.server_ttl)
                        .await?;
                    let live = lease::live_servers(&client).await?;
                    // The membership view counts even when the homes cannot be read.
                    match lease::homes(&client).await {
                        Ok(found) => homes.replace(found),
                        Err(e) => {
                            tracing::debug!(error = %e, "cluster membership: cannot read the partitions' homes")
                        }
                    }
                    Ok(live)
                };
                let view = tokio::time::timeout(limit, call)
                    .await
                    .unwrap_or_else(|_| Err(LeaseError::Database("no answer in time".into())));
                DbAnswer::Membership(view)
            }
            DbRequest::Leave(done) => {
                if let Err(e) = lease::leave(&client, me).await {
                    tracing::warn!(error = %e, "cluster membership: could not leave; the heartbeat will expire");
                }
                let _ = done.send(());
                continue;
            }
        };
        if answers.send(answer).await.is_err() {
            break;
        }
    }
}

/// The next value of `writer`, or `None` when its sender is gone; pending forever without
/// one.
async fn changed(writer: &mut Option<watch::Receiver<WriterStatus>>) -> Option<WriterStatus> {
    match writer {
        Some(w) => match w.changed().await {
            Ok(()) => Some(*w.borrow_and_update()),
            Err(_) => None,
        },
        None => std::future::pending().await,
    }
}

/// The membership's loop: the machine, its timer, the answers and the events.
struct Looper {
    ownership: Ownership,
    config: MemberConfig,
    clock: Arc<dyn Clock>,
    partitions: Arc<dyn Partitions>,
    requests: mpsc::Sender<DbRequest>,
    status: MemberStatus,
    /// The live servers of the last view, as told to [`Partitions::live_servers`] (sorted
    /// by id; the expiries left out, so that a renewed heartbeat changes nothing).
    rows: Vec<ServerRow>,
    status_tx: watch::Sender<MemberStatus>,
    heartbeat_in_flight: bool,
    next_heartbeat: MonoUs,
}

impl Looper {
    fn now(&self) -> MonoUs {
        MonoUs(self.clock.monotonic_us())
    }

    async fn run(
        mut self,
        mut answers: mpsc::Receiver<DbAnswer>,
        mut leave: oneshot::Receiver<()>,
        mut writer: Option<watch::Receiver<WriterStatus>>,
    ) {
        if let Some(w) = &mut writer {
            self.status.writer = *w.borrow_and_update();
        }
        loop {
            let now = self.now();
            self.ownership.handle_timeout(now);
            if now >= self.next_heartbeat && !self.heartbeat_in_flight {
                self.heartbeat_in_flight = self.requests.try_send(DbRequest::Heartbeat).is_ok();
                self.next_heartbeat = now.plus(self.config.heartbeat_every);
            }
            if !self.flush() {
                return;
            }
            let wake = self
                .ownership
                .poll_timeout()
                .map_or(self.next_heartbeat, |t| t.min(self.next_heartbeat));
            let wait_us = wake.0.saturating_sub(self.now().0).max(0);
            let sleep = self
                .clock
                .sleep_until(self.clock.now_us().saturating_add(wait_us));
            tokio::select! {
                answer = answers.recv() => match answer {
                    Some(answer) => self.on_answer(answer),
                    None => return,
                },
                _ = &mut leave => {
                    self.hand_over(&mut answers).await;
                    return;
                }
                changed = changed(&mut writer) => match changed {
                    Some(now) => self.on_writer(now),
                    // The repository is gone: nothing more to watch.
                    None => writer = None,
                },
                () = sleep => {}
            }
        }
    }

    /// The writes' health changed: a new failure loses every held partition's state.
    fn on_writer(&mut self, now: WriterStatus) {
        let failed = now.failures > self.status.writer.failures;
        self.status.writer = now;
        if failed {
            tracing::warn!(
                failures = now.failures,
                "cluster: the writes' session failed; loading every held partition again under a new lease"
            );
            let at = self.now();
            self.ownership.handle(at, Input::StateLost);
        }
    }

    fn on_answer(&mut self, answer: DbAnswer) {
        let now = self.now();
        match answer {
            DbAnswer::Lease {
                input,
                renew_us,
                failed,
            } => {
                if failed {
                    self.status.database_errors += 1;
                }
                if let Some(us) = renew_us {
                    self.status.last_renew_us = Some(us);
                    self.status.max_renew_us = self.status.max_renew_us.max(us);
                }
                if let Some(input) = input {
                    if matches!(input, Input::Acquired { .. }) {
                        self.status.acquired += 1;
                    }
                    self.ownership.handle(now, input);
                }
            }
            DbAnswer::Membership(view) => {
                self.heartbeat_in_flight = false;
                match view {
                    Ok(rows) => {
                        let live: Vec<ServerId> = rows.iter().map(|s| s.id.clone()).collect();
                        self.tell_live_servers(rows);
                        self.status.live = live.clone();
                        self.ownership.handle(now, Input::Membership(live));
                    }
                    Err(e) => {
                        self.status.database_errors += 1;
                        tracing::warn!(error = %e, "cluster membership: heartbeat failed");
                    }
                }
            }
        }
    }

    /// Tells the server the live servers, when they changed.
    fn tell_live_servers(&mut self, mut rows: Vec<ServerRow>) {
        for r in &mut rows {
            r.expires_in_ms = 0;
        }
        rows.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        if rows != self.rows {
            self.partitions.live_servers(&rows);
            self.rows = rows;
        }
    }

    /// Hands the machine's commands to the database task and its events to the server, until
    /// neither is left; publishes the status. False when the database task is gone.
    fn flush(&mut self) -> bool {
        loop {
            let mut idle = true;
            while let Some(command) = self.ownership.poll_command() {
                idle = false;
                // Never waits: a database far behind (hung, each call cut at the timeout) must
                // not hold up the deadlines. A command that finds the queue full is answered
                // as failed at once; the machine retries it later (a release is left to
                // expire).
                match self.requests.try_send(DbRequest::Lease(command)) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(DbRequest::Lease(command))) => {
                        self.status.database_errors += 1;
                        if let Some(input) = command.failed() {
                            let now = self.now();
                            self.ownership.handle(now, input);
                        }
                    }
                    Err(_) => return false,
                }
            }
            while let Some(event) = self.ownership.poll_event() {
                idle = false;
                self.on_event(event);
            }
            if idle {
                break;
            }
        }
        self.status_tx.send_if_modified(|s| {
            if *s == self.status {
                false
            } else {
                *s = self.status.clone();
                true
            }
        });
        true
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Acting { partition, epoch } => {
                tracing::info!(%partition, %epoch, "cluster: acting for partition");
                self.partitions.acting(partition, epoch);
                self.status.acting.insert(partition, epoch);
            }
            Event::Stop { partition, reason } => {
                tracing::warn!(%partition, ?reason, "cluster: stopped acting for partition");
                self.partitions.stop(partition);
                if self.status.acting.remove(&partition).is_some() {
                    self.status.lost += 1;
                }
            }
            Event::Drain { partition } => {
                tracing::info!(%partition, "cluster: handing partition over");
                self.partitions.stop(partition);
                if self.status.acting.remove(&partition).is_some() {
                    self.status.handed_over += 1;
                }
                let now = self.now();
                self.ownership.handle(now, Input::Stopped { partition });
            }
        }
    }

    /// Leaving: a view without this server drains everything; the releases and then the
    /// removal of this server's row go to the database in that order.
    async fn hand_over(&mut self, answers: &mut mpsc::Receiver<DbAnswer>) {
        let me = self.ownership.me().clone();
        let mut live = self.status.live.clone();
        live.retain(|s| *s != me);
        let mut rows = self.rows.clone();
        rows.retain(|s| s.id != me);
        self.tell_live_servers(rows);
        let now = self.now();
        self.ownership.handle(now, Input::Membership(live));
        if !self.flush() {
            return;
        }
        let (done, left) = oneshot::channel();
        if self.requests.try_send(DbRequest::Leave(done)).is_err() {
            tracing::warn!("cluster membership: the database is far behind; this server's row will expire instead");
            return;
        }
        // Answers still arriving (acquires in flight) are fed in, so that a lease granted
        // meanwhile is drained and released too.
        let mut left = std::pin::pin!(left);
        loop {
            tokio::select! {
                _ = &mut left => break,
                answer = answers.recv() => match answer {
                    // A view read before leaving would make this server preferred again.
                    Some(DbAnswer::Membership(_)) => self.heartbeat_in_flight = false,
                    Some(answer) => {
                        self.on_answer(answer);
                        if !self.flush() {
                            return;
                        }
                    }
                    None => return,
                },
            }
        }
        tracing::info!(server = %me, "cluster: left the membership");
    }
}
