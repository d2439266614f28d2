//! CPU time a measured batch costs, read from `/proc` (Linux): this process's (server,
//! workers and load generator alike, when they run here), and that of the PostgreSQL
//! backends serving the run's database when the database runs on this host.
//!
//! On a shared machine the rate a batch reaches says how much of the cores it was given; the
//! CPU time per instance says what each instance costs, which is what a quieter or larger
//! machine would divide its cores by. Elsewhere than on Linux, or with the database on
//! another host, the figures are absent rather than wrong.

use std::path::Path;

/// Clock ticks per second of `/proc/*/stat` (`USER_HZ`, 100 on every Linux architecture
/// this runs on).
const TICKS_PER_S: u64 = 100;

/// What to sample: this process, and the backends of database `database` if given.
#[derive(Clone, Debug, Default)]
pub(super) struct CpuClock {
    database: Option<String>,
}

/// CPU time used so far, in µs.
#[derive(Clone, Copy, Debug)]
pub(super) struct CpuSample {
    process_us: Option<u64>,
    database_us: Option<u64>,
}

impl CpuClock {
    /// Samples this process, and the backends of the database a `postgres://` store URL
    /// names (none for any other store).
    pub(super) fn new(store: Option<&str>) -> CpuClock {
        CpuClock {
            database: store.and_then(database_name),
        }
    }

    pub(super) fn sample(&self) -> CpuSample {
        CpuSample {
            process_us: stat_ticks(Path::new("/proc/self/stat")).map(ticks_us),
            database_us: self.database.as_deref().and_then(backends_us),
        }
    }
}

/// CPU µs per instance between two samples: (this process, the database's backends).
pub(super) fn per_instance(
    before: CpuSample,
    after: CpuSample,
    instances: u64,
) -> (Option<f64>, Option<f64>) {
    let per = |a: Option<u64>, b: Option<u64>| {
        let used = b?.checked_sub(a?)?;
        (instances > 0).then(|| used as f64 / instances as f64)
    };
    (
        per(before.process_us, after.process_us),
        per(before.database_us, after.database_us),
    )
}

fn ticks_us(ticks: u64) -> u64 {
    ticks.saturating_mul(1_000_000 / TICKS_PER_S)
}

/// The database of `postgres://user@host:port/db?options`, when its host is this machine.
fn database_name(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))?;
    let (authority, path) = rest.split_once('/')?;
    let host = authority.rsplit('@').next()?;
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    if !matches!(host, "127.0.0.1" | "localhost" | "::1" | "[::1]") {
        return None;
    }
    let name = path.split('?').next()?;
    (!name.is_empty()).then(|| name.to_owned())
}

/// utime + stime of the process whose `stat` file is `path`, in ticks.
fn stat_ticks(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) may hold spaces; the fields after it are plain.
    let (_, after) = text.rsplit_once(')')?;
    let mut fields = after.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Whether a process title is that of a backend connected to `database`:
/// `postgres: [CLUSTER: ]USER DATABASE HOST(PORT) STATE`.
fn serves(title: &str, database: &str) -> bool {
    let mut words = title
        .split(|c: char| c.is_whitespace() || c == '\0')
        .filter(|w| !w.is_empty());
    if words.next() != Some("postgres:") {
        return false;
    }
    let mut user = words.next();
    if user.is_some_and(|w| w.ends_with(':')) {
        user = words.next();
    }
    user.is_some() && words.next() == Some(database)
}

/// CPU µs of every PostgreSQL backend connected to `database`; `None` when there is none.
fn backends_us(database: &str) -> Option<u64> {
    let mut total = 0u64;
    let mut found = false;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let dir = entry.path();
        let is_pid = dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
        if !is_pid {
            continue;
        }
        let Ok(cmdline) = std::fs::read(dir.join("cmdline")) else {
            continue;
        };
        let title = String::from_utf8_lossy(&cmdline);
        if !serves(&title, database) {
            continue;
        }
        if let Some(t) = stat_ticks(&dir.join("stat")) {
            total = total.saturating_add(t);
            found = true;
        }
    }
    found.then(|| ticks_us(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_of_a_local_url_is_sampled_and_a_remote_one_is_not() {
        let name = |u: &str| database_name(u);
        assert_eq!(
            name("postgres://postgres@127.0.0.1:5432/fj_bench").as_deref(),
            Some("fj_bench")
        );
        assert_eq!(
            name("postgresql://u:p@localhost/db?sslmode=disable").as_deref(),
            Some("db")
        );
        assert_eq!(name("postgres://u@db.example.com:5432/db"), None);
        assert_eq!(name("postgres://u@127.0.0.1:5432/"), None);
        assert_eq!(name("/var/lib/ferrojob"), None);
    }

    #[test]
    fn backends_are_known_by_their_process_titles() {
        let t = "postgres: 15/main: postgres fj_bench 127.0.0.1(42054) idle\0\0\0";
        assert!(serves(t, "fj_bench"));
        assert!(!serves(t, "fj"));
        assert!(serves("postgres: root fj_bench [local] COMMIT", "fj_bench"));
        assert!(!serves("postgres: 15/main: walwriter ", "fj_bench"));
        assert!(!serves(
            "/usr/lib/postgresql/15/bin/postgres\0-D\0fj_bench",
            "fj_bench"
        ));
    }

    #[test]
    fn this_process_uses_cpu_and_a_batch_is_divided_by_its_instances() {
        let clock = CpuClock::new(None);
        let before = clock.sample();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let after = clock.sample();
        if cfg!(target_os = "linux") {
            let (process, database) = per_instance(before, after, 10);
            assert!(process.is_some());
            assert_eq!(database, None);
        }
        let fixed = |p| CpuSample {
            process_us: Some(p),
            database_us: Some(2 * p),
        };
        assert_eq!(
            per_instance(fixed(1000), fixed(3000), 4),
            (Some(500.0), Some(1000.0))
        );
        assert_eq!(per_instance(fixed(1000), fixed(3000), 0), (None, None));
    }
}
