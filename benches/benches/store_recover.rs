//! Bench group `store_recover`: time to open a `LogStore` holding 1M live records
//! (16-byte keys, 256-byte values: job-instance records), with and without the hint file.
//!
//! The log is written once (Buffered durability, batches of 1000 records, then a clean close
//! that writes the hint) in a temp dir under the cargo target dir (a real disk, not tmpfs).
//! Opens run with a warm page cache, as after a process restart. Besides criterion's time, the
//! report `target/bench-reports/store_recover.json` holds the open time in seconds, the replay
//! rate, the index memory per key (RSS growth over the open) and the build rate.

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ferrojob_benches::{rss_bytes, target_dir, Report, Row};
use ferrojob_store::{Batch, Durability, LogOptions, LogStore, Store};

const RECORDS: u64 = 1_000_000;
const VALUE_LEN: usize = 256;

fn options(use_hint: bool) -> LogOptions {
    LogOptions {
        use_hint,
        write_hint_on_close: false,
        background_compaction: false,
        ..LogOptions::default()
    }
}

/// Writes the log; returns the build rate in records per second.
fn build(dir: &Path) -> f64 {
    let store = LogStore::open(
        dir,
        LogOptions {
            durability: Durability::Buffered,
            background_compaction: false,
            ..LogOptions::default()
        },
    )
    .expect("open for build");
    let value = vec![0x5Au8; VALUE_LEN];
    let start = Instant::now();
    let mut batch = Batch::new();
    for i in 0..RECORDS {
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&i.to_be_bytes());
        batch.push_put("instances", key.to_vec(), value.clone());
        if batch.len() == 1000 {
            store.commit(std::mem::take(&mut batch)).expect("commit");
        }
    }
    store.commit(batch).expect("commit");
    store.flush().expect("flush");
    let rate = RECORDS as f64 / start.elapsed().as_secs_f64();
    store.close().expect("close writes the hint");
    rate
}

fn open_once(dir: &Path, use_hint: bool) -> (Duration, LogStore) {
    let start = Instant::now();
    let store = LogStore::open(dir, options(use_hint)).expect("open");
    let took = start.elapsed();
    assert_eq!(store.count("instances"), RECORDS as usize);
    assert_eq!(store.recovery_report().used_hint, use_hint);
    (took, store)
}

fn bench(c: &mut Criterion) {
    let dir = target_dir().join("bench-tmp").join("store_recover");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    let build_rate = build(&dir);
    let disk: u64 = std::fs::read_dir(&dir)
        .expect("list")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();

    let mut report = Report::new("store_recover");
    report.push(
        Row::new("build_buffered_batch1000", RECORDS)
            .with("records_per_s", build_rate.round())
            .with("disk_bytes", disk),
    );

    // Index memory: RSS growth over the first open (later opens reuse freed allocator memory).
    let rss_before = rss_bytes().unwrap_or(0);
    let (_, store) = open_once(&dir, true);
    let rss_after = rss_bytes().unwrap_or(0);
    drop(store);
    report.push(Row::new("index_memory", RECORDS).with(
        "rss_bytes_per_key",
        (rss_after.saturating_sub(rss_before) as f64 / RECORDS as f64).round(),
    ));

    let mut group = c.benchmark_group("store_recover");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_secs(10));
    for (name, use_hint) in [("with_hint", true), ("without_hint", false)] {
        // One measured open outside criterion for the report.
        let (took, store) = open_once(&dir, use_hint);
        drop(store);
        let mut times = vec![took];
        group.bench_with_input(
            BenchmarkId::new(name, RECORDS),
            &use_hint,
            |b, &use_hint| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let (took, store) = open_once(&dir, use_hint);
                        total += took;
                        times.push(took);
                        drop(store);
                    }
                    total
                });
            },
        );
        times.sort_unstable();
        let median = times[times.len() / 2].as_secs_f64();
        report.push(
            Row::new(name, RECORDS)
                .with("open_s_median", median)
                .with("open_s_min", times[0].as_secs_f64())
                .with("records_per_s", (RECORDS as f64 / median).round())
                .with("open_target_s", 1.0),
        );
    }
    group.finish();
    match report.write() {
        Ok(path) => println!("store_recover: report written to {}", path.display()),
        Err(e) => eprintln!("store_recover: could not write the report: {e}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
