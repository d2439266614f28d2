//! Worker connections: the accept loop and one task per authenticated connection that turns
//! heartbeats into registry updates, reports into transitions and log batches into log rows.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use ferrojob_transport::message::{ErrorCode, ErrorReply, ExecutorCluster, LogBatch, Message};
use ferrojob_transport::net::{Accepted, Incoming, Listener};
use ferrojob_transport::PeerInfo;

use crate::dispatch::{TrackerCounts, WorkerMetrics, WorkerStatus};
use crate::ids::{AppId, InstanceId};
use crate::model::LogLevel;
use crate::model::{MAX_LOG_FIELDS, MAX_LOG_FIELD_KEY_BYTES, MAX_LOG_FIELD_VALUE_BYTES};
use crate::server::{LogLine, LogLineField};

use crate::server::core::WorkerKey;

use super::driver::Runtime;
use super::link::WorkerLink;

/// Most per-instance log counters kept before those of finished instances are forgotten.
const MAX_LOG_COUNTERS: usize = 1 << 20;

/// Most messages handled per wake-up of a connection task.
const RECV_BATCH: usize = 512;

pub(crate) async fn accept_loop(sh: Arc<Runtime>, mut listener: Listener) {
    loop {
        match listener.accept().await {
            Ok(acc) => {
                if sh.is_shutting_down() {
                    acc.handle.shutdown().await;
                    return;
                }
                tokio::spawn(serve(Arc::clone(&sh), acc));
            }
            Err(e) => {
                tracing::info!(error = %e, "listener stopped");
                return;
            }
        }
    }
}

async fn serve(sh: Arc<Runtime>, acc: Accepted) {
    let Accepted {
        handle,
        mut incoming,
        peer,
        addr,
    } = acc;
    let PeerInfo::Worker {
        app_name,
        worker_address,
        tags,
        client_version,
    } = peer
    else {
        return;
    };
    let app: Arc<str> = Arc::from(app_name.as_str());
    // The handshake proved the secret of this app, so it exists.
    let Some(app_id) = sh.app_by_name(&app_name).map(|a| a.id) else {
        handle.shutdown().await;
        return;
    };
    let key: WorkerKey = (app_id, worker_address.clone());
    let gen = sh.conn_gen.fetch_add(1, Ordering::Relaxed);
    tracing::info!(app = %app, worker = %worker_address, peer = %addr, "worker connected");
    // Filed before the core hears of it: the core's reconciliation queries and dispatches
    // find the connection.
    let old = sh
        .conns
        .insert(key.clone(), WorkerLink::new(gen, handle.clone()));
    sh.step(|core, _now| core.worker_connected(app_id, &worker_address, gen));
    if let Some(old) = old {
        // A worker reconnected before its old connection was noticed closed.
        tokio::spawn(async move { old.handle.shutdown().await });
    }
    // Grown on demand: `RECV_BATCH` messages reserved up front would be ~200 KiB for every
    // connected worker, most of whom send a heartbeat at a time.
    let mut buf: Vec<Incoming> = Vec::new();
    let mut logs: Vec<LogBatch> = Vec::new();
    loop {
        if incoming.recv_many(&mut buf, RECV_BATCH).await == 0 {
            break;
        }
        let mut queries = Vec::new();
        sh.step(|core, now| {
            for inc in buf.drain(..) {
                match inc.message {
                    Message::WorkerHeartbeat(hb) => {
                        let status = WorkerStatus {
                            address: worker_address.clone(),
                            tags: tags.clone(),
                            version: if hb.version.is_empty() {
                                client_version.clone()
                            } else {
                                hb.version
                            },
                            overloaded: hb.overloaded,
                            trackers: TrackerCounts {
                                lightweight_task_trackers: hb.lightweight_task_trackers,
                                heavy_task_trackers: hb.heavy_task_trackers,
                                processor_trackers: hb.processor_trackers,
                            },
                        };
                        let metrics = WorkerMetrics::from(&hb.metrics);
                        core.on_heartbeat(&app, &status, metrics);
                    }
                    Message::ReportInstanceStatus(r) => {
                        core.on_report(app_id, &worker_address, &r, now);
                    }
                    Message::LogBatch(b) => logs.push(b),
                    other => queries.push((inc.correlation, other)),
                }
            }
        });
        for b in logs.drain(..) {
            on_logs(&sh, app_id, &worker_address, b);
        }
        for (correlation, message) in queries {
            let Some(c) = correlation else {
                tracing::debug!(worker = %worker_address, kind = %message.kind(), "unexpected message ignored");
                continue;
            };
            match message {
                Message::QueryExecutorCluster(_) => {
                    let workers = sh
                        .registry
                        .workers(&app)
                        .into_iter()
                        .map(|w| w.address.to_string())
                        .collect();
                    let _ = handle
                        .respond(
                            c,
                            ExecutorCluster {
                                worker_addresses: workers,
                            },
                        )
                        .await;
                }
                other => {
                    tracing::debug!(worker = %worker_address, kind = %other.kind(), "unexpected message ignored");
                    let _ = handle
                        .respond(
                            c,
                            ErrorReply {
                                code: ErrorCode::UnexpectedMessage,
                                message: format!("the server does not handle {}", other.kind()),
                            },
                        )
                        .await;
                }
            }
        }
    }
    // Closed: unroutable at once; dead unless it is back within the liveness window.
    sh.conns.remove_if(&key, |_, link| link.gen == gen);
    sh.step(|core, _| core.worker_disconnected(&app, app_id, &worker_address, gen));
}

fn level(l: ferrojob_transport::message::LogLevel) -> LogLevel {
    use ferrojob_transport::message::LogLevel as W;
    match l {
        W::Debug => LogLevel::Debug,
        W::Info => LogLevel::Info,
        W::Warn => LogLevel::Warn,
        W::Error => LogLevel::Error,
    }
}

/// `s` cut to at most `max` bytes on a character boundary.
fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while end > 0 && !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Stores a worker's log lines per instance, up to the per-instance cap (the rest counted as
/// dropped). Lines of finished instances (late batches) are still stored; lines of unknown
/// instances, and of instances of another app than the connection's, are dropped. The counters live in memory: after a restart (or once more than
/// `MAX_LOG_COUNTERS` instances have counters) they start again from 0.
fn on_logs(sh: &Arc<Runtime>, app: AppId, worker: &str, batch: LogBatch) {
    let cap = sh.config.max_log_lines_per_instance;
    let mut entries = batch.entries.into_iter().peekable();
    while let Some(first) = entries.next() {
        let id = first.instance_id;
        let mut lines = vec![first];
        while let Some(e) = entries.next_if(|e| e.instance_id == id) {
            lines.push(e);
        }
        let id = InstanceId(id);
        let n = lines.len() as u64;
        // A non-final instance is in memory and never pruned: its lines need no read of the
        // store first, so a busy log does not slow the reports queued behind it.
        // Only lines of the connection's own app: a worker cannot write into another app's
        // instances.
        let live = sh
            .core
            .lock()
            .active
            .get(&id)
            .map(|st| st.rec.app_id == app);
        let ours = match live {
            Some(ours) => ours,
            None => sh.repo.get_instance(id).is_ok_and(|r| r.app_id == app),
        };
        if !ours {
            tracing::debug!(
                worker,
                instance = id.0,
                "log lines for an unknown instance, or another app's, dropped"
            );
            continue;
        }
        let live = live.is_some();
        if sh.log_counts.len() >= MAX_LOG_COUNTERS {
            // Bounded memory: forget the counters of instances no longer running (their
            // `dropped` count then restarts from 0).
            let core = sh.core.lock();
            sh.log_counts.retain(|k, _| core.active.contains_key(k));
        }
        let allowed = {
            let mut c = sh.log_counts.entry(id).or_insert((0, 0));
            let room = cap.saturating_sub(c.0);
            let allowed = n.min(room);
            c.0 += allowed;
            c.1 += n - allowed;
            allowed
        };
        if allowed < n {
            sh.metrics
                .log_lines_dropped
                .fetch_add(n - allowed, Ordering::Relaxed);
        }
        let keep = usize::try_from(allowed).unwrap_or(usize::MAX);
        let rows = lines.into_iter().take(keep).map(|e| LogLine {
            time: e.time_ms,
            level: level(e.level),
            content: e.content,
            attempt: e.attempt,
            // The worker bounds the fields; the server keeps at most as many, whatever a
            // peer sends (each is within the frame it came in, so a few bytes per byte read).
            fields: e
                .fields
                .into_iter()
                .take(MAX_LOG_FIELDS)
                .map(|f| LogLineField {
                    key: cut(f.key, MAX_LOG_FIELD_KEY_BYTES),
                    value: cut(f.value, MAX_LOG_FIELD_VALUE_BYTES),
                })
                .collect(),
        });
        let appended = if live {
            sh.repo.append_logs_of_live(id, rows)
        } else {
            sh.repo.append_logs(id, rows)
        };
        match appended {
            Ok(c) => {
                let sh2 = Arc::clone(sh);
                tokio::spawn(async move {
                    if let Ok(r) = sh2.await_commit(c).await {
                        if r.dropped > 0 {
                            if let Some(mut c) = sh2.log_counts.get_mut(&id) {
                                c.1 += r.dropped as u64;
                            }
                        }
                    }
                });
            }
            Err(e) => tracing::debug!(worker, instance = id.0, error = %e, "log lines not stored"),
        }
    }
}
