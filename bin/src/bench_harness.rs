//! What the process-level benches share: child processes (a `ferrojob-server`, worker
//! processes, the flood's attacker) with their resource use read from `/proc`, the size of a
//! directory, and the report file `bench-reports/<group>.json`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{sync_channel, Receiver};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// Lines of a child's stdout kept until read; the children here print one or two.
const STDOUT_LINES: usize = 64;

/// The executable `name` next to this one (`ferrojob-server`, `ferrojob-worker`).
pub(super) fn sibling_exe(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()
        .context("locating this executable")?
        .with_file_name(name);
    if !exe.exists() {
        bail!(
            "{} not found: build it too (cargo build --release --bin {name})",
            exe.display()
        );
    }
    Ok(exe)
}

/// A child process whose stdout lines arrive on a channel; killed when dropped.
pub(super) struct ChildProc {
    child: Child,
    lines: Receiver<String>,
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ChildProc {
    /// Starts `command` (stdout and stdin piped; stderr as the command says, inherited by
    /// default) and waits up to 30 s for its first stdout line, which must contain `ready`;
    /// answers the line too.
    pub(super) fn spawn(mut command: Command, ready: &str) -> Result<(ChildProc, String)> {
        let what = format!("{:?}", command.get_program());
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        let stdout = child.stdout.take().context("child stdout not captured")?;
        let (tx, lines) = sync_channel(STDOUT_LINES);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                // Nobody reads any more: keep draining so the child never blocks on stdout.
                let _ = tx.try_send(line);
            }
        });
        let proc = ChildProc { child, lines };
        let first = proc.next_line(Duration::from_secs(30)).unwrap_or_default();
        if !first.contains(ready) {
            bail!("{what} did not start: {first:?}");
        }
        Ok((proc, first))
    }

    /// The next stdout line, waiting up to `timeout`; `None` at the end or on timeout.
    pub(super) fn next_line(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// Closes the child's stdin (the attacker stops on it).
    pub(super) fn close_stdin(&mut self) {
        drop(self.child.stdin.take());
    }

    /// Waits up to `timeout` for the child to exit.
    pub(super) fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Kills the child with SIGKILL (no chance to clean up, as a crash) and reaps it.
    pub(super) fn kill(&mut self) -> Result<()> {
        self.child.kill().context("sending SIGKILL")?;
        self.child.wait().context("reaping a killed child")?;
        Ok(())
    }

    /// The child's process id.
    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The child's resource use now.
    pub(super) fn usage(&self) -> Usage {
        Usage::of(self.child.id())
    }
}

/// A process's resource use, from `/proc/<pid>` (zeros where it is not there).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Usage {
    /// Resident set now (`VmRSS`), bytes.
    pub rss_bytes: u64,
    /// Peak resident set over the process's life (`VmHWM`), bytes.
    pub peak_rss_bytes: u64,
    /// Open file descriptors (entries of `/proc/<pid>/fd`): sockets included.
    pub open_fds: u64,
    /// User + system CPU time, ms (at the usual 100 clock ticks per second).
    pub cpu_ms: u64,
}

impl Usage {
    /// The use of process `pid`.
    pub(super) fn of(pid: u32) -> Usage {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let open_fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map_or(0, |d| d.filter_map(std::io::Result::ok).count() as u64);
        Usage {
            rss_bytes: status_kb(&status, "VmRSS:").saturating_mul(1024),
            peak_rss_bytes: status_kb(&status, "VmHWM:").saturating_mul(1024),
            open_fds,
            cpu_ms: stat_cpu_ticks(&stat).saturating_mul(10),
        }
    }
}

/// The value in kB of `field` (`VmRSS:`) in the text of `/proc/<pid>/status`; 0 if absent.
fn status_kb(status: &str, field: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// utime + stime (fields 14 and 15) of `/proc/<pid>/stat`, in clock ticks; 0 if unreadable.
/// The command name (field 2) may hold spaces, so fields are counted after its `)`.
fn stat_cpu_ticks(stat: &str) -> u64 {
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    // `rest` starts at field 3 (state): utime (field 14) is its 12th word, stime its 13th.
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    let stime: u64 = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    utime + stime
}

/// A `ferrojob-server` child process on loopback with ephemeral ports.
pub(super) struct ServerProc {
    pub proc: ChildProc,
    pub http: SocketAddr,
    pub transport: SocketAddr,
    pub token: String,
    /// Its stderr (log lines at WARN and above).
    pub log: PathBuf,
}

impl ServerProc {
    /// Starts the `ferrojob-server` next to this executable with its LogStore in `data_dir`,
    /// its log (WARN and above) in `log`, the OpenAPI unthrottled (the benches' load must not
    /// be rate limited), and `extra` flags after those.
    pub(super) fn spawn(data_dir: &Path, log: &Path, extra: &[String]) -> Result<ServerProc> {
        let exe = sibling_exe("ferrojob-server")?;
        let token = "bench-admin-token-0123456789".to_owned();
        let stderr =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut command = Command::new(exe);
        command
            .stderr(stderr)
            .env("RUST_LOG", "warn")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--http", "127.0.0.1:0", "--listen", "127.0.0.1:0"])
            .args(["--admin-token", &token, "--api-rate-per-sec", "0"])
            .args(extra);
        let (proc, line) = ChildProc::spawn(command, "ferrojob-server ready")?;
        let field = |name: &str| -> Result<SocketAddr> {
            let prefix = format!("{name}=");
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(prefix.as_str()))
                .with_context(|| format!("no {name}= in {line:?}"))?
                .parse()
                .with_context(|| format!("{name}= in {line:?}"))
        };
        Ok(ServerProc {
            http: field("http")?,
            transport: field("transport")?,
            token,
            proc,
            log: log.to_path_buf(),
        })
    }

    /// Lines the server has logged so far.
    pub(super) fn log_lines(&self) -> u64 {
        std::fs::File::open(&self.log).map_or(0, |f| BufReader::new(f).lines().count() as u64)
    }
}

/// Bytes of every file under `dir` (their lengths, preallocated room included); 0 for a
/// directory that cannot be read.
pub(super) fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(std::io::Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The value of the unlabelled metric `name` in Prometheus text; 0 if absent.
pub(super) fn metric(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The default report file of `group`: `$CARGO_TARGET_DIR/bench-reports/<group>.json`, or
/// `target/bench-reports/<group>.json` under the current directory.
pub(super) fn default_report(group: &str) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| PathBuf::from("target"), PathBuf::from)
        .join("bench-reports")
        .join(format!("{group}.json"))
}

/// Writes `rows` (objects with `function` and `param`) to the report at `path`: a row with
/// the same `(function, param)` as one already in the file replaces it, the others stay (as
/// the criterion benches' reports do).
pub(super) fn write_report(path: &Path, rows: &[Value]) -> Result<()> {
    let key = |row: &Value| -> Option<(String, String)> {
        Some((
            row.get("function")?.as_str()?.to_owned(),
            row.get("param")?.as_str()?.to_owned(),
        ))
    };
    let mut merged: BTreeMap<(String, String), Value> = BTreeMap::new();
    if let Ok(old) = std::fs::read(path) {
        if let Ok(Value::Array(old)) = serde_json::from_slice::<Value>(&old) {
            for row in old {
                if let Some(k) = key(&row) {
                    merged.insert(k, row);
                }
            }
        }
    }
    for row in rows {
        let k = key(row).context("a report row without function and param")?;
        merged.insert(k, row.clone());
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let rows: Vec<Value> = merged.into_values().collect();
    std::fs::write(path, serde_json::to_string_pretty(&rows)?)
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_are_read_in_kb() {
        let status = "Name:\tferrojob\nVmHWM:\t  123456 kB\nVmRSS:\t   65432 kB\n";
        assert_eq!(status_kb(status, "VmHWM:"), 123_456);
        assert_eq!(status_kb(status, "VmRSS:"), 65_432);
        assert_eq!(status_kb(status, "VmSwap:"), 0);
        assert_eq!(status_kb("VmRSS: lots\n", "VmRSS:"), 0);
    }

    #[test]
    fn cpu_ticks_are_counted_after_the_command_name() {
        // The name holds spaces and a `)`: fields are counted from the last `)`.
        let stat = "4242 (ferro job) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0";
        assert_eq!(stat_cpu_ticks(stat), 325);
        assert_eq!(stat_cpu_ticks("garbage"), 0);
        assert_eq!(stat_cpu_ticks("1 (x) S 1"), 0);
    }

    #[test]
    fn metrics_are_read_by_exact_name() {
        let text = "# HELP a_total x\na_total 7\na_total_more 9\nb{l=\"1\"} 3\n";
        assert_eq!(metric(text, "a_total"), 7.0);
        assert_eq!(metric(text, "a_total_more"), 9.0);
        assert_eq!(metric(text, "b"), 0.0);
    }

    #[test]
    fn a_report_keeps_other_rows_and_replaces_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("flood.json");
        let row =
            |f: &str, p: &str, v: u64| serde_json::json!({"function": f, "param": p, "x_per_s": v});
        write_report(&path, &[row("quiet", "1", 1), row("flood", "1", 2)]).unwrap();
        write_report(&path, &[row("flood", "1", 3), row("flood", "2", 4)]).unwrap();
        let rows: Vec<Value> = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(
            rows,
            vec![
                row("flood", "1", 3),
                row("flood", "2", 4),
                row("quiet", "1", 1)
            ]
        );
        assert!(write_report(&path, &[serde_json::json!({"param": "1"})]).is_err());
    }

    #[test]
    fn dir_bytes_sums_nested_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), [0u8; 100]).unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d").join("b"), [0u8; 23]).unwrap();
        assert_eq!(dir_bytes(dir.path()), 123);
        assert_eq!(dir_bytes(&dir.path().join("missing")), 0);
    }
}
