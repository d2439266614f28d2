//! `Idempotency-Key` on the routes that create something (create, run or backfill a job or a
//! workflow): the first successful answer to a key on a path is kept for [`KEEP_MS`] and
//! given again to every later request with the same key on the same path, so a client that
//! retries after a lost answer gets the first run, never a second one. A request that arrives
//! while the first is still being answered waits for it; when the first fails (an error
//! answer), the key is free again and the next request is answered afresh.
//!
//! The keys are kept by the [`Api`] as well as in memory, when it keeps them (the server
//! does, in its repository): a key is durable as *taken* before the request acts, and its
//! answer is durable before it is sent. After a restart every answered key gives its answer
//! again; a key still taken belongs to a request the restart cut off, whether it acted is
//! unknown, and it is refused with 409 `conflict` until it expires (look at the job's runs,
//! then use a new key). A request keeps going when its client goes away, so its key ends
//! answered, never cut off, while the server runs.
//!
//! Bounds: at most [`MAX_KEYS`] keys (the oldest answer is forgotten first; the kept ones
//! are pruned to match every [`PRUNE_EVERY_MS`]). A key is 1 to [`MAX_KEY_LEN`] visible
//! ASCII characters; the path (which names the app, and the job or workflow) is part of its
//! scope, the request body is not.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use tokio::sync::{watch, OnceCell};

use super::failure::Failure;
use super::handlers::Answer;
use crate::api::{Api, ApiError, ApiFuture, ErrorCode, IdempotencyEntry};

/// The request header.
pub(crate) const HEADER: &str = "idempotency-key";

/// Longest key, in bytes.
pub(crate) const MAX_KEY_LEN: usize = 255;

/// Most keys remembered at once.
pub(crate) const MAX_KEYS: usize = 10_000;

/// How long an answer is given again, ms (24 h).
pub(crate) const KEEP_MS: i64 = 24 * 3600 * 1000;

/// How often the keys the [`Api`] keeps are pruned, ms.
pub(crate) const PRUNE_EVERY_MS: i64 = 60_000;

/// Largest answer body kept, in bytes (the answers are small `{"id"}` objects).
const MAX_ANSWER_LEN: usize = 64 << 10;

/// Where the keys are kept durable: every [`Api`] (see its `idempotency_keys`,
/// `keep_idempotency`, `forget_idempotency` and `prune_idempotency`).
pub(crate) trait Keeper: Send + Sync {
    fn keys(&self) -> ApiFuture<'_, Vec<IdempotencyEntry>>;
    fn keep(&self, entry: IdempotencyEntry) -> ApiFuture<'_, ()>;
    fn forget(&self, path: String, key: String) -> ApiFuture<'_, ()>;
    fn prune(&self, before: i64) -> ApiFuture<'_, usize>;
}

impl<T: Api + ?Sized> Keeper for T {
    fn keys(&self) -> ApiFuture<'_, Vec<IdempotencyEntry>> {
        self.idempotency_keys()
    }
    fn keep(&self, entry: IdempotencyEntry) -> ApiFuture<'_, ()> {
        self.keep_idempotency(entry)
    }
    fn forget(&self, path: String, key: String) -> ApiFuture<'_, ()> {
        self.forget_idempotency(path, key)
    }
    fn prune(&self, before: i64) -> ApiFuture<'_, usize> {
        self.prune_idempotency(before)
    }
}

/// A key on a path: (path, key).
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
    /// Taken at `at` by a request a restart cut off before it answered.
    Interrupted { at: i64 },
}

impl Slot {
    fn at(&self) -> Option<i64> {
        match self {
            Slot::Pending(_) => None,
            Slot::Done { at, .. } | Slot::Interrupted { at } => Some(*at),
        }
    }
}

/// The table of keys (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Idempotency {
    table: Mutex<Table>,
    /// The keys the [`Api`] keeps have been read.
    loaded: OnceCell<()>,
    /// A prune of the kept keys is under way.
    pruning: Arc<AtomicBool>,
}

#[derive(Debug, Default)]
struct Table {
    slots: HashMap<Scope, Slot>,
    /// Answered (or cut off) keys, oldest first, with their time (an entry whose slot was
    /// answered again later, or removed, is skipped when popped).
    answered: VecDeque<(Scope, i64)>,
    /// Keys older than this were forgotten because the table was full (clock ms).
    forgotten_before: Option<i64>,
    /// When the kept keys were last pruned (clock ms).
    pruned_at: Option<i64>,
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
            if self.slots.get(&scope).and_then(Slot::at) == Some(at) {
                self.slots.remove(&scope);
                if !expired {
                    self.forgotten_before = self.forgotten_before.max(Some(at));
                }
            }
        }
    }

    /// Files a key read back from the [`Api`].
    fn restore(&mut self, entry: IdempotencyEntry) {
        let slot = match entry.answer {
            None => Slot::Interrupted { at: entry.at },
            Some((status, body)) => match StatusCode::from_u16(status) {
                Ok(status) => Slot::Done {
                    stored: Stored {
                        status,
                        body: Bytes::from(body),
                    },
                    at: entry.at,
                },
                Err(_) => {
                    tracing::warn!(status, path = %entry.path, "a kept idempotency answer has a bad status; treated as cut off");
                    Slot::Interrupted { at: entry.at }
                }
            },
        };
        let scope = (entry.path, entry.key);
        self.answered.push_back((scope.clone(), entry.at));
        self.slots.insert(scope, slot);
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

fn interrupted() -> Failure {
    ApiError::conflict(
        "a request with this Idempotency-Key was cut off by a server restart before it \
         answered, so whether it took effect is unknown: look at the job's or workflow's \
         runs, then use a new key",
    )
    .into()
}

impl Idempotency {
    /// Answers a request with `scope` (from [`scope`]) at clock `now_ms`: the kept answer, or
    /// the one `f` gives (kept, in memory and by `api`, when it is a success). `f` runs in a
    /// task of its own, so it finishes even when the caller goes away.
    pub(crate) async fn answer<K, F, Fut>(
        self: &Arc<Self>,
        api: &Arc<K>,
        scope: Option<Scope>,
        now_ms: i64,
        f: F,
    ) -> Answer
    where
        K: Keeper + ?Sized + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Answer> + Send + 'static,
    {
        let Some(scope) = scope else {
            return f().await;
        };
        self.load(api, now_ms).await?;
        self.prune(api, now_ms);
        let tx = loop {
            let mut waiting = {
                let mut t = self.table.lock();
                t.trim(now_ms);
                match t.slots.get(&scope) {
                    Some(Slot::Done { stored, .. }) => return Ok(stored.response()),
                    Some(Slot::Interrupted { .. }) => return Err(interrupted()),
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
        let (table, api) = (Arc::clone(self), Arc::clone(api));
        let task =
            tokio::spawn(async move { table.first_answer(&*api, scope, now_ms, tx, f).await });
        match task.await {
            Ok(answer) => answer,
            Err(e) => Err(ApiError::internal(format!("the request failed: {e}")).into()),
        }
    }

    /// Answers the first request with a key: takes it durably, runs `f`, keeps the answer.
    async fn first_answer<K, F, Fut>(
        &self,
        api: &K,
        scope: Scope,
        now_ms: i64,
        tx: watch::Sender<Option<Stored>>,
        f: F,
    ) -> Answer
    where
        K: Keeper + ?Sized,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Answer>,
    {
        let mut guard = PendingGuard {
            table: self,
            scope: Some(scope.clone()),
        };
        let entry = |answer| IdempotencyEntry {
            path: scope.0.clone(),
            key: scope.1.clone(),
            at: now_ms,
            answer,
        };
        api.keep(entry(None)).await?;
        let answer = f().await;
        let response = match answer {
            Ok(r) if r.status().is_success() => r,
            other => {
                // Nothing was created: the key is free again, after a restart too.
                if let Err(e) = api.forget(scope.0.clone(), scope.1.clone()).await {
                    tracing::warn!(error = %e, path = %scope.0, "a failed request's Idempotency-Key could not be freed; after a restart it is refused as cut off");
                }
                return other;
            }
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
        if let Err(e) = api
            .keep(entry(Some((status.as_u16(), stored.body.to_vec()))))
            .await
        {
            tracing::warn!(error = %e, path = %scope.0, "an Idempotency-Key's answer could not be kept; after a restart the key is refused as cut off");
        }
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

    /// Reads the keys `api` keeps, once: the unexpired ones, the newest [`MAX_KEYS`].
    async fn load<K: Keeper + ?Sized>(&self, api: &Arc<K>, now_ms: i64) -> Result<(), Failure> {
        self.loaded
            .get_or_try_init(|| async {
                let mut entries = api.keys().await?;
                entries.retain(|e| e.at.saturating_add(KEEP_MS) > now_ms);
                entries.sort_by_key(|e| e.at);
                let skip = entries.len().saturating_sub(MAX_KEYS);
                let mut t = self.table.lock();
                for entry in entries.into_iter().skip(skip) {
                    t.restore(entry);
                }
                Ok::<(), ApiError>(())
            })
            .await
            .map(|_| ())
            .map_err(|e| {
                ApiError::unavailable(format!(
                    "the kept Idempotency-Keys could not be read: {}",
                    e.message
                ))
                .into()
            })
    }

    /// Prunes the keys `api` keeps to the ones the table still remembers, at most once per
    /// [`PRUNE_EVERY_MS`], in a task of its own.
    fn prune<K: Keeper + ?Sized + 'static>(&self, api: &Arc<K>, now_ms: i64) {
        let before = {
            let mut t = self.table.lock();
            if t.pruned_at
                .is_some_and(|at| now_ms.saturating_sub(at) < PRUNE_EVERY_MS)
            {
                return;
            }
            if self.pruning.swap(true, Ordering::AcqRel) {
                return;
            }
            t.pruned_at = Some(now_ms);
            t.forgotten_before
                .map_or(now_ms.saturating_sub(KEEP_MS), |f| {
                    f.max(now_ms.saturating_sub(KEEP_MS))
                })
        };
        let (api, pruning) = (Arc::clone(api), Arc::clone(&self.pruning));
        tokio::spawn(async move {
            match api.prune(before).await {
                Ok(n) if n > 0 => tracing::debug!(pruned = n, "Idempotency-Keys pruned"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "pruning Idempotency-Keys failed"),
            }
            pruning.store(false, Ordering::Release);
        });
    }
}

/// Removes a pending slot whose request did not finish with an answer.
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use super::*;

    /// Keeps keys in memory, as a durable [`Api`] would across a restart of the table.
    #[derive(Default)]
    struct MemKeeper {
        rows: Mutex<BTreeMap<Scope, IdempotencyEntry>>,
        prunes: Mutex<Vec<i64>>,
    }

    impl Keeper for MemKeeper {
        fn keys(&self) -> ApiFuture<'_, Vec<IdempotencyEntry>> {
            let rows = self.rows.lock().values().cloned().collect();
            Box::pin(async move { Ok(rows) })
        }
        fn keep(&self, entry: IdempotencyEntry) -> ApiFuture<'_, ()> {
            self.rows
                .lock()
                .insert((entry.path.clone(), entry.key.clone()), entry);
            Box::pin(async { Ok(()) })
        }
        fn forget(&self, path: String, key: String) -> ApiFuture<'_, ()> {
            self.rows.lock().remove(&(path, key));
            Box::pin(async { Ok(()) })
        }
        fn prune(&self, before: i64) -> ApiFuture<'_, usize> {
            self.prunes.lock().push(before);
            let mut rows = self.rows.lock();
            let n = rows.len();
            rows.retain(|_, e| e.at >= before);
            let n = n - rows.len();
            Box::pin(async move { Ok(n) })
        }
    }

    impl MemKeeper {
        fn row(&self, key: &str) -> Option<IdempotencyEntry> {
            self.rows.lock().get(&scope(key).unwrap()).cloned()
        }
    }

    fn scope(key: &str) -> Option<Scope> {
        Some(("/v1/apps/a/jobs/1/run".into(), key.into()))
    }

    fn table() -> (Arc<Idempotency>, Arc<MemKeeper>) {
        (Arc::default(), Arc::default())
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

    fn counting(
        n: &Arc<AtomicU32>,
    ) -> impl FnOnce() -> std::future::Ready<Answer> + Send + 'static {
        let n = Arc::clone(n);
        move || {
            let i = n.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok(axum::Json(i).into_response()))
        }
    }

    #[tokio::test]
    async fn a_key_gets_its_first_answer_again_until_it_expires() {
        let (t, k) = table();
        let n = Arc::new(AtomicU32::new(0));
        assert_eq!(
            body(t.answer(&k, scope("k"), 0, counting(&n)).await).await,
            "0"
        );
        assert_eq!(
            body(t.answer(&k, scope("k"), 1_000, counting(&n)).await).await,
            "0"
        );
        assert_eq!(
            body(t.answer(&k, scope("other"), 1_000, counting(&n)).await).await,
            "1"
        );
        assert_eq!(
            body(t.answer(&k, None, 1_000, counting(&n)).await).await,
            "2"
        );
        assert_eq!(
            body(t.answer(&k, scope("k"), KEEP_MS - 1, counting(&n)).await).await,
            "0"
        );
        assert_eq!(
            body(t.answer(&k, scope("k"), KEEP_MS, counting(&n)).await).await,
            "3"
        );
    }

    #[tokio::test]
    async fn a_key_is_kept_as_taken_before_the_request_acts_and_with_its_answer_after() {
        let (t, k) = table();
        let seen = Arc::clone(&k);
        let run = move || async move {
            let row = seen.row("k").unwrap();
            assert_eq!((row.at, row.answer), (7, None), "taken before acting");
            Ok((StatusCode::CREATED, axum::Json(42)).into_response())
        };
        assert_eq!(body(t.answer(&k, scope("k"), 7, run).await).await, "42");
        assert_eq!(k.row("k").unwrap().answer, Some((201, b"42".to_vec())));
    }

    #[tokio::test]
    async fn a_failed_answer_is_not_kept() {
        let (t, k) = table();
        let fail = || async { Err(ApiError::new(ErrorCode::Unavailable, "down").into()) };
        assert!(t.answer(&k, scope("k"), 0, fail).await.is_err());
        assert_eq!(k.row("k"), None, "the key is free after a restart too");
        let ok = || async { Ok(axum::Json(7).into_response()) };
        assert_eq!(body(t.answer(&k, scope("k"), 0, ok).await).await, "7");
        assert!(t.table.lock().slots.len() == 1);
    }

    #[tokio::test]
    async fn after_a_restart_answers_are_given_again_and_cut_off_keys_are_refused() {
        let k = Arc::new(MemKeeper::default());
        let n = Arc::new(AtomicU32::new(0));
        {
            let t = Arc::new(Idempotency::default());
            assert_eq!(
                body(t.answer(&k, scope("k"), 0, counting(&n)).await).await,
                "0"
            );
        }
        // A request the restart cut off after it took its key, and one that expired.
        k.keep(IdempotencyEntry {
            path: "/v1/apps/a/jobs/1/run".into(),
            key: "cut".into(),
            at: 10,
            answer: None,
        })
        .await
        .unwrap();
        k.keep(IdempotencyEntry {
            path: "/v1/apps/a/jobs/1/run".into(),
            key: "old".into(),
            at: -KEEP_MS,
            answer: Some((200, b"99".to_vec())),
        })
        .await
        .unwrap();
        let t = Arc::new(Idempotency::default());
        assert_eq!(
            body(t.answer(&k, scope("k"), 20, counting(&n)).await).await,
            "0"
        );
        let refused = t
            .answer(&k, scope("cut"), 20, counting(&n))
            .await
            .unwrap_err();
        let r = refused.into_response();
        assert_eq!(r.status(), StatusCode::CONFLICT);
        assert_eq!(
            body(t.answer(&k, scope("old"), 20, counting(&n)).await).await,
            "1"
        );
        assert_eq!(
            n.load(Ordering::SeqCst),
            2,
            "only the expired key ran again"
        );
        // The cut-off key expires like any other.
        assert_eq!(
            body(t.answer(&k, scope("cut"), 10 + KEEP_MS, counting(&n)).await).await,
            "2"
        );
    }

    #[tokio::test]
    async fn a_request_whose_client_went_away_still_keeps_its_answer() {
        let (t, k) = table();
        let release = Arc::new(tokio::sync::Notify::new());
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let gate = Arc::clone(&release);
        let run = move || async move {
            let _ = started_tx.send(());
            gate.notified().await;
            Ok(axum::Json(5).into_response())
        };
        let caller = {
            let (t, k) = (Arc::clone(&t), Arc::clone(&k));
            tokio::spawn(async move { t.answer(&k, scope("k"), 0, run).await.map(|_| ()) })
        };
        started.await.unwrap();
        caller.abort();
        assert!(caller.await.unwrap_err().is_cancelled());
        release.notify_one();
        let n = Arc::new(AtomicU32::new(100));
        assert_eq!(
            body(t.answer(&k, scope("k"), 1, counting(&n)).await).await,
            "5"
        );
        assert_eq!(k.row("k").unwrap().answer, Some((200, b"5".to_vec())));
    }

    #[tokio::test]
    async fn the_kept_keys_are_pruned_to_what_the_table_remembers() {
        let (t, k) = table();
        let n = Arc::new(AtomicU32::new(0));
        t.answer(&k, scope("a"), 0, counting(&n)).await.unwrap();
        t.answer(&k, scope("b"), PRUNE_EVERY_MS - 1, counting(&n))
            .await
            .unwrap();
        // Let the first prune's task run.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(k.prunes.lock().clone(), vec![-KEEP_MS], "once per period");
        t.answer(&k, scope("c"), KEEP_MS + 1, counting(&n))
            .await
            .unwrap();
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(k.prunes.lock().last(), Some(&1));
        assert_eq!(k.row("a"), None, "expired and pruned");
        assert!(k.row("b").is_some() && k.row("c").is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_with_one_key_get_one_answer() {
        let (t, k) = table();
        let n = Arc::new(AtomicU32::new(0));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (t, k, n) = (Arc::clone(&t), Arc::clone(&k), Arc::clone(&n));
            tasks.push(tokio::spawn(async move {
                let answer = t
                    .answer(&k, scope("k"), 0, move || async move {
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
        let (t, k) = table();
        let ok = || async { Ok(axum::Json(1).into_response()) };
        for i in 0..MAX_KEYS + 10 {
            t.answer(&k, scope(&i.to_string()), 0, ok).await.unwrap();
        }
        assert!(t.table.lock().slots.len() <= MAX_KEYS);
        assert_eq!(t.table.lock().forgotten_before, Some(0));
    }
}
