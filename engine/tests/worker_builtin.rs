//! The built-in processors: shell (output into the log, exit codes), http (against a tiny
//! local HTTP server answering canned responses), noop, sleep.

mod worker_support;

use std::net::SocketAddr;

use ferrojob::worker::Worker;
use ferrojob_transport::message::InstanceStatus;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use worker_support::*;

/// Answers `GET /ok` with 200 "hello", anything else with 500 "boom"; records request heads.
async fn tiny_http() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                let (status, body) = if head.starts_with("GET /ok ") {
                    ("200 OK", "hello".to_string())
                } else if head.starts_with("POST /echo-header ") {
                    let h = head
                        .lines()
                        .find_map(|l| l.strip_prefix("x-test: "))
                        .unwrap_or("missing")
                        .to_string();
                    ("201 Created", h)
                } else {
                    ("500 Internal Server Error", "boom".to_string())
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(response.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn http_succeeds_on_2xx_and_fails_otherwise() {
    let http = tiny_http().await;
    let mut server = FakeServer::start(SECRET).await;
    // The test server is on loopback, which the `http` processor refuses unless allowed.
    let mut allowed = config(server.addr);
    allowed.http_allow = vec!["127.0.0.1/32".parse().unwrap()];
    let worker = Worker::builder(allowed).builtins().start().await.unwrap();
    let mut conn = server.accept().await;

    conn.schedule(job(1, "http", &format!("http://{http}/ok")))
        .await;
    let last = conn.reports_until_final(1).await.pop().unwrap();
    assert_final(&last, InstanceStatus::Succeed);
    assert_eq!(last.result.as_deref(), Some("200 OK: hello"));

    conn.schedule(job(2, "http", &format!("http://{http}/nope")))
        .await;
    let last = conn.reports_until_final(2).await.pop().unwrap();
    assert_final(&last, InstanceStatus::Failed);
    assert_eq!(
        last.result.as_deref(),
        Some("500 Internal Server Error: boom")
    );

    let params = format!(
        r#"{{"url": "http://{http}/echo-header", "method": "post", "body": "x", "headers": {{"x-test": "yes"}}, "timeout_ms": 5000}}"#
    );
    conn.schedule(job(3, "http", &params)).await;
    let last = conn.reports_until_final(3).await.pop().unwrap();
    assert_final(&last, InstanceStatus::Succeed);
    assert_eq!(last.result.as_deref(), Some("201 Created: yes"));

    conn.schedule(job(4, "http", "ftp://example.invalid/"))
        .await;
    let last = conn.reports_until_final(4).await.pop().unwrap();
    assert_final(&last, InstanceStatus::Failed);
    assert!(last
        .result
        .unwrap()
        .contains("is not an http:// or https:// URL"));

    conn.schedule(job(5, "http", r#"{"url": 3}"#)).await;
    let last = conn.reports_until_final(5).await.pop().unwrap();
    assert_final(&last, InstanceStatus::Failed);
    assert!(last.result.unwrap().starts_with("http: bad params"));
    worker.shutdown().await;
}

#[tokio::test]
async fn http_refuses_loopback_and_metadata_unless_the_worker_allows_them() {
    let http = tiny_http().await;
    let mut server = FakeServer::start(SECRET).await;
    let worker = Worker::builder(config(server.addr))
        .builtins()
        .start()
        .await
        .unwrap();
    let mut conn = server.accept().await;
    for (id, url, ip, range) in [
        (1, format!("http://{http}/ok"), "127.0.0.1", "loopback"),
        (
            2,
            "http://169.254.169.254/latest/meta-data/".to_string(),
            "169.254.169.254",
            "link-local",
        ),
    ] {
        let params = format!(r#"{{"url": "{url}", "timeout_ms": 2000}}"#);
        conn.schedule(job(id, "http", &params)).await;
        let last = conn.reports_until_final(id).await.pop().unwrap();
        assert_final(&last, InstanceStatus::Failed);
        assert_eq!(
            last.result.as_deref(),
            Some(
                format!(
                    "http: destination {ip} is {range}; refused (start the worker with \
                     --http-allow to permit it)"
                )
                .as_str()
            )
        );
    }
    worker.shutdown().await;
}

#[tokio::test]
async fn shell_logs_output_and_reports_exit_codes() {
    let mut server = FakeServer::start(SECRET).await;
    let worker = Worker::builder(config(server.addr))
        .builtins()
        .start()
        .await
        .unwrap();
    let mut conn = server.accept().await;

    // The job's params are the command; the run's params are a variable, not code.
    let mut j = job(
        1,
        "shell",
        r#"echo "$FERROJOB_INSTANCE_PARAMS"; echo two; echo oops >&2"#,
    );
    j.instance_params = "one".into();
    conn.schedule(j).await;
    let last = conn.reports_until_final(1).await.pop().unwrap();
    assert_final(&last, InstanceStatus::Succeed);
    assert_eq!(last.result.as_deref(), Some("one\ntwo"));

    conn.schedule(job(2, "shell", "echo partial; exit 3")).await;
    let last = conn.reports_until_final(2).await.pop().unwrap();
    assert_final(&last, InstanceStatus::Failed);
    assert_eq!(last.result.as_deref(), Some("exit code 3: partial"));

    // The output lines of instance 1 reach the log (stderr as WARN).
    let mut lines = Vec::new();
    while lines.len() < 3 {
        let batch = conn
            .wait_for(|m| match m {
                ferrojob_transport::message::Message::LogBatch(b) => Some(b.clone()),
                _ => None,
            })
            .await;
        conn.logs.push(batch);
        lines = conn
            .logs
            .iter()
            .flat_map(|b| b.entries.iter())
            .filter(|e| e.instance_id == 1)
            .map(|e| (format!("{:?}", e.level), e.content.clone()))
            .collect();
    }
    lines.sort();
    assert_eq!(
        lines,
        vec![
            ("Info".to_string(), "one".to_string()),
            ("Info".to_string(), "two".to_string()),
            ("Warn".to_string(), "oops".to_string()),
        ]
    );
    worker.shutdown().await;
}

#[tokio::test]
async fn shell_output_beyond_its_bounds_is_cut_and_the_log_says_so() {
    let mut server = FakeServer::start(SECRET).await;
    let mut c = config(server.addr);
    c.shell_output = ferrojob::worker::builtin::OutputLimits {
        max_line_bytes: 100,
        max_output_bytes: 10_000,
    };
    let worker = Worker::builder(c).builtins().start().await.unwrap();
    let mut conn = server.accept().await;
    // `cat big.bin`: 8 MiB without a newline, then 100 000 short lines.
    conn.schedule(job(
        1,
        "shell",
        r"head -c 8388608 /dev/zero | tr '\0' x; echo; seq 1 100000",
    ))
    .await;
    let last = conn.reports_until_final(1).await.pop().unwrap();
    assert_final(&last, InstanceStatus::Succeed);
    // The result is still the output's last lines.
    assert!(last.result.as_deref().unwrap().ends_with("99999\n100000"));
    // Batches that arrived with the reports are in `conn.logs` already.
    let contents: Vec<String> = loop {
        let contents: Vec<String> = conn
            .logs
            .iter()
            .flat_map(|b| b.entries.iter())
            .filter(|e| e.instance_id == 1)
            .map(|e| e.content.clone())
            .collect();
        if contents.iter().any(|c| c.starts_with("[output cut: ")) {
            break contents;
        }
        let batch = conn
            .wait_for(|m| match m {
                ferrojob_transport::message::Message::LogBatch(b) => Some(b.clone()),
                _ => None,
            })
            .await;
        conn.logs.push(batch);
    };
    assert_eq!(
        contents.first().map(String::as_str),
        Some(format!("{} … [line cut: 8388508 more bytes]", "x".repeat(100)).as_str())
    );
    let logged: usize = contents.iter().map(String::len).sum();
    assert!(logged < 10_000 + 200, "{logged} bytes logged");
    let summary = contents.last().unwrap();
    assert!(
        summary.contains("not logged, beyond 10000 bytes"),
        "{summary}"
    );
    worker.shutdown().await;
}

#[tokio::test]
async fn noop_and_sleep() {
    let mut server = FakeServer::start(SECRET).await;
    let worker = Worker::builder(config(server.addr))
        .builtins()
        .start()
        .await
        .unwrap();
    let mut conn = server.accept().await;
    conn.schedule(job(1, "noop", "")).await;
    let last = conn.reports_until_final(1).await.pop().unwrap();
    assert_final(&last, InstanceStatus::Succeed);
    assert_eq!(last.result.as_deref(), Some(""));

    conn.schedule(job(2, "sleep", r#"{"ms": 5}"#)).await;
    let last = conn.reports_until_final(2).await.pop().unwrap();
    assert_final(&last, InstanceStatus::Succeed);
    assert_eq!(last.result.as_deref(), Some("slept 5 ms"));

    conn.schedule(job(3, "sleep", "soon")).await;
    let last = conn.reports_until_final(3).await.pop().unwrap();
    assert_final(&last, InstanceStatus::Failed);
    assert!(last.result.unwrap().starts_with("sleep: params must be"));
    worker.shutdown().await;
}
