//! `ferrojob demo --embedded`: the embedded scheduler (no server, no network) with one job of
//! each kind, every fire shown live with its lateness, and a summary at the end (Ctrl-C or `--duration-secs`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use ferrojob::embedded::{
    BoxError, JobSpec, RunContext, RunOutcome, RunReport, Scheduler, TriggerOptions,
};
use ferrojob::ids::JobId;
use ferrojob::time_expression::{TimeExpression, TimeExpressionType};

pub fn run(duration_secs: Option<u64>) -> Result<()> {
    // The scheduler's driver thread gets a core of its own: the runtime has one worker fewer.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores.saturating_sub(1).max(1))
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(demo(duration_secs))
}

struct Sample {
    name: &'static str,
    kind: TimeExpressionType,
    expr: &'static str,
    tz: Option<&'static str>,
}

const SAMPLES: [Sample; 4] = [
    Sample {
        name: "cron */2s Asia/Shanghai",
        kind: TimeExpressionType::Cron,
        expr: "*/2 * * * * ?",
        tz: Some("Asia/Shanghai"),
    },
    Sample {
        name: "fixed-rate 750ms",
        kind: TimeExpressionType::FixedRate,
        expr: "750",
        tz: None,
    },
    Sample {
        name: "fixed-delay 1s",
        kind: TimeExpressionType::FixedDelay,
        expr: "1000",
        tz: None,
    },
    Sample {
        name: "api +250ms",
        kind: TimeExpressionType::Api,
        expr: "",
        tz: None,
    },
];

async fn demo(duration_secs: Option<u64>) -> Result<()> {
    let scheduler = Scheduler::start();
    let mut names: BTreeMap<JobId, &'static str> = BTreeMap::new();
    let mut api_job = None;
    for sample in &SAMPLES {
        let expression = TimeExpression::parse(sample.kind, sample.expr, sample.tz)
            .with_context(|| format!("sample job '{}'", sample.name))?;
        let spec = JobSpec::new(sample.name, expression);
        let id = match sample.kind {
            // Takes 100–300 ms, so its fires drift by that much: the delay counts from the end.
            TimeExpressionType::FixedDelay => {
                scheduler.register(spec, |ctx: RunContext| async move {
                    let work_ms = 100 + (ctx.instance_id().0 * 37) % 200;
                    let clock = Arc::clone(ctx.clock());
                    let until = clock.now_us() + i64::try_from(work_ms * 1000)?;
                    clock.sleep_until(until).await;
                    Ok::<_, BoxError>(format!("worked {work_ms} ms"))
                })?
            }
            TimeExpressionType::Api => scheduler.register(spec, |ctx: RunContext| async move {
                Ok::<_, BoxError>(format!("params {}", ctx.instance_params().unwrap_or("-")))
            })?,
            _ => scheduler.register(spec, |_ctx: RunContext| async move {
                Ok::<_, BoxError>("ok".to_owned())
            })?,
        };
        if sample.kind == TimeExpressionType::Api {
            api_job = Some(id);
        }
        names.insert(id, sample.name);
    }

    println!("ferrojob demo: the embedded scheduler with 4 jobs; Ctrl-C to stop.");
    println!(
        "{:<29}  {:<24}  {:>8}  {:<8}  {:>12}  result",
        "scheduled (UTC)", "job", "instance", "status", "late"
    );
    let mut reports = scheduler.subscribe();
    let mut trigger_every = tokio::time::interval(Duration::from_secs(3));
    trigger_every.tick().await;
    let stop_after = async {
        match duration_secs {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(stop_after);
    let mut lateness: BTreeMap<JobId, Vec<i64>> = BTreeMap::new();
    let mut triggered = 0u32;
    loop {
        tokio::select! {
            report = reports.recv() => match report {
                Ok(report) => {
                    print_report(&report, names.get(&report.job_id).copied().unwrap_or("?"));
                    lateness.entry(report.job_id).or_default().push(report.lateness_us());
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    println!("(display lagged: {n} reports not shown)");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
            _ = trigger_every.tick() => {
                if let Some(job) = api_job {
                    triggered += 1;
                    scheduler.trigger(job, TriggerOptions::now()
                        .with_params(format!("n={triggered}"))
                        .with_delay_ms(250))?;
                }
            }
            _ = tokio::signal::ctrl_c() => break,
            () = &mut stop_after => break,
        }
    }
    scheduler.shutdown().await;

    println!();
    println!(
        "{:<24}  {:>6}  {:>6}  {:>6}  {:>9}  {:>10}  {:>10}  {:>10}",
        "job", "fired", "ok", "failed", "cancelled", "late p50", "late p99", "late max"
    );
    for (job, name) in &names {
        let stats = scheduler.stats(*job)?;
        let mut late = lateness.remove(job).unwrap_or_default();
        late.sort_unstable();
        let pick = |q: f64| -> String {
            if late.is_empty() {
                return "-".into();
            }
            let i = ((late.len() - 1) as f64 * q).round() as usize;
            late.get(i).map_or("-".into(), |us| format_ms(*us))
        };
        println!(
            "{:<24}  {:>6}  {:>6}  {:>6}  {:>9}  {:>10}  {:>10}  {:>10}",
            name,
            stats.fired,
            stats.succeeded,
            stats.failed,
            stats.cancelled,
            pick(0.5),
            pick(0.99),
            pick(1.0)
        );
    }
    Ok(())
}

fn print_report(r: &RunReport, name: &str) {
    let at = DateTime::<Utc>::from_timestamp_millis(r.scheduled_at).map_or_else(
        || r.scheduled_at.to_string(),
        |t| t.to_rfc3339_opts(SecondsFormat::Millis, true),
    );
    let result = match &r.outcome {
        RunOutcome::Succeeded { result } => result.clone(),
        RunOutcome::Failed { error } => error.clone(),
        RunOutcome::Skipped { reason } => format!("skipped: {reason:?}"),
        other => format!("{other:?}"),
    };
    println!(
        "{:<29}  {:<24}  {:>8}  {:<8}  {:>12}  {}",
        at,
        name,
        r.instance_id.0,
        format!("{:?}", r.status()).to_uppercase(),
        format_ms(r.lateness_us()),
        result
    );
}

fn format_ms(us: i64) -> String {
    format!("{:.3} ms", us as f64 / 1000.0)
}
