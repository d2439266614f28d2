//! `ferrojob-worker`: the bundled worker (processors noop, sleep, sum_mr; shell and http with
//! `--allow-processor`). Parse flags, start the library's worker, run until Ctrl-C or SIGTERM.

use std::process::ExitCode;

use clap::Parser;
use ferrojob::worker::Worker;
use ferrojob_bin::worker_config::WorkerArgs;

/// mimalloc: the glibc allocator costs the dispatch path ~30 % of its CPU (measured).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = WorkerArgs::parse();
    ferrojob_bin::service_main("info", || async move {
        args.remove_stale_task_stores();
        let worker = Worker::builder(args.to_config()?)
            .builtins()
            .start()
            .await?;
        println!("ferrojob-worker ready address={}", worker.address());
        ferrojob_bin::shutdown_signal().await;
        tracing::info!("shutting down");
        worker.shutdown().await;
        Ok(())
    })
}
