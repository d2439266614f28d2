//! API tokens, worker-secret rotation and app deletion, on every repository.

use ferrojob::server::token_repo::{TokenRecord, MAX_TOKEN_ID};
use ferrojob::server::*;

use super::place::each_repository;
use super::{app, job, NOW};

fn token(app: &AppRecord, id: u64, role: u8, expires_at: Option<i64>) -> TokenRecord {
    TokenRecord {
        id,
        app_id: app.id,
        name: format!("ci-{id}"),
        role,
        hash: [u8::try_from(id % 251).unwrap(); 32],
        created_at: NOW,
        expires_at,
    }
}

fn create(repo: &Repo, t: &TokenRecord) -> TokenRecord {
    repo.create_token(t.clone()).unwrap().wait().unwrap()
}

#[test]
fn tokens_are_created_found_listed_revoked_and_kept() {
    each_repository(|place| {
        let (a, t7, t3) = {
            let repo = place.open();
            let a = app(&repo, "a");
            let b = app(&repo, "b");
            let t7 = create(&repo, &token(&a, 7, 2, Some(NOW + 1_000)));
            let t3 = create(&repo, &token(&a, 3, 0, None));
            let tb = create(&repo, &token(&b, MAX_TOKEN_ID, 1, None));
            assert_eq!(repo.token(7).unwrap(), Some(t7.clone()));
            assert_eq!(repo.token(MAX_TOKEN_ID).unwrap(), Some(tb.clone()));
            assert_eq!(repo.token(8).unwrap(), None);
            assert_eq!(repo.token(u64::MAX).unwrap(), None);
            // By id, and only the app's own.
            assert_eq!(
                repo.list_tokens(a.id).unwrap(),
                vec![t3.clone(), t7.clone()]
            );
            assert_eq!(repo.list_tokens(b.id).unwrap(), vec![tb]);
            // A taken id, an id out of range, a role beyond admin, an unknown app.
            assert!(matches!(
                repo.create_token(token(&b, 7, 0, None)),
                Err(RepoError::Conflict { what: "token", .. })
            ));
            for bad in [
                token(&a, 0, 0, None),
                token(&a, MAX_TOKEN_ID + 1, 0, None),
                token(&a, 9, 3, None),
            ] {
                assert!(
                    matches!(repo.create_token(bad), Err(RepoError::Invalid { .. })),
                    "{}",
                    place.name()
                );
            }
            let mut ghost = token(&a, 10, 0, None);
            ghost.app_id = ferrojob::ids::AppId(999);
            assert!(matches!(
                repo.create_token(ghost),
                Err(RepoError::NotFound { .. })
            ));
            // Revoking through another app finds nothing; through its own it goes.
            assert!(matches!(
                repo.revoke_token(b.id, 3),
                Err(RepoError::NotFound { .. })
            ));
            repo.revoke_token(a.id, 3).unwrap().wait().unwrap();
            assert_eq!(repo.token(3).unwrap(), None);
            assert!(matches!(
                repo.revoke_token(a.id, 3),
                Err(RepoError::NotFound { .. })
            ));
            (a, t7, t3)
        };
        let repo = place.open();
        assert_eq!(repo.list_tokens(a.id).unwrap(), vec![t7]);
        // A revoked id may be drawn again.
        let again = create(&repo, &token(&a, t3.id, 1, None));
        assert_eq!(repo.token(t3.id).unwrap(), Some(again));
    });
}

#[test]
fn a_rotation_keeps_the_previous_secret_until_its_end() {
    each_repository(|place| {
        let a = {
            let repo = place.open();
            let a = app(&repo, "a");
            assert!(repo.previous_secret(a.id).unwrap().is_none());
            let rotated = repo
                .rotate_secret(a.id, "second-secret", NOW + 10)
                .unwrap()
                .wait()
                .unwrap();
            assert_eq!(rotated.secret, "second-secret");
            assert_eq!(rotated.name, a.name);
            assert_eq!(repo.get_app(a.id).unwrap(), rotated);
            assert_eq!(repo.get_app_by_name("a").unwrap(), rotated);
            let prev = repo.previous_secret(a.id).unwrap().unwrap();
            assert_eq!(
                (prev.secret.as_str(), prev.until),
                ("secret-secret", NOW + 10)
            );
            // A second rotation replaces the previous secret with the one it replaced.
            repo.rotate_secret(a.id, "third-secret", NOW + 20)
                .unwrap()
                .wait()
                .unwrap();
            // A bad secret or an unknown app change nothing.
            for bad in ["short", "a-nul-\0-in-the-secret"] {
                assert!(matches!(
                    repo.rotate_secret(a.id, bad, NOW + 30),
                    Err(RepoError::Invalid {
                        field: "secret",
                        ..
                    })
                ));
            }
            assert!(matches!(
                repo.rotate_secret(ferrojob::ids::AppId(999), "fourth-secret", NOW),
                Err(RepoError::NotFound { .. })
            ));
            a
        };
        let repo = place.open();
        assert_eq!(repo.get_app(a.id).unwrap().secret, "third-secret");
        let prev = repo.previous_secret(a.id).unwrap().unwrap();
        assert_eq!(
            (prev.secret.as_str(), prev.until),
            ("second-secret", NOW + 20)
        );
        let loaded = repo.load().unwrap();
        assert_eq!(loaded.apps[0].secret, "third-secret");
    });
}

#[test]
fn an_app_is_deleted_once_empty_with_its_tokens_and_previous_secret() {
    each_repository(|place| {
        let (a2, kept) = {
            let repo = place.open();
            let a = app(&repo, "a");
            let other = app(&repo, "other");
            let kept = create(&repo, &token(&other, 5, 1, None));
            create(&repo, &token(&a, 6, 2, None));
            repo.rotate_secret(a.id, "second-secret", NOW + 10)
                .unwrap()
                .wait()
                .unwrap();
            let j = job(&repo, a.id, None);
            let def: ferrojob::workflow::WorkflowDef = serde_json::from_value(serde_json::json!({
                "name": "flow", "time_expression_type": "API", "time_expression": "",
                "nodes": [{"id": 1, "job_id": j.id.0}],
            }))
            .unwrap();
            let wf = repo
                .create_workflow(a.id, &def, None, NOW)
                .unwrap()
                .wait()
                .unwrap();
            let refused = |repo: &Repo| {
                assert!(
                    matches!(repo.delete_app(a.id), Err(RepoError::Invalid { .. })),
                    "{}",
                    place.name()
                );
                assert_eq!(repo.get_app(a.id).unwrap().name, "a");
            };
            refused(&repo);
            repo.delete_workflow(wf.id).unwrap().wait().unwrap();
            refused(&repo);
            repo.delete_job(j.id).unwrap().wait().unwrap();
            repo.delete_app(a.id).unwrap().wait().unwrap();
            assert!(matches!(
                repo.get_app(a.id),
                Err(RepoError::NotFound { .. })
            ));
            assert!(matches!(
                repo.get_app_by_name("a"),
                Err(RepoError::NotFound { .. })
            ));
            assert!(matches!(
                repo.delete_app(a.id),
                Err(RepoError::NotFound { .. })
            ));
            assert_eq!(repo.token(6).unwrap(), None);
            assert!(repo.list_tokens(a.id).unwrap().is_empty());
            assert!(repo.previous_secret(a.id).unwrap().is_none());
            assert_eq!(repo.token(5).unwrap(), Some(kept.clone()));
            // The name is free again, for a new app with nothing of the old one.
            let a2 = app(&repo, "a");
            assert_ne!(a2.id, a.id);
            assert!(repo.list_tokens(a2.id).unwrap().is_empty());
            assert!(repo.previous_secret(a2.id).unwrap().is_none());
            (a2, kept)
        };
        let repo = place.open();
        let names: Vec<String> = repo
            .list_apps()
            .unwrap()
            .into_iter()
            .map(|a| a.name)
            .collect();
        assert_eq!(names, ["other", "a"]);
        assert_eq!(repo.get_app_by_name("a").unwrap(), a2);
        assert_eq!(repo.token(5).unwrap(), Some(kept));
        assert_eq!(repo.token(6).unwrap(), None);
        assert!(matches!(
            repo.create_app("a", "another-secret", NOW),
            Err(RepoError::Conflict { what: "app", .. })
        ));
    });
}
