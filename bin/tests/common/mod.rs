//! Shared by the end-to-end tests: real `ferrojob-server` / `ferrojob-worker` processes on
//! 127.0.0.1 with ephemeral ports and temp data dirs, driven through the Rust client.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ferrojob::api::{CreateApp, InstanceQuery, InstanceView, JobBody};
use ferrojob::client::Client;
use ferrojob::ids::JobId;
use ferrojob::model::InstanceStatus;
use ferrojob::time_expression::TimeExpressionType;

pub const TOKEN: &str = "e2e-admin-token";
pub const APP: &str = "e2e";
pub const SECRET: &str = "e2e-secret-0123456";

/// A child process killed (SIGKILL) when dropped; its stderr goes to a file for diagnosis.
pub struct Proc {
    pub child: Child,
    pub line: String,
    pub stderr: PathBuf,
}

impl Proc {
    pub fn spawn(exe: &str, args: &[String], log_dir: &Path, name: &str) -> Proc {
        Self::spawn_with_env(exe, args, &[], log_dir, name)
    }

    /// [`Proc::spawn`] with extra environment variables.
    pub fn spawn_with_env(
        exe: &str,
        args: &[String],
        env: &[(&str, &str)],
        log_dir: &Path,
        name: &str,
    ) -> Proc {
        let stderr = log_dir.join(format!("{name}.stderr"));
        let file = std::fs::File::create(&stderr).unwrap();
        let mut child = Command::new(exe)
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let stdout_path = log_dir.join(format!("{name}.stdout"));
        let mut rest = std::fs::File::create(&stdout_path).unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            // Keep draining so the child never blocks on a full pipe; what follows the ready
            // line goes to `<name>.stdout` (a worker's STDOUT job logs, for one).
            let _ = std::io::copy(&mut reader, &mut rest);
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        let proc = Proc {
            child,
            line,
            stderr,
        };
        assert!(
            proc.line.contains("ready"),
            "{name} did not start: {:?}\n{}",
            proc.line,
            proc.stderr_text()
        );
        proc
    }

    pub fn field(&self, key: &str) -> String {
        self.line
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}= in {:?}", self.line))
            .to_owned()
    }

    /// What the process printed on stdout after its ready line, so far.
    pub fn stdout_text(&self) -> String {
        std::fs::read_to_string(self.stderr.with_extension("stdout")).unwrap_or_default()
    }

    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub server: Proc,
    pub http: SocketAddr,
    pub transport: SocketAddr,
    pub workers: Vec<Proc>,
    pub client: Client,
}

pub fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

pub fn start_server(dir: &Path, transport: Option<SocketAddr>, name: &str) -> Proc {
    start_server_with(dir, transport, name, &[])
}

/// [`start_server`] with extra flags.
pub fn start_server_with(
    dir: &Path,
    transport: Option<SocketAddr>,
    name: &str,
    extra: &[String],
) -> Proc {
    let listen = transport.map_or("127.0.0.1:0".to_owned(), |a| a.to_string());
    let args: Vec<String> = [
        "--data-dir",
        dir.join("data").to_str().unwrap(),
        "--http",
        "127.0.0.1:0",
        "--listen",
        &listen,
        "--admin-token",
        TOKEN,
        // The end-to-end jobs run every few hundred ms to finish quickly.
        "--min-period-ms",
        "100",
        // The tests' alarm receivers listen on loopback.
        "--alarm-allow",
        "127.0.0.1/32",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(extra.iter().cloned())
    .collect();
    Proc::spawn(env!("CARGO_BIN_EXE_ferrojob-server"), &args, dir, name)
}

impl Cluster {
    pub async fn start(workers: usize, transport: Option<SocketAddr>) -> Cluster {
        Cluster::start_with(workers, transport, &[]).await
    }

    /// [`Cluster::start`] with extra server flags.
    pub async fn start_with(
        workers: usize,
        transport: Option<SocketAddr>,
        server_flags: &[String],
    ) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let server = start_server_with(dir.path(), transport, "server", server_flags);
        let http: SocketAddr = server.field("http").parse().unwrap();
        let transport: SocketAddr = server.field("transport").parse().unwrap();
        let client = Client::new(&format!("http://{http}"), TOKEN).unwrap();
        client
            .create_app(&CreateApp {
                name: APP.into(),
                secret: SECRET.into(),
            })
            .await
            .unwrap();
        let mut c = Cluster {
            dir,
            server,
            http,
            transport,
            workers: Vec::new(),
            client,
        };
        for i in 0..workers {
            c.add_worker(SECRET, &format!("t{i}"));
        }
        c.wait_workers(workers).await;
        c
    }

    /// Starts one more worker, with `shell` allowed (the tests' jobs use it).
    pub fn add_worker(&mut self, secret: &str, tag: &str) -> usize {
        self.add_worker_with(secret, tag, &["--allow-processor", "shell"])
    }

    /// Starts one more worker with extra command-line flags (and no `--allow-processor`
    /// unless they have it).
    pub fn add_worker_with(&mut self, secret: &str, tag: &str, extra: &[&str]) -> usize {
        let mut args = vec!["--secret", secret];
        args.extend_from_slice(extra);
        self.add_worker_env(tag, &args, &[])
    }

    /// Starts one more worker with these flags (the secret among them, or in `env` as
    /// `FERROJOB_SECRET`) and environment variables.
    pub fn add_worker_env(&mut self, tag: &str, extra: &[&str], env: &[(&str, &str)]) -> usize {
        let n = self.workers.len();
        let mut args: Vec<String> = [
            "--server",
            &self.transport.to_string(),
            "--app",
            APP,
            "--tag",
            tag,
            "--heartbeat-interval-ms",
            "200",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let w = Proc::spawn_with_env(
            env!("CARGO_BIN_EXE_ferrojob-worker"),
            &args,
            env,
            self.dir.path(),
            &format!("worker{n}"),
        );
        self.workers.push(w);
        n
    }

    pub async fn wait_workers(&self, n: usize) {
        wait_for(&format!("{n} workers"), Duration::from_secs(20), || async {
            let w = self.client.list_workers(APP).await.ok()?;
            (w.workers.len() == n).then_some(())
        })
        .await;
    }

    pub async fn job(&self, body: JobBody) -> JobId {
        self.client.create_job(APP, &body).await.unwrap().id
    }

    pub async fn instances(&self, job: JobId) -> Vec<InstanceView> {
        self.client
            .list_instances(
                APP,
                &InstanceQuery {
                    job_id: Some(job),
                    limit: Some(1000),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .items
    }

    pub async fn succeeded(&self, job: JobId) -> Vec<InstanceView> {
        let mut v: Vec<_> = self
            .instances(job)
            .await
            .into_iter()
            .filter(|i| i.status == InstanceStatus::Succeed)
            .collect();
        v.sort_by_key(|i| i.id);
        v
    }

    pub fn diagnostics(&self) -> String {
        let mut out = format!("--- server stderr ---\n{}", self.server.stderr_text());
        for (i, w) in self.workers.iter().enumerate() {
            out.push_str(&format!("\n--- worker{i} stderr ---\n{}", w.stderr_text()));
        }
        out
    }
}

/// Polls `f` every 50 ms until it yields a value, panicking after `limit`.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn body(
    name: &str,
    kind: TimeExpressionType,
    expr: &str,
    processor: &str,
    params: &str,
) -> JobBody {
    let mut b = JobBody::new(name, kind, expr, processor);
    b.params = params.into();
    b
}

/// `ferrojob --url .. --token .. args` against `c`: its stdout (the command must succeed).
pub fn cli(c: &Cluster, args: &[&str]) -> String {
    let url = format!("http://{}", c.http);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferrojob"))
        .args(["--url", &url, "--token", TOKEN])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ferrojob {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// PostgreSQL for the tests that need it: it must answer at `FERROJOB_TEST_POSTGRES`
/// (default `postgres://postgres@127.0.0.1:5432`, trust authentication) and `psql` must be
/// installed, or the test fails.
pub mod postgres {
    use std::process::Command;

    pub fn server_url() -> String {
        std::env::var("FERROJOB_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
    }

    pub fn psql(sql: &str) {
        let out = Command::new("psql")
            .arg(format!("{}/postgres", server_url()))
            .args(["-v", "ON_ERROR_STOP=1", "-qAtc", sql])
            .output()
            .expect("psql must be installed for the PostgreSQL tests");
        assert!(
            out.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A database of its own, dropped when the test ends.
    pub struct Database(pub String);

    impl Database {
        pub fn create() -> Database {
            let name = format!(
                "ferrojob_e2e_{}_{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .subsec_nanos()
            );
            psql(&format!("CREATE DATABASE {name}"));
            Database(name)
        }

        pub fn url(&self) -> String {
            format!("{}/{}", server_url(), self.0)
        }
    }

    impl Drop for Database {
        fn drop(&mut self) {
            psql(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0));
        }
    }
}
