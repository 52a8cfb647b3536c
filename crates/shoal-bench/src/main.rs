//! `shoal-bench`: Shoal's benchmark, outside the shipped `shoal` binary.
//!
//! A bounded, mixed workload against a store opened exactly as `shoal` opens it
//! ([`shoal_redis::stack::Stack`]), side by side with the original design measured in the same
//! run ([`baseline`]), plus an append-scaling measurement, `--verify` (every acknowledged frame
//! read back: lost, duplicated, out of order), figures of the resilience and cache wrappers
//! ([`wrappers`]) and, on standalone Redis, raw redis-rs and `redis-benchmark` baselines
//! ([`redis_baseline`]). [`run`] holds the phases; `--help` lists every flag.
//!
//! ```sh
//! cargo run --release -p shoal-bench -- --verify
//! cargo run --release -p shoal-bench -- --store redis://127.0.0.1:6379 --duration 3s --json
//! ```

use std::process::ExitCode;

use clap::Parser as _;

mod args;
mod baseline;
mod error;
mod open;
mod redis_baseline;
mod report;
mod run;
mod verify;
mod workload;
mod wrappers;

use args::Cli;
use error::{EXIT_OK, EXIT_USAGE, exit_code_for};

/// The allocator the `shoal` binary uses, so figures match what it runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(EXIT_USAGE));
        }
    };
    init_logging(cli.verbose);
    let code = match bench(&cli) {
        Ok(true) => EXIT_OK,
        Ok(false) => error::EXIT_FAILURE,
        Err(e) => {
            if e.downcast_ref::<error::Interrupted>().is_none() {
                // A backend's or configuration's message may carry a URL.
                eprintln!(
                    "error: {}",
                    shoal_core::redact::redact_text(&format!("{e:#}"))
                );
            }
            exit_code_for(&e)
        }
    };
    ExitCode::from(code)
}

/// Opens the store, runs the benchmark, writes what the store deferred and closes it.
/// `Ok(false)`: the run completed but `--verify` found a problem.
fn bench(cli: &Cli) -> anyhow::Result<bool> {
    let (store_url, config) = open::settings(cli)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        // The resilience wrapper registers its metric handles at first use: the bench's
        // counting recorder goes in first.
        if config.resilience.fallback.is_some() {
            wrappers::CountingRecorder::install();
        }
        // The store's background sweeper runs for as long as the bench does.
        let stack = open::open(&store_url, &config).await?;
        let redis = open::redis_backing(&stack);
        let wrappers = wrappers::Wrappers {
            resilient: stack.resilient().cloned(),
            cache: stack.cache().cloned(),
            uncached: stack.cache().map(|_| stack.uncached_store()),
            redis: redis.clone(),
        };
        let ran = run::run(
            &cli.bench,
            stack.store(),
            redis.as_ref(),
            &wrappers,
            cli.json,
        )
        .await;
        drop(wrappers);
        // Deferred writes and the journal, also after a failed or interrupted run.
        let saved = stack.save().await;
        let closed = stack.close().await;
        let ok = ran?;
        saved?;
        closed?;
        Ok(ok)
    });
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    result
}

/// Logs go to stderr: warnings by default, `-v` debug, `-vv` trace (`RUST_LOG` without `-v`).
fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let filter = match (verbose, std::env::var("RUST_LOG")) {
        (0, Ok(v)) if !v.trim().is_empty() => {
            EnvFilter::try_new(&v).unwrap_or_else(|_| EnvFilter::new("warn"))
        }
        (0, _) => EnvFilter::new("warn"),
        (1, _) => EnvFilter::new("debug"),
        _ => EnvFilter::new("trace"),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
