//! `ferrojob bench fsync`: the fdatasync latency of the disk a LogStore writes to.
//!
//! The floor under every durable write: `bench dispatch` on the LogStore awaits one
//! group-committed fdatasync before each `ScheduleJob` leaves, so its p99 cannot beat this
//! disk's fdatasync p99 at the same moment. Run both back to back (or alternated) and compare.
//!
//! In a fresh temp dir on the same file system `bench dispatch` uses (the system temp dir;
//! `--dir` for another), one file per mode, one writer, `--samples` times:
//!
//! - `prealloc`: the LogStore's default: the file is zero-filled and fsynced first, then
//!   each sample overwrites the next `--bytes` of zeros in place and calls fdatasync (no size
//!   change, so no metadata to flush);
//! - `append`: each sample appends `--bytes` and calls fdatasync (the file grows: the
//!   journal also commits the new size), as the store does with `preallocate: false`.
//!
//! Latency is write + fdatasync, timed per sample with the monotonic clock; p50/p99/p999 are
//! nearest-rank over the sorted samples, `max` the slowest. `--json` prints one row per mode.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::Serialize;

/// `ferrojob bench fsync` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct FsyncArgs {
    /// Writes (each followed by fdatasync) per mode.
    #[arg(long, default_value_t = 5000)]
    samples: u64,
    /// Bytes per write (a group-committed dispatch batch is a few hundred bytes).
    #[arg(long, default_value_t = 512)]
    bytes: usize,
    /// Directory to make the temp dir in (default: the system temp dir, where `bench
    /// dispatch` keeps its LogStore).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// How the probe writes; see the module docs.
#[derive(Debug, Clone, Copy)]
enum Mode {
    Prealloc,
    Append,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Prealloc => "prealloc",
            Mode::Append => "append",
        }
    }
}

/// One row of the report (units in the names).
#[derive(Debug, Serialize)]
struct Row {
    function: &'static str,
    param: String,
    samples: u64,
    bytes: usize,
    fdatasync_p50_us: u64,
    fdatasync_p99_us: u64,
    fdatasync_p999_us: u64,
    fdatasync_max_us: u64,
}

/// Runs the probe in both modes and prints a row per mode.
pub fn fsync(args: &FsyncArgs, json: bool) -> Result<()> {
    if args.samples == 0 || args.bytes == 0 {
        bail!("--samples and --bytes must be at least 1");
    }
    let mut builder = tempfile::Builder::new();
    builder.prefix("ferrojob-bench-fsync-");
    let dir = match &args.dir {
        Some(parent) => builder.tempdir_in(parent),
        None => builder.tempdir(),
    }
    .context("creating a temp dir for the fsync probe")?;
    if !json {
        println!(
            "write + fdatasync of {} bytes, {} samples per mode, in {}",
            args.bytes,
            args.samples,
            dir.path().display()
        );
    }
    for mode in [Mode::Prealloc, Mode::Append] {
        let path = dir.path().join(format!("{}.probe", mode.name()));
        let mut micros = probe(&path, mode, args.samples, args.bytes)?;
        micros.sort_unstable();
        let row = Row {
            function: "fsync",
            param: mode.name().to_owned(),
            samples: args.samples,
            bytes: args.bytes,
            fdatasync_p50_us: nearest_rank(&micros, 0.50),
            fdatasync_p99_us: nearest_rank(&micros, 0.99),
            fdatasync_p999_us: nearest_rank(&micros, 0.999),
            fdatasync_max_us: micros.last().copied().unwrap_or(0),
        };
        if json {
            println!("{}", serde_json::to_string(&row)?);
        } else {
            println!(
                "  {:<8} p50 {} µs, p99 {} µs, p999 {} µs, max {} µs",
                row.param,
                row.fdatasync_p50_us,
                row.fdatasync_p99_us,
                row.fdatasync_p999_us,
                row.fdatasync_max_us
            );
        }
    }
    Ok(())
}

/// Write + fdatasync latencies in microseconds, in sample order.
fn probe(path: &Path, mode: Mode, samples: u64, bytes: usize) -> Result<Vec<u64>> {
    let total = samples
        .checked_mul(bytes as u64)
        .context("--samples × --bytes overflows")?;
    let mut file = OpenOptions::new()
        .create_new(true)
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    if let Mode::Prealloc = mode {
        zero_fill(&mut file, total).with_context(|| format!("zero-filling {}", path.display()))?;
    }
    let record = vec![0xA5_u8; bytes];
    let mut out = Vec::with_capacity(usize::try_from(samples).unwrap_or(0));
    let mut offset = 0u64;
    for _ in 0..samples {
        let start = Instant::now();
        match mode {
            Mode::Prealloc => file.write_all_at(&record, offset),
            Mode::Append => file.write_all(&record),
        }
        .with_context(|| format!("writing {}", path.display()))?;
        file.sync_data()
            .with_context(|| format!("fdatasync of {}", path.display()))?;
        out.push(u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX));
        offset += bytes as u64;
    }
    Ok(out)
}

/// Writes `len` zero bytes and makes them and the file's size durable, as the store's spare
/// segments are before the writer uses them.
fn zero_fill(file: &mut File, len: u64) -> std::io::Result<()> {
    let chunk = vec![0_u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = usize::try_from(left.min(chunk.len() as u64)).unwrap_or(chunk.len());
        file.write_all(chunk.get(..n).unwrap_or(&chunk))?;
        left -= n as u64;
    }
    file.sync_all()
}

/// Nearest-rank quantile (`q` in 0..=1) of sorted values; 0 when empty.
fn nearest_rank(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted.get(rank).copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_picks_from_the_sorted_samples() {
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(nearest_rank(&v, 0.5), 501);
        assert_eq!(nearest_rank(&v, 0.99), 990);
        assert_eq!(nearest_rank(&v, 0.999), 999);
        assert_eq!(nearest_rank(&[], 0.5), 0);
    }

    #[test]
    fn both_modes_write_every_sample() {
        let dir = tempfile::tempdir().expect("temp dir");
        for mode in [Mode::Prealloc, Mode::Append] {
            let path = dir.path().join(mode.name());
            let micros = probe(&path, mode, 8, 100).expect("probe");
            assert_eq!(micros.len(), 8);
            let len = std::fs::metadata(&path).expect("metadata").len();
            assert_eq!(len, 800, "{}", mode.name());
        }
    }
}
