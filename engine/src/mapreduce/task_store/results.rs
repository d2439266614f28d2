//! The final tasks of an instance read back in task-id order, a page at a time, so memory is
//! bounded by the page however many tasks there are.

use std::fmt;
use std::sync::Arc;

use ferrojob_store::{KeyRange, KeyValue, Store};

use super::{TaskResult, TaskState, TaskStore, PAGE, TABLE_TASKS};
use crate::mapreduce::error::TaskStoreError;
use crate::mapreduce::task_codec::{decode_record, instance_prefix};

impl TaskStore {
    /// The instance's final tasks in task-id order, read a page at a time: memory is bounded by
    /// the page (1000 records), however many tasks there are. Non-final tasks are skipped.
    pub fn results(&self, instance: u64) -> TaskResults {
        TaskResults {
            store: self.store.clone(),
            range: Some(KeyRange::prefix(&instance_prefix(instance))),
            page: Vec::new().into_iter(),
        }
    }
}

/// Iterator over an instance's final tasks, from [`TaskStore::results`].
pub struct TaskResults {
    store: Arc<dyn Store>,
    range: Option<KeyRange>,
    page: std::vec::IntoIter<KeyValue>,
}

impl fmt::Debug for TaskResults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskResults")
            .field("buffered", &self.page.len())
            .finish()
    }
}

impl TaskResults {
    /// Records currently buffered (at most one page).
    pub fn buffered(&self) -> usize {
        self.page.len()
    }
}

impl Iterator for TaskResults {
    type Item = Result<TaskResult, TaskStoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((key, value)) = self.page.next() {
                let record = match decode_record(&key, &value) {
                    Ok(r) => r,
                    Err(e) => {
                        self.range = None;
                        self.page = Vec::new().into_iter();
                        return Some(Err(e));
                    }
                };
                let (success, result) = match record.status {
                    TaskState::Succeeded { result } => (true, result),
                    TaskState::Failed { reason, .. } => (false, reason),
                    _ => continue,
                };
                return Some(Ok(TaskResult {
                    task_id: record.task_id,
                    parent: record.parent,
                    name: record.name,
                    success,
                    result,
                }));
            }
            let range = self.range.take()?;
            match self.store.range(TABLE_TASKS, &range, PAGE) {
                Err(e) => return Some(Err(e.into())),
                Ok(page) => {
                    if page.len() == PAGE {
                        if let Some((last, _)) = page.last() {
                            self.range = Some(range.after(last));
                        }
                    }
                    self.page = page.into_iter();
                }
            }
        }
    }
}
