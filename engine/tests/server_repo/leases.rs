//! Cluster membership and partition leases on a real PostgreSQL (`server::pg::lease`): each
//! test in a fresh database. Leases that must expire are short (200 to 300 ms) and the tests
//! wait for the database to say so, by polling with `pg_sleep`; they assert outcomes, never
//! durations. Leases that must not expire during a test are a minute long.

use std::future::Future;
use std::time::Duration;

use ferrojob::cluster::{
    Command, Epoch, MonoUs, Ownership, OwnershipConfig, PartitionId, ServerId, PARTITION_COUNT,
};
use ferrojob::server::pg::lease::{self, Acquire, LeaseError};
use tokio_postgres::{Client, NoTls};

use super::place::postgres::Database;
use super::place::Place;

const LONG: Duration = Duration::from_secs(60);
const SHORT: Duration = Duration::from_millis(200);

fn sid(s: &str) -> ServerId {
    ServerId::new(s).unwrap()
}

fn part(n: u16) -> PartitionId {
    PartitionId::new(n).unwrap()
}

/// Runs `test` against a migrated fresh database.
fn with_database<F, Fut>(test: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()>,
{
    let db = Database::create();
    drop(db.open()); // applies the migrations
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(test(db.url()));
}

async fn connect(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

/// Waits, on the database's side, until `server` can acquire `p` (the holder's lease
/// expired by the database's clock); answers the epoch granted.
async fn acquire_when_expired(client: &Client, p: PartitionId, server: &ServerId) -> Epoch {
    for _ in 0..200 {
        if let Acquire::Granted(e) = lease::try_acquire(client, p, server, LONG).await.unwrap() {
            return e;
        }
        client.execute("SELECT pg_sleep(0.05)", &[]).await.unwrap();
    }
    panic!("the lease of {p} never expired");
}

async fn count(client: &Client, name: &str) -> i64 {
    client
        .query_one("SELECT count(*) FROM counters WHERE name = $1", &[&name])
        .await
        .unwrap()
        .get(0)
}

#[test]
fn two_servers_contend_for_a_partition() {
    with_database(|url| async move {
        let (a, b) = (connect(&url).await, connect(&url).await);
        let (sa, sb) = (sid("a"), sid("b"));
        assert_eq!(
            lease::try_acquire(&a, part(0), &sa, LONG).await.unwrap(),
            Acquire::Granted(Epoch(1))
        );
        assert_eq!(
            lease::try_acquire(&b, part(0), &sb, LONG).await.unwrap(),
            Acquire::Refused {
                owner: Some(sa.clone()),
                epoch: Epoch(1)
            }
        );
        // Not even the holder acquires twice: it renews.
        assert!(matches!(
            lease::try_acquire(&a, part(0), &sa, LONG).await.unwrap(),
            Acquire::Refused { .. }
        ));
        assert!(lease::renew(&a, part(0), &sa, Epoch(1), LONG)
            .await
            .unwrap());
        assert!(!lease::renew(&b, part(0), &sb, Epoch(1), LONG)
            .await
            .unwrap());
        // Released: the other takes it at the next epoch; the old epoch renews no more.
        assert!(!lease::release(&b, part(0), &sb, Epoch(1)).await.unwrap());
        assert!(lease::release(&a, part(0), &sa, Epoch(1)).await.unwrap());
        assert_eq!(
            lease::try_acquire(&b, part(0), &sb, LONG).await.unwrap(),
            Acquire::Granted(Epoch(2))
        );
        assert!(!lease::renew(&a, part(0), &sa, Epoch(1), LONG)
            .await
            .unwrap());

        // Both at once, on their own connections, for a fresh partition: exactly one wins.
        for n in 1..20 {
            let (ra, rb) = tokio::join!(
                lease::try_acquire(&a, part(n), &sa, LONG),
                lease::try_acquire(&b, part(n), &sb, LONG)
            );
            let granted = [ra.unwrap(), rb.unwrap()]
                .iter()
                .filter(|r| matches!(r, Acquire::Granted(Epoch(1))))
                .count();
            assert_eq!(granted, 1, "{n}");
        }
        let rows = lease::leases(&a).await.unwrap();
        assert_eq!(rows.len(), 20);
        assert!(rows.iter().all(|r| r.is_live()));
        assert_eq!(rows[0].owner, Some(sb.clone()));
        assert_eq!(rows[0].epoch, Epoch(2));
    });
}

/// A lease expires by the database's clock; the former owner can neither renew nor write,
/// and its refused transaction leaves nothing behind.
#[test]
fn a_former_owner_is_fenced() {
    with_database(|url| async move {
        let (mut a, mut b) = (connect(&url).await, connect(&url).await);
        let (sa, sb) = (sid("a"), sid("b"));
        let p = part(7);
        let Acquire::Granted(ea) = lease::try_acquire(&a, p, &sa, SHORT).await.unwrap() else {
            panic!("a fresh partition is free");
        };
        assert_eq!(ea, Epoch(1));

        // While a holds it, a's fenced write commits. (The lease is short: whether it still
        // holds when the fence runs depends on timing, so both outcomes are accepted here;
        // the assertions below do not depend on it.)
        let tx = a.transaction().await.unwrap();
        tx.execute("INSERT INTO counters VALUES ('written by a', 1)", &[])
            .await
            .unwrap();
        match lease::fence(&tx, p, &sa, ea).await {
            Ok(()) => tx.commit().await.unwrap(),
            Err(LeaseError::Fenced(_)) => drop(tx),
            Err(e) => panic!("{e}"),
        }

        let eb = acquire_when_expired(&b, p, &sb).await;
        assert!(eb > ea, "{eb} after {ea}");
        assert!(!lease::renew(&a, p, &sa, ea, LONG).await.unwrap());

        // a, still believing it owns p, writes: refused, rolled back, nothing written.
        let tx = a.transaction().await.unwrap();
        tx.execute("INSERT INTO counters VALUES ('late write by a', 1)", &[])
            .await
            .unwrap();
        match lease::fence(&tx, p, &sa, ea).await {
            Err(LeaseError::Fenced(f)) => {
                assert_eq!((f.partition, f.server, f.epoch), (p, sa.clone(), ea));
            }
            other => panic!("a wrote after losing {p}: {other:?}"),
        }
        drop(tx);
        assert_eq!(count(&b, "late write by a").await, 0);

        // b's writes pass the fence.
        let tx = b.transaction().await.unwrap();
        lease::fence(&tx, p, &sb, eb).await.unwrap();
        tx.execute("INSERT INTO counters VALUES ('written by b', 2)", &[])
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(count(&a, "written by b").await, 1);
        // An expired lease nobody took is fenced too, and cannot be renewed.
        let q = part(8);
        let Acquire::Granted(eq) = lease::try_acquire(&a, q, &sa, SHORT).await.unwrap() else {
            panic!("a fresh partition is free");
        };
        let mut waited = 0;
        while !lease::leases(&a)
            .await
            .unwrap()
            .iter()
            .any(|r| r.partition == q && !r.is_live())
        {
            a.execute("SELECT pg_sleep(0.05)", &[]).await.unwrap();
            waited += 1;
            assert!(waited < 200, "the lease of {q} never expired");
        }
        let tx = a.transaction().await.unwrap();
        assert!(matches!(
            lease::fence(&tx, q, &sa, eq).await,
            Err(LeaseError::Fenced(_))
        ));
        drop(tx);
        assert!(!lease::renew(&a, q, &sa, eq, LONG).await.unwrap());
        assert_eq!(
            lease::try_acquire(&a, q, &sa, LONG).await.unwrap(),
            Acquire::Granted(Epoch(eq.0 + 1))
        );
    });
}

/// The fence's share lock orders a write that passed it before any takeover: the new owner's
/// grant waits for the old owner's transaction, even once the lease expired meanwhile.
#[test]
fn a_takeover_waits_for_a_fenced_transaction() {
    with_database(|url| async move {
        let (mut a, b, watch) = (
            connect(&url).await,
            connect(&url).await,
            connect(&url).await,
        );
        let (sa, sb) = (sid("a"), sid("b"));
        let b_pid: i32 = b
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        // A 2 s lease, fenced at once; should this machine stall past it before the fence,
        // the next partition is tried.
        let mut tried = 0u16;
        let (p, ea, tx) = loop {
            let p = part(tried);
            tried += 1;
            assert!(tried < 10, "never fenced within 2 s of the grant");
            let granted = lease::try_acquire(&a, p, &sa, Duration::from_secs(2))
                .await
                .unwrap();
            let Acquire::Granted(ea) = granted else {
                panic!("a fresh partition is free");
            };
            // `a` is borrowed by the transaction only once the fence passed.
            let tx = a.transaction().await.unwrap();
            if lease::fence(&tx, p, &sa, ea).await.is_ok() {
                break (p, ea, tx);
            }
        };
        let taker = tokio::spawn({
            let sb = sb.clone();
            async move { acquire_when_expired(&b, p, &sb).await }
        });
        // b waits on the lease row's lock, and keeps waiting after the lease expired.
        let waiting = "SELECT count(*) FROM pg_stat_activity \
                       WHERE pid = $1 AND wait_event_type = 'Lock'";
        let expired = "SELECT count(*) FROM leases WHERE partition = $1 AND expires_at <= now()";
        let pn = i32::from(p.get());
        let mut polls = 0;
        loop {
            let w: i64 = watch.query_one(waiting, &[&b_pid]).await.unwrap().get(0);
            let e: i64 = watch.query_one(expired, &[&pn]).await.unwrap().get(0);
            if w == 1 && e == 1 {
                break;
            }
            watch.execute("SELECT pg_sleep(0.05)", &[]).await.unwrap();
            polls += 1;
            assert!(
                polls < 400,
                "b never waited on an expired lease (waiting {w}, expired {e})"
            );
        }
        assert!(!taker.is_finished());
        tx.execute("INSERT INTO counters VALUES ('a before takeover', 1)", &[])
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let eb = taker.await.unwrap();
        assert!(eb > ea, "{eb} after {ea}");
        assert_eq!(count(&watch, "a before takeover").await, 1);
    });
}

#[test]
fn a_bounded_lock_wait_fails_the_takeover_alone_and_the_session_goes_on() {
    with_database(|url| async move {
        let (mut a, b, watch) = (
            connect(&url).await,
            connect(&url).await,
            connect(&url).await,
        );
        lease::bound_lock_waits(&b, Duration::from_millis(200))
            .await
            .unwrap();
        let (sa, sb) = (sid("a"), sid("b"));
        // b holds another partition on a long lease: its renewals must keep working.
        let other = part(20);
        let Acquire::Granted(eo) = lease::try_acquire(&b, other, &sb, LONG).await.unwrap() else {
            panic!("a fresh partition is free");
        };
        let mut tried = 0u16;
        let (p, ea, tx) = loop {
            let p = part(tried);
            tried += 1;
            assert!(tried < 10, "never fenced within 2 s of the grant");
            let Acquire::Granted(ea) = lease::try_acquire(&a, p, &sa, Duration::from_secs(2))
                .await
                .unwrap()
            else {
                panic!("a fresh partition is free");
            };
            let tx = a.transaction().await.unwrap();
            if lease::fence(&tx, p, &sa, ea).await.is_ok() {
                break (p, ea, tx);
            }
        };
        // Wait, by the database's clock, until a's lease has expired under its open fence.
        let expired = "SELECT count(*) FROM leases WHERE partition = $1 AND expires_at <= now()";
        let pn = i32::from(p.get());
        let mut polls = 0;
        while watch
            .query_one(expired, &[&pn])
            .await
            .unwrap()
            .get::<_, i64>(0)
            == 0
        {
            watch.execute("SELECT pg_sleep(0.05)", &[]).await.unwrap();
            polls += 1;
            assert!(polls < 400, "the lease of {p} never expired");
        }
        // The takeover cannot have the row while the fence holds it: it fails, it does not
        // hang, and the same session still renews its other partition.
        let refused = lease::try_acquire(&b, p, &sb, LONG).await;
        assert!(
            matches!(refused, Err(LeaseError::Database(_))),
            "{refused:?}"
        );
        assert!(lease::renew(&b, other, &sb, eo, LONG).await.unwrap());
        // Once the fenced transaction ends, the takeover goes through.
        tx.commit().await.unwrap();
        let eb = acquire_when_expired(&b, p, &sb).await;
        assert!(eb > ea, "{eb} after {ea}");
    });
}

/// A holder stopped inside a fenced transaction (a paused process: it sends nothing more)
/// does not keep its locks: with the writer's session limits, PostgreSQL ends its session,
/// the transaction rolls back, and a takeover after the lease expired goes through at once —
/// its first try, with the lock wait the membership bounds.
#[test]
fn a_holder_paused_inside_a_fenced_transaction_loses_its_locks_to_the_database() {
    with_database(|url| async move {
        let lease_of_a = Duration::from_secs(2);
        let (mut a, b, watch) = (
            connect(&url).await,
            connect(&url).await,
            connect(&url).await,
        );
        let limits = lease::SessionLimits::for_lease(lease_of_a);
        assert!(limits.idle_in_transaction < lease_of_a / 4);
        lease::limit_session(&a, limits).await.unwrap();
        lease::bound_lock_waits(&b, Duration::from_millis(200))
            .await
            .unwrap();
        let (sa, sb) = (sid("a"), sid("b"));
        let a_pid: i32 = a
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        let mut tried = 0u16;
        let (p, ea, tx) = loop {
            let p = part(tried);
            tried += 1;
            assert!(tried < 10, "never fenced within the lease of the grant");
            let Acquire::Granted(ea) = lease::try_acquire(&a, p, &sa, lease_of_a).await.unwrap()
            else {
                panic!("a fresh partition is free");
            };
            let tx = a.transaction().await.unwrap();
            if lease::fence(&tx, p, &sa, ea).await.is_ok() {
                break (p, ea, tx);
            }
        };
        tx.execute("INSERT INTO counters VALUES ('written by a', 1)", &[])
            .await
            .unwrap();
        // a "pauses": it sends nothing more. Wait, on the database's side, until a's session
        // is gone and its lease expired.
        let gone = "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $1";
        let expired =
            "SELECT count(*) = 1 FROM leases WHERE partition = $1 AND expires_at <= now()";
        let pn = i32::from(p.get());
        let mut polls = 0;
        loop {
            let g: bool = watch.query_one(gone, &[&a_pid]).await.unwrap().get(0);
            let e: bool = watch.query_one(expired, &[&pn]).await.unwrap().get(0);
            if g && e {
                break;
            }
            watch.execute("SELECT pg_sleep(0.05)", &[]).await.unwrap();
            polls += 1;
            assert!(
                polls < 400,
                "a's session was never ended (gone {g}, expired {e})"
            );
        }
        // The lease row is free: the first try takes it, without a lock wait.
        let granted = lease::try_acquire(&b, p, &sb, LONG).await.unwrap();
        assert!(
            matches!(granted, Acquire::Granted(eb) if eb > ea),
            "{granted:?} after {ea}"
        );
        // a's transaction was rolled back: nothing it wrote is there, and its commit fails.
        assert!(tx.commit().await.is_err());
        assert_eq!(count(&watch, "written by a").await, 0);
    });
}

#[test]
fn membership_is_decided_by_the_database_clock() {
    with_database(|url| async move {
        let c = connect(&url).await;
        let addrs = vec!["10.0.0.1:7700".to_owned(), "[::1]:7700".to_owned()];
        let url = Some("http://10.0.0.1:8080");
        lease::heartbeat(&c, &sid("a"), &addrs, url, LONG)
            .await
            .unwrap();
        lease::heartbeat(&c, &sid("b"), &[], None, LONG)
            .await
            .unwrap();
        lease::heartbeat(&c, &sid("c"), &[], None, SHORT)
            .await
            .unwrap();
        let mut polls = 0;
        let live = loop {
            let live = lease::live_servers(&c).await.unwrap();
            if live.len() == 2 {
                break live;
            }
            c.execute("SELECT pg_sleep(0.05)", &[]).await.unwrap();
            polls += 1;
            assert!(polls < 200, "c's heartbeat never expired");
        };
        let ids: Vec<&str> = live.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(live[0].addresses, addrs);
        assert_eq!(live[0].http_url.as_deref(), url);
        assert_eq!(live[1].http_url, None);
        assert_eq!(lease::all_servers(&c).await.unwrap().len(), 3);
        // A heartbeat brings a server back; forgetting removes only the long expired.
        lease::heartbeat(&c, &sid("c"), &[], None, LONG)
            .await
            .unwrap();
        assert_eq!(lease::live_servers(&c).await.unwrap().len(), 3);
        assert_eq!(lease::forget_expired(&c, LONG).await.unwrap(), 0);
        lease::leave(&c, &sid("a")).await.unwrap();
        let ids: Vec<String> = lease::all_servers(&c)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.id.to_string())
            .collect();
        assert_eq!(ids, ["b", "c"]);
        let too_many = vec!["x:1".to_owned(); lease::MAX_ADDRESSES + 1];
        assert!(matches!(
            lease::heartbeat(&c, &sid("d"), &too_many, None, LONG).await,
            Err(LeaseError::Invalid { .. })
        ));
        assert!(matches!(
            lease::heartbeat(&c, &sid("d"), &[], None, Duration::ZERO).await,
            Err(LeaseError::Invalid { .. })
        ));
        assert!(matches!(
            lease::heartbeat(&c, &sid("d"), &[], Some(""), LONG).await,
            Err(LeaseError::Invalid { .. })
        ));
    });
}

/// A partition's home is the live holder of its unexpired lease, with that server's HTTP
/// URL; a released or expired lease, or a holder whose heartbeat expired, is no home.
#[test]
fn the_homes_of_partitions_are_their_live_holders() {
    with_database(|url| async move {
        let c = connect(&url).await;
        let (a, b) = (sid("a"), sid("b"));
        lease::heartbeat(&c, &a, &[], Some("http://a:8080"), LONG)
            .await
            .unwrap();
        lease::heartbeat(&c, &b, &[], None, SHORT).await.unwrap();
        for (p, s) in [(0, &a), (1, &a), (2, &b)] {
            lease::try_acquire(&c, part(p), s, LONG).await.unwrap();
        }
        lease::release(&c, part(1), &a, Epoch(1)).await.unwrap();
        let mut polls = 0;
        let homes = loop {
            let homes = lease::homes(&c).await.unwrap();
            if homes.len() == 1 {
                break homes;
            }
            c.execute("SELECT pg_sleep(0.05)", &[]).await.unwrap();
            polls += 1;
            assert!(polls < 200, "b's heartbeat never expired: {homes:?}");
        };
        assert_eq!(
            homes,
            [lease::PartitionHome {
                partition: part(0),
                owner: a,
                http_url: Some("http://a:8080".into()),
            }]
        );
    });
}

/// The first server's key is the cluster's; every later one reads it.
#[test]
fn the_forwarding_key_is_written_once() {
    with_database(|url| async move {
        let c = connect(&url).await;
        assert_eq!(lease::forward_key(&c, "first").await.unwrap(), "first");
        assert_eq!(lease::forward_key(&c, "second").await.unwrap(), "first");
    });
}

/// The adapter between the ownership machine and the database: a server alone in the
/// cluster ends up holding every partition, each granted once.
#[test]
fn an_ownership_machine_acquires_every_partition() {
    with_database(|url| async move {
        let c = connect(&url).await;
        let me = sid("solo");
        let config = OwnershipConfig {
            lease: LONG,
            ..OwnershipConfig::default()
        };
        let mut m = Ownership::new(me.clone(), config).unwrap();
        let start = std::time::Instant::now();
        let now = || MonoUs(i64::try_from(start.elapsed().as_micros()).unwrap());
        m.handle(
            now(),
            ferrojob::cluster::Input::Membership(vec![me.clone()]),
        );
        let mut rounds = 0;
        while m.held() < usize::from(PARTITION_COUNT) {
            let commands: Vec<Command> = std::iter::from_fn(|| m.poll_command()).collect();
            for command in commands {
                if let Some(answer) = lease::carry_out(&c, &me, command).await {
                    m.handle(now(), answer);
                }
            }
            m.handle_timeout(now());
            rounds += 1;
            assert!(rounds < 1000, "held {} partitions", m.held());
        }
        let rows = lease::leases(&c).await.unwrap();
        assert_eq!(rows.len(), usize::from(PARTITION_COUNT));
        assert!(rows
            .iter()
            .all(|r| r.owner.as_ref() == Some(&me) && r.is_live()));
        assert!(rows.iter().all(|r| r.epoch >= Epoch(1)));
    });
}
