//! Calendars over HTTP on a real server: the routes and their roles, a job or workflow that
//! names an unknown calendar refused (400), a calendar still named refused deletion (409),
//! the audit trail, and calendars kept across a restart of a server on a store directory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod server_runtime_support;

use ferrojob::api::{
    AuditQuery, CalendarBody, CreateApp, CreateToken, ErrorCode, TokenRole, WorkflowDef,
};
use ferrojob::client::{Client, ClientError};
use ferrojob::launch::{launch, LaunchConfig};
use ferrojob::time_expression::TimeExpressionType as T;
use server_runtime_support::*;

fn code<V: std::fmt::Debug>(r: Result<V, ClientError>) -> (u16, ErrorCode) {
    match r {
        Err(ClientError::Api { status, error }) => (status, error.code),
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn token(admin: &Client, base: &str, role: TokenRole) -> Client {
    let req = CreateToken {
        name: format!("{role}"),
        role,
        expires_in_secs: None,
    };
    let created = admin.create_token("shop", &req).await.unwrap();
    Client::new(base, created.token).unwrap()
}

/// Launches a server on the data dir of one just shut down, which may find its store still
/// closing: retried briefly.
async fn relaunch(config: LaunchConfig) -> ferrojob::launch::RunningServer {
    for _ in 0..200 {
        match launch(config.clone()).await {
            Ok(s) => return s,
            Err(ferrojob::launch::LaunchError::Core(ferrojob::server::ServerError::Store(
                ferrojob_store::StoreError::Locked { .. },
            ))) => tokio::time::sleep(std::time::Duration::from_millis(25)).await,
            Err(e) => panic!("launch: {e}"),
        }
    }
    panic!("store stayed locked")
}

fn holidays() -> CalendarBody {
    CalendarBody {
        time_zone: Some("Europe/Paris".into()),
        excluded: vec!["2026-12-25".into(), "2026-12-31..2027-01-01".into()],
        description: "French bank holidays".into(),
    }
}

#[tokio::test]
async fn calendar_routes_roles_unknown_names_and_deletion_while_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = || LaunchConfig::new(Some(dir.path().to_owned()), local(), local());
    let server = launch(config()).await.unwrap();
    let base = format!("http://{}", server.http_addr());
    let admin = Client::new(&base, server.admin_token()).unwrap();
    admin
        .create_app(&CreateApp {
            name: "shop".into(),
            secret: SECRET.into(),
        })
        .await
        .unwrap();
    let c = token(&admin, &base, TokenRole::Admin).await;
    let reader = token(&admin, &base, TokenRole::Read).await;

    // Put, get, list; a reader can look but not change.
    let view = c.put_calendar("shop", "fr", &holidays()).await.unwrap();
    assert_eq!(view.time_zone, "Europe/Paris");
    assert_eq!(view.excluded, holidays().excluded);
    assert_eq!(reader.get_calendar("shop", "fr").await.unwrap(), view);
    assert_eq!(
        reader.list_calendars("shop").await.unwrap().items,
        vec![view.clone()]
    );
    assert_eq!(
        code(reader.put_calendar("shop", "fr", &holidays()).await).0,
        403
    );
    assert_eq!(code(reader.delete_calendar("shop", "fr").await).0, 403);
    assert_eq!(
        code(c.get_calendar("shop", "nope").await),
        (404, ErrorCode::NotFound)
    );
    // Bad bodies and names are 400.
    let mut bad = holidays();
    bad.excluded = vec!["2026-02-30".into()];
    assert_eq!(
        code(c.put_calendar("shop", "fr", &bad).await),
        (400, ErrorCode::InvalidArgument)
    );
    bad = holidays();
    bad.time_zone = Some("Mars/Olympus".into());
    assert_eq!(code(c.put_calendar("shop", "fr", &bad).await).0, 400);
    assert_eq!(
        code(c.put_calendar("shop", "a b", &holidays()).await).0,
        400
    );

    // A job naming an unknown calendar is refused, on create and on update.
    let mut j = job(T::Cron, "0 0 2 * * ?");
    j.calendars = vec!["fr".into(), "de".into()];
    let (status, err) = code(c.create_job("shop", &j).await);
    assert_eq!((status, err), (400, ErrorCode::InvalidArgument));
    j.calendars = vec!["fr".into()];
    let id = c.create_job("shop", &j).await.unwrap().id;
    let got = c.get_job("shop", id).await.unwrap();
    assert_eq!(got.body.calendars, vec!["fr".to_owned()]);
    assert_eq!(got.calendar_skipped_runs, 0);
    let mut unknown = j.clone();
    unknown.calendars = vec!["de".into()];
    assert_eq!(code(c.update_job("shop", id, &unknown).await).0, 400);

    // A workflow naming an unknown calendar is refused too.
    let wf = |calendars: serde_json::Value| -> WorkflowDef {
        serde_json::from_value(serde_json::json!({
            "name": "w", "time_expression_type": "CRON", "time_expression": "0 0 3 * * ?",
            "nodes": [{"id": 1, "job_id": id.get()}], "calendars": calendars
        }))
        .unwrap()
    };
    assert_eq!(
        code(
            c.create_workflow("shop", &wf(serde_json::json!(["de"])))
                .await
        )
        .0,
        400
    );
    let wf_id = c
        .create_workflow("shop", &wf(serde_json::json!(["fr"])))
        .await
        .unwrap()
        .id;

    // Still named: the deletion is a conflict naming the job and the workflow.
    let err = c.delete_calendar("shop", "fr").await;
    match &err {
        Err(ClientError::Api { status: 409, error }) => {
            assert!(error.message.contains(&id.to_string()), "{}", error.message);
            assert!(
                error.message.contains(&wf_id.to_string()),
                "{}",
                error.message
            );
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    // The calendar is kept across a restart.
    server.shutdown().await;
    let server = relaunch(config()).await;
    let base = format!("http://{}", server.http_addr());
    let admin = Client::new(&base, server.admin_token()).unwrap();
    let c = token(&admin, &base, TokenRole::Admin).await;
    assert_eq!(c.get_calendar("shop", "fr").await.unwrap(), view);
    assert_eq!(code(c.delete_calendar("shop", "fr").await).0, 409);

    // No longer named: deleted.
    c.delete_workflow("shop", wf_id).await.unwrap();
    j.calendars.clear();
    c.update_job("shop", id, &j).await.unwrap();
    c.delete_calendar("shop", "fr").await.unwrap();
    assert!(c.list_calendars("shop").await.unwrap().items.is_empty());

    // The audit trail has the calendar changes.
    let audit = c
        .list_audit(
            "shop",
            &AuditQuery {
                target: Some("calendar/fr".into()),
                ..AuditQuery::default()
            },
        )
        .await
        .unwrap();
    let actions: Vec<&str> = audit
        .items
        .iter()
        .map(|a| a.entry.action.as_str())
        .collect();
    assert_eq!(actions, ["calendar.delete", "calendar.put"]);
    server.shutdown().await;
}

#[tokio::test]
async fn a_backfill_lists_the_times_a_calendar_excludes_and_creates_no_run_for_them() {
    use ferrojob::api::Backfill;
    let server = launch(LaunchConfig::new(None, local(), local()))
        .await
        .unwrap();
    let base = format!("http://{}", server.http_addr());
    let admin = Client::new(&base, server.admin_token()).unwrap();
    admin
        .create_app(&CreateApp {
            name: "shop".into(),
            secret: SECRET.into(),
        })
        .await
        .unwrap();
    let c = token(&admin, &base, TokenRole::Admin).await;
    // Excluded in Shanghai: 2020-03-02 starts at 2020-03-01T16:00Z there.
    let cn = CalendarBody {
        time_zone: Some("Asia/Shanghai".into()),
        excluded: vec!["2020-03-02".into()],
        description: String::new(),
    };
    c.put_calendar("shop", "cn", &cn).await.unwrap();
    // Daily at 23:30 UTC.
    let mut j = job(T::Cron, "0 30 23 * * ?");
    j.calendars = vec!["cn".into()];
    let id = c.create_job("shop", &j).await.unwrap().id;
    let day = 86_400_000;
    let from = 1_583_020_800_000; // 2020-03-01T00:00:00Z
    let req = Backfill {
        from,
        to: from + 3 * day,
        dry_run: true,
    };
    let dry = c.backfill_job("shop", id, &req).await.unwrap();
    let excluded: Vec<Option<&str>> = dry.runs.iter().map(|r| r.excluded_by.as_deref()).collect();
    // 03-01T23:30Z is 03-02 in Shanghai: excluded; the other two are not.
    assert_eq!(excluded, [Some("cn"), None, None]);
    let done = c
        .backfill_job(
            "shop",
            id,
            &Backfill {
                dry_run: false,
                ..req
            },
        )
        .await
        .unwrap();
    let created: Vec<bool> = done.runs.iter().map(|r| r.instance_id.is_some()).collect();
    assert_eq!(created, [false, true, true]);
    assert_eq!(done.runs[0].excluded_by.as_deref(), Some("cn"));
    server.shutdown().await;
}
