//! `ferrojob-server`'s configuration: flags, environment variables and an optional TOML file.
//!
//! Precedence, highest first: a flag, its environment variable (`FERROJOB_*`), the TOML file
//! (`--config FILE`), the default. Every key of the file is optional and named like its flag
//! with `_` for `-`:
//!
//! ```toml
//! data_dir = "ferrojob-data"        # LogStore in DIR/store, admin token in DIR/admin.token
//! store = "postgres://postgres@127.0.0.1:5432/ferrojob"  # PostgreSQL instead of DIR/store
//! cluster = false                   # one server of a cluster sharing `store`
//! server_id = "10.0.0.5:10086"      # its id in the cluster (default: the `listen` address)
//! lease_ms = 4000                   # a dead server's partitions are taken over after this
//! http_advertise = "http://10.0.0.5:7700"  # where the other servers forward this one's apps
//! http = "127.0.0.1:7700"           # OpenAPI
//! listen = "127.0.0.1:10086"        # workers connect here
//! ephemeral = false                 # MemoryStore: nothing survives the process
//! admin_token = "..."               # default: read or generate DIR/admin.token
//! heartbeat_interval_ms = 1000      # a worker missing 3 heartbeats is dead
//! worker_receive_timeout_ms = 10000 # dispatched but unconfirmed this long -> re-dispatch
//! keep_finished_runs = 100          # finished instances kept per job (oldest deleted)
//! keep_finished_workflow_runs = 100 # finished workflow instances kept per workflow (oldest
//!                                   # deleted with their node instances)
//! retention_ms = 604800000          # finished instances and workflow instances older than
//!                                   # this are deleted (0: off)
//! misfire_threshold_ms = 5000       # later than this -> the job's misfire policy applies
//! max_body_bytes = 1048576          # largest HTTP request body
//! secure_cookies = false            # web console cookies `Secure` (served over TLS by a proxy)
//! api_rate_per_sec = 1000           # OpenAPI requests per second per app (0: no limit) ...
//! api_burst = 2000                  # ... after this many at once; beyond: 429 + Retry-After
//! failed_logins_per_min = 10        # failed sign-ins per source address (0: no limit) ...
//! http_connections_per_min = 6000   # new HTTP connections per source address after 200 (0: no limit)
//! app_secret_tokens = false         # compatibility: an app's worker secret is also its admin API token
//! salvage = false                   # start even if the store is damaged mid-log: keep every
//!                                   # intact record, move the damaged part aside
//! restart_grace_ms = 3000           # after a restart, wait this long for workers to return
//! max_log_lines_per_instance = 100000
//! max_jobs_per_app = 10000          # creating one more job in a full app is refused (409)
//! min_period_ms = 1000              # shortest FIXED_RATE period / FIXED_DELAY delay (400)
//! # The worker port's limits (each hit is counted in /metrics):
//! max_worker_connections = 10000    # authenticated worker connections at once
//! max_handshaking = 256             # connections still in their handshake at once
//! handshake_rate_per_min = 6000     # new connections per source address per minute (0: off)
//! handshake_burst = 200             # ... after this many at once
//! max_frame_bytes = 4194304         # largest frame from an authenticated worker
//! max_handshake_frame_bytes = 4096  # largest frame before authentication
//! # TLS on both ports (PEM files; the chain starts with the server's certificate):
//! tls_cert = "/etc/ferrojob/server.crt"
//! tls_key = "/etc/ferrojob/server.key"
//! insecure_plaintext = false        # allow plain TCP/HTTP on a non-loopback address
//! # https:// alarm channels: verified against the public roots and this CA (PEM)
//! alarm_tls_ca = "/etc/ferrojob/internal-ca.pem"
//! # internal networks or hosts alarm webhooks may reach (default: public addresses only)
//! alarm_allow = ["10.0.0.0/8", "alerts.internal"]
//! ```
//!
//! Without `tls_cert`/`tls_key` both ports are plain TCP. That is allowed on loopback
//! addresses only, unless `insecure_plaintext` says otherwise explicitly (the server then
//! warns at start): app secrets, API tokens and job messages would cross the network in
//! clear text.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use ferrojob::https::destination::AllowedDestination;
use ferrojob::launch::LaunchConfig;
use serde::Deserialize;

/// Command-line flags (each with its environment variable).
#[derive(Debug, Clone, Default, clap::Parser)]
#[command(
    name = "ferrojob-server",
    version,
    about = "The ferrojob server: schedules, instances, dispatch, OpenAPI"
)]
pub struct ServerArgs {
    /// TOML configuration file.
    #[arg(long, env = "FERROJOB_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (default ./ferrojob-data).
    #[arg(long, env = "FERROJOB_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// OpenAPI address (default 127.0.0.1:7700).
    #[arg(long, env = "FERROJOB_HTTP")]
    pub http: Option<SocketAddr>,
    /// Worker transport address (default 127.0.0.1:10086).
    #[arg(long, env = "FERROJOB_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Keep everything in memory (nothing survives the process).
    #[arg(long, env = "FERROJOB_EPHEMERAL")]
    pub ephemeral: bool,
    /// Keep the state in PostgreSQL instead of the data dir's log store:
    /// `postgres://user[:password]@host:port/database` (the schema is created or upgraded at
    /// start; the data dir then holds only the admin token).
    #[arg(long, env = "FERROJOB_STORE")]
    pub store: Option<String>,
    /// Run as one server of a cluster sharing the `--store` database: apps are spread over
    /// the live servers by partition, each partition owned by one server under a lease, and
    /// another server takes a dead one's partitions over (default off: the only server).
    #[arg(long, env = "FERROJOB_CLUSTER")]
    pub cluster: bool,
    /// This server's id in the cluster: unique among the servers, 1 to 64 of ASCII letters,
    /// digits, '.', '_', '-', ':' (default: the worker transport address).
    #[arg(long, env = "FERROJOB_SERVER_ID")]
    pub server_id: Option<String>,
    /// How long a partition's lease lasts without a renew, ms (default 4000): a dead
    /// server's partitions are taken over about this long after it stopped renewing.
    #[arg(long, env = "FERROJOB_LEASE_MS")]
    pub lease_ms: Option<u64>,
    /// With --cluster: the `http://host:port` the other servers reach this one's HTTP API at,
    /// to forward the requests of the apps it owns (default: `http://` and the --http
    /// address, unless that is `0.0.0.0` or `[::]` or HTTP is served over TLS; then this server's
    /// apps are answered 503 by the others instead of forwarded).
    #[arg(long, env = "FERROJOB_HTTP_ADVERTISE")]
    pub http_advertise: Option<String>,
    /// Admin token (default: read or generate DATA_DIR/admin.token).
    #[arg(long, env = "FERROJOB_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Heartbeat interval workers are expected to keep, ms (default 1000).
    #[arg(long, env = "FERROJOB_HEARTBEAT_INTERVAL_MS")]
    pub heartbeat_interval_ms: Option<u64>,
    /// Re-dispatch an instance its worker has not confirmed within this, ms (default 10000).
    #[arg(long, env = "FERROJOB_WORKER_RECEIVE_TIMEOUT_MS")]
    pub worker_receive_timeout_ms: Option<u64>,
    /// Finished instances kept per job (default 100).
    #[arg(long, env = "FERROJOB_KEEP_FINISHED_RUNS")]
    pub keep_finished_runs: Option<usize>,
    /// Finished workflow instances kept per workflow (default 100); older ones are deleted
    /// with their node instances and those instances' logs.
    #[arg(long, env = "FERROJOB_KEEP_FINISHED_WORKFLOW_RUNS")]
    pub keep_finished_workflow_runs: Option<usize>,
    /// Finished instances and workflow instances older than this are deleted with their logs
    /// (a workflow instance with its node instances), ms (default 7 days; 0 turns the age rule
    /// off).
    #[arg(long, env = "FERROJOB_RETENTION_MS")]
    pub retention_ms: Option<u64>,
    /// Misfire threshold, ms (default 5000).
    #[arg(long, env = "FERROJOB_MISFIRE_THRESHOLD_MS")]
    pub misfire_threshold_ms: Option<u64>,
    /// Largest HTTP request body, bytes (default 1 MiB).
    #[arg(long, env = "FERROJOB_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Mark the web console's cookies `Secure`: set it when browsers reach the server over
    /// TLS (through a TLS-terminating proxy). Default off.
    #[arg(long, env = "FERROJOB_SECURE_COOKIES")]
    pub secure_cookies: bool,
    /// OpenAPI requests per second per app (and for the admin token) after the burst; beyond
    /// it a request is answered 429 with `Retry-After` (default 1000; 0 turns the limit off).
    #[arg(long, env = "FERROJOB_API_RATE_PER_SEC")]
    pub api_rate_per_sec: Option<u32>,
    /// OpenAPI requests an app may send at once before the rate applies (default 2000).
    #[arg(long, env = "FERROJOB_API_BURST")]
    pub api_burst: Option<u32>,
    /// Failed sign-ins (refused tokens) a source address may make a minute after a burst of
    /// 20; past it, its requests with a token are answered 429 (default 10; 0 turns the limit
    /// off).
    #[arg(long, env = "FERROJOB_FAILED_LOGINS_PER_MIN")]
    pub failed_logins_per_min: Option<u32>,
    /// New HTTP connections a source address may open a minute after a burst of 200; past
    /// it a connection is answered 429 and closed on arrival (default 6000; 0 turns the
    /// limit off).
    #[arg(long, env = "FERROJOB_HTTP_CONNECTIONS_PER_MIN")]
    pub http_connections_per_min: Option<u32>,
    /// Compatibility mode: accept each app's worker secret as an `admin` API token of that
    /// app, as servers did before API tokens. Default off: the worker secret opens only the
    /// worker port; create API tokens with `ferrojob token create`.
    #[arg(long, env = "FERROJOB_APP_SECRET_TOKENS")]
    pub app_secret_tokens: bool,
    /// Start even if the store is damaged in the middle of its log: keep every intact record
    /// before the damage, move the damaged part aside (`*.log.corrupt*` files next to the
    /// segments, nothing deleted) and log what was moved. Default: refuse to start.
    #[arg(long, env = "FERROJOB_SALVAGE")]
    pub salvage: bool,
    /// After a restart, how long to wait for workers to reconnect before their instances go
    /// to the retry policy, ms (default 3000).
    #[arg(long, env = "FERROJOB_RESTART_GRACE_MS")]
    pub restart_grace_ms: Option<u64>,
    /// Log lines stored per instance; beyond, lines are counted as dropped (default 100000).
    #[arg(long, env = "FERROJOB_MAX_LOG_LINES_PER_INSTANCE")]
    pub max_log_lines_per_instance: Option<u64>,
    /// Jobs an app may have; one more is refused with 409 (default 10000).
    #[arg(long, env = "FERROJOB_MAX_JOBS_PER_APP")]
    pub max_jobs_per_app: Option<usize>,
    /// Shortest FIXED_RATE period or FIXED_DELAY delay of a job or workflow, ms (default 1000).
    #[arg(long, env = "FERROJOB_MIN_PERIOD_MS")]
    pub min_period_ms: Option<u64>,
    /// Authenticated worker connections served at once (default 10000).
    #[arg(long, env = "FERROJOB_MAX_WORKER_CONNECTIONS")]
    pub max_worker_connections: Option<usize>,
    /// Worker-port connections kept in their handshake at once; the oldest is closed to make
    /// room (default 256).
    #[arg(long, env = "FERROJOB_MAX_HANDSHAKING")]
    pub max_handshaking: Option<usize>,
    /// New worker-port connections per source address per minute after the burst (default
    /// 6000; 0 turns the limit off, e.g. behind one NAT address).
    #[arg(long, env = "FERROJOB_HANDSHAKE_RATE_PER_MIN")]
    pub handshake_rate_per_min: Option<u32>,
    /// Connections a source may open at once before the rate applies (default 200).
    #[arg(long, env = "FERROJOB_HANDSHAKE_BURST")]
    pub handshake_burst: Option<u32>,
    /// Largest frame an authenticated worker may send, bytes (default 4 MiB).
    #[arg(long, env = "FERROJOB_MAX_FRAME_BYTES")]
    pub max_frame_bytes: Option<u32>,
    /// Largest frame before authentication, bytes (default 4 KiB).
    #[arg(long, env = "FERROJOB_MAX_HANDSHAKE_FRAME_BYTES")]
    pub max_handshake_frame_bytes: Option<u32>,
    /// TLS certificate chain (PEM, the server's certificate first) for the worker port and
    /// HTTP; needs --tls-key.
    #[arg(long, env = "FERROJOB_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) of --tls-cert.
    #[arg(long, env = "FERROJOB_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve plain TCP and HTTP on a non-loopback address (without it, the server refuses
    /// to start so unless TLS is configured). Secrets and tokens then cross the network in
    /// clear text.
    #[arg(long, env = "FERROJOB_INSECURE_PLAINTEXT")]
    pub insecure_plaintext: bool,
    /// CA certificates (PEM) that https:// alarm channels may be signed by, besides the
    /// public roots (webhooks on a private CA).
    #[arg(long, env = "FERROJOB_ALARM_TLS_CA")]
    pub alarm_tls_ca: Option<PathBuf>,
    /// A network (`10.0.0.0/8`, `127.0.0.1`) or host name (`alerts.internal`) that alarm
    /// webhooks may reach although it is loopback, link-local, private or otherwise internal
    /// (repeat for more; with the file's `alarm_allow`). Without it, webhooks reach public
    /// addresses only: an app's admin chooses the URL, the server posts from its network.
    #[arg(
        long = "alarm-allow",
        env = "FERROJOB_ALARM_ALLOW",
        value_delimiter = ',',
        value_name = "NETWORK|HOST"
    )]
    pub alarm_allow: Vec<AllowedDestination>,
}

/// The TOML file's keys (all optional; unknown keys are an error).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    data_dir: Option<PathBuf>,
    store: Option<String>,
    cluster: Option<bool>,
    server_id: Option<String>,
    lease_ms: Option<u64>,
    http_advertise: Option<String>,
    http: Option<SocketAddr>,
    listen: Option<SocketAddr>,
    ephemeral: Option<bool>,
    admin_token: Option<String>,
    heartbeat_interval_ms: Option<u64>,
    worker_receive_timeout_ms: Option<u64>,
    keep_finished_runs: Option<usize>,
    keep_finished_workflow_runs: Option<usize>,
    retention_ms: Option<u64>,
    misfire_threshold_ms: Option<u64>,
    max_body_bytes: Option<usize>,
    secure_cookies: Option<bool>,
    api_rate_per_sec: Option<u32>,
    api_burst: Option<u32>,
    failed_logins_per_min: Option<u32>,
    http_connections_per_min: Option<u32>,
    app_secret_tokens: Option<bool>,
    salvage: Option<bool>,
    restart_grace_ms: Option<u64>,
    max_log_lines_per_instance: Option<u64>,
    max_jobs_per_app: Option<usize>,
    min_period_ms: Option<u64>,
    max_worker_connections: Option<usize>,
    max_handshaking: Option<usize>,
    handshake_rate_per_min: Option<u32>,
    handshake_burst: Option<u32>,
    max_frame_bytes: Option<u32>,
    max_handshake_frame_bytes: Option<u32>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    insecure_plaintext: Option<bool>,
    alarm_tls_ca: Option<PathBuf>,
    alarm_allow: Option<Vec<String>>,
}

/// Default OpenAPI address.
pub const DEFAULT_HTTP: &str = "127.0.0.1:7700";
/// Default transport address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:10086";
/// Default data dir.
pub const DEFAULT_DATA_DIR: &str = "ferrojob-data";
/// Default lease of a cluster's partitions, ms.
pub const DEFAULT_LEASE_MS: u64 = 4000;

impl ServerArgs {
    /// Reads `--config` (if any) and merges: flag/env > file > default.
    pub fn resolve(&self) -> Result<LaunchConfig> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .with_context(|| format!("{} is not a valid configuration", path.display()))?
            }
            None => FileConfig::default(),
        };
        self.merge(file)
    }

    /// Merges with an already parsed file (flag/env > file > default).
    pub fn merge(&self, file: FileConfig) -> Result<LaunchConfig> {
        let http = match self.http.or(file.http) {
            Some(a) => a,
            None => DEFAULT_HTTP.parse()?,
        };
        let listen = match self.listen.or(file.listen) {
            Some(a) => a,
            None => DEFAULT_LISTEN.parse()?,
        };
        let ephemeral = self.ephemeral || file.ephemeral.unwrap_or(false);
        let data_dir = self
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let mut config = LaunchConfig::new(Some(data_dir), http, listen);
        config.ephemeral = ephemeral;
        if let Some(url) = self.store.clone().or(file.store) {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                anyhow::bail!(
                    "--store takes a postgres:// URL (the default is the data dir's log store)"
                );
            }
            config.core.store = ferrojob::server::StoreChoice::Postgres {
                url,
                options: ferrojob::server::pg::PgOptions::default(),
            };
        }
        if self.cluster || file.cluster.unwrap_or(false) {
            if !matches!(
                config.core.store,
                ferrojob::server::StoreChoice::Postgres { .. }
            ) {
                anyhow::bail!("--cluster needs --store postgres://... (the servers share it)");
            }
            let id = self
                .server_id
                .clone()
                .or(file.server_id)
                .unwrap_or_else(|| listen.to_string());
            let server = ferrojob::cluster::ServerId::new(&id)?;
            let lease = self.lease_ms.or(file.lease_ms).unwrap_or(DEFAULT_LEASE_MS);
            let mut member = ferrojob::server::pg::member::MemberConfig::new(
                server,
                vec![listen.to_string(), http.to_string()],
            );
            member.ownership =
                ferrojob::cluster::OwnershipConfig::with_lease(Duration::from_millis(lease));
            member
                .ownership
                .validate()
                .context("--lease-ms is too short")?;
            // A server drops out of the others' view a lease after its last heartbeat. The
            // others read the view with every heartbeat: every sixteenth of that (250 ms at
            // the default lease), so that a dead owner's successor sees it gone within a
            // sixteenth after its row expired, about when its leases expire (two small
            // statements per server per heartbeat).
            member.server_ttl = Duration::from_millis(lease).max(Duration::from_secs(2));
            member.heartbeat_every = member.server_ttl / 16;
            // A refused acquire (the lease not expired yet) is tried again as often: the
            // successor takes the partition within a sixteenth of a lease after it expires.
            // Only partitions whose preferred owner does not hold them are tried.
            member.ownership.retry_every = member.server_ttl / 16;
            config.core.cluster = Some(member);
            config.http_advertise = self.http_advertise.clone().or(file.http_advertise);
        } else if self.http_advertise.is_some() || file.http_advertise.is_some() {
            anyhow::bail!("--http-advertise is for a server of a cluster (--cluster)");
        }
        config.admin_token = self.admin_token.clone().or(file.admin_token);
        if let Some(v) = self.max_body_bytes.or(file.max_body_bytes) {
            config.max_body_bytes = v;
        }
        config.secure_cookies = self.secure_cookies || file.secure_cookies.unwrap_or(false);
        config.app_secret_tokens =
            self.app_secret_tokens || file.app_secret_tokens.unwrap_or(false);
        let failed = self.failed_logins_per_min.or(file.failed_logins_per_min);
        config.failed_logins = match failed {
            Some(0) => None,
            Some(per_min) => Some(ferrojob::http::FailedLoginLimit {
                per_min,
                ..ferrojob::http::FailedLoginLimit::default()
            }),
            None => Some(ferrojob::http::FailedLoginLimit::default()),
        };
        config.http_connection_rate = match self
            .http_connections_per_min
            .or(file.http_connections_per_min)
        {
            Some(0) => None,
            Some(per_min) => Some(ferrojob::http::ConnectionRateLimit {
                per_min,
                ..ferrojob::http::ConnectionRateLimit::default()
            }),
            None => Some(ferrojob::http::ConnectionRateLimit::default()),
        };
        let rate = self.api_rate_per_sec.or(file.api_rate_per_sec);
        let burst = self.api_burst.or(file.api_burst);
        let default = ferrojob::http::ApiRateLimit::default();
        config.api_rate = match rate {
            Some(0) => None,
            _ => Some(ferrojob::http::ApiRateLimit {
                per_sec: rate.unwrap_or(default.per_sec),
                burst: burst.unwrap_or(default.burst).max(1),
                ..default
            }),
        };
        let core = &mut config.core;
        if self.salvage || file.salvage.unwrap_or(false) {
            core.recovery = ferrojob_store::RecoveryMode::Salvage;
        }
        if let Some(v) = self.heartbeat_interval_ms.or(file.heartbeat_interval_ms) {
            core.heartbeat_interval_ms = v;
        }
        if let Some(v) = self
            .worker_receive_timeout_ms
            .or(file.worker_receive_timeout_ms)
        {
            core.worker_receive_timeout_ms = v;
        }
        if let Some(v) = self.keep_finished_runs.or(file.keep_finished_runs) {
            core.keep_finished_runs = v;
        }
        if let Some(v) = self
            .keep_finished_workflow_runs
            .or(file.keep_finished_workflow_runs)
        {
            core.keep_finished_workflow_runs = v;
        }
        if let Some(v) = self.retention_ms.or(file.retention_ms) {
            core.retention_ms = v;
        }
        if let Some(v) = self.misfire_threshold_ms.or(file.misfire_threshold_ms) {
            core.misfire_threshold_ms = v;
        }
        if let Some(v) = self.restart_grace_ms.or(file.restart_grace_ms) {
            core.restart_grace_ms = v;
        }
        if let Some(v) = self
            .max_log_lines_per_instance
            .or(file.max_log_lines_per_instance)
        {
            core.max_log_lines_per_instance = v;
        }
        if let Some(v) = self.max_jobs_per_app.or(file.max_jobs_per_app) {
            core.max_jobs_per_app = v;
        }
        if let Some(v) = self.min_period_ms.or(file.min_period_ms) {
            core.min_period_ms = v;
        }
        let net = &mut core.net;
        if let Some(v) = self.max_worker_connections.or(file.max_worker_connections) {
            net.max_connections = v;
        }
        if let Some(v) = self.max_handshaking.or(file.max_handshaking) {
            net.max_handshaking = v;
        }
        if let Some(v) = self.handshake_rate_per_min.or(file.handshake_rate_per_min) {
            net.handshake_rate_per_min = v;
        }
        if let Some(v) = self.handshake_burst.or(file.handshake_burst) {
            net.handshake_burst = v;
        }
        if let Some(v) = self.max_frame_bytes.or(file.max_frame_bytes) {
            net.connection.max_payload_len = v;
        }
        if let Some(v) = self
            .max_handshake_frame_bytes
            .or(file.max_handshake_frame_bytes)
        {
            net.connection.max_handshake_payload_len = v;
        }
        let cert = self.tls_cert.clone().or(file.tls_cert);
        let key = self.tls_key.clone().or(file.tls_key);
        config.tls = match (cert, key) {
            (Some(cert), Some(key)) => Some(
                ferrojob_transport::tls::ServerTls::from_pem_files(&cert, &key)
                    .context("loading the TLS certificate and key")?,
            ),
            (None, None) => None,
            _ => anyhow::bail!("tls_cert and tls_key go together: give both or neither"),
        };
        if let Some(ca) = self.alarm_tls_ca.clone().or(file.alarm_tls_ca) {
            config.core.alarm_tls = ferrojob::https::HttpsRoots::from_ca_file(&ca)
                .context("--alarm-tls-ca")?
                .with_public();
        }
        config.core.alarm_allow = self.alarm_allow.clone();
        for item in file.alarm_allow.iter().flatten() {
            config
                .core
                .alarm_allow
                .push(item.parse().context("alarm_allow in the config file")?);
        }
        let plaintext_allowed = self.insecure_plaintext || file.insecure_plaintext.unwrap_or(false);
        if config.tls.is_none() && !plaintext_allowed {
            for (what, addr) in [("listen", config.listen), ("http", config.http)] {
                if !addr.ip().is_loopback() {
                    anyhow::bail!(
                        "{what} {addr} is not a loopback address and no TLS is configured: give \
                         --tls-cert and --tls-key, or --insecure-plaintext to serve plain TCP \
                         there anyway"
                    );
                }
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn plain_tcp_off_loopback_needs_tls_or_an_explicit_flag() {
        let merge = |args: &[&str], file: &str| {
            ServerArgs::parse_from(args).merge(toml::from_str::<FileConfig>(file).unwrap())
        };
        let err = merge(&["s", "--listen", "0.0.0.0:10086"], "").unwrap_err();
        assert!(err.to_string().contains("--insecure-plaintext"), "{err}");
        assert!(merge(&["s"], "http = \"0.0.0.0:7700\"").is_err());
        let c = merge(
            &["s", "--listen", "0.0.0.0:10086", "--insecure-plaintext"],
            "",
        )
        .unwrap();
        assert!(c.tls.is_none());
        assert!(merge(
            &["s", "--http", "0.0.0.0:7700"],
            "insecure_plaintext = true"
        )
        .is_ok());
        assert!(
            merge(&["s"], "").unwrap().tls.is_none(),
            "loopback: plain by default"
        );
        let err = merge(&["s"], "tls_cert = \"/nonexistent/c.pem\"").unwrap_err();
        assert!(err.to_string().contains("both"), "{err}");
        let err = merge(
            &[
                "s",
                "--tls-cert",
                "/nonexistent/c.pem",
                "--tls-key",
                "/nonexistent/k.pem",
            ],
            "",
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent/c.pem"), "{err:#}");
    }

    #[test]
    fn the_alarm_ca_adds_to_the_public_roots_and_a_bad_one_stops_the_start() {
        let merge = |args: &[&str], file: &str| {
            ServerArgs::parse_from(args).merge(toml::from_str::<FileConfig>(file).unwrap())
        };
        let c = merge(&["s"], "").unwrap();
        assert_eq!(c.core.alarm_tls, ferrojob::https::HttpsRoots::public());
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let pki = crate::self_signed::SelfSigned::generate().unwrap();
        std::fs::write(&ca, &pki.ca_pem).unwrap();
        let c = merge(
            &["s"],
            &format!("alarm_tls_ca = {:?}", ca.display().to_string()),
        )
        .unwrap();
        assert!(c.core.alarm_tls.trusts_public());
        assert_eq!(c.core.alarm_tls.extra_cas(), 1);
        let err = merge(&["s", "--alarm-tls-ca", "/nonexistent/ca.pem"], "").unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("--alarm-tls-ca") && text.contains("/nonexistent/ca.pem"),
            "{text}"
        );
    }

    #[test]
    fn alarm_webhooks_reach_internal_destinations_only_when_allowed() {
        let merge = |args: &[&str], file: &str| {
            ServerArgs::parse_from(args).merge(toml::from_str::<FileConfig>(file).unwrap())
        };
        let c = merge(&["s"], "").unwrap();
        assert!(c.core.alarm_allow.is_empty());
        let c = merge(
            &["s", "--alarm-allow", "127.0.0.1,10.0.0.0/8"],
            r#"alarm_allow = ["Alerts.Internal"]"#,
        )
        .unwrap();
        let shown: Vec<String> = c.core.alarm_allow.iter().map(|a| a.to_string()).collect();
        assert_eq!(shown, ["127.0.0.1/32", "10.0.0.0/8", "alerts.internal"]);
        let err = merge(&["s"], r#"alarm_allow = ["10.0.0.0/99"]"#).unwrap_err();
        assert!(format!("{err:#}").contains("alarm_allow"), "{err:#}");
    }

    #[test]
    fn flags_beat_the_file_and_the_file_beats_defaults() {
        let file: FileConfig = toml::from_str(
            "http = \"127.0.0.1:9000\"\nlisten = \"127.0.0.1:9001\"\nkeep_finished_runs = 7\nkeep_finished_workflow_runs = 3\nephemeral = true\n",
        )
        .unwrap();
        let args = ServerArgs::parse_from(["ferrojob-server", "--http", "127.0.0.1:9100"]);
        let c = args.merge(file).unwrap();
        assert_eq!(c.http.to_string(), "127.0.0.1:9100");
        assert_eq!(c.listen.to_string(), "127.0.0.1:9001");
        assert_eq!(c.core.keep_finished_runs, 7);
        assert_eq!(c.core.keep_finished_workflow_runs, 3);
        assert!(c.ephemeral);
        let d = ServerArgs::parse_from(["ferrojob-server"])
            .merge(FileConfig::default())
            .unwrap();
        assert_eq!(d.http.to_string(), DEFAULT_HTTP);
        assert_eq!(d.data_dir.unwrap(), PathBuf::from(DEFAULT_DATA_DIR));
        assert!(!d.ephemeral);
        assert_eq!(d.core.recovery, ferrojob_store::RecoveryMode::Strict);
    }

    #[test]
    fn the_store_url_comes_from_the_flag_or_the_file_and_must_be_postgres() {
        use ferrojob::server::StoreChoice;
        let from_file = ServerArgs::default()
            .merge(toml::from_str::<FileConfig>("store = \"postgres://u@h:5432/f\"").unwrap())
            .unwrap();
        assert!(matches!(
            from_file.core.store,
            StoreChoice::Postgres { ref url, .. } if url == "postgres://u@h:5432/f"
        ));
        let flag = ServerArgs {
            store: Some("postgresql://u@h/g".into()),
            ..ServerArgs::default()
        };
        assert!(matches!(
            flag.merge(FileConfig::default()).unwrap().core.store,
            StoreChoice::Postgres { ref url, .. } if url == "postgresql://u@h/g"
        ));
        let bad = ServerArgs {
            store: Some("/var/lib/ferrojob".into()),
            ..ServerArgs::default()
        };
        assert!(bad.merge(FileConfig::default()).is_err());
        assert!(matches!(
            ServerArgs::default()
                .merge(FileConfig::default())
                .unwrap()
                .core
                .store,
            StoreChoice::Log { .. }
        ));
    }

    #[test]
    fn salvage_comes_from_the_flag_or_the_file() {
        use ferrojob_store::RecoveryMode;
        let salvage = |args: &[&str], file: &str| {
            ServerArgs::parse_from(args)
                .merge(toml::from_str::<FileConfig>(file).unwrap())
                .unwrap()
                .core
                .recovery
        };
        assert_eq!(salvage(&["s", "--salvage"], ""), RecoveryMode::Salvage);
        assert_eq!(salvage(&["s"], "salvage = true"), RecoveryMode::Salvage);
        assert_eq!(salvage(&["s"], "salvage = false"), RecoveryMode::Strict);
    }

    #[test]
    fn worker_port_limits_come_from_flags_or_the_file() {
        let c = ServerArgs::parse_from([
            "s",
            "--max-handshaking",
            "9",
            "--handshake-rate-per-min",
            "0",
        ])
        .merge(
            toml::from_str::<FileConfig>(
                "max_handshaking = 50\nmin_period_ms = 250\nmax_worker_connections = 77\nmax_frame_bytes = 65536\nrestart_grace_ms = 12000\n",
            )
            .unwrap(),
        )
        .unwrap();
        let net = &c.core.net;
        assert_eq!(net.max_handshaking, 9);
        assert_eq!(net.handshake_rate_per_min, 0);
        assert_eq!(net.max_connections, 77);
        assert_eq!(net.connection.max_payload_len, 65536);
        assert_eq!(c.core.restart_grace_ms, 12000);
        assert_eq!(c.core.retention_ms, 7 * 24 * 3600 * 1000);
        assert_eq!(c.core.min_period_ms, 250);
        let d = ServerArgs::parse_from(["s"])
            .merge(FileConfig::default())
            .unwrap();
        let defaults = ferrojob::server::ServerConfig::new(
            ferrojob::server::StoreChoice::Memory,
            DEFAULT_LISTEN.parse().unwrap(),
        );
        assert_eq!(d.core.net, defaults.net);
    }

    #[test]
    fn secure_cookies_come_from_the_flag_or_the_file() {
        let secure = |args: &[&str], file: &str| {
            ServerArgs::parse_from(args)
                .merge(toml::from_str::<FileConfig>(file).unwrap())
                .unwrap()
                .secure_cookies
        };
        assert!(secure(&["s", "--secure-cookies"], ""));
        assert!(secure(&["s"], "secure_cookies = true"));
        assert!(!secure(&["s"], ""));
    }

    #[test]
    fn credentials_settings_come_from_flags_or_the_file() {
        let merged = |args: &[&str], file: &str| {
            ServerArgs::parse_from(args)
                .merge(toml::from_str::<FileConfig>(file).unwrap())
                .unwrap()
        };
        let c = merged(&["s"], "");
        assert!(!c.app_secret_tokens);
        assert_eq!(
            c.failed_logins,
            Some(ferrojob::http::FailedLoginLimit::default())
        );
        assert!(merged(&["s", "--app-secret-tokens"], "").app_secret_tokens);
        assert!(merged(&["s"], "app_secret_tokens = true").app_secret_tokens);
        let per_min =
            |args: &[&str], file: &str| merged(args, file).failed_logins.map(|l| l.per_min);
        assert_eq!(per_min(&["s", "--failed-logins-per-min", "3"], ""), Some(3));
        assert_eq!(per_min(&["s"], "failed_logins_per_min = 0"), None);
        let connections =
            |args: &[&str], file: &str| merged(args, file).http_connection_rate.map(|l| l.per_min);
        assert_eq!(
            connections(&["s"], ""),
            Some(ferrojob::http::DEFAULT_CONNECTIONS_PER_MIN)
        );
        assert_eq!(
            connections(&["s", "--http-connections-per-min", "60"], ""),
            Some(60)
        );
        assert_eq!(connections(&["s"], "http_connections_per_min = 0"), None);
    }

    #[test]
    fn the_api_rate_comes_from_flags_or_the_file_and_0_turns_it_off() {
        let rate = |args: &[&str], file: &str| {
            ServerArgs::parse_from(args)
                .merge(toml::from_str::<FileConfig>(file).unwrap())
                .unwrap()
                .api_rate
                .map(|r| (r.per_sec, r.burst))
        };
        assert_eq!(rate(&["s"], ""), Some((1000, 2000)));
        assert_eq!(
            rate(&["s"], "api_rate_per_sec = 5\napi_burst = 7"),
            Some((5, 7))
        );
        assert_eq!(
            rate(&["s", "--api-rate-per-sec", "9"], "api_rate_per_sec = 5"),
            Some((9, 2000))
        );
        assert_eq!(rate(&["s", "--api-rate-per-sec", "0"], ""), None);
        assert_eq!(rate(&["s"], "api_rate_per_sec = 0"), None);
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        assert!(toml::from_str::<FileConfig>("htp = \"x\"").is_err());
    }
}
