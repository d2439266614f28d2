//! `ferrojob-worker`'s flags (each with its `FERROJOB_*` environment variable).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use ferrojob::worker::builtin::AllowedDestination;
use ferrojob::worker::{DangerousBuiltin, TaskStoreConfig, WorkerConfig};

/// Command-line flags of the bundled worker.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "ferrojob-worker",
    version,
    about = "A ferrojob worker with the built-in processors noop, sleep and sum_mr, and shell and http when allowed (--allow-processor)"
)]
pub struct WorkerArgs {
    /// The server's transport address; a cluster's servers separated by commas (the worker
    /// connects to the one that owns its app, trying them in turn).
    #[arg(long, env = "FERROJOB_SERVER", default_value = "127.0.0.1:10086")]
    pub server: String,
    /// App name.
    #[arg(long, env = "FERROJOB_APP")]
    pub app: String,
    /// App secret.
    #[arg(long, env = "FERROJOB_SECRET", hide_env_values = true)]
    pub secret: String,
    /// Tag for SPECIFY dispatch (repeat for more).
    #[arg(long = "tag", env = "FERROJOB_TAGS", value_delimiter = ',')]
    pub tags: Vec<String>,
    /// Worker-to-worker listen address (port 0 = any free port).
    #[arg(long, env = "FERROJOB_WORKER_LISTEN", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Address other workers reach this one at (default: the bound listen address).
    #[arg(long, env = "FERROJOB_ADVERTISE")]
    pub advertise: Option<String>,
    /// Heartbeat interval, ms.
    #[arg(long, env = "FERROJOB_HEARTBEAT_INTERVAL_MS", default_value_t = 1000)]
    pub heartbeat_interval_ms: u64,
    /// Stop fixed-rate/fixed-delay instances after the server is unreachable this long, ms.
    #[arg(long, env = "FERROJOB_SERVER_LOST_AFTER_MS", default_value_t = 30_000)]
    pub server_lost_after_ms: u64,
    /// Most instances running at once (0 = unlimited); at the limit the worker says it is
    /// overloaded.
    #[arg(long, env = "FERROJOB_MAX_RUNNING", default_value_t = 0)]
    pub max_running: usize,
    /// Directory of the MAP/MAP_REDUCE task store (a log store, created at the first MAP
    /// instance; what an earlier run left there is deleted then). One per worker. Default:
    /// `./ferrojob-worker-data/<listen port>`, or `./ferrojob-worker-data/pid-<pid>` when the
    /// listen port is 0 (then `pid-*` directories of processes that no longer exist are
    /// removed at start).
    #[arg(long, env = "FERROJOB_WORKER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Directory of the rotating file jobs with log type LOCAL write to (`instances.log`,
    /// `instances.log.1`, ...; read it with `ferrojob worker local-log --dir DIR`). Default:
    /// `logs` in the data directory.
    #[arg(long, env = "FERROJOB_LOCAL_LOG_DIR")]
    pub local_log_dir: Option<PathBuf>,
    /// Bytes per LOCAL log file before it rotates (at least 65536).
    #[arg(long, env = "FERROJOB_LOCAL_LOG_MAX_FILE_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub local_log_max_file_bytes: u64,
    /// LOCAL log files kept, the current one included (at least 1).
    #[arg(long, env = "FERROJOB_LOCAL_LOG_MAX_FILES", default_value_t = 5)]
    pub local_log_max_files: u32,
    /// Keep MAP/MAP_REDUCE task trees in memory instead of on disk (faster; pending tasks
    /// take RAM).
    #[arg(long, env = "FERROJOB_MEMORY_STORE")]
    pub memory_store: bool,
    /// As a MAP/MAP_REDUCE TaskTracker, run no task here: only coordinate the other workers.
    #[arg(long, env = "FERROJOB_COORDINATOR_ONLY")]
    pub coordinator_only: bool,
    /// Registers a built-in that runs what jobs name: `shell` (commands) or `http` (URLs).
    /// Repeat for both. Without it, a job using one fails ("processor ... is disabled"). Anyone
    /// who may create or run such jobs, or who holds the app secret and reaches the listener,
    /// can then use this machine and its network position.
    #[arg(
        long = "allow-processor",
        env = "FERROJOB_ALLOW_PROCESSORS",
        value_delimiter = ',',
        value_name = "shell|http"
    )]
    pub allow_processors: Vec<DangerousBuiltin>,
    /// Timeout of an instance whose job sets none, ms (0 = none): such a run is stopped and
    /// fails after this long.
    #[arg(
        long,
        env = "FERROJOB_DEFAULT_TIMEOUT_MS",
        default_value_t = 86_400_000
    )]
    pub default_timeout_ms: u64,
    /// Longest `shell` output line logged, bytes; a longer one is cut and marked.
    #[arg(long, env = "FERROJOB_SHELL_MAX_LINE_BYTES", default_value_t = ferrojob::worker::builtin::DEFAULT_MAX_LINE_BYTES)]
    pub shell_max_line_bytes: usize,
    /// `shell` output logged per stream and run, bytes; later lines are counted, not logged.
    #[arg(long, env = "FERROJOB_SHELL_MAX_OUTPUT_BYTES", default_value_t = ferrojob::worker::builtin::DEFAULT_MAX_OUTPUT_BYTES)]
    pub shell_max_output_bytes: usize,
    /// Tasks one MAP/MAP_REDUCE instance tracked by this worker may hold (its root task
    /// included); a `map` past it is refused and the mapping task fails.
    #[arg(long, env = "FERROJOB_MAX_TASKS_PER_INSTANCE", default_value_t = ferrojob::mapreduce::DEFAULT_MAX_TASKS_PER_INSTANCE, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_tasks_per_instance: u64,
    /// CA certificates (PEM) the `http` processor trusts for https:// URLs, besides the
    /// public roots (a private CA of internal services).
    #[arg(long, env = "FERROJOB_HTTP_TLS_CA")]
    pub http_tls_ca: Option<PathBuf>,
    /// A network (`10.0.0.0/8`, `127.0.0.1`) or host name (`metrics.internal`) that the
    /// `http` processor may reach although it is loopback, link-local, private or otherwise
    /// internal (repeat for more; `0.0.0.0/0,::/0` allows everything). Without it, `http`
    /// reaches public addresses only.
    #[arg(
        long = "http-allow",
        env = "FERROJOB_HTTP_ALLOW",
        value_delimiter = ',',
        value_name = "NETWORK|HOST"
    )]
    pub http_allow: Vec<AllowedDestination>,
    /// CA certificates (PEM) that signed the server's and the other workers' certificates:
    /// turns TLS on for every connection this worker makes. Needs --tls-cert and --tls-key
    /// (other workers connect to this one with TLS too).
    #[arg(long, env = "FERROJOB_TLS_CA", requires_all = ["tls_cert", "tls_key"])]
    pub tls_ca: Option<PathBuf>,
    /// The name the server's certificate must carry (default: the host of --server).
    #[arg(long, env = "FERROJOB_TLS_SERVER_NAME", requires = "tls_ca")]
    pub tls_server_name: Option<String>,
    /// This worker's certificate chain (PEM) for its worker-to-worker listener; it must name
    /// the host of the advertised address.
    #[arg(long, env = "FERROJOB_TLS_CERT", requires_all = ["tls_ca", "tls_key"])]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "FERROJOB_TLS_KEY", requires_all = ["tls_ca", "tls_cert"])]
    pub tls_key: Option<PathBuf>,
    /// Connect and listen over plain TCP although the server or the listen address is not
    /// on loopback (without it the worker refuses to start so unless --tls-ca is given). The
    /// app secret's proof, job parameters and results then cross the network in clear text.
    #[arg(long, env = "FERROJOB_INSECURE_PLAINTEXT")]
    pub insecure_plaintext: bool,
}

impl WorkerArgs {
    /// The library's configuration.
    pub fn to_config(&self) -> Result<WorkerConfig> {
        let mut servers = Vec::new();
        for one in self
            .server
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            servers.push(
                std::net::ToSocketAddrs::to_socket_addrs(one)
                    .with_context(|| format!("--server {one}"))?
                    .next()
                    .with_context(|| format!("--server {one} resolves to no address"))?,
            );
        }
        let Some((&server, others)) = servers.split_first() else {
            anyhow::bail!("--server names no address");
        };
        let mut config = WorkerConfig::new(server, self.app.clone(), self.secret.clone());
        config.other_servers = others.to_vec();
        config.tags = self
            .tags
            .iter()
            .filter(|t| !t.is_empty())
            .cloned()
            .collect();
        config.listen = self.listen;
        config.advertise = self.advertise.clone();
        config.heartbeat_interval = Duration::from_millis(self.heartbeat_interval_ms.max(1));
        config.server_lost_after = Duration::from_millis(self.server_lost_after_ms);
        config.max_running_instances = self.max_running;
        config.coordinator_only = self.coordinator_only;
        config.max_tasks_per_instance = self.max_tasks_per_instance;
        config.allow_processors = self.allow_processors.iter().copied().collect();
        config.default_instance_timeout = Duration::from_millis(self.default_timeout_ms);
        config.shell_output = ferrojob::worker::builtin::OutputLimits {
            max_line_bytes: self.shell_max_line_bytes.max(1),
            max_output_bytes: self.shell_max_output_bytes,
        };
        self.apply_tls(&mut config)?;
        config.http_allow = self.http_allow.clone();
        if let Some(ca) = &self.http_tls_ca {
            config.http_tls = ferrojob::https::HttpsRoots::from_ca_file(ca)
                .context("--http-tls-ca")?
                .with_public();
        }
        config.local_log = ferrojob::worker::LocalLogConfig {
            dir: Some(
                self.local_log_dir
                    .clone()
                    .unwrap_or_else(|| self.data_dir().join("logs")),
            ),
            max_file_bytes: self
                .local_log_max_file_bytes
                .max(ferrojob::worker::MIN_LOCAL_LOG_FILE_BYTES),
            max_files: self.local_log_max_files.max(1),
        };
        config.task_store = if self.memory_store {
            TaskStoreConfig::Memory
        } else {
            TaskStoreConfig::Log {
                dir: self.data_dir(),
            }
        };
        Ok(config)
    }

    /// TLS settings from the flags, or the check that plain TCP stays on loopback.
    fn apply_tls(&self, config: &mut WorkerConfig) -> Result<()> {
        use ferrojob_transport::tls::{ClientTls, ServerTls};
        let (Some(ca), Some(cert), Some(key)) = (&self.tls_ca, &self.tls_cert, &self.tls_key)
        else {
            if !self.insecure_plaintext {
                let listen = self.listen.ip();
                let servers_local = std::iter::once(&config.server)
                    .chain(&config.other_servers)
                    .all(|s| s.ip().is_loopback());
                if !servers_local || !listen.is_loopback() {
                    anyhow::bail!(
                        "the server {} or the listen address {listen} is not on loopback and \
                         no TLS is configured: give --tls-ca, --tls-cert and --tls-key, or \
                         --insecure-plaintext to use plain TCP anyway",
                        config.server
                    );
                }
            }
            return Ok(());
        };
        let name = match &self.tls_server_name {
            Some(n) => n.clone(),
            None => {
                server_host(self.server.split(',').next().unwrap_or_default().trim()).to_owned()
            }
        };
        let client = ClientTls::from_ca_pem_file(ca)
            .context("--tls-ca")?
            .with_server_name(&name)
            .context("--tls-server-name")?;
        config.net.client_tls = Some(client);
        config.net.server_tls =
            Some(ServerTls::from_pem_files(cert, key).context("--tls-cert / --tls-key")?);
        Ok(())
    }

    /// The task store directory: `--data-dir`, else the per-worker default.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| {
            let leaf = match self.listen.port() {
                0 => format!("{PID_DIR_PREFIX}{}", std::process::id()),
                port => port.to_string(),
            };
            PathBuf::from(DEFAULT_DATA_ROOT).join(leaf)
        })
    }

    /// With the default `pid-<pid>` task store directory, removes the ones earlier worker
    /// processes left (see [`remove_stale_pid_dirs`]); call before starting the worker.
    pub fn remove_stale_task_stores(&self) {
        if self.memory_store || self.data_dir.is_some() || self.listen.port() != 0 {
            return;
        }
        remove_stale_pid_dirs(Path::new(DEFAULT_DATA_ROOT), std::process::id(), pid_alive);
    }
}

/// The host of `host:port` (`[v6]:port` included).
fn server_host(server: &str) -> &str {
    let host = server.rsplit_once(':').map_or(server, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Where the default task store directories live.
const DEFAULT_DATA_ROOT: &str = "ferrojob-worker-data";
/// A default task store directory of a worker listening on port 0 is `pid-<its pid>`.
const PID_DIR_PREFIX: &str = "pid-";

/// True unless the process `pid` certainly does not exist: on Linux, when `/proc/<pid>` is
/// missing; elsewhere always true (nothing is removed).
pub fn pid_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        true
    }
}

/// Removes the `pid-<pid>` directories under `root` whose process is not `own` and not
/// `alive`, and returns them. A worker that died without cleaning up leaves one behind
/// (a task store of up to its pending tasks); nothing else reads it. Failures are logged, not
/// fatal; a missing `root` is nothing to do.
pub fn remove_stale_pid_dirs(root: &Path, own: u32, alive: impl Fn(u32) -> bool) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(root) else {
        return removed;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PID_DIR_PREFIX))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        // Not a symlink or a file: only directories this worker layout creates.
        if pid == own || alive(pid) || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = entry.path();
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {
                tracing::info!(path = %path.display(), "removed the task store of a worker process that no longer exists");
                removed.push(path);
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove a stale task store")
            }
        }
    }
    removed.sort();
    removed
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn parse(extra: &[&str]) -> Result<WorkerArgs, clap::Error> {
        let mut args = vec!["ferrojob-worker", "--app", "a", "--secret", "s"];
        args.extend_from_slice(extra);
        WorkerArgs::try_parse_from(args)
    }

    #[test]
    fn plain_tcp_off_loopback_needs_tls_or_an_explicit_flag() {
        let err = parse(&["--server", "10.1.2.3:10086"])
            .unwrap()
            .to_config()
            .unwrap_err();
        assert!(err.to_string().contains("--insecure-plaintext"), "{err}");
        assert!(parse(&["--listen", "0.0.0.0:0"])
            .unwrap()
            .to_config()
            .is_err());
        let plain = parse(&["--server", "10.1.2.3:10086", "--insecure-plaintext"])
            .unwrap()
            .to_config()
            .unwrap();
        assert!(plain.net.client_tls.is_none() && plain.net.server_tls.is_none());
        // TLS takes the CA, this worker's certificate and its key together.
        assert!(parse(&["--tls-ca", "ca.pem"]).is_err());
        assert!(parse(&["--tls-cert", "c.pem", "--tls-key", "k.pem"]).is_err());
        let err = parse(&[
            "--tls-ca",
            "/nonexistent/ca.pem",
            "--tls-cert",
            "c",
            "--tls-key",
            "k",
        ])
        .unwrap()
        .to_config()
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("/nonexistent/ca.pem"),
            "{err:#}"
        );
        assert_eq!(server_host("ferrojob.internal:10086"), "ferrojob.internal");
        assert_eq!(server_host("[::1]:10086"), "::1");
    }

    #[test]
    fn shell_and_http_are_off_unless_allowed() {
        let none = parse(&[]).unwrap().to_config().unwrap();
        assert!(none.allow_processors.is_empty());
        let both = parse(&["--allow-processor", "shell", "--allow-processor", "http"])
            .unwrap()
            .to_config()
            .unwrap();
        assert_eq!(
            both.allow_processors.into_iter().collect::<Vec<_>>(),
            [DangerousBuiltin::Shell, DangerousBuiltin::Http]
        );
        let listed = parse(&["--allow-processor", "http,shell"]).unwrap();
        assert_eq!(listed.allow_processors.len(), 2);
        let err = parse(&["--allow-processor", "noop"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("always registered"), "{err}");
    }

    #[test]
    fn http_reaches_internal_destinations_only_when_allowed() {
        let none = parse(&[]).unwrap().to_config().unwrap();
        assert!(none.http_allow.is_empty());
        let some = parse(&[
            "--http-allow",
            "10.0.0.0/8,127.0.0.1",
            "--http-allow",
            "Metrics.Internal",
        ])
        .unwrap()
        .to_config()
        .unwrap();
        let shown: Vec<String> = some.http_allow.iter().map(|a| a.to_string()).collect();
        assert_eq!(shown, ["10.0.0.0/8", "127.0.0.1/32", "metrics.internal"]);
        let err = parse(&["--http-allow", "10.0.0.0/40"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a network"), "{err}");
    }

    #[test]
    fn only_directories_of_dead_processes_are_removed() {
        let root = tempfile::tempdir().unwrap();
        for name in ["pid-100", "pid-200", "pid-300", "pid-x", "7700"] {
            std::fs::create_dir(root.path().join(name)).unwrap();
            std::fs::write(root.path().join(name).join("00000001.log"), b"x").unwrap();
        }
        std::fs::write(root.path().join("pid-400"), b"a file").unwrap();
        // 100 is this process, 200 is alive, 300 and 400 are dead.
        let removed = remove_stale_pid_dirs(root.path(), 100, |pid| pid == 200);
        assert_eq!(removed, [root.path().join("pid-300")]);
        let mut left: Vec<String> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["7700", "pid-100", "pid-200", "pid-400", "pid-x"]);
        assert!(remove_stale_pid_dirs(&root.path().join("missing"), 1, |_| false).is_empty());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_alive_and_an_impossible_pid_is_not() {
        assert!(pid_alive(std::process::id()));
        // Above the kernel's largest pid (4194304).
        assert!(!pid_alive(u32::MAX));
    }
}
