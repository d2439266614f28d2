//! Bench group `mapreduce_store`: a MapReduce instance's task bookkeeping at 100,000 tasks —
//! map in batches of 1000, dispatch in pages of 1000, finish one task per commit, then read
//! every result back in task order (what reduce does).
//!
//! Functions, on the same disk (a temp dir under the cargo target dir):
//! - `ferrojob_taskstore`: `ferrojob::mapreduce::TaskStore` over a `LogStore` with
//!   `Durability::Buffered` (acknowledged after the write; fdatasync on rotation/flush).
//! - `sqlite`: rusqlite (bundled), WAL, `synchronous=NORMAL` (no fsync per commit in WAL mode:
//!   the same durability class), one table `tasks(instance, task_id, ...)` keyed by
//!   `(instance, task_id)` with an index on `(instance, status, task_id)` for the pending scan,
//!   a `counts` row updated in the same transaction as each change (as `TaskStore` keeps
//!   counters). Same operations: one transaction per map batch, per dispatch page, per finish.
//!
//! - `*_finish_batch_1000`: the same, but finish reports go 1000 to a commit
//!   (`TaskStore::mark_finished_many`; one SQLite transaction of 1000 updates).
//!
//! Neither is durable per commit, so this compares the bookkeeping cost, not the disk.
//! Criterion times one whole instance; the per-phase rates (tasks/s) of one extra run per
//! function go to `target/bench-reports/mapreduce_store.json`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ferrojob::mapreduce::{TaskReport, TaskStore};
use ferrojob_benches::{target_dir, Report, Row};
use ferrojob_store::{Durability, LogOptions, LogStore};

const TASKS: u64 = 100_000;
const BATCH: u64 = 1000;
const WORKER: &str = "127.0.0.1:9001";

/// Seconds spent in each phase of one instance.
#[derive(Default, Clone, Copy)]
struct Phases {
    map: f64,
    dispatch: f64,
    finish: f64,
    results: f64,
}

impl Phases {
    fn total(&self) -> f64 {
        self.map + self.dispatch + self.finish + self.results
    }
}

trait Tasks {
    fn run(&mut self, instance: u64) -> Phases;
}

/// The task store and how many reports each finish commit carries.
struct Ferrojob(TaskStore, usize);

impl Tasks for Ferrojob {
    fn run(&mut self, instance: u64) -> Phases {
        let ts = &self.0;
        let mut p = Phases::default();
        let t = Instant::now();
        ts.map(instance, None, "ROOT_TASK", vec![Vec::new()])
            .expect("map root");
        let mut start = 0;
        while start < TASKS {
            let contents = (start..start + BATCH)
                .map(|i| i.to_be_bytes().to_vec())
                .collect();
            ts.map(instance, Some(0), "sum", contents).expect("map");
            start += BATCH;
        }
        p.map = t.elapsed().as_secs_f64();
        let mut ids_all = Vec::with_capacity(TASKS as usize + 1);
        let t = Instant::now();
        loop {
            let page = ts.next_pending(instance, BATCH as usize).expect("pending");
            if page.is_empty() {
                break;
            }
            let ids: Vec<u64> = page.iter().map(|r| r.task_id).collect();
            ts.mark_dispatched(instance, &ids, WORKER)
                .expect("dispatch");
            ids_all.extend(ids);
        }
        p.dispatch = t.elapsed().as_secs_f64();
        let t = Instant::now();
        // Subtask ids are 1-based (the root is 0); each result is the 0-based index.
        if self.1 <= 1 {
            for id in ids_all {
                ts.mark_finished(
                    instance,
                    id,
                    WORKER,
                    true,
                    id.saturating_sub(1).to_string(),
                    0,
                )
                .expect("finish");
            }
        } else {
            for chunk in ids_all.chunks(self.1) {
                let reports = chunk
                    .iter()
                    .map(|&id| TaskReport {
                        task_id: id,
                        worker: WORKER.to_owned(),
                        dispatch: None,
                        success: true,
                        result: id.saturating_sub(1).to_string(),
                    })
                    .collect();
                ts.mark_finished_many(instance, reports, 0).expect("finish");
            }
        }
        p.finish = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut sum = 0u64;
        for r in ts.results(instance) {
            let r = r.expect("result");
            if r.parent.is_some() {
                sum += r.result.parse::<u64>().expect("number");
            }
        }
        p.results = t.elapsed().as_secs_f64();
        assert_eq!(sum, TASKS * (TASKS - 1) / 2);
        ts.delete_instance(instance).expect("delete");
        p
    }
}

/// The connection and how many reports each finish transaction carries.
struct Sqlite(rusqlite::Connection, usize);

impl Sqlite {
    fn open(dir: &std::path::Path, batch: usize) -> Sqlite {
        let conn = rusqlite::Connection::open(dir.join(format!("tasks-{batch}.sqlite")))
            .expect("sqlite open");
        conn.pragma_update(None, "journal_mode", "WAL")
            .expect("wal");
        conn.pragma_update(None, "synchronous", "NORMAL")
            .expect("sync");
        conn.execute_batch(
            "CREATE TABLE tasks (instance INTEGER NOT NULL, task_id INTEGER NOT NULL,
                parent INTEGER, name TEXT NOT NULL, content BLOB NOT NULL,
                status INTEGER NOT NULL, worker TEXT, result TEXT, retries INTEGER NOT NULL,
                PRIMARY KEY (instance, task_id));
             CREATE INDEX tasks_pending ON tasks (instance, status, task_id);
             CREATE TABLE counts (instance INTEGER PRIMARY KEY, total INTEGER, pending INTEGER,
                running INTEGER, succeeded INTEGER);",
        )
        .expect("schema");
        Sqlite(conn, batch)
    }
}

impl Tasks for Sqlite {
    fn run(&mut self, instance: u64) -> Phases {
        let inst = instance as i64;
        let conn = &mut self.0;
        let mut p = Phases::default();
        let t = Instant::now();
        {
            let tx = conn.transaction().expect("begin");
            tx.execute(
                "INSERT INTO tasks VALUES (?1, 0, NULL, 'ROOT_TASK', x'', 0, NULL, NULL, 0)",
                [inst],
            )
            .expect("root");
            tx.execute("INSERT INTO counts VALUES (?1, 1, 1, 0, 0)", [inst])
                .expect("counts");
            tx.commit().expect("commit");
        }
        let mut start = 0u64;
        while start < TASKS {
            let tx = conn.transaction().expect("begin");
            {
                let mut ins = tx
                    .prepare_cached(
                        "INSERT INTO tasks VALUES (?1, ?2, 0, 'sum', ?3, 0, NULL, NULL, 0)",
                    )
                    .expect("prepare");
                for i in start..start + BATCH {
                    ins.execute(rusqlite::params![
                        inst,
                        (i + 1) as i64,
                        &i.to_be_bytes()[..]
                    ])
                    .expect("insert");
                }
                tx.execute(
                    "UPDATE counts SET total = total + ?2, pending = pending + ?2 WHERE instance = ?1",
                    rusqlite::params![inst, BATCH as i64],
                )
                .expect("counts");
            }
            tx.commit().expect("commit");
            start += BATCH;
        }
        p.map = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut ids_all = Vec::with_capacity(TASKS as usize + 1);
        loop {
            let tx = conn.transaction().expect("begin");
            let ids: Vec<i64> = {
                let mut q = tx
                    .prepare_cached(
                        "SELECT task_id FROM tasks WHERE instance = ?1 AND status = 0
                         ORDER BY task_id LIMIT ?2",
                    )
                    .expect("prepare");
                let rows = q
                    .query_map(rusqlite::params![inst, BATCH as i64], |r| r.get(0))
                    .expect("query");
                rows.collect::<Result<_, _>>().expect("rows")
            };
            if ids.is_empty() {
                break;
            }
            {
                let mut up = tx
                    .prepare_cached(
                        "UPDATE tasks SET status = 1, worker = ?3
                         WHERE instance = ?1 AND task_id = ?2 AND status = 0",
                    )
                    .expect("prepare");
                for id in &ids {
                    up.execute(rusqlite::params![inst, id, WORKER])
                        .expect("update");
                }
                tx.execute(
                    "UPDATE counts SET pending = pending - ?2, running = running + ?2 WHERE instance = ?1",
                    rusqlite::params![inst, ids.len() as i64],
                )
                .expect("counts");
            }
            tx.commit().expect("commit");
            ids_all.extend(ids);
        }
        p.dispatch = t.elapsed().as_secs_f64();
        let t = Instant::now();
        for chunk in ids_all.chunks(self.1.max(1)) {
            let tx = conn.transaction().expect("begin");
            {
                let mut up = tx
                    .prepare_cached(
                        "UPDATE tasks SET status = 2, result = ?3
                         WHERE instance = ?1 AND task_id = ?2 AND status = 1 AND worker = ?4",
                    )
                    .expect("prepare");
                for &id in chunk {
                    let n = up
                        .execute(rusqlite::params![
                            inst,
                            id,
                            (id - 1).max(0).to_string(),
                            WORKER
                        ])
                        .expect("update");
                    assert_eq!(n, 1);
                }
                tx.prepare_cached(
                    "UPDATE counts SET running = running - ?2, succeeded = succeeded + ?2
                     WHERE instance = ?1",
                )
                .expect("prepare")
                .execute(rusqlite::params![inst, chunk.len() as i64])
                .expect("counts");
            }
            tx.commit().expect("commit");
        }
        p.finish = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut sum = 0u64;
        {
            let mut q = conn
                .prepare_cached(
                    "SELECT result FROM tasks WHERE instance = ?1 AND parent IS NOT NULL
                     AND status = 2 ORDER BY task_id",
                )
                .expect("prepare");
            let mut rows = q.query([inst]).expect("query");
            while let Some(row) = rows.next().expect("row") {
                let s: String = row.get(0).expect("text");
                sum += s.parse::<u64>().expect("number");
            }
        }
        p.results = t.elapsed().as_secs_f64();
        // Subtask ids are 1-based (the root is 0); each result is the 0-based index.
        assert_eq!(sum, TASKS * (TASKS - 1) / 2);
        conn.execute("DELETE FROM tasks WHERE instance = ?1", [inst])
            .expect("delete");
        conn.execute("DELETE FROM counts WHERE instance = ?1", [inst])
            .expect("delete");
        p
    }
}

fn bench_dir() -> tempfile::TempDir {
    let base = target_dir().join("bench-tmp");
    std::fs::create_dir_all(&base).expect("bench dir");
    tempfile::tempdir_in(base).expect("tempdir")
}

fn bench(c: &mut Criterion) {
    let mut report = Report::new("mapreduce_store");
    let mut group = c.benchmark_group("mapreduce_store");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(100));
    group.measurement_time(Duration::from_secs(30));
    let dir = bench_dir();
    let log = |name: &str| {
        LogStore::open(
            dir.path().join(name),
            LogOptions {
                durability: Durability::Buffered,
                ..LogOptions::default()
            },
        )
        .expect("open log store")
    };
    let functions: Vec<(&str, Box<dyn Tasks>)> = vec![
        (
            "ferrojob_taskstore",
            Box::new(Ferrojob(TaskStore::new(Arc::new(log("log1"))), 1)),
        ),
        ("sqlite", Box::new(Sqlite::open(dir.path(), 1))),
        (
            "ferrojob_taskstore_finish_batch_1000",
            Box::new(Ferrojob(TaskStore::new(Arc::new(log("log1000"))), 1000)),
        ),
        (
            "sqlite_finish_batch_1000",
            Box::new(Sqlite::open(dir.path(), 1000)),
        ),
    ];
    for (name, mut tasks) in functions {
        let mut instance = 0u64;
        group.bench_function(BenchmarkId::new(name, TASKS), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    instance += 1;
                    total += Duration::from_secs_f64(tasks.run(instance).total());
                }
                total
            })
        });
        instance += 1;
        let p = tasks.run(instance);
        let rate = |secs: f64| (TASKS as f64 / secs).round();
        report.push(
            Row::new(name, TASKS)
                .with("map_tasks_per_s", rate(p.map))
                .with("dispatch_tasks_per_s", rate(p.dispatch))
                .with("finish_tasks_per_s", rate(p.finish))
                .with("results_tasks_per_s", rate(p.results))
                .with("instance_total_s", (p.total() * 1000.0).round() / 1000.0),
        );
    }
    group.finish();
    match report.write() {
        Ok(path) => println!("report: {}", path.display()),
        Err(e) => eprintln!("could not write the report: {e}"),
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
