//! Deleting finished instances and workflow instances over HTTP: the real server core (on a
//! virtual clock) behind the real HTTP server on 127.0.0.1, a fake worker that holds every
//! run until the test reports its end.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod server_runtime_support;

use std::sync::Arc;

use ferrojob::api::{
    AuditQuery, CreateApp, CreateToken, LogQuery, RunJob, RunWorkflow, TokenRole, WorkflowDef,
    WorkflowInstanceQuery, WorkflowInstanceStatus as WS,
};
use ferrojob::client::{Client, ClientError};
use ferrojob::clock::VirtualClock;
use ferrojob::http::{HttpConfig, HttpServer};
use ferrojob::ids::{InstanceId, JobId, WorkflowId, WorkflowInstanceId};
use ferrojob::server::{ServerCore, StoreChoice};
use ferrojob::time_expression::TimeExpressionType as T;
use ferrojob_transport::message::{InstanceStatus as W, LogBatch, LogEntry, LogLevel};
use server_runtime_support::*;

const ADMIN: &str = "the-admin-token";

struct Node {
    server: ServerCore,
    http: HttpServer,
    base: String,
    admin: Client,
    w: FakeWorker,
    job: JobId,
}

impl Node {
    /// A server with apps `a` (with a holding worker and an API job) and `b`.
    async fn start() -> Node {
        let clock = VirtualClock::new(T0);
        let server = start(config(StoreChoice::Memory, Some(&clock))).await;
        let mut http = HttpConfig::new(ADMIN);
        http.clock = Arc::new(clock.clone());
        let http = HttpServer::bind(local(), server.api(), http).await.unwrap();
        let base = format!("http://{}", http.local_addr());
        let admin = Client::new(&base, ADMIN).unwrap();
        for name in ["a", "b"] {
            let app = CreateApp {
                name: name.into(),
                secret: SECRET.into(),
            };
            admin.create_app(&app).await.unwrap();
        }
        let api = server.api();
        let w = FakeWorker::connect(server.transport_addr(), "a", "w1:1", &[], Mode::Hold).await;
        w.register(&api, &api.resolve_app("a").unwrap(), 8, T0)
            .await;
        let job = admin.create_job("a", &job(T::Api, "")).await.unwrap().id;
        Node {
            server,
            http,
            base,
            admin,
            w,
            job,
        }
    }

    async fn token(&self, role: TokenRole) -> Client {
        let req = CreateToken {
            name: format!("{role} token"),
            role,
            expires_in_secs: None,
        };
        let created = self.admin.create_token("a", &req).await.unwrap();
        Client::new(&self.base, created.token).unwrap()
    }

    /// A run of the job that the worker ends with `status`, with `lines` log lines.
    async fn finished_run(&mut self, status: W, lines: usize) -> InstanceId {
        let id = self
            .admin
            .run_job("a", self.job, &RunJob::default())
            .await
            .unwrap()
            .instance_id;
        let s = self.w.next_schedule().await;
        assert_eq!(s.instance_id, id.0);
        self.log(id, lines).await;
        self.w.r().report(id.0, status, Some("done")).await;
        self.until_final(id).await;
        id
    }

    async fn log(&self, id: InstanceId, lines: usize) {
        if lines == 0 {
            return;
        }
        let entries = (0..lines)
            .map(|n| LogEntry {
                instance_id: id.0,
                time_ms: T0,
                level: LogLevel::Info,
                content: format!("line {n}"),
                attempt: 1,
                fields: Vec::new(),
            })
            .collect();
        self.w
            .handle
            .send(LogBatch {
                worker_address: "w1:1".into(),
                entries,
            })
            .await
            .unwrap();
        until("log lines stored", || async {
            let l = self
                .admin
                .instance_log("a", id, LogQuery::default())
                .await
                .ok()?;
            (l.lines.len() == lines).then_some(())
        })
        .await;
    }

    async fn until_final(&self, id: InstanceId) {
        until(&format!("{id} final"), || async {
            let v = self.admin.get_instance("a", id).await.ok()?;
            v.status.is_final().then_some(())
        })
        .await;
    }

    async fn stop(self) {
        self.http.shutdown().await;
        self.server.shutdown().await;
    }
}

/// The status of a failed call, and its message.
fn refused<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (u16, String) {
    let e = r.expect_err("the call should fail");
    (e.status().unwrap(), e.to_string())
}

#[tokio::test]
async fn a_finished_instance_is_deleted_with_its_log_and_a_running_one_is_refused() {
    let mut n = Node::start().await;
    let done = n.finished_run(W::Succeed, 3).await;
    let kept = n.finished_run(W::Failed, 2).await;
    // Still held by the worker: refused, and left running.
    let running = n
        .admin
        .run_job("a", n.job, &RunJob::default())
        .await
        .unwrap()
        .instance_id;
    assert_eq!(n.w.next_schedule().await.instance_id, running.0);
    let (code, msg) = refused(n.admin.delete_instance("a", running).await);
    assert_eq!(code, 409);
    assert!(msg.contains("stop it first"), "{msg}");
    assert!(!n
        .admin
        .get_instance("a", running)
        .await
        .unwrap()
        .status
        .is_final());

    // Roles: deleting needs `admin`, as deleting a job does.
    for role in [TokenRole::Read, TokenRole::Operate] {
        let c = n.token(role).await;
        assert_eq!(refused(c.delete_instance("a", done).await).0, 403);
    }
    // Another app's route does not find it; nor is an unknown id found.
    assert_eq!(refused(n.admin.delete_instance("b", done).await).0, 404);
    assert_eq!(
        refused(n.admin.delete_instance("a", InstanceId(999_999)).await).0,
        404
    );

    let admin_token = n.token(TokenRole::Admin).await;
    admin_token.delete_instance("a", done).await.unwrap();
    assert_eq!(refused(n.admin.get_instance("a", done).await).0, 404);
    assert_eq!(
        refused(n.admin.instance_log("a", done, LogQuery::default()).await).0,
        404
    );
    let listed: Vec<InstanceId> = n
        .admin
        .list_instances("a", &Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|v| v.id)
        .collect();
    assert!(!listed.contains(&done), "{listed:?}");
    assert!(listed.contains(&kept) && listed.contains(&running));
    // The other finished instance and its log are untouched; a second delete finds nothing.
    let log = n
        .admin
        .instance_log("a", kept, LogQuery::default())
        .await
        .unwrap();
    assert_eq!(log.lines.len(), 2);
    assert_eq!(refused(n.admin.delete_instance("a", done).await).0, 404);

    // Stopped, it is final and may go.
    n.admin.stop_instance("a", running).await.unwrap();
    n.until_final(running).await;
    n.admin.delete_instance("a", running).await.unwrap();
    assert_eq!(refused(n.admin.get_instance("a", running).await).0, 404);

    let audit = n
        .admin
        .list_audit("a", &AuditQuery::default())
        .await
        .unwrap();
    let deletes: Vec<&str> = audit
        .items
        .iter()
        .filter(|r| r.entry.action == "instance.delete")
        .map(|r| r.entry.target.as_str())
        .collect();
    assert_eq!(
        deletes,
        vec![
            format!("instance/{}", running.0),
            format!("instance/{}", done.0)
        ]
    );
    n.stop().await;
}

fn def(name: &str, nodes: serde_json::Value, edges: serde_json::Value) -> WorkflowDef {
    serde_json::from_value(serde_json::json!({
        "name": name, "time_expression_type": "API", "nodes": nodes, "edges": edges,
    }))
    .unwrap()
}

async fn run_wf(n: &Node, wf: WorkflowId) -> WorkflowInstanceId {
    n.admin
        .run_workflow("a", wf, &RunWorkflow::default())
        .await
        .unwrap()
        .workflow_instance_id
}

async fn wf_status(n: &Node, id: WorkflowInstanceId, s: WS) {
    until(&format!("{id} {s:?}"), || async {
        let v = n.admin.get_workflow_instance("a", id).await.ok()?;
        (v.status == s).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_finished_workflow_instance_is_deleted_with_its_node_instances() {
    let mut n = Node::start().await;
    let j = n.job;
    let wf = n
        .admin
        .create_workflow(
            "a",
            &def(
                "chain",
                serde_json::json!([{"id": 1, "job_id": j}, {"id": 2, "job_id": j}]),
                serde_json::json!([{"from": 1, "to": 2}]),
            ),
        )
        .await
        .unwrap()
        .id;
    let wi = run_wf(&n, wf).await;
    // Node 1 ends; node 2 runs.
    let first = n.w.next_schedule().await;
    let first_id = InstanceId(first.instance_id);
    n.log(first_id, 4).await;
    n.w.r()
        .report(first.instance_id, W::Succeed, Some("{}"))
        .await;
    let second = InstanceId(n.w.next_schedule().await.instance_id);
    n.until_final(first_id).await;

    // While the workflow instance runs, neither it nor its finished node instance goes.
    let (code, msg) = refused(n.admin.delete_workflow_instance("a", wi).await);
    assert_eq!(code, 409);
    assert!(msg.contains("stop it first"), "{msg}");
    let (code, msg) = refused(n.admin.delete_instance("a", first_id).await);
    assert_eq!(code, 409);
    assert!(
        msg.contains(&format!("workflow instance {}", wi.0)),
        "{msg}"
    );

    for role in [TokenRole::Read, TokenRole::Operate] {
        let c = n.token(role).await;
        assert_eq!(refused(c.delete_workflow_instance("a", wi).await).0, 403);
    }
    assert_eq!(
        refused(n.admin.delete_workflow_instance("b", wi).await).0,
        404
    );
    assert_eq!(
        refused(
            n.admin
                .delete_workflow_instance("a", WorkflowInstanceId(999_999))
                .await
        )
        .0,
        404
    );

    // The last node ends: the workflow instance is finished and goes with both node
    // instances and their logs.
    n.w.r().report(second.0, W::Succeed, Some("{}")).await;
    wf_status(&n, wi, WS::Succeed).await;
    n.until_final(second).await;
    n.admin.delete_workflow_instance("a", wi).await.unwrap();
    assert_eq!(refused(n.admin.get_workflow_instance("a", wi).await).0, 404);
    for id in [first_id, second] {
        assert_eq!(refused(n.admin.get_instance("a", id).await).0, 404);
        assert_eq!(
            refused(n.admin.instance_log("a", id, LogQuery::default()).await).0,
            404
        );
    }
    let left = n
        .admin
        .list_workflow_instances("a", &WorkflowInstanceQuery::default())
        .await
        .unwrap();
    assert!(left.items.is_empty(), "{left:?}");
    assert_eq!(
        refused(n.admin.delete_workflow_instance("a", wi).await).0,
        404
    );

    // A stopped workflow instance may go too, once its node instance is final.
    let stopped = run_wf(&n, wf).await;
    let node = InstanceId(n.w.next_schedule().await.instance_id);
    n.admin.stop_workflow_instance("a", stopped).await.unwrap();
    wf_status(&n, stopped, WS::Stopped).await;
    n.until_final(node).await;
    until("the stopped workflow instance deleted", || async {
        n.admin.delete_workflow_instance("a", stopped).await.ok()
    })
    .await;
    assert_eq!(refused(n.admin.get_instance("a", node).await).0, 404);
    n.stop().await;
}
