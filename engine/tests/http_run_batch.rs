//! `POST /v1/apps/{app}/jobs/{id}/runs` over the real server core (on a virtual clock)
//! behind the real HTTP server on 127.0.0.1, with a fake worker speaking the real transport:
//! one write for the whole batch, ids in order, every run started, the bounds, the rate,
//! the roles, `Idempotency-Key` and the audit trail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod server_runtime_support;

use std::sync::Arc;

use ferrojob::api::{
    AuditQuery, CreateApp, CreateToken, ErrorCode, InstanceQuery, RunJob, RunJobBatch, TokenRole,
    MAX_RUN_BATCH,
};
use ferrojob::client::{Client, ClientError};
use ferrojob::clock::VirtualClock;
use ferrojob::http::{ApiRateLimit, HttpConfig, HttpServer};
use ferrojob::ids::{InstanceId, JobId};
use ferrojob::model::InstanceStatus as S;
use ferrojob::server::{ServerCore, StoreChoice};
use ferrojob::time_expression::TimeExpressionType as T;
use ferrojob_transport::message::InstanceStatus as W;
use server_runtime_support::*;

const ADMIN: &str = "the-admin-token";

struct Node {
    server: ServerCore,
    http: HttpServer,
    base: String,
    admin: Client,
}

impl Node {
    async fn start(tweak: impl FnOnce(&mut HttpConfig)) -> Node {
        let clock = VirtualClock::new(T0);
        let server = start(config(StoreChoice::Memory, Some(&clock))).await;
        let mut http = HttpConfig::new(ADMIN);
        http.clock = Arc::new(clock.clone());
        tweak(&mut http);
        let http = HttpServer::bind(local(), server.api(), http).await.unwrap();
        let base = format!("http://{}", http.local_addr());
        let admin = Client::new(&base, ADMIN).unwrap();
        for name in ["a", "b"] {
            let app = CreateApp {
                name: name.into(),
                // App "a" has the secret the fake worker proves.
                secret: if name == "a" {
                    SECRET.to_owned()
                } else {
                    format!("{name}-{SECRET}")
                },
            };
            admin.create_app(&app).await.unwrap();
        }
        Node {
            server,
            http,
            base,
            admin,
        }
    }

    async fn stop(self) {
        self.http.shutdown().await;
        self.server.shutdown().await;
    }
}

/// `ferrojob_store_commit_seconds_count`: store writes the core has awaited so far.
fn commits(server: &ServerCore) -> u64 {
    let m = server.api().metrics_text();
    m.lines()
        .find_map(|l| l.strip_prefix("ferrojob_store_commit_seconds_count "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no commit count in {m}"))
}

/// The status and error code of a failed call.
fn refused<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (u16, Option<ErrorCode>) {
    let e = r.expect_err("the call should fail");
    (e.status().unwrap(), e.code())
}

/// A new API job of app `a`, created with the admin token.
async fn api_job(node: &Node) -> JobId {
    node.admin
        .create_job("a", &job(T::Api, ""))
        .await
        .unwrap()
        .id
}

fn runs(params: &[&str]) -> RunJobBatch {
    RunJobBatch {
        runs: params
            .iter()
            .map(|p| RunJob {
                params: (*p).to_owned(),
                delay_ms: 0,
            })
            .collect(),
    }
}

#[tokio::test]
async fn a_batch_is_one_write_answers_ids_in_order_and_every_run_is_started() {
    let node = Node::start(|_| {}).await;
    let api = node.server.api();
    let app = api.resolve_app("a").unwrap();
    let mut w =
        FakeWorker::connect(node.server.transport_addr(), "a", "w1:1", &[], Mode::Hold).await;
    w.register(&api, &app, 8, T0).await;
    let job = api_job(&node).await;
    // One run over HTTP: its write (already WAITING_WORKER_RECEIVE) and its audit record.
    let before = commits(&node.server);
    let one = node
        .admin
        .run_job("a", job, &RunJob::default())
        .await
        .unwrap();
    let single = commits(&node.server) - before;
    assert_eq!(single, 2, "the run and its audit record");
    assert_eq!(w.next_schedule().await.instance_id, one.instance_id.0);
    w.r().report(one.instance_id.0, W::Succeed, None).await;
    status_is(&api, &app, one.instance_id, S::Succeed).await;
    // Its final status is a write too: wait for it, so that none is pending below.
    until("the final write", || async {
        (commits(&node.server) - before == single + 1).then_some(())
    })
    .await;
    // Five runs in a batch: as many writes as the one run.
    let before = commits(&node.server);
    let params = ["p0", "p1", "p2", "p3", "p4"];
    let created = node
        .admin
        .run_job_batch("a", job, &runs(&params))
        .await
        .unwrap();
    assert_eq!(
        commits(&node.server) - before,
        single,
        "five runs in one write, and one audit record"
    );
    let ids = created.instance_ids;
    assert_eq!(ids.len(), params.len());
    assert!(ids.windows(2).all(|p| p[0] < p[1]), "in order: {ids:?}");
    // Each run reaches the worker with its own params, and succeeds.
    let mut scheduled = Vec::new();
    for _ in 0..params.len() {
        let sj = w.next_schedule().await;
        scheduled.push((InstanceId(sj.instance_id), sj.instance_params.clone()));
    }
    scheduled.sort();
    let expected: Vec<_> = ids
        .iter()
        .zip(params)
        .map(|(id, p)| (*id, p.to_owned()))
        .collect();
    assert_eq!(scheduled, expected);
    for id in &ids {
        w.r().report(id.0, W::Succeed, Some("done")).await;
    }
    for (id, p) in ids.iter().zip(params) {
        let v = status_is(&api, &app, *id, S::Succeed).await;
        assert_eq!(v.params, p);
        assert_eq!(v.job_id, job);
    }
    // A delayed run keeps its delay.
    let delayed = RunJobBatch {
        runs: vec![RunJob {
            params: String::new(),
            delay_ms: 60_000,
        }],
    };
    let late = node.admin.run_job_batch("a", job, &delayed).await.unwrap();
    let v = node
        .admin
        .get_instance("a", late.instance_ids[0])
        .await
        .unwrap();
    assert_eq!(v.status, S::WaitingDispatch);
    assert_eq!(v.trigger_time, T0 + 60_000);
    // The audit trail has the batch, with its count and its ids.
    let audit = node
        .admin
        .list_audit("a", &AuditQuery::default())
        .await
        .unwrap();
    let entry = audit
        .items
        .iter()
        .find(|e| e.entry.action == "job.run_batch" && e.entry.summary.contains("runs=5"))
        .unwrap_or_else(|| panic!("no batch in {audit:?}"));
    assert_eq!(entry.entry.target, format!("job/{}", job.get()));
    assert!(
        entry
            .entry
            .summary
            .contains(&format!("instance_ids={}..={}", ids[0].get(), ids[4].get())),
        "{}",
        entry.entry.summary
    );
    node.stop().await;
}

#[tokio::test]
async fn an_idempotency_key_gives_the_first_batch_back() {
    let node = Node::start(|_| {}).await;
    let job = api_job(&node).await;
    let keyed = node.admin.with_idempotency_key("batch-1");
    let first = keyed
        .run_job_batch("a", job, &runs(&["x", "y"]))
        .await
        .unwrap();
    let again = keyed
        .run_job_batch("a", job, &runs(&["x", "y"]))
        .await
        .unwrap();
    assert_eq!(first, again);
    let list = node
        .admin
        .list_instances(
            "a",
            &InstanceQuery {
                job_id: Some(job),
                ..InstanceQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(list.items.len(), 2, "the second request created nothing");
    node.stop().await;
}

#[tokio::test]
async fn a_batch_is_bounded_and_all_or_nothing() {
    let node = Node::start(|_| {}).await;
    let job = api_job(&node).await;
    let c = &node.admin;
    assert_eq!(
        refused(
            c.run_job_batch("a", job, &RunJobBatch::of(MAX_RUN_BATCH + 1))
                .await
        ),
        (413, Some(ErrorCode::PayloadTooLarge))
    );
    assert_eq!(
        refused(c.run_job_batch("a", job, &RunJobBatch::of(0)).await),
        (400, Some(ErrorCode::InvalidArgument))
    );
    // One run too far in the future refuses the whole batch, naming it.
    let mut batch = RunJobBatch::of(3);
    batch.runs[2].delay_ms = u64::MAX;
    let e = c.run_job_batch("a", job, &batch).await.unwrap_err();
    assert_eq!(e.status(), Some(400));
    assert!(e.to_string().contains("runs[2].delay_ms"), "{e}");
    // An unknown job is 404.
    assert_eq!(
        refused(
            c.run_job_batch("a", ferrojob::ids::JobId(9_999), &RunJobBatch::of(1))
                .await
        ),
        (404, Some(ErrorCode::NotFound))
    );
    let list = c
        .list_instances(
            "a",
            &InstanceQuery {
                job_id: Some(job),
                ..InstanceQuery::default()
            },
        )
        .await
        .unwrap();
    assert!(list.items.is_empty(), "no refused batch created a run");
    // The largest batch is accepted whole.
    let created = c
        .run_job_batch("a", job, &RunJobBatch::of(MAX_RUN_BATCH))
        .await
        .unwrap();
    assert_eq!(created.instance_ids.len(), MAX_RUN_BATCH);
    node.stop().await;
}

#[tokio::test]
async fn every_run_of_a_batch_takes_a_token_of_the_apps_rate() {
    let node = Node::start(|h| {
        h.api_rate = Some(ApiRateLimit {
            per_sec: 1,
            burst: 10,
            max_keys: 100,
        });
    })
    .await;
    // The admin's own bucket is another principal's: app "a" starts full (10 tokens).
    let job = api_job(&node).await;
    assert_eq!(
        refused(
            node.admin
                .run_job_batch("a", job, &RunJobBatch::of(11))
                .await
        ),
        (413, Some(ErrorCode::PayloadTooLarge)),
        "more runs than the burst can never pass"
    );
    // The job's creation and the refused batch took one token each: 8 left.
    node.admin
        .run_job_batch("a", job, &RunJobBatch::of(8))
        .await
        .unwrap();
    assert_eq!(
        refused(
            node.admin
                .run_job_batch("a", job, &RunJobBatch::of(2))
                .await
        ),
        (429, Some(ErrorCode::RateLimited))
    );
    node.stop().await;
}

#[tokio::test]
async fn a_batch_needs_the_operate_role_of_its_app() {
    let node = Node::start(|_| {}).await;
    let job = api_job(&node).await;
    let token = |app: &'static str, role: TokenRole| {
        let admin = node.admin.clone();
        let base = node.base.clone();
        async move {
            let req = CreateToken {
                name: format!("{role} token"),
                role,
                expires_in_secs: None,
            };
            let created = admin.create_token(app, &req).await.unwrap();
            Client::new(&base, created.token).unwrap()
        }
    };
    let read = token("a", TokenRole::Read).await;
    assert_eq!(
        refused(read.run_job_batch("a", job, &RunJobBatch::of(1)).await),
        (403, Some(ErrorCode::Forbidden))
    );
    let other = token("b", TokenRole::Operate).await;
    assert_eq!(
        refused(other.run_job_batch("a", job, &RunJobBatch::of(1)).await),
        (401, Some(ErrorCode::Unauthorized))
    );
    let operate = token("a", TokenRole::Operate).await;
    let created = operate
        .run_job_batch("a", job, &RunJobBatch::of(2))
        .await
        .unwrap();
    assert_eq!(created.instance_ids.len(), 2);
    node.stop().await;
}
