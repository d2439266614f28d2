//! What a job is to the embedded scheduler: when it runs ([`JobSpec::expression`], lifecycle,
//! misfire policy) and how (concurrency limit, timeout, retries).

use crate::policy::RetryBackoff;
use crate::schedule::Schedule;
use crate::time_expression::{EpochMs, Lifecycle, MisfirePolicy, TimeExpression};

/// Everything the embedded scheduler needs to know about a job except its processor.
///
/// Build one with [`JobSpec::new`] and the `with_*` methods; every field has a documented default.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JobSpec {
    /// A name for logs and reports; need not be unique.
    pub name: String,
    /// When the job runs.
    pub expression: TimeExpression,
    /// The window outside which the job never fires (default: no bounds).
    pub lifecycle: Lifecycle,
    /// What to do with triggers missed by more than the scheduler's misfire threshold
    /// (default [`MisfirePolicy::FireOnce`]).
    pub misfire: MisfirePolicy,
    /// The last trigger time that already ran before this registration, if the caller knows it
    /// (e.g. it persisted it before a restart): triggers after it that are already past are
    /// handled by `misfire`. `None` (default): the schedule starts from the registration time.
    pub resume_after: Option<EpochMs>,
    /// At most this many instances of the job run at once; a trigger that finds the limit
    /// reached is skipped and reported as such. 0 (default) = unlimited.
    pub max_instances: u32,
    /// Each attempt is cancelled (its future dropped) after this many milliseconds.
    /// 0 (default) = no timeout.
    pub timeout_ms: u64,
    /// Retries of failed or timed-out attempts (default: none).
    pub retry: RetryPolicy,
    /// Parameters handed to every run's processor (default: empty).
    pub params: String,
    /// Whether the job fires on its schedule from the start (default `true`).
    pub enabled: bool,
}

impl JobSpec {
    /// A job called `name` that runs on `expression`, with every other field at its default.
    pub fn new(name: impl Into<String>, expression: TimeExpression) -> Self {
        JobSpec {
            name: name.into(),
            expression,
            lifecycle: Lifecycle::default(),
            misfire: MisfirePolicy::default(),
            resume_after: None,
            max_instances: 0,
            timeout_ms: 0,
            retry: RetryPolicy::default(),
            params: String::new(),
            enabled: true,
        }
    }

    /// Sets [`JobSpec::lifecycle`].
    pub fn with_lifecycle(mut self, lifecycle: Lifecycle) -> Self {
        self.lifecycle = lifecycle;
        self
    }

    /// Sets [`JobSpec::misfire`].
    pub fn with_misfire(mut self, misfire: MisfirePolicy) -> Self {
        self.misfire = misfire;
        self
    }

    /// Sets [`JobSpec::resume_after`].
    pub fn with_resume_after(mut self, last_trigger: EpochMs) -> Self {
        self.resume_after = Some(last_trigger);
        self
    }

    /// Sets [`JobSpec::max_instances`] (0 = unlimited).
    pub fn with_max_instances(mut self, max: u32) -> Self {
        self.max_instances = max;
        self
    }

    /// Sets [`JobSpec::timeout_ms`] (0 = none).
    pub fn with_timeout_ms(mut self, timeout_ms: u64) -> Self {
        self.timeout_ms = timeout_ms;
        self
    }

    /// Sets [`JobSpec::retry`].
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets [`JobSpec::params`].
    pub fn with_params(mut self, params: impl Into<String>) -> Self {
        self.params = params.into();
        self
    }

    /// Sets [`JobSpec::enabled`].
    pub fn with_enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }
}

/// How failed attempts are retried: up to `retries` more attempts, the n-th after
/// `backoff.delay_ms(n, instance)` milliseconds — the same rule as the server's
/// ([`RetryBackoff`]: fixed or exponential, capped, with an optional jitter derived from the
/// run's instance id, so a run's delays are the same every time).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts after the first (0 = never retry).
    pub retries: u32,
    /// The delay before each retry (default: 1 s doubling up to 1 min, no jitter).
    pub backoff: RetryBackoff,
}

/// [`RetryPolicy::default`].
const NO_RETRY: RetryPolicy = RetryPolicy {
    retries: 0,
    backoff: RetryBackoff::exponential(1_000, 60_000),
};

impl Default for RetryPolicy {
    /// No retries; were `retries` raised, 1 s doubling up to 1 min.
    fn default() -> Self {
        NO_RETRY
    }
}

impl RetryPolicy {
    /// `retries` retries with the default backoff.
    pub fn retries(retries: u32) -> Self {
        RetryPolicy {
            retries,
            ..RetryPolicy::default()
        }
    }

    /// `retries` retries after `backoff`.
    pub fn with_backoff(retries: u32, backoff: RetryBackoff) -> Self {
        RetryPolicy { retries, backoff }
    }

    /// The delay before retry number `n` (1-based) of the run `seed` (its instance id), in
    /// milliseconds.
    pub fn backoff_ms(&self, n: u32, seed: u64) -> u64 {
        self.backoff.delay_ms(n, seed)
    }
}

/// [`Lifecycle::default`]: no bounds.
const NO_BOUNDS: Lifecycle = Lifecycle {
    start: None,
    end: None,
};

/// What the scheduler keeps of a [`JobSpec`] while the job is registered, packed into 32
/// bytes: the name (at its exact length) and, for a job whose other fields are at their
/// defaults, the expression inline; a job that sets any of the rarely set fields
/// (concurrency limit, misfire policy, lifecycle, `resume_after`, timeout, retries,
/// parameters) keeps its expression and those fields in one box instead. `enabled` is not
/// kept: it is the job's initial state, which the scheduler's core holds from then on.
#[derive(Debug)]
pub(crate) struct StoredSpec {
    pub(crate) name: Box<str>,
    when: When,
}

/// A job's expression, alone or with its rarely set fields. 16 bytes: `Custom`'s pointer
/// lies beside a spare value of the expression's tag.
#[derive(Debug)]
enum When {
    Plain(TimeExpression),
    Custom(Box<Custom>),
}

/// The expression of a job that sets some of the [`JobSpec`] fields that are usually at their
/// defaults, and those fields.
#[derive(Debug)]
struct Custom {
    expression: TimeExpression,
    max_instances: u32,
    misfire: MisfirePolicy,
    lifecycle: Lifecycle,
    resume_after: Option<EpochMs>,
    timeout_ms: u64,
    retry: RetryPolicy,
    params: Box<str>,
}

impl From<JobSpec> for StoredSpec {
    fn from(spec: JobSpec) -> Self {
        let defaults = spec.max_instances == 0
            && spec.misfire == MisfirePolicy::default()
            && spec.lifecycle == NO_BOUNDS
            && spec.resume_after.is_none()
            && spec.timeout_ms == 0
            && spec.retry == NO_RETRY
            && spec.params.is_empty();
        let when = if defaults {
            When::Plain(spec.expression)
        } else {
            When::Custom(Box::new(Custom {
                expression: spec.expression,
                max_instances: spec.max_instances,
                misfire: spec.misfire,
                lifecycle: spec.lifecycle,
                resume_after: spec.resume_after,
                timeout_ms: spec.timeout_ms,
                retry: spec.retry,
                params: spec.params.into_boxed_str(),
            }))
        };
        StoredSpec {
            name: spec.name.into_boxed_str(),
            when,
        }
    }
}

impl StoredSpec {
    fn custom(&self) -> Option<&Custom> {
        match &self.when {
            When::Plain(_) => None,
            When::Custom(c) => Some(c),
        }
    }

    /// [`JobSpec::expression`].
    pub(crate) fn expression(&self) -> &TimeExpression {
        match &self.when {
            When::Plain(e) => e,
            When::Custom(c) => &c.expression,
        }
    }

    /// [`JobSpec::max_instances`] (0 = unlimited).
    pub(crate) fn max_instances(&self) -> u32 {
        self.custom().map_or(0, |r| r.max_instances)
    }

    /// [`JobSpec::misfire`].
    pub(crate) fn misfire(&self) -> MisfirePolicy {
        self.custom()
            .map_or_else(MisfirePolicy::default, |r| r.misfire)
    }

    /// [`JobSpec::lifecycle`].
    pub(crate) fn lifecycle(&self) -> &Lifecycle {
        self.custom().map_or(&NO_BOUNDS, |r| &r.lifecycle)
    }

    /// [`JobSpec::resume_after`].
    pub(crate) fn resume_after(&self) -> Option<EpochMs> {
        self.custom().and_then(|r| r.resume_after)
    }

    /// [`JobSpec::timeout_ms`].
    pub(crate) fn timeout_ms(&self) -> u64 {
        self.custom().map_or(0, |r| r.timeout_ms)
    }

    /// [`JobSpec::retry`].
    pub(crate) fn retry(&self) -> &RetryPolicy {
        self.custom().map_or(&NO_RETRY, |r| &r.retry)
    }

    /// [`JobSpec::params`].
    pub(crate) fn params(&self) -> &str {
        self.custom().map_or("", |r| &r.params)
    }

    /// The job's schedule as the shared scheduling rules see it.
    pub(crate) fn schedule(&self) -> Schedule<'_> {
        Schedule {
            expression: self.expression(),
            lifecycle: self.lifecycle(),
            misfire: self.misfire(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_spec_keeps_every_field() {
        let rate = TimeExpression::FixedRate { period_ms: 1_000 };
        let plain = StoredSpec::from(JobSpec::new("plain", rate.clone()));
        assert!(plain.custom().is_none());
        assert_eq!(plain.expression(), &rate);
        assert_eq!(&*plain.name, "plain");
        assert_eq!(plain.lifecycle(), &Lifecycle::default());
        assert_eq!(plain.retry(), &RetryPolicy::default());
        assert_eq!(
            (plain.resume_after(), plain.timeout_ms(), plain.params()),
            (None, 0, "")
        );
        assert_eq!(plain.max_instances(), 0);
        assert_eq!(plain.misfire(), MisfirePolicy::default());

        let mut spec = JobSpec::new("full", rate.clone())
            .with_lifecycle(Lifecycle {
                start: Some(5),
                end: Some(9),
            })
            .with_misfire(MisfirePolicy::Skip)
            .with_resume_after(7);
        spec.max_instances = 3;
        spec.timeout_ms = 250;
        spec.retry = RetryPolicy::retries(2);
        spec.params = "p=1".into();
        spec.enabled = false;
        let full = StoredSpec::from(spec);
        assert_eq!(full.expression(), &rate);
        assert_eq!(full.lifecycle().start, Some(5));
        assert_eq!(full.lifecycle().end, Some(9));
        assert_eq!(full.misfire(), MisfirePolicy::Skip);
        assert_eq!(full.resume_after(), Some(7));
        assert_eq!(full.max_instances(), 3);
        assert_eq!(full.timeout_ms(), 250);
        assert_eq!(full.retry().retries, 2);
        assert_eq!(full.params(), "p=1");
        // Any one rare field set keeps it.
        let only_params = StoredSpec::from(JobSpec {
            params: "x".into(),
            ..JobSpec::new("p", TimeExpression::Api)
        });
        assert_eq!(only_params.params(), "x");
        let only_limit =
            StoredSpec::from(JobSpec::new("l", TimeExpression::Api).with_max_instances(1));
        assert_eq!(only_limit.max_instances(), 1);
        let only_policy = StoredSpec::from(
            JobSpec::new("m", TimeExpression::Api).with_misfire(MisfirePolicy::Skip),
        );
        assert_eq!(only_policy.misfire(), MisfirePolicy::Skip);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy::with_backoff(10, RetryBackoff::exponential(100, 1_000));
        let got: Vec<u64> = (1..=6).map(|n| p.backoff_ms(n, 7)).collect();
        assert_eq!(got, [100, 200, 400, 800, 1_000, 1_000]);
        assert_eq!(
            p.backoff_ms(200, 7),
            1_000,
            "huge n saturates, never overflows"
        );
        let d = RetryPolicy::default();
        let got: Vec<u64> = (1..=8).map(|n| d.backoff_ms(n, 0)).collect();
        assert_eq!(
            got,
            [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000],
            "the default is what it always was"
        );
        let fixed = RetryPolicy::with_backoff(3, RetryBackoff::fixed(250));
        assert_eq!(fixed.backoff_ms(3, 1), 250);
    }
}
