//! `ferrojob-worker`'s flags (each with its `FERROJOB_*` environment variable).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use ferrojob::worker::{TaskStoreConfig, WorkerConfig};

/// Command-line flags of the bundled worker.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "ferrojob-worker",
    version,
    about = "A ferrojob worker with the built-in processors shell, http, noop, sleep and sum_mr"
)]
pub struct WorkerArgs {
    /// The server's transport address.
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
    /// listen port is 0.
    #[arg(long, env = "FERROJOB_WORKER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Keep MAP/MAP_REDUCE task trees in memory instead of on disk (faster; pending tasks
    /// take RAM).
    #[arg(long, env = "FERROJOB_MEMORY_STORE")]
    pub memory_store: bool,
    /// As a MAP/MAP_REDUCE TaskTracker, run no task here: only coordinate the other workers.
    #[arg(long, env = "FERROJOB_COORDINATOR_ONLY")]
    pub coordinator_only: bool,
}

impl WorkerArgs {
    /// The library's configuration.
    pub fn to_config(&self) -> Result<WorkerConfig> {
        let server = std::net::ToSocketAddrs::to_socket_addrs(&self.server)
            .with_context(|| format!("--server {}", self.server))?
            .next()
            .with_context(|| format!("--server {} resolves to no address", self.server))?;
        let mut config = WorkerConfig::new(server, self.app.clone(), self.secret.clone());
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
        config.task_store = if self.memory_store {
            TaskStoreConfig::Memory
        } else {
            TaskStoreConfig::Log {
                dir: self.data_dir(),
            }
        };
        Ok(config)
    }

    /// The task store directory: `--data-dir`, else the per-worker default.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| {
            let leaf = match self.listen.port() {
                0 => format!("pid-{}", std::process::id()),
                port => port.to_string(),
            };
            PathBuf::from("ferrojob-worker-data").join(leaf)
        })
    }
}
