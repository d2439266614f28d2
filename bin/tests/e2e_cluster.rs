//! End to end, a cluster on PostgreSQL: two real `ferrojob-server --cluster` processes
//! sharing one fresh database, a real worker given both addresses. The app's partition
//! settles on its rendezvous owner, which runs the job; the owner is killed (SIGKILL) and
//! the other server takes the partition over, reloads the job from the database and runs it
//! on, with the worker following it, and no trigger time is run twice. Every server answers
//! every app's routes: the others forward them to the owner. PostgreSQL must
//! answer at `FERROJOB_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432`) and
//! `psql` must be installed, or the test fails.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use ferrojob::api::{CreateApp, InstanceQuery, RunJob};
use ferrojob::client::Client;
use ferrojob::cluster::{partition_of, preferred_owner, PartitionId, ServerId};
use ferrojob::ids::{InstanceId, JobId};
use ferrojob::model::InstanceStatus;
use ferrojob::time_expression::TimeExpressionType;

mod common;
use common::postgres::Database;
use common::*;

/// The lease: long enough that a loaded machine renews in time, short enough for a quick
/// failover.
const LEASE_MS: &str = "3000";

/// One test at a time: each runs two or three servers, workers and a database on a machine
/// that may have two cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One server of the cluster: its process, its API and its worker address (= its id).
struct Server {
    proc: Proc,
    client: Client,
    transport: SocketAddr,
}

fn start(dir: &std::path::Path, name: &str, db: &Database) -> Server {
    let transport = free_port();
    let flags: Vec<String> = ["--store", &db.url(), "--cluster", "--lease-ms", LEASE_MS]
        .iter()
        .map(|s| s.to_string())
        .collect();
    std::fs::create_dir_all(dir.join(name)).unwrap();
    let proc = start_server_with(&dir.join(name), Some(transport), name, &flags);
    let http: SocketAddr = proc.field("http").parse().unwrap();
    Server {
        client: Client::new(&format!("http://{http}"), TOKEN).unwrap(),
        proc,
        transport,
    }
}

/// The partitions a server says it acts for.
async fn owned(s: &Server) -> Option<u64> {
    let text = s.client.metrics().await.ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("ferrojob_cluster_partitions_owned "))
        .and_then(|v| v.trim().parse().ok())
}

fn diagnostics(servers: &[&Server], worker: &Proc) -> String {
    let mut out = String::new();
    for s in servers {
        out.push_str(&format!(
            "\n--- server {} ---\n{}",
            s.transport,
            s.proc.stderr_text()
        ));
    }
    out.push_str(&format!("\n--- worker ---\n{}", worker.stderr_text()));
    out
}

/// Two servers with the app's partition settled on its owner, and a FIXED_RATE job of the
/// app run there by a worker that knows both servers.
struct Running {
    // Dropped first: the processes go before their database.
    owner: Server,
    other: Server,
    worker: Proc,
    job: JobId,
    _dir: tempfile::TempDir,
    _db: Database,
}

async fn succeeded_on(s: &Server, job: JobId) -> Option<usize> {
    let page = s
        .client
        .list_instances(
            APP,
            &InstanceQuery {
                job_id: Some(job),
                limit: Some(1000),
                ..Default::default()
            },
        )
        .await
        .ok()?;
    Some(
        page.items
            .into_iter()
            .filter(|i| i.status == InstanceStatus::Succeed)
            .count(),
    )
}

async fn running() -> Running {
    let db = Database::create();
    let dir = tempfile::tempdir().unwrap();
    let a = start(dir.path(), "a", &db);
    let b = start(dir.path(), "b", &db);
    let ids = [
        ServerId::new(&a.transport.to_string()).unwrap(),
        ServerId::new(&b.transport.to_string()).unwrap(),
    ];
    // Every partition held by its rendezvous owner (the first server took them all, then
    // handed the second its share).
    let share = |id: &ServerId| {
        PartitionId::all()
            .filter(|p| preferred_owner(*p, &ids) == Some(id))
            .count() as u64
    };
    let (share_a, share_b) = (share(&ids[0]), share(&ids[1]));
    wait_for(
        "the partitions to settle",
        Duration::from_secs(60),
        || async { (owned(&a).await? == share_a && owned(&b).await? == share_b).then_some(()) },
    )
    .await;
    let owner_id = preferred_owner(partition_of(APP), &ids).unwrap().clone();
    let (owner, other) = if owner_id == ids[0] { (a, b) } else { (b, a) };

    owner
        .client
        .create_app(&CreateApp {
            name: APP.into(),
            secret: SECRET.into(),
        })
        .await
        .unwrap();
    // Refused (503, nothing written) while the owner does not act for the app yet.
    let job = wait_for(
        "the owner to create the job",
        Duration::from_secs(60),
        || async {
            let b = body("rate", TimeExpressionType::FixedRate, "200", "noop", "");
            owner.client.create_job(APP, &b).await.ok().map(|c| c.id)
        },
    )
    .await;
    // The other server does not act for the app: it forwards to the owner (once it has read
    // who holds the partition, at its next heartbeat).
    let (path, owner_name) = (format!("jobs/{}", job.0), owner.transport.to_string());
    wait_for(
        "the other server to forward to the owner",
        Duration::from_secs(60),
        || async { (served_by(&other, &path).await? == owner_name).then_some(()) },
    )
    .await;

    // A worker that knows both servers: the other one turns it away to the owner.
    let servers = format!("{},{}", other.transport, owner.transport);
    let args: Vec<String> = [
        "--server",
        &servers,
        "--app",
        APP,
        "--secret",
        SECRET,
        "--heartbeat-interval-ms",
        "200",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let worker = Proc::spawn(
        env!("CARGO_BIN_EXE_ferrojob-worker"),
        &args,
        dir.path(),
        "worker",
    );
    wait_for(
        "runs to succeed on the owner",
        Duration::from_secs(60),
        || async {
            let j = owner.client.get_job(APP, job).await.ok()?;
            let n = succeeded_on(&owner, job).await?;
            (j.runs >= 3 && n >= 2).then_some(())
        },
    )
    .await;
    // The other server knew nothing of the app (created after it started): it still checked
    // the worker's secret and turned it away as not served there, not as unknown.
    assert!(
        !worker
            .stderr_text()
            .contains("check the app name and secret"),
        "{}",
        worker.stderr_text()
    );
    Running {
        owner,
        other,
        worker,
        job,
        _dir: dir,
        _db: db,
    }
}

/// The other server acts for the app and runs the job on.
async fn runs_on_after_takeover(r: &Running) {
    let (other, job) = (&r.other, r.job);
    let before = wait_for(
        "the other server to act for the app",
        Duration::from_secs(60),
        || async { other.client.get_job(APP, job).await.ok().map(|j| j.runs) },
    )
    .await;
    let before_ok = succeeded_on(other, job).await.unwrap_or(0);
    wait_for(
        "new runs on the server that took over",
        Duration::from_secs(60),
        || async {
            let n = succeeded_on(other, job).await?;
            let j = other.client.get_job(APP, job).await.ok()?;
            (j.runs >= before + 3 && n >= before_ok + 2).then_some(())
        },
    )
    .await;
}

/// Each trigger time was run once at most, across both servers' lives.
async fn no_trigger_time_twice(r: &Running) {
    let all = r
        .other
        .client
        .list_instances(
            APP,
            &InstanceQuery {
                job_id: Some(r.job),
                limit: Some(1000),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .items;
    let mut seen = BTreeSet::new();
    for i in &all {
        assert!(
            seen.insert(i.trigger_time),
            "trigger time {} run twice: {all:?}{}",
            i.trigger_time,
            diagnostics(&[&r.other], &r.worker)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_owner_s_partition_is_taken_over_and_its_job_runs_on_without_a_double_run() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut r = running().await;
    // SIGKILL: nothing handed over; the other server takes over once the lease expires.
    r.owner.proc.kill();
    runs_on_after_takeover(&r).await;
    no_trigger_time_twice(&r).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_owner_hands_its_partitions_over_and_exits_cleanly() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut r = running().await;
    // SIGTERM: the owner commits what it wrote, stops acting, releases its leases, leaves.
    let pid = r.owner.proc.child.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(sent.success());
    let exit = wait_for("the owner to exit", Duration::from_secs(60), || {
        let exited = r.owner.proc.child.try_wait().ok().flatten();
        async move { exited }
    })
    .await;
    let log = r.owner.proc.stderr_text();
    assert!(
        exit.success()
            && log.contains("handing partition over")
            && log.contains("left the membership"),
        "{exit:?}{}",
        diagnostics(&[&r.owner, &r.other], &r.worker)
    );
    runs_on_after_takeover(&r).await;
    no_trigger_time_twice(&r).await;
}

/// The server, by index, that acts for the app now: the one that serves its routes itself
/// (the others forward them to it).
async fn acting(servers: &[Server], alive: &[bool], job: JobId) -> Option<usize> {
    for (i, s) in servers.iter().enumerate() {
        let path = format!("jobs/{}", job.0);
        if alive[i] && served_by(s, &path).await == Some(s.transport.to_string()) {
            return Some(i);
        }
    }
    None
}

/// `GET /v1/apps/{APP}/{path}` on `s`: its answer (status, `Retry-After`, and the server
/// that served it), `None` when none came within 2 s.
async fn get_raw(
    s: &Server,
    path: &str,
    token: &str,
) -> Option<(u16, Option<String>, Option<String>)> {
    let url = format!(
        "{}/v1/apps/{APP}/{path}",
        s.client.base_url().trim_end_matches('/')
    );
    let answer = ferrojob::https::HttpsRoots::public()
        .client_builder()
        .unwrap()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .ok()?;
    let header = |name: &str| {
        answer
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    Some((
        answer.status().as_u16(),
        header("retry-after"),
        header("ferrojob-served-by"),
    ))
}

/// The server that served a successful `GET` of the app's `path` on `s`.
async fn served_by(s: &Server, path: &str) -> Option<String> {
    match get_raw(s, path, TOKEN).await? {
        (200, _, by) => by,
        _ => None,
    }
}

/// Every server answers every app's routes: commands and reads sent to a server that does not
/// own the app are forwarded to its owner, after the token was checked where it arrived; with
/// the owner dead, the other server answers 503 with `Retry-After` at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_forwards_an_app_s_requests_to_its_owner() {
    let _one = ONE_AT_A_TIME.lock().await;
    let db = Database::create();
    let dir = tempfile::tempdir().unwrap();
    let a = start(dir.path(), "a", &db);
    let b = start(dir.path(), "b", &db);
    let ids = [
        ServerId::new(&a.transport.to_string()).unwrap(),
        ServerId::new(&b.transport.to_string()).unwrap(),
    ];
    let owner_id = preferred_owner(partition_of(APP), &ids).unwrap().clone();
    let (mut owner, other) = if owner_id == ids[0] { (a, b) } else { (b, a) };
    // Created through the other server too: `POST /v1/apps` is served anywhere.
    other
        .client
        .create_app(&CreateApp {
            name: APP.into(),
            secret: SECRET.into(),
        })
        .await
        .unwrap();
    // Until the partition settles on its owner the other server may still act for the app;
    // a job it creates then is the owner's once it takes the partition.
    let job = wait_for(
        "the job created through the other server",
        Duration::from_secs(60),
        || async {
            let b = body("api", TimeExpressionType::Api, "", "noop", "");
            other.client.create_job(APP, &b).await.ok().map(|c| c.id)
        },
    )
    .await;
    let path = format!("jobs/{}", job.0);
    let owner_name = owner.transport.to_string();
    wait_for(
        "the owner to serve the app",
        Duration::from_secs(60),
        || async { (served_by(&other, &path).await? == owner_name).then_some(()) },
    )
    .await;
    let run = RunJob {
        params: "through the other server".into(),
        delay_ms: 0,
    };
    let created = other.client.run_job(APP, job, &run).await.unwrap();
    let seen = other
        .client
        .get_instance(APP, created.instance_id)
        .await
        .unwrap();
    let at_owner = owner
        .client
        .get_instance(APP, created.instance_id)
        .await
        .unwrap();
    assert_eq!((seen.id, seen.job_id), (at_owner.id, at_owner.job_id));
    let listed = other
        .client
        .list_instances(
            APP,
            &InstanceQuery {
                job_id: Some(job),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(listed.items.iter().any(|i| i.id == created.instance_id));
    let forwarded = counter(
        &other.client.metrics().await.unwrap(),
        "ferrojob_http_forwarded_total ",
    );
    assert!(forwarded >= 4, "{forwarded} forwarded");

    // A wrong token is refused where it arrived, and counted there only.
    let (status, _, _) = get_raw(&other, &path, "not-a-token").await.unwrap();
    assert_eq!(status, 401);
    let failures = |m: String| counter(&m, "ferrojob_http_login_failures_total ");
    assert_eq!(failures(other.client.metrics().await.unwrap()), 1);
    assert_eq!(failures(owner.client.metrics().await.unwrap()), 0);

    // The owner dies: until its lease expires the other server cannot reach it, and says so.
    owner.proc.kill();
    let (status, retry, _) = get_raw(&other, &path, TOKEN)
        .await
        .expect("an answer, not a hang");
    assert_eq!((status, retry.as_deref()), (503, Some("1")));
}

fn signal(p: &Proc, sig: &str) {
    let pid = p.child.id().to_string();
    let sent = Command::new("kill").args([sig, &pid]).status().unwrap();
    assert!(sent.success(), "kill {sig} {pid}");
}

fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0)
}

/// Three servers, three workers, a FIXED_RATE job, a CRON job and API runs; the owner is
/// killed, then the next owner is paused past its lease and resumed. Every acknowledged run
/// succeeds, no trigger time runs twice, the FIXED_RATE series keeps going, and the paused
/// server, once resumed, knows it lost the partition and commits nothing of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_survive_a_killed_owner_and_a_paused_one() {
    let _one = ONE_AT_A_TIME.lock().await;
    let db = Database::create();
    let dir = tempfile::tempdir().unwrap();
    let mut servers: Vec<Server> = ["a", "b", "c"]
        .iter()
        .map(|n| start(dir.path(), n, &db))
        .collect();
    let mut alive = [true; 3];
    let mut ids: Vec<ServerId> = servers
        .iter()
        .map(|s| ServerId::new(&s.transport.to_string()).unwrap())
        .collect();
    let share = |ids: &[ServerId], id: &ServerId| {
        PartitionId::all()
            .filter(|p| preferred_owner(*p, ids) == Some(id))
            .count() as u64
    };
    wait_for(
        "the partitions to settle",
        Duration::from_secs(60),
        || async {
            for (s, id) in servers.iter().zip(&ids) {
                if owned(s).await? != share(&ids, id) {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    let first = ids
        .iter()
        .position(|id| Some(id) == preferred_owner(partition_of(APP), &ids))
        .unwrap();
    let owner = &servers[first];
    owner
        .client
        .create_app(&CreateApp {
            name: APP.into(),
            secret: SECRET.into(),
        })
        .await
        .unwrap();
    // Refused (503, nothing written) while the owner does not act for the app yet.
    let create = |b: ferrojob::api::JobBody| {
        let client = owner.client.clone();
        async move {
            wait_for(
                "the owner to create a job",
                Duration::from_secs(60),
                || async { client.create_job(APP, &b).await.ok().map(|c| c.id) },
            )
            .await
        }
    };
    let rate = create(body(
        "rate",
        TimeExpressionType::FixedRate,
        "200",
        "noop",
        "",
    ))
    .await;
    let cron = create(body(
        "cron",
        TimeExpressionType::Cron,
        "* * * * * ?",
        "noop",
        "",
    ))
    .await;
    let api = create(body("api", TimeExpressionType::Api, "", "noop", "")).await;
    let every: String = servers
        .iter()
        .map(|s| s.transport.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let workers: Vec<Proc> = (0..3)
        .map(|i| {
            let args: Vec<String> = [
                "--server",
                &every,
                "--app",
                APP,
                "--secret",
                SECRET,
                "--heartbeat-interval-ms",
                "200",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            Proc::spawn(
                env!("CARGO_BIN_EXE_ferrojob-worker"),
                &args,
                dir.path(),
                &format!("worker{i}"),
            )
        })
        .collect();
    let diag = |servers: &[Server]| {
        let mut out = String::new();
        for s in servers {
            out.push_str(&format!(
                "\n--- server {} ---\n{}",
                s.transport,
                s.proc.stderr_text()
            ));
        }
        for (i, w) in workers.iter().enumerate() {
            out.push_str(&format!("\n--- worker{i} ---\n{}", w.stderr_text()));
        }
        out
    };

    // API runs, each acknowledged by whichever server acts for the app at the time.
    let mut acknowledged = Vec::new();
    async fn run_some(
        servers: &[Server],
        alive: &[bool],
        api: JobId,
        n: usize,
        out: &mut Vec<InstanceId>,
    ) {
        let mut done = 0;
        while done < n {
            let Some(i) = acting(servers, alive, api).await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let run = RunJob {
                params: format!("run {}", out.len()),
                delay_ms: 0,
            };
            if let Ok(r) = servers[i].client.run_job(APP, api, &run).await {
                out.push(r.instance_id);
                done += 1;
            }
        }
    }
    run_some(&servers, &alive, api, 5, &mut acknowledged).await;
    wait_for(
        "runs on the first owner",
        Duration::from_secs(60),
        || async {
            let j = servers[first].client.get_job(APP, rate).await.ok()?;
            (j.runs >= 5).then_some(())
        },
    )
    .await;

    // kill -9 the owner: the preferred one of the other two takes over.
    servers[first].proc.kill();
    alive[first] = false;
    ids.retain(|id| *id != ServerId::new(&servers[first].transport.to_string()).unwrap());
    let second = wait_for("a second owner", Duration::from_secs(60), || {
        acting(&servers, &alive, rate)
    })
    .await;
    run_some(&servers, &alive, api, 5, &mut acknowledged).await;
    let before_pause = servers[second]
        .client
        .get_job(APP, rate)
        .await
        .unwrap()
        .runs;
    wait_for(
        "runs on the second owner",
        Duration::from_secs(60),
        || async {
            let j = servers[second].client.get_job(APP, rate).await.ok()?;
            (j.runs >= before_pause + 3).then_some(())
        },
    )
    .await;

    // SIGSTOP the second owner well past its lease: the third takes over meanwhile.
    signal(&servers[second].proc, "-STOP");
    alive[second] = false;
    let mut third = None;
    for _ in 0..1200 {
        third = acting(&servers, &alive, rate).await;
        if third.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some(third) = third else {
        signal(&servers[second].proc, "-CONT");
        panic!("no third owner{}", diag(&servers));
    };
    assert_ne!(third, second);
    tokio::time::sleep(Duration::from_secs(2)).await;
    signal(&servers[second].proc, "-CONT");
    alive[second] = true;
    // Resumed, it finds it lost the partition and stops acting for it (it may be given the
    // partition back later, under a new epoch: it is the preferred owner again).
    wait_for(
        "the resumed server to know it lost",
        Duration::from_secs(60),
        || async {
            let m = servers[second].client.metrics().await.ok()?;
            (counter(&m, "ferrojob_cluster_leases_lost_total ") >= 1).then_some(())
        },
    )
    .await;
    run_some(&servers, &alive, api, 5, &mut acknowledged).await;
    // Whoever acts for the app now answers; ownership may still move.
    let now = |job: JobId| {
        let (servers, alive) = (&servers, alive);
        async move {
            let i = acting(servers, &alive, job).await?;
            Some(servers[i].client.clone())
        }
    };
    let runs = wait_for("an owner", Duration::from_secs(60), || async {
        now(rate)
            .await?
            .get_job(APP, rate)
            .await
            .ok()
            .map(|j| j.runs)
    })
    .await;
    let mut grown = false;
    for _ in 0..1200 {
        if let Some(c) = now(rate).await {
            if c.get_job(APP, rate).await.is_ok_and(|j| j.runs >= runs + 5) {
                grown = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(grown, "no runs after the pause{}", diag(&servers));

    // A client given every server finds the owner, whichever it is now.
    let every_url: Vec<String> = servers
        .iter()
        .map(|s| s.client.base_url().trim_end_matches('/').to_owned())
        .collect();
    let anywhere = Client::new(&every_url.join(","), TOKEN).unwrap();
    wait_for(
        "the owner through every URL",
        Duration::from_secs(60),
        || async { anywhere.get_job(APP, rate).await.ok() },
    )
    .await;

    // Every acknowledged API run succeeded.
    for id in &acknowledged {
        let i = wait_for(
            "an acknowledged run to end",
            Duration::from_secs(60),
            || async {
                let i = now(api).await?.get_instance(APP, *id).await.ok()?;
                i.status.is_final().then_some(i)
            },
        )
        .await;
        assert_eq!(i.status, InstanceStatus::Succeed, "{i:?}{}", diag(&servers));
    }
    // No trigger time of the scheduled jobs ran twice, and the FIXED_RATE series has no gap
    // longer than a failover (lease, pause and reconnection included).
    for job in [rate, cron] {
        let all = wait_for("the instances", Duration::from_secs(60), || async {
            let q = InstanceQuery {
                job_id: Some(job),
                limit: Some(1000),
                ..Default::default()
            };
            now(job).await?.list_instances(APP, &q).await.ok()
        })
        .await
        .items;
        let mut times: Vec<i64> = all.iter().map(|i| i.trigger_time).collect();
        times.sort_unstable();
        let n = times.len();
        times.dedup();
        assert_eq!(times.len(), n, "a trigger time ran twice: {all:?}");
        if job == rate {
            let gap = times.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
            assert!(
                gap < 30_000,
                "the longest gap was {gap} ms{}",
                diag(&servers)
            );
        }
    }
    drop(workers);
}
