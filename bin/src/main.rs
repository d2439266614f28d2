//! `ferrojob`: the command-line tool. Wiring only: parse arguments, set up logging, call the
//! library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod demo;
mod validate;

/// ferrojob: a fast, exact, durable job scheduler.
#[derive(Debug, Parser)]
#[command(name = "ferrojob", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the next trigger times of a time expression, one RFC 3339 timestamp per line.
    Validate(validate::Args),
    /// Run the embedded scheduler with sample jobs and show every fire live with its lateness.
    Demo(demo::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Validate(args) => validate::run(&args),
        Command::Demo(args) => demo::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
