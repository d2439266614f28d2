//! End to end on PostgreSQL: the real `ferrojob-server --store postgres://…` and real workers
//! on 127.0.0.1 (runs across a restart; tokens, a secret rotation, logs, app deletion), a
//! fresh database per test (dropped afterwards). PostgreSQL must answer at
//! `FERROJOB_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432`, trust
//! authentication) and `psql` must be installed, or the test fails.

use std::process::Command;
use std::time::Duration;

use ferrojob::api::{CreateApp, CreateToken, LogQuery, RotateSecret, RunJob, TokenRole};
use ferrojob::client::Client;
use ferrojob::model::InstanceStatus;
use ferrojob::time_expression::TimeExpressionType;

mod common;
use common::postgres::Database;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_on_postgres_runs_jobs_and_keeps_history_across_a_restart() {
    let db = Database::create();
    let flags = vec!["--store".to_owned(), db.url()];
    let transport = free_port();
    let mut c = Cluster::start_with(1, Some(transport), &flags).await;
    let api = c
        .job(body("api", TimeExpressionType::Api, "", "noop", ""))
        .await;
    let rate = c
        .job(body(
            "rate",
            TimeExpressionType::FixedRate,
            "200",
            "noop",
            "",
        ))
        .await;
    let run = c
        .client
        .run_job(
            APP,
            api,
            &RunJob {
                params: "on postgres".into(),
                delay_ms: 0,
            },
        )
        .await
        .unwrap();
    let done = wait_for("the API run", Duration::from_secs(30), || async {
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
    wait_for("a few scheduled runs", Duration::from_secs(30), || async {
        (c.succeeded(rate).await.len() >= 3).then_some(())
    })
    .await;
    let before = c.succeeded(rate).await;
    let runs_before = c.client.get_job(APP, rate).await.unwrap().runs;

    // The data dir holds no store: the state is in the database.
    assert!(!c.dir.path().join("data").join("store").exists());

    c.server.kill();
    let server = start_server_with(c.dir.path(), Some(transport), "server2", &flags);
    c.http = server.field("http").parse().unwrap();
    c.server = server;
    c.client = Client::new(&format!("http://{}", c.http), TOKEN).unwrap();
    let again = c.client.get_instance(APP, run.instance_id).await.unwrap();
    assert_eq!(again.status, InstanceStatus::Succeed);
    assert_eq!(again.params, "on postgres");
    for i in &before {
        let again = c.client.get_instance(APP, i.id).await.unwrap();
        assert_eq!(again.status, InstanceStatus::Succeed);
    }
    c.wait_workers(1).await;
    wait_for(
        "new runs after the restart",
        Duration::from_secs(30),
        || async {
            let j = c.client.get_job(APP, rate).await.ok()?;
            (j.runs >= runs_before + 2).then_some(())
        },
    )
    .await;
    drop(c);
}

/// What the server keeps for apps and logs, on PostgreSQL: a token with its role, revoked; a
/// worker-secret rotation whose previous secret still admits a worker during the overlap; a
/// shell job's log lines with their attempt; an app deleted with its job and its name reused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_a_rotation_logs_and_app_deletion_on_postgres() {
    let db = Database::create();
    let flags = vec!["--store".to_owned(), db.url()];
    let mut c = Cluster::start_with(0, None, &flags).await;

    let reader = c
        .client
        .create_token(
            APP,
            &CreateToken {
                name: "reader".into(),
                role: TokenRole::Read,
                expires_in_secs: None,
            },
        )
        .await
        .unwrap();
    let as_reader = Client::new(&format!("http://{}", c.http), &reader.token).unwrap();
    as_reader.get_app(APP).await.unwrap();
    let write = CreateToken {
        name: "more".into(),
        role: TokenRole::Admin,
        expires_in_secs: None,
    };
    assert!(as_reader.create_token(APP, &write).await.is_err());
    assert_eq!(c.client.list_tokens(APP).await.unwrap().items.len(), 1);

    let rotated = c
        .client
        .rotate_secret(
            APP,
            &RotateSecret {
                secret: Some("the-second-worker-secret".into()),
                overlap_secs: Some(3600),
            },
        )
        .await
        .unwrap();
    c.add_worker(SECRET, "old-secret");
    c.add_worker(&rotated.secret, "new-secret");
    c.wait_workers(2).await;

    let job = c
        .job(body(
            "echo",
            TimeExpressionType::Api,
            "",
            "shell",
            "echo hello-postgres",
        ))
        .await;
    let run = c
        .client
        .run_job(
            APP,
            job,
            &RunJob {
                params: String::new(),
                delay_ms: 0,
            },
        )
        .await
        .unwrap();
    let done = wait_for("the shell run", Duration::from_secs(30), || async {
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
    let line = wait_for("the shell's log line", Duration::from_secs(30), || async {
        let log = c
            .client
            .instance_log(APP, run.instance_id, LogQuery::default())
            .await
            .ok()?;
        log.lines
            .into_iter()
            .find(|l| l.content.contains("hello-postgres"))
    })
    .await;
    assert_eq!(line.attempt, 1);

    c.client.revoke_token(APP, reader.view.id).await.unwrap();
    assert!(as_reader.get_app(APP).await.is_err());

    c.client
        .create_app(&CreateApp {
            name: "doomed".into(),
            secret: "the-doomed-app-secret".into(),
        })
        .await
        .unwrap();
    c.client
        .create_job(
            "doomed",
            &body("gone", TimeExpressionType::Api, "", "noop", ""),
        )
        .await
        .unwrap();
    assert!(c.client.delete_app("doomed", false).await.is_err());
    c.client.delete_app("doomed", true).await.unwrap();
    assert!(c.client.get_app("doomed").await.is_err());
    c.client
        .create_app(&CreateApp {
            name: "doomed".into(),
            secret: "the-doomed-app-secret".into(),
        })
        .await
        .unwrap();
    drop(c);
}

/// Told nothing: the status command only reads what the memberships wrote.
struct NoServer;

impl ferrojob::server::pg::member::Partitions for NoServer {
    fn acting(&self, _: ferrojob::cluster::PartitionId, _: ferrojob::cluster::Epoch) {}
    fn stop(&self, _: ferrojob::cluster::PartitionId) {}
}

#[test]
fn cluster_status_lists_the_servers_and_every_partitions_owner() {
    use ferrojob::cluster::{OwnershipConfig, ServerId, PARTITION_COUNT};
    use ferrojob::server::pg::member::{Member, MemberConfig};
    use std::sync::Arc;

    let db = Database::create();
    drop(ferrojob::server::PgRepo::open(&db.url()).unwrap()); // the tables
    let status = |json: bool| {
        let mut args = vec!["cluster", "status", "--store"];
        let url = db.url();
        args.push(&url);
        if json {
            args.push("--json");
        }
        let out = Command::new(env!("CARGO_BIN_EXE_ferrojob"))
            .args(&args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let empty = status(false);
    assert!(empty.starts_with("servers: 0 live of 0\n"), "{empty}");
    assert!(empty.contains("never granted: 64"), "{empty}");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let members: Vec<Member> = ["s1", "s2"]
        .into_iter()
        .map(|name| {
            let mut config = MemberConfig::new(
                ServerId::new(name).unwrap(),
                vec![format!("{name}.local:10086")],
            );
            config.ownership = OwnershipConfig {
                lease: Duration::from_secs(30),
                ..OwnershipConfig::default()
            };
            rt.block_on(Member::start(
                &db.url(),
                config,
                Arc::new(ferrojob::clock::SystemClock),
                Arc::new(NoServer),
            ))
            .unwrap()
        })
        .collect();
    let all_held = || {
        members
            .iter()
            .map(|m| m.status().acting.len())
            .sum::<usize>()
            == usize::from(PARTITION_COUNT)
    };
    for _ in 0..400 {
        if all_held() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(all_held());

    let text = status(false);
    assert!(text.starts_with("servers: 2 live of 2\n"), "{text}");
    assert!(
        text.contains("s1.local:10086") && text.contains("s2.local:10086"),
        "{text}"
    );
    let (n1, n2) = (
        members[0].status().acting.len(),
        members[1].status().acting.len(),
    );
    assert!(
        text.contains(&format!(
            "partitions: 64 (s1: {n1}, s2: {n2}; expired: 0, released: 0, never granted: 0)"
        )),
        "{text}"
    );
    let v: serde_json::Value = serde_json::from_str(&status(true)).unwrap();
    let partitions = v["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 64);
    for p in partitions {
        let owner = p["owner"].as_str().unwrap();
        let n = u16::try_from(p["partition"].as_u64().unwrap()).unwrap();
        let member = if owner == "s1" {
            &members[0]
        } else {
            &members[1]
        };
        let epoch = member.status().acting[&ferrojob::cluster::PartitionId::new(n).unwrap()];
        assert_eq!(p["epoch"].as_u64(), Some(epoch.0), "{p}");
        assert_eq!(p["live"], true);
    }
    for m in members {
        rt.block_on(m.leave(Duration::from_secs(5)));
    }
    let after = status(false);
    assert!(after.starts_with("servers: 0 live of 0\n"), "{after}");
    assert!(after.contains("released: 64"), "{after}");
}
