//! The task store's encodings: the per-instance counters (`mr.meta`), the key layout and the
//! versioned task record (see [`task_store`](super::task_store) for the table).

use rkyv::rancor;
use rkyv::util::AlignedVec;

use super::error::TaskStoreError;
use super::task_store::{
    TaskCounts, TaskRecord, META_LEN, META_VERSION, RECORD_VERSION, TABLE_META, TABLE_TASKS,
};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Meta {
    pub(super) next_task_id: u64,
    pub(super) next_pending_seq: u64,
    pub(super) counts: TaskCounts,
}

impl Meta {
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(META_LEN);
        out.push(META_VERSION);
        for v in [
            self.next_task_id,
            self.next_pending_seq,
            self.counts.total,
            self.counts.pending,
            self.counts.running,
            self.counts.succeeded,
            self.counts.failed,
        ] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out
    }

    pub(super) fn decode(key: &[u8], bytes: &[u8]) -> Result<Meta, TaskStoreError> {
        if bytes.len() != META_LEN {
            return Err(TaskStoreError::corrupt(
                TABLE_META,
                key,
                format!("{} bytes, expected {META_LEN}", bytes.len()),
            ));
        }
        let Some((&version, rest)) = bytes.split_first() else {
            return Err(TaskStoreError::corrupt(TABLE_META, key, "empty value"));
        };
        if version != META_VERSION {
            return Err(TaskStoreError::corrupt(
                TABLE_META,
                key,
                format!("unknown version {version}"),
            ));
        }
        let mut v = [0u64; 7];
        for (slot, chunk) in v.iter_mut().zip(rest.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            *slot = u64::from_be_bytes(b);
        }
        let [next_task_id, next_pending_seq, total, pending, running, succeeded, failed] = v;
        let counts = TaskCounts {
            total,
            pending,
            running,
            succeeded,
            failed,
        };
        let sum = pending
            .checked_add(running)
            .and_then(|s| s.checked_add(succeeded))
            .and_then(|s| s.checked_add(failed));
        if sum != Some(total) || total > next_task_id {
            return Err(TaskStoreError::corrupt(
                TABLE_META,
                key,
                "counters do not add up",
            ));
        }
        Ok(Meta {
            next_task_id,
            next_pending_seq,
            counts,
        })
    }
}

pub(super) fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    let slice = bytes.get(at..at.checked_add(8)?)?;
    let mut b = [0u8; 8];
    b.copy_from_slice(slice);
    Some(u64::from_be_bytes(b))
}

pub(super) fn instance_prefix(instance: u64) -> [u8; 8] {
    instance.to_be_bytes()
}

pub(super) fn task_key(instance: u64, task: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(16);
    k.extend_from_slice(&instance.to_be_bytes());
    k.extend_from_slice(&task.to_be_bytes());
    k
}

pub(super) fn worker_prefix(instance: u64, worker: &str) -> Result<Vec<u8>, TaskStoreError> {
    let len =
        u16::try_from(worker.len()).map_err(|_| TaskStoreError::WorkerTooLong(worker.len()))?;
    let mut k = Vec::with_capacity(8 + 2 + worker.len() + 8);
    k.extend_from_slice(&instance.to_be_bytes());
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(worker.as_bytes());
    Ok(k)
}

pub(super) fn worker_key(
    instance: u64,
    worker: &str,
    task: u64,
) -> Result<Vec<u8>, TaskStoreError> {
    let mut k = worker_prefix(instance, worker)?;
    k.extend_from_slice(&task.to_be_bytes());
    Ok(k)
}

/// `s` cut to at most `max` bytes on a character boundary.
pub(super) fn cap(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while end > 0 && !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

pub(super) fn encode_record(record: &TaskRecord) -> Result<Vec<u8>, TaskStoreError> {
    let archive = rkyv::to_bytes::<rancor::Error>(record).map_err(|e| {
        TaskStoreError::corrupt(
            TABLE_TASKS,
            &task_key(record.instance_id, record.task_id),
            format!("cannot archive: {e}"),
        )
    })?;
    let mut out = Vec::with_capacity(archive.len() + 1);
    out.push(RECORD_VERSION);
    out.extend_from_slice(&archive);
    Ok(out)
}

/// Decodes a stored task record, validating the archive and that it belongs under `key`.
pub(crate) fn decode_record(key: &[u8], bytes: &[u8]) -> Result<TaskRecord, TaskStoreError> {
    let Some((&version, archive)) = bytes.split_first() else {
        return Err(TaskStoreError::corrupt(TABLE_TASKS, key, "empty value"));
    };
    if version != RECORD_VERSION {
        return Err(TaskStoreError::corrupt(
            TABLE_TASKS,
            key,
            format!("unknown record version {version} (this build reads {RECORD_VERSION})"),
        ));
    }
    let mut aligned = AlignedVec::<16>::with_capacity(archive.len());
    aligned.extend_from_slice(archive);
    let record = rkyv::from_bytes::<TaskRecord, rancor::Error>(&aligned).map_err(|e| {
        TaskStoreError::corrupt(TABLE_TASKS, key, format!("archive fails validation: {e}"))
    })?;
    if task_key(record.instance_id, record.task_id) != key {
        return Err(TaskStoreError::corrupt(
            TABLE_TASKS,
            key,
            "record ids do not match its key",
        ));
    }
    Ok(record)
}

pub(super) fn sub(a: u64, b: u64, instance: u64) -> Result<u64, TaskStoreError> {
    a.checked_sub(b).ok_or(TaskStoreError::Counters(instance))
}

pub(super) fn add(a: u64, b: u64, instance: u64) -> Result<u64, TaskStoreError> {
    a.checked_add(b).ok_or(TaskStoreError::Counters(instance))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_cuts_on_a_char_boundary() {
        let s = "é".repeat(10);
        assert_eq!(cap(s, 5), "éé");
    }

    #[test]
    fn meta_roundtrips_and_rejects_garbage() {
        let m = Meta {
            next_task_id: 9,
            next_pending_seq: 12,
            counts: TaskCounts {
                total: 9,
                pending: 2,
                running: 3,
                succeeded: 3,
                failed: 1,
            },
        };
        assert_eq!(Meta::decode(b"k", &m.encode()).unwrap(), m);
        assert!(Meta::decode(b"k", &[]).is_err());
        let mut bad = m.encode();
        bad[1 + 8 * 3] ^= 1;
        assert!(Meta::decode(b"k", &bad).is_err());
    }
}
