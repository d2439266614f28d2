//! `ferrojob-server`'s configuration: flags, environment variables and an optional TOML file.
//!
//! Precedence, highest first: a flag, its environment variable (`FERROJOB_*`), the TOML file
//! (`--config FILE`), the default. Every key of the file is optional and named like its flag
//! with `_` for `-`:
//!
//! ```toml
//! data_dir = "ferrojob-data"        # LogStore in DIR/store, admin token in DIR/admin.token
//! http = "127.0.0.1:7700"           # OpenAPI
//! listen = "127.0.0.1:10086"        # workers connect here
//! ephemeral = false                 # MemoryStore: nothing survives the process
//! admin_token = "..."               # default: read or generate DIR/admin.token
//! heartbeat_interval_ms = 1000      # a worker missing 3 heartbeats is dead
//! worker_receive_timeout_ms = 10000 # dispatched but unconfirmed this long -> re-dispatch
//! keep_finished_runs = 100          # finished instances kept per job (oldest pruned)
//! misfire_threshold_ms = 5000       # later than this -> the job's misfire policy applies
//! max_body_bytes = 1048576          # largest HTTP request body
//! salvage = false                   # start even if the store is damaged mid-log: keep every
//!                                   # intact record, move the damaged part aside
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
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
    /// Misfire threshold, ms (default 5000).
    #[arg(long, env = "FERROJOB_MISFIRE_THRESHOLD_MS")]
    pub misfire_threshold_ms: Option<u64>,
    /// Largest HTTP request body, bytes (default 1 MiB).
    #[arg(long, env = "FERROJOB_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Start even if the store is damaged in the middle of its log: keep every intact record
    /// before the damage, move the damaged part aside (`*.log.corrupt*` files next to the
    /// segments, nothing deleted) and log what was moved. Default: refuse to start.
    #[arg(long, env = "FERROJOB_SALVAGE")]
    pub salvage: bool,
}

/// The TOML file's keys (all optional; unknown keys are an error).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    data_dir: Option<PathBuf>,
    http: Option<SocketAddr>,
    listen: Option<SocketAddr>,
    ephemeral: Option<bool>,
    admin_token: Option<String>,
    heartbeat_interval_ms: Option<u64>,
    worker_receive_timeout_ms: Option<u64>,
    keep_finished_runs: Option<usize>,
    misfire_threshold_ms: Option<u64>,
    max_body_bytes: Option<usize>,
    salvage: Option<bool>,
}

/// Default OpenAPI address.
pub const DEFAULT_HTTP: &str = "127.0.0.1:7700";
/// Default transport address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:10086";
/// Default data dir.
pub const DEFAULT_DATA_DIR: &str = "ferrojob-data";

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
        config.admin_token = self.admin_token.clone().or(file.admin_token);
        if let Some(v) = self.max_body_bytes.or(file.max_body_bytes) {
            config.max_body_bytes = v;
        }
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
        if let Some(v) = self.misfire_threshold_ms.or(file.misfire_threshold_ms) {
            core.misfire_threshold_ms = v;
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn flags_beat_the_file_and_the_file_beats_defaults() {
        let file: FileConfig = toml::from_str(
            "http = \"127.0.0.1:9000\"\nlisten = \"127.0.0.1:9001\"\nkeep_finished_runs = 7\nephemeral = true\n",
        )
        .unwrap();
        let args = ServerArgs::parse_from(["ferrojob-server", "--http", "127.0.0.1:9100"]);
        let c = args.merge(file).unwrap();
        assert_eq!(c.http.to_string(), "127.0.0.1:9100");
        assert_eq!(c.listen.to_string(), "127.0.0.1:9001");
        assert_eq!(c.core.keep_finished_runs, 7);
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
    fn unknown_file_keys_are_refused() {
        assert!(toml::from_str::<FileConfig>("htp = \"x\"").is_err());
    }
}
