//! Crash and corruption tests of the log store, on the simulated file system: torn tails at
//! every byte, bit flips in every byte, power loss after acknowledged commits, injected I/O
//! failures, idempotent recovery.

use std::sync::Arc;

use crate::common::{copy, dump, open, opts, segments, State, DIR};
use ferrojob_store::backend::{Fault, SimBackend};
use ferrojob_store::{
    Batch, CorruptionKind, Durability, LogOptions, LogStore, RecoveryMode, Store, StoreError,
};

fn batch(i: u32) -> Batch {
    Batch::new()
        .put(
            "instances",
            format!("i-{i}").into_bytes(),
            vec![i as u8; 10 + i as usize],
        )
        .put(
            "triggers",
            format!("j-{}", i % 3).into_bytes(),
            i.to_le_bytes().to_vec(),
        )
        .delete(
            "instances",
            format!("i-{}", i.saturating_sub(2)).into_bytes(),
        )
}

/// A log of `n` batches; returns the backend and the state after each batch (index 0: empty).
fn build(n: u32) -> (SimBackend, Vec<State>) {
    let b = SimBackend::new();
    let s = open(&b, opts()).unwrap();
    let mut states = vec![dump(&s)];
    for i in 0..n {
        s.commit(batch(i)).unwrap();
        states.push(dump(&s));
    }
    s.close().unwrap();
    (b, states)
}

#[test]
fn cut_at_every_offset_of_the_last_batch_is_before_or_after() {
    let (b, states) = build(6);
    let seg = segments(&b).pop().unwrap();
    let full = b.read(&seg).unwrap();
    // Length before the last batch: rebuild with one batch fewer.
    let (b5, _) = build(5);
    let before_len = b5.read(&segments(&b5).pop().unwrap()).unwrap().len();
    let (before, after) = (&states[5], &states[6]);
    assert_ne!(before, after);
    for cut in before_len..=full.len() {
        let img = copy(&b);
        img.write(&seg, &full[..cut]);
        let s = open(&img, opts()).unwrap();
        let got = dump(&s);
        if cut == full.len() {
            assert_eq!(&got, after, "cut {cut}");
        } else {
            assert_eq!(&got, before, "cut {cut}");
            assert_eq!(
                s.recovery_report().truncated.len(),
                usize::from(cut > before_len)
            );
        }
        // The store goes on working after a truncated tail, and the next open agrees.
        s.commit(Batch::new().put("after", b"k".to_vec(), b"v".to_vec()))
            .unwrap();
        let expected = dump(&s);
        drop(s);
        let s = open(&img, opts()).unwrap();
        assert_eq!(dump(&s), expected, "cut {cut} after reopen");
    }
}

#[test]
fn a_last_batch_cut_anywhere_and_zero_filled_is_torn() {
    let (b, states) = build(6);
    let seg = segments(&b).pop().unwrap();
    let full = b.read(&seg).unwrap();
    let (b5, _) = build(5);
    let before_len = b5.read(&segments(&b5).pop().unwrap()).unwrap().len();
    // The file kept its length; only the first `cut` bytes of the last batch reached the disk.
    for cut in before_len..full.len() {
        let img = copy(&b);
        let mut bytes = full.clone();
        bytes[cut..].fill(0);
        img.write(&seg, &bytes);
        let s = open(&img, opts()).unwrap();
        assert_eq!(dump(&s), states[5], "cut {cut}");
        assert_eq!(
            s.recovery_report().truncated,
            [(seg.clone(), before_len as u64)]
        );
    }
}

#[test]
fn zero_filled_tail_counts_as_torn() {
    let (b, states) = build(4);
    let seg = segments(&b).pop().unwrap();
    let mut bytes = b.read(&seg).unwrap();
    bytes.extend_from_slice(&[0u8; 100]);
    b.write(&seg, &bytes);
    let s = open(&b, opts()).unwrap();
    assert_eq!(dump(&s), states[4]);
}

#[test]
fn every_bit_flip_is_reported_never_wrong_data() {
    let (b, states) = build(4);
    let segs = segments(&b);
    assert_eq!(segs.len(), 1, "small log fits one segment");
    let seg = &segs[0];
    let full = b.read(seg).unwrap();
    for byte in 0..full.len() {
        for bit in 0..8 {
            let img = copy(&b);
            let mut bytes = full.clone();
            bytes[byte] ^= 1 << bit;
            img.write(seg, &bytes);
            match open(&img, opts()) {
                Err(StoreError::Corrupt { path, offset, .. }) => {
                    assert_eq!(&path, seg);
                    assert!(
                        offset <= byte as u64,
                        "flip {byte}.{bit} reported at {offset}"
                    );
                }
                Err(e) => panic!("flip {byte}.{bit}: unexpected error {e}"),
                Ok(s) => panic!("flip {byte}.{bit}: opened with {:?}", dump(&s)),
            }
            // Salvage opens to the state after some prefix of the batches, never anything else.
            let s = open(
                &img,
                LogOptions {
                    recovery: RecoveryMode::Salvage,
                    ..opts()
                },
            )
            .unwrap();
            let got = dump(&s);
            assert!(
                states.contains(&got),
                "flip {byte}.{bit}: salvage state {got:?}"
            );
            assert!(!s.recovery_report().moved_aside.is_empty());
        }
    }
}

#[test]
fn corruption_after_open_is_caught_on_read() {
    let b = SimBackend::new();
    let s = open(&b, opts()).unwrap();
    s.put("jobs", b"job-1", b"the value").unwrap();
    let seg = segments(&b).pop().unwrap();
    let mut bytes = b.read(&seg).unwrap();
    let at = bytes.len() - 8 - 3; // inside the value
    bytes[at] ^= 0x10;
    b.write(&seg, &bytes);
    let err = s.get("jobs", b"job-1").unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Corrupt {
                kind: CorruptionKind::BadReadBack,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn salvage_moves_later_segments_aside_and_keeps_a_prefix() {
    let b = SimBackend::new();
    let s = open(&b, opts()).unwrap();
    let mut states = vec![dump(&s)];
    for i in 0..60 {
        s.commit(batch(i)).unwrap();
        states.push(dump(&s));
    }
    drop(s);
    let segs = segments(&b);
    assert!(segs.len() >= 3, "{segs:?}");
    // Corrupt the middle of the first segment.
    let mut bytes = b.read(&segs[0]).unwrap();
    bytes[200] ^= 1;
    b.write(&segs[0], &bytes);
    let err = open(&b, opts()).unwrap_err();
    assert!(err.is_corruption(), "{err}");
    assert!(err.to_string().contains("00000001.log"), "{err}");
    let s = open(
        &b,
        LogOptions {
            recovery: RecoveryMode::Salvage,
            ..opts()
        },
    )
    .unwrap();
    let got = dump(&s);
    assert!(states.contains(&got));
    assert!(s.recovery_report().moved_aside.len() >= segs.len());
    drop(s);
    // Nothing was deleted: moved-aside files are still there, and strict opens work now.
    assert!(b
        .paths()
        .iter()
        .any(|p| p.to_string_lossy().contains(".corrupt")));
    let s = open(&b, opts()).unwrap();
    assert_eq!(dump(&s), got);
}

/// Found by property testing (the stepped model, zero-filled torn tails): a salvage cuts the
/// newest segment, the store appends to it again, and a second salvage at the same offset
/// found its moved-aside name taken and refused to open.
#[test]
fn salvaging_the_same_offset_twice_keeps_both_tails() {
    let salvage = LogOptions {
        recovery: RecoveryMode::Salvage,
        ..opts()
    };
    let b = SimBackend::new();
    let mut moved = Vec::new();
    for round in 0..3u8 {
        let s = open(&b, salvage.clone()).unwrap();
        assert_eq!(
            s.tables().len(),
            0,
            "round {round}: every batch was salvaged away"
        );
        s.put("t", b"k", &[round; 40]).unwrap();
        drop(s);
        // Garbage in the batch just written, the only one in the segment.
        let seg = segments(&b).pop().unwrap();
        let mut bytes = b.read(&seg).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        b.write(&seg, &bytes);
        let s = open(&b, salvage.clone()).unwrap();
        let aside = s.recovery_report().moved_aside.clone();
        assert_eq!(aside.len(), 1, "round {round}");
        assert!(
            !moved.contains(&aside[0]),
            "round {round}: {aside:?} reused"
        );
        // What was moved aside is the corrupt batch, whole.
        assert_eq!(b.read(&aside[0]).unwrap().len(), bytes.len() - 24);
        moved.extend(aside);
        s.close().unwrap();
        drop(s);
        b.delete(&crate::common::hint_path());
    }
    let names: Vec<String> = moved
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "00000001.log.corrupt-18",
            "00000001.log.corrupt-18.1",
            "00000001.log.corrupt-18.2"
        ]
    );
}

#[test]
fn reopen_ten_times_same_state_same_bytes() {
    let (b, states) = build(8);
    let seg = segments(&b).pop().unwrap();
    let mut bytes = b.read(&seg).unwrap();
    bytes.truncate(bytes.len() - 5); // a torn tail to start with
    b.write(&seg, &bytes);
    let mut files = None;
    for round in 0..10 {
        let s = open(&b, opts()).unwrap();
        assert_eq!(dump(&s), states[7], "round {round}");
        drop(s);
        let now: Vec<_> = b.paths().iter().map(|p| (p.clone(), b.read(p))).collect();
        if let Some(prev) = &files {
            assert_eq!(prev, &now, "round {round} changed the files");
        }
        files = Some(now);
    }
}

#[test]
fn sync_commits_survive_power_loss() {
    let b = SimBackend::new();
    let s = Arc::new(open(&b, opts()).unwrap());
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..40u8 {
                    s.commit(Batch::new().put("t", vec![t, i], vec![i; 50]))
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let expected = dump(s.as_ref());
    // Power loss while the store is still open: only synced bytes and directory entries.
    let img = b.crash();
    let s2 = open(&img, opts()).unwrap();
    assert_eq!(dump(&s2), expected);
    assert_eq!(s2.count("t"), 160);
}

#[test]
fn buffered_commits_survive_a_process_crash_and_flush_makes_them_durable() {
    let b = SimBackend::new();
    let o = LogOptions {
        durability: Durability::Buffered,
        ..opts()
    };
    let s = open(&b, o.clone()).unwrap();
    s.put("t", b"a", b"1").unwrap();
    // Process crash: the kernel still has the pages.
    assert_eq!(
        open(&b.process_crash(), o.clone())
            .unwrap()
            .get("t", b"a")
            .unwrap(),
        Some(b"1".to_vec())
    );
    // Power loss before a flush loses the unsynced commit, atomically.
    assert_eq!(
        open(&b.crash(), o.clone()).unwrap().get("t", b"a").unwrap(),
        None
    );
    s.flush().unwrap();
    assert_eq!(
        open(&b.crash(), o).unwrap().get("t", b"a").unwrap(),
        Some(b"1".to_vec())
    );
}

#[test]
fn interval_durability_syncs_on_flush_and_close() {
    let b = SimBackend::new();
    let o = LogOptions {
        durability: Durability::Interval(60_000),
        ..opts()
    };
    let s = open(&b, o.clone()).unwrap();
    s.put("t", b"a", b"1").unwrap();
    s.close().unwrap();
    assert_eq!(
        open(&b.crash(), o).unwrap().get("t", b"a").unwrap(),
        Some(b"1".to_vec())
    );
}

#[test]
fn fsync_failure_poisons_the_store() {
    let b = SimBackend::new();
    let s = open(&b, opts()).unwrap();
    s.put("t", b"ok", b"1").unwrap();
    b.fail(Fault::SyncData, 0);
    let err = s.put("t", b"lost", b"2").unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Io {
                op: "fdatasync",
                ..
            }
        ),
        "{err}"
    );
    let err = s.put("t", b"later", b"3").unwrap_err();
    assert!(matches!(err, StoreError::Poisoned { .. }), "{err}");
    assert!(err.to_string().contains("fdatasync"), "{err}");
    assert!(s.flush().is_err());
    // Reads still work and never show the failed commit.
    assert_eq!(s.get("t", b"ok").unwrap(), Some(b"1".to_vec()));
    assert_eq!(s.get("t", b"lost").unwrap(), None);
    // Reopening recovers from the log; the unacknowledged commit may or may not be there.
    drop(s);
    let s = open(&b.crash(), opts()).unwrap();
    assert_eq!(s.get("t", b"ok").unwrap(), Some(b"1".to_vec()));
    s.put("t", b"later", b"3").unwrap();
}

#[test]
fn write_failure_poisons_the_store() {
    let b = SimBackend::new();
    let s = open(&b, opts()).unwrap();
    b.fail(Fault::Write, 0);
    let err = s.put("t", b"k", b"v").unwrap_err();
    assert!(matches!(err, StoreError::Io { op: "write", .. }), "{err}");
    assert!(matches!(
        s.put("t", b"k", b"v"),
        Err(StoreError::Poisoned { .. })
    ));
}

#[test]
fn directory_fsync_failure_on_rotation_poisons_the_store() {
    let b = SimBackend::new();
    let s = open(&b, opts()).unwrap();
    b.fail(Fault::SyncDir, 0);
    let mut failed = None;
    for i in 0..100u32 {
        if let Err(e) = s.put("t", &i.to_be_bytes(), &[0; 100]) {
            failed = Some((i, e));
            break;
        }
    }
    let (i, err) = failed.expect("a rotation happened");
    assert!(
        matches!(
            err,
            StoreError::Io {
                op: "fsync directory",
                ..
            }
        ),
        "{err}"
    );
    assert!(matches!(
        s.put("t", b"x", b"y"),
        Err(StoreError::Poisoned { .. })
    ));
    drop(s);
    // Everything acknowledged before the failure survives a power loss.
    let s = open(&b.crash(), opts()).unwrap();
    assert_eq!(s.count("t"), i as usize);
}

#[test]
fn rotation_keeps_every_commit_across_power_loss() {
    let b = SimBackend::new();
    let s = open(&b, opts()).unwrap();
    for i in 0..300u32 {
        s.put("t", &i.to_be_bytes(), &[i as u8; 64]).unwrap();
    }
    assert!(s.segment_count() > 5);
    let img = b.crash();
    let s2 = open(&img, opts()).unwrap();
    assert_eq!(s2.count("t"), 300);
    assert_eq!(dump(&s2), dump(&s));
}

#[test]
fn torn_segment_creation_is_dropped_but_a_torn_sealed_segment_is_corruption() {
    let (b, states) = build(3);
    let seg = segments(&b).pop().unwrap();
    // A new segment whose header never became durable.
    let next = std::path::Path::new(DIR).join("000000ff.log");
    b.write(&next, &[0x46, 0x4a, 0x53]);
    let s = open(&b, opts()).unwrap();
    assert_eq!(dump(&s), states[3]);
    drop(s);
    assert!(b.read(&next).is_none());
    // A sealed segment (not the newest) that ends mid-batch is corruption.
    let mut bytes = b.read(&seg).unwrap();
    bytes.truncate(bytes.len() - 3);
    b.write(&seg, &bytes);
    let s = open(&b, opts()).unwrap();
    s.close().unwrap();
    drop(s);
    // The newest segment is now another file only if the store rotated; force one.
    let o = LogOptions {
        segment_bytes: 4096,
        ..opts()
    };
    let s = open(&b, o.clone()).unwrap();
    for i in 0..60u32 {
        s.put("fill", &i.to_be_bytes(), &[0; 100]).unwrap();
    }
    drop(s);
    let first = segments(&b).remove(0);
    let mut bytes = b.read(&first).unwrap();
    bytes.truncate(bytes.len() - 3);
    b.write(&first, &bytes);
    let err = open(&b, o).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Corrupt {
                kind: CorruptionKind::TornSealedSegment,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn arbitrary_files_in_the_directory_are_typed_errors_or_ignored() {
    let b = SimBackend::new();
    b.write(
        &std::path::Path::new(DIR).join("00000001.log"),
        b"not a segment at all, really not",
    );
    b.write(&std::path::Path::new(DIR).join("00000002.log"), b"");
    let err = open(&b, opts()).unwrap_err();
    assert!(
        matches!(err, StoreError::Corrupt { offset: 0, .. }),
        "{err}"
    );
    // Unrelated names are ignored.
    let b = SimBackend::new();
    b.write(&std::path::Path::new(DIR).join("README"), b"hello");
    let s = open(&b, opts()).unwrap();
    assert!(s.tables().is_empty());
}

#[test]
fn invalid_options_are_refused() {
    let b = SimBackend::new();
    for o in [
        LogOptions {
            segment_bytes: 10,
            ..opts()
        },
        LogOptions {
            max_group_bytes: 1 << 40,
            ..opts()
        },
        LogOptions {
            durability: Durability::Interval(0),
            ..opts()
        },
        LogOptions {
            compaction_min_garbage_ratio: 1.5,
            ..opts()
        },
    ] {
        assert!(matches!(
            open(&b, o),
            Err(StoreError::InvalidOptions { .. })
        ));
    }
}

#[test]
fn closed_store_refuses_commits_but_reads() {
    let b = SimBackend::new();
    let s = open(&b, opts()).unwrap();
    s.put("t", b"k", b"v").unwrap();
    s.close().unwrap();
    s.close().unwrap();
    assert!(matches!(
        s.put("t", b"k2", b"v"),
        Err(StoreError::Closed { .. })
    ));
    assert!(matches!(
        s.commit(Batch::new()),
        Err(StoreError::Closed { .. })
    ));
    assert_eq!(s.get("t", b"k").unwrap(), Some(b"v".to_vec()));
}

#[test]
fn real_directory_is_locked_while_open() {
    let dir = tempfile::tempdir().unwrap();
    let s = ferrojob_store::LogStore::open(dir.path(), LogOptions::default()).unwrap();
    s.put("t", b"k", b"v").unwrap();
    let err = ferrojob_store::LogStore::open(dir.path(), LogOptions::default()).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    drop(s);
    let s = ferrojob_store::LogStore::open(dir.path(), LogOptions::default()).unwrap();
    assert!(s.recovery_report().used_hint);
    assert_eq!(s.get("t", b"k").unwrap(), Some(b"v".to_vec()));
}

/// A power-loss image with garbage before valid data: `check` reports the damaged range and
/// changes nothing; strict refuses; salvage keeps every batch before the hole.
#[test]
fn check_reports_a_hole_before_valid_data_without_changing_anything() {
    let (b, states) = build(60);
    let intact = LogStore::check_with(Arc::new(b.clone()), DIR).unwrap();
    assert!(intact.is_intact() && intact.torn.is_empty(), "{intact:?}");
    assert_eq!(intact.batches, 60);
    let final_state = states.last().unwrap();
    assert_eq!(intact.keys, final_state.len());
    assert_eq!(
        intact
            .tables
            .iter()
            .map(|(t, _)| t.as_str())
            .collect::<Vec<_>>(),
        ["instances", "triggers"]
    );

    let segs = segments(&b);
    assert!(segs.len() >= 3, "{segs:?}");
    let mut bytes = b.read(&segs[1]).unwrap();
    let len = bytes.len() as u64;
    for x in &mut bytes[300..340] {
        *x = 0xAA;
    }
    b.write(&segs[1], &bytes);
    let before: Vec<_> = b.paths().into_iter().map(|p| (b.read(&p), p)).collect();

    let report = LogStore::check_with(Arc::new(b.clone()), DIR).unwrap();
    assert!(!report.is_intact());
    let (path, range) = &report.damaged[0];
    assert_eq!(path, &segs[1]);
    assert!(range.start <= 300 && range.end == len, "{range:?}");
    // Every later segment is damaged too: it comes after the hole.
    assert_eq!(report.damaged.len(), segs.len() - 1, "{report:?}");
    assert!(report.batches < 60);
    let after: Vec<_> = b.paths().into_iter().map(|p| (b.read(&p), p)).collect();
    assert_eq!(before, after, "check changed the directory");

    let err = open(&b, opts()).unwrap_err();
    assert!(err.is_corruption(), "{err}");
    let s = open(
        &b,
        LogOptions {
            recovery: RecoveryMode::Salvage,
            ..opts()
        },
    )
    .unwrap();
    let kept = dump(&s);
    assert_eq!(
        &kept, &states[report.batches as usize],
        "salvage keeps every intact batch"
    );
    assert_eq!(s.recovery_report().moved_aside.len(), report.damaged.len());
    drop(s);
    assert!(LogStore::check_with(Arc::new(b.clone()), DIR)
        .unwrap()
        .is_intact());
}
