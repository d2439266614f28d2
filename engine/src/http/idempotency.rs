//! `Idempotency-Key` on the routes that create something (create or run a job or a workflow):
//! the first successful answer to a key on a path is kept for [`KEEP_MS`] and given again to
//! every later request with the same key on the same path, so a client that retries after a
//! lost answer gets the first run, never a second one. A request that arrives while the first
//! is still being answered waits for it; when the first fails (any error answer, or its client
//! went away), the key is free again and the next request is answered afresh.
//!
//! The table lives in the server's memory: at most [`MAX_KEYS`] keys (the oldest answer is
//! forgotten first) and it does not survive a restart. A key is 1 to [`MAX_KEY_LEN`] visible
//! ASCII characters; the path (which names the app, and the job or workflow) is part of its
//! scope, the request body is not.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::{HashMap, VecDeque};
use std::future::Future;

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use tokio::sync::watch;

use super::failure::Failure;
use super::handlers::Answer;
use crate::api::{ApiError, ErrorCode};

/// The request header.
pub(crate) const HEADER: &str = "idempotency-key";

/// Longest key, in bytes.
pub(crate) const MAX_KEY_LEN: usize = 255;

/// Most keys remembered at once.
pub(crate) const MAX_KEYS: usize = 10_000;

/// How long an answer is given again, ms (24 h).
pub(crate) const KEEP_MS: i64 = 24 * 3600 * 1000;

/// Largest answer body kept, in bytes (the answers are small `{"id"}` objects).
const MAX_ANSWER_LEN: usize = 64 << 10;

/// A key on a path.
type Scope = (String, String);

/// A kept answer.
#[derive(Debug, Clone)]
struct Stored {
    status: StatusCode,
    body: Bytes,
}

impl Stored {
    fn response(&self) -> Response {
        let mut r = (self.status, self.body.clone()).into_response();
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        r
    }
}

#[derive(Debug)]
enum Slot {
    /// Being answered: later requests wait for the value.
    Pending(watch::Receiver<Option<Stored>>),
    /// Answered at `at` (clock ms).
    Done { stored: Stored, at: i64 },
}

/// The table of keys (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Idempotency {
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    slots: HashMap<Scope, Slot>,
    /// Answered keys, oldest first, with their answer time (an entry whose slot was answered
    /// again later, or removed, is skipped when popped).
    answered: VecDeque<(Scope, i64)>,
}

impl Table {
    /// Forgets answers older than [`KEEP_MS`], and the oldest ones while the table is full.
    fn trim(&mut self, now_ms: i64) {
        while let Some((scope, at)) = self.answered.front() {
            let expired = at.saturating_add(KEEP_MS) <= now_ms;
            if !expired && self.slots.len() < MAX_KEYS {
                break;
            }
            let (scope, at) = (scope.clone(), *at);
            self.answered.pop_front();
            if matches!(self.slots.get(&scope), Some(Slot::Done { at: a, .. }) if *a == at) {
                self.slots.remove(&scope);
            }
        }
    }
}

/// The key of `req` and its path, if it has one; a malformed key is a 400.
pub(crate) fn scope(req: &Request) -> Result<Option<(String, String)>, Failure> {
    let Some(v) = req.headers().get(HEADER) else {
        return Ok(None);
    };
    let key = v
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= MAX_KEY_LEN)
        .filter(|k| k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            Failure::invalid(format!(
                "Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters"
            ))
        })?;
    Ok(Some((req.uri().path().to_owned(), key.to_owned())))
}

/// Removes a pending slot whose request did not finish (its future was dropped).
struct PendingGuard<'a> {
    table: &'a Idempotency,
    scope: Option<Scope>,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        if let Some(scope) = self.scope.take() {
            let mut t = self.table.table.lock();
            if matches!(t.slots.get(&scope), Some(Slot::Pending(_))) {
                t.slots.remove(&scope);
            }
        }
    }
}

impl Idempotency {
    /// Answers a request with `scope` (from [`scope`]) at clock `now_ms`: the kept answer, or
    /// the one `f` gives (kept when it is a success).
    pub(crate) async fn answer<F, Fut>(&self, scope: Option<Scope>, now_ms: i64, f: F) -> Answer
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Answer>,
    {
        let Some(scope) = scope else {
            return f().await;
        };
        let tx = loop {
            let mut waiting = {
                let mut t = self.table.lock();
                t.trim(now_ms);
                match t.slots.get(&scope) {
                    Some(Slot::Done { stored, .. }) => return Ok(stored.response()),
                    Some(Slot::Pending(rx)) => rx.clone(),
                    None => {
                        if t.slots.len() >= MAX_KEYS {
                            return Err(ApiError::new(
                                ErrorCode::Unavailable,
                                "too many requests with an Idempotency-Key in flight; try again",
                            )
                            .into());
                        }
                        let (tx, rx) = watch::channel(None);
                        t.slots.insert(scope.clone(), Slot::Pending(rx));
                        break tx;
                    }
                }
            };
            // The first request is being answered: wait for it. A closed channel means it
            // failed: look again (the key is free, or another request took it).
            let first = match waiting.wait_for(Option::is_some).await {
                Ok(v) => v.clone(),
                Err(_) => None,
            };
            if let Some(stored) = first {
                return Ok(stored.response());
            }
        };
        let mut guard = PendingGuard {
            table: self,
            scope: Some(scope.clone()),
        };
        let answer = f().await;
        let response = match answer {
            Ok(r) if r.status().is_success() => r,
            other => return other,
        };
        let status = response.status();
        let body = match axum::body::to_bytes(response.into_body(), MAX_ANSWER_LEN).await {
            Ok(b) => b,
            Err(e) => {
                return Err(ApiError::new(
                    ErrorCode::Internal,
                    format!("the answer could not be kept: {e}"),
                )
                .into())
            }
        };
        let stored = Stored { status, body };
        {
            let mut t = self.table.lock();
            t.slots.insert(
                scope.clone(),
                Slot::Done {
                    stored: stored.clone(),
                    at: now_ms,
                },
            );
            t.answered.push_back((scope, now_ms));
        }
        guard.scope = None;
        let _ = tx.send(Some(stored.clone()));
        Ok(stored.response())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use super::*;

    fn scope(key: &str) -> Option<Scope> {
        Some(("/v1/apps/a/jobs/1/run".into(), key.into()))
    }

    async fn body(r: Answer) -> String {
        let r = r.unwrap();
        String::from_utf8(
            axum::body::to_bytes(r.into_body(), 1 << 20)
                .await
                .unwrap()
                .to_vec(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_key_gets_its_first_answer_again_until_it_expires() {
        let t = Idempotency::default();
        let n = AtomicU32::new(0);
        let run = || async {
            let i = n.fetch_add(1, Ordering::SeqCst);
            Ok(axum::Json(i).into_response())
        };
        assert_eq!(body(t.answer(scope("k"), 0, run).await).await, "0");
        assert_eq!(body(t.answer(scope("k"), 1_000, run).await).await, "0");
        assert_eq!(body(t.answer(scope("other"), 1_000, run).await).await, "1");
        assert_eq!(body(t.answer(None, 1_000, run).await).await, "2");
        assert_eq!(
            body(t.answer(scope("k"), KEEP_MS - 1, run).await).await,
            "0"
        );
        assert_eq!(body(t.answer(scope("k"), KEEP_MS, run).await).await, "3");
    }

    #[tokio::test]
    async fn a_failed_answer_is_not_kept() {
        let t = Idempotency::default();
        let fail = || async { Err(ApiError::new(ErrorCode::Unavailable, "down").into()) };
        assert!(t.answer(scope("k"), 0, fail).await.is_err());
        let ok = || async { Ok(axum::Json(7).into_response()) };
        assert_eq!(body(t.answer(scope("k"), 0, ok).await).await, "7");
        assert!(t.table.lock().slots.len() == 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_with_one_key_get_one_answer() {
        let t = Arc::new(Idempotency::default());
        let n = Arc::new(AtomicU32::new(0));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (t, n) = (Arc::clone(&t), Arc::clone(&n));
            tasks.push(tokio::spawn(async move {
                let answer = t
                    .answer(scope("k"), 0, || async {
                        let i = n.fetch_add(1, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        Ok(axum::Json(i).into_response())
                    })
                    .await;
                body(answer).await
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap(), "0");
        }
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn the_table_is_bounded() {
        let t = Idempotency::default();
        let ok = || async { Ok(axum::Json(1).into_response()) };
        for i in 0..MAX_KEYS + 10 {
            t.answer(scope(&i.to_string()), 0, ok).await.unwrap();
        }
        assert!(t.table.lock().slots.len() <= MAX_KEYS);
    }
}
