//! A fake ferrojob server for worker tests: a transport `Listener` with one app secret, and
//! helpers that wait (bounded) for the messages a worker sends.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferrojob::worker::{DangerousBuiltin, WorkerConfig};
use ferrojob_transport::message::{
    AlarmConfig, ExecuteType, InstanceStatus, LogBatch, LogConfig, LogLevel, LogType, Message,
    ProcessorType, ReportInstanceStatus, ScheduleJob, TimeExpressionType, WorkerHeartbeat,
};
use ferrojob_transport::net::{Accepted, ConnectionHandle, Incoming, Listener, NetConfig};
use ferrojob_transport::{AppSecret, AppSecrets, BackoffConfig, PeerInfo};
use tokio::sync::mpsc;

pub const APP: &str = "billing";
pub const SECRET: &str = "s3cret";
/// Upper bound for any single wait in these tests (a failure, not a timing assert).
pub const WAIT: Duration = Duration::from_secs(15);

pub fn net() -> NetConfig {
    NetConfig {
        backoff: BackoffConfig {
            base: Duration::from_millis(20),
            max: Duration::from_millis(200),
            jitter: 0.5,
        },
        ..NetConfig::default()
    }
}

/// A worker of [`APP`] with fast heartbeats, `shell` and `http` allowed.
pub fn config(server: SocketAddr) -> WorkerConfig {
    let mut c = strict_config(server);
    c.allow_processors = DangerousBuiltin::ALL.into_iter().collect();
    c
}

/// [`config`] without `shell` and `http`: the defaults of `WorkerConfig`.
pub fn strict_config(server: SocketAddr) -> WorkerConfig {
    let mut c = WorkerConfig::new(server, APP, SECRET);
    c.heartbeat_interval = Duration::from_millis(50);
    c.net = net();
    c
}

pub struct FakeServer {
    pub listener: Listener,
    pub addr: SocketAddr,
}

impl FakeServer {
    pub async fn start(secret: &str) -> FakeServer {
        Self::bind(SocketAddr::from(([127, 0, 0, 1], 0)), secret).await
    }

    pub async fn bind(addr: SocketAddr, secret: &str) -> FakeServer {
        let mut secrets: HashMap<String, AppSecret> = HashMap::new();
        secrets.insert(APP.to_string(), AppSecret::new(secret));
        let secrets: Arc<dyn AppSecrets> = Arc::new(secrets);
        let listener = Listener::bind(addr, net(), secrets).await.unwrap();
        let addr = listener.local_addr();
        FakeServer { listener, addr }
    }

    pub async fn accept(&mut self) -> Conn {
        let a: Accepted = tokio::time::timeout(WAIT, self.listener.accept())
            .await
            .expect("no worker connected in time")
            .unwrap();
        Conn {
            handle: a.handle,
            incoming: a.incoming,
            peer: a.peer,
            logs: Vec::new(),
        }
    }
}

pub struct Conn {
    pub handle: ConnectionHandle,
    pub incoming: mpsc::Receiver<Incoming>,
    pub peer: PeerInfo,
    /// Log batches seen while waiting for other messages.
    pub logs: Vec<LogBatch>,
}

impl Conn {
    pub fn worker_address(&self) -> String {
        match &self.peer {
            PeerInfo::Worker { worker_address, .. } => worker_address.clone(),
            other => panic!("not a worker: {other:?}"),
        }
    }

    pub async fn next(&mut self) -> Message {
        tokio::time::timeout(WAIT, self.incoming.recv())
            .await
            .expect("no message in time")
            .expect("connection closed")
            .message
    }

    /// The next message `f` accepts; log batches on the way are kept in `self.logs`.
    pub async fn wait_for<T>(&mut self, mut f: impl FnMut(&Message) -> Option<T>) -> T {
        loop {
            let m = self.next().await;
            if let Some(t) = f(&m) {
                return t;
            }
            if let Message::LogBatch(b) = m {
                self.logs.push(b);
            }
        }
    }

    pub async fn heartbeat(&mut self) -> WorkerHeartbeat {
        self.wait_for(|m| match m {
            Message::WorkerHeartbeat(h) => Some(h.clone()),
            _ => None,
        })
        .await
    }

    /// The next report about `instance_id`.
    pub async fn report(&mut self, instance_id: u64) -> ReportInstanceStatus {
        self.wait_for(|m| match m {
            Message::ReportInstanceStatus(r) if r.instance_id == instance_id => Some(r.clone()),
            _ => None,
        })
        .await
    }

    /// Reports of `instance_id` up to and including the final one.
    pub async fn reports_until_final(&mut self, instance_id: u64) -> Vec<ReportInstanceStatus> {
        let mut out = Vec::new();
        loop {
            let r = self.report(instance_id).await;
            let last = r.status.is_final();
            out.push(r);
            if last {
                return out;
            }
        }
    }

    pub async fn schedule(&self, job: ScheduleJob) {
        self.handle.send(job).await.unwrap();
    }
}

/// A connection to a worker's listener from a holder of the app secret who claims to be the
/// worker at `claimed_address` (a TaskTracker, real or forged).
pub async fn peer(worker: &str, claimed_address: &str) -> Conn {
    let identity = ferrojob_transport::ClientIdentity {
        app_name: APP.into(),
        worker_address: claimed_address.into(),
        tags: Vec::new(),
        client_version: "test peer".into(),
        secret: AppSecret::new(SECRET),
    };
    // A worker's listener accepts as the worker role only.
    let net = NetConfig {
        role: ferrojob_transport::Role::Worker,
        ..net()
    };
    let c =
        ferrojob_transport::net::connect(worker.parse().unwrap(), net, identity, Arc::default())
            .await
            .unwrap();
    Conn {
        handle: c.handle,
        incoming: c.incoming,
        peer: c.peer,
        logs: Vec::new(),
    }
}

/// A STANDALONE CRON instance of `processor` with no timeout and no retries.
pub fn job(instance_id: u64, processor: &str, params: &str) -> ScheduleJob {
    ScheduleJob {
        app_id: 1,
        job_id: 10,
        instance_id,
        workflow_instance_id: None,
        execute_type: ExecuteType::Standalone,
        processor_type: ProcessorType::BuiltIn,
        processor_info: processor.into(),
        job_params: params.into(),
        instance_params: String::new(),
        instance_timeout_ms: 0,
        concurrency: 1,
        task_retry_num: 0,
        time_expression_type: TimeExpressionType::Cron,
        time_expression: "0 * * * * ?".into(),
        max_instance_num: 0,
        all_worker_addresses: Vec::new(),
        max_worker_count: 0,
        log_config: LogConfig {
            log_type: LogType::Online,
            level: LogLevel::Info,
        },
        alarm_config: AlarmConfig {
            threshold: 0,
            statistic_window_s: 0,
            silence_window_s: 0,
        },
        dispatch_time_ms: 0,
        report_seq_base: 0,
        workflow_context: String::new(),
        trigger_key: format!("instance-{instance_id}"),
        trigger_time_ms: 0,
        epoch: 0,
    }
}

/// Waits (bounded) until `f` holds, checking every few milliseconds.
pub async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub fn assert_final(r: &ReportInstanceStatus, status: InstanceStatus) {
    assert_eq!(r.status, status, "report: {r:?}");
    assert!(r.end_time_ms.is_some());
}
