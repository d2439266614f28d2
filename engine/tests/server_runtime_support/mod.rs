//! Shared helpers of the server_runtime* tests: a server on 127.0.0.1:0 and in-process fake
//! workers that speak the transport protocol (`ferrojob_transport::message`) over the real
//! transport.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrojob::api::{Api, AppRef, CreateApp, InstanceView, JobBody, RunJob};
use ferrojob::clock::VirtualClock;
use ferrojob::ids::{InstanceId, JobId};
use ferrojob::model::InstanceStatus as S;
use ferrojob::server::{ServerConfig, ServerCore, StoreChoice};
use ferrojob::time_expression::TimeExpressionType;
use ferrojob_transport::message::{
    ErrorCode, ErrorReply, InstanceStatus as W, InstanceStatusReply, Message, ReportInstanceStatus,
    ScheduleJob, SystemMetrics, WorkerHeartbeat,
};
use ferrojob_transport::net::{connect, ConnectionHandle, NetConfig};
use ferrojob_transport::{AppSecret, ClientIdentity, TransportMetrics};
use tokio::sync::mpsc;

pub const SECRET: &str = "secret-secret-secret";
/// 2030-01-01T00:00:00Z, a round start for virtual clocks.
pub const T0: i64 = 1_893_456_000_000;

pub fn local() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

pub fn config(store: StoreChoice, clock: Option<&VirtualClock>) -> ServerConfig {
    let mut c = ServerConfig::new(store, local());
    // Fake workers heartbeat only when told: keep them alive unless a test says otherwise.
    c.heartbeat_interval_ms = 3_600_000;
    c.restart_grace_ms = 10_000;
    // The tests' alarm receivers listen on loopback.
    c.alarm_allow = vec!["127.0.0.1/32".parse().unwrap(), "::1/128".parse().unwrap()];
    if let Some(clock) = clock {
        c.clock = Arc::new(clock.clone());
    }
    c
}

pub async fn start(c: ServerConfig) -> ServerCore {
    // A restarted server may find the previous one's store still closing: retry briefly.
    for _ in 0..200 {
        match ServerCore::start(c.clone()).await {
            Ok(s) => return s,
            Err(ferrojob::server::ServerError::Store(ferrojob_store::StoreError::Locked {
                ..
            })) => tokio::time::sleep(Duration::from_millis(25)).await,
            Err(e) => panic!("start: {e}"),
        }
    }
    panic!("store stayed locked")
}

pub async fn app(api: &Arc<dyn Api>, name: &str) -> AppRef {
    api.create_app(CreateApp {
        name: name.into(),
        secret: SECRET.into(),
    })
    .await
    .unwrap();
    api.resolve_app(name).unwrap()
}

pub fn job(kind: TimeExpressionType, expr: &str) -> JobBody {
    JobBody::new("j", kind, expr, "noop")
}

/// Polls `f` until it returns `Some`, for up to 10 s of real time.
pub async fn until<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    for _ in 0..5000 {
        if let Some(t) = f().await {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("timed out waiting for {what}");
}

pub async fn status_is(api: &Arc<dyn Api>, app: &AppRef, id: InstanceId, s: S) -> InstanceView {
    until(&format!("{id} {s:?}"), || async {
        let v = api.get_instance(app.clone(), id).await.unwrap();
        (v.status == s).then_some(v)
    })
    .await
}

pub async fn run(api: &Arc<dyn Api>, app: &AppRef, job: JobId) -> InstanceId {
    api.run_job(app.clone(), job, RunJob::default())
        .await
        .unwrap()
        .instance_id
}

/// instance → (status, result) a fake worker answers QueryInstanceStatus with.
pub type Known = Arc<Mutex<HashMap<u64, (W, Option<String>)>>>;

/// How a fake worker answers ScheduleJob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// RUNNING then SUCCEED at once.
    Succeed,
    /// RUNNING then FAILED at once.
    Fail,
    /// RUNNING only; the test finishes it.
    Hold,
    /// No report at all (a worker that never confirms).
    Silent,
}

/// What a fake worker saw.
#[derive(Debug, Clone)]
pub enum Seen {
    Schedule(Box<ScheduleJob>),
    Stop(u64),
}

/// A worker built from `ferrojob_transport::net::connect`.
pub struct FakeWorker {
    pub address: String,
    pub handle: ConnectionHandle,
    pub seen: mpsc::UnboundedReceiver<Seen>,
    /// instance → (status, result) answered to QueryInstanceStatus; absent = NotFound.
    pub known: Known,
    /// instance → last seq used.
    pub seqs: Arc<Mutex<HashMap<u64, (u64, ScheduleJob)>>>,
    pub mode: Arc<Mutex<Mode>>,
}

pub fn metrics(free_gb: u64) -> SystemMetrics {
    SystemMetrics {
        cpu_cores: 4,
        cpu_load: 0.5,
        memory_used_bytes: 0,
        memory_max_bytes: free_gb << 30,
        disk_used_bytes: 0,
        disk_total_bytes: 10 << 30,
        score: 0,
    }
}

impl FakeWorker {
    pub async fn connect(
        server: SocketAddr,
        app: &str,
        address: &str,
        tags: &[&str],
        mode: Mode,
    ) -> FakeWorker {
        Self::try_connect(server, app, SECRET, address, tags, mode)
            .await
            .unwrap()
    }

    pub async fn try_connect(
        server: SocketAddr,
        app: &str,
        secret: &str,
        address: &str,
        tags: &[&str],
        mode: Mode,
    ) -> Result<FakeWorker, ferrojob_transport::TransportError> {
        Self::try_connect_with(server, app, secret, address, tags, mode, Arc::default()).await
    }

    async fn try_connect_with(
        server: SocketAddr,
        app: &str,
        secret: &str,
        address: &str,
        tags: &[&str],
        mode: Mode,
        known: Known,
    ) -> Result<FakeWorker, ferrojob_transport::TransportError> {
        let identity = ClientIdentity {
            app_name: app.into(),
            worker_address: address.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            client_version: "test".into(),
            secret: AppSecret::new(secret.as_bytes().to_vec()),
        };
        let c = connect(
            server,
            NetConfig::default(),
            identity,
            Arc::new(TransportMetrics::default()),
        )
        .await?;
        let (tx, seen) = mpsc::unbounded_channel();
        let seqs: Arc<Mutex<HashMap<u64, (u64, ScheduleJob)>>> = Arc::default();
        let mode = Arc::new(Mutex::new(mode));
        let handle = c.handle.clone();
        let (k, s, m, addr) = (
            known.clone(),
            seqs.clone(),
            mode.clone(),
            address.to_string(),
        );
        let mut incoming = c.incoming;
        tokio::spawn(async move {
            while let Some(inc) = incoming.recv().await {
                match inc.message {
                    Message::ScheduleJob(job) => {
                        let id = job.instance_id;
                        let base = job.report_seq_base;
                        s.lock().unwrap().insert(id, (base, job.clone()));
                        let _ = tx.send(Seen::Schedule(Box::new(job.clone())));
                        let mode = *m.lock().unwrap();
                        let w = FakeWorkerRef {
                            handle: handle.clone(),
                            address: addr.clone(),
                            seqs: s.clone(),
                            known: k.clone(),
                        };
                        if mode == Mode::Silent {
                            continue;
                        }
                        w.report(id, W::Running, None).await;
                        match mode {
                            Mode::Succeed => w.report(id, W::Succeed, Some("ok")).await,
                            Mode::Fail => w.report(id, W::Failed, Some("boom")).await,
                            Mode::Hold | Mode::Silent => {}
                        }
                    }
                    Message::StopInstance(stop) => {
                        let _ = tx.send(Seen::Stop(stop.instance_id));
                    }
                    Message::QueryInstanceStatus(q) => {
                        let Some(c) = inc.correlation else { continue };
                        let answer = k.lock().unwrap().get(&q.instance_id).cloned();
                        let msg: Message = match answer {
                            Some((status, result)) => InstanceStatusReply {
                                instance_id: q.instance_id,
                                status,
                                result,
                                total_tasks: 1,
                                succeeded_tasks: 0,
                                failed_tasks: 0,
                                running_tasks: 0,
                                start_time_ms: 0,
                            }
                            .into(),
                            None => ErrorReply {
                                code: ErrorCode::NotFound,
                                message: "unknown instance".into(),
                            }
                            .into(),
                        };
                        let _ = handle.respond(c, msg).await;
                    }
                    _ => {}
                }
            }
        });
        Ok(FakeWorker {
            address: address.into(),
            handle: c.handle,
            seen,
            known,
            seqs,
            mode,
        })
    }

    /// Connects already knowing `id` (answers QueryInstanceStatus with `status`, `result`).
    pub async fn connect_knowing(
        server: SocketAddr,
        app: &str,
        address: &str,
        mode: Mode,
        id: u64,
        status: W,
        result: &str,
    ) -> FakeWorker {
        let known = Arc::new(Mutex::new(HashMap::from([(
            id,
            (status, Some(result.to_string())),
        )])));
        Self::try_connect_with(server, app, SECRET, address, &[], mode, known)
            .await
            .unwrap()
    }

    pub fn r(&self) -> FakeWorkerRef {
        FakeWorkerRef {
            handle: self.handle.clone(),
            address: self.address.clone(),
            seqs: self.seqs.clone(),
            known: self.known.clone(),
        }
    }

    pub async fn heartbeat(&self, app: &str, free_gb: u64) {
        self.handle
            .send(WorkerHeartbeat {
                worker_address: self.address.clone(),
                app_name: app.into(),
                app_id: 0,
                heartbeat_time_ms: 0,
                version: "test".into(),
                tag: None,
                overloaded: false,
                lightweight_task_trackers: 0,
                heavy_task_trackers: 0,
                processor_trackers: 0,
                metrics: metrics(free_gb),
            })
            .await
            .unwrap();
    }

    /// Heartbeats and waits until the server's registry has it at `now_ms`.
    pub async fn register(&self, api: &Arc<dyn Api>, app: &AppRef, free_gb: u64, now_ms: i64) {
        self.heartbeat(&app.name, free_gb).await;
        until("worker registered", || async {
            let ws = api.list_workers(app.clone()).await.unwrap();
            ws.workers
                .iter()
                .any(|w| w.address == self.address && w.last_heartbeat >= now_ms)
                .then_some(())
        })
        .await;
    }

    pub async fn next_schedule(&mut self) -> ScheduleJob {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), self.seen.recv()).await {
                Ok(Some(Seen::Schedule(j))) => return *j,
                Ok(Some(_)) => continue,
                _ => panic!("{}: no ScheduleJob", self.address),
            }
        }
    }

    pub async fn next_stop(&mut self) -> u64 {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), self.seen.recv()).await {
                Ok(Some(Seen::Stop(id))) => return id,
                Ok(Some(_)) => continue,
                _ => panic!("{}: no StopInstance", self.address),
            }
        }
    }

    pub fn no_schedule_pending(&mut self) -> bool {
        loop {
            match self.seen.try_recv() {
                Ok(Seen::Schedule(_)) => return false,
                Ok(_) => continue,
                Err(_) => return true,
            }
        }
    }
}

/// A cloneable reporter for one fake worker.
#[derive(Clone)]
pub struct FakeWorkerRef {
    pub handle: ConnectionHandle,
    pub address: String,
    pub seqs: Arc<Mutex<HashMap<u64, (u64, ScheduleJob)>>>,
    pub known: Known,
}

impl FakeWorkerRef {
    /// Reports `status` with the next sequence number.
    pub async fn report(&self, id: u64, status: W, result: Option<&str>) {
        let (seq, job) = {
            let mut m = self.seqs.lock().unwrap();
            let e = m.get_mut(&id).expect("instance scheduled here");
            e.0 += 1;
            (e.0, e.1.clone())
        };
        self.known
            .lock()
            .unwrap()
            .insert(id, (status.clone(), result.map(String::from)));
        self.report_raw(&job, seq, &self.address.clone(), status, result)
            .await;
    }

    /// Sends a report with an explicit sequence and source.
    pub async fn report_raw(
        &self,
        job: &ScheduleJob,
        seq: u64,
        source: &str,
        status: W,
        result: Option<&str>,
    ) {
        self.handle
            .send(ReportInstanceStatus {
                app_id: job.app_id,
                job_id: job.job_id,
                instance_id: job.instance_id,
                workflow_instance_id: None,
                status,
                result: result.map(String::from),
                total_tasks: 1,
                succeeded_tasks: 0,
                failed_tasks: 0,
                start_time_ms: 0,
                end_time_ms: None,
                report_time_ms: 0,
                report_seq: seq,
                source_address: source.into(),
                appended_workflow_context: vec![],
                alert: false,
            })
            .await
            .unwrap();
    }
}

/// Every instance of `job`, oldest first.
pub async fn instances(api: &Arc<dyn Api>, app: &AppRef, job: JobId) -> Vec<InstanceView> {
    let mut v = api
        .list_instances(
            app.clone(),
            ferrojob::api::InstanceQuery {
                job_id: Some(job),
                limit: Some(1000),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .items;
    v.reverse();
    v
}

/// Waits until `job` has `n` instances, all SUCCEED.
pub async fn succeeded(
    api: &Arc<dyn Api>,
    app: &AppRef,
    job: JobId,
    n: usize,
) -> Vec<InstanceView> {
    until(&format!("{n} succeeded instances of {job}"), || async {
        let v = instances(api, app, job).await;
        (v.len() == n && v.iter().all(|i| i.status == S::Succeed)).then_some(v)
    })
    .await
}
