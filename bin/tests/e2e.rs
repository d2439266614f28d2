//! End to end: the real `ferrojob-server` and `ferrojob-worker` binaries on 127.0.0.1 with
//! ephemeral ports and temp data dirs, driven through the Rust client over the OpenAPI.
//!
//! Real time here, with short periods: every wait polls a condition with a generous deadline
//! (never a fixed sleep that a slow machine could outrun), and nothing asserts a duration.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrojob::alarm::channel::ChannelKind;
use ferrojob::alarm::{AlarmRules, FailureRule};
use ferrojob::api::{AlarmView, ChannelBody, PageQuery, RunJob};
use ferrojob::client::{Client, ClientError};
use ferrojob::ids::{InstanceId, JobId};
use ferrojob::model::{ExecuteType, InstanceStatus};
use ferrojob::time_expression::TimeExpressionType;

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_time_expression_type_fires_on_real_workers() {
    let c = Cluster::start(2, None).await;
    let cron = c
        .job(body(
            "cron",
            TimeExpressionType::Cron,
            "* * * * * ?",
            "noop",
            "",
        ))
        .await;
    let rate = c
        .job(body(
            "rate",
            TimeExpressionType::FixedRate,
            "300",
            "noop",
            "",
        ))
        .await;
    let delay = c
        .job(body(
            "delay",
            TimeExpressionType::FixedDelay,
            "300",
            "sleep",
            "100",
        ))
        .await;
    let daily = c
        .job(body(
            "daily",
            TimeExpressionType::DailyTimeInterval,
            r#"{"interval": 1, "unit": "SECONDS"}"#,
            "noop",
            "",
        ))
        .await;
    let api = c
        .job(body(
            "api",
            TimeExpressionType::Api,
            "",
            "shell",
            r#"echo "hi from $FERROJOB_INSTANCE_PARAMS""#,
        ))
        .await;
    let workflow = c
        .job(body("wf", TimeExpressionType::Workflow, "", "noop", ""))
        .await;
    let now_run = c
        .client
        .run_job(
            APP,
            api,
            &RunJob {
                params: "now".into(),
                delay_ms: 0,
            },
        )
        .await
        .unwrap();
    let later_run = c
        .client
        .run_job(
            APP,
            api,
            &RunJob {
                params: "later".into(),
                delay_ms: 300,
            },
        )
        .await
        .unwrap();
    for (name, job, n) in [
        ("cron", cron, 2),
        ("rate", rate, 3),
        ("delay", delay, 3),
        ("daily", daily, 2),
        ("api", api, 2),
    ] {
        wait_for(name, Duration::from_secs(20), || async {
            (c.succeeded(job).await.len() >= n).then_some(())
        })
        .await;
    }
    // FIXED_DELAY counts from the reported completion: each run is triggered at least the
    // delay after the previous one finished.
    let runs = c.succeeded(delay).await;
    for pair in runs.windows(2) {
        let finished = pair[0].finished_time.unwrap();
        assert!(
            pair[1].trigger_time >= finished + 300,
            "fixed delay: run {} triggered {} ms after the previous finished",
            pair[1].id,
            pair[1].trigger_time - finished
        );
    }
    // FIXED_RATE: every run is its own instance with its own run number.
    let rate_runs = c.succeeded(rate).await;
    let mut numbers: Vec<u64> = rate_runs.iter().map(|i| i.run).collect();
    numbers.dedup();
    assert_eq!(
        numbers.len(),
        rate_runs.len(),
        "run counters repeat: {numbers:?}"
    );
    // API runs carry their params (for `shell`, the variable FERROJOB_INSTANCE_PARAMS of the
    // job's command), and the shell processor's output is in the instance log.
    let now_inst = c
        .client
        .get_instance(APP, now_run.instance_id)
        .await
        .unwrap();
    assert_eq!(now_inst.params, "now");
    let later_inst = c
        .client
        .get_instance(APP, later_run.instance_id)
        .await
        .unwrap();
    assert_eq!(later_inst.status, InstanceStatus::Succeed);
    assert!(later_inst.trigger_time >= now_inst.trigger_time);
    let log = wait_for("shell log", Duration::from_secs(10), || async {
        let log = c
            .client
            .instance_log(APP, now_run.instance_id, Default::default())
            .await
            .ok()?;
        log.lines
            .iter()
            .any(|l| l.content == "hi from now")
            .then_some(log)
    })
    .await;
    assert!(!log.lines.is_empty());
    // A WORKFLOW job never fires on its own.
    assert!(
        c.instances(workflow).await.is_empty(),
        "{}",
        c.diagnostics()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_reaches_every_worker() {
    let c = Cluster::start(3, None).await;
    let mut b = body(
        "bcast",
        TimeExpressionType::Api,
        "",
        "shell",
        "echo broadcast-ran",
    );
    b.execute_type = ExecuteType::Broadcast;
    let job = c.job(b).await;
    let run = c
        .client
        .run_job(APP, job, &RunJob::default())
        .await
        .unwrap();
    let inst = wait_for("broadcast instance", Duration::from_secs(20), || async {
        let i = c.client.get_instance(APP, run.instance_id).await.ok()?;
        i.status.is_final().then_some(i)
    })
    .await;
    assert_eq!(
        inst.status,
        InstanceStatus::Succeed,
        "{inst:?}\n{}",
        c.diagnostics()
    );
    let log = wait_for("three log lines", Duration::from_secs(10), || async {
        let log = c
            .client
            .instance_log(APP, run.instance_id, Default::default())
            .await
            .ok()?;
        let n = log
            .lines
            .iter()
            .filter(|l| l.content.contains("broadcast-ran"))
            .count();
        (n >= 3).then_some(n)
    })
    .await;
    assert_eq!(log, 3, "one run per worker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_run_is_retried_on_another_worker() {
    let mut c = Cluster::start(2, None).await;
    let mut b = body("long", TimeExpressionType::Api, "", "sleep", "2000");
    b.instance_retries = 2;
    let job = c.job(b).await;
    let run = c
        .client
        .run_job(APP, job, &RunJob::default())
        .await
        .unwrap();
    let first = wait_for("RUNNING", Duration::from_secs(20), || async {
        let i = c.client.get_instance(APP, run.instance_id).await.ok()?;
        (i.status == InstanceStatus::Running).then_some(i)
    })
    .await;
    let victim = first.worker.clone().unwrap();
    let idx = c
        .workers
        .iter()
        .position(|w| w.field("address") == victim)
        .expect("the instance runs on one of our workers");
    c.workers[idx].kill();
    let done = wait_for("retried to success", Duration::from_secs(30), || async {
        let i = c.client.get_instance(APP, run.instance_id).await.ok()?;
        i.status.is_final().then_some(i)
    })
    .await;
    assert_eq!(
        done.status,
        InstanceStatus::Succeed,
        "{done:?}\n{}",
        c.diagnostics()
    );
    assert_ne!(done.worker.as_deref(), Some(victim.as_str()));
    assert!(done.running_times >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_kill_9_and_restart_keeps_state_and_resumes_scheduling() {
    let transport = free_port();
    let mut c = Cluster::start(1, Some(transport)).await;
    let rate = c
        .job(body(
            "rate",
            TimeExpressionType::FixedRate,
            "200",
            "noop",
            "",
        ))
        .await;
    let api = c
        .job(body("api", TimeExpressionType::Api, "", "noop", ""))
        .await;
    wait_for("a few runs", Duration::from_secs(20), || async {
        (c.succeeded(rate).await.len() >= 3).then_some(())
    })
    .await;
    // A delayed run acknowledged before the crash must run after it.
    let delayed = c
        .client
        .run_job(
            APP,
            api,
            &RunJob {
                params: "survives".into(),
                delay_ms: 1500,
            },
        )
        .await
        .unwrap();
    let before = c.succeeded(rate).await;
    let runs_before = c.client.get_job(APP, rate).await.unwrap().runs;
    c.server.kill();
    let server = start_server(c.dir.path(), Some(transport), "server2");
    c.http = server.field("http").parse().unwrap();
    c.server = server;
    c.client = Client::new(&format!("http://{}", c.http), TOKEN).unwrap();
    // Jobs and finished instances are intact.
    let job = c.client.get_job(APP, rate).await.unwrap();
    assert!(job.runs >= runs_before);
    for i in &before {
        let again = c.client.get_instance(APP, i.id).await.unwrap();
        assert_eq!(again.status, InstanceStatus::Succeed);
    }
    // The worker reconnects; scheduling resumes; the delayed run happens.
    c.wait_workers(1).await;
    wait_for(
        "new runs after restart",
        Duration::from_secs(30),
        || async {
            let j = c.client.get_job(APP, rate).await.ok()?;
            (j.runs >= runs_before + 3).then_some(())
        },
    )
    .await;
    let d = wait_for("delayed run", Duration::from_secs(30), || async {
        let i = c.client.get_instance(APP, delayed.instance_id).await.ok()?;
        i.status.is_final().then_some(i)
    })
    .await;
    assert_eq!(
        d.status,
        InstanceStatus::Succeed,
        "{d:?}\n{}",
        c.diagnostics()
    );
    assert_eq!(d.params, "survives");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_a_bad_secret_is_refused() {
    let mut c = Cluster::start(1, None).await;
    let bad = c.add_worker("wrong-secret", "bad");
    // Give the bad worker time for several attempts, while the good one keeps heartbeating.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let workers = c.client.list_workers(APP).await.unwrap();
    assert_eq!(workers.workers.len(), 1, "{workers:?}");
    assert_ne!(workers.workers[0].address, c.workers[bad].field("address"));
    assert!(
        c.workers[bad].is_running(),
        "a refused worker keeps retrying"
    );
    let log = c.server.stderr_text();
    assert!(
        log.contains(APP) && (log.contains("refused") || log.contains("auth")),
        "the server logs the refusal:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_both_ports_leaves_the_server_serving() {
    let c = Cluster::start(1, None).await;
    // Garbage on the transport port, and a connection that stays silent.
    for payload in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        &[0xff; 4096][..],
        b"FJOB\x01\x00\xff\xff",
    ] {
        if let Ok(mut s) = TcpStream::connect(c.transport) {
            let _ = s.write_all(payload);
        }
    }
    let _silent = TcpStream::connect(c.transport).unwrap();
    // Garbage and malformed requests on the HTTP port.
    if let Ok(mut s) = TcpStream::connect(c.http) {
        let _ = s.write_all(&[0u8; 1024]);
    }
    let http = ferrojob::https::HttpsRoots::public().client().unwrap();
    let base = format!("http://{}", c.http);
    for (path, text) in [
        (format!("/v1/apps/{APP}/jobs"), "{not json"),
        (format!("/v1/apps/{APP}/jobs"), r#"{"name": 5}"#),
        (
            format!("/v1/apps/{APP}/jobs"),
            r#"{"name":"x","time_expression_type":"CRON","time_expression":"61 * * * * ?","processor":"noop"}"#,
        ),
        (
            "/v1/validate".to_owned(),
            r#"{"type":"CRON","expression":"nonsense"}"#,
        ),
    ] {
        let r = http
            .post(format!("{base}{path}"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(text)
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_client_error(),
            "{path} {text}: {}",
            r.status()
        );
        let v: serde_json::Value = r.json().await.unwrap();
        assert!(v["error"]["code"].is_string(), "{v}");
    }
    match c.client.get_instance(APP, InstanceId(999_999)).await {
        Err(ClientError::Api { status: 404, .. }) => {}
        other => panic!("unknown instance: {other:?}"),
    }
    // Still serving: health, metrics that saw the garbage, and a job runs to success.
    c.client.health().await.unwrap();
    let metrics = wait_for(
        "protocol errors counted",
        Duration::from_secs(10),
        || async {
            let m = c.client.metrics().await.ok()?;
            let errors: u64 = m
                .lines()
                .find_map(|l| l.strip_prefix("ferrojob_protocol_errors_total "))?
                .trim()
                .parse()
                .ok()?;
            (errors >= 1).then_some(m)
        },
    )
    .await;
    for name in [
        "ferrojob_instances{status=\"RUNNING\"}",
        "ferrojob_dispatch_latency_seconds_bucket",
        "ferrojob_fire_lateness_seconds_bucket",
        "ferrojob_store_commit_seconds_bucket",
        "ferrojob_connected_workers 1",
    ] {
        assert!(
            metrics.contains(name),
            "{name} missing from /metrics:\n{metrics}"
        );
    }
    let job = c
        .job(body("after", TimeExpressionType::Api, "", "noop", ""))
        .await;
    let run = c
        .client
        .run_job(APP, job, &RunJob::default())
        .await
        .unwrap();
    wait_for("run after garbage", Duration::from_secs(20), || async {
        let i = c.client.get_instance(APP, run.instance_id).await.ok()?;
        (i.status == InstanceStatus::Succeed).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_drives_jobs_instances_and_workers() {
    let c = Cluster::start(1, None).await;
    let id = cli(
        &c,
        &[
            "job",
            "create",
            "--app",
            APP,
            "--name",
            "cli-job",
            "--type",
            "api",
            "--processor",
            "shell",
            "--params",
            "echo from-cli",
            "--timeout-ms",
            "5000",
        ],
    );
    let id: u64 = id.trim().parse().unwrap();
    assert!(cli(&c, &["job", "list", "--app", APP]).contains("cli-job"));
    let job: serde_json::Value =
        serde_json::from_str(&cli(&c, &["job", "get", "--app", APP, &id.to_string()])).unwrap();
    assert_eq!(job["timeout_ms"], 5000);
    let inst = cli(&c, &["job", "run", "--app", APP, &id.to_string()]);
    let inst: u64 = inst.trim().parse().unwrap();
    wait_for("cli run", Duration::from_secs(20), || async {
        let i = c.client.get_instance(APP, InstanceId(inst)).await.ok()?;
        (i.status == InstanceStatus::Succeed).then_some(())
    })
    .await;
    let got: serde_json::Value = serde_json::from_str(&cli(
        &c,
        &["instance", "get", "--app", APP, &inst.to_string()],
    ))
    .unwrap();
    assert_eq!(got["status"], "SUCCEED");
    assert!(cli(
        &c,
        &["instance", "list", "--app", APP, "--status", "succeed"]
    )
    .contains("SUCCEED"));
    let log = wait_for("cli log", Duration::from_secs(10), || async {
        let out = cli(&c, &["instance", "log", "--app", APP, &inst.to_string()]);
        out.contains("from-cli").then_some(out)
    })
    .await;
    assert!(log.contains("INFO") || log.contains("WARN"), "{log}");
    let workers = cli(&c, &["--json", "worker", "list", "--app", APP]);
    let workers: serde_json::Value = serde_json::from_str(&workers).unwrap();
    assert_eq!(workers["workers"].as_array().unwrap().len(), 1);
    assert!(cli(&c, &["job", "disable", "--app", APP, &id.to_string()]).contains("disabled"));
    assert!(cli(&c, &["job", "enable", "--app", APP, &id.to_string()]).contains("enabled"));
    cli(&c, &["job", "delete", "--app", APP, &id.to_string()]);
    match c.client.get_job(APP, JobId(id)).await {
        Err(ClientError::Api { status: 404, .. }) => {}
        other => panic!("deleted job: {other:?}"),
    }
    // A bad expression is refused with the field named, exit code 2.
    let out = Command::new(env!("CARGO_BIN_EXE_ferrojob"))
        .args(["--url", &format!("http://{}", c.http), "--token", TOKEN])
        .args([
            "job", "create", "--app", APP, "--name", "bad", "--type", "cron",
        ])
        .args(["--expr", "0 0 25 * * ?", "--processor", "noop"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("hours"));
}

/// `shell` runs only on a worker started with `--allow-processor shell`; a run's params reach
/// the job's command as a variable and never run as a command; the command does not see the
/// secret the worker was started with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_is_opt_in_and_its_children_get_neither_run_code_nor_the_secret() {
    use ferrojob::model::DispatchStrategy;

    let mut c = Cluster::start(0, None).await;
    c.add_worker_with(SECRET, "strict", &[]);
    c.add_worker_env(
        "shell",
        &["--allow-processor", "shell"],
        &[("FERROJOB_SECRET", SECRET)],
    );
    c.wait_workers(2).await;
    let witness = c.dir.path().join("ran");
    let on = |tag: &str, params: &str| {
        let mut b = body(
            &format!("on {tag}"),
            TimeExpressionType::Api,
            "",
            "shell",
            params,
        );
        b.dispatch_strategy = DispatchStrategy::Specify;
        b.designated_workers = vec![tag.to_string()];
        b
    };
    let run = |params: String| RunJob {
        params,
        delay_ms: 0,
    };
    let finished = |id: InstanceId| {
        let c = &c;
        async move {
            wait_for("a final status", Duration::from_secs(15), || async {
                let i = c.client.get_instance(APP, id).await.ok()?;
                i.status.is_final().then_some(i)
            })
            .await
        }
    };

    // The worker without the flag refuses shell.
    let strict = c
        .job(on("strict", &format!("touch {}", witness.display())))
        .await;
    let r = c
        .client
        .run_job(APP, strict, &run(String::new()))
        .await
        .unwrap();
    let i = finished(r.instance_id).await;
    assert_eq!(i.status, InstanceStatus::Failed, "{i:?}");
    let why = i.result.unwrap_or_default();
    assert!(
        why.contains("processor \"shell\" is disabled") && why.contains("--allow-processor shell"),
        "{why}"
    );

    // The allowed worker runs the job's command, with the run's params as a variable only.
    let printer = c
        .job(on(
            "shell",
            r#"env | cut -d= -f1 | sort | tr '\n' ' '; echo; printf 'params: %s\n' "$FERROJOB_INSTANCE_PARAMS""#,
        ))
        .await;
    let injected = format!("touch {}", witness.display());
    let r = c
        .client
        .run_job(APP, printer, &run(injected.clone()))
        .await
        .unwrap();
    let i = finished(r.instance_id).await;
    assert_eq!(i.status, InstanceStatus::Succeed, "{i:?}");
    let out = i.result.unwrap_or_default();
    let mut lines = out.lines();
    let names = lines.next().unwrap_or_default();
    assert_eq!(lines.next(), Some(format!("params: {injected}").as_str()));
    assert!(names.contains("FERROJOB_INSTANCE_ID"), "{names}");
    assert!(
        !names.contains("FERROJOB_SECRET"),
        "the secret reached the child: {names}"
    );
    assert!(
        !names.contains("RUST_LOG"),
        "the worker's environment reached the child: {names}"
    );
    assert!(!witness.exists(), "a run's params ran as a command");
}

/// Every instance of `job` ran alone: in id order, each was dispatched only after the
/// previous one finished.
fn ran_one_at_a_time(name: &str, runs: &[ferrojob::api::InstanceView]) {
    for pair in runs.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let (Some(finished), Some(started)) = (a.finished_time, b.actual_trigger_time) else {
            panic!("{name}: run {} or {} has no times: {a:?} {b:?}", a.id, b.id);
        };
        assert!(
            started >= finished,
            "{name}: run {} was dispatched before run {} finished",
            b.id,
            a.id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_runs_are_skipped_or_queued_on_a_real_worker() {
    use ferrojob::policy::OverlapPolicy;
    let c = Cluster::start(1, None).await;
    // Each run sleeps 500 ms and the jobs fire every 200 ms: most fires find the last run
    // still going.
    let job = |name: &str, policy: OverlapPolicy| {
        let mut b = body(name, TimeExpressionType::FixedRate, "200", "sleep", "500");
        b.max_instances = 1;
        b.overlap_policy = policy;
        b
    };
    let skip = c.job(job("skip", OverlapPolicy::Skip)).await;
    let queue = c.job(job("queue", OverlapPolicy::Queue)).await;
    wait_for("two runs of each job", Duration::from_secs(30), || async {
        (c.succeeded(skip).await.len() >= 2 && c.succeeded(queue).await.len() >= 2).then_some(())
    })
    .await;
    c.client.disable_job(APP, skip).await.unwrap();
    c.client.disable_job(APP, queue).await.unwrap();

    // SKIP: the fires that found the run going made no instance, and were counted.
    let skipped = c.client.get_job(APP, skip).await.unwrap().skipped_runs;
    assert!(skipped >= 1, "no fire was skipped\n{}", c.diagnostics());
    wait_for(
        "the skip job's last run",
        Duration::from_secs(30),
        || async {
            let all = c.instances(skip).await;
            all.iter().all(|i| i.status.is_final()).then_some(())
        },
    )
    .await;
    let mut runs = c.instances(skip).await;
    runs.sort_by_key(|i| i.id);
    assert!(
        runs.iter().all(|i| i.status == InstanceStatus::Succeed),
        "a skipped fire left an instance: {runs:?}"
    );
    ran_one_at_a_time("skip", &runs);

    // QUEUE: every fire made an instance; the queued ones run after the job is disabled,
    // one at a time and in their order of arrival, and none fails.
    assert_eq!(c.client.get_job(APP, queue).await.unwrap().skipped_runs, 0);
    let mut runs = wait_for("the queue to drain", Duration::from_secs(60), || async {
        let all = c.instances(queue).await;
        all.iter().all(|i| i.status.is_final()).then_some(all)
    })
    .await;
    runs.sort_by_key(|i| i.id);
    assert!(
        runs.len() > 2,
        "no run was queued: {runs:?}\n{}",
        c.diagnostics()
    );
    assert!(
        runs.iter().all(|i| i.status == InstanceStatus::Succeed),
        "a queued run did not succeed: {runs:?}"
    );
    ran_one_at_a_time("queue", &runs);
}

/// What [`Hook`] answers: 503, 200, or [`HOLD`].
const HOLD: u16 = 0;

/// A webhook alarm receiver on 127.0.0.1: records the alarm id of every POST with what it
/// answered, by `mode` at the request's arrival: that status, or nothing at all ([`HOLD`]:
/// the request stays unanswered until the client goes away).
struct Hook {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<(String, u16)>>>,
    mode: Arc<AtomicU16>,
}

impl Hook {
    async fn start(mode: u16) -> Hook {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let got: Arc<Mutex<Vec<(String, u16)>>> = Arc::default();
        let mode = Arc::new(AtomicU16::new(mode));
        let (g, m) = (Arc::clone(&got), Arc::clone(&mode));
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(Hook::serve(conn, Arc::clone(&g), Arc::clone(&m)));
            }
        });
        Hook { addr, got, mode }
    }

    async fn serve(
        mut conn: tokio::net::TcpStream,
        got: Arc<Mutex<Vec<(String, u16)>>>,
        mode: Arc<AtomicU16>,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let header = |name: &str| {
            head.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                .map(|v| v.trim().to_owned())
        };
        let id = header("x-ferrojob-alarm-id").unwrap_or_default();
        let length: usize = header("content-length").map_or(0, |v| v.parse().unwrap());
        while buf.len() < head_end + length {
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let answer = mode.load(Ordering::SeqCst);
        got.lock().unwrap().push((id, answer));
        if answer == HOLD {
            // Until the server goes away.
            while matches!(conn.read(&mut chunk).await, Ok(n) if n > 0) {}
            return;
        }
        let reason = if answer == 200 { "OK" } else { "Unavailable" };
        let response =
            format!("HTTP/1.1 {answer} {reason}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        let _ = conn.write_all(response.as_bytes()).await;
        let _ = conn.shutdown().await;
    }

    fn got(&self) -> Vec<(String, u16)> {
        self.got.lock().unwrap().clone()
    }

    /// How many requests for alarm `id` were answered `status`.
    fn answered(&self, id: &str, status: u16) -> usize {
        self.got()
            .iter()
            .filter(|(i, s)| i == id && *s == status)
            .count()
    }
}

async fn alarms(c: &Cluster) -> Vec<AlarmView> {
    c.client
        .list_alarms(APP, PageQuery::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

/// A `kill -9` of the server while an alarm's delivery is under way (the receiver holds the
/// request, unanswered): after a restart on the same data dir the alarm is still pending with
/// no delivery recorded, and once the receiver accepts it is delivered with the same id, once,
/// and no second alarm is raised for the same failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_survives_a_server_kill_9_mid_delivery_and_is_delivered_once() {
    let transport = free_port();
    let mut c = Cluster::start(1, Some(transport)).await;
    let hook = Hook::start(503).await;
    c.client
        .put_channel(
            APP,
            "ops",
            &ChannelBody {
                kind: ChannelKind::Webhook,
                url: format!("http://{}/hook", hook.addr),
                secret: None,
            },
        )
        .await
        .unwrap();
    let mut failing = body("failing", TimeExpressionType::Api, "", "shell", "exit 3");
    failing.alarm = AlarmRules {
        failures: Some(FailureRule {
            threshold: 1,
            window_ms: 0,
            silence_ms: 0,
        }),
        channels: vec!["ops".into()],
        ..AlarmRules::default()
    };
    let job = c.job(failing).await;
    let run = RunJob {
        params: String::new(),
        delay_ms: 0,
    };
    let instance = c.client.run_job(APP, job, &run).await.unwrap().instance_id;
    let failed = wait_for("the run fails", Duration::from_secs(30), || async {
        let i = c.client.get_instance(APP, instance).await.ok()?;
        i.status.is_final().then_some(i.status)
    })
    .await;
    assert_eq!(failed, InstanceStatus::Failed, "{}", c.diagnostics());
    let alarm_id = format!("job-{}-failures-{}", job.0, instance.0);

    // The receiver refuses the first attempt (recorded), then holds the next one open.
    wait_for(
        "a refused attempt, recorded",
        Duration::from_secs(30),
        || async {
            alarms(&c)
                .await
                .first()
                .is_some_and(|a| a.status == "PENDING" && a.attempt_count >= 1)
                .then_some(())
        },
    )
    .await;
    hook.mode.store(HOLD, Ordering::SeqCst);
    wait_for("an attempt in flight", Duration::from_secs(30), || async {
        (hook.answered(&alarm_id, HOLD) == 1).then_some(())
    })
    .await;
    let refused_before = hook.answered(&alarm_id, 503);
    assert!(refused_before >= 1);

    // SIGKILL while the receiver holds the request: its answer is never recorded.
    c.server.kill();
    assert!(!c.server.is_running());
    hook.mode.store(503, Ordering::SeqCst);
    let server = start_server(c.dir.path(), Some(transport), "server2");
    c.http = server.field("http").parse().unwrap();
    c.server = server;
    c.client = Client::new(&format!("http://{}", c.http), TOKEN).unwrap();

    // Still pending, nothing acknowledged; the attempt under way at the kill is not counted.
    let after = alarms(&c).await;
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0].id, alarm_id);
    assert_eq!(after[0].status, "PENDING", "{after:?}");
    assert!(after[0].delivered_to.is_empty(), "{after:?}");
    assert!(
        after[0].attempt_count as usize >= refused_before,
        "{after:?}"
    );
    assert!(after[0].attempts.iter().all(|a| !a.ok), "{after:?}");

    hook.mode.store(200, Ordering::SeqCst);
    let delivered = wait_for(
        "delivered after the restart",
        Duration::from_secs(60),
        || async {
            let a = alarms(&c).await;
            a.first()
                .is_some_and(|a| a.status == "DELIVERED")
                .then_some(a)
        },
    )
    .await;
    assert_eq!(
        delivered.len(),
        1,
        "one alarm, not a second one: {delivered:?}"
    );
    assert_eq!(delivered[0].id, alarm_id);
    assert_eq!(delivered[0].delivered_to, ["ops"]);
    // Every request before and after the crash carried the same id.
    let got = hook.got();
    assert!(got.iter().all(|(id, _)| *id == alarm_id), "{got:?}");
    assert_eq!(hook.answered(&alarm_id, 200), 1, "{got:?}");

    // A later failure is a new alarm, delivered after the first one left the outbox: once
    // it is delivered, the delivery task has run past the first one, which was not sent again.
    c.wait_workers(1).await;
    let second = c.client.run_job(APP, job, &run).await.unwrap().instance_id;
    let second_id = format!("job-{}-failures-{}", job.0, second.0);
    let both = wait_for(
        "the second alarm delivered",
        Duration::from_secs(60),
        || async {
            let a = alarms(&c).await;
            (a.len() == 2 && a.iter().all(|a| a.status == "DELIVERED")).then_some(a)
        },
    )
    .await;
    let mut ids: Vec<&str> = both.iter().map(|a| a.id.as_str()).collect();
    ids.sort_unstable();
    let mut want = [alarm_id.as_str(), second_id.as_str()];
    want.sort_unstable();
    assert_eq!(ids, want);
    assert_eq!(hook.answered(&alarm_id, 200), 1, "{:?}", hook.got());
    assert_eq!(hook.answered(&second_id, 200), 1, "{:?}", hook.got());

    // The CLI shows the same: two alarms, each delivered.
    let out = Command::new(env!("CARGO_BIN_EXE_ferrojob"))
        .args(["--url", &format!("http://{}", c.http), "--token", TOKEN])
        .args(["alarm", "list", "--app", APP])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let line = |id: &str| {
        text.lines()
            .filter(|l| l.contains(&format!(" {id} ")))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let first = line(&alarm_id);
    assert_eq!(first.len(), 1, "{text}");
    assert!(first[0].contains(" DELIVERED "), "{text}");
    assert_eq!(line(&second_id).len(), 1, "{text}");
}
