//! What a job runs: a [`Processor`], called once per attempt with a [`RunContext`].

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;

use crate::clock::{Clock, EpochUs};
use crate::ids::{InstanceId, JobId};
use crate::time_expression::EpochMs;

use super::core::JobDef;

/// Any error a processor returns; its `Display` becomes the run's failure message.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The result of one attempt: `Ok(result)` (the result text is reported) or an error.
pub type ProcessResult = Result<String, BoxError>;

/// Runs one attempt of a job.
///
/// Implemented for every `Fn(RunContext) -> impl Future<Output = ProcessResult>`, so a closure
/// `|ctx| async move { Ok(format!("hello {}", ctx.params())) }` is a processor.
///
/// Cancellation is real: when an attempt times out or the scheduler shuts down, its future is
/// dropped at its next `.await`. Code that blocks a thread instead of awaiting cannot be
/// interrupted that way; it should poll [`RunContext::is_cancelled`].
pub trait Processor: Send + Sync + 'static {
    /// Runs one attempt.
    fn process(&self, ctx: RunContext) -> BoxFuture<'static, ProcessResult>;
}

impl<F, Fut> Processor for F
where
    F: Fn(RunContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ProcessResult> + Send + 'static,
{
    fn process(&self, ctx: RunContext) -> BoxFuture<'static, ProcessResult> {
        Box::pin(self(ctx))
    }
}

/// What a processor knows about the run it serves.
#[derive(Clone)]
pub struct RunContext {
    pub(crate) job: Arc<JobDef>,
    pub(crate) instance_id: InstanceId,
    pub(crate) attempt: u32,
    pub(crate) scheduled_at: EpochMs,
    pub(crate) fired_at_us: EpochUs,
    pub(crate) instance_params: Option<Arc<str>>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) cancel: tokio::sync::watch::Receiver<bool>,
}

impl fmt::Debug for RunContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunContext")
            .field("job_id", &self.job.id)
            .field("job_name", &self.job.spec.name)
            .field("instance_id", &self.instance_id)
            .field("attempt", &self.attempt)
            .field("scheduled_at", &self.scheduled_at)
            .finish_non_exhaustive()
    }
}

impl RunContext {
    /// The job this run belongs to.
    pub fn job_id(&self) -> JobId {
        self.job.id
    }

    /// The job's name.
    pub fn job_name(&self) -> &str {
        &self.job.spec.name
    }

    /// This run's instance id (the same for every attempt of the run).
    pub fn instance_id(&self) -> InstanceId {
        self.instance_id
    }

    /// 1 for the first attempt, 2 for the first retry, ...
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The trigger time this run serves, in milliseconds since the epoch.
    pub fn scheduled_at(&self) -> EpochMs {
        self.scheduled_at
    }

    /// When the scheduler fired this run, in microseconds since the epoch; minus
    /// `scheduled_at · 1000` it is the fire's lateness.
    pub fn fired_at_us(&self) -> EpochUs {
        self.fired_at_us
    }

    /// The job's parameters.
    pub fn params(&self) -> &str {
        self.job.spec.params()
    }

    /// The parameters of this run, if it was triggered with some.
    pub fn instance_params(&self) -> Option<&str> {
        self.instance_params.as_deref()
    }

    /// The scheduler's clock: processors that wait should wait on it, so that tests on a virtual
    /// clock stay deterministic.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Whether this attempt has been cancelled (the scheduler is shutting down).
    pub fn is_cancelled(&self) -> bool {
        *self.cancel.borrow()
    }

    /// Completes once this attempt is cancelled.
    pub async fn cancelled(&self) {
        let mut rx = self.cancel.clone();
        if rx.wait_for(|c| *c).await.is_err() {
            // The scheduler is gone without cancelling: nothing will ever cancel us.
            std::future::pending::<()>().await;
        }
    }
}
