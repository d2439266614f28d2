//! End to end over TLS: the real `ferrojob-server` with a certificate signed by a test CA,
//! two `ferrojob-worker`s that trust the CA and serve their peer listeners with the same
//! certificate, a BROADCAST job (the server reaches both workers, one worker reaches the
//! other), HTTPS on the OpenAPI, and a worker that trusts another CA left out.
//!
//! Real time: every wait polls a condition with a generous deadline; nothing asserts a
//! duration.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use ferrojob::api::{AppCreated, CreateApp, Created, InstanceView, RunCreated, WorkerList};
use ferrojob::ids::JobId;
use ferrojob::model::{ExecuteType, InstanceStatus};
use ferrojob::time_expression::TimeExpressionType;
use ferrojob_transport::tls::ClientTls;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;
use common::*;

/// Writes a CA and a certificate for `localhost` / 127.0.0.1 signed by it into `dir`
/// (`<name>-ca.pem`, `<name>-cert.pem`, `<name>-key.pem`).
fn write_pki(dir: &Path, name: &str) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("ferrojob {name} CA"));
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    std::fs::write(dir.join(format!("{name}-ca.pem")), ca.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}-cert.pem")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}-key.pem")), key.serialize_pem()).unwrap();
}

fn path(dir: &Path, file: &str) -> String {
    dir.join(file).to_str().unwrap().to_owned()
}

/// One HTTPS request (HTTP/1.1, `Connection: close`) with the admin token; the status and
/// the body.
async fn https(
    tls: &ClientTls,
    addr: SocketAddr,
    method: &str,
    target: &str,
    body: Option<String>,
) -> Result<(u16, Vec<u8>), String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let mut stream = tls
        .connector()
        .connect(tls.server_name_for(addr), tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let body = body.unwrap_or_default();
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream
        .write_all(format!("{head}{body}").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    // A peer that closes without close_notify ends the read with an error after the data.
    let _ = stream.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) = text.split_once("\r\n\r\n").ok_or("no response head")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no status")?;
    Ok((status, rest.as_bytes().to_vec()))
}

async fn call<T: serde::de::DeserializeOwned>(
    tls: &ClientTls,
    addr: SocketAddr,
    method: &str,
    target: &str,
    body: Option<String>,
) -> T {
    let (status, body) = https(tls, addr, method, target, body).await.unwrap();
    assert!(
        (200..300).contains(&status),
        "{method} {target}: {status} {}",
        String::from_utf8_lossy(&body)
    );
    serde_json::from_slice(&body).unwrap()
}

fn worker_args(transport: SocketAddr, dir: &Path, ca: &str, tag: &str) -> Vec<String> {
    [
        "--server",
        &transport.to_string(),
        "--app",
        APP,
        "--secret",
        SECRET,
        "--tag",
        tag,
        "--heartbeat-interval-ms",
        "200",
        "--memory-store",
        "--tls-ca",
        &path(dir, &format!("{ca}-ca.pem")),
        "--tls-server-name",
        "localhost",
        "--tls-cert",
        &path(dir, "test-cert.pem"),
        "--tls-key",
        &path(dir, "test-key.pem"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_workers_and_api_talk_over_tls_and_a_worker_trusting_another_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_pki(d, "test");
    write_pki(d, "other");
    let server_args: Vec<String> = [
        "--data-dir",
        &path(d, "data"),
        "--http",
        "127.0.0.1:0",
        "--listen",
        "127.0.0.1:0",
        "--admin-token",
        TOKEN,
        "--tls-cert",
        &path(d, "test-cert.pem"),
        "--tls-key",
        &path(d, "test-key.pem"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let server = Proc::spawn(
        env!("CARGO_BIN_EXE_ferrojob-server"),
        &server_args,
        d,
        "server",
    );
    let http: SocketAddr = server.field("http").parse().unwrap();
    let transport: SocketAddr = server.field("transport").parse().unwrap();
    let tls = ClientTls::from_ca_pem_file(&d.join("test-ca.pem"))
        .unwrap()
        .with_server_name("localhost")
        .unwrap();

    // HTTPS only: plain HTTP gets no answer, a client trusting another CA no connection.
    let plain = ferrojob::https::HttpsRoots::public()
        .client()
        .unwrap()
        .get(format!("http://{http}/healthz"))
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP answered: {plain:?}");
    let other = ClientTls::from_ca_pem_file(&d.join("other-ca.pem"))
        .unwrap()
        .with_server_name("localhost")
        .unwrap();
    let refused = https(&other, http, "GET", "/healthz", None).await;
    assert!(
        matches!(&refused, Err(e) if e.starts_with("TLS")),
        "{refused:?}"
    );

    let created: AppCreated = call(
        &tls,
        http,
        "POST",
        "/v1/apps",
        Some(
            serde_json::to_string(&CreateApp {
                name: APP.into(),
                secret: SECRET.into(),
            })
            .unwrap(),
        ),
    )
    .await;
    assert_eq!(created.name, APP);

    let mut workers = Vec::new();
    for (i, ca) in ["test", "test", "other"].iter().enumerate() {
        workers.push(Proc::spawn(
            env!("CARGO_BIN_EXE_ferrojob-worker"),
            &worker_args(transport, d, ca, &format!("t{i}")),
            d,
            &format!("worker{i}"),
        ));
    }
    let diagnostics = |workers: &[Proc]| {
        let mut out = format!("--- server ---\n{}", server.stderr_text());
        for (i, w) in workers.iter().enumerate() {
            out.push_str(&format!("\n--- worker{i} ---\n{}", w.stderr_text()));
        }
        out
    };
    // The worker that trusts the other CA fails its TLS handshake with the server.
    wait_for(
        "the refused worker's TLS error",
        Duration::from_secs(20),
        || async {
            let text = workers[2].stderr_text();
            (text.contains("TLS") && text.contains("UnknownIssuer")).then_some(())
        },
    )
    .await;
    let listed = wait_for("two workers", Duration::from_secs(20), || async {
        let list: WorkerList =
            call(&tls, http, "GET", &format!("/v1/apps/{APP}/workers"), None).await;
        (list.workers.len() == 2).then_some(list)
    })
    .await;
    let advertised: Vec<String> = workers[..2].iter().map(|w| w.field("address")).collect();
    for w in &listed.workers {
        assert!(
            advertised.contains(&w.address),
            "{w:?} not one of {advertised:?}"
        );
    }

    // BROADCAST: the TaskTracker worker starts the task on the other one over the peer
    // listener, with TLS and the worker role.
    let mut job = body("bcast", TimeExpressionType::Api, "", "noop", "");
    job.execute_type = ExecuteType::Broadcast;
    let job: Created<JobId> = call(
        &tls,
        http,
        "POST",
        &format!("/v1/apps/{APP}/jobs"),
        Some(serde_json::to_string(&job).unwrap()),
    )
    .await;
    let run: RunCreated = call(
        &tls,
        http,
        "POST",
        &format!("/v1/apps/{APP}/jobs/{}/run", job.id.get()),
        Some("{}".into()),
    )
    .await;
    let instance = wait_for(
        "the broadcast instance",
        Duration::from_secs(30),
        || async {
            let i: InstanceView = call(
                &tls,
                http,
                "GET",
                &format!("/v1/apps/{APP}/instances/{}", run.instance_id.get()),
                None,
            )
            .await;
            i.status.is_final().then_some(i)
        },
    )
    .await;
    assert_eq!(
        instance.status,
        InstanceStatus::Succeed,
        "{instance:?}\n{}",
        diagnostics(&workers)
    );
    let list: WorkerList = call(&tls, http, "GET", &format!("/v1/apps/{APP}/workers"), None).await;
    assert_eq!(list.workers.len(), 2, "{}", diagnostics(&workers));
}

/// Runs the `ferrojob` CLI with `args` after `--url URL --token TOKEN`: (exit code, stdout,
/// stderr).
fn ferrojob_cli(url: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferrojob"))
        .args(["--url", url, "--token", TOKEN])
        .args(args)
        .env_remove("FERROJOB_TLS_CA")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_speaks_https_with_the_servers_ca_and_refuses_other_cas_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_pki(d, "test");
    write_pki(d, "other");
    let server_args: Vec<String> = [
        "--data-dir",
        &path(d, "data"),
        "--http",
        "127.0.0.1:0",
        "--listen",
        "127.0.0.1:0",
        "--admin-token",
        TOKEN,
        "--tls-cert",
        &path(d, "test-cert.pem"),
        "--tls-key",
        &path(d, "test-key.pem"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let server = Proc::spawn(
        env!("CARGO_BIN_EXE_ferrojob-server"),
        &server_args,
        d,
        "server",
    );
    let http: SocketAddr = server.field("http").parse().unwrap();
    let url = format!("https://localhost:{}", http.port());
    let ca = path(d, "test-ca.pem");
    let ok = |args: &[&str]| {
        let mut all = vec!["--tls-ca", ca.as_str()];
        all.extend_from_slice(args);
        let (code, stdout, stderr) = ferrojob_cli(&url, &all);
        assert_eq!(code, Some(0), "ferrojob {args:?}: {stderr}");
        stdout
    };

    ok(&["app", "create", "--name", APP, "--secret", SECRET]);
    assert!(ok(&["app", "list"]).contains(APP));
    let id = ok(&[
        "job",
        "create",
        "--app",
        APP,
        "--name",
        "over-https",
        "--type",
        "api",
        "--processor",
        "noop",
    ]);
    let id = id.trim().to_owned();
    assert!(ok(&["job", "list", "--app", APP]).contains("over-https"));
    let instance = ok(&["job", "run", "--app", APP, &id]);
    let instance = instance.trim().to_owned();
    let got: serde_json::Value =
        serde_json::from_str(&ok(&["instance", "get", "--app", APP, &instance])).unwrap();
    assert_eq!(got["job_id"].to_string(), id);

    // Without the CA (the public roots) and with another CA: a clear error, exit 2.
    let other = path(d, "other-ca.pem");
    for args in [
        vec!["app", "list"],
        vec!["--tls-ca", other.as_str(), "app", "list"],
    ] {
        let (code, stdout, stderr) = ferrojob_cli(&url, &args);
        assert_eq!(code, Some(2), "{args:?}: {stdout} {stderr}");
        assert!(
            stderr.contains(&format!(
                "TLS handshake with localhost:{} failed",
                http.port()
            )) && stderr.contains("not signed by a CA this client trusts")
                && stderr.contains("--tls-ca"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // A CA file that does not exist or holds no certificate.
    let (code, _, stderr) = ferrojob_cli(&url, &["--tls-ca", &path(d, "nope.pem"), "app", "list"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--tls-ca") && stderr.contains("nope.pem"),
        "{stderr}"
    );
    let (code, _, stderr) =
        ferrojob_cli(&url, &["--tls-ca", &path(d, "test-key.pem"), "app", "list"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("no CERTIFICATE block"), "{stderr}");
    // Plain http:// to the TLS port fails as a request error, not a panic.
    let (code, _, stderr) = ferrojob_cli(&format!("http://{http}"), &["app", "list"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
