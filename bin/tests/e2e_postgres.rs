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
use common::*;

fn server_url() -> String {
    std::env::var("FERROJOB_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

fn psql(sql: &str) {
    let out = Command::new("psql")
        .arg(format!("{}/postgres", server_url()))
        .args(["-v", "ON_ERROR_STOP=1", "-qAtc", sql])
        .output()
        .expect("psql must be installed for the PostgreSQL tests");
    assert!(
        out.status.success(),
        "psql {sql:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A database of its own, dropped when the test ends.
struct Database(String);

impl Database {
    fn create() -> Database {
        let name = format!(
            "ferrojob_e2e_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        psql(&format!("CREATE DATABASE {name}"));
        Database(name)
    }

    fn url(&self) -> String {
        format!("{}/{}", server_url(), self.0)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        psql(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0));
    }
}

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
