//! The `ferrojob` binary end to end: real processes, real arguments, real output.

use std::process::{Command, Output};

fn ferrojob(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferrojob"))
        .args(args)
        .output()
        .expect("run ferrojob")
}

fn stdout_lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// One `ferrojob validate` call and the lines it must print.
fn check(args: &[&str], expected: &[&str]) {
    let mut all = vec!["validate"];
    all.extend_from_slice(args);
    let out = ferrojob(&all);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout_lines(&out), expected, "{args:?}");
}

#[test]
fn validate_prints_quartz_trigger_times_in_the_jobs_zone() {
    // The README's example: third Friday of every month, 10:15 in Shanghai.
    check(
        &[
            "--type",
            "cron",
            "--expr",
            "0 15 10 ? * 6#3",
            "--tz",
            "Asia/Shanghai",
            "--after",
            "2026-01-01T00:00:00Z",
            "--count",
            "5",
        ],
        &[
            "2026-01-16T10:15:00+08:00",
            "2026-02-20T10:15:00+08:00",
            "2026-03-20T10:15:00+08:00",
            "2026-04-17T10:15:00+08:00",
            "2026-05-15T10:15:00+08:00",
        ],
    );
    // Last weekday of the month, New York, across the spring DST change.
    check(
        &[
            "--type",
            "cron",
            "--expr",
            "0 0 12 LW * ?",
            "--tz",
            "America/New_York",
            "--after",
            "2026-01-01T00:00:00Z",
            "--count",
            "3",
        ],
        &[
            "2026-01-30T12:00:00-05:00",
            "2026-02-27T12:00:00-05:00",
            "2026-03-31T12:00:00-04:00",
        ],
    );
    // A daily 02:30 in Berlin: the spring-forward gap fires once at 03:00, no day skipped.
    check(
        &[
            "--type",
            "cron",
            "--expr",
            "0 30 2 * * ?",
            "--tz",
            "Europe/Berlin",
            "--after",
            "2026-03-28T00:00:00Z",
            "--count",
            "3",
        ],
        &[
            "2026-03-28T02:30:00+01:00",
            "2026-03-29T03:00:00+02:00",
            "2026-03-30T02:30:00+02:00",
        ],
    );
    // Strictly after `--after`, even when it is itself a trigger time.
    check(
        &[
            "--type",
            "cron",
            "--expr",
            "0 0 0 * * ?",
            "--after",
            "2026-01-01T00:00:00Z",
            "--count",
            "1",
        ],
        &["2026-01-02T00:00:00Z"],
    );
}

#[test]
fn validate_marks_the_trigger_times_excluded_dates_skip() {
    // Daily at 10:00 in Shanghai; the 2nd and the 4th to 5th excluded there.
    check(
        &[
            "--type",
            "cron",
            "--expr",
            "0 0 10 * * ?",
            "--tz",
            "Asia/Shanghai",
            "--after",
            "2026-01-01T00:00:00Z",
            "--count",
            "3",
            "--exclude",
            "2026-01-02",
            "--exclude",
            "2026-01-04..2026-01-05",
        ],
        &[
            "2026-01-01T10:00:00+08:00",
            "2026-01-02T10:00:00+08:00 skipped (excluded)",
            "2026-01-03T10:00:00+08:00",
            "2026-01-04T10:00:00+08:00 skipped (excluded)",
            "2026-01-05T10:00:00+08:00 skipped (excluded)",
            "2026-01-06T10:00:00+08:00",
        ],
    );
    // A bad date is refused, naming it.
    let out = ferrojob(&[
        "validate",
        "--type",
        "cron",
        "--expr",
        "0 0 10 * * ?",
        "--exclude",
        "2026-02-30",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("2026-02-30"));
}

#[test]
fn validate_other_expression_types() {
    check(
        &[
            "--type",
            "fixed-rate",
            "--expr",
            "1500",
            "--after",
            "2026-01-01T00:00:00Z",
            "--count",
            "3",
        ],
        &[
            "2026-01-01T00:00:01.500Z",
            "2026-01-01T00:00:03Z",
            "2026-01-01T00:00:04.500Z",
        ],
    );
    check(
        &[
            "--type",
            "fixed-delay",
            "--expr",
            "60000",
            "--after",
            "2026-01-01T00:00:00Z",
            "--count",
            "2",
        ],
        &["2026-01-01T00:01:00Z", "2026-01-01T00:02:00Z"],
    );
    check(
        &[
            "--type",
            "daily-time-interval",
            "--expr",
            r#"{"interval":90,"unit":"MINUTES","startTimeOfDay":"09:00:00","endTimeOfDay":"12:00:00","daysOfWeek":[2]}"#,
            "--tz",
            "Asia/Shanghai",
            "--after",
            "2026-01-01T00:00:00Z",
            "--count",
            "4",
        ],
        &[
            "2026-01-05T09:00:00+08:00",
            "2026-01-05T10:30:00+08:00",
            "2026-01-05T12:00:00+08:00",
            "2026-01-12T09:00:00+08:00",
        ],
    );
}

#[test]
fn invalid_expressions_exit_non_zero_naming_the_field() {
    for (args, needle) in [
        (
            vec!["--type", "cron", "--expr", "0 15 10 ? * 8#3"],
            "day-of-week",
        ),
        (vec!["--type", "cron", "--expr", "0 61 * * * ?"], "minutes"),
        (
            vec!["--type", "cron", "--expr", "* * * * *"],
            "6 or 7 fields",
        ),
        (
            vec!["--type", "cron", "--expr", "0 0 0 ? * 2#6"],
            "day-of-week",
        ),
        (vec!["--type", "cron", "--expr", "0 0 0 L * 2"], "day"),
        (
            vec![
                "--type",
                "cron",
                "--expr",
                "0 0 2 * * ?",
                "--tz",
                "Mars/Olympus",
            ],
            "time zone",
        ),
        (vec!["--type", "fixed-rate", "--expr", "0"], "at least 1"),
        (
            vec!["--type", "fixed-delay", "--expr", "soon"],
            "FIXED_DELAY",
        ),
        (vec!["--type", "sometimes", "--expr", "1"], "sometimes"),
        (
            vec![
                "--type",
                "cron",
                "--expr",
                "0 0 0 * * ?",
                "--after",
                "yesterday",
            ],
            "RFC 3339",
        ),
    ] {
        let mut all = vec!["validate"];
        all.extend_from_slice(&args);
        let out = ferrojob(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(needle),
            "{args:?}: `{needle}` not in: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn embedded_demo_runs_every_kind_of_job_and_stops_cleanly() {
    // Real time, kept short: the API job is triggered at 3 s with a 250 ms delay.
    let out = ferrojob(&["demo", "--embedded", "--duration-secs", "4"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for job in [
        "cron */2s",
        "fixed-rate 750ms",
        "fixed-delay 1s",
        "api +250ms",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(job) && l.contains("SUCCEED")),
            "no successful run of {job}:\n{stdout}"
        );
    }
    assert!(stdout.contains("late p99"), "no summary:\n{stdout}");
}

#[test]
fn server_demo_runs_every_sample_on_two_workers_and_resumes_from_its_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let args = [
        "demo",
        "--data-dir",
        data,
        "--http",
        "127.0.0.1:0",
        "--listen",
        "127.0.0.1:0",
        "--duration-secs",
    ];
    let mut first = args.to_vec();
    first.push("6");
    let out = ferrojob(&first);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("  console   http://127.0.0.1:")
                && l.contains("sign in: app demo, token ")),
        "no console line:\n{stdout}"
    );
    for job in [
        "cron */2s",
        "fixed-rate 1s",
        "fixed-delay 1.5s",
        "daily-interval 3s",
        "broadcast every 4s",
        "api (run by the demo)",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(job) && l.contains("SUCCEED")),
            "no successful run of {job}:\n{stdout}\n{stderr}"
        );
    }
    assert!(!stdout
        .lines()
        .any(|l| l.contains("workflow node") && l.contains('#')));
    assert_eq!(stdout.matches("  worker    ").count(), 2, "{stdout}");
    assert!(stdout.contains("jobs      12"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("  alarms    ") && l.contains("in the history")),
        "{stdout}"
    );
    // The MAP_REDUCE sample is run at start, and the workflow is either created and run
    // (a server with workflows) or reported unavailable without stopping the demo.
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("map-reduce sum_mr") && l.contains('#')),
        "{stdout}"
    );
    assert!(
        stdout.lines().any(|l| l.starts_with("  workflow  ")
            && (l.contains("decide left or right") || l.contains("unavailable"))),
        "{stdout}"
    );
    assert!(dir.path().join("data/admin.token").exists());
    let first_workflow = stdout
        .lines()
        .find(|l| l.starts_with("  workflow  ") && l.contains("decide left or right"))
        .map(str::to_owned);
    // Second run: same app, jobs and workflow from the data dir, not twelve more jobs.
    let mut again = args.to_vec();
    again.push("1");
    let out = ferrojob(&again);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("jobs      12"), "{stdout}");
    // The workflow is found by name, not created again: the same id both times.
    let workflow_line = |out: &str| {
        out.lines()
            .find(|l| l.starts_with("  workflow  ") && l.contains("decide left or right"))
            .map(str::to_owned)
    };
    assert_eq!(workflow_line(&stdout), first_workflow, "{stdout}");
}

#[test]
fn bench_dispatch_prints_one_json_row_with_every_instance_succeeded() {
    let out = ferrojob(&[
        "bench",
        "dispatch",
        "--instances",
        "300",
        "--workers",
        "2",
        "--json",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(row["function"], "dispatch");
    assert_eq!(row["instances"], 300);
    assert_eq!(row["failed"], 0);
    assert_eq!(row["store"], "log");
    for key in [
        "durable_instances_per_s",
        "dispatch_p50_us",
        "dispatch_p99_us",
    ] {
        assert!(row[key].is_number(), "{key} in {row}");
    }
    // --connect needs --transport: a usage error, not a panic.
    let out = ferrojob(&["bench", "dispatch", "--connect"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn bench_soak_for_zero_minutes_samples_the_server_once_and_writes_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("soak.json");
    let out = ferrojob(&[
        "bench",
        "soak",
        "--minutes",
        "0",
        "--report",
        report.to_str().unwrap(),
        "--json",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(row["function"], "soak");
    assert_eq!(row["param"], "0min/0s");
    // The server process was read: it has a resident set, open files and a store with keys
    // (the app, the jobs and the workflow at least).
    for key in ["rss_bytes", "open_fds", "store_keys", "store_disk_bytes"] {
        assert!(row[key].as_u64().unwrap() > 0, "{key} in {row}");
    }
    let rows: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
    assert_eq!(rows[0]["param"], "0min/0s");
}

#[test]
fn bench_flood_with_a_small_attack_measures_quiet_and_flooded_and_keeps_the_workers() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("flood.json");
    let out = ferrojob(&[
        "bench",
        "flood",
        "--rounds",
        "1",
        "--instances",
        "200",
        "--idle-connections",
        "20",
        "--big-frame-connections",
        "4",
        "--bad-handshakes",
        "1",
        "--slow-readers",
        "2",
        "--big-headers",
        "1",
        "--warmup-ms",
        "300",
        "--cooldown-ms",
        "0",
        "--report",
        report.to_str().unwrap(),
        "--json",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(summary["function"], "flood_summary");
    assert_eq!(summary["worker_reconnects"], 0, "{summary}");
    assert_eq!(summary["connected_workers_at_end"], 2, "{summary}");
    assert_eq!(summary["failed_instances"], 0, "{summary}");
    assert!(summary["server_peak_rss_bytes"].as_u64().unwrap() > 0);
    let rows: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let functions: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["function"].as_str().unwrap())
        .collect();
    assert_eq!(
        functions,
        ["control", "flood", "flood_summary", "quiet"],
        "{rows}"
    );
    let row = |function: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["function"] == function)
            .unwrap()
    };
    // The control ran a burner, not the attacker, and its ratio is in the summary.
    assert!(row("control").get("attack").is_none(), "{rows}");
    assert_eq!(row("control")["attacker_cpu_ms"], 0, "{rows}");
    assert_eq!(
        summary["control_to_quiet_ratios"].as_array().map(Vec::len),
        Some(1),
        "{summary}"
    );
    // The attacker ran and reported: it opened worker-port connections and no wrong-secret
    // handshake got through.
    let flood = &row("flood")["attack"];
    assert!(
        flood["worker_port_connections"].as_u64().unwrap() > 0,
        "{flood}"
    );
    assert_eq!(flood["bad_handshakes_accepted"], 0, "{flood}");
}

// ---------------------------------------------------------------------------------------------
// `ferrojob workflow ...`

mod common;

/// Runs the CLI against `c` with the admin token; answers (exit code, stdout, stderr).
fn workflow_cli(c: &common::Cluster, args: &[&str]) -> (Option<i32>, String, String) {
    let url = format!("http://{}", c.http);
    let out = Command::new(env!("CARGO_BIN_EXE_ferrojob"))
        .args(["--url", &url, "--token", common::TOKEN])
        .args(args)
        .output()
        .expect("run ferrojob");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Like [`workflow_cli`], but the command must succeed; answers stdout.
fn workflow_ok(c: &common::Cluster, args: &[&str]) -> String {
    let (code, stdout, stderr) = workflow_cli(c, args);
    assert_eq!(
        code,
        Some(0),
        "ferrojob {args:?}: {stderr}\n{}",
        c.diagnostics()
    );
    stdout
}

#[test]
fn workflow_commands_refuse_bad_local_input_before_any_request() {
    // Nothing listens on this URL: each of these fails on its input first (exit code 2).
    let base = ["--url", "http://127.0.0.1:9", "--token", "t", "workflow"];
    for (args, needle) in [
        (
            &["create", "--app", "a", "--body", "{not json"][..],
            "not a valid workflow definition",
        ),
        (&["create", "--app", "a"][..], "--file PATH or --body JSON"),
        (
            &["create", "--app", "a", "--file", "/nonexistent/def.json"][..],
            "/nonexistent/def.json",
        ),
        (
            &["run", "--app", "a", "1", "--init-params", "[1]"][..],
            "JSON object",
        ),
        (
            &["run", "--app", "a", "1", "--init-params", "{"][..],
            "not JSON",
        ),
    ] {
        let mut all = base.to_vec();
        all.extend_from_slice(args);
        let out = ferrojob(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    // A server that is not there: a transport error, exit code 2, no panic.
    let mut all = base.to_vec();
    all.extend_from_slice(&["instance", "--app", "a", "1"]);
    let out = ferrojob(&all);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP request failed"));
    // Every subcommand has its help.
    for sub in [
        "create",
        "list",
        "get",
        "update",
        "delete",
        "run",
        "instances",
        "instance",
        "stop",
        "retry",
        "delete-instance",
        "mark-success",
    ] {
        let out = ferrojob(&["workflow", sub, "--help"]);
        assert!(out.status.success(), "workflow {sub} --help");
    }
}

/// Every `ferrojob workflow` command against a real server and worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_drives_workflows_end_to_end() {
    use common::{body, wait_for, Cluster, APP};
    use ferrojob::api::WorkflowInstanceStatus;
    use ferrojob::ids::{JobId, WorkflowInstanceId};
    use ferrojob::time_expression::TimeExpressionType::Workflow;
    use std::time::Duration;

    let c = Cluster::start(1, None).await;
    let decide = c
        .job(body(
            "decide",
            Workflow,
            "",
            "shell",
            r#"echo '{"go":"left"}'"#,
        ))
        .await;
    let left = c
        .job(body("left", Workflow, "", "shell", "echo went left"))
        .await;
    let right = c
        .job(body("right", Workflow, "", "shell", "echo went right"))
        .await;
    let failing = c
        .job(body("failing", Workflow, "", "shell", "exit 3"))
        .await;
    let slow = c.job(body("slow", Workflow, "", "sleep", "60000")).await;
    let def = serde_json::json!({
        "name": "cli-branchy",
        "time_expression_type": "API",
        "nodes": [
            {"id": 1, "job_id": decide, "params": r#"echo '{"go":"left"}'"#},
            {"id": 2, "type": "DECISION", "expression": r#"go == "left" && tries < 3"#},
            {"id": 3, "job_id": left, "params": "echo went left"},
            {"id": 4, "job_id": right, "params": "echo went right"}
        ],
        "edges": [
            {"from": 1, "to": 2},
            {"from": 2, "to": 3, "property": "true"},
            {"from": 2, "to": 4, "property": "false"}
        ]
    });
    let file = c.dir.path().join("def.json");
    std::fs::write(&file, def.to_string()).unwrap();
    let file = file.to_str().unwrap();

    let id = workflow_ok(&c, &["workflow", "create", "--app", APP, "--file", file]);
    let id = id.trim().to_owned();
    assert!(workflow_ok(&c, &["workflow", "list", "--app", APP]).contains("cli-branchy"));
    let got: serde_json::Value =
        serde_json::from_str(&workflow_ok(&c, &["workflow", "get", "--app", APP, &id])).unwrap();
    assert_eq!(got["nodes"].as_array().unwrap().len(), 4);

    // A cycle is refused with the node named.
    let mut cyclic = def.clone();
    cyclic["edges"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"from": 3, "to": 1}));
    let (code, _, stderr) = workflow_cli(
        &c,
        &[
            "workflow",
            "create",
            "--app",
            APP,
            "--body",
            &cyclic.to_string(),
        ],
    );
    assert_eq!(code, Some(2));
    assert!(stderr.contains("cycle"), "{stderr}");

    // Run: the decision goes left; the node table shows it.
    let wi = workflow_ok(
        &c,
        &[
            "workflow",
            "run",
            "--app",
            APP,
            &id,
            "--init-params",
            r#"{"tries":1}"#,
        ],
    );
    let wi: u64 = wi.trim().parse().unwrap();
    wait_for("the workflow instance", Duration::from_secs(20), || async {
        let v = c
            .client
            .get_workflow_instance(APP, WorkflowInstanceId(wi))
            .await
            .ok()?;
        (v.status == WorkflowInstanceStatus::Succeed).then_some(())
    })
    .await;
    let table = workflow_ok(&c, &["workflow", "instance", "--app", APP, &wi.to_string()]);
    assert!(table.contains("SUCCEED"), "{table}");
    assert!(table.contains("SKIPPED"), "{table}");
    assert!(table.contains("DECISION"), "{table}");
    assert!(table.contains("went left"), "{table}");
    assert!(table.contains(r#""tries":1"#), "{table}");
    let list = workflow_ok(
        &c,
        &["workflow", "instances", "--app", APP, "--workflow", &id],
    );
    assert!(list.contains(&wi.to_string()), "{list}");
    let jobs = workflow_ok(&c, &["instance", "list", "--app", APP]);
    assert!(jobs.contains(&format!("wf={wi}")), "{jobs}");

    // Update through --body, then a succeeded instance cannot be retried (409, exit 2).
    let mut renamed = def.clone();
    renamed["name"] = "cli-renamed".into();
    let out = workflow_ok(
        &c,
        &[
            "workflow",
            "update",
            "--app",
            APP,
            &id,
            "--body",
            &renamed.to_string(),
        ],
    );
    assert!(out.contains("cli-renamed"), "{out}");
    let (code, _, _) = workflow_cli(&c, &["workflow", "retry", "--app", APP, &wi.to_string()]);
    assert_eq!(code, Some(2));

    // A failing node: retry re-runs it, mark-success passes it.
    let one = |job: JobId, params: &str| {
        serde_json::json!({"name": format!("one-{}", job.get()), "time_expression_type": "API",
                           "nodes": [{"id": 1, "job_id": job, "params": params}]})
        .to_string()
    };
    let fid = workflow_ok(
        &c,
        &[
            "workflow",
            "create",
            "--app",
            APP,
            "--body",
            &one(failing, "exit 3"),
        ],
    );
    let fwi = workflow_ok(&c, &["workflow", "run", "--app", APP, fid.trim()]);
    let fwi = fwi.trim().to_owned();
    let failed = || async {
        let v = c
            .client
            .get_workflow_instance(APP, fwi.parse().ok()?)
            .await
            .ok()?;
        (v.status == WorkflowInstanceStatus::Failed).then_some(())
    };
    wait_for(
        "a failed workflow instance",
        Duration::from_secs(20),
        failed,
    )
    .await;
    workflow_ok(&c, &["workflow", "retry", "--app", APP, &fwi]);
    wait_for("a failed retry", Duration::from_secs(20), failed).await;
    let marked = workflow_ok(&c, &["workflow", "mark-success", "--app", APP, &fwi, "1"]);
    assert!(marked.contains("SUCCEED"), "{marked}");

    // Deleting: one finished node instance, then whole finished workflow instances.
    let fview = c
        .client
        .get_workflow_instance(APP, fwi.parse().unwrap())
        .await
        .unwrap();
    let fnode = fview.nodes[0].instance_id.unwrap().to_string();
    let out = workflow_ok(&c, &["instance", "delete", "--app", APP, &fnode]);
    assert!(out.contains("deleted"), "{out}");
    let (code, _, stderr) = workflow_cli(&c, &["instance", "get", "--app", APP, &fnode]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("404"), "{stderr}");
    for w in [wi.to_string(), fwi.clone()] {
        workflow_ok(&c, &["workflow", "delete-instance", "--app", APP, &w]);
        let (code, _, stderr) = workflow_cli(&c, &["workflow", "instance", "--app", APP, &w]);
        assert_eq!(code, Some(2));
        assert!(stderr.contains("404"), "{stderr}");
    }

    // A slow node: stop.
    let sid = workflow_ok(
        &c,
        &[
            "workflow",
            "create",
            "--app",
            APP,
            "--body",
            &one(slow, "60000"),
        ],
    );
    let swi = workflow_ok(&c, &["workflow", "run", "--app", APP, sid.trim()]);
    let stopped = workflow_ok(&c, &["workflow", "stop", "--app", APP, swi.trim()]);
    assert!(stopped.contains("STOPPED"), "{stopped}");

    workflow_ok(&c, &["workflow", "delete", "--app", APP, sid.trim()]);
    let (code, _, stderr) = workflow_cli(&c, &["workflow", "get", "--app", APP, sid.trim()]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("404"), "{stderr}");
    let _ = right;
}

/// `import-powerjob` converts the engine's sample export offline: the jobs file on standard
/// output (TOML), notes and skipped jobs on standard error.
#[test]
fn import_powerjob_writes_a_jobs_file_and_lists_what_it_skipped() {
    let sample = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../engine/tests/data/powerjob_export.json"
    );
    let out = ferrojob(&["import-powerjob", "-f", sample, "--app", "billing"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("app = \"billing\"\n"), "{stdout}");
    assert_eq!(stdout.matches("[[jobs]]").count(), 3, "{stdout}");
    assert!(stdout.contains("\"daysOfWeek\":[2,3,4,5,6]"), "{stdout}");
    assert!(stderr.contains("skipped: \"reconcile\""), "{stderr}");
    assert!(stderr.contains("3 job(s) imported, 2 skipped"), "{stderr}");
}

/// A jobs file for one app is not applied to another, and an unknown extension is refused,
/// before any server is contacted.
#[test]
fn plan_refuses_a_file_for_another_app_or_of_unknown_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = dir.path().join("jobs.toml");
    std::fs::write(&toml, "app = \"billing\"\n").expect("write");
    let out = ferrojob(&[
        "plan",
        "-f",
        toml.to_str().expect("utf-8"),
        "--app",
        "other",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the file describes app \"billing\""));
    let yaml = dir.path().join("jobs.yaml");
    std::fs::write(&yaml, "").expect("write");
    let out = ferrojob(&[
        "plan",
        "-f",
        yaml.to_str().expect("utf-8"),
        "--app",
        "billing",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown format"));
}

// ---------------------------------------------------------------------------------------------
// Organising: labels, listing filters, copies.

/// The first column (the id) of each line of a human listing.
fn listed_ids(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter(|l| !l.starts_with("(more"))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[test]
fn organising_flags_refuse_bad_local_input_before_any_request() {
    let base = ["--url", "http://127.0.0.1:9", "--token", "t"];
    for (args, needle) in [
        (
            &[
                "instance",
                "list",
                "--app",
                "a",
                "--trigger-from",
                "yesterday",
            ][..],
            "--trigger-from \"yesterday\"",
        ),
        (
            &[
                "instance",
                "list",
                "--app",
                "a",
                "--finished-to",
                "2026-13-01T00:00:00Z",
            ][..],
            "--finished-to",
        ),
        (
            &["job", "list", "--app", "a", "--type", "SOMETIMES"][..],
            "--type SOMETIMES",
        ),
        (
            &["job", "list", "--app", "a", "--execute-type", "ALL"][..],
            "unknown execute type",
        ),
        (
            &["workflow", "list", "--app", "a", "--type", "NOPE"][..],
            "--type NOPE",
        ),
    ] {
        let mut all = base.to_vec();
        all.extend_from_slice(args);
        let out = ferrojob(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("HTTP request failed"),
            "{args:?}: {stderr}"
        );
    }
    let out = ferrojob(&["job", "list", "--enabled", "--disabled", "--app", "a"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "--enabled conflicts with --disabled"
    );
    for sub in [&["job", "copy"][..], &["workflow", "copy"][..]] {
        let mut all = sub.to_vec();
        all.push("--help");
        assert!(ferrojob(&all).status.success(), "{sub:?} --help");
    }
}

/// Tags, descriptions, filters and copies through the CLI against a real server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_tags_filters_and_copies() {
    use common::{Cluster, APP};

    let c = Cluster::start(0, None).await;
    let create = |name: &str, kind: &str, expr: &str, extra: &[&str]| {
        let mut args = vec![
            "job",
            "create",
            "--app",
            APP,
            "--name",
            name,
            "--type",
            kind,
            "--processor",
            "noop",
        ];
        if !expr.is_empty() {
            args.extend_from_slice(&["--expr", expr]);
        }
        args.extend_from_slice(extra);
        workflow_ok(&c, &args).trim().to_owned()
    };
    let export = create(
        "nightly export",
        "CRON",
        "0 0 2 * * ?",
        &[
            "--tags",
            "etl, team:data",
            "--description",
            "orders to the warehouse",
        ],
    );
    let orders = create(
        "orders",
        "FIXED_RATE",
        "60000",
        &["--tags", "etl", "--execute-type", "MAP"],
    );
    let adhoc = create("adhoc", "API", "", &["--disabled"]);
    let job: serde_json::Value = serde_json::from_str(&workflow_ok(
        &c,
        &["--json", "job", "get", "--app", APP, &export],
    ))
    .unwrap();
    assert_eq!(job["tags"], serde_json::json!(["etl", "team:data"]));
    assert_eq!(job["description"], "orders to the warehouse");

    let list = |extra: &[&str]| {
        let mut args = vec!["job", "list", "--app", APP];
        args.extend_from_slice(extra);
        listed_ids(&workflow_ok(&c, &args))
    };
    assert_eq!(
        list(&[]),
        [export.as_str(), orders.as_str(), adhoc.as_str()]
    );
    assert_eq!(list(&["--tag", "etl"]), [export.as_str(), orders.as_str()]);
    assert_eq!(list(&["--tag", "etl", "--limit", "1"]), [export.as_str()]);
    assert_eq!(list(&["--name", "ORDER"]), [orders.as_str()]);
    assert_eq!(list(&["--type", "cron"]), [export.as_str()]);
    assert_eq!(list(&["--execute-type", "map"]), [orders.as_str()]);
    assert_eq!(list(&["--disabled"]), [adhoc.as_str()]);
    assert_eq!(
        list(&["--enabled", "--tag", "team:data"]),
        [export.as_str()]
    );
    assert!(
        workflow_ok(&c, &["job", "list", "--app", APP, "--tag", "etl"])
            .contains("tags=etl,team:data")
    );

    // A disabled copy keeps the tags; `--tags ""` clears them.
    let copy = workflow_ok(
        &c,
        &[
            "job",
            "copy",
            "--app",
            APP,
            &export,
            "--name",
            "export (eu)",
            "--disabled",
        ],
    )
    .trim()
    .to_owned();
    assert_eq!(
        list(&["--tag", "team:data"]),
        [export.as_str(), copy.as_str()]
    );
    assert_eq!(list(&["--disabled"]), [adhoc.as_str(), copy.as_str()]);
    workflow_ok(&c, &["job", "update", "--app", APP, &copy, "--tags", ""]);
    assert_eq!(list(&["--tag", "team:data"]), [export.as_str()]);
    let (code, _, stderr) =
        workflow_cli(&c, &["job", "update", "--app", APP, &copy, "--tags", "a,a"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("invalid tags"), "{stderr}");

    // Workflows: tags from the definition, filters, a copy.
    let def = format!(
        r#"{{"name":"nightly","time_expression_type":"API","tags":["etl"],"nodes":[{{"id":1,"job_id":{adhoc}}}]}}"#
    );
    let wf = workflow_ok(&c, &["workflow", "create", "--app", APP, "--body", &def])
        .trim()
        .to_owned();
    let wf_copy = workflow_ok(
        &c,
        &["workflow", "copy", "--app", APP, &wf, "--name", "nightly 2"],
    )
    .trim()
    .to_owned();
    let wf_list = |extra: &[&str]| {
        let mut args = vec!["workflow", "list", "--app", APP];
        args.extend_from_slice(extra);
        listed_ids(&workflow_ok(&c, &args))
    };
    assert_eq!(wf_list(&["--tag", "etl"]), [wf.as_str(), wf_copy.as_str()]);
    assert_eq!(wf_list(&["--name", " 2"]), [wf_copy.as_str()]);
    assert!(wf_list(&["--type", "CRON"]).is_empty());

    // Instances by trigger time: delayed runs an hour and two hours ahead (no worker runs them).
    let first = workflow_ok(
        &c,
        &["job", "run", "--app", APP, &orders, "--delay-ms", "3600000"],
    )
    .trim()
    .to_owned();
    let second = workflow_ok(
        &c,
        &["job", "run", "--app", APP, &orders, "--delay-ms", "7200000"],
    )
    .trim()
    .to_owned();
    let inst: serde_json::Value = serde_json::from_str(&workflow_ok(
        &c,
        &["--json", "instance", "get", "--app", APP, &second],
    ))
    .unwrap();
    let t2 = inst["trigger_time"].as_i64().unwrap();
    let at = chrono::DateTime::from_timestamp_millis(t2)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let inst_list = |extra: &[&str]| {
        let mut args = vec!["instance", "list", "--app", APP, "--job", &orders];
        args.extend_from_slice(extra);
        listed_ids(&workflow_ok(&c, &args))
    };
    assert_eq!(inst_list(&[]), [second.as_str(), first.as_str()]);
    assert_eq!(inst_list(&["--trigger-from", &at]), [second.as_str()]);
    assert_eq!(
        inst_list(&["--trigger-to", &t2.to_string()]),
        [first.as_str()]
    );
    assert!(inst_list(&["--finished-from", "0"]).is_empty());

    // A batch: three runs in one request, their ids one a line, in order.
    let batch = workflow_ok(
        &c,
        &[
            "job",
            "run",
            "--app",
            APP,
            &orders,
            "--count",
            "3",
            "--delay-ms",
            "10800000",
        ],
    );
    let ids: Vec<u64> = batch.lines().map(|l| l.trim().parse().unwrap()).collect();
    assert_eq!(ids.len(), 3, "{batch}");
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert_eq!(inst_list(&[]).len(), 5);
    let (code, _, stderr) = workflow_cli(
        &c,
        &["job", "run", "--app", APP, &orders, "--count", "1001"],
    );
    assert_eq!(code, Some(2), "{stderr}");
}

// ---------------------------------------------------------------------------------------------
// `ferrojob token ...`, `ferrojob app rotate-secret`

/// Runs the CLI against `c` with `token`; answers (exit code, stdout, stderr).
fn cli_as(c: &common::Cluster, token: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let url = format!("http://{}", c.http);
    let out = Command::new(env!("CARGO_BIN_EXE_ferrojob"))
        .args(["--url", &url, "--token", token])
        .args(args)
        .output()
        .expect("run ferrojob");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_and_a_secret_rotation_from_the_cli() {
    use common::{Cluster, APP, SECRET, TOKEN};

    let mut c = Cluster::start(0, None).await;
    // A `read` token lists jobs but cannot create one; revoked, it opens nothing.
    let (code, token, err) = cli_as(
        &c,
        TOKEN,
        &[
            "token", "create", "--app", APP, "--name", "ci", "--role", "read",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    let token = token.trim().to_owned();
    assert!(token.starts_with("fjt_"), "{token}");
    let (code, _, err) = cli_as(&c, &token, &["job", "list", "--app", APP]);
    assert_eq!(code, Some(0), "{err}");
    let create = [
        "job",
        "create",
        "--app",
        APP,
        "--name",
        "x",
        "--type",
        "api",
        "--processor",
        "noop",
    ];
    let (code, _, err) = cli_as(&c, &token, &create);
    assert_ne!(code, Some(0));
    assert!(err.contains("403"), "{err}");
    let (code, list, err) = cli_as(&c, TOKEN, &["token", "list", "--app", APP, "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    let id = list["items"][0]["id"].as_u64().unwrap().to_string();
    assert!(list["items"][0].get("token").is_none(), "{list}");
    let (code, _, err) = cli_as(&c, TOKEN, &["token", "revoke", "--app", APP, &id]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = cli_as(&c, &token, &["job", "list", "--app", APP]);
    assert_ne!(code, Some(0));
    assert!(err.contains("401"), "{err}");
    // The worker secret is no HTTP token.
    let (code, _, _) = cli_as(&c, SECRET, &["job", "list", "--app", APP]);
    assert_ne!(code, Some(0));

    // Rotation: during the overlap a worker with the old secret and one with the new both
    // join; the new secret was printed.
    let new = "e2e-rotated-secret-0123";
    let (code, out, err) = cli_as(
        &c,
        TOKEN,
        &[
            "app",
            "rotate-secret",
            APP,
            "--secret",
            new,
            "--overlap-secs",
            "600",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.trim(), new);
    c.add_worker(SECRET, "old");
    c.add_worker(new, "new");
    c.wait_workers(2).await;
    let (code, out, err) = cli_as(&c, TOKEN, &["app", "get", APP]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("previous worker secret accepted until"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_run_with_an_idempotency_key_runs_once() {
    use common::{Cluster, APP};

    let c = Cluster::start(0, None).await;
    let id = workflow_ok(
        &c,
        &[
            "job",
            "create",
            "--app",
            APP,
            "--name",
            "once",
            "--type",
            "API",
            "--processor",
            "noop",
        ],
    );
    let run = |key: &str| {
        workflow_ok(
            &c,
            &[
                "job",
                "run",
                "--app",
                APP,
                id.trim(),
                "--idempotency-key",
                key,
            ],
        )
        .trim()
        .to_owned()
    };
    let first = run("nightly-2026-12-07");
    assert!(!first.is_empty());
    assert_eq!(
        run("nightly-2026-12-07"),
        first,
        "the same key: the first run"
    );
    assert_ne!(run("nightly-2026-12-08"), first, "another key: another run");
    let (code, _, stderr) = workflow_cli(
        &c,
        &[
            "job",
            "run",
            "--app",
            APP,
            id.trim(),
            "--idempotency-key",
            "has space",
        ],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("Idempotency-Key"), "{stderr}");
}
