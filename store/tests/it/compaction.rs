//! Compaction and hint-file tests of the log store.

use std::path::Path;

use crate::common::{copy, dump, hint_path, open, opts, segments, DIR};
use ferrojob_store::backend::{Fault, SimBackend};
use ferrojob_store::{Batch, LogOptions, Store};

/// Overwrites `keys` keys `rounds` times and deletes every third key at the end.
fn churn(s: &dyn Store, keys: u32, rounds: u32) {
    for r in 0..rounds {
        for k in 0..keys {
            s.put("t", &k.to_be_bytes(), &[r as u8; 40]).unwrap();
        }
    }
    for k in (0..keys).step_by(3) {
        s.delete("t", &k.to_be_bytes()).unwrap();
    }
}

#[test]
fn compaction_keeps_the_state_and_frees_space() {
    let b = SimBackend::new();
    let s = open(&b, opts()).unwrap();
    churn(&s, 20, 30);
    let expected = dump(&s);
    let before = s.disk_bytes();
    let report = s.compact().unwrap();
    assert!(report.inputs > 1, "{report:?}");
    assert_eq!(dump(&s), expected);
    assert!(
        s.disk_bytes() < before / 4,
        "{} -> {}",
        before,
        s.disk_bytes()
    );
    // More writes after compaction, then a power loss and a reopen.
    s.put("t", b"new", b"v").unwrap();
    let mut expected = expected;
    expected.insert(("t".into(), b"new".to_vec()), b"v".to_vec());
    assert_eq!(dump(&open(&b.crash(), opts()).unwrap()), expected);
    drop(s);
    assert_eq!(dump(&open(&b, opts()).unwrap()), expected);
}

#[test]
fn a_compacted_segment_of_several_batches_reopens_after_a_crash() {
    // More than one output batch (1 MiB) of live data in one output segment: it holds several
    // batches, each with first_seq 0, which recovery must not read as a broken sequence.
    let o = LogOptions {
        segment_bytes: 3 << 20,
        max_group_bytes: 1 << 20,
        ..opts()
    };
    let b = SimBackend::new();
    let s = open(&b, o.clone()).unwrap();
    for k in 0..9000u32 {
        s.put("t", &k.to_be_bytes(), &[7; 600]).unwrap();
    }
    let report = s.compact().unwrap();
    assert_eq!(report.outputs, 1, "{report:?}");
    assert!(report.bytes_after > 3 << 19, "{report:?}");
    s.put("t", b"after", b"v").unwrap();
    let expected = dump(&s);
    // No hint (compaction removed it): the reopen replays the compacted segment in full.
    assert!(b.read(&hint_path()).is_none());
    assert_eq!(dump(&open(&b.crash(), o).unwrap()), expected);
}

#[test]
fn deleted_keys_stay_deleted_after_compaction_and_reopen() {
    let b = SimBackend::new();
    let s = open(&b, opts()).unwrap();
    for k in 0..50u32 {
        s.put("t", &k.to_be_bytes(), &[1; 60]).unwrap();
    }
    s.compact().unwrap();
    // Delete some after the first round: tombstones in a log segment, puts in a compacted one.
    for k in 0..25u32 {
        s.delete("t", &k.to_be_bytes()).unwrap();
    }
    for k in 50..120u32 {
        s.put("u", &k.to_be_bytes(), &[2; 60]).unwrap();
    }
    let expected = dump(&s);
    drop(s);
    assert_eq!(dump(&open(&b, opts()).unwrap()), expected);
    let s = open(&b, opts()).unwrap();
    s.compact().unwrap();
    s.compact().unwrap();
    assert_eq!(dump(&s), expected);
    drop(s);
    assert_eq!(dump(&open(&b, opts()).unwrap()), expected);
}

#[test]
fn a_crash_at_any_step_of_compaction_loses_nothing() {
    for (fault, after) in [
        (Fault::Create, 0),
        (Fault::Write, 0),
        (Fault::SyncData, 0),
        (Fault::Rename, 0),
        (Fault::SyncDir, 0),
        (Fault::SyncDir, 1),
        (Fault::Remove, 0),
        (Fault::Remove, 1),
        (Fault::Remove, 2),
    ] {
        let b = SimBackend::new();
        let s = open(&b, opts()).unwrap();
        churn(&s, 30, 10);
        let expected = dump(&s);
        b.fail(fault, after);
        let _ = s.compact();
        // Whatever the round did, the live store still answers correctly...
        assert_eq!(dump(&s), expected, "{fault:?}/{after} live");
        // ...and so does every crash image.
        for img in [b.crash(), copy(&b)] {
            let s2 = open(&img, opts()).unwrap();
            assert_eq!(dump(&s2), expected, "{fault:?}/{after} after crash");
        }
        drop(s);
    }
}

#[test]
fn disk_use_stays_bounded_under_steady_updates() {
    let b = SimBackend::new();
    let o = LogOptions {
        compaction_min_garbage_bytes: 8192,
        ..opts()
    };
    let s = open(&b, o.clone()).unwrap();
    let live_keys = 50u32;
    let value = [7u8; 50];
    let mut max_disk = 0u64;
    for round in 0..60u32 {
        for k in 0..live_keys {
            s.commit(Batch::new().put("t", k.to_be_bytes(), value.to_vec()))
                .unwrap();
            if s.needs_compaction() {
                s.compact().unwrap();
            }
            max_disk = max_disk.max(s.disk_bytes());
        }
        assert_eq!(s.count("t"), live_keys as usize, "round {round}");
    }
    // live bytes: 50 records of 20 + 1 + 4 + 50 bytes.
    let live = u64::from(live_keys) * (20 + 1 + 4 + 50);
    let bound = 3 * live + 2 * o.segment_bytes + o.max_group_bytes as u64 + 8192;
    assert!(max_disk <= bound, "max disk {max_disk} > bound {bound}");
    assert!(s.compactions() > 5);
    // Without compaction the log would hold every update.
    assert!(max_disk * 5 < 60 * live);
}

#[test]
fn background_compaction_runs_by_itself() {
    let b = SimBackend::new();
    let o = LogOptions {
        background_compaction: true,
        compaction_min_garbage_bytes: 4096,
        ..opts()
    };
    let s = open(&b, o).unwrap();
    churn(&s, 20, 40);
    let expected = dump(&s);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut expected = expected;
    while s.compactions() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no background compaction"
        );
        // Each commit re-checks the trigger.
        s.put("t", b"poke", b"").unwrap();
        expected.insert(("t".into(), b"poke".to_vec()), Vec::new());
        std::thread::yield_now();
    }
    assert_eq!(dump(&s), expected);
    drop(s);
    assert_eq!(dump(&open(&b, opts()).unwrap()), expected);
}

#[test]
fn hint_is_used_and_agrees_with_a_full_replay() {
    let b = SimBackend::new();
    let with_hint = LogOptions {
        write_hint_on_close: true,
        ..opts()
    };
    let s = open(&b, with_hint.clone()).unwrap();
    churn(&s, 40, 5);
    s.compact().unwrap();
    churn(&s, 10, 2);
    let expected = dump(&s);
    s.close().unwrap();
    drop(s);
    assert!(b.read(&hint_path()).is_some());
    let s = open(&b, with_hint.clone()).unwrap();
    assert!(s.recovery_report().used_hint);
    assert_eq!(s.recovery_report().batches_replayed, 0);
    assert_eq!(dump(&s), expected);
    // Writes after the hint are replayed from the segment tails.
    s.put("t", b"after-hint", b"1").unwrap();
    s.delete("t", &1u32.to_be_bytes()).unwrap();
    let expected = dump(&s);
    let img = b.crash(); // no clean close: the old hint stays
    let s2 = open(&img, with_hint.clone()).unwrap();
    assert!(s2.recovery_report().used_hint);
    assert_eq!(dump(&s2), expected);
    let s3 = open(
        &copy(&img),
        LogOptions {
            use_hint: false,
            ..opts()
        },
    )
    .unwrap();
    assert_eq!(dump(&s3), expected);
}

#[test]
fn a_bad_hint_is_ignored() {
    let b = SimBackend::new();
    let with_hint = LogOptions {
        write_hint_on_close: true,
        ..opts()
    };
    let s = open(&b, with_hint.clone()).unwrap();
    churn(&s, 30, 4);
    let expected = dump(&s);
    s.close().unwrap();
    drop(s);
    let hint = b.read(&hint_path()).unwrap();
    // Every single-bit flip of the hint: never wrong data.
    for byte in (0..hint.len()).step_by(7) {
        let img = copy(&b);
        let mut h = hint.clone();
        h[byte] ^= 0x04;
        img.write(&hint_path(), &h);
        let s = open(&img, with_hint.clone()).unwrap();
        assert!(!s.recovery_report().used_hint, "flip at {byte}");
        assert_eq!(dump(&s), expected, "flip at {byte}");
    }
    // A hint that names a segment that is gone.
    let img = copy(&b);
    let first = segments(&img).remove(0);
    let bytes = img.read(&first).unwrap();
    img.delete(&first);
    img.write(&Path::new(DIR).join("000000f0.log"), &bytes[..0]);
    let s = open(&img, with_hint.clone());
    if let Ok(s) = s {
        assert!(!s.recovery_report().used_hint);
    }
    // A hint whose segment was cut shorter than it covers.
    let img = copy(&b);
    let last = segments(&img).pop().unwrap();
    let bytes = img.read(&last).unwrap();
    img.write(&last, &bytes[..bytes.len() - 1]);
    let s = open(&img, with_hint).unwrap();
    assert!(!s.recovery_report().used_hint);
}

#[test]
fn checkpoint_while_writing_is_consistent() {
    use ferrojob_store::Durability;
    use std::sync::Arc;
    let b = SimBackend::new();
    let o = LogOptions {
        durability: Durability::Buffered,
        ..opts()
    };
    let s = Arc::new(open(&b, o.clone()).unwrap());
    let writer = {
        let s = s.clone();
        std::thread::spawn(move || {
            for i in 0..400u32 {
                s.put("t", &(i % 97).to_be_bytes(), &i.to_le_bytes())
                    .unwrap();
            }
        })
    };
    let mut images = Vec::new();
    for _ in 0..5 {
        s.checkpoint().unwrap();
        images.push(b.crash());
    }
    writer.join().unwrap();
    s.flush().unwrap();
    let expected = dump(s.as_ref());
    // Power loss right after each checkpoint: the hint is used and matches a full replay.
    for img in images {
        let with = open(&copy(&img), o.clone()).unwrap();
        assert!(with.recovery_report().used_hint);
        let without = open(
            &img,
            LogOptions {
                use_hint: false,
                ..o.clone()
            },
        )
        .unwrap();
        assert_eq!(dump(&with), dump(&without));
    }
    s.checkpoint().unwrap();
    let after = open(&b.crash(), o).unwrap();
    assert!(after.recovery_report().used_hint);
    assert_eq!(dump(&after), expected);
}

#[test]
fn a_failed_compaction_counts_and_the_next_round_succeeds() {
    let b = SimBackend::new();
    let o = LogOptions {
        writer: ferrojob_store::WriterMode::Stepped,
        ..opts()
    };
    let s = open(&b, o).unwrap();
    churn(&s, 200, 3);
    let expected = dump(&s);
    assert!(s.needs_compaction());
    assert!(!s.compaction_failing());
    // Live records sit in sealed segments: the round has output, which cannot be renamed
    // into place.
    b.fail(Fault::Rename, 0);
    assert!(s.compact().is_err());
    assert_eq!((s.compaction_failures(), s.compaction_failing()), (1, true));
    assert_eq!(dump(&s), expected);
    let report = s.compact().unwrap();
    assert!(report.inputs > 0 && report.outputs > 0, "{report:?}");
    assert_eq!(
        (s.compaction_failures(), s.compaction_failing()),
        (1, false)
    );
    assert_eq!(s.compactions(), 1);
    drop(s);
    assert_eq!(dump(&open(&b, opts()).unwrap()), expected);
}

#[test]
fn background_compaction_retries_after_a_failure() {
    let b = SimBackend::new();
    let s = open(&b, opts()).unwrap();
    churn(&s, 200, 3);
    let expected = dump(&s);
    drop(s);
    // Opening wakes the compactor at once; its first round fails, the retry (1 ms later,
    // with no commit to wake it) succeeds.
    b.fail(Fault::Rename, 0);
    let o = LogOptions {
        background_compaction: true,
        compaction_min_garbage_bytes: 4096,
        compaction_retry_min: std::time::Duration::from_millis(1),
        ..opts()
    };
    let s = open(&b, o).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    // The round counts itself before it records its outcome: wait for both.
    while s.compactions() == 0 || s.compaction_failing() {
        assert!(
            std::time::Instant::now() < deadline,
            "no successful retry after the failure (failures: {}, failing: {})",
            s.compaction_failures(),
            s.compaction_failing()
        );
        std::thread::yield_now();
    }
    assert_eq!(s.compaction_failures(), 1);
    assert_eq!(dump(&s), expected);
}

#[test]
fn retry_options_are_validated() {
    let b = SimBackend::new();
    let o = LogOptions {
        compaction_retry_min: std::time::Duration::ZERO,
        ..opts()
    };
    assert!(open(&b, o).is_err());
    let o = LogOptions {
        compaction_retry_min: std::time::Duration::from_secs(10),
        compaction_retry_max: std::time::Duration::from_secs(1),
        ..opts()
    };
    assert!(open(&b, o).is_err());
}

#[test]
fn a_stepped_store_asks_for_a_checkpoint_once_enough_log_is_written() {
    let b = SimBackend::new();
    let o = LogOptions {
        writer: ferrojob_store::WriterMode::Stepped,
        checkpoint_min_bytes: 8192,
        ..opts()
    };
    let s = open(&b, o.clone()).unwrap();
    assert!(!s.needs_checkpoint());
    let mut i = 0u32;
    while !s.needs_checkpoint() {
        s.put("t", &(i % 50).to_be_bytes(), &[7u8; 100]).unwrap();
        s.flush().unwrap();
        i += 1;
        assert!(i < 1000, "no checkpoint asked for after {i} puts");
    }
    // About 8 KiB of batches of ~130 bytes, not fewer.
    assert!(i > 40, "{i}");
    s.checkpoint().unwrap();
    assert_eq!(s.checkpoints(), 1);
    assert!(!s.needs_checkpoint());
    // Power loss: the hint is used, and only the log after it is replayed.
    s.put("t", b"after", b"v").unwrap();
    s.flush().unwrap();
    let expected = dump(&s);
    let after = open(&b.crash(), o.clone()).unwrap();
    assert!(after.recovery_report().used_hint);
    assert_eq!(after.recovery_report().batches_replayed, 1);
    assert_eq!(dump(&after), expected);
    // A reopened store without the hint counts the whole log as unreplayed.
    let without = open(
        &b.crash(),
        LogOptions {
            use_hint: false,
            ..o
        },
    )
    .unwrap();
    assert!(without.needs_checkpoint());
}

#[test]
fn a_reopened_store_counts_the_log_it_replayed_towards_the_next_checkpoint() {
    let b = SimBackend::new();
    let o = LogOptions {
        writer: ferrojob_store::WriterMode::Stepped,
        checkpoint_min_bytes: 8192,
        ..opts()
    };
    let s = open(&b, o.clone()).unwrap();
    s.put("t", b"first", b"v").unwrap();
    s.flush().unwrap();
    s.checkpoint().unwrap();
    // Crashes that each come after half of the minimum: every open replays the log written
    // since the hint, so the counts add up and a checkpoint is asked for at last (counted from
    // zero at each open, a crash loop would never checkpoint and each replay would grow).
    let mut disk = b.crash();
    drop(s);
    for round in 0..4u32 {
        let s = open(&disk, o.clone()).unwrap();
        assert!(s.recovery_report().used_hint);
        if s.needs_checkpoint() {
            assert!(round >= 2, "asked for after {round} rounds");
            assert!(s.recovery_report().replayed_bytes >= 8192);
            return;
        }
        let start = s.disk_bytes();
        let mut i = 0u32;
        while s.disk_bytes() - start < 4096 {
            s.put("t", &i.to_be_bytes(), &[7u8; 100]).unwrap();
            s.flush().unwrap();
            i += 1;
        }
        disk = disk.crash();
    }
    panic!("no checkpoint asked for after four crashes");
}

#[test]
fn a_stepped_store_waits_for_twice_the_last_hint_before_the_next() {
    let b = SimBackend::new();
    let o = LogOptions {
        writer: ferrojob_store::WriterMode::Stepped,
        checkpoint_min_bytes: 4096,
        ..opts()
    };
    let s = open(&b, o).unwrap();
    // Many live keys make a hint larger than the minimum.
    for i in 0..2000u32 {
        s.put("t", &i.to_be_bytes(), b"v").unwrap();
    }
    s.flush().unwrap();
    s.checkpoint().unwrap();
    let hint_len = b.read(&hint_path()).unwrap().len() as u64;
    assert!(hint_len > 4096 * 4, "{hint_len}");
    let start = s.disk_bytes();
    while !s.needs_checkpoint() {
        s.put("t", b"same", &[1u8; 200]).unwrap();
        s.flush().unwrap();
        assert!(
            s.disk_bytes() - start < hint_len * 4,
            "no checkpoint asked for"
        );
    }
    // Segment headers count in the disk's growth, not in the log appended.
    let written = s.disk_bytes() - start;
    assert!(
        (hint_len * 2..hint_len * 2 + hint_len / 4).contains(&written),
        "{written} appended, the hint is {hint_len}"
    );
}

#[test]
fn the_writer_thread_checkpoints_on_its_own_and_a_crash_replays_only_the_tail() {
    let b = SimBackend::new();
    let o = LogOptions {
        writer: ferrojob_store::WriterMode::Thread,
        checkpoint_min_bytes: 8192,
        ..opts()
    };
    let s = open(&b, o.clone()).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut i = 0u32;
    // The hint is written by the compactor thread after the group that crossed the
    // threshold: keep committing until it is there.
    while s.checkpoints() == 0 {
        s.put("t", &(i % 50).to_be_bytes(), &[7u8; 100]).unwrap();
        i += 1;
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint after {i} commits"
        );
    }
    let expected = dump(&s);
    let img = b.crash();
    let with = open(&copy(&img), o.clone()).unwrap();
    assert!(with.recovery_report().used_hint);
    assert!(with.recovery_report().batches_replayed < u64::from(i));
    assert_eq!(dump(&with), expected);
    drop(s);

    // Turned off: no hint but the one written on close.
    let b = SimBackend::new();
    let s = open(
        &b,
        LogOptions {
            checkpoint_min_bytes: 0,
            ..o
        },
    )
    .unwrap();
    for i in 0..500u32 {
        s.put("t", &(i % 50).to_be_bytes(), &[7u8; 100]).unwrap();
    }
    s.close().unwrap();
    assert_eq!(s.checkpoints(), 0);
}
