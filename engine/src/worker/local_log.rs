//! The worker's own log outputs for jobs whose log type is LOCAL or STDOUT: one writer thread
//! behind a bounded queue, a rotating file for LOCAL, the process's stdout for STDOUT.
//!
//! ```text
//!  InstanceLogger (LOCAL / STDOUT) --try_send--> bounded queue (log_queue lines) --> writer thread
//!     full? count the line as dropped                  LOCAL  -> RotatingFile in LocalLogConfig::dir
//!                                                      STDOUT -> one line on stdout
//! ```
//!
//! Both outputs write one text line per log line ([`format_line`]):
//!
//! ```text
//!  2026-12-06T20:30:00.123Z WARN instance=42 attempt=2 disk almost full {free_gb=3, volume=/data}
//! ```
//!
//! Newlines and backslashes in the content and fields are escaped (`\n`, `\r`, `\\`), so a
//! line is always one line. The file's rotation keeps at most
//! [`LocalLogConfig::max_files`] files of at most [`LocalLogConfig::max_file_bytes`] each:
//! `instances.log` (newest), `instances.log.1`, … (older). [`read_local_log`] reads them back,
//! oldest first, while the worker runs (`ferrojob worker local-log`).
//!
//! Invariants: a logger never blocks on a file or on stdout (the queue is bounded, a full queue
//! drops and counts); the files on disk never exceed `max_files` × `max_file_bytes` bytes.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};

use ferrojob_transport::message::{LogEntry, LogLevel};

/// Name of the newest LOCAL log file; older ones carry a `.1`, `.2`, … suffix.
pub const LOCAL_LOG_FILE: &str = "instances.log";

/// Smallest accepted [`LocalLogConfig::max_file_bytes`]: a line of the longest content still
/// fits one file.
pub const MIN_LOCAL_LOG_FILE_BYTES: u64 = 64 * 1024;

/// Where a worker writes the lines of LOCAL jobs (see [`crate::worker::WorkerConfig::local_log`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalLogConfig {
    /// The directory of the rotating files (created if missing). `None` (the library's
    /// default): LOCAL lines are dropped, and the worker warns once; the bundled worker sets
    /// `DATA_DIR/logs`.
    pub dir: Option<PathBuf>,
    /// Bytes per file before it is rotated (default 16 MiB; at least
    /// [`MIN_LOCAL_LOG_FILE_BYTES`]).
    pub max_file_bytes: u64,
    /// Files kept, the current one included (default 5; at least 1).
    pub max_files: u32,
}

impl Default for LocalLogConfig {
    fn default() -> Self {
        LocalLogConfig {
            dir: None,
            max_file_bytes: 16 * 1024 * 1024,
            max_files: 5,
        }
    }
}

/// Which output a queued line goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Output {
    /// The rotating file.
    File,
    /// The process's stdout.
    Stdout,
}

/// The sending end of the writer thread's queue. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct LocalWriter {
    tx: SyncSender<(Output, LogEntry)>,
}

impl LocalWriter {
    /// Starts the writer thread with a queue of `bound` lines. The thread ends when every
    /// `LocalWriter` is dropped.
    pub(crate) fn start(config: LocalLogConfig, bound: usize) -> io::Result<LocalWriter> {
        let (tx, rx) = sync_channel(bound.max(1));
        std::thread::Builder::new()
            .name("ferrojob-local-log".into())
            .spawn(move || write_loop(config, rx))?;
        Ok(LocalWriter { tx })
    }

    #[cfg(test)]
    pub(crate) fn from_sender(tx: SyncSender<(Output, LogEntry)>) -> LocalWriter {
        LocalWriter { tx }
    }

    /// Queues `entry` for `output`; false (nothing queued) when the queue is full or the
    /// thread is gone.
    pub(crate) fn try_write(&self, output: Output, entry: LogEntry) -> bool {
        match self.tx.try_send((output, entry)) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }
}

fn write_loop(config: LocalLogConfig, rx: Receiver<(Output, LogEntry)>) {
    let mut file = config
        .dir
        .as_ref()
        .map(|dir| RotatingFile::new(dir.clone(), config.max_file_bytes, config.max_files));
    let mut warned = false;
    while let Ok((output, entry)) = rx.recv() {
        let mut line = format_line(&entry);
        line.push('\n');
        match output {
            Output::Stdout => {
                let mut out = io::stdout().lock();
                // A closed stdout drops the line; nothing else can be done with it.
                let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
            }
            Output::File => match file.as_mut() {
                Some(f) => {
                    if let Err(e) = f.write_line(&line) {
                        if !warned {
                            tracing::warn!(error = %e, dir = %f.dir.display(), "cannot write the local instance log; lines are dropped");
                            warned = true;
                        }
                    }
                }
                None => {
                    if !warned {
                        tracing::warn!("a job logs LOCAL but this worker has no local log directory; lines are dropped");
                        warned = true;
                    }
                }
            },
        }
    }
}

/// The text of one log line, without a trailing newline (see the module docs).
pub(crate) fn format_line(e: &LogEntry) -> String {
    let time = chrono::DateTime::from_timestamp_millis(e.time_ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|| e.time_ms.to_string());
    let mut s = format!(
        "{time} {} instance={} attempt={} ",
        level_name(&e.level),
        e.instance_id,
        e.attempt
    );
    escape_into(&mut s, &e.content);
    if !e.fields.is_empty() {
        s.push_str(" {");
        for (i, f) in e.fields.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            escape_into(&mut s, &f.key);
            s.push('=');
            escape_into(&mut s, &f.value);
        }
        s.push('}');
    }
    s
}

fn level_name(l: &LogLevel) -> &'static str {
    match l {
        LogLevel::Debug => "DEBUG",
        LogLevel::Info => "INFO",
        LogLevel::Warn => "WARN",
        LogLevel::Error => "ERROR",
    }
}

fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
}

/// A size-bounded, count-bounded log file: `dir/instances.log` and up to `max_files - 1`
/// older files `instances.log.1` (newest of them) … `instances.log.{max_files - 1}`.
#[derive(Debug)]
pub(crate) struct RotatingFile {
    dir: PathBuf,
    max_file_bytes: u64,
    max_files: u32,
    /// The open current file and its size, once opened.
    current: Option<(File, u64)>,
}

impl RotatingFile {
    pub(crate) fn new(dir: PathBuf, max_file_bytes: u64, max_files: u32) -> RotatingFile {
        RotatingFile {
            dir,
            max_file_bytes: max_file_bytes.max(MIN_LOCAL_LOG_FILE_BYTES),
            max_files: max_files.max(1),
            current: None,
        }
    }

    /// Appends `line` (with its newline), rotating first when it would not fit the current
    /// file. A line longer than a whole file is cut to fit, on a character boundary.
    pub(crate) fn write_line(&mut self, line: &str) -> io::Result<()> {
        let max = usize::try_from(self.max_file_bytes).unwrap_or(usize::MAX);
        let mut line = line;
        if line.len() > max {
            let mut cut = max;
            while cut > 0 && !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line = line.get(..cut).unwrap_or_default();
        }
        let len = line.len() as u64;
        let (mut file, mut size) = match self.current.take() {
            Some(open) => open,
            None => self.open()?,
        };
        if size > 0 && size.saturating_add(len) > self.max_file_bytes {
            drop(file);
            self.rotate()?;
            (file, size) = self.open()?;
        }
        file.write_all(line.as_bytes())?;
        self.current = Some((file, size.saturating_add(len)));
        Ok(())
    }

    fn path(&self, index: u32) -> PathBuf {
        log_file_path(&self.dir, index)
    }

    fn open(&self) -> io::Result<(File, u64)> {
        fs::create_dir_all(&self.dir)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(0))?;
        let size = file.metadata()?.len();
        Ok((file, size))
    }

    /// Shifts every file one place older and drops the oldest.
    fn rotate(&self) -> io::Result<()> {
        let last = self.max_files - 1;
        if last == 0 {
            return fs::remove_file(self.path(0)).or_else(ignore_not_found);
        }
        fs::remove_file(self.path(last)).or_else(ignore_not_found)?;
        for i in (0..last).rev() {
            fs::rename(self.path(i), self.path(i + 1)).or_else(ignore_not_found)?;
        }
        Ok(())
    }
}

fn ignore_not_found(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}

fn log_file_path(dir: &Path, index: u32) -> PathBuf {
    if index == 0 {
        dir.join(LOCAL_LOG_FILE)
    } else {
        dir.join(format!("{LOCAL_LOG_FILE}.{index}"))
    }
}

/// Most rotated files [`read_local_log`] looks for.
const MAX_READ_FILES: u32 = 10_000;

/// The lines of a worker's LOCAL log in `dir`, oldest first; only those of `instance` when
/// given. Safe while the worker writes: a file rotated away between two reads is skipped.
pub fn read_local_log(dir: &Path, instance: Option<u64>) -> io::Result<Vec<String>> {
    let mut files = Vec::new();
    for i in 0..MAX_READ_FILES {
        let p = log_file_path(dir, i);
        if i > 0 && !p.exists() {
            break;
        }
        files.push(p);
    }
    let needle = instance.map(|id| format!(" instance={id} "));
    let mut out = Vec::new();
    for p in files.iter().rev() {
        let f = match File::open(p) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for line in BufReader::new(f).lines() {
            let line = line?;
            if needle.as_ref().is_none_or(|n| line.contains(n.as_str())) {
                out.push(line);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrojob_transport::message::LogField;

    fn entry(instance_id: u64, content: &str) -> LogEntry {
        LogEntry {
            instance_id,
            time_ms: 1_795_000_000_123,
            level: LogLevel::Warn,
            content: content.into(),
            attempt: 2,
            fields: Vec::new(),
        }
    }

    #[test]
    fn a_line_is_one_line_with_instance_attempt_and_fields() {
        let mut e = entry(42, "disk\nalmost full");
        e.fields = vec![
            LogField {
                key: "free_gb".into(),
                value: "3".into(),
            },
            LogField {
                key: "volume".into(),
                value: "/data".into(),
            },
        ];
        assert_eq!(
            format_line(&e),
            "2026-11-18T11:06:40.123Z WARN instance=42 attempt=2 disk\\nalmost full {free_gb=3, volume=/data}"
        );
    }

    #[test]
    fn rotation_bounds_the_file_count_and_each_file_size() {
        let dir = tempfile::tempdir().unwrap();
        let max = MIN_LOCAL_LOG_FILE_BYTES;
        let mut f = RotatingFile::new(dir.path().to_path_buf(), max, 3);
        let line = format!("{}\n", "x".repeat(999));
        // Ten files' worth of lines.
        let n = 10 * max as usize / line.len();
        for i in 0..n {
            f.write_line(&format!("{i:08} {line}")).unwrap();
        }
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["instances.log", "instances.log.1", "instances.log.2"]
        );
        for name in &names {
            let len = fs::metadata(dir.path().join(name)).unwrap().len();
            assert!(len <= max, "{name}: {len} > {max}");
        }
        // The newest lines survive, in order, ending with the last one written.
        let lines = read_local_log(dir.path(), None).unwrap();
        assert!(lines.len() < n);
        let first: usize = lines[0][..8].parse().unwrap();
        let numbers: Vec<usize> = lines.iter().map(|l| l[..8].parse().unwrap()).collect();
        assert_eq!(numbers, (first..n).collect::<Vec<_>>());
    }

    #[test]
    fn one_file_only_starts_again_when_full() {
        let dir = tempfile::tempdir().unwrap();
        let max = MIN_LOCAL_LOG_FILE_BYTES;
        let mut f = RotatingFile::new(dir.path().to_path_buf(), max, 1);
        let line = format!("{}\n", "y".repeat(1023));
        for _ in 0..3 * max as usize / line.len() {
            f.write_line(&line).unwrap();
        }
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
        assert!(fs::metadata(dir.path().join(LOCAL_LOG_FILE)).unwrap().len() <= max);
        // A line longer than a file is cut to fit.
        f.write_line(&"z".repeat(2 * max as usize)).unwrap();
        assert_eq!(
            fs::metadata(dir.path().join(LOCAL_LOG_FILE)).unwrap().len(),
            max
        );
    }

    #[test]
    fn the_writer_writes_every_queued_line_and_the_reader_filters_by_instance() {
        let dir = tempfile::tempdir().unwrap();
        let config = LocalLogConfig {
            dir: Some(dir.path().to_path_buf()),
            ..LocalLogConfig::default()
        };
        let (tx, rx) = sync_channel(2);
        let w = LocalWriter { tx };
        assert!(w.try_write(Output::File, entry(1, "one")));
        assert!(w.try_write(Output::File, entry(12, "twelve")));
        // The queue is bounded: a third line waits for no one, it is refused.
        assert!(!w.try_write(Output::File, entry(1, "dropped")));
        drop(w);
        // The loop drains what was queued, then ends with its last sender.
        write_loop(config, rx);
        assert_eq!(read_local_log(dir.path(), None).unwrap().len(), 2);
        let ones = read_local_log(dir.path(), Some(1)).unwrap();
        assert_eq!(ones.len(), 1);
        assert!(
            ones[0].ends_with("WARN instance=1 attempt=2 one"),
            "{}",
            ones[0]
        );
    }
}
