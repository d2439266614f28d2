//! The repository conformance suite: the tests that take a [`Place`] run against every
//! implementation of `Repository` — the log store over the MemoryStore and over a LogStore
//! directory, and PostgreSQL (a fresh database per test, dropped afterwards; PostgreSQL must
//! answer at `FERROJOB_TEST_POSTGRES`, default `postgres://postgres@127.0.0.1:5432`, or the
//! test fails). Then the log store's own: corrupt values, crash atomicity of `fire` on the
//! store's simulated file system, races with pruning.

use std::sync::Arc;

use ferrojob::ids::{AppId, InstanceId, JobId};
use ferrojob::model::{DispatchStrategy, ExecuteType, InstanceStatus, LogLevel};
use ferrojob::server::*;
use ferrojob::time_expression::{Lifecycle, TimeExpressionType};
use ferrojob_store::backend::{Fault, SimBackend};
use ferrojob_store::{LogOptions, LogStore, MemoryStore, Store};

const NOW: i64 = 1_700_000_000_000;

fn memory() -> Arc<dyn Store> {
    Arc::new(MemoryStore::new())
}

fn log_opts() -> LogOptions {
    LogOptions {
        background_compaction: false,
        ..LogOptions::default()
    }
}

fn app(repo: &Repo, name: &str) -> AppRecord {
    repo.create_app(name, "secret-secret", NOW)
        .unwrap()
        .wait()
        .unwrap()
}

fn cron_job(app: AppId) -> JobRecord {
    JobRecord::new(
        app,
        "report",
        TimeExpressionType::Cron,
        "0 */5 * * * ?",
        "noop",
    )
}

fn job(repo: &Repo, app: AppId, next: Option<i64>) -> JobRecord {
    repo.create_job(cron_job(app), next, NOW)
        .unwrap()
        .wait()
        .unwrap()
}

fn fire(repo: &Repo, job: &JobRecord, t: i64, next: Option<i64>) -> InstanceRecord {
    repo.fire(InstanceRecord::new(job.id, job.app_id, "", t), next)
        .unwrap()
        .wait()
        .unwrap()
}

#[path = "server_repo/place.rs"]
mod place;
use place::{each_repository, Place};

#[path = "server_repo/apps.rs"]
mod apps;

#[path = "server_repo/history.rs"]
mod history;

#[cfg(feature = "postgres")]
#[path = "server_repo/leases.rs"]
mod leases;

#[cfg(feature = "postgres")]
#[path = "server_repo/member.rs"]
mod member;

#[cfg(feature = "postgres")]
#[path = "server_repo/fenced.rs"]
mod fenced;

#[test]
fn apps_are_unique_by_name_and_found_by_id_and_name() {
    each_repository(|place| {
        let repo = place.open();
        let a = app(&repo, "billing");
        let b = app(&repo, "search");
        assert_ne!(a.id, b.id);
        assert_eq!(repo.get_app(a.id).unwrap(), a);
        assert_eq!(repo.get_app_by_name("search").unwrap(), b);
        assert!(matches!(
            repo.create_app("billing", "another-secret", NOW),
            Err(RepoError::Conflict { what: "app", .. })
        ));
        assert!(matches!(
            repo.create_app("x", "short", NOW),
            Err(RepoError::Invalid {
                field: "secret",
                ..
            })
        ));
        assert!(matches!(
            repo.create_app("", "secret-secret", NOW),
            Err(RepoError::Invalid { field: "name", .. })
        ));
        assert!(matches!(
            repo.get_app(AppId(99)),
            Err(RepoError::NotFound { what: "app", .. })
        ));
        assert!(matches!(
            repo.get_app_by_name("nope"),
            Err(RepoError::NotFound { what: "app", .. })
        ));
        assert!(matches!(
            repo.get_app_by_name(&"n".repeat(10_000)),
            Err(RepoError::NotFound { what: "app", .. })
        ));
        assert_eq!(repo.list_apps().unwrap(), vec![a, b]);
    });
}

/// One-line table tests of job validation: each edit must be refused naming `field`.
#[test]
fn job_validation_names_the_field() {
    let base = cron_job(AppId(1));
    let check = |field: &str, edit: &dyn Fn(&mut JobRecord)| {
        let mut j = base.clone();
        edit(&mut j);
        match j.validate() {
            Err(RepoError::Invalid { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: expected Invalid, got {other:?}"),
        }
    };
    assert!(base.validate().is_ok());
    check("name", &|j| j.name = " ".into());
    check("name", &|j| j.name = "x".repeat(200));
    check("time_expression", &|j| {
        j.time_expression = "61 * * * * ?".into()
    });
    check("time_expression", &|j| {
        j.time_expression_type = TimeExpressionType::FixedRate;
        j.time_expression = "0".into();
    });
    check("time_expression", &|j| {
        j.time_expression_type = TimeExpressionType::Api;
    });
    check("time_zone", &|j| j.time_zone = Some("Mars/Olympus".into()));
    check("processor", &|j| j.processor = String::new());
    check("params", &|j| j.params = "p".repeat(MAX_PARAMS_LEN + 1));
    check("concurrency", &|j| j.concurrency = 0);
    check("designated_workers", &|j| {
        j.dispatch_strategy = DispatchStrategy::Specify
    });
    check("designated_workers", &|j| {
        j.designated_workers = vec![" ".into()]
    });
    check("min_cpu_cores", &|j| j.min_cpu_cores = -1.0);
    check("min_memory_gb", &|j| j.min_memory_gb = f64::NAN);
    check("min_disk_gb", &|j| j.min_disk_gb = f64::INFINITY);
    check("lifecycle", &|j| {
        j.lifecycle = Lifecycle {
            start: Some(10),
            end: Some(5),
        }
    });
    // Defaults are the documented ones.
    assert_eq!(base.concurrency, 5);
    assert_eq!(base.max_instances, 0);
    assert!(base.enabled);
    assert_eq!(base.dispatch_strategy, DispatchStrategy::HealthFirst);
}

#[test]
fn jobs_create_update_delete_list() {
    each_repository(|place| {
        let repo = place.open();
        let a = app(&repo, "a");
        let other = app(&repo, "b");
        assert!(matches!(
            repo.create_job(cron_job(AppId(77)), None, NOW),
            Err(RepoError::NotFound { what: "app", .. })
        ));
        let jobs: Vec<_> = (0..25).map(|i| job(&repo, a.id, Some(NOW + i))).collect();
        job(&repo, other.id, None);
        assert_eq!(jobs[0].created_at, NOW);
        assert_eq!(repo.get_job(jobs[3].id).unwrap(), jobs[3]);

        // Pages of 10 return each of the app's jobs once, in id order.
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = repo
                .list_jobs(a.id, &JobFilter::default(), cursor, 10)
                .unwrap();
            seen.extend(page.items.iter().map(|j| j.id));
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(seen, jobs.iter().map(|j| j.id).collect::<Vec<_>>());

        // Update keeps created_at and the run counter, moves the trigger.
        fire(&repo, &jobs[0], NOW, Some(NOW + 300_000));
        let mut edited = jobs[0].clone();
        edited.name = "renamed".into();
        edited.created_at = 0;
        let saved = repo
            .update_job(edited, Some(NOW + 1), NOW + 5)
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(saved.created_at, NOW);
        assert_eq!(saved.updated_at, NOW + 5);
        assert_eq!(repo.get_job(jobs[0].id).unwrap().name, "renamed");
        assert_eq!(
            repo.trigger(jobs[0].id),
            Some(TriggerRecord {
                next_trigger: Some(NOW + 1),
                runs: 1
            })
        );
        let mut moved = saved.clone();
        moved.app_id = other.id;
        assert!(matches!(
            repo.update_job(moved, None, NOW),
            Err(RepoError::Invalid {
                field: "app_id",
                ..
            })
        ));

        // Delete removes the job, its index row and its trigger.
        repo.delete_job(jobs[1].id).unwrap().wait().unwrap();
        assert!(matches!(
            repo.get_job(jobs[1].id),
            Err(RepoError::NotFound { what: "job", .. })
        ));
        assert_eq!(repo.trigger(jobs[1].id), None);
        let all = repo.list_jobs(a.id, &JobFilter::default(), None, 1000);
        assert_eq!(all.unwrap().items.len(), 24);
        let state = repo.load().unwrap();
        assert!(state.jobs.iter().all(|j| j.job.id != jobs[1].id));
        assert!(matches!(
            repo.fire(InstanceRecord::new(jobs[1].id, a.id, "", NOW), None),
            Err(RepoError::NotFound { what: "job", .. })
        ));
        assert!(matches!(
            repo.delete_job(jobs[1].id),
            Err(RepoError::NotFound { .. })
        ));
    });
}

#[test]
fn fire_inserts_the_instance_and_moves_the_trigger() {
    each_repository(|place| {
        let repo = place.open();
        let a = app(&repo, "a");
        let j = job(&repo, a.id, Some(NOW));
        let i1 = fire(&repo, &j, NOW, Some(NOW + 300_000));
        let i2 = fire(&repo, &j, NOW + 300_000, Some(NOW + 600_000));
        assert!(i2.id > i1.id);
        assert_eq!((i1.run, i2.run), (1, 2));
        assert_eq!(repo.get_instance(i2.id).unwrap(), i2);
        let t = repo.trigger(j.id).unwrap();
        assert_eq!(t.next_trigger, Some(NOW + 600_000));
        assert_eq!(t.runs, 2);
        let state = repo.load().unwrap();
        assert_eq!(state.jobs[0].trigger, t);
        assert_eq!(state.active, vec![i1, i2]);
    });
}

#[test]
fn a_fire_that_is_no_longer_current_writes_nothing() {
    each_repository(|place| {
        let repo = place.open();
        let a = app(&repo, "a");
        let j = job(&repo, a.id, Some(NOW));
        // An update replaced the schedule between the fire's decision and its write.
        let updated = repo
            .update_job(j.clone(), Some(NOW + 42), NOW)
            .unwrap()
            .wait()
            .unwrap();
        let stale = InstanceRecord::new(j.id, a.id, "", NOW);
        let none = repo.fire_if(stale, Some(NOW + 300_000), || false).unwrap();
        assert!(none.is_none());
        let t = repo.trigger(updated.id).unwrap();
        assert_eq!(
            t.next_trigger,
            Some(NOW + 42),
            "the update's next trigger stands"
        );
        assert_eq!(t.runs, 0);
        assert!(repo.load().unwrap().active.is_empty());
        // Still current: the same call fires.
        let fired = repo
            .fire_if(
                InstanceRecord::new(j.id, a.id, "", NOW + 42),
                Some(NOW + 99),
                || true,
            )
            .unwrap()
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(fired.run, 1);
        assert_eq!(repo.trigger(j.id).unwrap().next_trigger, Some(NOW + 99));
    });
}

#[test]
fn lifecycle_through_the_repo_and_delayed_runs() {
    each_repository(|place| {
        let repo = place.open();
        let a = app(&repo, "a");
        let j = job(&repo, a.id, None);
        let mut delayed = repo
            .create_instance(
                InstanceRecord::new(j.id, a.id, "p", NOW + 60_000),
                Some(NOW + 60_000),
            )
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(delayed.run, 0);
        let state = repo.load().unwrap();
        assert_eq!(
            state.delayed,
            vec![DelayedRun {
                instance_id: delayed.id,
                job_id: j.id,
                due: NOW + 60_000
            }]
        );
        // Dispatch → the delayed row goes; success → it leaves the active set.
        delayed.dispatch("10.0.0.1:7000", NOW + 60_001).unwrap();
        repo.update_instance(&delayed).unwrap().wait().unwrap();
        assert!(repo.load().unwrap().delayed.is_empty());
        let out = delayed
            .apply_report(
                attempt_base(1) + 1,
                "10.0.0.1:7000",
                InstanceStatus::Succeed,
                Some("ok"),
                NOW + 61_000,
            )
            .unwrap();
        assert_eq!(out, ReportOutcome::Applied);
        repo.update_instance(&delayed).unwrap().wait().unwrap();
        let state = repo.load().unwrap();
        assert!(state.active.is_empty());
        let got = repo.get_instance(delayed.id).unwrap();
        assert_eq!(got.status, InstanceStatus::Succeed);
        assert_eq!(got.result.as_deref(), Some("ok"));
        assert_eq!(got.finished_time, Some(NOW + 61_000));
        // Unknown ids and mismatched jobs are refused.
        let mut ghost = got.clone();
        ghost.id = InstanceId(9999);
        assert!(matches!(
            repo.update_instance(&ghost),
            Err(RepoError::NotFound {
                what: "instance",
                ..
            })
        ));
        let mut moved = got.clone();
        moved.job_id = JobId(12345);
        assert!(matches!(
            repo.update_instance(&moved),
            Err(RepoError::Invalid { .. })
        ));
        assert!(matches!(
            repo.create_instance(InstanceRecord::new(JobId(4242), a.id, "", NOW), None),
            Err(RepoError::NotFound { what: "job", .. })
        ));
        let mut big = InstanceRecord::new(j.id, a.id, "", NOW);
        big.params = "x".repeat(MAX_PARAMS_LEN + 1);
        assert!(matches!(
            repo.create_instance(big, None),
            Err(RepoError::Invalid {
                field: "params",
                ..
            })
        ));
    });
}

/// A batch of instances is one write: consecutive ids in order, every index row, delayed
/// rows for the delayed ones, durable across a reopen; an empty or mixed batch, or an
/// invalid record in it, writes nothing.
#[test]
fn a_batch_of_instances_is_created_in_one_write() {
    each_repository(|place| {
        let repo = place.open();
        let a = app(&repo, "a");
        let j = job(&repo, a.id, None);
        let other = job(&repo, a.id, None);
        let runs: Vec<_> = (0..5)
            .map(|i| {
                let due = NOW + i * 1000;
                let rec = InstanceRecord::new(j.id, a.id, format!("p{i}"), due);
                (rec, (i == 4).then_some(due))
            })
            .collect();
        let created = repo.create_instances(runs).unwrap().wait().unwrap();
        let ids: Vec<u64> = created.iter().map(|r| r.id.0).collect();
        assert_eq!(ids.len(), 5);
        assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
        for (i, rec) in created.iter().enumerate() {
            assert_eq!(rec.params, format!("p{i}"));
        }
        // Refused whole: nothing of it is written.
        assert!(repo.create_instances(Vec::new()).is_err());
        let mixed = vec![
            (InstanceRecord::new(j.id, a.id, "", NOW), None),
            (InstanceRecord::new(other.id, a.id, "", NOW), None),
        ];
        assert!(matches!(
            repo.create_instances(mixed),
            Err(RepoError::Invalid { .. })
        ));
        let mut big = InstanceRecord::new(j.id, a.id, "", NOW);
        big.params = "x".repeat(MAX_PARAMS_LEN + 1);
        let bad = vec![
            (InstanceRecord::new(j.id, a.id, "", NOW), None),
            (big, None),
        ];
        assert!(repo.create_instances(bad).is_err());
        drop(repo);
        let repo = place.open();
        let state = repo.load().unwrap();
        assert_eq!(state.active.len(), 5, "only the accepted batch");
        assert_eq!(
            state.delayed,
            vec![DelayedRun {
                instance_id: created[4].id,
                job_id: j.id,
                due: NOW + 4000
            }]
        );
        for rec in &created {
            assert_eq!(repo.get_instance(rec.id).unwrap().params, rec.params);
        }
    });
}

/// Listing 1000 instances in pages of 100 returns each exactly once, newest first; filters by
/// job and status.
#[test]
fn pagination_returns_each_instance_once_in_order() {
    each_repository(|place| {
        let repo = place.open();
        let a = app(&repo, "a");
        let b = app(&repo, "b");
        let j1 = job(&repo, a.id, None);
        let j2 = job(&repo, a.id, None);
        let jb = job(&repo, b.id, None);
        // Submit everything, then wait: the log store group-commits them.
        let commits: Vec<_> = (0..1000)
            .map(|i| {
                let j = if i % 2 == 0 { &j1 } else { &j2 };
                repo.fire(InstanceRecord::new(j.id, a.id, "", NOW + i), None)
                    .unwrap()
            })
            .collect();
        let mut all: Vec<InstanceRecord> = commits.into_iter().map(|c| c.wait().unwrap()).collect();
        fire(&repo, &jb, NOW, None);
        // Mark every third one FAILED.
        for inst in all.iter_mut().step_by(3) {
            inst.fail("no eligible worker", NOW + 2000).unwrap();
            repo.update_instance(inst).unwrap().wait().unwrap();
        }

        let list = |filter: InstanceFilter, page: usize| {
            let mut out = Vec::new();
            let mut cursor = None;
            let mut pages = 0;
            loop {
                let p = repo.list_instances(a.id, filter, cursor, page).unwrap();
                assert!(p.items.len() <= page);
                out.extend(p.items.into_iter().map(|i| i.id));
                pages += 1;
                match p.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
            (out, pages)
        };
        let newest_first = |pred: &dyn Fn(&InstanceRecord) -> bool| {
            let mut v: Vec<_> = all.iter().filter(|i| pred(i)).map(|i| i.id).collect();
            v.reverse();
            v
        };
        let (ids, pages) = list(InstanceFilter::default(), 100);
        assert_eq!(ids, newest_first(&|_| true));
        assert!((10..=11).contains(&pages));
        let (ids, _) = list(
            InstanceFilter {
                job: Some(j2.id),
                ..InstanceFilter::default()
            },
            100,
        );
        assert_eq!(ids, newest_first(&|i| i.job_id == j2.id));
        let (ids, _) = list(
            InstanceFilter {
                status: Some(InstanceStatus::Failed),
                ..InstanceFilter::default()
            },
            37,
        );
        assert_eq!(ids, newest_first(&|i| i.status == InstanceStatus::Failed));
        // Another app's job lists nothing under this app.
        let (ids, _) = list(
            InstanceFilter {
                job: Some(jb.id),
                ..InstanceFilter::default()
            },
            100,
        );
        assert!(ids.is_empty());
        // Time ranges are half-open, combine with the other filters, and page like them.
        let range = |from, to| TimeRange { from, to };
        let trigger_cases: [(TimeRange, &dyn Fn(i64) -> bool); 4] = [
            (range(Some(NOW + 100), Some(NOW + 200)), &|t| {
                (NOW + 100..NOW + 200).contains(&t)
            }),
            (range(Some(NOW + 990), None), &|t| t >= NOW + 990),
            (range(None, Some(NOW + 3)), &|t| t < NOW + 3),
            (range(Some(NOW + 5), Some(NOW + 5)), &|_| false),
        ];
        for (trigger, keep) in trigger_cases {
            let (ids, _) = list(
                InstanceFilter {
                    trigger,
                    ..InstanceFilter::default()
                },
                7,
            );
            assert_eq!(ids, newest_first(&|i| keep(i.trigger_time)), "{trigger:?}");
        }
        let (ids, _) = list(
            InstanceFilter {
                job: Some(j1.id),
                trigger: range(Some(NOW + 100), Some(NOW + 400)),
                ..InstanceFilter::default()
            },
            10,
        );
        let want = newest_first(&|i| {
            i.job_id == j1.id && (NOW + 100..NOW + 400).contains(&i.trigger_time)
        });
        assert_eq!(ids, want);
        assert_eq!(want.len(), 150);
        // A finish range keeps only finished instances, by their finish time.
        let finished_cases: [(TimeRange, bool); 4] = [
            (range(Some(NOW + 2000), Some(NOW + 2001)), true),
            (range(Some(NOW + 2000), None), true),
            (range(None, Some(NOW + 2000)), false),
            (range(Some(NOW + 2001), None), false),
        ];
        for (finished, any) in finished_cases {
            let (ids, _) = list(
                InstanceFilter {
                    finished,
                    ..InstanceFilter::default()
                },
                50,
            );
            let want = if any {
                newest_first(&|i| i.finished_time.is_some())
            } else {
                Vec::new()
            };
            assert_eq!(ids.len(), if any { 334 } else { 0 }, "{finished:?}");
            assert_eq!(ids, want, "{finished:?}");
        }
        assert_eq!(repo.load().unwrap().active.len(), 1000 - 334 + 1);
    });
}

/// Name, tags, time expression type, execute type, enabled.
type LabelledSpec = (
    &'static str,
    &'static [&'static str],
    TimeExpressionType,
    ExecuteType,
    bool,
);

/// A job of `app` with the given name, labels and kinds.
fn labelled_job(
    repo: &Repo,
    app: AppId,
    name: &str,
    tags: &[&str],
    kind: TimeExpressionType,
    exec: ExecuteType,
    enabled: bool,
) -> JobRecord {
    let expr = match kind {
        TimeExpressionType::Cron => "0 */5 * * * ?",
        TimeExpressionType::FixedRate => "60000",
        _ => "",
    };
    let mut j = JobRecord::new(app, name, kind, expr, "noop");
    j.tags = tags.iter().map(|t| t.to_string()).collect();
    j.description = format!("the {name} job");
    j.execute_type = exec;
    j.enabled = enabled;
    repo.create_job(j, None, NOW).unwrap().wait().unwrap()
}

#[test]
fn job_listing_filters_each_field_and_pages_the_matches() {
    use ExecuteType::*;
    use TimeExpressionType::*;
    each_repository(|place| {
        let repo = place.open();
        let a = app(&repo, "a");
        let b = app(&repo, "b");
        let specs: &[LabelledSpec] = &[
            (
                "Nightly-Export",
                &["etl", "team:data"],
                Cron,
                Standalone,
                true,
            ),
            ("export-orders", &["etl"], FixedRate, Map, true),
            ("cleanup", &["ops"], Cron, Broadcast, false),
            ("Report EXPORT", &[], Api, Standalone, false),
            ("rebuild", &["team:data"], Api, MapReduce, true),
        ];
        let jobs: Vec<JobRecord> = specs
            .iter()
            .map(|(n, t, k, e, on)| labelled_job(&repo, a.id, n, t, *k, *e, *on))
            .collect();
        // Another app's matching job never shows.
        labelled_job(&repo, b.id, "export", &["etl"], Cron, Standalone, true);
        let names = |f: JobFilter| -> Vec<String> {
            let mut out = Vec::new();
            let mut cursor = None;
            loop {
                let p = repo.list_jobs(a.id, &f, cursor, 1).unwrap();
                assert!(p.items.len() <= 1);
                out.extend(p.items.into_iter().map(|j| j.name));
                match p.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => return out,
                }
            }
        };
        let f = JobFilter::default;
        let cases: Vec<(JobFilter, &[&str])> = vec![
            (
                f(),
                &[
                    "Nightly-Export",
                    "export-orders",
                    "cleanup",
                    "Report EXPORT",
                    "rebuild",
                ],
            ),
            (
                JobFilter {
                    name: Some("export".into()),
                    ..f()
                },
                &["Nightly-Export", "export-orders", "Report EXPORT"],
            ),
            (
                JobFilter {
                    name: Some("ORDERS".into()),
                    ..f()
                },
                &["export-orders"],
            ),
            (
                JobFilter {
                    name: Some("nothing".into()),
                    ..f()
                },
                &[],
            ),
            (
                JobFilter {
                    tag: Some("etl".into()),
                    ..f()
                },
                &["Nightly-Export", "export-orders"],
            ),
            (
                JobFilter {
                    tag: Some("team:data".into()),
                    ..f()
                },
                &["Nightly-Export", "rebuild"],
            ),
            // Tags match exactly: no substring, no case folding.
            (
                JobFilter {
                    tag: Some("et".into()),
                    ..f()
                },
                &[],
            ),
            (
                JobFilter {
                    tag: Some("ETL".into()),
                    ..f()
                },
                &[],
            ),
            (
                JobFilter {
                    time_expression_type: Some(Cron),
                    ..f()
                },
                &["Nightly-Export", "cleanup"],
            ),
            (
                JobFilter {
                    time_expression_type: Some(Api),
                    ..f()
                },
                &["Report EXPORT", "rebuild"],
            ),
            (
                JobFilter {
                    execute_type: Some(Map),
                    ..f()
                },
                &["export-orders"],
            ),
            (
                JobFilter {
                    execute_type: Some(Standalone),
                    ..f()
                },
                &["Nightly-Export", "Report EXPORT"],
            ),
            (
                JobFilter {
                    enabled: Some(false),
                    ..f()
                },
                &["cleanup", "Report EXPORT"],
            ),
            (
                JobFilter {
                    enabled: Some(true),
                    ..f()
                },
                &["Nightly-Export", "export-orders", "rebuild"],
            ),
            (
                JobFilter {
                    name: Some("export".into()),
                    tag: Some("etl".into()),
                    time_expression_type: Some(Cron),
                    execute_type: Some(Standalone),
                    enabled: Some(true),
                },
                &["Nightly-Export"],
            ),
        ];
        for (filter, want) in cases {
            assert_eq!(names(filter.clone()), *want, "{filter:?}");
        }
        // The labels are stored and read back.
        let got = repo.get_job(jobs[0].id).unwrap();
        assert_eq!(got.tags, vec!["etl".to_owned(), "team:data".to_owned()]);
        assert_eq!(got.description, "the Nightly-Export job");
    });
}

#[test]
fn job_labels_are_validated() {
    each_repository(|place| job_labels_are_validated_in(&place.open()));
}

fn job_labels_are_validated_in(repo: &Repo) {
    let a = app(repo, "a");
    let bad: &[(&[&str], &str)] = &[
        (&["a,b"], "tags"),
        (&[""], "tags"),
        (&["x", "x"], "tags"),
        (&[" x"], "tags"),
    ];
    for (tags, field) in bad {
        let mut j = cron_job(a.id);
        j.tags = tags.iter().map(|t| t.to_string()).collect();
        assert!(
            matches!(repo.create_job(j, None, NOW), Err(RepoError::Invalid { field: f, .. }) if f == *field),
            "{tags:?}"
        );
    }
    let mut j = cron_job(a.id);
    j.description = "d".repeat(ferrojob::model::MAX_DESCRIPTION_LEN + 1);
    assert!(matches!(
        repo.create_job(j, None, NOW),
        Err(RepoError::Invalid {
            field: "description",
            ..
        })
    ));
}

#[test]
fn a_filtered_job_listing_examines_a_bounded_number_of_jobs() {
    each_repository(|place| {
        a_filtered_job_listing_examines_a_bounded_number_of_jobs_in(&place.open())
    });
}

fn a_filtered_job_listing_examines_a_bounded_number_of_jobs_in(repo: &Repo) {
    let a = app(repo, "a");
    let commits: Vec<_> = (0..MAX_LIST_SCAN + 5)
        .map(|i| {
            let mut j = cron_job(a.id);
            if i == MAX_LIST_SCAN + 2 {
                j.tags = vec!["needle".into()];
            }
            repo.create_job(j, None, NOW).unwrap()
        })
        .collect();
    let ids: Vec<JobId> = commits.into_iter().map(|c| c.wait().unwrap().id).collect();
    let filter = JobFilter {
        tag: Some("needle".into()),
        ..JobFilter::default()
    };
    // The first page stops after MAX_LIST_SCAN jobs, empty but with a cursor.
    let first = repo.list_jobs(a.id, &filter, None, 10).unwrap();
    assert!(first.items.is_empty());
    assert_eq!(first.next_cursor, Some(ids[MAX_LIST_SCAN - 1].0));
    let second = repo
        .list_jobs(a.id, &filter, first.next_cursor, 10)
        .unwrap();
    assert_eq!(
        second.items.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![ids[MAX_LIST_SCAN + 2]]
    );
    assert_eq!(second.next_cursor, None);
}

#[test]
fn workflow_listing_filters_name_tag_and_type() {
    each_repository(|place| {
        let repo = place.open();
        let a = app(&repo, "a");
        let b = app(&repo, "b");
        let j = job(&repo, a.id, None);
        let def = |name: &str,
                   kind: &str,
                   expr: &str,
                   tags: &[&str]|
         -> ferrojob::workflow::WorkflowDef {
            serde_json::from_value(serde_json::json!({
                "name": name, "time_expression_type": kind, "time_expression": expr,
                "tags": tags, "description": format!("the {name} flow"),
                "nodes": [{"id": 1, "job_id": j.id.0}],
            }))
            .unwrap()
        };
        let create = |app: AppId, d: &ferrojob::workflow::WorkflowDef| {
            repo.create_workflow(app, d, None, NOW)
                .unwrap()
                .wait()
                .unwrap()
        };
        let w1 = create(a.id, &def("Nightly ETL", "CRON", "0 0 2 * * ?", &["etl"]));
        create(a.id, &def("adhoc-etl", "API", "", &["etl", "manual"]));
        create(a.id, &def("billing", "API", "", &[]));
        create(b.id, &def("etl", "API", "", &["etl"]));
        // A renamed and retagged workflow is filtered by its current definition.
        let d = def("renamed", "FIXED_RATE", "60000", &["moved"]);
        repo.update_workflow(w1.id, &d, None, NOW + 1)
            .unwrap()
            .wait()
            .unwrap();
        let names = |f: WorkflowFilter| -> Vec<String> {
            let mut out = Vec::new();
            let mut cursor = None;
            loop {
                let p = repo.list_workflows(a.id, &f, cursor, 1).unwrap();
                out.extend(p.items.into_iter().map(|w| w.name));
                match p.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => return out,
                }
            }
        };
        let f = WorkflowFilter::default;
        let cases: Vec<(WorkflowFilter, &[&str])> = vec![
            (f(), &["renamed", "adhoc-etl", "billing"]),
            (
                WorkflowFilter {
                    name: Some("ETL".into()),
                    ..f()
                },
                &["adhoc-etl"],
            ),
            (
                WorkflowFilter {
                    tag: Some("etl".into()),
                    ..f()
                },
                &["adhoc-etl"],
            ),
            (
                WorkflowFilter {
                    tag: Some("moved".into()),
                    ..f()
                },
                &["renamed"],
            ),
            (
                WorkflowFilter {
                    time_expression_type: Some(TimeExpressionType::Api),
                    ..f()
                },
                &["adhoc-etl", "billing"],
            ),
            (
                WorkflowFilter {
                    time_expression_type: Some(TimeExpressionType::FixedRate),
                    ..f()
                },
                &["renamed"],
            ),
            (
                WorkflowFilter {
                    name: Some("a".into()),
                    tag: Some("manual".into()),
                    time_expression_type: Some(TimeExpressionType::Api),
                },
                &["adhoc-etl"],
            ),
        ];
        for (filter, want) in cases {
            assert_eq!(names(filter.clone()), *want, "{filter:?}");
        }
    });
}

/// The retry backoff, the overlap policy and the log settings round-trip through create,
/// update, listing and a reopen.
#[test]
fn job_policies_and_log_settings_round_trip() {
    use ferrojob::model::LogType;
    use ferrojob::policy::{BackoffShape, OverlapPolicy, RetryBackoff};
    each_repository(|place| {
        let (created, updated) = {
            let repo = place.open();
            let a = app(&repo, "a");
            let defaults = job(&repo, a.id, None);
            assert_eq!(repo.get_job(defaults.id).unwrap(), defaults);
            assert_eq!(defaults.overlap_policy, OverlapPolicy::Fail);
            let mut j = cron_job(a.id);
            j.name = "policies".into();
            j.instance_retries = 3;
            j.retry_backoff = RetryBackoff {
                shape: BackoffShape::Exponential,
                initial_delay_ms: 250,
                factor: 1.5,
                max_delay_ms: 9_000,
                jitter: 0.25,
            };
            j.overlap_policy = OverlapPolicy::Queue;
            j.log = LogSettings {
                log_type: LogType::Local,
                level: LogLevel::Debug,
            };
            let created = repo.create_job(j, None, NOW).unwrap().wait().unwrap();
            assert_eq!(repo.get_job(created.id).unwrap(), created);
            let mut u = created.clone();
            u.retry_backoff = RetryBackoff::fixed(5_000);
            u.overlap_policy = OverlapPolicy::Replace;
            u.log = LogSettings {
                log_type: LogType::Null,
                level: LogLevel::Error,
            };
            let updated = repo.update_job(u, None, NOW + 1).unwrap().wait().unwrap();
            assert_eq!(repo.get_job(updated.id).unwrap(), updated);
            let listed = repo
                .list_jobs(a.id, &JobFilter::default(), None, 10)
                .unwrap()
                .items;
            assert_eq!(listed, vec![defaults, updated.clone()]);
            (created, updated)
        };
        let repo = place.open();
        assert_eq!(repo.get_job(created.id).unwrap(), updated);
        let loaded = repo.load().unwrap();
        assert!(
            loaded.jobs.iter().any(|l| l.job == updated),
            "{}",
            place.name()
        );
    });
}

/// Paging backward returns, in append order, the page just before a line: against the
/// forward listing, across the store's scan chunks, with another instance's lines around.
#[test]
fn logs_page_backward_like_the_forward_listing_reversed() {
    each_repository(|place| {
        let repo = place.open();
        let a = app(&repo, "a");
        let j = job(&repo, a.id, None);
        let i1 = fire(&repo, &j, NOW, None);
        let i2 = fire(&repo, &j, NOW + 1, None);
        let line = |n: usize| LogLine {
            time: NOW + n as i64,
            level: LogLevel::Info,
            content: format!("line {n}"),
            attempt: 1 + (n / 1000) as u32,
            fields: Vec::new(),
        };
        // More lines than one scan chunk (MAX_PAGE), interleaved with another instance's.
        for chunk in 0..3 {
            let lines = (chunk * 900..(chunk + 1) * 900).map(line);
            repo.append_logs(i1.id, lines).unwrap().wait().unwrap();
            repo.append_logs(i2.id, [line(0)]).unwrap().wait().unwrap();
        }
        let mut forward = Vec::new();
        let mut cursor = None;
        loop {
            let p = repo.read_logs(i1.id, cursor, 1000).unwrap();
            forward.extend(p.items);
            match p.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(forward.len(), 2700);
        let mut backward = Vec::new();
        let mut before = u64::MAX;
        loop {
            let page = repo.read_logs_before(i1.id, before, 700).unwrap();
            let Some(first) = page.first() else { break };
            before = first.seq;
            assert!(page.windows(2).all(|w| w[0].seq < w[1].seq));
            backward.splice(0..0, page);
        }
        assert_eq!(backward, forward);
        assert_eq!(backward[1500].line.attempt, 2);
        // Before the first line: nothing; a limit of 0 still gives one line.
        assert!(repo
            .read_logs_before(i1.id, forward[0].seq, 10)
            .unwrap()
            .is_empty());
        let one = repo.read_logs_before(i1.id, forward[5].seq, 0).unwrap();
        assert_eq!(one, forward[4..5].to_vec());
    });
}

#[test]
fn logs_append_in_order_with_caps() {
    each_repository(|place| {
        let repo = place.open();
        let a = app(&repo, "a");
        let j = job(&repo, a.id, None);
        let i1 = fire(&repo, &j, NOW, None);
        let i2 = fire(&repo, &j, NOW + 1, None);
        // Every line carries its attempt, and some structured fields (order kept, any text).
        let line = |n: usize| LogLine {
            time: NOW + n as i64,
            level: LogLevel::Info,
            content: format!("line {n}"),
            attempt: (n % 3) as u32,
            fields: if n.is_multiple_of(4) {
                vec![
                    LogLineField {
                        key: "rows".into(),
                        value: n.to_string(),
                    },
                    LogLineField {
                        key: "quoted \"é\"".into(),
                        value: "a\nb\u{0}".into(),
                    },
                    LogLineField {
                        key: "empty".into(),
                        value: String::new(),
                    },
                ]
            } else {
                Vec::new()
            },
        };
        let r = repo
            .append_logs(i1.id, (0..150).map(line))
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!((r.stored, r.dropped, r.truncated), (150, 0, 0));
        repo.append_logs(i2.id, [line(0)]).unwrap().wait().unwrap();
        let long = LogLine {
            content: "é".repeat(MAX_LOG_LINE_LEN),
            ..line(150)
        };
        let r = repo.append_logs(i1.id, [long]).unwrap().wait().unwrap();
        assert_eq!(r.truncated, 1);
        let mut got = Vec::new();
        let mut cursor = None;
        loop {
            let p = repo.read_logs(i1.id, cursor, 64).unwrap();
            got.extend(p.items);
            match p.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(got.len(), 151);
        // Every repository stores a NUL character as U+FFFD.
        let stored = |n: usize| {
            let mut l = line(n);
            for f in &mut l.fields {
                f.value = f.value.replace('\0', "\u{FFFD}");
            }
            l
        };
        for (n, e) in got.iter().take(150).enumerate() {
            assert_eq!(e.line, stored(n), "{}", place.name());
        }
        let last = &got[150].line.content;
        assert!(last.len() <= MAX_LOG_LINE_LEN + 32 && last.ends_with("bytes truncated]"));
        assert!(got.windows(2).all(|w| w[0].seq < w[1].seq));
        assert_eq!(repo.read_logs(i2.id, None, 10).unwrap().items.len(), 1);
        assert!(matches!(
            repo.append_logs(InstanceId(424242), [line(0)]),
            Err(RepoError::NotFound {
                what: "instance",
                ..
            })
        ));
        let r = repo
            .append_logs(i2.id, (0..5000).map(line))
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!((r.stored, r.dropped), (4096, 5000 - 4096));
    });
}

#[test]
fn corrupt_values_are_typed_errors_naming_table_and_key() {
    let store = memory();
    let repo = Repo::open(store.clone()).unwrap();
    let a = app(&repo, "a");
    let j = job(&repo, a.id, None);
    store
        .put("jobs", &j.id.0.to_be_bytes(), b"\x01garbage")
        .unwrap();
    match repo.get_job(j.id) {
        Err(RepoError::Corrupt { table, key, .. }) => {
            assert_eq!(table, "jobs");
            assert_eq!(key, format!("{:016x}", j.id.0));
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(matches!(repo.load(), Err(RepoError::Corrupt { .. })));
    store.put("triggers", b"short", b"").unwrap();
    assert!(matches!(
        Repo::open(store.clone()),
        Err(RepoError::Corrupt {
            table: "triggers",
            ..
        })
    ));
    let store = memory();
    store.put("meta", b"next_job_id", b"1234").unwrap();
    assert!(matches!(
        Repo::open(store),
        Err(RepoError::Corrupt { table: "meta", .. })
    ));
}

/// Builds a varied state: apps, jobs with triggers, fired, delayed, finished instances, logs.
fn populate(repo: &Repo) {
    let a = app(repo, "a");
    let b = app(repo, "b");
    let j1 = job(repo, a.id, Some(NOW));
    let mut fixed = JobRecord::new(b.id, "tick", TimeExpressionType::FixedRate, "1000", "noop");
    fixed.designated_workers = vec!["gpu".into()];
    fixed.dispatch_strategy = DispatchStrategy::Specify;
    let j2 = repo
        .create_job(fixed, Some(NOW + 1000), NOW)
        .unwrap()
        .wait()
        .unwrap();
    let j3 = job(repo, a.id, None);
    repo.delete_job(j3.id).unwrap().wait().unwrap();
    for k in 0..5 {
        fire(repo, &j2, NOW + k * 1000, Some(NOW + (k + 1) * 1000));
    }
    let mut done = fire(repo, &j1, NOW, Some(NOW + 300_000));
    done.dispatch("w1", NOW + 1).unwrap();
    done.apply_report(
        attempt_base(1) + 1,
        "w1",
        InstanceStatus::Failed,
        Some("boom"),
        NOW + 2,
    )
    .unwrap();
    repo.update_instance(&done).unwrap().wait().unwrap();
    repo.create_instance(
        InstanceRecord::new(j1.id, a.id, "{\"x\":1}", NOW + 9000),
        Some(NOW + 9000),
    )
    .unwrap()
    .wait()
    .unwrap();
    repo.append_logs(
        done.id,
        [LogLine {
            time: NOW,
            level: LogLevel::Error,
            content: "boom".into(),
            attempt: 0,
            fields: Vec::new(),
        }],
    )
    .unwrap()
    .wait()
    .unwrap();
}

#[test]
fn reopen_loads_exactly_the_state_before() {
    each_repository(reopen_loads_exactly_the_state_before_in);
}

fn reopen_loads_exactly_the_state_before_in(place: &dyn Place) {
    let (before, max_instance) = {
        let repo = place.open();
        populate(&repo);
        let state = repo.load().unwrap();
        let max = state.active.iter().map(|i| i.id.0).max().unwrap();
        (state, max)
    };
    assert_eq!(before.apps.len(), 2);
    assert_eq!(before.jobs.len(), 2);
    assert_eq!(before.delayed.len(), 1);
    assert_eq!(before.active.len(), 6);
    for _ in 0..2 {
        let repo = place.open();
        assert_eq!(repo.load().unwrap(), before);
        // Counters survive: no id is handed out twice, the run counter continues, names stay
        // unique.
        let j = &before.jobs[1];
        assert_eq!(repo.trigger(j.job.id), Some(j.trigger));
        assert!(matches!(
            repo.create_app("a", "secret-secret", NOW),
            Err(RepoError::Conflict { .. })
        ));
        drop(repo);
    }
    let repo = place.open();
    let j2 = &before.jobs[1].job;
    let next = fire(&repo, j2, NOW + 9999, None);
    assert!(next.id.0 > max_instance);
    assert_eq!(next.run, 6);
    let j = repo
        .create_job(cron_job(AppId(1)), None, NOW)
        .unwrap()
        .wait()
        .unwrap();
    assert!(j.id.0 > 3, "job id {} reused", j.id.0);
    let c = repo
        .create_app("c", "secret-secret", NOW)
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(c.id, AppId(3));
}

// ----- crash atomicity on the simulated file system -----

const SIM_DIR: &str = "/db";

fn sim_open(b: &SimBackend) -> Arc<dyn Store> {
    Arc::new(LogStore::open_with(Arc::new(b.clone()), SIM_DIR, log_opts()).unwrap())
}

#[test]
fn power_loss_right_after_an_acknowledged_fire_keeps_both_rows() {
    let b = SimBackend::new();
    let (j, inst) = {
        let repo = Repo::open(sim_open(&b)).unwrap();
        let a = app(&repo, "a");
        let j = job(&repo, a.id, Some(NOW));
        let inst = fire(&repo, &j, NOW, Some(NOW + 300_000));
        (j, inst)
    };
    // The crash image holds only what was fdatasynced; the store is not closed cleanly.
    let repo = Repo::open(sim_open(&b.crash())).unwrap();
    assert_eq!(repo.get_instance(inst.id).unwrap(), inst);
    assert_eq!(
        repo.trigger(j.id),
        Some(TriggerRecord {
            next_trigger: Some(NOW + 300_000),
            runs: 1
        })
    );
    assert_eq!(repo.load().unwrap().active, vec![inst]);
}

#[test]
fn a_write_failure_during_fire_leaves_neither_row() {
    for fault in [Fault::Write, Fault::SyncData] {
        let b = SimBackend::new();
        let (j, before) = {
            let repo = Repo::open(sim_open(&b)).unwrap();
            let a = app(&repo, "a");
            let j = job(&repo, a.id, Some(NOW));
            fire(&repo, &j, NOW, Some(NOW + 1000));
            let before = repo.load().unwrap();
            b.fail(fault, 0);
            let res = repo
                .fire(
                    InstanceRecord::new(j.id, a.id, "", NOW + 1000),
                    Some(NOW + 2000),
                )
                .unwrap()
                .wait();
            assert!(
                matches!(res, Err(RepoError::Store(_))),
                "{fault:?}: {res:?}"
            );
            (j, before)
        };
        for image in [b.crash(), b.process_crash()] {
            let repo = Repo::open(sim_open(&image)).unwrap();
            let after = repo.load().unwrap();
            // Under a process crash a failed fdatasync may still have written the batch: then
            // both rows are there, never one of them.
            if after != before {
                assert_eq!(fault, Fault::SyncData);
                assert_eq!(after.active.len(), 2);
                assert_eq!(after.jobs[0].trigger.next_trigger, Some(NOW + 2000));
                continue;
            }
            assert_eq!(repo.trigger(j.id).unwrap().next_trigger, Some(NOW + 1000));
            assert_eq!(after.active.len(), 1);
            assert!(matches!(
                repo.get_instance(InstanceId(after.active[0].id.0 + 1)),
                Err(RepoError::NotFound { .. })
            ));
        }
    }
}

#[test]
fn delete_instance_removes_every_row_and_its_log() {
    each_repository(|place| {
        let repo = place.open();
        let a = app(&repo, "a");
        let j = job(&repo, a.id, None);
        let keep = fire(&repo, &j, NOW, None);
        let mut old = fire(&repo, &j, NOW + 1, None);
        let lines = (0..10).map(|n| LogLine {
            time: n,
            level: LogLevel::Debug,
            content: String::new(),
            attempt: 0,
            fields: Vec::new(),
        });
        repo.append_logs(old.id, lines.clone())
            .unwrap()
            .wait()
            .unwrap();
        repo.append_logs(keep.id, lines).unwrap().wait().unwrap();
        assert!(matches!(
            repo.delete_instance(old.id, false),
            Err(RepoError::IllegalTransition { .. })
        ));
        old.cancel(NOW).unwrap();
        repo.update_instance(&old).unwrap().wait().unwrap();
        repo.delete_instance(old.id, false).unwrap().wait().unwrap();
        assert!(matches!(
            repo.get_instance(old.id),
            Err(RepoError::NotFound { .. })
        ));
        assert!(repo.read_logs(old.id, None, 100).unwrap().items.is_empty());
        assert_eq!(repo.read_logs(keep.id, None, 100).unwrap().items.len(), 10);
        let listed = repo
            .list_instances(a.id, InstanceFilter::default(), None, 100)
            .unwrap();
        assert_eq!(listed.items, vec![keep.clone()]);
        repo.delete_instance(keep.id, true).unwrap().wait().unwrap();
        drop(repo);
        if let Some(store) = place.store() {
            for table in [
                "instances",
                "app_insts",
                "job_insts",
                "active",
                "delayed",
                "logs",
            ] {
                assert_eq!(store.count(table), 0, "{table}");
            }
        }
    });
}

/// Writers on four threads: every id is handed out once, and after a reopen the counters are
/// past every id used.
#[test]
fn concurrent_writers_never_share_an_id() {
    each_repository(concurrent_writers_never_share_an_id_in);
}

fn concurrent_writers_never_share_an_id_in(place: &dyn Place) {
    let (j, mut ids) = {
        let repo = place.open();
        let a = app(&repo, "a");
        let j = job(&repo, a.id, None);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let repo = repo.clone();
                let j = j.clone();
                std::thread::spawn(move || {
                    // Distinct trigger times: a scheduled fire is unique per (job, time).
                    let commits: Vec<_> = (0..50)
                        .map(|k| {
                            let at = NOW + t * 1000 + k;
                            repo.fire(InstanceRecord::new(j.id, j.app_id, "", at), None)
                                .unwrap()
                        })
                        .collect();
                    let mut out = Vec::new();
                    for c in commits {
                        let i = c.wait().unwrap();
                        out.push((i.id.0, i.run));
                    }
                    out
                })
            })
            .collect();
        let ids: Vec<(u64, u64)> = threads
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        (j, ids)
    };
    ids.sort_unstable();
    let before = ids.len();
    ids.dedup_by_key(|p| p.0);
    assert_eq!(ids.len(), before);
    let mut runs: Vec<u64> = ids.iter().map(|p| p.1).collect();
    runs.sort_unstable();
    assert_eq!(runs, (1..=200).collect::<Vec<_>>());
    let repo = place.open();
    assert_eq!(repo.trigger(j.id).unwrap().runs, 200);
    let next = fire(&repo, &j, NOW + 10_000, None);
    assert!(next.id.0 > ids.last().unwrap().0);
}

/// `Commit` is a plain future: awaited without a runtime's help it resolves to the value.
#[test]
fn commit_is_a_future() {
    each_repository(|place| commit_is_a_future_in(&place.open()));
}

fn commit_is_a_future_in(repo: &Repo) {
    let a =
        futures::executor::block_on(repo.create_app("a", "secret-secret", NOW).unwrap()).unwrap();
    assert_eq!(repo.get_app(a.id).unwrap(), a);
}

#[test]
fn finished_beyond_names_the_oldest_finished_runs() {
    each_repository(|place| finished_beyond_names_the_oldest_finished_runs_in(&place.open()));
}

fn finished_beyond_names_the_oldest_finished_runs_in(repo: &Repo) {
    let a = app(repo, "a");
    let j = job(repo, a.id, None);
    let mut ids = Vec::new();
    for k in 0..10 {
        let mut i = fire(repo, &j, NOW + k, None);
        // Runs 3 and 7 are still waiting; the rest finished.
        if k != 3 && k != 7 {
            i.fail("x", NOW + k).unwrap();
            repo.update_instance(&i).unwrap().wait().unwrap();
        }
        ids.push(i.id);
    }
    // Finished, newest first: 9 8 6 5 4 2 1 0; keep 3 → prune 5 4 2 1 0.
    let prune = repo.finished_beyond(j.id, 3, 100).unwrap();
    assert_eq!(prune, vec![ids[5], ids[4], ids[2], ids[1], ids[0]]);
    assert_eq!(
        repo.finished_beyond(j.id, 3, 2).unwrap(),
        vec![ids[5], ids[4]]
    );
    assert!(repo.finished_beyond(j.id, 8, 100).unwrap().is_empty());
    for id in prune {
        repo.delete_instance(id, false).unwrap().wait().unwrap();
    }
    assert!(repo.finished_beyond(j.id, 3, 100).unwrap().is_empty());
    let left = repo
        .list_instances(a.id, InstanceFilter::default(), None, 100)
        .unwrap();
    assert_eq!(left.items.len(), 5);
}

/// A store that runs `hook` once, right after the first range read of `table`: a write that
/// commits between a listing's index read and its record reads.
struct RaceAfterRange {
    inner: MemoryStore,
    table: &'static str,
    #[allow(clippy::type_complexity)]
    hook: std::sync::Mutex<Option<Box<dyn FnOnce(&MemoryStore) + Send>>>,
}

impl std::fmt::Debug for RaceAfterRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaceAfterRange")
            .field("table", &self.table)
            .finish()
    }
}

impl Store for RaceAfterRange {
    fn get(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, ferrojob_store::StoreError> {
        self.inner.get(table, key)
    }
    fn range(
        &self,
        table: &str,
        range: &ferrojob_store::KeyRange,
        limit: usize,
    ) -> Result<Vec<ferrojob_store::KeyValue>, ferrojob_store::StoreError> {
        let rows = self.inner.range(table, range, limit)?;
        if table == self.table {
            if let Some(hook) = self.hook.lock().unwrap().take() {
                hook(&self.inner);
            }
        }
        Ok(rows)
    }
    fn submit(&self, batch: ferrojob_store::Batch) -> ferrojob_store::CommitHandle {
        self.inner.submit(batch)
    }
    fn flush(&self) -> Result<(), ferrojob_store::StoreError> {
        self.inner.flush()
    }
    fn count(&self, table: &str) -> usize {
        self.inner.count(table)
    }
    fn tables(&self) -> Vec<String> {
        self.inner.tables()
    }
}

/// A listing that races a prune answers the remaining rows (it used to fail as corrupt: the
/// index row it had read named a record deleted meanwhile). A missing record whose index row
/// is still there stays corruption.
#[test]
fn a_listing_that_races_a_prune_returns_the_remaining_rows() {
    for (table, by_job) in [(keys::APP_INSTANCES, false), (keys::JOB_INSTANCES, true)] {
        let store = Arc::new(RaceAfterRange {
            inner: MemoryStore::new(),
            table,
            hook: std::sync::Mutex::new(None),
        });
        let repo = Arc::new(Repo::open(store.clone()).unwrap());
        let a = app(&repo, "a");
        let j = job(&repo, a.id, None);
        let mut fires: Vec<InstanceRecord> =
            (0..5).map(|n| fire(&repo, &j, NOW + n, None)).collect();
        for f in &mut fires {
            f.cancel(NOW).unwrap();
            repo.update_instance(f).unwrap().wait().unwrap();
        }
        let pruned = fires[2].id;
        let pruner = Arc::clone(&repo);
        *store.hook.lock().unwrap() = Some(Box::new(move |_| {
            pruner
                .delete_instance(pruned, false)
                .unwrap()
                .wait()
                .unwrap();
        }));
        let filter = InstanceFilter {
            job: by_job.then_some(j.id),
            ..InstanceFilter::default()
        };
        let page = repo.list_instances(a.id, filter, None, 100).unwrap();
        let ids: Vec<InstanceId> = page.items.iter().map(|i| i.id).collect();
        let mut want: Vec<InstanceId> = fires
            .iter()
            .map(|f| f.id)
            .filter(|id| *id != pruned)
            .collect();
        want.reverse();
        assert_eq!(ids, want, "listing by {table}");
        if by_job {
            let beyond = repo.finished_beyond(j.id, 0, 100).unwrap();
            assert_eq!(beyond, want);
        }
        // An index row without its record (and no delete in flight) is still corruption.
        store
            .inner
            .commit(
                ferrojob_store::Batch::new()
                    .delete(keys::INSTANCES, keys::id(fires[0].id.0).to_vec()),
            )
            .unwrap();
        assert!(matches!(
            repo.list_instances(a.id, filter, None, 100),
            Err(RepoError::Corrupt { .. })
        ));
    }
}

// ----- alarms, channels, workflows -----

fn raised_alarm(job: JobId, instance: InstanceId) -> ferrojob::alarm::Alarm {
    ferrojob::alarm::Alarm {
        id: format!("job-{}-failures-{}", job.0, instance.0),
        job_id: job,
        instance_id: Some(instance),
        kind: ferrojob::alarm::AlarmKind::Failures,
        raised_at: 5,
        message: "failed".into(),
    }
}

#[test]
fn the_outbox_is_written_with_the_instance_and_survives_a_reopen() {
    use ferrojob::server::alarm_repo::{AlarmRecord, AttemptRecord, DeliveryStatus};
    each_repository(|place| {
        let (app, job, inst, stored) = {
            let repo = place.open();
            let app = app(&repo, "a").id;
            let job = JobRecord::new(app, "j", TimeExpressionType::Api, "", "noop");
            let job = repo.create_job(job, None, 0).unwrap().wait().unwrap().id;
            let inst = InstanceRecord::new(job, app, "", 0);
            let mut inst = repo.create_instance(inst, None).unwrap().wait().unwrap();
            inst.fail("boom", 5).unwrap();
            let raised = vec![
                AlarmRecord::raised(app, raised_alarm(job, inst.id), vec!["ops".into()]),
                AlarmRecord::raised(app, raised_alarm(JobId(99), inst.id), Vec::new()),
            ];
            let stored = repo
                .put_instance_with_alarms(&inst, None, raised)
                .unwrap()
                .wait()
                .unwrap();
            assert_eq!(repo.get_instance(inst.id).unwrap().status, inst.status);
            assert_ne!(stored[0].seq, stored[1].seq);
            // Only the one with a channel is pending; both are listed, newest first.
            let pending = repo.pending_alarms(None, 10).unwrap();
            assert_eq!(pending, vec![stored[0].clone()]);
            let listed = repo.list_alarms(app, None, 10).unwrap().items;
            assert_eq!(listed, vec![stored[1].clone(), stored[0].clone()]);
            (app, job, inst, stored)
        };
        // A reopened repo sees the same outbox and hands out fresh sequence numbers.
        let repo = place.open();
        assert_eq!(
            repo.pending_alarms(None, 10).unwrap(),
            vec![stored[0].clone()]
        );
        let mut delivered = stored[0].clone();
        delivered.push_attempt(AttemptRecord {
            at: 6,
            channel: "ops".into(),
            ok: true,
            detail: "200".into(),
        });
        delivered.status = DeliveryStatus::Delivered;
        repo.update_alarm(&delivered).unwrap().wait().unwrap();
        assert!(repo.pending_alarms(None, 10).unwrap().is_empty());
        let page = repo.list_alarms(app, None, 1).unwrap();
        assert_eq!(page.items, vec![stored[1].clone()]);
        let page = repo.list_alarms(app, page.next_cursor, 1).unwrap();
        assert_eq!(page.items, vec![delivered]);
        let more = AlarmRecord::raised(app, raised_alarm(job, InstanceId(1000)), Vec::new());
        let again = repo
            .put_instance_with_alarms(&inst, Some(inst.status), vec![more])
            .unwrap()
            .wait()
            .unwrap();
        assert!(again[0].seq > stored[1].seq);
    });
}

#[test]
fn alarm_pruning_keeps_the_newest_and_the_pending() {
    use ferrojob::server::alarm_repo::AlarmRecord;
    each_repository(|place| {
        let repo = place.open();
        let app = AppId(1);
        let mut alarms = Vec::new();
        for i in 0..10u64 {
            // The two oldest are pending, the rest history only.
            let channels = if i < 2 {
                vec!["ops".into()]
            } else {
                Vec::new()
            };
            alarms.push(AlarmRecord::raised(
                app,
                raised_alarm(JobId(1), InstanceId(i)),
                channels,
            ));
        }
        repo.insert_alarms(alarms).unwrap().wait().unwrap();
        let other =
            AlarmRecord::raised(AppId(2), raised_alarm(JobId(2), InstanceId(1)), Vec::new());
        repo.insert_alarms(vec![other]).unwrap().wait().unwrap();
        assert_eq!(repo.prune_alarms(app, 3, 100).unwrap().wait().unwrap(), 5);
        let left: Vec<u64> = repo
            .list_alarms(app, None, 100)
            .unwrap()
            .items
            .iter()
            .map(|a| a.instance_id.unwrap().0)
            .collect();
        assert_eq!(left, vec![9, 8, 7, 1, 0]);
        assert_eq!(
            repo.list_alarms(AppId(2), None, 100).unwrap().items.len(),
            1
        );
        assert_eq!(repo.prune_alarms(app, 3, 100).unwrap().wait().unwrap(), 0);
    });
}

#[test]
fn channels_are_put_listed_by_name_and_deleted() {
    use ferrojob::alarm::channel::ChannelKind;
    use ferrojob::server::alarm_repo::ChannelRecord;
    each_repository(|place| {
        let repo = place.open();
        let a = app(&repo, "a");
        let ch = |name: &str| ChannelRecord {
            app_id: a.id,
            name: name.into(),
            kind: ChannelKind::Webhook,
            url: "http://127.0.0.1:9/hook".into(),
            secret: Some("key".into()),
        };
        for name in ["ops", "Zeta", "alpha", "ops"] {
            repo.put_channel(&ch(name)).unwrap().wait().unwrap();
        }
        let names: Vec<String> = repo
            .list_channels(a.id)
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect();
        // Byte order of the names.
        assert_eq!(names, vec!["Zeta", "alpha", "ops"]);
        assert_eq!(repo.get_channel(a.id, "ops").unwrap(), ch("ops"));
        assert!(matches!(
            repo.put_channel(&ChannelRecord {
                app_id: AppId(77),
                ..ch("x")
            }),
            Err(RepoError::NotFound { what: "app", .. })
        ));
        repo.delete_channel(a.id, "ops").unwrap().wait().unwrap();
        assert!(matches!(
            repo.get_channel(a.id, "ops"),
            Err(RepoError::NotFound {
                what: "channel",
                ..
            })
        ));
        assert!(repo.delete_channel(a.id, "ops").is_err());
        assert_eq!(repo.list_channels(a.id).unwrap().len(), 2);
    });
}

#[test]
fn idempotency_keys_are_kept_replaced_deleted_pruned_by_age_and_survive_a_reopen() {
    use ferrojob::server::idempotency_repo::{IdempotencyRecord, KeptAnswer};
    each_repository(|place| {
        let rec = |path: &str, key: &str, at: i64, answer: Option<&[u8]>| IdempotencyRecord {
            path: path.into(),
            key: key.into(),
            at,
            answer: answer.map(|b| KeptAnswer {
                status: 200,
                body: b.to_vec(),
            }),
        };
        let sorted = |mut v: Vec<IdempotencyRecord>| {
            v.sort_by(|a, b| (&a.path, &a.key).cmp(&(&b.path, &b.key)));
            v
        };
        {
            let repo = place.open();
            for r in [
                rec("/v1/apps/a/jobs/1/run", "k", 10, None),
                rec(
                    "/v1/apps/a/jobs/1/run",
                    "k",
                    20,
                    Some(b"{\"instance_id\":5}"),
                ),
                rec("/v1/apps/a/jobs/1/run", "old", 1, Some(b"{}")),
                rec("/v1/apps/a/jobs/2/run", "k", 30, None),
                rec("/v1/apps/a/jobs/2/run", "gone", 30, None),
            ] {
                repo.put_idempotency(&r).unwrap().wait().unwrap();
            }
            repo.delete_idempotency("/v1/apps/a/jobs/2/run", "gone")
                .unwrap()
                .wait()
                .unwrap();
            // A key that is not kept: nothing happens.
            repo.delete_idempotency("/v1/apps/a/jobs/3/run", "x")
                .unwrap()
                .wait()
                .unwrap();
            assert_eq!(repo.prune_idempotency(10).unwrap().wait().unwrap(), 1);
            // Bad input is refused before anything is written.
            assert!(repo.put_idempotency(&rec("", "k", 1, None)).is_err());
            assert!(repo.put_idempotency(&rec("/p\0", "k", 1, None)).is_err());
            assert!(repo
                .put_idempotency(&rec("/p", "has space", 1, None))
                .is_err());
            assert!(repo
                .put_idempotency(&rec("/p", &"k".repeat(256), 1, None))
                .is_err());
        }
        let repo = place.open();
        assert_eq!(
            sorted(repo.list_idempotency().unwrap()),
            vec![
                rec(
                    "/v1/apps/a/jobs/1/run",
                    "k",
                    20,
                    Some(b"{\"instance_id\":5}")
                ),
                rec("/v1/apps/a/jobs/2/run", "k", 30, None),
            ]
        );
        assert_eq!(repo.prune_idempotency(31).unwrap().wait().unwrap(), 2);
        assert!(repo.list_idempotency().unwrap().is_empty());
    });
}

#[test]
fn calendars_are_put_listed_reopened_bounded_and_deleted_with_their_app() {
    use ferrojob::calendar::MAX_CALENDARS_PER_APP;
    use ferrojob::server::calendar_repo::CalendarRecord;
    each_repository(|place| {
        let a = {
            let repo = place.open();
            let a = app(&repo, "a");
            let cal = |name: &str| CalendarRecord {
                app_id: a.id,
                name: name.into(),
                time_zone: "Asia/Shanghai".into(),
                excluded: vec!["2026-10-01..2026-10-07".into(), "2026-01-01".into()],
                description: "public holidays".into(),
                updated_at: NOW,
            };
            for name in ["cn", "Zeta", "alpha", "cn"] {
                repo.put_calendar(&cal(name)).unwrap().wait().unwrap();
            }
            assert_eq!(repo.get_calendar(a.id, "cn").unwrap(), cal("cn"));
            // Replaced in place.
            let mut cn = cal("cn");
            cn.excluded = vec!["2027-02-10".into()];
            repo.put_calendar(&cn).unwrap().wait().unwrap();
            assert_eq!(repo.get_calendar(a.id, "cn").unwrap(), cn);
            // Refused: a bad entry, an unknown app.
            let mut bad = cal("bad");
            bad.excluded = vec!["2026-02-30".into()];
            assert!(matches!(
                repo.put_calendar(&bad),
                Err(RepoError::Invalid {
                    field: "excluded",
                    ..
                })
            ));
            assert!(matches!(
                repo.put_calendar(&CalendarRecord {
                    app_id: AppId(77),
                    ..cal("x")
                }),
                Err(RepoError::NotFound { what: "app", .. })
            ));
            // At most MAX_CALENDARS_PER_APP per app; replacing one stays allowed.
            for i in 3..MAX_CALENDARS_PER_APP {
                repo.put_calendar(&cal(&format!("c{i:02}")))
                    .unwrap()
                    .wait()
                    .unwrap();
            }
            assert!(matches!(
                repo.put_calendar(&cal("one-too-many")),
                Err(RepoError::Invalid { field: "name", .. })
            ));
            repo.put_calendar(&cal("cn")).unwrap().wait().unwrap();
            a
        };
        // Durable: a reopened repository reads them back, by name.
        let repo = place.open();
        let names: Vec<String> = repo
            .list_calendars(a.id)
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names.len(), MAX_CALENDARS_PER_APP);
        assert_eq!(&names[..3], ["Zeta", "alpha", "c03"]);
        repo.delete_calendar(a.id, "alpha").unwrap().wait().unwrap();
        assert!(matches!(
            repo.get_calendar(a.id, "alpha"),
            Err(RepoError::NotFound {
                what: "calendar",
                ..
            })
        ));
        assert!(repo.delete_calendar(a.id, "alpha").is_err());
        // A job names calendars in its record.
        let mut j = cron_job(a.id);
        j.calendars = vec!["cn".into(), "Zeta".into()];
        let j = repo.create_job(j, None, NOW).unwrap().wait().unwrap();
        assert_eq!(repo.get_job(j.id).unwrap().calendars, ["cn", "Zeta"]);
        repo.delete_job(j.id).unwrap().wait().unwrap();
        // Deleting the app deletes its calendars: an app of the same name starts with none.
        repo.delete_app(a.id).unwrap().wait().unwrap();
        let b = app(&repo, "a");
        assert!(repo.list_calendars(b.id).unwrap().is_empty());
        assert!(repo.list_calendars(a.id).unwrap().is_empty());
    });
}

#[test]
fn a_workflow_transition_writes_instances_and_node_links_together() {
    use ferrojob::ids::NodeId;
    use ferrojob::server::workflow_repo::{NodeLinkRecord, WfInstanceRecord, WfNodeRun, WfWrite};
    each_repository(|place| {
        let (wf, rec) = {
            let repo = place.open();
            let a = app(&repo, "a");
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
            let wfi = repo.new_wf_instance_id().unwrap();
            let mut inst = InstanceRecord::new(j.id, a.id, "", NOW);
            inst.id = repo.new_instance_id().unwrap();
            let rec = WfInstanceRecord {
                id: wfi,
                workflow_id: wf.id,
                version: 1,
                app_id: a.id,
                parent: None,
                ancestors: Vec::new(),
                snapshot_json: "{\"nodes\": []}".into(),
                nodes: vec![WfNodeRun {
                    node: NodeId(1),
                    instance: inst.id.0,
                    nested: false,
                }],
                delayed_until: None,
                run: 0,
                // A backfill's past instant: stored as given, not the write's time.
                trigger_time: NOW - 86_400_000,
            };
            let link = NodeLinkRecord {
                wf_instance: wfi,
                node: NodeId(1),
                attempt: 1,
                context_json: "{\"k\":  1}".into(),
            };
            repo.write_wf(&WfWrite {
                wf_instances: vec![(rec.clone(), true, false)],
                job_instances: vec![(inst.clone(), link.clone())],
                ..WfWrite::default()
            })
            .unwrap()
            .wait()
            .unwrap();
            assert_eq!(repo.get_wf_instance(wfi).unwrap(), rec);
            assert_eq!(repo.node_link(inst.id).unwrap(), Some(link));
            assert_eq!(repo.node_link(InstanceId(inst.id.0 + 1)).unwrap(), None);
            // A listing's whole page in one lookup, in the order asked.
            assert_eq!(
                repo.workflow_instances_of(&[InstanceId(inst.id.0 + 1), inst.id, inst.id])
                    .unwrap(),
                vec![None, Some(wfi), Some(wfi)]
            );
            assert_eq!(repo.workflow_instances_of(&[]).unwrap(), Vec::new());
            assert_eq!(repo.get_instance(inst.id).unwrap(), inst);
            assert_eq!(
                repo.list_wf_instances(a.id, Some(wf.id), None, 10)
                    .unwrap()
                    .items,
                vec![rec.clone()]
            );
            assert!(repo
                .list_wf_instances(AppId(a.id.0 + 1), None, None, 10)
                .unwrap()
                .items
                .is_empty());
            (wf, rec)
        };
        let repo = place.open();
        let (wfs, active) = repo.load_workflows().unwrap();
        assert_eq!(wfs.len(), 1);
        assert_eq!(wfs[0].record, wf);
        assert_eq!(wfs[0].def.name, "flow");
        assert_eq!(active, vec![rec.clone()]);
        repo.write_wf(&WfWrite {
            wf_instances: vec![(rec.clone(), false, true)],
            ..WfWrite::default()
        })
        .unwrap()
        .wait()
        .unwrap();
        assert!(repo.load_workflows().unwrap().1.is_empty());
        assert!(repo.new_wf_instance_id().unwrap().0 > rec.id.0);
        repo.delete_workflow(wf.id).unwrap().wait().unwrap();
        assert!(matches!(
            repo.get_workflow(wf.id),
            Err(RepoError::NotFound { .. })
        ));
        assert_eq!(repo.get_wf_instance(rec.id).unwrap(), rec);
    });
}

/// Writes a workflow instance of `wf` with one JOB node run by a new job instance of `job`
/// (with `lines` log lines), in `status`, created at `created` and (when finished) finished
/// at `created + 1`.
fn wf_instance_with_node(
    repo: &Repo,
    wf: &ferrojob::server::workflow_repo::WorkflowRecord,
    job: &JobRecord,
    status: ferrojob::workflow::InstanceStatus,
    created: i64,
    lines: usize,
) -> (
    ferrojob::server::workflow_repo::WfInstanceRecord,
    InstanceRecord,
) {
    use ferrojob::ids::NodeId;
    use ferrojob::server::workflow_repo::{NodeLinkRecord, WfInstanceRecord, WfNodeRun, WfWrite};
    let finished = status.is_finished();
    let snap = ferrojob::workflow::InstanceSnapshot {
        status,
        nodes: Vec::new(),
        decisions: Vec::new(),
        context: serde_json::Map::new(),
        failed: false,
        created_at: created,
        started_at: Some(created),
        finished_at: finished.then_some(created + 1),
    };
    let mut inst = InstanceRecord::new(job.id, job.app_id, "", created);
    inst.id = repo.new_instance_id().unwrap();
    let rec = WfInstanceRecord {
        id: repo.new_wf_instance_id().unwrap(),
        workflow_id: wf.id,
        version: 1,
        app_id: wf.app_id,
        parent: None,
        ancestors: Vec::new(),
        snapshot_json: serde_json::to_string(&snap).unwrap(),
        nodes: vec![WfNodeRun {
            node: NodeId(1),
            instance: inst.id.0,
            nested: false,
        }],
        delayed_until: None,
        run: 0,
        trigger_time: created,
    };
    let link = NodeLinkRecord {
        wf_instance: rec.id,
        node: NodeId(1),
        attempt: 0,
        context_json: "{}".into(),
    };
    repo.write_wf(&WfWrite {
        wf_instances: vec![(rec.clone(), true, finished)],
        job_instances: vec![(inst.clone(), link)],
        ..WfWrite::default()
    })
    .unwrap()
    .wait()
    .unwrap();
    if finished {
        inst.fail("x", created + 1).unwrap();
        repo.update_instance(&inst).unwrap().wait().unwrap();
    }
    let log = (0..lines).map(|n| LogLine {
        time: n as i64,
        level: LogLevel::Info,
        content: format!("line {n}"),
        attempt: 0,
        fields: Vec::new(),
    });
    repo.append_logs(inst.id, log).unwrap().wait().unwrap();
    (rec, inst)
}

/// Deleting a workflow instance deletes its record, index rows, node instances, their
/// links and logs, and nothing of another; an unfinished one is refused unless forced. The
/// retention scans name the finished ones beyond a count and before a time.
#[test]
fn a_workflow_instance_is_deleted_with_its_node_instances_and_logs() {
    use ferrojob::workflow::InstanceStatus as WS;
    each_repository(|place| {
        let repo = place.open();
        let a = app(&repo, "a");
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
        let (old, old_node) = wf_instance_with_node(&repo, &wf, &j, WS::Succeed, NOW, 3);
        let (mid, mid_node) = wf_instance_with_node(&repo, &wf, &j, WS::Failed, NOW + 10, 2);
        let (new, new_node) = wf_instance_with_node(&repo, &wf, &j, WS::Stopped, NOW + 20, 1);
        let (run, run_node) = wf_instance_with_node(&repo, &wf, &j, WS::Running, NOW + 30, 1);

        // By count: newest first, the running one not counted.
        assert_eq!(
            repo.wf_finished_beyond(wf.id, 1, 100).unwrap(),
            vec![mid.id, old.id]
        );
        assert_eq!(repo.wf_finished_beyond(wf.id, 1, 1).unwrap(), vec![mid.id]);
        assert!(repo.wf_finished_beyond(wf.id, 3, 100).unwrap().is_empty());
        // By age: finished before the cutoff, oldest first, from an id on.
        let (ids, _) = repo
            .wf_finished_before(NOW + 12, old.id, 1000, 100)
            .unwrap();
        assert_eq!(ids, vec![old.id, mid.id]);
        let (ids, _) = repo
            .wf_finished_before(NOW + 12, mid.id, 1000, 100)
            .unwrap();
        assert_eq!(ids, vec![mid.id]);
        let (ids, next) = repo.wf_finished_before(NOW + 100, old.id, 1, 100).unwrap();
        assert_eq!(ids, vec![old.id]);
        assert_eq!(next.map(|n| n.0), Some(old.id.0 + 1));

        // Running: refused (its node instance is not final either), unless forced.
        assert!(matches!(
            repo.delete_wf_instance(run.id, false),
            Err(RepoError::Unfinished { .. })
        ));
        repo.delete_wf_instance(mid.id, false)
            .unwrap()
            .wait()
            .unwrap();
        assert!(matches!(
            repo.get_wf_instance(mid.id),
            Err(RepoError::NotFound { .. })
        ));
        assert!(matches!(
            repo.get_instance(mid_node.id),
            Err(RepoError::NotFound { .. })
        ));
        assert!(repo
            .read_logs(mid_node.id, None, 100)
            .unwrap()
            .items
            .is_empty());
        assert_eq!(repo.node_link(mid_node.id).unwrap(), None);
        assert!(matches!(
            repo.delete_wf_instance(mid.id, false),
            Err(RepoError::NotFound { .. })
        ));
        // The others are untouched.
        assert_eq!(
            repo.list_wf_instances(a.id, Some(wf.id), None, 10)
                .unwrap()
                .items
                .iter()
                .map(|r| r.id)
                .collect::<Vec<_>>(),
            vec![run.id, new.id, old.id]
        );
        assert_eq!(
            repo.read_logs(old_node.id, None, 100).unwrap().items.len(),
            3
        );
        assert!(repo.node_link(new_node.id).unwrap().is_some());
        // A node instance deleted already (its job's retention) is skipped.
        repo.delete_instance(old_node.id, false)
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(repo.node_link(old_node.id).unwrap(), None);
        repo.delete_wf_instance(old.id, false)
            .unwrap()
            .wait()
            .unwrap();
        repo.delete_wf_instance(run.id, true)
            .unwrap()
            .wait()
            .unwrap();
        assert!(matches!(
            repo.get_instance(run_node.id),
            Err(RepoError::NotFound { .. })
        ));
        assert_eq!(
            repo.wf_finished_beyond(wf.id, 0, 100).unwrap(),
            vec![new.id]
        );
        repo.delete_wf_instance(new.id, false)
            .unwrap()
            .wait()
            .unwrap();
        assert!(repo
            .list_wf_instances(a.id, None, None, 10)
            .unwrap()
            .items
            .is_empty());
        assert!(repo
            .list_instances(a.id, InstanceFilter::default(), None, 100)
            .unwrap()
            .items
            .is_empty());
        drop(repo);
        if let Some(store) = place.store() {
            for table in [
                "wf_insts",
                "app_wf_insts",
                "wf_wf_insts",
                "wf_active",
                "node_links",
                "instances",
                "app_insts",
                "job_insts",
                "active",
                "logs",
            ] {
                assert_eq!(store.count(table), 0, "{table}");
            }
        }
    });
}

// ----- PostgreSQL's own -----

/// A workflow instance's trigger time is in its record and mirrored in the typed column.
#[cfg(feature = "postgres")]
#[test]
fn postgres_mirrors_a_workflow_instances_trigger_time_in_its_column() {
    use ferrojob::server::workflow_repo::{WfInstanceRecord, WfWrite};
    let db = place::postgres::Database::create();
    let repo = db.open();
    let a = app(&repo, "a");
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
    let rec = WfInstanceRecord {
        id: repo.new_wf_instance_id().unwrap(),
        workflow_id: wf.id,
        version: 1,
        app_id: a.id,
        parent: None,
        ancestors: Vec::new(),
        snapshot_json: "{}".into(),
        nodes: Vec::new(),
        delayed_until: None,
        run: 2,
        trigger_time: NOW - 5_000,
    };
    repo.write_wf(&WfWrite {
        wf_instances: vec![(rec.clone(), true, false)],
        ..WfWrite::default()
    })
    .unwrap()
    .wait()
    .unwrap();
    assert_eq!(repo.get_wf_instance(rec.id).unwrap(), rec);
    assert_eq!(
        place::postgres::query_on(
            &db.name,
            "SELECT trigger_time::text FROM workflow_instances"
        ),
        vec![vec![Some((NOW - 5_000).to_string())]]
    );
}

/// Two fires of one job at one trigger time (two servers after a failover, a clock stepped
/// back): the database refuses the second, alone, and goes on writing.
#[cfg(feature = "postgres")]
#[test]
fn postgres_refuses_a_second_fire_of_one_trigger_time_alone() {
    let db = place::postgres::Database::create();
    let repo = db.open();
    let a = app(&repo, "a");
    let j = job(&repo, a.id, None);
    fire(&repo, &j, NOW, None);
    let dup = repo
        .fire(InstanceRecord::new(j.id, a.id, "", NOW), None)
        .unwrap();
    let other = repo
        .fire(InstanceRecord::new(j.id, a.id, "", NOW + 1), None)
        .unwrap();
    let dup_id = dup.value().unwrap().id;
    let dup = dup.wait();
    assert!(matches!(dup, Err(RepoError::Conflict { .. })), "{dup:?}");
    let other = other.wait().unwrap();
    assert_eq!(repo.get_instance(other.id).unwrap(), other);
    assert!(matches!(
        repo.get_instance(dup_id),
        Err(RepoError::NotFound { .. })
    ));
    app(&repo, "b");
}

/// Migrations run once, at every open; a database from a newer version is refused.
#[cfg(feature = "postgres")]
#[test]
fn postgres_migrations_are_idempotent_and_refuse_a_newer_schema() {
    let db = place::postgres::Database::create();
    for _ in 0..3 {
        let repo = db.open();
        app(&repo, &format!("a{}", repo.list_apps().unwrap().len()));
    }
    assert_eq!(db.open().list_apps().unwrap().len(), 3);
    place::postgres::execute_on(
        &db.name,
        "INSERT INTO schema_migrations (version) VALUES (1000)".to_owned(),
    );
    let err = ferrojob::server::PgRepo::open(&db.url()).unwrap_err();
    assert!(err.to_string().contains("newer"), "{err}");
}

/// The columns added by schema version 2 hold the fields in a form people can read.
#[cfg(feature = "postgres")]
#[test]
fn postgres_keeps_the_new_fields_in_readable_columns() {
    use ferrojob::model::LogType;
    use ferrojob::policy::{OverlapPolicy, RetryBackoff};
    use ferrojob::server::token_repo::TokenRecord;
    let db = place::postgres::Database::create();
    let repo = db.open();
    let a = app(&repo, "a");
    let mut j = cron_job(a.id);
    j.retry_backoff = RetryBackoff::fixed(5_000);
    j.overlap_policy = OverlapPolicy::Skip;
    j.log = LogSettings {
        log_type: LogType::Stdout,
        level: LogLevel::Warn,
    };
    let j = repo.create_job(j, None, NOW).unwrap().wait().unwrap();
    let i = fire(&repo, &j, NOW, None);
    let line = LogLine {
        time: NOW,
        level: LogLevel::Warn,
        content: "slow".into(),
        attempt: 2,
        fields: vec![
            LogLineField {
                key: "b".into(),
                value: "1".into(),
            },
            LogLineField {
                key: "a".into(),
                value: "2".into(),
            },
        ],
    };
    repo.append_logs(i.id, [line]).unwrap().wait().unwrap();
    let token = TokenRecord {
        id: 42,
        app_id: a.id,
        name: "ci".into(),
        role: 1,
        hash: [7; 32],
        created_at: NOW,
        expires_at: None,
    };
    repo.create_token(token).unwrap().wait().unwrap();
    repo.rotate_secret(a.id, "second-secret", NOW + 5)
        .unwrap()
        .wait()
        .unwrap();
    let q = |sql: &str| place::postgres::query_on(&db.name, sql);
    let text = |v: &[&str]| v.iter().map(|s| Some((*s).to_owned())).collect::<Vec<_>>();
    assert_eq!(
        q(
            "SELECT overlap_policy, retry_backoff->>'shape', retry_backoff->>'initial_delay_ms', \
           log_type, log_level FROM jobs"
        ),
        vec![text(&["SKIP", "FIXED", "5000", "STDOUT", "WARN"])]
    );
    assert_eq!(
        q("SELECT attempt, fields->0->>'key', fields->1->>'value' FROM logs"),
        vec![text(&["2", "b", "2"])]
    );
    assert_eq!(
        q("SELECT id, name, role, length(hash), expires_at IS NULL FROM api_tokens"),
        vec![text(&["42", "ci", "operate", "32", "t"])]
    );
    assert_eq!(
        q("SELECT secret, valid_until FROM app_previous_secrets"),
        vec![text(&["secret-secret", &(NOW + 5).to_string()])]
    );
}

/// A database at schema version 1 with data in it is upgraded in place: its jobs keep
/// their records and its log lines read with an unknown attempt and no fields.
#[cfg(feature = "postgres")]
#[test]
fn postgres_upgrades_a_version_1_database_in_place() {
    let db = place::postgres::Database::create();
    let (j, i) = {
        let repo = db.open();
        let a = app(&repo, "a");
        let j = job(&repo, a.id, Some(NOW + 60_000));
        let i = fire(&repo, &j, NOW, None);
        (j, i)
    };
    // Back to version 1: the columns and tables of versions 2 and later go, the rows stay.
    place::postgres::execute_on(
        &db.name,
        "ALTER TABLE jobs DROP COLUMN overlap_policy, DROP COLUMN retry_backoff, \
             DROP COLUMN log_type, DROP COLUMN log_level, DROP COLUMN calendars; \
         ALTER TABLE logs DROP COLUMN attempt, DROP COLUMN fields; \
         DROP TABLE api_tokens, app_previous_secrets; \
         DROP TABLE job_versions, audit; \
         DROP TABLE idempotency_keys; \
         DROP TABLE calendars; \
         ALTER TABLE workflow_instances DROP COLUMN trigger_time; \
         DROP TABLE cluster_servers, cluster_settings; \
         ALTER TABLE leases DROP COLUMN acquired_at, DROP COLUMN renewed_at; \
         DELETE FROM schema_migrations WHERE version >= 2; \
         INSERT INTO logs (instance_id, seq, time, level, content) \
             VALUES (1, 1, 5, 'ERROR', 'from version 1')"
            .replace("(1, 1,", &format!("({}, 1,", i.id.0)),
    );
    let repo = db.open();
    assert_eq!(repo.get_job(j.id).unwrap(), j);
    let logs = repo.read_logs(i.id, None, 10).unwrap().items;
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].line.content, "from version 1");
    assert_eq!((logs[0].line.attempt, logs[0].line.fields.len()), (0, 0));
    assert_eq!(
        place::postgres::query_on(
            &db.name,
            "SELECT overlap_policy, log_type, calendars::text FROM jobs"
        ),
        vec![vec![
            Some("FAIL".to_owned()),
            Some("ONLINE".to_owned()),
            Some("[]".to_owned())
        ]]
    );
    assert!(repo.list_tokens(j.app_id).unwrap().is_empty());
    assert!(repo.list_calendars(j.app_id).unwrap().is_empty());
}

/// Migration numbers are reserved ahead, so a database may hold a later migration without
/// an earlier one: opening applies the missing one too, not only those above the newest.
#[cfg(feature = "postgres")]
#[test]
fn postgres_applies_a_migration_missing_below_the_newest_applied() {
    let db = place::postgres::Database::create();
    let j = {
        let repo = db.open();
        let a = app(&repo, "a");
        job(&repo, a.id, None)
    };
    // Version 3 missing, version 4 applied.
    place::postgres::execute_on(
        &db.name,
        "DROP TABLE job_versions, audit; DELETE FROM schema_migrations WHERE version = 3".into(),
    );
    let repo = db.open();
    assert_eq!(
        place::postgres::query_on(&db.name, "SELECT count(*)::text FROM job_versions"),
        vec![vec![Some("0".to_owned())]]
    );
    let mut updated = j.clone();
    updated.params = "again".into();
    repo.update_job(updated, None, NOW + 1)
        .unwrap()
        .wait()
        .unwrap();
    assert!(!repo
        .list_job_versions(j.id, None, 10)
        .unwrap()
        .items
        .is_empty());
}

/// PostgreSQL's text cannot hold a NUL character: a write with one fails alone (before it
/// changes the repository's caches), and the writes around it commit.
#[cfg(feature = "postgres")]
#[test]
fn postgres_refuses_a_nul_character_alone() {
    let db = place::postgres::Database::create();
    let repo = db.open();
    let a = app(&repo, "a");
    let mut bad = cron_job(a.id);
    bad.processor = "a\0b".into();
    let refused = repo.create_job(bad, None, NOW).and_then(|c| c.wait());
    assert!(
        matches!(
            refused,
            Err(RepoError::Invalid {
                field: "processor",
                ..
            })
        ),
        "{refused:?}"
    );
    let j = job(&repo, a.id, None);
    assert_eq!(repo.get_job(j.id).unwrap(), j);
    // Refused before the name is taken: the app can be created without the NUL.
    let refused = repo.create_app("nul", "secret-\0-secret", NOW);
    assert!(
        matches!(
            refused,
            Err(RepoError::Invalid {
                field: "secret",
                ..
            })
        ),
        "{refused:?}"
    );
    app(&repo, "nul");
}
