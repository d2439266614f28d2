//! Bench group `store_commit`: durable commits per second of a 256-byte job-instance record at
//! 1, 4 and 16 concurrent writer threads.
//!
//! Functions, side by side in one run, all on the same disk (a temp dir under the cargo target
//! dir, never tmpfs):
//! - `ferrojob_log`: `LogStore`, `Durability::Sync` (group commit: one write + one fdatasync
//!   per group of concurrent commits; each caller acknowledged once its group is durable), with
//!   preallocated segments (the default: commits overwrite zeros, fdatasync flushes no size
//!   change).
//! - `ferrojob_log_appending`: the same with `preallocate: false` (every group grows the
//!   file), to show what preallocation buys on the same disk at the same time.
//! - `sqlite`: rusqlite (bundled), WAL, `synchronous=FULL`, one transaction per commit. The
//!   writers share one connection behind a mutex, SQLite's best configuration for concurrent
//!   writers (separate connections only add lock contention and busy-wait sleeps).
//! - `redb`: redb 4, `Durability::Immediate`, one write transaction per commit.
//! - `fdatasync_floor`: write + fdatasync per record, single writer, appending: this disk's
//!   floor; `fdatasync_floor_prealloc`: the same over 32 MiB of durable zeros (what
//!   preallocation buys at the disk, without any store around it).
//! - `ferrojob_log_buffered`: `LogStore`, `Durability::Buffered` (records/s, not durable).
//!
//! Criterion measures the time per commit. The commits/s and the p50/p99 commit latency of
//! each (function, writers) go to `target/bench-reports/store_commit.json`; for the durable
//! functions they come from interleaved rounds run after criterion (6 rounds of 400 ms slices
//! per function, rotating order), because this shared disk's fdatasync latency drifts by 10x
//! within minutes and sequential runs would compare different disks.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ferrojob_benches::{percentile, target_dir, Report, Row};
use ferrojob_store::{Batch, Durability, LogOptions, LogStore, Store};

const VALUE_LEN: usize = 256;
const WRITERS: [usize; 3] = [1, 4, 16];

/// One way of committing a record; `writer` is the calling thread's index.
trait Committer: Send + Sync {
    fn commit(&self, writer: usize, seq: u64, value: &[u8]);
    /// Records each commit writes.
    fn records_per_commit(&self) -> u64 {
        1
    }
}

/// `LogStore` committing batches of [`BATCH`] records.
struct LogBatch(LogStore);

const BATCH: u64 = 64;

impl Committer for LogBatch {
    fn commit(&self, writer: usize, seq: u64, value: &[u8]) {
        let mut batch = Batch::new();
        for i in 0..BATCH {
            batch.push_put(
                "instances",
                key(writer, seq * BATCH + i).to_vec(),
                value.to_vec(),
            );
        }
        self.0.commit(batch).expect("ferrojob commit");
    }

    fn records_per_commit(&self) -> u64 {
        BATCH
    }
}

struct Log(LogStore);

impl Committer for Log {
    fn commit(&self, writer: usize, seq: u64, value: &[u8]) {
        let key = key(writer, seq);
        self.0
            .commit(Batch::new().put("instances", key.to_vec(), value.to_vec()))
            .expect("ferrojob commit");
    }
}

struct Sqlite(Mutex<rusqlite::Connection>);

impl Committer for Sqlite {
    fn commit(&self, writer: usize, seq: u64, value: &[u8]) {
        let key = key(writer, seq);
        let mut conn = self.0.lock().expect("sqlite lock");
        let tx = conn.transaction().expect("begin");
        tx.execute(
            "INSERT OR REPLACE INTO instances (k, v) VALUES (?1, ?2)",
            rusqlite::params![&key[..], value],
        )
        .expect("insert");
        tx.commit().expect("commit");
    }
}

const REDB_TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("instances");

struct Redb(redb::Database);

impl Committer for Redb {
    fn commit(&self, writer: usize, seq: u64, value: &[u8]) {
        let key = key(writer, seq);
        let mut tx = self.0.begin_write().expect("begin");
        tx.set_durability(redb::Durability::Immediate)
            .expect("durability");
        {
            let mut t = tx.open_table(REDB_TABLE).expect("table");
            t.insert(&key[..], value).expect("insert");
        }
        tx.commit().expect("commit");
    }
}

struct Floor(Mutex<(File, u64)>);

impl Committer for Floor {
    fn commit(&self, _writer: usize, seq: u64, value: &[u8]) {
        use std::os::unix::fs::FileExt;
        let mut g = self.0.lock().expect("floor lock");
        let (file, len) = &mut *g;
        let mut rec = Vec::with_capacity(VALUE_LEN + 16);
        rec.extend_from_slice(&seq.to_le_bytes());
        rec.extend_from_slice(value);
        file.write_all_at(&rec, *len).expect("write");
        file.sync_data().expect("fdatasync");
        *len += rec.len() as u64;
    }
}

fn key(writer: usize, seq: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&(writer as u64).to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn open_log(dir: &Path, durability: Durability) -> Log {
    open_log_with(
        dir,
        LogOptions {
            durability,
            ..LogOptions::default()
        },
    )
}

fn open_log_with(dir: &Path, options: LogOptions) -> Log {
    Log(LogStore::open(dir, options).expect("open log store"))
}

fn open_sqlite(dir: &Path) -> Sqlite {
    let conn = rusqlite::Connection::open(dir.join("bench.sqlite")).expect("sqlite open");
    conn.pragma_update(None, "journal_mode", "WAL")
        .expect("wal");
    conn.pragma_update(None, "synchronous", "FULL")
        .expect("sync");
    conn.execute(
        "CREATE TABLE IF NOT EXISTS instances (k BLOB PRIMARY KEY, v BLOB NOT NULL)",
        [],
    )
    .expect("create table");
    Sqlite(Mutex::new(conn))
}

fn open_redb(dir: &Path) -> Redb {
    Redb(redb::Database::create(dir.join("bench.redb")).expect("redb create"))
}

fn open_floor(dir: &Path) -> Floor {
    open_floor_with(dir, 0)
}

/// The floor writing into `zeros` bytes of durable zeros (a preallocated file), as long as
/// they last.
fn open_floor_with(dir: &Path, zeros: u64) -> Floor {
    use std::os::unix::fs::FileExt;
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(dir.join("floor.bin"))
        .expect("floor open");
    let chunk = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < zeros {
        file.write_all_at(&chunk, at).expect("zero-fill");
        at += chunk.len() as u64;
    }
    file.sync_all().expect("sync");
    File::open(dir)
        .and_then(|d| d.sync_all())
        .expect("dir sync");
    Floor(Mutex::new((file, 0)))
}

/// Figures gathered across every criterion sample of one (function, writers).
#[derive(Default)]
struct Tally {
    commits: u64,
    elapsed: Duration,
    latencies_ns: Vec<u64>,
}

/// The functions whose commits are durable, measured in interleaved rounds for the report.
const DURABLE: [&str; 6] = [
    "ferrojob_log",
    "ferrojob_log_appending",
    "sqlite",
    "redb",
    "fdatasync_floor",
    "fdatasync_floor_prealloc",
];
/// One function in the interleaved rounds: name, committer, figures, next key, directory.
type Interleaved = (
    &'static str,
    Arc<dyn Committer>,
    Tally,
    u64,
    std::path::PathBuf,
);
/// Interleaved rounds per writer count.
const ROUNDS: usize = 6;
/// Length of one function's slice of a round.
const SLICE: Duration = Duration::from_millis(400);

/// Commits from `writers` threads for `slice`, adding the figures to `tally`.
fn run_for(
    c: &Arc<dyn Committer>,
    writers: usize,
    slice: Duration,
    seq: &mut u64,
    tally: &mut Tally,
) {
    let barrier = Arc::new(Barrier::new(writers + 1));
    let base = *seq;
    *seq += 1 << 32;
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let c = c.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let value = vec![0x3Cu8; VALUE_LEN];
                let mut lat = Vec::new();
                barrier.wait();
                let end = Instant::now() + slice;
                let mut i = 0;
                while Instant::now() < end {
                    let t = Instant::now();
                    c.commit(w, base + i, &value);
                    lat.push(t.elapsed().as_nanos() as u64);
                    i += 1;
                }
                lat
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for h in handles {
        let lat = h.join().expect("writer thread");
        tally.commits += lat.len() as u64;
        tally.latencies_ns.extend(lat);
    }
    tally.elapsed += start.elapsed();
}

/// Runs `total` commits split over `writers` threads; returns the wall time.
fn run(
    c: &Arc<dyn Committer>,
    writers: usize,
    total: u64,
    seq: &mut u64,
    tally: &Mutex<Tally>,
) -> Duration {
    let per = total.div_ceil(writers as u64).max(1);
    let barrier = Arc::new(Barrier::new(writers + 1));
    let base = *seq;
    *seq += per;
    let value = vec![0xA5u8; VALUE_LEN];
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let c = c.clone();
            let barrier = barrier.clone();
            let value = value.clone();
            std::thread::spawn(move || {
                let mut lat = Vec::with_capacity(per as usize);
                barrier.wait();
                for i in 0..per {
                    let t = Instant::now();
                    c.commit(w, base + i, &value);
                    lat.push(t.elapsed().as_nanos() as u64);
                }
                lat
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.join().expect("writer thread"));
    }
    let elapsed = start.elapsed();
    let mut t = tally.lock().expect("tally");
    t.commits += per * writers as u64;
    t.elapsed += elapsed;
    t.latencies_ns.extend(all);
    // Criterion divides by `total`: scale so that the figure is time per commit.
    elapsed.mul_f64(total as f64 / (per * writers as u64) as f64)
}

fn bench(c: &mut Criterion) {
    let root = target_dir().join("bench-tmp").join("store_commit");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("bench dir");
    let mut report = Report::new("store_commit");
    let mut group = c.benchmark_group("store_commit");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4));

    type Opener = fn(&Path) -> Arc<dyn Committer>;
    let functions: [(&str, Opener, &[usize]); 8] = [
        (
            "ferrojob_log",
            |d| Arc::new(open_log(d, Durability::Sync)),
            &WRITERS,
        ),
        (
            "ferrojob_log_appending",
            |d| {
                Arc::new(open_log_with(
                    d,
                    LogOptions {
                        preallocate: false,
                        ..LogOptions::default()
                    },
                ))
            },
            &WRITERS,
        ),
        ("sqlite", |d| Arc::new(open_sqlite(d)), &WRITERS),
        ("redb", |d| Arc::new(open_redb(d)), &WRITERS),
        ("fdatasync_floor", |d| Arc::new(open_floor(d)), &[1]),
        (
            "fdatasync_floor_prealloc",
            |d| Arc::new(open_floor_with(d, 32 << 20)),
            &[1],
        ),
        (
            "ferrojob_log_buffered",
            |d| Arc::new(open_log(d, Durability::Buffered)),
            &WRITERS,
        ),
        (
            "ferrojob_log_buffered_batch64",
            |d| Arc::new(LogBatch(open_log(d, Durability::Buffered).0)),
            &[1, 4],
        ),
    ];
    let mut per_s = std::collections::HashMap::new();
    let mut ran = std::collections::HashSet::new();
    for (name, open, writers) in functions {
        for &w in writers {
            let dir = root.join(format!("{name}-{w}"));
            std::fs::create_dir_all(&dir).expect("dir");
            let committer = open(&dir);
            let tally = Mutex::new(Tally::default());
            let mut seq = 0u64;
            group.bench_with_input(BenchmarkId::new(name, w), &w, |b, &w| {
                b.iter_custom(|iters| run(&committer, w, iters, &mut seq, &tally));
            });
            let records = committer.records_per_commit();
            drop(committer);
            let _ = std::fs::remove_dir_all(&dir);
            let mut t = tally.into_inner().expect("tally");
            if t.commits == 0 {
                // Filtered out on the command line: keep the figures of an earlier run.
                continue;
            }
            ran.insert((name, w));
            if DURABLE.contains(&name) {
                // Reported from the interleaved rounds below.
                continue;
            }
            t.latencies_ns.sort_unstable();
            let rate = t.commits as f64 / t.elapsed.as_secs_f64().max(1e-9);
            per_s.insert((name, w), rate * records as f64);
            let us = |q| percentile(&t.latencies_ns, q).unwrap_or(0) as f64 / 1000.0;
            let row = if name.starts_with("ferrojob_log_buffered") {
                Row::new(name, w).with("records_per_s", (rate * records as f64).round())
            } else {
                Row::new(name, w)
            };
            report.push(
                row.with("commits_per_s", rate.round())
                    .with("p50_us", us(0.5))
                    .with("p99_us", us(0.99))
                    .with("commits", t.commits),
            );
        }
    }
    group.finish();

    // The disk's fdatasync latency drifts by 10x or more within minutes on a shared machine, so
    // the reported rates of the durable functions come from interleaved rounds: every function
    // gets ROUNDS slices of SLICE each, in rotating order, at each writer count.
    for w in WRITERS {
        let mut entries: Vec<Interleaved> = Vec::new();
        for (name, open, writers) in functions {
            if !DURABLE.contains(&name) || !writers.contains(&w) || !ran.contains(&(name, w)) {
                continue;
            }
            let dir = root.join(format!("{name}-{w}-interleaved"));
            std::fs::create_dir_all(&dir).expect("dir");
            entries.push((name, open(&dir), Tally::default(), 0, dir));
        }
        let n = entries.len();
        for round in 0..ROUNDS {
            for k in 0..n {
                if let Some((_, c, tally, seq, _)) = entries.get_mut((k + round) % n) {
                    run_for(c, w, SLICE, seq, tally);
                }
            }
        }
        for (name, c, mut t, _, dir) in entries {
            drop(c);
            let _ = std::fs::remove_dir_all(&dir);
            t.latencies_ns.sort_unstable();
            let rate = t.commits as f64 / t.elapsed.as_secs_f64().max(1e-9);
            per_s.insert((name, w), rate);
            let us = |q| percentile(&t.latencies_ns, q).unwrap_or(0) as f64 / 1000.0;
            report.push(
                Row::new(name, w)
                    .with("commits_per_s", rate.round())
                    .with("p50_us", us(0.5))
                    .with("p99_us", us(0.99))
                    .with("commits", t.commits),
            );
        }
    }

    let ratio = |a: (&str, usize), b: (&str, usize)| match (per_s.get(&a), per_s.get(&b)) {
        (Some(x), Some(y)) if *y > 0.0 => x / y,
        _ => 0.0,
    };
    for w in WRITERS {
        if !per_s.contains_key(&("ferrojob_log", w)) {
            continue;
        }
        report.push(
            Row::new("ratios", w)
                .with(
                    "ferrojob_log_over_sqlite",
                    ratio(("ferrojob_log", w), ("sqlite", w)),
                )
                .with(
                    "ferrojob_log_over_redb",
                    ratio(("ferrojob_log", w), ("redb", w)),
                )
                .with(
                    "ferrojob_log_over_fdatasync_floor",
                    ratio(("ferrojob_log", w), ("fdatasync_floor", 1)),
                )
                .with(
                    "ferrojob_log_over_appending",
                    ratio(("ferrojob_log", w), ("ferrojob_log_appending", w)),
                )
                .with(
                    "appending_over_sqlite",
                    ratio(("ferrojob_log_appending", w), ("sqlite", w)),
                )
                .with(
                    "floor_prealloc_over_floor",
                    ratio(("fdatasync_floor_prealloc", 1), ("fdatasync_floor", 1)),
                ),
        );
    }
    let buffered_16 = per_s
        .get(&("ferrojob_log_buffered", 16))
        .copied()
        .unwrap_or(0.0);
    let buffered_batch = per_s
        .get(&("ferrojob_log_buffered_batch64", 1))
        .copied()
        .unwrap_or(0.0);
    if per_s.contains_key(&("ferrojob_log", 16)) && per_s.contains_key(&("sqlite", 16)) {
        report.push(
            Row::new("targets", "-")
                .with(
                    "sqlite_ratio_at_16_writers",
                    ratio(("ferrojob_log", 16), ("sqlite", 16)),
                )
                .with("sqlite_ratio_target", 10.0)
                .with("buffered_records_per_s_at_16_writers", buffered_16.round())
                .with(
                    "buffered_batch64_records_per_s_1_writer",
                    buffered_batch.round(),
                )
                .with("buffered_records_per_s_target", 1_000_000.0),
        );
    }
    match report.write() {
        Ok(path) => println!("store_commit: report written to {}", path.display()),
        Err(e) => eprintln!("store_commit: could not write the report: {e}"),
    }
    let _ = std::io::stdout().flush();
    let _ = std::fs::remove_dir_all(&root);
}

criterion_group!(benches, bench);
criterion_main!(benches);
