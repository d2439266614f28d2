//! [`DispatchError`]: everything the registry and selection refuse, with enough context for
//! the server to tell the user what to change.

use std::fmt;

/// How many registered workers each filter excluded during one selection.
///
/// Filters run in the order of the fields below; a worker is counted once, under the first
/// filter that excluded it, so the counts add up to `registered − eligible`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Exclusions {
    /// Workers registered for the app when the selection ran.
    pub registered: usize,
    /// Missed `missed_heartbeats` heartbeats (dead, not yet expired).
    pub dead: usize,
    /// Neither address nor any tag is in the job's designated list.
    pub not_designated: usize,
    /// The worker asked not to get new instances.
    pub overloaded: usize,
    /// Fewer free CPU cores than `min_cpu_cores`.
    pub insufficient_cpu: usize,
    /// Less free memory than `min_memory_gb`.
    pub insufficient_memory: usize,
    /// Less free disk than `min_disk_gb`.
    pub insufficient_disk: usize,
}

impl Exclusions {
    /// Workers excluded by some filter.
    pub fn excluded(&self) -> usize {
        self.dead
            + self.not_designated
            + self.overloaded
            + self.insufficient_cpu
            + self.insufficient_memory
            + self.insufficient_disk
    }
}

impl fmt::Display for Exclusions {
    /// `"3 registered; excluded: 1 dead (missed heartbeats), 2 overloaded"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} registered", self.registered)?;
        let parts = [
            (self.dead, "dead (missed heartbeats)"),
            (self.not_designated, "not designated"),
            (self.overloaded, "overloaded"),
            (self.insufficient_cpu, "below min_cpu_cores"),
            (self.insufficient_memory, "below min_memory_gb"),
            (self.insufficient_disk, "below min_disk_gb"),
        ];
        let mut first = true;
        for (count, what) in parts {
            if count == 0 {
                continue;
            }
            f.write_str(if first { "; excluded: " } else { ", " })?;
            write!(f, "{count} {what}")?;
            first = false;
        }
        Ok(())
    }
}

/// Errors of the worker registry and of dispatch selection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DispatchError {
    /// No registered worker passed every filter; `exclusions` says which filter took how many.
    #[error("no eligible worker for app `{app}`: {exclusions}")]
    NoEligibleWorker {
        /// The app.
        app: String,
        /// Counts per filter.
        exclusions: Exclusions,
    },
    /// The job's dispatch settings cannot be satisfied by any worker, whatever registers.
    #[error("invalid dispatch spec: `{field}` {reason}")]
    InvalidSpec {
        /// The offending field of `DispatchSpec`.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A heartbeat carried an unusable identity (empty or oversized address, tag, version or
    /// app name). The worker is not registered.
    #[error("refused heartbeat from worker `{address}` of app `{app}`: {reason}")]
    InvalidWorker {
        /// The app, possibly truncated for display.
        app: String,
        /// The address, possibly truncated for display.
        address: String,
        /// What is wrong.
        reason: String,
    },
    /// The app already has `limit` workers; a new one is refused until another is removed.
    #[error(
        "refused worker `{address}` of app `{app}`: the app already has {limit} workers \
         (raise RegistryConfig::max_workers_per_app)"
    )]
    TooManyWorkers {
        /// The app.
        app: String,
        /// The refused address.
        address: String,
        /// The configured cap.
        limit: usize,
    },
    /// The registry configuration is unusable.
    #[error("invalid registry config: `{field}` {reason}")]
    InvalidConfig {
        /// The offending field of `RegistryConfig`.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}
