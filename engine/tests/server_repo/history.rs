//! Job and workflow versions and the audit trail, on every repository.

use ferrojob::ids::AppId;
use ferrojob::server::history::{AuditRecord, MAX_AUDIT_RECORDS, MAX_JOB_VERSIONS};
use ferrojob::server::*;
use ferrojob::workflow::WorkflowDef;

use super::place::each_repository;
use super::{app, job, NOW};

fn update(repo: &Repo, mut j: JobRecord, name: &str, now: i64) -> JobRecord {
    j.name = name.to_owned();
    repo.update_job(j, None, now).unwrap().wait().unwrap()
}

fn versions(repo: &Repo, j: &JobRecord) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = repo.list_job_versions(j.id, cursor, 2).unwrap();
        out.extend(page.items.into_iter().map(|v| (v.version, v.job.name)));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

#[test]
fn every_job_change_keeps_a_version_newest_first() {
    each_repository(|place| {
        let repo = place.open();
        let a = app(&repo, "a");
        let j = job(&repo, a.id, None);
        let j = update(&repo, j, "second", NOW + 1);
        let j = update(&repo, j, "third", NOW + 2);
        assert_eq!(
            versions(&repo, &j),
            vec![
                (3, "third".to_owned()),
                (2, "second".to_owned()),
                (1, "report".to_owned()),
            ],
            "{}",
            place.name()
        );
        let v2 = repo.get_job_version(j.id, 2).unwrap();
        assert_eq!(v2.name, "second");
        assert_eq!(v2.updated_at, NOW + 1);
        assert!(matches!(
            repo.get_job_version(j.id, 4),
            Err(RepoError::NotFound { .. })
        ));
        // Versions survive a reopen (they are durable with the change).
        drop(repo);
        let repo = place.open();
        assert_eq!(versions(&repo, &j).len(), 3, "{}", place.name());
    });
}

#[test]
fn job_versions_are_bounded_and_deleted_with_the_job() {
    each_repository(|place| {
        let repo = place.open();
        let a = app(&repo, "a");
        let mut j = job(&repo, a.id, None);
        let total = MAX_JOB_VERSIONS + 3;
        for v in 2..=total {
            j = update(&repo, j, &format!("v{v}"), NOW + i64::try_from(v).unwrap());
        }
        let all = versions(&repo, &j);
        assert_eq!(all.len(), usize::try_from(MAX_JOB_VERSIONS).unwrap());
        assert_eq!(all.first().map(|v| v.0), Some(total));
        assert_eq!(all.last().map(|v| v.0), Some(total - MAX_JOB_VERSIONS + 1));
        assert!(matches!(
            repo.get_job_version(j.id, 1),
            Err(RepoError::NotFound { .. })
        ));
        repo.delete_job(j.id).unwrap().wait().unwrap();
        assert!(versions(&repo, &j).is_empty(), "{}", place.name());
    });
}

fn def(name: &str) -> WorkflowDef {
    serde_json::from_value(serde_json::json!({
        "name": name,
        "time_expression_type": "API", "time_expression": "",
        "nodes": [{"id": 1, "job_id": 1}],
    }))
    .unwrap()
}

#[test]
fn workflow_versions_list_newest_first() {
    each_repository(|place| {
        let repo = place.open();
        let a = app(&repo, "a");
        let w = repo
            .create_workflow(a.id, &def("one"), None, NOW)
            .unwrap()
            .wait()
            .unwrap();
        for name in ["two", "three"] {
            repo.update_workflow(w.id, &def(name), None, NOW)
                .unwrap()
                .wait()
                .unwrap();
        }
        let page = repo.list_workflow_versions(w.id, None, 2).unwrap();
        let got: Vec<(u64, String)> = page
            .items
            .iter()
            .map(|v| (v.version, v.def.name.clone()))
            .collect();
        assert_eq!(got, vec![(3, "three".into()), (2, "two".into())]);
        assert_eq!(page.next_cursor, Some(2));
        let page = repo.list_workflow_versions(w.id, Some(2), 2).unwrap();
        assert_eq!(page.items.len(), 1);
        assert_eq!(page.items.first().map(|v| v.def.name.as_str()), Some("one"));
        assert_eq!(page.next_cursor, None);
    });
}

fn record(app: AppId, action: &str, target: &str) -> AuditRecord {
    AuditRecord {
        app_id: app,
        seq: 0,
        time: NOW,
        actor: "token".into(),
        token_id: Some(77),
        role: "admin".into(),
        peer: "127.0.0.1:4000".into(),
        action: action.into(),
        target: target.into(),
        summary: "PUT /v1/apps/a/jobs/1".into(),
    }
}

#[test]
fn audit_records_are_numbered_per_app_listed_newest_first_and_filtered() {
    each_repository(|place| {
        let repo = place.open();
        let a = app(&repo, "a");
        let b = app(&repo, "b");
        for (action, target) in [
            ("job.create", "job/1"),
            ("job.update", "job/1"),
            ("instance.stop", "instance/9"),
        ] {
            repo.append_audit(record(a.id, action, target))
                .unwrap()
                .wait()
                .unwrap();
        }
        let other = repo
            .append_audit(record(b.id, "job.create", "job/2"))
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(other.seq, 1, "{}", place.name());
        let page = repo.list_audit(a.id, None, None, 2).unwrap();
        let seqs: Vec<u64> = page.items.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![3, 2]);
        assert_eq!(page.next_cursor, Some(2));
        let first = page.items.first().unwrap();
        assert_eq!(first.action, "instance.stop");
        assert_eq!(first.token_id, Some(77));
        assert_eq!(first.peer, "127.0.0.1:4000");
        let rest = repo.list_audit(a.id, None, Some(2), 2).unwrap();
        assert_eq!(
            rest.items.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![1]
        );
        assert_eq!(rest.next_cursor, None);
        let job1 = repo.list_audit(a.id, Some("job/1"), None, 10).unwrap();
        assert_eq!(
            job1.items
                .iter()
                .map(|r| r.action.as_str())
                .collect::<Vec<_>>(),
            vec!["job.update", "job.create"]
        );
        // Numbering continues after a reopen.
        drop(repo);
        let repo = place.open();
        let next = repo
            .append_audit(record(a.id, "job.delete", "job/1"))
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(next.seq, 4, "{}", place.name());
        assert!(matches!(
            repo.append_audit(record(AppId(999), "job.create", "job/1")),
            Err(RepoError::NotFound { .. })
        ));
    });
}

#[test]
fn the_audit_trail_is_bounded_and_deleted_with_its_app() {
    each_repository(|place| {
        let repo = place.open();
        let a = app(&repo, "a");
        let mut last = None;
        for _ in 0..MAX_AUDIT_RECORDS + 2 {
            last = Some(
                repo.append_audit(record(a.id, "instance.stop", "instance/1"))
                    .unwrap(),
            );
        }
        last.unwrap().wait().unwrap();
        let mut seen = 0;
        let mut oldest = u64::MAX;
        let mut cursor = None;
        loop {
            let page = repo.list_audit(a.id, None, cursor, 1000).unwrap();
            seen += page.items.len();
            oldest = page.items.iter().map(|r| r.seq).fold(oldest, u64::min);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(
            seen,
            usize::try_from(MAX_AUDIT_RECORDS).unwrap(),
            "{}",
            place.name()
        );
        assert_eq!(oldest, 3);
        repo.delete_app(a.id).unwrap().wait().unwrap();
        let again = app(&repo, "a2");
        assert!(repo
            .list_audit(a.id, None, None, 10)
            .unwrap()
            .items
            .is_empty());
        assert!(repo
            .list_audit(again.id, None, None, 10)
            .unwrap()
            .items
            .is_empty());
    });
}
