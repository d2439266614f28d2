//! `ferrojob store check|salvage DIR`: look at a server's store directory (`DATA_DIR/store`)
//! offline. `check` changes nothing; `salvage` needs the server stopped (it takes the store's
//! lock) and does what `ferrojob-server --salvage` does at start.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ferrojob_store::{LogOptions, LogStore, RecoveryMode, Store};

#[derive(Debug, clap::Subcommand)]
pub enum StoreCmd {
    /// Verify every segment without changing anything: print the damaged byte ranges, the
    /// intact batches, keys and tables. Exits 1 when the store is damaged.
    Check {
        /// The store directory (the server's DATA_DIR/store).
        dir: PathBuf,
    },
    /// Keep every intact record and move the damaged part aside (`*.log.corrupt*` files next
    /// to the segments; nothing is deleted), then print what was done. The server must be
    /// stopped.
    Salvage {
        /// The store directory (the server's DATA_DIR/store).
        dir: PathBuf,
    },
}

/// Runs the command; `Ok(false)` when `check` found damage.
pub fn run(cmd: &StoreCmd) -> Result<bool> {
    match cmd {
        StoreCmd::Check { dir } => check(dir),
        StoreCmd::Salvage { dir } => salvage(dir).map(|()| true),
    }
}

/// Refuses a directory without segments: a typo must not create or "check" an empty store.
fn require_store(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries {
        let name = entry?.file_name();
        if name.to_string_lossy().ends_with(".log") {
            return Ok(());
        }
    }
    let hint = if dir.join("store").is_dir() {
        format!(
            " (the server keeps its store in {})",
            dir.join("store").display()
        )
    } else {
        String::new()
    };
    bail!("{} holds no store segments{hint}", dir.display())
}

fn print_tables(tables: &[(String, usize)]) {
    for (name, keys) in tables {
        println!("  table {name}: {keys} keys");
    }
}

fn check(dir: &Path) -> Result<bool> {
    require_store(dir)?;
    let report =
        LogStore::check(dir).with_context(|| format!("checking the store in {}", dir.display()))?;
    println!(
        "store {}: {} segments, {} intact batches, {} live keys in {} tables",
        dir.display(),
        report.segments,
        report.batches,
        report.keys,
        report.tables.len()
    );
    print_tables(&report.tables);
    for (path, range) in &report.torn {
        println!(
            "torn tail (an unfinished write, cut off by any open; not damage): {} bytes {}..{}",
            path.display(),
            range.start,
            range.end
        );
    }
    for (path, range) in &report.damaged {
        println!(
            "DAMAGED: {} bytes {}..{} ({} bytes)",
            path.display(),
            range.start,
            range.end,
            range.end - range.start
        );
    }
    if report.is_intact() {
        println!("result: intact");
        Ok(true)
    } else {
        println!(
            "result: damaged ({} range(s)). `ferrojob store salvage {}` (or `ferrojob-server \
             --salvage`) keeps the {} intact batches and moves the damaged ranges aside.",
            report.damaged.len(),
            dir.display(),
            report.batches
        );
        Ok(false)
    }
}

fn salvage(dir: &Path) -> Result<()> {
    require_store(dir)?;
    let options = LogOptions {
        recovery: RecoveryMode::Salvage,
        background_compaction: false,
        ..LogOptions::default()
    };
    let store = LogStore::open(dir, options)
        .with_context(|| format!("salvaging the store in {}", dir.display()))?;
    let report = store.recovery_report().clone();
    let mut tables = Vec::new();
    for name in store.tables() {
        let keys = store.count(&name);
        tables.push((name, keys));
    }
    store
        .close()
        .with_context(|| format!("closing the store in {}", dir.display()))?;
    println!(
        "store {}: {} segments, {} batches kept, {} live keys in {} tables",
        dir.display(),
        report.segments,
        report.batches_replayed,
        report.keys,
        tables.len()
    );
    print_tables(&tables);
    for (path, len) in &report.truncated {
        println!("cut off a torn tail: {} at {len} bytes", path.display());
    }
    for path in &report.moved_aside {
        println!("moved aside: {}", path.display());
    }
    if report.moved_aside.is_empty() {
        println!("result: nothing damaged, nothing moved");
    } else {
        println!(
            "result: salvaged; {} file(s) moved aside (kept for inspection, delete them when done)",
            report.moved_aside.len()
        );
    }
    Ok(())
}
