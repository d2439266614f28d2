//! Servers' memberships (`server::pg::member`) on a real PostgreSQL: three members spread the
//! partitions by rendezvous hashing, one that leaves hands its partitions over, one that
//! stops without a word loses them once the database says its leases expired. Leases are
//! about a second; the tests wait for outcomes and never assert durations.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrojob::clock::SystemClock;
use ferrojob::cluster::{
    preferred_owner, Epoch, OwnershipConfig, PartitionId, ServerId, PARTITION_COUNT,
};
use ferrojob::server::pg::lease;
use ferrojob::server::pg::member::{Member, MemberConfig, Partitions, WriterStatus};

use super::place::postgres::Database;
use super::place::Place;

/// What one server was told: the partitions it acts for, every grant it saw, and the last
/// view of the live servers (id, announced addresses).
#[derive(Default)]
struct Sink {
    acting: Mutex<BTreeMap<PartitionId, Epoch>>,
    grants: Mutex<Vec<(PartitionId, Epoch)>>,
    live: Mutex<Vec<(String, Vec<String>)>>,
    /// The writes' health the membership watches, when the test gives one.
    writer: Option<tokio::sync::watch::Receiver<WriterStatus>>,
}

impl Partitions for Sink {
    fn acting(&self, partition: PartitionId, epoch: Epoch) {
        let mut acting = self.acting.lock().unwrap();
        assert!(
            acting.insert(partition, epoch).is_none(),
            "{partition} acted twice"
        );
        self.grants.lock().unwrap().push((partition, epoch));
    }
    fn stop(&self, partition: PartitionId) {
        self.acting.lock().unwrap().remove(&partition);
    }
    fn writer_status(&self) -> Option<tokio::sync::watch::Receiver<WriterStatus>> {
        self.writer.clone()
    }
    fn live_servers(&self, live: &[lease::ServerRow]) {
        *self.live.lock().unwrap() = live
            .iter()
            .map(|s| (s.id.to_string(), s.addresses.clone()))
            .collect();
    }
}

impl Sink {
    fn acting(&self) -> BTreeMap<PartitionId, Epoch> {
        self.acting.lock().unwrap().clone()
    }

    /// The ids of the last view of the live servers, after checking their addresses.
    fn live(&self) -> Vec<String> {
        let live = self.live.lock().unwrap().clone();
        for (id, addresses) in &live {
            assert_eq!(addresses, &[format!("{id}.local:10086")]);
        }
        live.into_iter().map(|(id, _)| id).collect()
    }
}

fn sid(s: &str) -> ServerId {
    ServerId::new(s).unwrap()
}

fn config(name: &str) -> MemberConfig {
    let mut c = MemberConfig::new(sid(name), vec![format!("{name}.local:10086")]);
    c.ownership = OwnershipConfig {
        lease: Duration::from_millis(1200),
        safety_margin: Duration::from_millis(300),
        renew_every: Duration::from_millis(300),
        retry_every: Duration::from_millis(100),
        request_timeout: Duration::from_millis(800),
    };
    c.heartbeat_every = Duration::from_millis(150);
    c.server_ttl = Duration::from_millis(900);
    c
}

async fn start(url: &str, name: &str) -> (Member, Arc<Sink>) {
    start_with(url, name, Sink::default()).await
}

async fn start_with(url: &str, name: &str, sink: Sink) -> (Member, Arc<Sink>) {
    let sink = Arc::new(sink);
    let member = Member::start(url, config(name), Arc::new(SystemClock), sink.clone())
        .await
        .unwrap();
    (member, sink)
}

/// Waits until every partition is acted for by exactly its preferred owner among `live`.
async fn settled(live: &[(&str, &Arc<Sink>)]) {
    let ids: Vec<ServerId> = live.iter().map(|(n, _)| sid(n)).collect();
    let want = |name: &str| -> Vec<PartitionId> {
        PartitionId::all()
            .filter(|p| preferred_owner(*p, &ids).map(ServerId::as_str) == Some(name))
            .collect()
    };
    for _ in 0..400 {
        let done = live
            .iter()
            .all(|(name, sink)| sink.acting().keys().copied().collect::<Vec<_>>() == want(name));
        if done {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got: Vec<(&str, usize)> = live.iter().map(|(n, s)| (*n, s.acting().len())).collect();
    panic!("never settled: {got:?}");
}

/// Runs `test` with the URL of a fresh, migrated database, on a two-thread runtime (the
/// members' tasks run beside the test's polling).
fn on_migrated_database<F, Fut>(test: F)
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let db = Database::create();
    drop(db.open()); // applies the migrations
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(test(db.url()));
}

#[test]
fn members_spread_the_partitions_hand_them_over_and_take_them_from_a_dead_one() {
    on_migrated_database(|url| async move {
        let (a, sa) = start(&url, "a").await;
        let (b, sb) = start(&url, "b").await;
        let (c, sc) = start(&url, "c").await;
        settled(&[("a", &sa), ("b", &sb), ("c", &sc)]).await;
        for (m, s) in [(&a, &sa), (&b, &sb), (&c, &sc)] {
            // The status is published right after the server is told.
            for _ in 0..100 {
                if m.status().acting == s.acting() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let status = m.status();
            assert_eq!(status.acting, s.acting());
            assert_eq!(status.live.len(), 3);
            // The server was told the view, with the addresses each member announced.
            assert_eq!(s.live(), ["a", "b", "c"]);
            assert!(status.metrics_text().contains(&format!(
                "ferrojob_cluster_partitions_owned {}",
                status.acting.len()
            )));
        }

        // c leaves: it stops acting for everything, releases, and a and b take its share.
        let c_had = sc.acting();
        assert!(!c_had.is_empty());
        c.leave(Duration::from_secs(5)).await;
        assert!(sc.acting().is_empty());
        // Leaving, c was told a view without itself (its refusals name the others).
        assert_eq!(sc.live(), ["a", "b"]);
        settled(&[("a", &sa), ("b", &sb)]).await;
        let client = connect(&url).await;
        let servers = lease::all_servers(&client).await.unwrap();
        assert!(
            servers.iter().all(|s| s.id != sid("c")),
            "c left: {servers:?}"
        );
        for (p, old) in &c_had {
            let now = sa.acting().get(p).or(sb.acting().get(p)).copied();
            assert!(now.is_some_and(|e| e > *old), "{p}: {old} then {now:?}");
        }

        // b stops without a word: a takes everything once b's leases expire.
        let b_had = sb.acting();
        b.abandon();
        settled(&[("a", &sa)]).await;
        assert_eq!(sa.acting().len(), usize::from(PARTITION_COUNT));
        for (p, old) in &b_had {
            assert!(sa.acting()[p] > *old, "{p}");
        }
        // No epoch of a partition was ever granted to two servers, or twice.
        let mut last: BTreeMap<PartitionId, Epoch> = BTreeMap::new();
        let mut all: Vec<(PartitionId, Epoch)> = Vec::new();
        for s in [&sa, &sb, &sc] {
            all.extend(s.grants.lock().unwrap().iter().copied());
        }
        all.sort();
        for (p, e) in all {
            if let Some(prev) = last.insert(p, e) {
                assert!(e > prev, "{p}: {e} granted twice");
            }
        }
        // The lease table agrees with a.
        let rows = lease::leases(&client).await.unwrap();
        for row in rows {
            assert_eq!(row.owner, Some(sid("a")), "{row:?}");
            assert_eq!(Some(&row.epoch), sa.acting().get(&row.partition));
        }
        a.leave(Duration::from_secs(5)).await;
        assert!(sa.acting().is_empty());
        let rows = lease::leases(&client).await.unwrap();
        assert!(rows.iter().all(|r| r.owner.is_none()), "a released all");
    });
}

/// A database that stops answering (the leases table locked by another session) does not
/// hold up the deadlines: the member stops acting for every partition on its own clock, and
/// takes them back once the database answers again.
#[test]
fn a_hung_database_stops_the_member_by_its_deadlines() {
    on_migrated_database(|url| async move {
        let (a, sa) = start(&url, "a").await;
        settled(&[("a", &sa)]).await;
        let mut locker = connect(&url).await;
        let tx = locker.transaction().await.unwrap();
        tx.batch_execute("LOCK TABLE leases IN ACCESS EXCLUSIVE MODE")
            .await
            .unwrap();
        // The status is published after the server was told: wait for both.
        let stopped = || sa.acting().is_empty() && a.status().lost == u64::from(PARTITION_COUNT);
        for _ in 0..400 {
            if stopped() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            stopped(),
            "still acting for {}, {:?}",
            sa.acting().len(),
            a.status()
        );
        tx.rollback().await.unwrap();
        settled(&[("a", &sa)]).await;
        a.leave(Duration::from_secs(5)).await;
    });
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

/// Two servers' repositories on one database hand out disjoint ids of every kind: blocks are
/// reserved in the database, and a reopened repository continues above every block taken.
#[test]
fn repositories_sharing_a_database_never_hand_out_the_same_id() {
    use std::collections::BTreeSet;

    use ferrojob::ids::AppId;
    use ferrojob::server::JobRecord;
    use ferrojob::time_expression::TimeExpressionType;

    let db = Database::create();
    let (a, b) = (db.open(), db.open());
    let mut instances = BTreeSet::new();
    for round in 0..3 {
        for repo in [&a, &b] {
            for _ in 0..3000 {
                let id = repo.new_instance_id().unwrap();
                assert!(instances.insert(id), "instance {id:?} handed out twice");
            }
        }
        // Ids of one repository increase.
        let x = a.new_instance_id().unwrap();
        let y = a.new_instance_id().unwrap();
        assert!(y > x, "round {round}");
        instances.extend([x, y]);
    }
    let mut workflows = BTreeSet::new();
    for _ in 0..100 {
        for repo in [&a, &b] {
            assert!(workflows.insert(repo.new_wf_instance_id().unwrap()));
        }
    }
    // Apps and jobs, created alternately on both: distinct ids, both stored.
    let mut apps = Vec::new();
    for i in 0..6 {
        let repo = if i % 2 == 0 { &a } else { &b };
        let app = repo
            .create_app(&format!("app-{i}"), "secret-secret", 1)
            .unwrap()
            .wait()
            .unwrap();
        apps.push(app.id);
    }
    assert_eq!(
        apps.iter().collect::<BTreeSet<&AppId>>().len(),
        6,
        "{apps:?}"
    );
    let mut jobs = BTreeSet::new();
    for (i, app) in apps.iter().enumerate() {
        let repo = if i % 2 == 0 { &b } else { &a };
        let job = JobRecord::new(*app, "j", TimeExpressionType::Api, "", "noop");
        let job = repo.create_job(job, None, 1).unwrap().wait().unwrap();
        assert!(jobs.insert(job.id), "job {:?} handed out twice", job.id);
    }
    let fresh = db.open();
    let next = fresh.new_instance_id().unwrap();
    assert!(
        instances.iter().all(|i| *i < next),
        "{next:?} after a reopen"
    );
    for job in &jobs {
        assert!(fresh.get_job(*job).is_ok(), "{job:?} stored");
    }
}

/// The server's writes failed (its writer lost its session): the membership stops every
/// partition it acts for, releases it and acquires it again under a new epoch, and counts the
/// failure (and, when told, the writer's new session).
#[test]
fn a_failure_of_the_writes_has_every_partition_acquired_again() {
    on_migrated_database(|url| async move {
        let (writer, health) = tokio::sync::watch::channel(WriterStatus::default());
        let sink = Sink {
            writer: Some(health),
            ..Sink::default()
        };
        let (a, sa) = start_with(&url, "a", sink).await;
        settled(&[("a", &sa)]).await;
        let before = sa.acting();
        assert_eq!(before.len(), usize::from(PARTITION_COUNT));

        writer.send_modify(|s| s.failures += 1);
        for _ in 0..400 {
            let now = sa.acting();
            let again = now.len() == before.len()
                && before
                    .iter()
                    .all(|(p, old)| now.get(p).is_some_and(|e| e > old));
            if again {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let now = sa.acting();
        for (p, old) in &before {
            assert!(
                now.get(p).is_some_and(|e| e > old),
                "{p}: {old} then {now:?}"
            );
        }
        // (The sink checks that each was stopped before it was acted for again.)
        for _ in 0..100 {
            if a.status().writer.failures == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(a
            .status()
            .metrics_text()
            .contains("ferrojob_cluster_writer_failures_total 1"));

        // A new session is counted; it is no failure.
        writer.send_modify(|s| s.reconnects += 1);
        for _ in 0..100 {
            if a.status().writer.reconnects == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            a.status().writer,
            WriterStatus {
                failures: 1,
                reconnects: 1
            }
        );
        a.leave(Duration::from_secs(5)).await;
    });
}
