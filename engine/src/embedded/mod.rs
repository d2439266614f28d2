//! The engine running in-process on tokio: register jobs with any time expression and an async
//! processor, and they run on time.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use ferrojob::embedded::{JobSpec, Scheduler};
//! use ferrojob::time_expression::{TimeExpression, TimeExpressionType};
//!
//! let scheduler = Scheduler::start();
//! let every_10s = TimeExpression::parse(TimeExpressionType::Cron, "*/10 * * * * ?", None)?;
//! scheduler.register(JobSpec::new("report", every_10s), |ctx: ferrojob::embedded::RunContext| async move {
//!     Ok(format!("ran {} for {}", ctx.instance_id(), ctx.scheduled_at()))
//! })?;
//! let mut reports = scheduler.subscribe();
//! let first = reports.recv().await?;
//! println!("{:?} was {} µs late", first.outcome, first.lateness_us());
//! scheduler.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! The split follows the sans-IO rule: `core` decides *what* fires *when* and reads no clock;
//! `scheduler` owns the driver thread, the clock and the tokio runtime. Runs respect each
//! job's concurrency limit ([`JobSpec::max_instances`]), timeout and retries with backoff; jobs
//! can be enabled, disabled, removed and triggered at runtime; every run ends in a
//! [`RunReport`] sent to subscribers.
//!
//! What the embedded scheduler does not do: persist anything. A process that restarts
//! re-registers its jobs; to have triggers missed while it was down handled by each job's
//! misfire policy, pass the last trigger it knows ran as [`JobSpec::resume_after`].

#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod core;
mod error;
mod job;
mod processor;
mod report;
mod scheduler;

pub use error::SchedulerError;
pub use job::{JobSpec, RetryPolicy};
pub use processor::{BoxError, ProcessResult, Processor, RunContext};
pub use report::{RunOutcome, RunReport, SkipReason};
pub use scheduler::{JobStats, Scheduler, SchedulerConfig, TriggerOptions};
