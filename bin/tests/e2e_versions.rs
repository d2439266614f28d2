//! End to end: definition versions, rollback and the audit trail through the `ferrojob` CLI
//! against the real `ferrojob-server` on 127.0.0.1 (temp data dir, ephemeral ports), and the
//! versions surviving a restart of the server.

use std::process::Command;

mod common;
use common::{start_server, Cluster, APP, TOKEN};

/// Runs the CLI against the server at `http` with `token`; answers (exit code, stdout,
/// stderr).
fn cli_at(http: &str, token: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let url = format!("http://{http}");
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

/// The command must succeed; answers stdout.
fn ok_at(http: &str, token: &str, args: &[&str]) -> String {
    let (code, stdout, stderr) = cli_at(http, token, args);
    assert_eq!(code, Some(0), "ferrojob {args:?}: {stderr}");
    stdout
}

fn json_at(http: &str, token: &str, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&ok_at(http, token, &all)).expect("JSON output")
}

fn versions(http: &str, kind: &str, id: &str) -> Vec<(u64, String)> {
    let page = json_at(http, TOKEN, &[kind, "versions", "--app", APP, id]);
    let key = if kind == "job" { "job" } else { "definition" };
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_u64().unwrap(),
                v[key]["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn versions_rollback_and_the_audit_trail_through_the_cli() {
    let mut c = Cluster::start(0, None).await;
    let http = c.http.to_string();
    let h = http.as_str();

    // A job, changed twice: three versions, newest first.
    let create = [
        "job",
        "create",
        "--app",
        APP,
        "--name",
        "nightly",
        "--type",
        "api",
        "--processor",
        "noop",
    ];
    let id = ok_at(h, TOKEN, &create).trim().to_owned();
    for name in ["nightly-v2", "nightly-v3"] {
        ok_at(
            h,
            TOKEN,
            &["job", "update", "--app", APP, &id, "--name", name],
        );
    }
    assert_eq!(
        versions(h, "job", &id),
        vec![
            (3, "nightly-v3".to_owned()),
            (2, "nightly-v2".to_owned()),
            (1, "nightly".to_owned()),
        ]
    );
    let listing = ok_at(h, TOKEN, &["job", "versions", "--app", APP, &id]);
    assert!(
        listing.contains("v1") && listing.contains("nightly-v2"),
        "{listing}"
    );
    let shown = json_at(
        h,
        TOKEN,
        &["job", "versions", "--app", APP, &id, "--show", "1"],
    );
    assert_eq!(shown["job"]["name"], "nightly");

    // Rollback to version 1: the job is the first definition again, as version 4.
    ok_at(
        h,
        TOKEN,
        &["job", "rollback", "--app", APP, &id, "--version", "1"],
    );
    let job = json_at(h, TOKEN, &["job", "get", "--app", APP, &id]);
    assert_eq!(job["name"], "nightly");
    assert_eq!(
        versions(h, "job", &id).first(),
        Some(&(4, "nightly".to_owned()))
    );
    // A version that was never made is a 404, and the job is unchanged.
    let (code, _, err) = cli_at(
        h,
        TOKEN,
        &["job", "rollback", "--app", APP, &id, "--version", "99"],
    );
    assert_ne!(code, Some(0));
    assert!(err.contains("404"), "{err}");

    // A read token may list versions but not roll back (403), and is named in the trail.
    let read = ok_at(
        h,
        TOKEN,
        &[
            "token", "create", "--app", APP, "--name", "viewer", "--role", "read",
        ],
    )
    .trim()
    .to_owned();
    ok_at(h, &read, &["job", "versions", "--app", APP, &id]);
    let (code, _, err) = cli_at(
        h,
        &read,
        &["job", "rollback", "--app", APP, &id, "--version", "2"],
    );
    assert_ne!(code, Some(0));
    assert!(err.contains("403"), "{err}");
    let operate = ok_at(
        h,
        TOKEN,
        &[
            "token", "create", "--app", APP, "--name", "runner", "--role", "operate",
        ],
    )
    .trim()
    .to_owned();
    ok_at(h, &operate, &["job", "disable", "--app", APP, &id]);

    // A workflow, changed once, rolled back.
    let file = c.dir.path().join("wf.json");
    let def = |name: &str| {
        serde_json::json!({
            "name": name,
            "time_expression_type": "API",
            "nodes": [{"id": 1, "job_id": id.parse::<u64>().unwrap()}],
        })
        .to_string()
    };
    std::fs::write(&file, def("flow")).unwrap();
    let path = file.to_str().unwrap();
    let wf = ok_at(
        h,
        TOKEN,
        &["workflow", "create", "--app", APP, "--file", path],
    )
    .trim()
    .to_owned();
    std::fs::write(&file, def("flow-v2")).unwrap();
    ok_at(
        h,
        TOKEN,
        &["workflow", "update", "--app", APP, &wf, "--file", path],
    );
    assert_eq!(
        versions(h, "workflow", &wf),
        vec![(2, "flow-v2".to_owned()), (1, "flow".to_owned())]
    );
    ok_at(
        h,
        TOKEN,
        &["workflow", "rollback", "--app", APP, &wf, "--version", "1"],
    );
    assert_eq!(
        versions(h, "workflow", &wf).first(),
        Some(&(3, "flow".to_owned()))
    );

    // The audit trail: every change, newest first, with who and from where.
    let trail = json_at(h, TOKEN, &["audit", "list", "--app", APP, "--limit", "100"]);
    let items = trail["items"].as_array().unwrap();
    let actions: Vec<&str> = items
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "workflow.rollback",
            "workflow.update",
            "workflow.create",
            "job.disable",
            "token.create",
            "token.create",
            "job.rollback",
            "job.update",
            "job.update",
            "job.create",
        ],
        "{trail}"
    );
    let disable = &items[3];
    assert_eq!(disable["actor"], "token");
    assert_eq!(disable["role"], "operate");
    assert!(disable["token_id"].as_u64().is_some(), "{disable}");
    let rollback = &items[6];
    assert_eq!(rollback["actor"], "admin");
    assert_eq!(rollback["target"], format!("job/{id}"));
    assert!(
        rollback["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{rollback}"
    );
    assert_eq!(items[9]["target"], format!("job/{id}"), "the created id");
    // No token secret reaches the trail.
    assert!(!trail.to_string().contains(&read), "{trail}");
    let only_job = json_at(
        h,
        TOKEN,
        &[
            "audit",
            "list",
            "--app",
            APP,
            "--target",
            &format!("job/{id}"),
        ],
    );
    assert_eq!(only_job["items"].as_array().unwrap().len(), 5, "{only_job}");
    // The audit trail is for admins.
    let (code, _, err) = cli_at(h, &read, &["audit", "list", "--app", APP]);
    assert_ne!(code, Some(0));
    assert!(err.contains("403"), "{err}");

    // Versions and the trail are durable: the same after a restart on the same data dir.
    c.server.kill();
    let server2 = start_server(c.dir.path(), None, "server-again");
    let http2 = server2.field("http");
    assert_eq!(versions(&http2, "job", &id).len(), 5);
    let trail2 = json_at(
        &http2,
        TOKEN,
        &["audit", "list", "--app", APP, "--limit", "100"],
    );
    assert_eq!(trail2["items"].as_array().unwrap().len(), items.len());

    // Deleting the job deletes its versions (a 404 now).
    ok_at(&http2, TOKEN, &["workflow", "delete", "--app", APP, &wf]);
    ok_at(&http2, TOKEN, &["job", "delete", "--app", APP, &id]);
    let (code, _, err) = cli_at(&http2, TOKEN, &["job", "versions", "--app", APP, &id]);
    assert_ne!(code, Some(0));
    assert!(err.contains("404"), "{err}");
}
