//! What the three binaries share: logging setup, time formatting and the shutdown signal.
//! Nothing here schedules anything: the binaries only parse configuration and call the
//! `ferrojob` library.

use std::future::Future;
use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::{DateTime, SecondsFormat, Utc};

/// Logs to stderr, filtered by `RUST_LOG` (default: `default`).
pub fn init_logging(default: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// The body of a service binary's `main`: logging at `default_log` (unless `RUST_LOG`), a
/// multi-threaded tokio runtime, `body`; an error is printed and exits with code 2.
pub fn service_main<F, Fut>(default_log: &str, body: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    init_logging(default_log);
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
        .and_then(|runtime| runtime.block_on(body()));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Epoch milliseconds as RFC 3339 in UTC (the raw number if out of range).
pub fn fmt_ms(ms: i64) -> String {
    match DateTime::<Utc>::from_timestamp_millis(ms) {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Millis, true),
        None => ms.to_string(),
    }
}

/// Resolves on Ctrl-C (SIGINT) or, on Unix, SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub mod self_signed;
pub mod server_config;
pub mod worker_config;
