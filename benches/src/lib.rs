//! Shared helpers for ferrojob's criterion benchmarks.
//!
//! Criterion measures time; every other figure a bench produces (rates, lateness, misses,
//! memory) goes through [`Report`] to `target/bench-reports/<group>.json` as an array of rows
//! `{"function", "param", ...}` whose field names carry their units (`per_s`, `p50_us`,
//! `p99_us`, `missed`, `rss_bytes`).

#[cfg(feature = "engine")]
pub mod timers;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Map, Value};

/// One row of a bench report: which implementation (`function`), which input size (`param`),
/// and named figures whose names carry their units.
#[derive(Debug, Clone)]
pub struct Row {
    fields: Map<String, Value>,
}

impl Row {
    /// A row for `function` (e.g. `ferrojob`, `delay_queue`) at `param` (e.g. `100000`).
    pub fn new(function: &str, param: impl ToString) -> Self {
        let mut fields = Map::new();
        fields.insert("function".into(), Value::from(function));
        fields.insert("param".into(), Value::from(param.to_string()));
        Row { fields }
    }

    /// Adds a figure; `name` must carry its unit (`per_s`, `p99_us`, `missed`, ...).
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.fields.insert(name.into(), value.into());
        self
    }
}

/// Collects rows for one bench group and writes them to `target/bench-reports/<group>.json`.
#[derive(Debug)]
pub struct Report {
    group: String,
    rows: Vec<Row>,
}

impl Report {
    /// An empty report for `group` (the criterion group name).
    pub fn new(group: &str) -> Self {
        Report {
            group: group.into(),
            rows: Vec::new(),
        }
    }

    /// Appends a row, printing it so that a bench run shows its figures too.
    pub fn push(&mut self, row: Row) {
        println!("{}: {}", self.group, Value::Object(row.fields.clone()));
        self.rows.push(row);
    }

    /// Where the report goes: `$CARGO_TARGET_DIR` (or the workspace `target/`) `/bench-reports/`.
    pub fn path(&self) -> PathBuf {
        target_dir()
            .join("bench-reports")
            .join(format!("{}.json", self.group))
    }

    /// Writes the report. A row with the same `(function, param)` as one already in the file
    /// replaces it, so re-running one function keeps the other functions' figures.
    pub fn write(&self) -> std::io::Result<PathBuf> {
        let path = self.path();
        self.write_to(&path)?;
        Ok(path)
    }

    /// [`Report::write`] to an explicit path.
    pub fn write_to(&self, path: &std::path::Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut merged: BTreeMap<(String, String), Value> = BTreeMap::new();
        if let Ok(old) = std::fs::read(path) {
            if let Ok(Value::Array(rows)) = serde_json::from_slice::<Value>(&old) {
                for row in rows {
                    if let Some(key) = row_key(&row) {
                        merged.insert(key, row);
                    }
                }
            }
        }
        for row in &self.rows {
            let value = Value::Object(row.fields.clone());
            if let Some(key) = row_key(&value) {
                merged.insert(key, value);
            }
        }
        let rows: Vec<Value> = merged.into_values().collect();
        let text = serde_json::to_string_pretty(&rows).map_err(std::io::Error::other)?;
        std::fs::write(path, text)
    }
}

fn row_key(row: &Value) -> Option<(String, String)> {
    let function = row.get("function")?.as_str()?.to_owned();
    let param = row.get("param")?.as_str()?.to_owned();
    Some((function, param))
}

/// The cargo target directory, from `CARGO_TARGET_DIR` or `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
}

/// Percentile (`q` in 0.0..=1.0, nearest rank) of an already sorted slice; `None` when empty.
pub fn percentile<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((sorted.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
    sorted.get(rank).copied()
}

/// This process's resident set size in bytes (Linux `/proc/self/statm`), if known.
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_picks_nearest_rank() {
        let v = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&v, 0.5), Some(6));
        assert_eq!(percentile(&v, 1.0), Some(10));
        assert_eq!(percentile::<u32>(&[], 0.5), None);
    }

    #[test]
    fn report_merges_rows_by_function_and_param() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("g.json");
        let write = |function: &str, per_s: f64| {
            let mut report = Report::new("g");
            report.push(Row::new(function, 1).with("per_s", per_s));
            report.write_to(&path).expect("write");
            let rows: Vec<Value> =
                serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
            rows
        };
        assert_eq!(write("a", 1.0).len(), 1);
        assert_eq!(write("b", 2.0).len(), 2);
        let rows = write("a", 3.0);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["per_s"], 3.0);
        assert_eq!(rows[1]["per_s"], 2.0);
    }
}
