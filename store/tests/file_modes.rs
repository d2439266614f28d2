//! The store's files are private to their owner whatever the umask: the directory 0700, every
//! file 0600, and permissive modes left by an earlier version are fixed on open.
//!
//! Its own test binary: the umask is process-wide, so no other test may run beside this one.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use ferrojob_store::{Batch, LogOptions, LogStore, RecoveryMode, Store};

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn assert_private(dir: &Path) {
    assert_eq!(mode(dir), 0o700, "{}", dir.display());
    let mut files = 0;
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
        files += 1;
    }
    assert!(files >= 3, "segment, hint and lock at least");
}

#[test]
fn store_files_are_private_whatever_the_umask() {
    // SAFETY: `umask` only swaps the process's file-creation mask; this binary runs this one
    // test, so no other thread creates files meanwhile.
    let old = unsafe { libc::umask(0) };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data").join("store");
    let options = LogOptions {
        segment_bytes: 4096,
        ..LogOptions::default()
    };
    let s = LogStore::open(&dir, options.clone()).unwrap();
    for i in 0u32..200 {
        s.commit(Batch::new().put("t", i.to_be_bytes().to_vec(), vec![7; 64]))
            .unwrap();
    }
    drop(s);
    assert_eq!(mode(dir.parent().unwrap()), 0o700, "created parents too");
    assert_private(&dir);

    // Loosened by hand (or by an older version): the next open fixes them.
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
    for entry in fs::read_dir(&dir).unwrap() {
        fs::set_permissions(entry.unwrap().path(), fs::Permissions::from_mode(0o666)).unwrap();
    }
    // Damage the first segment so that a salvage writes a tail file too.
    let first = dir.join("00000001.log");
    let mut bytes = fs::read(&first).unwrap();
    for b in bytes.iter_mut().skip(100).take(20) {
        *b ^= 0xFF;
    }
    fs::write(&first, &bytes).unwrap();
    let s = LogStore::open(
        &dir,
        LogOptions {
            recovery: RecoveryMode::Salvage,
            // The hint covers the damage; replay every byte.
            use_hint: false,
            ..options
        },
    )
    .unwrap();
    assert!(!s.recovery_report().moved_aside.is_empty());
    s.commit(Batch::new().put("t", b"after".to_vec(), b"1".to_vec()))
        .unwrap();
    drop(s);
    assert_private(&dir);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
}
