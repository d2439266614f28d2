//! `ferrojob-server`: parse the configuration, launch the server, wait for Ctrl-C or SIGTERM,
//! shut down cleanly.

use std::process::ExitCode;

use clap::Parser;
use ferrojob_bin::server_config::ServerArgs;

/// mimalloc: the glibc allocator costs the dispatch path ~30 % of its CPU (measured).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = ServerArgs::parse();
    ferrojob_bin::service_main("info", || async move {
        let server = ferrojob::launch::launch(args.resolve()?).await?;
        // One machine-readable line on stdout, so scripts and tests learn the bound ports.
        println!(
            "ferrojob-server ready http={} transport={}",
            server.http_addr(),
            server.transport_addr()
        );
        match server.token_file() {
            Some(path) => tracing::info!(path = %path.display(), "admin token file"),
            None => tracing::info!("admin token given by configuration"),
        }
        ferrojob_bin::shutdown_signal().await;
        tracing::info!("shutting down");
        server.shutdown().await;
        Ok(())
    })
}
