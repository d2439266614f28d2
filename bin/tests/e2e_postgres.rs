//! End to end on PostgreSQL: the real `ferrojob-server --store postgres://…` and a real worker
//! on 127.0.0.1, a fresh database per test (dropped afterwards). PostgreSQL must answer at
//! `FERROJOB_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432`, trust
//! authentication) and `psql` must be installed, or the test fails.

use std::process::Command;
use std::time::Duration;

use ferrojob::api::RunJob;
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
