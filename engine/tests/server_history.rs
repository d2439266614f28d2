//! Versions, rollback and the audit trail over the real server core, and the audit trail
//! written by the real HTTP server on 127.0.0.1 (who, from where, what).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod server_runtime_support;

use std::sync::Arc;

use ferrojob::api::{
    Api, AuditQuery, CreateToken, ErrorCode, PageQuery, Rollback, RunJob, TokenRole, WorkflowDef,
};
use ferrojob::client::Client;
use ferrojob::http::{HttpConfig, HttpServer};
use ferrojob::server::StoreChoice;
use ferrojob::time_expression::TimeExpressionType as T;
use server_runtime_support::*;

#[tokio::test]
async fn updates_are_versions_and_a_rollback_restores_one_as_a_new_version() {
    let server = start(config(StoreChoice::Memory, None)).await;
    let api = server.api();
    let a = app(&api, "a").await;
    let b = app(&api, "b").await;
    let mut body = job(T::Api, "");
    body.params = "first".into();
    let id = api.create_job(a.clone(), body.clone()).await.unwrap().id;
    body.params = "second".into();
    body.timeout_ms = 9000;
    api.update_job(a.clone(), id, body.clone()).await.unwrap();
    api.set_job_enabled(a.clone(), id, false).await.unwrap();

    let page = api
        .job_versions(a.clone(), id, PageQuery::default())
        .await
        .unwrap();
    let got: Vec<(u64, String, bool)> = page
        .items
        .iter()
        .map(|v| (v.version, v.job.params.clone(), v.job.enabled))
        .collect();
    assert_eq!(
        got,
        vec![
            (3, "second".into(), false),
            (2, "second".into(), true),
            (1, "first".into(), true),
        ]
    );
    assert_eq!(page.next_cursor, None);
    let one = api.get_job_version(a.clone(), id, 1).await.unwrap();
    assert_eq!(one.job.params, "first");

    // The rollback schedules the old definition (enabled again) and stores it as version 4.
    let view = api
        .rollback_job(a.clone(), id, Rollback { version: 1 })
        .await
        .unwrap();
    assert_eq!(view.body.params, "first");
    assert!(view.body.enabled);
    assert_eq!(view.body.timeout_ms, 0);
    let now = api.get_job(a.clone(), id).await.unwrap();
    assert_eq!(now.body, view.body);
    let newest = api
        .job_versions(
            a.clone(),
            id,
            PageQuery {
                limit: Some(1),
                cursor: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(newest.items[0].version, 4);
    assert_eq!(newest.next_cursor, Some(4));

    // Unknown versions, other apps' jobs and deleted jobs are 404.
    let missing = api
        .rollback_job(a.clone(), id, Rollback { version: 9 })
        .await
        .unwrap_err();
    assert_eq!(missing.code, ErrorCode::NotFound);
    let foreign = api
        .job_versions(b.clone(), id, PageQuery::default())
        .await
        .unwrap_err();
    assert_eq!(foreign.code, ErrorCode::NotFound);
    api.delete_job(a.clone(), id).await.unwrap();
    let gone = api.get_job_version(a.clone(), id, 1).await.unwrap_err();
    assert_eq!(gone.code, ErrorCode::NotFound);
    server.shutdown().await;
}

#[tokio::test]
async fn a_workflow_rollback_restores_its_definition() {
    let server = start(config(StoreChoice::Memory, None)).await;
    let api = server.api();
    let a = app(&api, "a").await;
    let node = api
        .create_job(a.clone(), job(T::Workflow, ""))
        .await
        .unwrap()
        .id;
    let def = |name: &str| -> WorkflowDef {
        serde_json::from_value(serde_json::json!({
            "name": name, "time_expression_type": "API",
            "nodes": [{"id": 1, "job_id": node.0}],
        }))
        .unwrap()
    };
    let wf = api.create_workflow(a.clone(), def("one")).await.unwrap().id;
    api.update_workflow(a.clone(), wf, def("two"))
        .await
        .unwrap();
    let view = api
        .rollback_workflow(a.clone(), wf, Rollback { version: 1 })
        .await
        .unwrap();
    assert_eq!(view.body.name, "one");
    let page = api
        .workflow_versions(a.clone(), wf, PageQuery::default())
        .await
        .unwrap();
    let names: Vec<(u64, &str)> = page
        .items
        .iter()
        .map(|v| (v.version, v.definition.name.as_str()))
        .collect();
    assert_eq!(names, vec![(3, "one"), (2, "two"), (1, "one")]);
    let missing = api
        .get_workflow_version(a.clone(), wf, 7)
        .await
        .unwrap_err();
    assert_eq!(missing.code, ErrorCode::NotFound);
    server.shutdown().await;
}

const ADMIN: &str = "the-admin-token";

#[tokio::test]
async fn the_http_layer_records_who_changed_what_from_where() {
    let server = start(config(StoreChoice::Memory, None)).await;
    let http = HttpServer::bind(local(), server.api(), HttpConfig::new(ADMIN))
        .await
        .unwrap();
    let base = format!("http://{}", http.local_addr());
    let admin = Client::new(&base, ADMIN).unwrap();
    let api: Arc<dyn Api> = server.api();
    app(&api, "a").await;
    let created = admin
        .create_token(
            "a",
            &CreateToken {
                name: "ops".into(),
                role: TokenRole::Operate,
                expires_in_secs: None,
            },
        )
        .await
        .unwrap();
    let ops = Client::new(&base, &created.token).unwrap();
    let id = admin.create_job("a", &job(T::Api, "")).await.unwrap().id;
    ops.run_job("a", id, &RunJob::default()).await.unwrap();
    // Reads and refusals are not recorded.
    ops.get_job("a", id).await.unwrap();
    assert!(ops.delete_job("a", id).await.is_err());
    // The trail is for admins.
    assert!(ops.list_audit("a", &AuditQuery::default()).await.is_err());

    let trail = admin.list_audit("a", &AuditQuery::default()).await.unwrap();
    let actions: Vec<&str> = trail
        .items
        .iter()
        .map(|r| r.entry.action.as_str())
        .collect();
    assert_eq!(actions, vec!["job.run", "job.create", "token.create"]);
    let run = &trail.items[0];
    assert_eq!(run.entry.actor, "token");
    assert_eq!(run.entry.token_id, Some(created.view.id));
    assert_eq!(run.entry.role, "operate");
    assert!(run.entry.peer.starts_with("127.0.0.1:"), "{run:?}");
    assert_eq!(run.entry.target, format!("job/{}", id.0));
    assert!(run.entry.summary.contains("instance_id="), "{run:?}");
    let made = &trail.items[1];
    assert_eq!(made.entry.actor, "admin");
    assert_eq!(made.entry.target, format!("job/{}", id.0));
    let token = &trail.items[2];
    assert_eq!(token.entry.target, format!("token/{}", created.view.id));
    assert!(!token.entry.summary.contains(&created.token));
    let only = admin
        .list_audit(
            "a",
            &AuditQuery {
                target: Some(format!("token/{}", created.view.id)),
                ..AuditQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(only.items.len(), 1);
    server.shutdown().await;
}
