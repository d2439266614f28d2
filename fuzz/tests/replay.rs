//! Replays every fuzz corpus (`fuzz/corpus/<target>/*`) through its target function.
//!
//! A corpus file that once crashed a target stays in its corpus, so this is also the
//! regression suite for everything fuzzing found.

use std::path::PathBuf;

#[allow(dead_code)] // unused when every feature is off
fn replay(target: &str, run: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut count = 0usize;
    let mut entries: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) => panic!("corpus {} unreadable: {e}", dir.display()),
    };
    entries.sort();
    for path in entries {
        if !path.is_file() {
            continue;
        }
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        run(&data);
        count += 1;
    }
    assert!(count > 0, "corpus {} is empty: seed it", dir.display());
}

#[cfg(feature = "engine")]
#[test]
fn api_json_corpus() {
    replay("api_json", ferrojob_fuzz::api_json::run);
}

#[cfg(feature = "engine")]
#[test]
fn cron_parse_corpus() {
    replay("cron_parse", ferrojob_fuzz::cron_parse::run);
}

#[cfg(feature = "engine")]
#[test]
fn workflow_def_corpus() {
    replay("workflow_def", ferrojob_fuzz::workflow_def::run);
}

#[cfg(feature = "engine")]
#[test]
fn ownership_corpus() {
    replay("ownership", ferrojob_fuzz::ownership::run);
}

#[cfg(feature = "store")]
#[test]
fn store_recover_corpus() {
    replay("store_recover", ferrojob_fuzz::store_recover::run);
}

#[cfg(feature = "transport")]
#[test]
fn frame_decode_corpus() {
    replay("frame_decode", ferrojob_fuzz::frame_decode::run);
}

#[cfg(feature = "transport")]
#[test]
fn message_validate_corpus() {
    replay("message_validate", ferrojob_fuzz::message_validate::run);
}

#[cfg(feature = "transport")]
#[test]
fn connection_corpus() {
    replay("connection", ferrojob_fuzz::connection::run);
}
