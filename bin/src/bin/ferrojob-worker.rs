//! `ferrojob-worker`: the bundled worker (processors shell, http, noop, sleep). Parse flags,
//! start the library's worker, run until Ctrl-C or SIGTERM.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use ferrojob::worker::Worker;
use ferrojob_bin::worker_config::WorkerArgs;

/// mimalloc: the glibc allocator costs the dispatch path ~30 % of its CPU (measured).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = WorkerArgs::parse();
    ferrojob_bin::init_logging("info");
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &WorkerArgs) -> Result<()> {
    let config = args.to_config()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async {
        let worker = Worker::builder(config).builtins().start().await?;
        println!("ferrojob-worker ready address={}", worker.address());
        ferrojob_bin::shutdown_signal().await;
        tracing::info!("shutting down");
        worker.shutdown().await;
        Ok(())
    })
}
