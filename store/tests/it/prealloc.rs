//! Preallocated segments: commits overwrite zeros in place, the zero room after the last batch
//! is the end of the log (not a torn tail, not corruption), crashes in the middle of a
//! preallocated segment recover a prefix of the commits, and a spare never used holds nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::common::{copy, dump, open, opts, segments, State, DIR};
use ferrojob_store::backend::{Backend, Fault, SimBackend, Tear};
use ferrojob_store::{Batch, LogOptions, LogStore, Store, WriterMode};

/// Stepped (spares are made on the caller's thread: deterministic), 4 KiB segments, so every
/// spare is 4 KiB of zeros.
fn prealloc() -> LogOptions {
    LogOptions {
        preallocate: true,
        writer: WriterMode::Stepped,
        ..opts()
    }
}

fn batch(i: u32) -> Batch {
    Batch::new()
        .put(
            "instances",
            format!("i-{i}").into_bytes(),
            vec![i as u8; 150],
        )
        .delete(
            "instances",
            format!("i-{}", i.saturating_sub(3)).into_bytes(),
        )
}

fn spare_path() -> PathBuf {
    Path::new(DIR).join("segment.spare")
}

fn len(b: &SimBackend, p: &Path) -> usize {
    b.read(p).map_or(0, |f| f.len())
}

/// A preallocated log of `n` batches, closed; returns the backend and the state after each.
fn build(n: u32, o: &LogOptions) -> (SimBackend, Vec<State>) {
    let b = SimBackend::new();
    let s = open(&b, o.clone()).unwrap();
    let mut states = vec![dump(&s)];
    for i in 0..n {
        s.commit(batch(i)).unwrap();
        states.push(dump(&s));
    }
    s.close().unwrap();
    (b, states)
}

#[test]
fn commits_overwrite_zeros_in_place_and_a_reopen_keeps_the_room() {
    for hint in [false, true] {
        let o = LogOptions {
            write_hint_on_close: hint,
            ..prealloc()
        };
        let (b, states) = build(40, &o);
        let segs = segments(&b);
        assert!(segs.len() >= 3, "the log rotated into spares: {segs:?}");
        // The first segment was created at open, before any spare; every later one is a
        // whole spare, its last batch followed by zeros.
        for seg in &segs[1..] {
            assert_eq!(len(&b, seg), 4096, "{}", seg.display());
            assert_eq!(b.read(seg).unwrap().last(), Some(&0));
        }
        let spare = b.read(&spare_path()).unwrap_or_default();
        assert!(spare.iter().all(|b| *b == 0), "a spare holds only zeros");
        let tail = segs.last().unwrap().clone();
        for round in 0..3 {
            let s = open(&b, o.clone()).unwrap();
            assert_eq!(dump(&s), states[40], "hint {hint} round {round}");
            assert!(s.recovery_report().truncated.is_empty());
            assert_eq!(s.recovery_report().used_hint, hint);
            drop(s);
            assert_eq!(len(&b, &tail), 4096, "the room is kept");
        }
        // The reopened writer writes into the room: the file does not grow.
        let s = open(&b, o.clone()).unwrap();
        s.put("after", b"k", b"v").unwrap();
        assert_eq!(segments(&b).last(), Some(&tail));
        assert_eq!(len(&b, &tail), 4096);
        let expected = dump(&s);
        drop(s);
        assert_eq!(dump(&open(&b, o.clone()).unwrap()), expected);
        let check = LogStore::check_with(Arc::new(b.clone()), DIR).unwrap();
        assert!(check.is_intact() && check.torn.is_empty(), "{check:?}");
    }
}

#[test]
fn a_crash_in_the_middle_of_a_preallocated_segment_recovers_a_prefix() {
    let o = prealloc();
    let (b, states) = build(12, &o);
    let n = states.len() - 1;
    let s = open(&b, o.clone()).unwrap();
    let tail = segments(&b).pop().unwrap();
    assert_eq!(len(&b, &tail), 4096);
    // A batch written into the room, never synced, then power loss with every prefix of it
    // reaching the disk (the rest stays zeros).
    let big = Batch::new().put("instances", b"big".to_vec(), vec![0xAB; 600]);
    let mut after = states[n].clone();
    after.insert(("instances".into(), b"big".to_vec()), vec![0xAB; 600]);
    s.submit(big);
    s.write_pending().unwrap();
    let mut unsynced = 0;
    let _ = b.crash_torn(|_, u| {
        unsynced = u;
        Tear::Prefix(0)
    });
    assert!(unsynced > 600, "the write went into the room: {unsynced}");
    let mut outcomes = [0usize; 2];
    for kept in 0..=unsynced {
        for tear in [Tear::Prefix(kept), Tear::ZeroFilled(kept)] {
            let img = b.crash_torn(|_, _| tear);
            assert_eq!(len(&img, &tail), 4096, "the room survives a power loss");
            let r = open(&img, o.clone()).unwrap_or_else(|e| panic!("{tear:?}: {e}"));
            let got = dump(&r);
            let whole = got == after;
            assert!(
                whole || got == states[n],
                "{tear:?}: neither before nor after"
            );
            outcomes[usize::from(whole)] += 1;
            // The store goes on after the crash, and the next open agrees.
            r.put("later", b"k", b"v").unwrap();
            let expected = dump(&r);
            drop(r);
            assert_eq!(dump(&open(&img, o.clone()).unwrap()), expected, "{tear:?}");
        }
    }
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
    s.abandon();
}

#[test]
fn power_loss_keeps_every_acknowledged_commit_with_the_preallocation_thread() {
    let o = LogOptions {
        preallocate: true,
        ..opts()
    };
    assert_eq!(o.writer, WriterMode::Thread);
    let b = SimBackend::new();
    let s = open(&b, o.clone()).unwrap();
    for i in 0..300 {
        s.commit(batch(i)).unwrap();
    }
    let expected = dump(&s);
    let img = b.crash();
    s.abandon();
    assert!(segments(&img).len() > 3);
    let s = open(&img, o.clone()).unwrap();
    assert_eq!(dump(&s), expected);
    for i in 300..400 {
        s.commit(batch(i)).unwrap();
    }
    let expected = dump(&s);
    let img2 = img.crash();
    s.close().unwrap();
    drop(s);
    assert_eq!(dump(&open(&img2, o.clone()).unwrap()), expected);
    assert_eq!(dump(&open(&img, o).unwrap()), expected);
}

#[test]
fn a_leftover_spare_is_never_read_and_is_replaced_on_open() {
    let o = prealloc();
    let (b, states) = build(20, &o);
    // A spare holding a copy of a real segment (as if its zeros never reached the disk and
    // old blocks showed through): opening must not replay it.
    let first = segments(&b).remove(0);
    b.write(&spare_path(), &b.read(&first).unwrap());
    let s = open(&b, o.clone()).unwrap();
    assert_eq!(dump(&s), states[20]);
    let spare = b.read(&spare_path()).unwrap_or_default();
    assert!(spare.iter().all(|b| *b == 0), "the stale spare is gone");
    // The store goes on, rotating into new spares.
    for i in 20..60 {
        s.commit(batch(i)).unwrap();
    }
    let expected = dump(&s);
    drop(s);
    assert_eq!(dump(&open(&b, o.clone()).unwrap()), expected);
    // Without preallocation the leftover is removed and no new one is made.
    let img = copy(&b);
    img.write(&spare_path(), b"junk");
    let s = open(&img, opts()).unwrap();
    assert_eq!(dump(&s), expected);
    assert!(img.read(&spare_path()).is_none());
}

#[test]
fn a_preallocated_log_opens_without_preallocation_and_back() {
    let (b, states) = build(30, &prealloc());
    let tail = segments(&b).pop().unwrap();
    assert_eq!(len(&b, &tail), 4096);
    // Off: the zero room of the newest segment is cut off; sealed segments keep theirs and
    // still replay.
    let s = open(&b, opts()).unwrap();
    assert_eq!(dump(&s), states[30]);
    assert_eq!(s.recovery_report().truncated.len(), 1);
    assert!(len(&b, &tail) < 4096);
    s.put("plain", b"k", b"v").unwrap();
    let expected = dump(&s);
    drop(s);
    let s = open(&b, prealloc()).unwrap();
    assert_eq!(dump(&s), expected);
    s.compact().unwrap();
    assert_eq!(dump(&s), expected);
    drop(s);
    assert_eq!(dump(&open(&b, prealloc()).unwrap()), expected);
}

#[test]
fn zeros_inside_a_batch_of_a_sealed_segment_are_still_corruption() {
    let (b, _) = build(30, &prealloc());
    let segs = segments(&b);
    let sealed = &segs[1];
    let mut bytes = b.read(sealed).unwrap();
    // Zero the middle of the first batch: its checksum fails with data after it.
    bytes[40..60].fill(0);
    b.write(sealed, &bytes);
    assert!(open(&b, prealloc()).is_err());
}

#[test]
fn preallocated_segments_on_the_real_file_system() {
    let dir = tempfile::tempdir().unwrap();
    // Stepped: the spares are made when asked, so where segments end is deterministic.
    let o = LogOptions {
        segment_bytes: 1 << 20,
        durability: ferrojob_store::Durability::Buffered,
        writer: WriterMode::Stepped,
        ..LogOptions::default()
    };
    assert!(o.preallocate);
    let s = LogStore::open(dir.path(), o.clone()).unwrap();
    let value = vec![7u8; 256];
    for i in 0..12000u32 {
        s.put("instances", &i.to_be_bytes(), &value).unwrap();
    }
    s.close().unwrap();
    drop(s);
    let mut logs: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    assert!(logs.len() >= 2, "{logs:?}");
    // A segment made from a spare is as long as the spare (256 KiB, then 1 MiB):
    // zero-filled room after its data.
    let sizes: Vec<u64> = logs
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .collect();
    assert!(sizes[1..].iter().all(|n| n.is_power_of_two()), "{sizes:?}");
    assert_eq!(sizes[1], 256 << 10, "{sizes:?}");
    let s = LogStore::open(dir.path(), o).unwrap();
    assert_eq!(s.count("instances"), 12000);
    assert_eq!(
        s.get("instances", &11999u32.to_be_bytes()).unwrap(),
        Some(value)
    );
}

/// A spare the writer cannot rotate into — its rename fails, or the file is gone — is given
/// up: the writer creates the next segment itself, and no commit fails for it.
#[test]
fn a_spare_that_cannot_be_adopted_is_given_up_and_no_commit_fails() {
    for vanish in [false, true] {
        let o = prealloc();
        let b = SimBackend::new();
        let s = open(&b, o.clone()).unwrap();
        let mut i = 0;
        while b.read(&spare_path()).is_none() {
            s.commit(batch(i)).unwrap();
            i += 1;
            assert!(i < 100, "a spare is made once the segment is half full");
        }
        let segments_before = segments(&b).len();
        if vanish {
            b.remove_file(&spare_path()).unwrap();
        } else {
            b.fail(Fault::Rename, 0);
        }
        for _ in 0..40 {
            s.commit(batch(i)).unwrap();
            i += 1;
        }
        assert!(
            segments(&b).len() > segments_before + 1,
            "the log rotated on (vanish {vanish})"
        );
        let expected = dump(&s);
        drop(s);
        let s = open(&b, o.clone()).unwrap();
        assert_eq!(dump(&s), expected, "vanish {vanish}");
        assert!(s.recovery_report().truncated.is_empty());
    }
}
