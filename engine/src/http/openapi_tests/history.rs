//! The version, rollback and audit parts of `openapi.json` against the code.

use super::fixtures::{full_job_body, workflow_def};
use super::requests::{field_names, query_parameters, request_matches};
use super::*;

#[test]
fn version_rollback_and_audit_bodies_match_the_document() {
    let d = doc();
    let rollback = Rollback { version: 3 };
    for kind in ["jobs", "workflows"] {
        let path = format!("/v1/apps/{{app}}/{kind}/{{id}}/rollback");
        request_matches(&d, "post", &path, "Rollback", &rollback);
    }
    let jobs = JobVersionList {
        items: vec![JobVersionView {
            version: 2,
            updated_at: 1_700_000_000_000,
            job: full_job_body(),
        }],
        next_cursor: Some(2),
    };
    conforms(&d, "JobVersionList", &jobs);
    // A definition with every default, as a stored minimal job reads back.
    let minimal: JobBody = serde_json::from_value(
        json!({"name": "m", "time_expression_type": "API", "processor": "noop"}),
    )
    .unwrap();
    let minimal = JobVersionView {
        version: 1,
        updated_at: 0,
        job: minimal,
    };
    conforms(&d, "JobVersion", &minimal);
    let workflows = WorkflowVersionList {
        items: vec![WorkflowVersionView {
            version: 1,
            definition: workflow_def(),
        }],
        next_cursor: None,
    };
    conforms(&d, "WorkflowVersionList", &workflows);
    let entry = |token_id| AuditEntry {
        actor: "token".into(),
        token_id,
        role: "operate".into(),
        peer: "127.0.0.1:50000".into(),
        action: "job.run".into(),
        target: "job/1".into(),
        summary: "POST /v1/apps/a/jobs/1/run instance_id=9".into(),
    };
    let audit = AuditList {
        items: vec![
            AuditView {
                seq: 2,
                time: 1_700_000_000_000,
                entry: entry(Some(77)),
            },
            AuditView {
                seq: 1,
                time: 1_700_000_000_000,
                entry: entry(None),
            },
        ],
        next_cursor: Some(1),
    };
    conforms(&d, "AuditList", &audit);
    let query = AuditQuery {
        limit: Some(1),
        cursor: Some(2),
        target: Some("job/1".into()),
    };
    let path = "/v1/apps/{app}/audit";
    assert_eq!(
        query_parameters(&d, path),
        field_names(&query),
        "GET {path}"
    );
    for path in [
        "/v1/apps/{app}/jobs/{id}/versions",
        "/v1/apps/{app}/workflows/{id}/versions",
    ] {
        assert_eq!(
            query_parameters(&d, path),
            field_names(&PageQuery {
                limit: Some(1),
                cursor: Some(1)
            }),
            "GET {path}"
        );
    }
}
