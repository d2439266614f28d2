//! The regression guard: the hot paths' instructions per operation, counted by callgrind and
//! compared with the figures committed in `benches/guard-baseline.json`.
//!
//! Each operation runs a fixed workload on one thread, with no clock, no I/O and no
//! randomness that reaches the measured work (generators are seeded; the hash maps' random
//! seeds only change which bucket a key lands in). Its setup runs first; only the call to
//! `guard_measure` is counted (`valgrind --tool=callgrind --toggle-collect=*guard_measure*`),
//! so the count is the operation's own and repeats exactly from run to run for a given binary.
//! It does change with the compiler, the dependencies' versions and the CPU features valgrind
//! reports, so a baseline holds for one toolchain on one kind of machine: after a toolchain
//! update, rerun with `--update` and commit the new figures.
//!
//! ```sh
//! benches/guard                 # every operation, full iterations: compare, fail on > 5 %
//! benches/guard --short         # fewer iterations (what CI runs)
//! benches/guard --update        # rewrite the baseline of the profile that ran
//! benches/guard --only store    # the operations whose name contains `store`
//! # one operation natively (or under valgrind by hand):
//! cargo run --release -p ferrojob-benches --example guard -- run wheel_insert 100000
//! ```

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;

use chrono_tz::Tz;
use ferrojob::dispatch::{
    DispatchSpec, RoundRobinCursor, SelectState, TrackerCounts, WorkerMetrics, WorkerRegistry,
    WorkerStatus, GIB,
};
use ferrojob::model::{DispatchStrategy, ExecuteType};
use ferrojob::time_expression::{CronSchedule, EpochMs};
use ferrojob::wheel::{Expired, TimerKey, TimerWheel};
use ferrojob_store::backend::SimBackend;
use ferrojob_store::{Batch, Durability, LogOptions, LogStore, Store, WriterMode};
use ferrojob_transport::frame::{encode_frame, Flags, HEADER_LEN};
use ferrojob_transport::message::{samples, Message};
use rkyv::util::AlignedVec;
use serde_json::{json, Map, Value};

/// A ratio of now ÷ baseline above this fails the guard.
const MAX_RATIO: f64 = 1.05;
/// Runs below this ratio are reported as improvements (the baseline could be updated).
const IMPROVED_RATIO: f64 = 0.95;

/// One guarded operation.
struct Op {
    name: &'static str,
    /// What one operation is, for the output.
    unit: &'static str,
    /// Operations per run in the full profile (the short one runs a fifth).
    full: u64,
    /// Sets up, then calls [`guard_measure`] around exactly `n` operations.
    run: fn(u64),
}

const OPS: &[Op] = &[
    Op {
        name: "wheel_insert",
        unit: "insert into a wheel holding 100k timers",
        full: 100_000,
        run: wheel_insert,
    },
    Op {
        name: "wheel_cancel",
        unit: "cancel in a wheel holding 100k timers",
        full: 100_000,
        run: wheel_cancel,
    },
    Op {
        name: "wheel_expire",
        unit: "timer fired (ticked one by one, ~4 due per tick)",
        full: 200_000,
        run: wheel_expire,
    },
    Op {
        name: "cron_next_utc",
        unit: "next trigger of `0 0/15 * * * ?` in UTC",
        full: 20_000,
        run: cron_next_utc,
    },
    Op {
        name: "cron_next_berlin",
        unit: "next trigger of `0 0 9-17 ? * MON-FRI` in Europe/Berlin",
        full: 20_000,
        run: cron_next_berlin,
    },
    Op {
        name: "codec_encode_schedule_job",
        unit: "ScheduleJob frame encoded",
        full: 50_000,
        run: encode_schedule_job,
    },
    Op {
        name: "codec_decode_schedule_job",
        unit: "ScheduleJob validated and decoded to owned",
        full: 50_000,
        run: decode_schedule_job,
    },
    Op {
        name: "codec_encode_report",
        unit: "ReportInstanceStatus frame encoded",
        full: 50_000,
        run: encode_report,
    },
    Op {
        name: "codec_decode_report",
        unit: "ReportInstanceStatus validated and decoded to owned",
        full: 50_000,
        run: decode_report,
    },
    Op {
        name: "store_commit",
        unit: "durable commit of one 256-byte record (stepped LogStore, simulated disk)",
        full: 20_000,
        run: store_commit,
    },
    Op {
        name: "store_get",
        unit: "read of one 256-byte record (stepped LogStore, simulated disk)",
        full: 20_000,
        run: store_get,
    },
    Op {
        name: "dispatch_health_first",
        unit: "HEALTH_FIRST selection among 100 workers",
        full: 20_000,
        run: dispatch_health_first,
    },
    Op {
        name: "dispatch_round_robin",
        unit: "ROUND_ROBIN selection among 100 workers",
        full: 20_000,
        run: dispatch_round_robin,
    },
];

/// Callgrind counts the instructions of this call and of everything it calls, nothing else.
#[inline(never)]
fn guard_measure(work: &mut dyn FnMut()) {
    work();
}

/// A seeded linear congruential generator (Knuth's MMIX constants): the same numbers in every
/// run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

// ---- timer wheel -------------------------------------------------------------------------

/// Timers already pending while inserts and cancels are measured.
const PENDING: u64 = 100_000;
/// Deadlines of the pending timers spread over 60 s of 1 ms ticks.
const SPAN_TICKS: u64 = 60_000;

fn filled_wheel(extra: u64) -> (TimerWheel<u64>, Lcg) {
    let mut wheel = TimerWheel::with_capacity(0, usize::try_from(PENDING + extra).unwrap_or(0));
    let mut rng = Lcg(1);
    for i in 0..PENDING {
        wheel.insert(1 + rng.next() % SPAN_TICKS, i);
    }
    (wheel, rng)
}

fn wheel_insert(n: u64) {
    let (mut wheel, mut rng) = filled_wheel(n);
    let deadlines: Vec<u64> = (0..n).map(|_| 1 + rng.next() % SPAN_TICKS).collect();
    guard_measure(&mut || {
        for (i, &d) in deadlines.iter().enumerate() {
            black_box(wheel.insert(d, i as u64));
        }
    });
    assert_eq!(wheel.len() as u64, PENDING + n);
}

fn wheel_cancel(n: u64) {
    let (mut wheel, mut rng) = filled_wheel(n);
    let keys: Vec<TimerKey> = (0..n)
        .map(|i| wheel.insert(1 + rng.next() % SPAN_TICKS, i))
        .collect();
    let mut cancelled = 0;
    guard_measure(&mut || {
        for &key in &keys {
            cancelled += usize::from(black_box(wheel.cancel(key)).is_some());
        }
    });
    assert_eq!(cancelled as u64, n);
}

fn wheel_expire(n: u64) {
    let span = (n / 4).max(1);
    let mut wheel = TimerWheel::with_capacity(0, usize::try_from(n).unwrap_or(0));
    let mut rng = Lcg(2);
    for i in 0..n {
        wheel.insert(1 + rng.next() % span, i);
    }
    let mut out: Vec<Expired<u64>> = Vec::with_capacity(1024);
    let mut fired = 0;
    guard_measure(&mut || {
        for tick in 1..=span {
            wheel.drain_expired(tick, &mut out);
            fired += out.len();
            out.clear();
        }
    });
    assert_eq!(fired as u64, n);
}

// ---- cron ----------------------------------------------------------------------------------

/// 2026-01-01T00:00:00Z.
const START_MS: EpochMs = 1_767_225_600_000;

fn cron_next(expr: &str, tz: Tz, n: u64) {
    let schedule = CronSchedule::parse(expr, tz).expect("the guard's cron expression parses");
    let mut after = START_MS;
    let mut found = 0;
    guard_measure(&mut || {
        for _ in 0..n {
            match schedule.next_after(black_box(after)) {
                Some(t) => {
                    after = t;
                    found += 1;
                }
                None => break,
            }
        }
    });
    assert_eq!(found, n);
}

fn cron_next_utc(n: u64) {
    cron_next("0 0/15 * * * ?", Tz::UTC, n);
}

fn cron_next_berlin(n: u64) {
    cron_next("0 0 9-17 ? * MON-FRI", Tz::Europe__Berlin, n);
}

// ---- codec ---------------------------------------------------------------------------------

fn encode(message: Message, n: u64) {
    let mut out = Vec::with_capacity(4096);
    guard_measure(&mut || {
        for i in 0..n {
            out.clear();
            encode_frame(&mut out, black_box(&message), Flags::NONE, i, u32::MAX)
                .expect("the sample encodes");
        }
    });
    assert!(out.len() > HEADER_LEN);
}

fn decode(message: Message, n: u64) {
    let mut frame = Vec::new();
    encode_frame(&mut frame, &message, Flags::NONE, 1, u32::MAX).expect("the sample encodes");
    let mut payload = AlignedVec::<16>::new();
    payload.extend_from_slice(frame.get(HEADER_LEN..).expect("a whole frame"));
    let kind = message.kind();
    let mut ok = 0;
    guard_measure(&mut || {
        for _ in 0..n {
            ok += usize::from(black_box(Message::decode(kind, black_box(&payload))).is_ok());
        }
    });
    assert_eq!(ok as u64, n);
}

fn encode_schedule_job(n: u64) {
    encode(samples::schedule_job().into(), n);
}

fn decode_schedule_job(n: u64) {
    decode(samples::schedule_job().into(), n);
}

fn encode_report(n: u64) {
    encode(samples::report_instance_status().into(), n);
}

fn decode_report(n: u64) {
    decode(samples::report_instance_status().into(), n);
}

// ---- store ---------------------------------------------------------------------------------

fn stepped_store() -> LogStore {
    let options = LogOptions {
        writer: WriterMode::Stepped,
        durability: Durability::Sync,
        ..LogOptions::default()
    };
    LogStore::open_with(Arc::new(SimBackend::new()), "/data", options)
        .expect("a stepped store opens on the simulated disk")
}

fn key(i: u64) -> Vec<u8> {
    let mut key = vec![0u8; 16];
    key[8..].copy_from_slice(&i.to_be_bytes());
    key
}

fn store_commit(n: u64) {
    let store = stepped_store();
    let keys: Vec<Vec<u8>> = (0..n).map(key).collect();
    let value = vec![0x5A_u8; 256];
    guard_measure(&mut || {
        for k in &keys {
            store
                .commit(Batch::new().put("instances", k.clone(), value.clone()))
                .expect("commit");
        }
    });
    assert_eq!(store.key_count() as u64, n);
}

fn store_get(n: u64) {
    let store = stepped_store();
    let keys: Vec<Vec<u8>> = (0..n).map(key).collect();
    let value = vec![0x5A_u8; 256];
    for chunk in keys.chunks(64) {
        let mut batch = Batch::new();
        for k in chunk {
            batch.push_put("instances", k.clone(), value.clone());
        }
        store.commit(batch).expect("commit");
    }
    let mut found = 0;
    guard_measure(&mut || {
        for k in &keys {
            found += usize::from(black_box(store.get("instances", k)).is_ok_and(|v| v.is_some()));
        }
    });
    assert_eq!(found as u64, n);
}

// ---- dispatch selection --------------------------------------------------------------------

const APP: &str = "guard";
const NOW: i64 = 1_000_000;
const WORKERS: usize = 100;

fn dispatch(strategy: DispatchStrategy, n: u64) {
    let registry = WorkerRegistry::default();
    for i in 0..WORKERS {
        let status = WorkerStatus {
            address: format!("10.0.{}.{}:27777", i / 256, i % 256),
            tags: vec![format!("zone-{}", i % 4)],
            version: "0.1.0".into(),
            overloaded: i % 10 == 3,
            trackers: TrackerCounts::default(),
        };
        let wobble = (i as u64 * 7919) % 97;
        let metrics = WorkerMetrics {
            cpu_cores: 8,
            cpu_load: (wobble % 8) as f64 / 2.0,
            memory_used_bytes: wobble * GIB / 16,
            memory_max_bytes: 8 * GIB,
            disk_used_bytes: wobble * GIB,
            disk_total_bytes: 200 * GIB,
            reported_score: 0,
        };
        registry
            .heartbeat(APP, &status, metrics, NOW)
            .expect("heartbeat");
    }
    let spec = DispatchSpec {
        execute_type: ExecuteType::Standalone,
        strategy,
        min_memory_gb: 1.0,
        ..DispatchSpec::default()
    };
    let cursor = RoundRobinCursor::new();
    let mut state = SelectState::seeded(1);
    let mut chosen = 0;
    guard_measure(&mut || {
        for _ in 0..n {
            chosen += usize::from(
                black_box(registry.select(APP, &spec, &cursor, &mut state, NOW + 1)).is_ok(),
            );
        }
    });
    assert_eq!(chosen as u64, n);
}

fn dispatch_health_first(n: u64) {
    dispatch(DispatchStrategy::HealthFirst, n);
}

fn dispatch_round_robin(n: u64) {
    dispatch(DispatchStrategy::RoundRobin, n);
}

// ---- the guard -----------------------------------------------------------------------------

/// Which iteration counts a guard run uses.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Profile {
    Full,
    Short,
}

impl Profile {
    fn name(self) -> &'static str {
        match self {
            Profile::Full => "full",
            Profile::Short => "short",
        }
    }

    fn iterations(self, op: &Op) -> u64 {
        match self {
            Profile::Full => op.full,
            Profile::Short => op.full / 5,
        }
    }
}

struct CheckArgs {
    profile: Profile,
    update: bool,
    only: Option<String>,
    baseline: PathBuf,
}

fn default_baseline() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("guard-baseline.json")
}

/// Where `valgrind` is, from `PATH`.
fn find_valgrind() -> Result<PathBuf, String> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("valgrind"))
        .find(|p| p.is_file())
        .ok_or_else(|| "valgrind is not installed (apt-get install -y valgrind)".to_owned())
}

/// Instructions of `guard_measure` in one run of `op` under callgrind.
///
/// The program runs as `./guard` in `dir` (a copy of this executable) with an empty
/// environment: the environment and `argv` are copied onto the start of the stack, so their
/// length shifts the alignment of stack buffers, which changes the instruction count of the
/// `memcpy`s that touch them (by up to 0.4 % when the environment grew by 3 KB).
fn count(op: &Op, iterations: u64, valgrind: &Path, dir: &Path) -> Result<u64, String> {
    let out_name = format!("{}.callgrind", op.name);
    let output = Command::new(valgrind)
        .env_clear()
        .current_dir(dir)
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={out_name}"))
        .arg("--toggle-collect=*guard_measure*")
        .args(["./guard", "run", op.name, &iterations.to_string()])
        .output()
        .map_err(|e| format!("cannot start {}: {e}", valgrind.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} failed under valgrind: {}",
            op.name,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let out = dir.join(&out_name);
    let text =
        std::fs::read_to_string(&out).map_err(|e| format!("reading {}: {e}", out.display()))?;
    let _ = std::fs::remove_file(&out);
    text.lines()
        .find_map(|l| {
            l.strip_prefix("totals: ")
                .or_else(|| l.strip_prefix("summary: "))
        })
        .and_then(|t| t.split_whitespace().next())
        .and_then(|t| t.parse().ok())
        .filter(|&ir: &u64| ir > 0)
        .ok_or_else(|| format!("no instruction total in {}", out.display()))
}

fn tool_version(program: &str, arg: &str) -> String {
    Command::new(program)
        .arg(arg)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// The baseline file: `{"rustc", "valgrind", "profiles": {"full": {op: {...}}, "short": ...}}`.
fn read_baseline(path: &Path) -> Result<Value, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| format!("{} is not valid JSON: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(json!({})),
        Err(e) => Err(format!("reading {}: {e}", path.display())),
    }
}

fn check(args: &CheckArgs) -> Result<bool, String> {
    let baseline = read_baseline(&args.baseline)?;
    let profile = args.profile.name();
    let rustc = tool_version("rustc", "--version");
    let valgrind = tool_version("valgrind", "--version");
    for (tool, now) in [("rustc", &rustc), ("valgrind", &valgrind)] {
        if let Some(then) = baseline.get(tool).and_then(Value::as_str) {
            if then != now.as_str() {
                println!(
                    "guard: note: the baseline was counted with {then:?}, this run uses {now:?}; \
                     counts change with the toolchain (rerun with --update if that is the cause)"
                );
            }
        }
    }
    let valgrind_exe = find_valgrind()?;
    let dir = tempfile::Builder::new()
        .prefix("ferrojob-guard-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    let exe = std::env::current_exe().map_err(|e| format!("path of this executable: {e}"))?;
    std::fs::copy(&exe, dir.path().join("guard"))
        .map_err(|e| format!("copying {} to {}: {e}", exe.display(), dir.path().display()))?;
    let old = baseline
        .get("profiles")
        .and_then(|p| p.get(profile))
        .cloned()
        .unwrap_or(Value::Null);
    println!(
        "{:<28} {:>8} {:>12} {:>12} {:>7}  per operation",
        "operation", "ops", "baseline/op", "now/op", "ratio"
    );
    let mut rows = Map::new();
    let mut failures = Vec::new();
    for op in OPS {
        if let Some(only) = &args.only {
            if !op.name.contains(only.as_str()) {
                continue;
            }
        }
        let iterations = args.profile.iterations(op);
        let ir = count(op, iterations, &valgrind_exe, dir.path())?;
        let per_op = ir as f64 / iterations as f64;
        let then = old.get(op.name);
        let then_ir = then
            .filter(|t| t.get("iterations").and_then(Value::as_u64) == Some(iterations))
            .and_then(|t| t.get("ir").and_then(Value::as_u64));
        let (base, ratio, verdict) = match then_ir {
            Some(b) => {
                let ratio = ir as f64 / b as f64;
                let verdict = if ratio > MAX_RATIO {
                    "REGRESSED"
                } else if ratio < IMPROVED_RATIO {
                    "improved"
                } else {
                    "ok"
                };
                (
                    format!("{:.1}", b as f64 / iterations as f64),
                    format!("{ratio:.3}"),
                    verdict,
                )
            }
            None => ("—".to_owned(), "—".to_owned(), "no baseline"),
        };
        println!(
            "{:<28} {:>8} {:>12} {:>12.1} {:>7}  {} ({})",
            op.name, iterations, base, per_op, ratio, verdict, op.unit
        );
        match (then_ir, verdict) {
            (Some(b), "REGRESSED") => failures.push(format!(
                "{}: {:.1} instructions per operation, baseline {:.1}, ratio {:.3} (> {MAX_RATIO})",
                op.name,
                per_op,
                b as f64 / iterations as f64,
                ir as f64 / b as f64
            )),
            (None, _) if !args.update => failures.push(format!(
                "{}: no {profile} baseline at {iterations} iterations in {} (run with --update)",
                op.name,
                args.baseline.display()
            )),
            _ => {}
        }
        rows.insert(
            op.name.to_owned(),
            json!({
                "iterations": iterations,
                "ir": ir,
                "ir_per_op": (per_op * 10.0).round() / 10.0,
                "unit": op.unit,
            }),
        );
    }
    if rows.is_empty() {
        return Err(format!(
            "no operation matches --only {:?}",
            args.only.as_deref().unwrap_or("")
        ));
    }
    if args.update {
        let mut new = if baseline.is_object() {
            baseline
        } else {
            json!({})
        };
        new["rustc"] = Value::from(rustc);
        new["valgrind"] = Value::from(valgrind);
        if !new["profiles"].is_object() {
            new["profiles"] = json!({});
        }
        if !new["profiles"][profile].is_object() {
            new["profiles"][profile] = json!({});
        }
        if let Some(merged) = new["profiles"][profile].as_object_mut() {
            merged.extend(rows);
        }
        let text =
            serde_json::to_string_pretty(&new).map_err(|e| format!("baseline to JSON: {e}"))?;
        std::fs::write(&args.baseline, text + "\n")
            .map_err(|e| format!("writing {}: {e}", args.baseline.display()))?;
        println!(
            "guard: wrote the {profile} baseline to {}",
            args.baseline.display()
        );
        return Ok(true);
    }
    if failures.is_empty() {
        println!(
            "guard: no operation is more than {:.0} % above the {profile} baseline",
            (MAX_RATIO - 1.0) * 100.0
        );
        Ok(true)
    } else {
        for f in &failures {
            eprintln!("guard: FAILED: {f}");
        }
        Ok(false)
    }
}

const USAGE: &str =
    "usage: guard check [--short] [--update] [--only SUBSTRING] [--baseline FILE]\n       \
                     guard run <operation> <iterations>";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter().map(String::as_str);
    match it.next() {
        Some("run") => {
            let (Some(name), Some(n)) = (it.next(), it.next().and_then(|n| n.parse().ok())) else {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            };
            match OPS.iter().find(|op| op.name == name) {
                Some(op) => {
                    (op.run)(n);
                    ExitCode::SUCCESS
                }
                None => {
                    let names: Vec<&str> = OPS.iter().map(|op| op.name).collect();
                    eprintln!("unknown operation {name:?}; one of {}", names.join(", "));
                    ExitCode::from(2)
                }
            }
        }
        Some("check") => {
            let mut check_args = CheckArgs {
                profile: Profile::Full,
                update: false,
                only: None,
                baseline: default_baseline(),
            };
            while let Some(arg) = it.next() {
                match arg {
                    "--short" => check_args.profile = Profile::Short,
                    "--update" => check_args.update = true,
                    "--only" => check_args.only = it.next().map(str::to_owned),
                    "--baseline" => {
                        if let Some(p) = it.next() {
                            check_args.baseline = PathBuf::from(p);
                        }
                    }
                    _ => {
                        eprintln!("{USAGE}");
                        return ExitCode::from(2);
                    }
                }
            }
            match check(&check_args) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("guard: {e}");
                    ExitCode::from(2)
                }
            }
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}
