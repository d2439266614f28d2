//! Fenced writes of a cluster server's repository (`PgRepo::fence_as`) on a real PostgreSQL:
//! a write of a partition this server does not hold is refused at once; once another server
//! is granted the partition, every write this server made under its old epoch is refused by
//! the database, while its writes of the partitions it still holds commit.

use std::sync::Arc;
use std::time::Duration;

use ferrojob::cluster::{partition_of, Epoch, PartitionId, ServerId};
use ferrojob::server::pg::lease::{self, Acquire};
use ferrojob::server::pg::member::WriterStatus;
use ferrojob::server::{PgRepo, Repo, RepoError};

use super::place::postgres::{query_on, Database};
use super::{app, job};

const LONG: Duration = Duration::from_secs(60);

fn sid(s: &str) -> ServerId {
    ServerId::new(s).unwrap()
}

/// Two app names in different partitions.
fn two_partitions() -> (&'static str, &'static str) {
    const NAMES: [&str; 6] = ["billing", "search", "mail", "ledger", "crawler", "feeds"];
    let first = NAMES[0];
    let second = NAMES
        .iter()
        .copied()
        .find(|n| partition_of(n) != partition_of(first))
        .expect("two of the names share no partition");
    (first, second)
}

fn acquire(rt: &tokio::runtime::Runtime, url: &str, p: PartitionId, server: &str) -> Epoch {
    rt.block_on(async {
        let client = lease::connect(url).await.unwrap();
        match lease::try_acquire(&client, p, &sid(server), LONG)
            .await
            .unwrap()
        {
            Acquire::Granted(e) => e,
            other => panic!("{p} not granted to {server}: {other:?}"),
        }
    })
}

fn release(rt: &tokio::runtime::Runtime, url: &str, p: PartitionId, server: &str, e: Epoch) {
    rt.block_on(async {
        let client = lease::connect(url).await.unwrap();
        assert!(lease::release(&client, p, &sid(server), e).await.unwrap());
    })
}

fn next_trigger(db: &Database, job: u64) -> Option<String> {
    query_on(
        &db.name,
        &format!("SELECT next_trigger FROM triggers WHERE job_id = {job}"),
    )
    .into_iter()
    .next()
    .and_then(|row| row.into_iter().next().flatten())
}

#[test]
fn a_former_owner_cannot_write_a_partition_and_keeps_writing_the_others() {
    let db = Database::create();
    let pg = Arc::new(PgRepo::open(&db.url()).unwrap());
    let repo = Repo::new(pg.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (lost_name, kept_name) = two_partitions();
    let (lost_p, kept_p) = (partition_of(lost_name), partition_of(kept_name));
    // Apps are not partition state: any server creates them.
    let lost_app = app(&repo, lost_name);
    let kept_app = app(&repo, kept_name);
    pg.fence_as(sid("a"), LONG).unwrap();

    // Nothing held yet: a job of either app is refused before it is queued.
    let refused = repo
        .create_job(super::cron_job(lost_app.id), Some(1_000), super::NOW)
        .unwrap()
        .wait();
    assert!(
        matches!(refused, Err(RepoError::Fenced { partition, epoch: 0 }) if partition == lost_p.get()),
        "{refused:?}"
    );

    let e_lost = acquire(&rt, &db.url(), lost_p, "a");
    let e_kept = acquire(&rt, &db.url(), kept_p, "a");
    pg.prepare_partition(lost_p).unwrap();
    pg.hold_partition(lost_p, e_lost);
    pg.prepare_partition(kept_p).unwrap();
    pg.hold_partition(kept_p, e_kept);
    let lost_job = job(&repo, lost_app.id, Some(1_000));
    let kept_job = job(&repo, kept_app.id, Some(1_000));

    // Server b is granted the first partition (a's lease released, as by a hand-over a does
    // not know of yet: a still writes under its old epoch).
    release(&rt, &db.url(), lost_p, "a", e_lost);
    let e_b = acquire(&rt, &db.url(), lost_p, "b");
    assert!(e_b > e_lost);
    assert_eq!(pg.held_partition(lost_p), Some(e_lost));

    // Both writes are queued before either is awaited: most likely one batch.
    let stale = repo.set_next_trigger(lost_job.id, Some(2_000)).unwrap();
    let fresh = repo.set_next_trigger(kept_job.id, Some(3_000)).unwrap();
    let stale = stale.wait();
    assert!(
        matches!(stale, Err(RepoError::Fenced { partition, epoch }) if partition == lost_p.get() && epoch == e_lost.0),
        "{stale:?}"
    );
    fresh.wait().unwrap();
    assert_eq!(next_trigger(&db, lost_job.id.0).as_deref(), Some("1000"));
    assert_eq!(next_trigger(&db, kept_job.id.0).as_deref(), Some("3000"));

    // The writer goes on: a later write of the kept partition commits too.
    repo.set_next_trigger(kept_job.id, Some(4_000))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(next_trigger(&db, kept_job.id.0).as_deref(), Some("4000"));

    // Released here too: refused at once, never queued.
    pg.release_partition(lost_p);
    let refused = repo
        .set_next_trigger(lost_job.id, Some(5_000))
        .unwrap()
        .wait();
    assert!(
        matches!(refused, Err(RepoError::Fenced { epoch: 0, .. })),
        "{refused:?}"
    );
    assert_eq!(next_trigger(&db, lost_job.id.0).as_deref(), Some("1000"));
}

#[test]
fn a_partition_taken_over_is_written_with_the_rows_its_former_owner_left() {
    let db = Database::create();
    let (name, _) = two_partitions();
    let p = partition_of(name);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Server a creates the app and a job, moves the trigger, and goes.
    let a = Arc::new(PgRepo::open(&db.url()).unwrap());
    let b = Arc::new(PgRepo::open(&db.url()).unwrap());
    a.fence_as(sid("a"), LONG).unwrap();
    b.fence_as(sid("b"), LONG).unwrap();
    let repo_a = Repo::new(a.clone());
    let the_app = app(&repo_a, name);
    let e1 = acquire(&rt, &db.url(), p, "a");
    a.prepare_partition(p).unwrap();
    a.hold_partition(p, e1);
    let the_job = job(&repo_a, the_app.id, Some(1_000));
    repo_a
        .fire(
            ferrojob::server::InstanceRecord::new(the_job.id, the_app.id, "", 1_000),
            Some(2_000),
        )
        .unwrap()
        .wait()
        .unwrap();
    a.release_partition(p);
    release(&rt, &db.url(), p, "a", e1);
    drop(repo_a);

    // Server b opened before any of that: it learns the app, the job and the trigger row
    // when it is granted the partition, and carries on from them.
    let e2 = acquire(&rt, &db.url(), p, "b");
    b.prepare_partition(p).unwrap();
    b.hold_partition(p, e2);
    let repo_b = Repo::new(b.clone());
    let trigger = repo_b
        .trigger(the_job.id)
        .expect("the trigger row is known");
    assert_eq!((trigger.next_trigger, trigger.runs), (Some(2_000), 1));
    repo_b
        .set_next_trigger(the_job.id, Some(3_000))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(next_trigger(&db, the_job.id.0).as_deref(), Some("3000"));
}

/// Ends the session of `db`'s writer from another connection, as the database does to an
/// idle-in-transaction session; waits until it is gone.
fn kill_writer(rt: &tokio::runtime::Runtime, db: &Database) {
    rt.block_on(async {
        let client = lease::connect(&db.url()).await.unwrap();
        let killed: Vec<bool> = client
            .query(
                "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity \
                 WHERE datname = $1 AND application_name = $2",
                &[&db.name, &ferrojob::server::pg::WRITER_APPLICATION_NAME],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(killed, vec![true], "one writer session, ended");
    })
}

/// A server whose writer lost its session mid-write: the write fails, the server holds
/// nothing and every epoch it held is stale, so no write made from its state of then
/// commits, even while the database still shows its lease. Once the partition is acquired
/// again and prepared, its rows are read afresh and the writes commit on a new session.
#[test]
fn a_writer_that_lost_its_session_writes_again_only_after_the_partition_is_loaded_afresh() {
    let db = Database::create();
    let (name, _) = two_partitions();
    let p = partition_of(name);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pg = Arc::new(PgRepo::open(&db.url()).unwrap());
    let repo = Repo::new(pg.clone());
    let the_app = app(&repo, name);
    pg.fence_as(sid("a"), LONG).unwrap();
    let mut status = pg.writer_status();
    let e1 = acquire(&rt, &db.url(), p, "a");
    pg.prepare_partition(p).unwrap();
    assert!(pg.hold_partition(p, e1));
    let the_job = job(&repo, the_app.id, Some(1_000));
    super::fire(&repo, &the_job, 1_000, Some(2_000));

    kill_writer(&rt, &db);
    // The next fire moves the cached trigger row (runs 2, next 3000) and fails to commit.
    let instance = ferrojob::server::InstanceRecord::new(the_job.id, the_app.id, "", 2_000);
    let failed = repo.fire(instance, Some(3_000)).unwrap().wait();
    assert!(matches!(failed, Err(RepoError::Database(_))), "{failed:?}");
    // A write made from that cached state (a next trigger after the failed fire) is refused,
    // although the database still shows the lease at e1.
    let stale = repo
        .set_next_trigger(the_job.id, Some(4_000))
        .unwrap()
        .wait();
    assert!(
        matches!(stale, Err(RepoError::Fenced { partition, .. }) if partition == p.get()),
        "{stale:?}"
    );
    assert_eq!(pg.held_partition(p), None);
    rt.block_on(status.wait_for(|s| s.failures == 1)).unwrap();

    // The membership gives the lease up and is granted the partition again.
    release(&rt, &db.url(), p, "a", e1);
    let e2 = acquire(&rt, &db.url(), p, "a");
    assert!(e2 > e1);
    assert!(
        !pg.hold_partition(p, e1),
        "a stale epoch is never held again"
    );
    pg.prepare_partition(p).unwrap();
    assert!(pg.hold_partition(p, e2));
    let trigger = repo.trigger(the_job.id).expect("the trigger row is known");
    assert_eq!(
        (trigger.next_trigger, trigger.runs),
        (Some(2_000), 1),
        "the cached row is the stored one"
    );
    repo.set_next_trigger(the_job.id, Some(5_000))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(next_trigger(&db, the_job.id.0).as_deref(), Some("5000"));
    let instances = query_on(
        &db.name,
        &format!(
            "SELECT count(*) FROM instances WHERE job_id = {}",
            the_job.id.0
        ),
    );
    assert_eq!(
        instances,
        vec![vec![Some("1".to_owned())]],
        "only the first fire"
    );
    assert_eq!(
        *status.borrow(),
        WriterStatus {
            failures: 1,
            reconnects: 1
        }
    );
}
