//! End to end: per-job log settings honoured by the real `ferrojob-worker` binary (level,
//! ONLINE / LOCAL / NULL), attempts told apart after a retry, the whole log as text,
//! `ferrojob instance log --follow`, and the trigger key and attempt a `shell` child sees.
//!
//! One worker, so every ONLINE line goes through its one FIFO queue: once a later instance's
//! line has reached the server, a line an earlier instance sent would have reached it too.
//! That is how "sends nothing" is checked without waiting for a time.

use std::time::Duration;

use ferrojob::api::{LogQuery, LogView, RunJob};
use ferrojob::ids::{InstanceId, JobId};
use ferrojob::model::{InstanceStatus, LogLevel, LogType};
use ferrojob::time_expression::TimeExpressionType;

mod common;
use common::*;

const WAIT: Duration = Duration::from_secs(30);

async fn run(c: &Cluster, job: JobId) -> InstanceId {
    let run = RunJob {
        params: String::new(),
        delay_ms: 0,
    };
    c.client.run_job(APP, job, &run).await.unwrap().instance_id
}

async fn finished(c: &Cluster, id: InstanceId) -> InstanceStatus {
    wait_for("a final status", WAIT, || async {
        let i = c.client.get_instance(APP, id).await.ok()?;
        i.status.is_final().then_some(i.status)
    })
    .await
}

async fn log(c: &Cluster, id: InstanceId) -> LogView {
    c.client
        .instance_log(APP, id, LogQuery::default())
        .await
        .unwrap()
}

fn shell_job(
    name: &str,
    script: &str,
    log_type: LogType,
    level: LogLevel,
) -> ferrojob::api::JobBody {
    let mut b = body(name, TimeExpressionType::Api, "", "shell", script);
    b.log_type = log_type;
    b.log_level = level;
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_honour_log_levels_and_types_and_tell_attempts_apart() {
    let mut c = Cluster::start(0, None).await;
    let data = c.dir.path().join("worker-data");
    let data_arg = data.to_str().unwrap().to_owned();
    c.add_worker_with(
        SECRET,
        "w",
        &["--allow-processor", "shell", "--data-dir", &data_arg],
    );
    c.wait_workers(1).await;

    // NULL and LOCAL first: whatever they would send is queued before the WARN job's lines.
    let null = c
        .job(shell_job(
            "null",
            "echo null-out; echo null-err >&2",
            LogType::Null,
            LogLevel::Debug,
        ))
        .await;
    let local = c
        .job(shell_job(
            "local",
            "echo local-out; echo local-err >&2",
            LogType::Local,
            LogLevel::Info,
        ))
        .await;
    let warn = c
        .job(shell_job(
            "warn",
            "echo info-out; echo warn-err >&2",
            LogType::Online,
            LogLevel::Warn,
        ))
        .await;
    let null_run = run(&c, null).await;
    assert_eq!(finished(&c, null_run).await, InstanceStatus::Succeed);
    let local_run = run(&c, local).await;
    assert_eq!(finished(&c, local_run).await, InstanceStatus::Succeed);
    let warn_run = run(&c, warn).await;
    assert_eq!(
        finished(&c, warn_run).await,
        InstanceStatus::Succeed,
        "{}",
        c.diagnostics()
    );

    // Level WARN: the stderr line (WARN) arrives, the stdout line (INFO) never left the worker.
    let view = wait_for("the WARN line", WAIT, || async {
        let v = log(&c, warn_run).await;
        v.lines
            .iter()
            .any(|l| l.content.contains("warn-err"))
            .then_some(v)
    })
    .await;
    assert!(
        view.lines
            .iter()
            .all(|l| matches!(l.level, LogLevel::Warn | LogLevel::Error)),
        "{view:?}"
    );
    assert!(!view.lines.iter().any(|l| l.content.contains("info-out")));
    assert!(view.lines.iter().all(|l| l.attempt == 1), "{view:?}");
    // NULL and LOCAL sent nothing to the server.
    assert!(log(&c, null_run).await.lines.is_empty());
    assert!(log(&c, local_run).await.lines.is_empty());

    // LOCAL wrote the worker's file, which the CLI reads while the worker runs.
    let logs_dir = data.join("logs");
    let logs_arg = logs_dir.to_str().unwrap().to_owned();
    let id = local_run.0.to_string();
    let text = wait_for("the LOCAL lines", WAIT, || async {
        let out = cli(
            &c,
            &["worker", "local-log", "--dir", &logs_arg, "--instance", &id],
        );
        (out.contains("local-out") && out.contains("local-err")).then_some(out)
    })
    .await;
    assert!(
        text.lines()
            .all(|l| l.contains(&format!(" instance={id} attempt=1 "))),
        "{text}"
    );
    assert!(!cli(&c, &["worker", "local-log", "--dir", &logs_arg]).contains("null-"));

    // STDOUT: one line per log line on the worker's own stdout, with the instance id.
    let stdout = c
        .job(shell_job(
            "stdout",
            "echo stdout-out",
            LogType::Stdout,
            LogLevel::Info,
        ))
        .await;
    let stdout_run = run(&c, stdout).await;
    assert_eq!(finished(&c, stdout_run).await, InstanceStatus::Succeed);
    let printed = format!(" INFO instance={} attempt=1 stdout-out", stdout_run.0);
    wait_for("the STDOUT line", WAIT, || async {
        c.workers[0].stdout_text().contains(&printed).then_some(())
    })
    .await;
    assert!(!c.workers[0].stdout_text().contains("null-"));

    // A retried instance: each attempt's lines carry their attempt.
    let mark = c.dir.path().join("failed-once");
    let script = format!(
        "if [ -f '{m}' ]; then echo second-try; else touch '{m}'; echo first-try; exit 1; fi",
        m = mark.display()
    );
    let mut retried = shell_job("retried", &script, LogType::Online, LogLevel::Info);
    retried.instance_retries = 1;
    let retried = c.job(retried).await;
    let retried_run = run(&c, retried).await;
    let view = wait_for("both attempts' lines", WAIT, || async {
        let i = c.client.get_instance(APP, retried_run).await.ok()?;
        let v = log(&c, retried_run).await;
        let done = i.status == InstanceStatus::Succeed
            && v.lines.iter().any(|l| l.content.contains("second-try"));
        done.then_some(v)
    })
    .await;
    let attempt_of = |text: &str| {
        view.lines
            .iter()
            .find(|l| l.content.contains(text))
            .map(|l| l.attempt)
    };
    assert_eq!(attempt_of("first-try"), Some(1), "{view:?}");
    assert_eq!(attempt_of("second-try"), Some(2), "{view:?}");
    // The whole log as text shows the attempts too.
    let text = c.client.instance_log_text(APP, retried_run).await.unwrap();
    assert!(text.contains("[attempt 1] first-try"), "{text}");
    assert!(text.contains("[attempt 2] second-try"), "{text}");
    // Paging backward from the end gives the last line.
    let last = c
        .client
        .instance_log(
            APP,
            retried_run,
            LogQuery {
                limit: Some(1),
                cursor: None,
                before: Some(u64::MAX),
            },
        )
        .await
        .unwrap();
    assert_eq!(last.lines.len(), 1);
    assert_eq!(last.lines.last(), view.lines.last());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_log_follow_tails_a_running_instance_until_it_is_final() {
    let c = Cluster::start(1, None).await;
    let job = c
        .job(shell_job(
            "slow",
            "echo follow-start; sleep 2; echo follow-end",
            LogType::Online,
            LogLevel::Info,
        ))
        .await;
    let id = run(&c, job).await;
    wait_for("the run to start", WAIT, || async {
        let i = c.client.get_instance(APP, id).await.ok()?;
        (i.status == InstanceStatus::Running).then_some(())
    })
    .await;
    // Returns only once the instance is final, with the lines written after it started.
    let out = cli(
        &c,
        &[
            "instance",
            "log",
            "--app",
            APP,
            "--follow",
            &id.0.to_string(),
        ],
    );
    assert!(out.contains("[attempt 1] follow-start"), "{out}");
    assert!(out.contains("[attempt 1] follow-end"), "{out}");
    let i = c.client.get_instance(APP, id).await.unwrap();
    assert!(i.status.is_final(), "{i:?}");
}

/// The `key=... attempt=... time=...` lines a shell job echoed, in log order.
async fn keyed_lines(c: &Cluster, id: InstanceId) -> Vec<String> {
    log(c, id)
        .await
        .lines
        .iter()
        .filter(|l| l.content.starts_with("key="))
        .map(|l| l.content.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_children_get_a_stable_trigger_key_and_a_growing_attempt() {
    let mut c = Cluster::start(0, None).await;
    c.add_worker_with(SECRET, "w", &["--allow-processor", "shell"]);
    c.wait_workers(1).await;
    let echo =
        "echo key=$FERROJOB_TRIGGER_KEY attempt=$FERROJOB_ATTEMPT time=$FERROJOB_TRIGGER_TIME";

    // An API run that fails once and is retried by its job: one key, attempts 1 then 2.
    let mark = c.dir.path().join("keyed-failed-once");
    let script = format!(
        "{echo}; if [ -f '{m}' ]; then exit 0; else touch '{m}'; exit 1; fi",
        m = mark.display()
    );
    let mut keyed = shell_job("keyed", &script, LogType::Online, LogLevel::Info);
    keyed.instance_retries = 1;
    let keyed = c.job(keyed).await;
    let id = run(&c, keyed).await;
    let lines = wait_for("both attempts' keys", WAIT, || async {
        let lines = keyed_lines(&c, id).await;
        (lines.len() == 2).then_some(lines)
    })
    .await;
    assert_eq!(finished(&c, id).await, InstanceStatus::Succeed);
    let trigger = c.client.get_instance(APP, id).await.unwrap().trigger_time;
    let want = |attempt: u32| format!("key=instance-{} attempt={attempt} time={trigger}", id.0);
    assert_eq!(lines, [want(1), want(2)]);

    // A retry asked for through the API: the same key, the next attempt.
    c.client.retry_instance(APP, id).await.unwrap();
    let lines = wait_for("the third attempt's key", WAIT, || async {
        let lines = keyed_lines(&c, id).await;
        (lines.len() == 3).then_some(lines)
    })
    .await;
    assert_eq!(lines, [want(1), want(2), want(3)]);

    // A scheduled fire: the key is the job and its trigger time.
    let rate = c
        .job(body(
            "keyed-rate",
            TimeExpressionType::FixedRate,
            "1000",
            "shell",
            echo,
        ))
        .await;
    let fired = wait_for("a fire that succeeded", WAIT, || async {
        c.succeeded(rate).await.into_iter().next()
    })
    .await;
    let lines = wait_for("the fire's key", WAIT, || async {
        let lines = keyed_lines(&c, fired.id).await;
        (!lines.is_empty()).then_some(lines)
    })
    .await;
    assert_eq!(
        lines,
        [format!(
            "key=job-{}-at-{t} attempt=1 time={t}",
            rate.0,
            t = fired.trigger_time
        )]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_from_the_cli_runs_each_past_trigger_with_its_time() {
    const HOUR: i64 = 3_600_000;
    let mut c = Cluster::start(0, None).await;
    c.add_worker_with(SECRET, "w", &["--allow-processor", "shell"]);
    c.wait_workers(1).await;
    let hourly = c
        .job(body(
            "hourly",
            TimeExpressionType::Cron,
            "0 0 * * * ?",
            "shell",
            "echo key=$FERROJOB_TRIGGER_KEY attempt=$FERROJOB_ATTEMPT time=$FERROJOB_TRIGGER_TIME",
        ))
        .await;
    let now = chrono::Utc::now().timestamp_millis();
    let hour = now - now.rem_euclid(HOUR);
    let (from, to) = ((hour - 3 * HOUR).to_string(), (hour - HOUR).to_string());
    let id = hourly.0.to_string();
    let args = [
        "job", "backfill", "--app", APP, &id, "--from", &from, "--to", &to,
    ];
    let rfc = |t: i64| {
        chrono::DateTime::from_timestamp_millis(t)
            .unwrap()
            .to_rfc3339()
    };

    let mut dry = args.to_vec();
    dry.push("--dry-run");
    let listed = cli(&c, &dry);
    assert_eq!(
        listed.lines().collect::<Vec<_>>(),
        [rfc(hour - 3 * HOUR), rfc(hour - 2 * HOUR)]
    );
    // (A fire of the job itself, should the test cross an hour, is a run > 0: left out.)
    let backfilled = |v: Vec<ferrojob::api::InstanceView>| -> Vec<_> {
        v.into_iter().filter(|i| i.run == 0).collect()
    };
    assert!(
        backfilled(c.instances(hourly).await).is_empty(),
        "a dry run creates nothing"
    );

    let printed = cli(&c, &args);
    let ran = wait_for("both backfill runs", WAIT, || async {
        let v = backfilled(c.succeeded(hourly).await);
        (v.len() == 2).then_some(v)
    })
    .await;
    for i in &ran {
        assert!(
            printed.contains(&format!("{} instance={}", rfc(i.trigger_time), i.id.0)),
            "{printed}"
        );
        let lines = wait_for("the run's key", WAIT, || async {
            let lines = keyed_lines(&c, i.id).await;
            (!lines.is_empty()).then_some(lines)
        })
        .await;
        assert_eq!(
            lines,
            [format!(
                "key=instance-{} attempt=1 time={}",
                i.id.0, i.trigger_time
            )]
        );
    }
    let mut times: Vec<i64> = ran.iter().map(|i| i.trigger_time).collect();
    times.sort_unstable();
    assert_eq!(times, [hour - 3 * HOUR, hour - 2 * HOUR]);
}
