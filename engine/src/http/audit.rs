//! The audit trail's writer: a route layer that, after a change or command of an app
//! answered with success, records who made it (the token), from which address, what and to
//! what, through [`Api::record_audit`](crate::api::Api::record_audit), before the answer
//! leaves. Reads, failures and refusals are not recorded.
//!
//! | routes | action | target |
//! |---|---|---|
//! | `POST .../jobs`, `PUT/DELETE .../jobs/{id}`, `.../enable`, `/disable`, `/rollback`, `/copy`, `/run`, `/runs`, `/backfill` | `job.create`, `job.update`, `job.delete`, `job.enable`, `job.disable`, `job.rollback`, `job.copy`, `job.run`, `job.run_batch`, `job.backfill` | `job/{id}` (the new id for a creation) |
//! | `DELETE .../instances/{id}`, `POST .../instances/{id}/stop`, `/cancel`, `/retry` | `instance.delete`, `instance.stop`, ... | `instance/{id}` |
//! | the same for workflows and workflow instances (`mark-success` too; `workflow.backfill`, `workflow_instance.delete`) | `workflow.*`, `workflow_instance.*` | `workflow/{id}`, `workflow_instance/{id}` |
//! | `POST/DELETE .../tokens[/{id}]`, `PUT/DELETE/POST .../alarm-channels/{name}[/test]`, `rotate-secret` | `token.create`, `token.revoke`, `channel.put`, `channel.delete`, `channel.test`, `app.rotate_secret` | `token/{id}`, `channel/{name}`, `app` |
//! | `PUT/DELETE .../calendars/{name}` | `calendar.put`, `calendar.delete` | `calendar/{name}` |
//!
//! The record is durable before the answer is sent, but it is a write of its own after the
//! change's: a crash between the two leaves the change without its record. A failure to
//! record is logged and does not change the answer (the change is made).
//!
//! The summary is the request line, plus the ids a creation or run answered (`id`,
//! `instance_id`, `workflow_instance_id`; for a batch of runs their count and the first and
//! last `instance_ids`); no other part of a body is read, so a new token's
//! secret never reaches the trail.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::Response;

use super::auth::bearer;
use super::guard::PeerAddr;
use super::Shared;
use crate::api::{token_id, AuditEntry, TokenRole};

/// Largest answer body read for the ids it names, bytes (answers of creations are small).
const MAX_ANSWER_READ: usize = 64 * 1024;

/// The action of a request to `/v1/apps/{app}/<rest>`, its target's kind and the path
/// segment that names the target (`None`: the id the answer names).
fn classify<'a>(
    method: &Method,
    rest: &[&'a str],
) -> Option<(&'static str, &'static str, Option<&'a str>)> {
    let m = method.as_str();
    Some(match (m, rest) {
        ("POST", ["jobs"]) => ("job.create", "job", None),
        ("PUT", ["jobs", id]) => ("job.update", "job", Some(*id)),
        ("DELETE", ["jobs", id]) => ("job.delete", "job", Some(*id)),
        ("POST", ["jobs", id, "enable"]) => ("job.enable", "job", Some(*id)),
        ("POST", ["jobs", id, "disable"]) => ("job.disable", "job", Some(*id)),
        ("POST", ["jobs", id, "rollback"]) => ("job.rollback", "job", Some(*id)),
        ("POST", ["jobs", id, "copy"]) => ("job.copy", "job", Some(*id)),
        ("POST", ["jobs", id, "run"]) => ("job.run", "job", Some(*id)),
        ("POST", ["jobs", id, "runs"]) => ("job.run_batch", "job", Some(*id)),
        ("POST", ["jobs", id, "backfill"]) => ("job.backfill", "job", Some(*id)),
        ("DELETE", ["instances", id]) => ("instance.delete", "instance", Some(*id)),
        ("POST", ["instances", id, "stop"]) => ("instance.stop", "instance", Some(*id)),
        ("POST", ["instances", id, "cancel"]) => ("instance.cancel", "instance", Some(*id)),
        ("POST", ["instances", id, "retry"]) => ("instance.retry", "instance", Some(*id)),
        ("POST", ["workflows"]) => ("workflow.create", "workflow", None),
        ("PUT", ["workflows", id]) => ("workflow.update", "workflow", Some(*id)),
        ("DELETE", ["workflows", id]) => ("workflow.delete", "workflow", Some(*id)),
        ("POST", ["workflows", id, "rollback"]) => ("workflow.rollback", "workflow", Some(*id)),
        ("POST", ["workflows", id, "copy"]) => ("workflow.copy", "workflow", Some(*id)),
        ("POST", ["workflows", id, "run"]) => ("workflow.run", "workflow", Some(*id)),
        ("POST", ["workflows", id, "backfill"]) => ("workflow.backfill", "workflow", Some(*id)),
        ("DELETE", ["workflow-instances", id]) => {
            ("workflow_instance.delete", "workflow_instance", Some(*id))
        }
        ("POST", ["workflow-instances", id, "stop"]) => {
            ("workflow_instance.stop", "workflow_instance", Some(*id))
        }
        ("POST", ["workflow-instances", id, "retry"]) => {
            ("workflow_instance.retry", "workflow_instance", Some(*id))
        }
        ("POST", ["workflow-instances", id, "nodes", _, "mark-success"]) => (
            "workflow_instance.mark_success",
            "workflow_instance",
            Some(*id),
        ),
        ("POST", ["tokens"]) => ("token.create", "token", None),
        ("DELETE", ["tokens", id]) => ("token.revoke", "token", Some(*id)),
        ("PUT", ["alarm-channels", name]) => ("channel.put", "channel", Some(*name)),
        ("DELETE", ["alarm-channels", name]) => ("channel.delete", "channel", Some(*name)),
        ("POST", ["alarm-channels", name, "test"]) => ("channel.test", "channel", Some(*name)),
        ("PUT", ["calendars", name]) => ("calendar.put", "calendar", Some(*name)),
        ("DELETE", ["calendars", name]) => ("calendar.delete", "calendar", Some(*name)),
        ("POST", ["rotate-secret"]) => ("app.rotate_secret", "app", None),
        _ => return None,
    })
}

/// Who made the request: actor, token id, role.
fn who(s: &Shared, headers: &HeaderMap) -> (String, Option<u64>, String) {
    let Some(token) = bearer(headers) else {
        return ("unknown".into(), None, String::new());
    };
    if s.credentials.is_admin(token) {
        return ("admin".into(), None, TokenRole::Admin.to_string());
    }
    match token_id(token) {
        Some(id) => {
            let role = match s.api.token_grant(id) {
                Ok(Some(g)) => g.role.to_string(),
                _ => String::new(),
            };
            ("token".into(), Some(id), role)
        }
        None => ("app-secret".into(), None, TokenRole::Admin.to_string()),
    }
}

/// The ids an answer body names, as ` → id=N` text.
fn answered_ids(body: &[u8]) -> (Option<u64>, String) {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(body)
    else {
        return (None, String::new());
    };
    let mut text = String::new();
    let mut id = None;
    for key in ["id", "instance_id", "workflow_instance_id"] {
        if let Some(n) = map.get(key).and_then(serde_json::Value::as_u64) {
            if key == "id" {
                id = Some(n);
            }
            text.push_str(&format!(" {key}={n}"));
        }
    }
    if let Some(ids) = map
        .get("instance_ids")
        .and_then(serde_json::Value::as_array)
    {
        let first = ids.first().and_then(serde_json::Value::as_u64);
        let last = ids.last().and_then(serde_json::Value::as_u64);
        text.push_str(&format!(" runs={}", ids.len()));
        if let (Some(first), Some(last)) = (first, last) {
            text.push_str(&format!(" instance_ids={first}..={last}"));
        }
    }
    (id, text)
}

/// The route layer (see the module docs): it runs only on requests that matched a route.
pub(crate) async fn record(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.split('/').collect();
    let (app, action, kind, named) = match segments.as_slice() {
        ["", "v1", "apps", app, rest @ ..] => match classify(req.method(), rest) {
            Some((action, kind, named)) => (
                percent_decoded(app),
                action,
                kind,
                named.map(percent_decoded),
            ),
            None => return next.run(req).await,
        },
        _ => return next.run(req).await,
    };
    let method = req.method().clone();
    let peer = req
        .extensions()
        .get::<PeerAddr>()
        .map(|p| p.0.to_string())
        .unwrap_or_default();
    let headers = req.headers().clone();
    let resp = next.run(req).await;
    if !resp.status().is_success() {
        return resp;
    }
    let (resp, answered, ids) = if method == Method::POST {
        let (parts, body) = resp.into_parts();
        match axum::body::to_bytes(body, MAX_ANSWER_READ).await {
            Ok(bytes) => {
                let (id, text) = answered_ids(&bytes);
                (Response::from_parts(parts, Body::from(bytes)), id, text)
            }
            Err(e) => {
                tracing::warn!(error = %e, %path, "answer not readable for the audit trail");
                (
                    Response::from_parts(parts, Body::empty()),
                    None,
                    String::new(),
                )
            }
        }
    } else {
        (resp, None, String::new())
    };
    let target = match (named, answered) {
        (Some(v), _) => format!("{kind}/{v}"),
        (None, Some(id)) if kind != "app" => format!("{kind}/{id}"),
        _ => kind.to_owned(),
    };
    let (actor, token_id, role) = who(&s, &headers);
    let entry = AuditEntry {
        actor,
        token_id,
        role,
        peer,
        action: action.to_owned(),
        target,
        summary: format!("{method} {path}{ids}"),
    };
    match s.api.resolve_app(&app) {
        Ok(app_ref) => {
            if let Err(e) = s.api.record_audit(app_ref, entry).await {
                tracing::error!(error = %e, %path, action, "audit record not written");
            }
        }
        Err(e) => tracing::error!(error = %e, %path, action, "audit record not written"),
    }
    resp
}

/// A path segment as text (`%xx` escapes decoded; an invalid escape is kept as written).
fn percent_decoded(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |at: usize| bytes.get(at).and_then(|c| (*c as char).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'?'));
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| segment.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_classify_to_actions_and_targets() {
        assert_eq!(
            classify(&Method::POST, &["jobs", "12", "rollback"]),
            Some(("job.rollback", "job", Some("12")))
        );
        assert_eq!(
            classify(&Method::POST, &["jobs"]),
            Some(("job.create", "job", None))
        );
        assert_eq!(
            classify(&Method::POST, &["jobs", "12", "backfill"]),
            Some(("job.backfill", "job", Some("12")))
        );
        assert_eq!(
            classify(&Method::POST, &["workflows", "3", "backfill"]),
            Some(("workflow.backfill", "workflow", Some("3")))
        );
        assert_eq!(
            classify(&Method::DELETE, &["instances", "40"]),
            Some(("instance.delete", "instance", Some("40")))
        );
        assert_eq!(
            classify(&Method::DELETE, &["workflow-instances", "8"]),
            Some(("workflow_instance.delete", "workflow_instance", Some("8")))
        );
        assert_eq!(classify(&Method::GET, &["jobs", "12"]), None);
        assert_eq!(classify(&Method::GET, &["audit"]), None);
        assert_eq!(percent_decoded("a%20b"), "a b");
        assert_eq!(
            answered_ids(br#"{"id":7,"token":"fjt_1_secret"}"#),
            (Some(7), " id=7".to_owned())
        );
        assert_eq!(answered_ids(b"not json"), (None, String::new()));
        assert_eq!(
            classify(&Method::POST, &["jobs", "12", "runs"]),
            Some(("job.run_batch", "job", Some("12")))
        );
        assert_eq!(
            answered_ids(br#"{"instance_ids":[4,5,6]}"#),
            (None, " runs=3 instance_ids=4..=6".to_owned())
        );
    }
}
