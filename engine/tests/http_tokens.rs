//! API tokens and their roles, app management, the worker secret's rotation and the failed
//! sign-in limit, over the real server core (on a virtual clock) behind the real HTTP server
//! on 127.0.0.1, with fake workers speaking the real transport.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod server_runtime_support;

use std::sync::Arc;

use ferrojob::api::{CreateApp, CreateToken, JobBody, RotateSecret, RunJob, TokenRole};
use ferrojob::client::{Client, ClientError};
use ferrojob::clock::VirtualClock;
use ferrojob::http::{FailedLoginLimit, HttpConfig, HttpServer};
use ferrojob::model::InstanceStatus as S;
use ferrojob::server::{ServerCore, StoreChoice};
use ferrojob::time_expression::TimeExpressionType;
use server_runtime_support::*;

const ADMIN: &str = "the-admin-token";

struct Node {
    server: ServerCore,
    http: HttpServer,
    clock: VirtualClock,
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
                secret: format!("{name}-{SECRET}"),
            };
            admin.create_app(&app).await.unwrap();
        }
        Node {
            server,
            http,
            clock,
            base,
            admin,
        }
    }

    /// A client with a new token of `app` in `role`.
    async fn token(&self, app: &str, role: TokenRole, expires_in_secs: Option<u64>) -> Client {
        let req = CreateToken {
            name: format!("{role} token"),
            role,
            expires_in_secs,
        };
        let created = self.admin.create_token(app, &req).await.unwrap();
        assert!(created.token.starts_with("fjt_"));
        Client::new(&self.base, created.token).unwrap()
    }

    async fn stop(self) {
        self.http.shutdown().await;
        self.server.shutdown().await;
    }
}

fn job() -> JobBody {
    JobBody::new("j", TimeExpressionType::Api, "", "noop")
}

/// The status of a failed call.
fn status<T: std::fmt::Debug>(r: Result<T, ClientError>) -> u16 {
    r.expect_err("the call should fail").status().unwrap()
}

#[tokio::test]
async fn roles_decide_what_a_token_opens() {
    let n = Node::start(|_| {}).await;
    let id = n.admin.create_job("a", &job()).await.unwrap().id;

    let read = n.token("a", TokenRole::Read, None).await;
    read.get_job("a", id).await.unwrap();
    read.list_instances("a", &Default::default()).await.unwrap();
    assert_eq!(status(read.run_job("a", id, &RunJob::default()).await), 403);
    assert_eq!(status(read.disable_job("a", id).await), 403);
    assert_eq!(status(read.list_tokens("a").await), 403);

    let operate = n.token("a", TokenRole::Operate, None).await;
    operate.run_job("a", id, &RunJob::default()).await.unwrap();
    operate.disable_job("a", id).await.unwrap();
    assert_eq!(status(operate.create_job("a", &job()).await), 403);
    assert_eq!(status(operate.delete_job("a", id).await), 403);
    let err = operate.create_job("a", &job()).await.unwrap_err();
    assert!(
        err.to_string().contains("`operate`") && err.to_string().contains("`admin`"),
        "{err}"
    );

    let admin = n.token("a", TokenRole::Admin, None).await;
    let second = admin.create_job("a", &job()).await.unwrap().id;
    admin.delete_job("a", second).await.unwrap();
    assert_eq!(admin.list_tokens("a").await.unwrap().items.len(), 3);
    // An app token is no admin token: server-wide routes stay closed.
    assert_eq!(status(admin.list_apps().await), 403);

    // A token of app `a` opens nothing of app `b`, whatever its role: 401, as a wrong token.
    let b_job = n.admin.create_job("b", &job()).await.unwrap().id;
    assert_eq!(status(admin.get_job("b", b_job).await), 401);
    assert_eq!(status(admin.list_jobs("b", &Default::default()).await), 401);
    // Nor an app that does not exist (which it cannot tell from one it may not open).
    assert_eq!(
        status(admin.list_jobs("nope", &Default::default()).await),
        401
    );
    n.stop().await;
}

#[tokio::test]
async fn revoked_and_expired_tokens_are_refused_and_tokens_are_bounded() {
    let n = Node::start(|_| {}).await;
    let short = n.token("a", TokenRole::Read, Some(60)).await;
    let kept = n.token("a", TokenRole::Read, None).await;
    short.list_jobs("a", &Default::default()).await.unwrap();
    n.clock.advance(59_999);
    short.list_jobs("a", &Default::default()).await.unwrap();
    n.clock.advance(1);
    assert_eq!(status(short.list_jobs("a", &Default::default()).await), 401);
    kept.list_jobs("a", &Default::default()).await.unwrap();

    let listed = n.admin.list_tokens("a").await.unwrap().items;
    let ids: Vec<u64> = listed.iter().map(|t| t.id).collect();
    assert_eq!(listed.len(), 2);
    let never = listed.iter().find(|t| t.expires_at.is_none()).unwrap();
    n.admin.revoke_token("a", never.id).await.unwrap();
    assert_eq!(status(kept.list_jobs("a", &Default::default()).await), 401);
    // Revoking it again, or through another app, finds nothing.
    assert_eq!(status(n.admin.revoke_token("a", never.id).await), 404);
    let other = ids.iter().find(|&&i| i != never.id).unwrap();
    assert_eq!(status(n.admin.revoke_token("b", *other).await), 404);

    // Bounded: an app holds at most MAX_TOKENS_PER_APP.
    for _ in 0..ferrojob::api::MAX_TOKENS_PER_APP {
        n.token("b", TokenRole::Read, None).await;
    }
    let one_more = CreateToken {
        name: "one too many".into(),
        role: TokenRole::Read,
        expires_in_secs: None,
    };
    assert_eq!(status(n.admin.create_token("b", &one_more).await), 409);
    n.stop().await;
}

#[tokio::test]
async fn the_worker_secret_is_no_http_token_unless_the_compatibility_flag_says_so() {
    let secret = format!("a-{SECRET}");
    let n = Node::start(|_| {}).await;
    let by_secret = Client::new(&n.base, &secret).unwrap();
    assert_eq!(
        status(by_secret.list_jobs("a", &Default::default()).await),
        401
    );
    n.stop().await;

    let n = Node::start(|c| c.app_secret_tokens = true).await;
    let by_secret = Client::new(&n.base, &secret).unwrap();
    by_secret.create_job("a", &job()).await.unwrap();
    // Still only its own app.
    assert_eq!(
        status(by_secret.list_jobs("b", &Default::default()).await),
        401
    );
    n.stop().await;
}

#[tokio::test]
async fn a_rotation_accepts_both_secrets_until_its_overlap_ends() {
    let n = Node::start(|_| {}).await;
    let addr = n.server.transport_addr();
    let old = format!("a-{SECRET}");
    let new = "a-brand-new-secret-0123".to_owned();
    let req = RotateSecret {
        secret: Some(new.clone()),
        overlap_secs: Some(600),
    };
    let rotated = n.admin.rotate_secret("a", &req).await.unwrap();
    assert_eq!(rotated.previous_secret_until, T0 + 600_000);
    let shown = n.admin.get_app("a").await.unwrap();
    assert_eq!(shown.previous_secret_until, Some(T0 + 600_000));

    // Within the overlap both secrets open the worker port.
    for (i, secret) in [&old, &new].into_iter().enumerate() {
        let w = FakeWorker::try_connect(addr, "a", secret, &format!("w{i}:1"), &[], Mode::Succeed)
            .await;
        assert!(w.is_ok(), "secret {i} refused during the overlap");
    }
    // Past it, only the new one.
    n.clock.advance(600_000);
    let w = FakeWorker::try_connect(addr, "a", &old, "w2:1", &[], Mode::Succeed).await;
    assert!(w.is_err(), "the old secret still opens after the overlap");
    FakeWorker::try_connect(addr, "a", &new, "w3:1", &[], Mode::Succeed)
        .await
        .unwrap();
    assert_eq!(
        n.admin.get_app("a").await.unwrap().previous_secret_until,
        None
    );

    // A short new secret is refused; without one the server draws one.
    let short = RotateSecret {
        secret: Some("short".into()),
        overlap_secs: None,
    };
    assert_eq!(status(n.admin.rotate_secret("a", &short).await), 400);
    let drawn = n
        .admin
        .rotate_secret("a", &RotateSecret::default())
        .await
        .unwrap();
    assert!(drawn.secret.len() >= 16);
    FakeWorker::try_connect(addr, "a", &drawn.secret, "w4:1", &[], Mode::Succeed)
        .await
        .unwrap();
    n.stop().await;
}

#[tokio::test]
async fn failed_sign_ins_are_limited_per_source_and_counted() {
    let n = Node::start(|c| {
        c.failed_logins = Some(FailedLoginLimit {
            per_min: 1,
            burst: 3,
            max_sources: 16,
        })
    })
    .await;
    let wrong = Client::new(&n.base, "not-a-token").unwrap();
    for _ in 0..3 {
        assert_eq!(status(wrong.list_jobs("a", &Default::default()).await), 401);
    }
    // Past the burst, even the right token is refused unchecked from this address...
    let err = n
        .admin
        .list_jobs("a", &Default::default())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(429));
    // ...while requests without a credential still pass.
    let metrics = ferrojob::https::HttpsRoots::public()
        .client()
        .unwrap()
        .get(format!("{}/metrics", n.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("ferrojob_http_login_failures_total 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ferrojob_http_login_throttled_total 1"),
        "{metrics}"
    );
    assert!(metrics.contains("ferrojob_transport_handshake_failures_total"));
    // One failure's worth of time later, a sign-in is checked again.
    n.clock.advance(60_000);
    n.admin.list_jobs("a", &Default::default()).await.unwrap();
    n.stop().await;
}

#[tokio::test]
async fn apps_are_listed_shown_and_deleted_only_when_empty_or_forced() {
    let n = Node::start(|_| {}).await;
    let names: Vec<String> = n
        .admin
        .list_apps()
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert_eq!(names, ["a", "b"]);
    let read = n.token("a", TokenRole::Read, None).await;
    assert_eq!(read.get_app("a").await.unwrap().name, "a");

    // New apps: a name that is all digits, or a secret under 16 bytes, is refused.
    for (name, secret) in [("42", "long-enough-secret"), ("c", "too-short")] {
        let app = CreateApp {
            name: name.into(),
            secret: secret.into(),
        };
        assert_eq!(status(n.admin.create_app(&app).await), 400, "{name}");
    }

    // Only the admin token deletes; an app with jobs only when forced.
    let id = n.admin.create_job("a", &job()).await.unwrap().id;
    let app_admin = n.token("a", TokenRole::Admin, None).await;
    assert_eq!(status(app_admin.delete_app("a", true).await), 403);
    assert_eq!(status(n.admin.delete_app("a", false).await), 409);
    n.admin.delete_job("a", id).await.unwrap();
    let id = n.admin.create_job("a", &job()).await.unwrap().id;
    let flow: ferrojob::api::WorkflowDef = serde_json::from_value(serde_json::json!({
        "name": "flow",
        "time_expression_type": "API",
        "nodes": [{"id": 1, "job_id": id.get()}],
        "edges": [],
    }))
    .unwrap();
    n.admin.create_workflow("a", &flow).await.unwrap();
    assert_eq!(status(n.admin.delete_app("a", false).await), 409);
    n.admin.delete_app("a", true).await.unwrap();
    assert_eq!(status(n.admin.get_app("a").await), 404);
    // Its tokens went with it, and its name is free again.
    assert_eq!(status(read.get_app("a").await), 401);
    let again = CreateApp {
        name: "a".into(),
        secret: format!("a-{SECRET}"),
    };
    n.admin.create_app(&again).await.unwrap();
    assert!(n
        .admin
        .list_jobs("a", &Default::default())
        .await
        .unwrap()
        .items
        .is_empty());
    // An empty app goes without force.
    n.admin.delete_app("b", false).await.unwrap();
    n.stop().await;
}

#[tokio::test]
async fn failed_handshakes_are_limited_per_source_and_counted() {
    let mut c = config(StoreChoice::Memory, None);
    c.net.failed_handshakes_per_min = 1;
    c.net.failed_handshake_burst = 2;
    let server = start(c).await;
    let api = server.api();
    app(&api, "a").await;
    let addr = server.transport_addr();
    for i in 0..2 {
        let w = FakeWorker::try_connect(addr, "a", "wrong-secret-0123", "w:1", &[], Mode::Succeed)
            .await;
        assert!(w.is_err(), "wrong secret {i} accepted");
    }
    // The source is out of tries: even the right secret is refused on arrival for now.
    let w = FakeWorker::try_connect(addr, "a", SECRET, "w:1", &[], Mode::Succeed).await;
    assert!(w.is_err(), "a source past its failed handshakes was let in");
    let metrics = api.metrics_text();
    assert!(
        metrics.contains("ferrojob_transport_handshake_failures_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ferrojob_transport_failed_handshakes_limited_total 1"),
        "{metrics}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn the_stats_route_counts_the_apps_finished_runs_for_a_read_token() {
    let n = Node::start(|_| {}).await;
    let api = n.server.api();
    let a = api.resolve_app("a").unwrap();
    let addr = n.server.transport_addr();
    let secret = format!("a-{SECRET}");
    let w = FakeWorker::try_connect(addr, "a", &secret, "w1:1", &[], Mode::Succeed)
        .await
        .unwrap();
    w.register(&api, &a, 8, 0).await;
    let read = n.token("a", TokenRole::Read, None).await;
    let before = read.app_stats("a").await.unwrap();
    assert_eq!((before.since, before.as_of), (T0, T0));
    assert_eq!(before.last_day.finished, 0);
    assert_eq!(before.last_day.from, T0, "counted from the server's start");

    let id = n.admin.create_job("a", &job()).await.unwrap().id;
    let run = n
        .admin
        .run_job("a", id, &RunJob::default())
        .await
        .unwrap()
        .instance_id;
    let view = status_is(&api, &a, run, S::Succeed).await;
    // The fake worker reports no start time of its own (0): the start is the dispatch.
    assert_eq!(view.started_time, view.actual_trigger_time);
    assert!(view.started_time.is_some());
    let stats = until("the run counted", || async {
        let s = read.app_stats("a").await.unwrap();
        (s.last_day.finished == 1).then_some(s)
    })
    .await;
    for w in [stats.last_5_minutes, stats.last_hour, stats.last_day] {
        assert_eq!((w.finished, w.succeeded, w.failed, w.fires), (1, 1, 0, 0));
        assert_eq!(w.lateness_p99_ms, None, "an API run is no scheduled fire");
    }
    // The JSON as it travels: every field of the document's schema.
    let raw: serde_json::Value = ferrojob::https::HttpsRoots::public()
        .client_builder()
        .unwrap()
        .build()
        .unwrap()
        .get(format!("{}/v1/apps/a/stats", n.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(raw["last_hour"]["succeeded"], 1, "{raw}");
    assert_eq!(raw["since"], T0, "{raw}");
    assert!(raw["last_day"]["lateness_p50_ms"].is_null(), "{raw}");

    // Another app counts apart; a token of `a` cannot read it.
    assert_eq!(n.admin.app_stats("b").await.unwrap().last_day.finished, 0);
    assert_eq!(status(read.app_stats("b").await), 401);
    n.stop().await;
}
