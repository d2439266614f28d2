//! Instructions per timer operation, counted by callgrind: the `timer_wheel` bench's workloads
//! (`ferrojob_benches::timers`), each phase in its own never-inlined function so that callgrind
//! can dump the count before and after it.
//!
//! Instruction counts are deterministic for a given binary, unlike seconds on a shared machine,
//! so they compare the structures' work exactly (not their cache misses: callgrind counts
//! instructions, not cycles).
//!
//! ```sh
//! # every structure × workload × size under callgrind; writes bench-reports/timer_ops.json
//! cargo run --release -p ferrojob-benches --example timer_ops -- callgrind
//! # one run, natively (or under valgrind by hand)
//! cargo run --release -p ferrojob-benches --example timer_ops -- run ferrojob cancel10 1000000
//! ```

use std::hint::black_box;
use std::path::Path;
use std::process::Command;

use ferrojob_benches::timers::{self, Ferrojob, Heap, NexusTimer, Plan, TimerOps, Workload};
use ferrojob_benches::{Report, Row};

const FUNCTIONS: [&str; 3] = ["ferrojob", "nexus_timer", "binary_heap"];
const SIZES: [usize; 2] = [100_000, 1_000_000];
/// The phases, in run order; `phase_<name>` is the function callgrind dumps around.
const PHASES: [&str; 4] = ["insert", "cancel", "release", "drain"];

// Each phase ends with a call to `phase_end`: callgrind dumps before every `phase_*` call, so
// the part dumped before `phase_end` holds exactly the phase that just ran. (`black_box` keeps
// the optimiser from dropping a call whose result it can compute.)

#[inline(never)]
fn phase_end() {
    black_box(());
}

#[inline(never)]
fn phase_insert<O: TimerOps>(ops: &mut O, deadlines: &[u64]) {
    black_box(ops).insert_all(deadlines);
    phase_end();
}

#[inline(never)]
fn phase_cancel<O: TimerOps>(ops: &mut O, ids: &[usize]) -> usize {
    let cancelled = black_box(ops).cancel(ids);
    phase_end();
    cancelled
}

#[inline(never)]
fn phase_release<O: TimerOps>(ops: &mut O, ids: &[usize]) -> usize {
    let released = black_box(ops).release(ids);
    phase_end();
    released
}

#[inline(never)]
fn phase_drain<O: TimerOps>(ops: &mut O) -> usize {
    let fired = black_box(ops).drain();
    phase_end();
    fired
}

/// Runs the phases and prints how many operations each did, one `phase count` per line.
fn run_phases<O: TimerOps>(mut ops: O, deadlines: &[u64], workload: Workload) {
    let plan = Plan::new(workload, deadlines.len());
    phase_insert(&mut ops, deadlines);
    let cancelled = phase_cancel(&mut ops, &plan.cancelled);
    let released = phase_release(&mut ops, &plan.kept);
    let fired = phase_drain(&mut ops);
    assert_eq!(
        fired,
        workload.expected_fired(deadlines.len()),
        "{} fired the wrong number of timers",
        O::NAME
    );
    println!("insert {}", deadlines.len());
    println!("cancel {cancelled}");
    println!("release {released}");
    println!("drain {fired}");
    black_box(ops);
}

fn run(function: &str, workload: Workload, n: usize) {
    let deadlines = timers::deadlines(n);
    match function {
        "ferrojob" => run_phases(Ferrojob::with_capacity(n), &deadlines, workload),
        "nexus_timer" => run_phases(NexusTimer::with_capacity(n), &deadlines, workload),
        "binary_heap" => run_phases(Heap::with_capacity(n), &deadlines, workload),
        other => panic!("unknown structure {other:?} (ferrojob, nexus_timer, binary_heap)"),
    }
}

/// Instructions of each phase of one run under callgrind, and the operation counts it
/// printed.
struct Counts {
    ir: [u64; 4],
    ops: [u64; 4],
}

fn callgrind(function: &str, workload: Workload, n: usize, dir: &Path) -> Counts {
    let exe = std::env::current_exe().expect("path of this executable");
    let out = dir.join(format!("{function}-{}-{n}.out", workload_name(workload)));
    let output = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg("--dump-before=*phase_*")
        .arg(&exe)
        .args(["run", function, workload_name(workload), &n.to_string()])
        .output()
        .expect("valgrind runs (apt-get install valgrind)");
    assert!(
        output.status.success(),
        "valgrind failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut ops = [0; 4];
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        if let Some((phase, count)) = line.split_once(' ') {
            if let Some(i) = PHASES.iter().position(|p| *p == phase) {
                ops[i] = count.parse().expect("operation count");
            }
        }
    }
    // Callgrind writes one part file per dump, `<out>.<k>`, each holding the cost since the
    // previous dump and naming the call that triggered it. A part triggered by `phase_end`
    // holds the phase whose call triggered the part before it.
    let mut parts = Vec::new();
    let prefix = format!(
        "{}.",
        out.file_name().and_then(|n| n.to_str()).unwrap_or("")
    );
    for entry in std::fs::read_dir(dir).expect("callgrind output directory") {
        let path = entry.expect("directory entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let Some(k) = name
            .strip_prefix(&prefix)
            .and_then(|k| k.parse::<u32>().ok())
        else {
            continue;
        };
        let text = std::fs::read_to_string(&path).expect("callgrind part file");
        let trigger = text
            .lines()
            .find_map(|l| l.strip_prefix("desc: Trigger: --dump-before="))
            .unwrap_or("")
            .to_owned();
        let total: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("totals: "))
            .and_then(|t| t.split_whitespace().next())
            .and_then(|t| t.parse().ok())
            .expect("callgrind totals line");
        parts.push((k, trigger, total));
    }
    parts.sort();
    let mut ir = [0; 4];
    for pair in parts.windows(2) {
        let [(_, started, _), (_, ended, total)] = pair else {
            continue;
        };
        if !ended.ends_with("phase_end") {
            continue;
        }
        if let Some(i) = PHASES
            .iter()
            .position(|p| started.contains(&format!("phase_{p}")))
        {
            ir[i] = *total;
        }
    }
    Counts { ir, ops }
}

fn workload_name(workload: Workload) -> &'static str {
    match workload {
        Workload::Cancel10 => "cancel10",
        Workload::Cancel99 => "cancel99",
    }
}

fn per(ir: u64, ops: u64) -> f64 {
    if ops == 0 {
        0.0
    } else {
        ir as f64 / ops as f64
    }
}

fn callgrind_all() {
    let dir = ferrojob_benches::target_dir().join("callgrind-timer-ops");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("callgrind output directory");
    let mut report = Report::new("timer_ops");
    println!(
        "{:<12} {:<22} {:>10} {:>10} {:>10} {:>12} {:>12}",
        "structure", "param", "insert/op", "cancel/op", "release/op", "drain/fired", "all/timer"
    );
    for workload in Workload::ALL {
        for n in SIZES {
            for function in FUNCTIONS {
                let counts = callgrind(function, workload, n, &dir);
                let [insert, cancel, release, drain] = counts.ir;
                let [inserted, cancelled, released, fired] = counts.ops;
                let total = counts.ir.iter().sum::<u64>();
                let row = Row::new(function, workload.param(n))
                    .with("insert_ir_per_op", per(insert, inserted))
                    .with("cancel_ir_per_op", per(cancel, cancelled))
                    .with("release_ir_per_op", per(release, released))
                    .with("drain_ir_per_fired", per(drain, fired))
                    .with("total_ir_per_timer", per(total, inserted))
                    .with("total_ir", total);
                println!(
                    "{:<12} {:<22} {:>10.1} {:>10.1} {:>10.1} {:>12.1} {:>12.1}",
                    function,
                    workload.param(n),
                    per(insert, inserted),
                    per(cancel, cancelled),
                    per(release, released),
                    per(drain, fired),
                    per(total, inserted),
                );
                report.push(row);
            }
        }
    }
    match report.write() {
        Ok(path) => println!("timer_ops: wrote {}", path.display()),
        Err(err) => eprintln!("timer_ops: could not write the report: {err}"),
    }
    // The profiles carry per-line data for the whole binary; they are large and the figures
    // are in the report now.
    if let Err(err) = std::fs::remove_dir_all(&dir) {
        eprintln!("timer_ops: could not remove {}: {err}", dir.display());
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["callgrind"] => callgrind_all(),
        ["run", function, workload, n] => {
            let workload = Workload::from_name(workload).expect("workload: cancel10 or cancel99");
            run(
                function,
                workload,
                n.parse().expect("n: a number of timers"),
            );
        }
        _ => eprintln!(
            "usage: timer_ops callgrind | timer_ops run <ferrojob|nexus_timer|binary_heap> \
             <cancel10|cancel99> <n>"
        ),
    }
}
