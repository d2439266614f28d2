//! The embedded scheduler's runtime: the [`Scheduler`] handle, the driver thread that feeds the
//! [`Core`], and the execution of runs on tokio.
//!
//! ```text
//!  Scheduler (any thread)        driver thread (1)                 tokio runtime
//!  ──────────────────────        ─────────────────                 ─────────────
//!  register/trigger/... ─flume─► Core::handle(now, cmd)
//!          └─ Parker::unpark ──► Clock::park returns
//!                                Core::poll(now) ─► Vec<Fire> ─flume─► dispatcher task
//!                                Clock::park(next_wakeup)                └─ spawn execute():
//!                                      ▲                                    attempts, timeout,
//!                                      │                                    retries, report
//!                                      └──── Completed (FIXED_DELAY) ───────────┘
//! ```
//!
//! The driver is a plain thread rather than a tokio task so that its wake-ups are as exact as
//! the operating system allows (a condition variable with a timeout), independent of tokio's
//! millisecond timer granularity and of how busy the runtime's workers are. It hands fires to
//! a dispatcher task in batches, so that one cross-thread wake-up serves a whole batch.
//!
//! For the lowest lateness give the driver a core of its own: a runtime with one worker
//! thread fewer than the machine has cores (`ferrojob demo` does this). When the driver must
//! share a core with busy runtime workers, the OS can make it wait a scheduling quantum
//! (milliseconds) before it runs.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use futures::FutureExt;
use tokio::sync::{broadcast, oneshot, watch, Notify};

use crate::clock::{Clock, Parker, SystemClock};
use crate::ids::{InstanceId, JobId};
use crate::time_expression::EpochMs;

use super::core::{Command, Core, CoreConfig, Fire, JobDef};
use super::error::SchedulerError;
use super::job::JobSpec;
use super::processor::{Processor, RunContext};
use super::report::{RunOutcome, RunReport};

/// Tunables of an embedded [`Scheduler`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SchedulerConfig {
    /// A trigger that fires later than this (milliseconds) counts as missed and follows its
    /// job's misfire policy (`FIRE_ALL` runs at most
    /// [`MAX_CATCH_UP`](crate::schedule::MAX_CATCH_UP) missed triggers per catch-up); a
    /// later-but-within-threshold trigger simply runs late. Default 5 000.
    pub misfire_threshold_ms: u64,
    /// How many reports a slow subscriber may lag behind before it misses some
    /// (see [`Scheduler::subscribe`]). Default 4 096.
    pub report_capacity: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            misfire_threshold_ms: 5_000,
            report_capacity: 4_096,
        }
    }
}

/// Live figures of one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct JobStats {
    /// Runs in progress.
    pub running: u32,
    /// Runs started.
    pub fired: u64,
    /// Runs that succeeded.
    pub succeeded: u64,
    /// Runs that failed (after their retries) or timed out.
    pub failed: u64,
    /// Runs cancelled by a shutdown while in progress.
    pub cancelled: u64,
    /// Triggers that did not run (concurrency limit, misfire, removed job).
    pub skipped: u64,
    /// The next scheduled trigger (ms since the epoch), if one is armed.
    pub next_fire_at: Option<EpochMs>,
}

/// Options of a manual run ([`Scheduler::trigger`]).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct TriggerOptions {
    /// Parameters for this run only ([`RunContext::instance_params`]).
    pub params: Option<String>,
    /// Run this many milliseconds from now (0 = at once).
    pub delay_ms: u64,
}

impl TriggerOptions {
    /// Run at once, with no instance parameters.
    pub fn now() -> Self {
        Self::default()
    }

    /// Sets the instance parameters.
    pub fn with_params(mut self, params: impl Into<String>) -> Self {
        self.params = Some(params.into());
        self
    }

    /// Sets the delay in milliseconds.
    pub fn with_delay_ms(mut self, delay_ms: u64) -> Self {
        self.delay_ms = delay_ms;
        self
    }
}

enum DriverMsg {
    Core(Command),
    Settle(oneshot::Sender<()>),
    Shutdown,
}

/// What the driver hands to the dispatcher task.
enum Dispatch {
    /// Fires emitted at `fired_at_us`, in order.
    Fires(Vec<Fire>, i64),
    /// Reply once every earlier fire has been launched.
    Settled(oneshot::Sender<()>),
}

/// Fires handed to the dispatcher per batch: bounds how long the first run of a large burst
/// waits for the driver to finish emitting the rest.
const BATCH: usize = 1024;

struct Inner {
    clock: Arc<dyn Clock>,
    runtime: tokio::runtime::Handle,
    commands: flume::Sender<DriverMsg>,
    parker: Parker,
    /// The registered jobs, looked up by id.
    jobs: dashmap::DashSet<Registered>,
    next_job: AtomicU64,
    next_instance: Arc<AtomicU64>,
    reports: broadcast::Sender<RunReport>,
    /// `true` once the scheduler shuts down: every attempt in progress is cancelled.
    cancel: watch::Sender<bool>,
    /// Runs handed to the dispatcher and not yet finished, and a notification when it drops
    /// to zero.
    in_flight: AtomicUsize,
    idle: Notify,
    shut_down: AtomicBool,
}

/// A registered job as the registry holds it: hashed and compared by its id alone, so the
/// registry is a set looked up by [`JobId`] and each of its slots is one pointer (a map from id
/// to `Arc<JobDef>` would store the id a second time in every slot).
struct Registered(Arc<JobDef>);

impl std::borrow::Borrow<JobId> for Registered {
    fn borrow(&self) -> &JobId {
        &self.0.id
    }
}

impl std::hash::Hash for Registered {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Hashes exactly as the `JobId` it borrows as, which `Borrow` requires.
        self.0.id.hash(state);
    }
}

impl PartialEq for Registered {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for Registered {}

/// An in-process scheduler: jobs with any time expression run async processors on tokio.
///
/// Create one inside a tokio runtime with [`Scheduler::start`] (system clock) or
/// [`Scheduler::with_clock`] (e.g. a [`VirtualClock`](crate::clock::VirtualClock) in tests).
/// Every method takes `&self`; share the scheduler behind an `Arc` if several tasks need it.
pub struct Scheduler {
    inner: Arc<Inner>,
    driver: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("jobs", &self.inner.jobs.len())
            .field("in_flight", &self.inner.in_flight.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Scheduler {
    /// Starts a scheduler on the system clock with the default configuration.
    ///
    /// # Panics
    /// Outside a tokio runtime (as `tokio::spawn` does).
    pub fn start() -> Self {
        Self::with_clock(Arc::new(SystemClock), SchedulerConfig::default())
    }

    /// Starts a scheduler on `clock` with `config`; runs are spawned on the current tokio
    /// runtime.
    ///
    /// # Panics
    /// Outside a tokio runtime, or if the OS refuses to start the driver thread.
    pub fn with_clock(clock: Arc<dyn Clock>, config: SchedulerConfig) -> Self {
        let runtime = tokio::runtime::Handle::current();
        let (commands, rx) = flume::unbounded();
        let (reports, _) = broadcast::channel(config.report_capacity.max(1));
        let (cancel, _) = watch::channel(false);
        let next_instance = Arc::new(AtomicU64::new(1));
        let core = Core::new(
            clock.now_ms(),
            Arc::clone(&next_instance),
            CoreConfig {
                misfire_threshold_ms: config.misfire_threshold_ms,
            },
        );
        let inner = Arc::new(Inner {
            clock,
            runtime,
            commands,
            parker: Parker::new(),
            jobs: dashmap::DashSet::new(),
            next_job: AtomicU64::new(1),
            next_instance,
            reports,
            cancel,
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
            shut_down: AtomicBool::new(false),
        });
        // The dispatcher lives on the runtime and spawns runs from there: spawning from the
        // driver thread would take tokio's injection lock and wake a worker for every run.
        let (dispatch_tx, dispatch_rx) = flume::unbounded();
        let dispatcher_inner = Arc::clone(&inner);
        inner
            .runtime
            .spawn(async move { dispatch(&dispatcher_inner, dispatch_rx).await });
        let driver_inner = Arc::clone(&inner);
        let driver = std::thread::Builder::new()
            .name("ferrojob-driver".into())
            .spawn(move || drive(&driver_inner, &rx, &dispatch_tx, core))
            // Without its driver thread there is no scheduler; this is a resource failure at
            // start-up, not an input error.
            .unwrap_or_else(|e| panic!("cannot start the scheduler's driver thread: {e}"));
        Scheduler {
            inner,
            driver: Mutex::new(Some(driver)),
        }
    }

    /// The scheduler's clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// Registers a job; it fires on its schedule from now on (if enabled).
    pub fn register(
        &self,
        spec: JobSpec,
        processor: impl Processor,
    ) -> Result<JobId, SchedulerError> {
        self.register_arc(spec, Arc::new(processor))
    }

    /// [`Scheduler::register`] with a shared processor (many jobs, one processor).
    pub fn register_arc(
        &self,
        spec: JobSpec,
        processor: Arc<dyn Processor>,
    ) -> Result<JobId, SchedulerError> {
        self.check_open()?;
        if let (Some(start), Some(end)) = (spec.lifecycle.start, spec.lifecycle.end) {
            if start > end {
                return Err(SchedulerError::InvalidJob {
                    name: spec.name,
                    reason: format!("lifecycle starts at {start} ms, after its end at {end} ms"),
                });
            }
        }
        if let Err((field, reason)) = spec.retry.backoff.validate() {
            return Err(SchedulerError::InvalidJob {
                name: spec.name,
                reason: format!("retry backoff {field}: {reason}"),
            });
        }
        let id = JobId(self.inner.next_job.fetch_add(1, Ordering::Relaxed));
        let def = Arc::new(JobDef::new(id, spec, processor));
        self.inner.jobs.insert(Registered(Arc::clone(&def)));
        self.send(DriverMsg::Core(Command::Add(def)))?;
        Ok(id)
    }

    /// Removes a job: it never fires again and its pending manual triggers are reported as
    /// skipped. Runs in progress finish.
    pub fn remove(&self, job: JobId) -> Result<(), SchedulerError> {
        self.check_open()?;
        let Registered(def) = self
            .inner
            .jobs
            .remove(&job)
            .ok_or(SchedulerError::UnknownJob(job))?;
        self.send(DriverMsg::Core(Command::Remove(def)))
    }

    /// Enables a job's schedule. Triggers that passed while it was disabled are not misfires:
    /// the schedule continues from now.
    pub fn enable(&self, job: JobId) -> Result<(), SchedulerError> {
        self.set_enabled(job, true)
    }

    /// Disables a job's schedule. Manual triggers still run; runs in progress finish.
    pub fn disable(&self, job: JobId) -> Result<(), SchedulerError> {
        self.set_enabled(job, false)
    }

    fn set_enabled(&self, job: JobId, enabled: bool) -> Result<(), SchedulerError> {
        self.check_open()?;
        let def = self.def(job)?;
        self.send(DriverMsg::Core(Command::SetEnabled(def, enabled)))
    }

    /// Runs a job once, now or after `options.delay_ms`, whatever its schedule and whether it
    /// is enabled (the concurrency limit still applies). Returns the run's instance id.
    pub fn trigger(
        &self,
        job: JobId,
        options: TriggerOptions,
    ) -> Result<InstanceId, SchedulerError> {
        self.check_open()?;
        let def = self.def(job)?;
        let instance = InstanceId(self.inner.next_instance.fetch_add(1, Ordering::Relaxed));
        self.send(DriverMsg::Core(Command::Trigger {
            def,
            instance,
            params: options.params.map(Arc::from),
            delay_ms: options.delay_ms,
        }))?;
        Ok(instance)
    }

    /// The live figures of a job.
    pub fn stats(&self, job: JobId) -> Result<JobStats, SchedulerError> {
        let def = self.def(job)?;
        let c = &def.counters;
        let next = c.next_fire_at.load(Ordering::Relaxed);
        Ok(JobStats {
            running: def.running(),
            fired: c.fired.load(Ordering::Relaxed),
            succeeded: c.succeeded.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            cancelled: def.cancelled(),
            skipped: c.skipped.load(Ordering::Relaxed),
            next_fire_at: (next != i64::MIN).then_some(next),
        })
    }

    /// The ids and names of the registered jobs, in id order.
    pub fn jobs(&self) -> Vec<(JobId, String)> {
        let mut jobs: Vec<(JobId, String)> = self
            .inner
            .jobs
            .iter()
            .map(|e| (e.0.id, e.0.spec.name.to_string()))
            .collect();
        jobs.sort_by_key(|(id, _)| *id);
        jobs
    }

    /// A stream of every run's report from now on. A subscriber that lags more than
    /// [`SchedulerConfig::report_capacity`] reports behind gets `RecvError::Lagged` and misses
    /// the oldest ones; the scheduler never waits for subscribers.
    pub fn subscribe(&self) -> broadcast::Receiver<RunReport> {
        self.inner.reports.subscribe()
    }

    /// Completes once the driver has handled every call made before this one and every run
    /// due at the clock's current time has been launched (spawned; skipped triggers reported).
    /// With a virtual clock this makes "advance, then check" deterministic; a run's own report
    /// comes when it ends.
    pub async fn settle(&self) -> Result<(), SchedulerError> {
        let (tx, rx) = oneshot::channel();
        self.send(DriverMsg::Settle(tx))?;
        rx.await.map_err(|_| SchedulerError::ShutDown)
    }

    /// Stops scheduling, cancels every run in progress and waits until they have ended.
    /// Calls after this one fail with [`SchedulerError::ShutDown`].
    pub async fn shutdown(&self) {
        if self.inner.shut_down.swap(true, Ordering::AcqRel) {
            return;
        }
        let _ = self.inner.commands.send(DriverMsg::Shutdown);
        self.inner.parker.unpark();
        let driver = self
            .driver
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(driver) = driver {
            // The driver exits at its next turn, which the unpark above starts at once.
            let _ = tokio::task::spawn_blocking(move || driver.join()).await;
        }
        self.inner.cancel.send_replace(true);
        loop {
            let idle = self.inner.idle.notified();
            if self.inner.in_flight.load(Ordering::Acquire) == 0 {
                break;
            }
            idle.await;
        }
    }

    fn check_open(&self) -> Result<(), SchedulerError> {
        if self.inner.shut_down.load(Ordering::Acquire) {
            Err(SchedulerError::ShutDown)
        } else {
            Ok(())
        }
    }

    fn def(&self, job: JobId) -> Result<Arc<JobDef>, SchedulerError> {
        self.inner
            .jobs
            .get(&job)
            .map(|e| Arc::clone(&e.0))
            .ok_or(SchedulerError::UnknownJob(job))
    }

    fn send(&self, msg: DriverMsg) -> Result<(), SchedulerError> {
        self.inner
            .commands
            .send(msg)
            .map_err(|_| SchedulerError::ShutDown)?;
        self.inner.parker.unpark();
        Ok(())
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        // Stop the driver thread and cancel runs; `shutdown` is the graceful way that also
        // waits for them.
        if !self.inner.shut_down.swap(true, Ordering::AcqRel) {
            let _ = self.inner.commands.send(DriverMsg::Shutdown);
            self.inner.parker.unpark();
            self.inner.cancel.send_replace(true);
        }
    }
}

/// The driver thread: commands in, fires out (in batches, to the dispatcher), park until the
/// next due instant. It ends on `Shutdown`, dropping `dispatch`, which ends the dispatcher once
/// it has launched what it was given.
fn drive(
    inner: &Arc<Inner>,
    rx: &flume::Receiver<DriverMsg>,
    dispatch: &flume::Sender<Dispatch>,
    mut core: Core,
) {
    let mut settles: Vec<oneshot::Sender<()>> = Vec::new();
    loop {
        let now = inner.clock.now_ms();
        loop {
            match rx.try_recv() {
                Ok(DriverMsg::Core(command)) => core.handle(now, command),
                Ok(DriverMsg::Settle(tx)) => settles.push(tx),
                Ok(DriverMsg::Shutdown) | Err(flume::TryRecvError::Disconnected) => return,
                Err(flume::TryRecvError::Empty) => break,
            }
        }
        let now = inner.clock.now_ms();
        loop {
            let mut fires = Vec::new();
            let more = core.poll(now, &mut fires, BATCH);
            if !fires.is_empty() {
                let runs = fires.iter().filter(|f| f.skip.is_none()).count();
                inner.in_flight.fetch_add(runs, Ordering::AcqRel);
                let _ = dispatch.send(Dispatch::Fires(fires, inner.clock.now_us()));
            }
            if !more {
                break;
            }
        }
        for tx in settles.drain(..) {
            let _ = dispatch.send(Dispatch::Settled(tx));
        }
        let wake_us = core.next_wakeup().map(|ms| ms.saturating_mul(1000));
        inner.clock.park(&inner.parker, wake_us);
    }
}

/// The dispatcher task: launches each batch the driver emits, in order.
async fn dispatch(inner: &Arc<Inner>, rx: flume::Receiver<Dispatch>) {
    while let Ok(msg) = rx.recv_async().await {
        match msg {
            Dispatch::Fires(fires, fired_at_us) => {
                for fire in fires {
                    launch(inner, fire, fired_at_us);
                }
            }
            Dispatch::Settled(tx) => {
                let _ = tx.send(());
            }
        }
    }
}

/// Starts a run (already counted in `in_flight` by the driver), or reports a skipped trigger.
fn launch(inner: &Arc<Inner>, fire: Fire, fired_at_us: i64) {
    if let Some(reason) = fire.skip {
        let _ = inner.reports.send(RunReport {
            job_id: fire.def.id,
            instance_id: fire.instance,
            scheduled_at: fire.scheduled_at,
            fired_at_us,
            finished_at_us: fired_at_us,
            attempts: 0,
            outcome: RunOutcome::Skipped { reason },
        });
        return;
    }
    let run_inner = Arc::clone(inner);
    tokio::spawn(async move { execute(run_inner, fire, fired_at_us).await });
}

/// Runs every attempt of one run, then accounts for it and reports it.
async fn execute(inner: Arc<Inner>, fire: Fire, fired_at_us: i64) {
    let def = Arc::clone(&fire.def);
    let spec = &def.spec;
    let mut cancel = inner.cancel.subscribe();
    let mut attempt = 0u32;
    let outcome = loop {
        attempt += 1;
        let ctx = RunContext {
            job: Arc::clone(&def),
            instance_id: fire.instance,
            attempt,
            scheduled_at: fire.scheduled_at,
            fired_at_us,
            instance_params: fire.instance_params.clone(),
            clock: Arc::clone(&inner.clock),
            cancel: cancel.clone(),
        };
        let run = std::panic::AssertUnwindSafe(def.processor.process(ctx)).catch_unwind();
        let timeout = async {
            if spec.timeout_ms() == 0 {
                std::future::pending::<()>().await;
            } else {
                let ms = i64::try_from(spec.timeout_ms()).unwrap_or(i64::MAX);
                let deadline = inner.clock.now_us().saturating_add(ms.saturating_mul(1000));
                inner.clock.sleep_until(deadline).await;
            }
        };
        let failure = tokio::select! {
            biased;
            _ = cancel.wait_for(|c| *c) => break RunOutcome::Cancelled,
            r = run => match r {
                Ok(Ok(result)) => break RunOutcome::Succeeded { result },
                Ok(Err(e)) => RunOutcome::Failed { error: e.to_string() },
                Err(panic) => RunOutcome::Failed {
                    error: format!("processor panicked: {}", panic_message(&panic)),
                },
            },
            () = timeout => RunOutcome::TimedOut,
        };
        if attempt > spec.retry().retries {
            break failure;
        }
        tracing::debug!(
            job = def.id.0,
            instance = fire.instance.0,
            attempt,
            ?failure,
            "retrying"
        );
        let backoff =
            i64::try_from(spec.retry().backoff_ms(attempt, fire.instance.0)).unwrap_or(i64::MAX);
        let wake = inner
            .clock
            .now_us()
            .saturating_add(backoff.saturating_mul(1000));
        tokio::select! {
            biased;
            _ = cancel.wait_for(|c| *c) => break RunOutcome::Cancelled,
            () = inner.clock.sleep_until(wake) => {}
        }
    };
    let finished_at_us = inner.clock.now_us();
    let counters = &def.counters;
    match outcome {
        RunOutcome::Succeeded { .. } => {
            counters.succeeded.fetch_add(1, Ordering::Relaxed);
        }
        RunOutcome::Cancelled => {}
        _ => {
            counters.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
    // Release: pairs with the Acquire reservation in `admit`, so a freed slot is reused only
    // after the run's effects. A cancelled run is counted in the same step.
    def.release(matches!(outcome, RunOutcome::Cancelled));
    if fire.from_schedule
        && matches!(
            spec.expression(),
            crate::time_expression::TimeExpression::FixedDelay { .. }
        )
    {
        let _ = inner.commands.send(DriverMsg::Core(Command::Completed {
            def: Arc::clone(&def),
            finished_at: finished_at_us.div_euclid(1000),
        }));
        inner.parker.unpark();
    }
    let _ = inner.reports.send(RunReport {
        job_id: def.id,
        instance_id: fire.instance,
        scheduled_at: fire.scheduled_at,
        fired_at_us,
        finished_at_us,
        attempts: attempt,
        outcome,
    });
    if inner.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
        inner.idle.notify_waiters();
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
