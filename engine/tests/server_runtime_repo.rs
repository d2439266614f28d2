//! The repo's lock-free id allocation (hi-lo blocks persisted ahead) under concurrency and a
//! power loss: no acknowledged instance is lost and no id is handed out twice.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeSet;
use std::sync::Arc;

use ferrojob::ids::InstanceId;
use ferrojob::model::LogLevel;
use ferrojob::server::*;
use ferrojob::time_expression::TimeExpressionType;
use ferrojob_store::backend::SimBackend;
use ferrojob_store::{LogOptions, LogStore, Store};

const NOW: i64 = 1_700_000_000_000;

fn sim_open(b: &SimBackend) -> Arc<dyn Store> {
    Arc::new(LogStore::open_with(Arc::new(b.clone()), "/db", LogOptions::default()).unwrap())
}

#[test]
fn concurrent_fires_across_id_blocks_survive_power_loss_without_reuse() {
    let b = SimBackend::new();
    let per_thread = (ID_BLOCK as usize) * 3 / 4 + 17;
    let (job, acked) = {
        let repo = Arc::new(Repo::open(sim_open(&b)).unwrap());
        let app = repo
            .create_app("a", "secret-secret", NOW)
            .unwrap()
            .wait()
            .unwrap();
        let job = repo
            .create_job(
                JobRecord::new(app.id, "j", TimeExpressionType::Api, "", "noop"),
                None,
                NOW,
            )
            .unwrap()
            .wait()
            .unwrap();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let repo = Arc::clone(&repo);
                std::thread::spawn(move || {
                    let commits: Vec<_> = (0..per_thread)
                        .map(|i| {
                            let rec = InstanceRecord::new(job.id, app.id, "", NOW + i as i64);
                            if i % 2 == 0 {
                                repo.fire(rec, None).unwrap()
                            } else {
                                repo.create_instance(rec, None).unwrap()
                            }
                        })
                        .collect();
                    commits
                        .into_iter()
                        .map(|c| c.wait().unwrap().id)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut acked = BTreeSet::new();
        for t in threads {
            for id in t.join().unwrap() {
                assert!(acked.insert(id), "{id:?} handed out twice");
            }
        }
        (job, acked)
    };
    assert!(
        acked.last().unwrap().0 > 2 * ID_BLOCK,
        "the run crossed several blocks"
    );
    let repo = Repo::open(sim_open(&b.crash())).unwrap();
    let state = repo.load().unwrap();
    let stored: BTreeSet<InstanceId> = state.active.iter().map(|i| i.id).collect();
    assert!(
        acked.is_subset(&stored),
        "an acknowledged instance was lost"
    );
    assert_eq!(
        repo.trigger(job.id).unwrap().runs as usize,
        4 * per_thread.div_ceil(2)
    );
    let max = stored.iter().max().unwrap().0;
    for _ in 0..10 {
        let fresh = repo
            .create_instance(InstanceRecord::new(job.id, job.app_id, "", NOW), None)
            .unwrap()
            .wait()
            .unwrap();
        assert!(fresh.id.0 > max, "id {} reused after the crash", fresh.id.0);
    }
    // Log sequence numbers come from the same scheme.
    let id = *acked.first().unwrap();
    let line = |i: i64| LogLine {
        time: i,
        level: LogLevel::Info,
        content: format!("l{i}"),
        attempt: 0,
        fields: Vec::new(),
    };
    repo.append_logs(id, (0..5000).map(line))
        .unwrap()
        .wait()
        .unwrap();
    repo.append_logs(id, (0..10).map(line))
        .unwrap()
        .wait()
        .unwrap();
    let mut seen = BTreeSet::new();
    let mut cursor = None;
    loop {
        let page = repo.read_logs(id, cursor, 1000).unwrap();
        for e in &page.items {
            assert!(seen.insert(e.seq));
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen.len(), MAX_LOG_APPEND + 10);
}
