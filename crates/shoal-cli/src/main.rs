//! `shoal`: the command-line tool of Shoal (shared, durable sessions for MCP proxies).
//!
//! `shoal --help` lists the subcommands, store URLs, configuration sources and exit codes.

// A command's future nests the whole stack's (cache → resilience → Redis → pub/sub); computing
// the layout of `health::run`'s can pass rustc's default query depth of 128, depending on
// which crates are linked.
#![recursion_limit = "256"]

use std::{io::IsTerminal as _, process::ExitCode};

use clap::{CommandFactory as _, FromArgMatches as _, parser::ValueSource};

mod cli;
mod commands;
mod config;
mod demo;
mod error;
mod output;
mod store;

use cli::{Cli, Command, ConfigCommand};

/// mimalloc instead of the system allocator: every request allocates (commands, replies,
/// decoded sessions) on one thread and often frees on another, where glibc's malloc spends
/// ~16% of the client's CPU (measured with `perf` on `shoal-bench --mix get=1`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use config::{LogConfig, LogFormat, Overrides, Sources};
use error::{EXIT_FAILURE, EXIT_OK, EXIT_USAGE, Outcome, UsageError, error_text, exit_code_for};

fn main() -> ExitCode {
    let matches = match Cli::command().try_get_matches() {
        Ok(m) => m,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(EXIT_USAGE));
        }
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(EXIT_USAGE);
        }
    };
    // `--store` typed on the command line is a flag (highest precedence); taken from
    // SHOAL_STORE it belongs to the environment layer, where the config loader reads it.
    let store_is_flag = matches.value_source("store") == Some(ValueSource::CommandLine);

    let code = match run(cli, store_is_flag) {
        Ok(Outcome::Success) => EXIT_OK,
        Ok(Outcome::Failure) => EXIT_FAILURE,
        Err(e) => {
            let (code, print) = exit_code_for(&e);
            if print {
                eprintln!("error: {}", error_text(&e));
            }
            code
        }
    };
    ExitCode::from(code)
}

fn run(cli: Cli, store_is_flag: bool) -> anyhow::Result<Outcome> {
    let g = &cli.global;
    let flags = overrides(g, store_is_flag);
    let sources = Sources::from_process(g.config.clone(), flags);
    let json = g.json;

    if let Command::Config(ConfigCommand::Check(args)) = &cli.command {
        init_logging(&LogConfig::default(), g.verbose);
        return commands::config::check(&args.file, sources, json);
    }

    let config = config::load(&sources).map_err(UsageError::from)?;
    init_logging(&config.log, g.verbose);
    tracing::debug!(?config, "configuration loaded");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let ctx = commands::Ctx { config, json };
    let result = runtime.block_on(commands::run(cli.command, &ctx));
    // Do not wait for blocking reads that can never finish (stdin after Ctrl-C).
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    result
}

/// The command-line layer of the configuration: the global flags as [`Overrides`].
/// `store_is_flag`: `--store` was typed (taken from `SHOAL_STORE` it belongs to the
/// environment layer).
fn overrides(g: &cli::GlobalArgs, store_is_flag: bool) -> Overrides {
    Overrides {
        store: if store_is_flag { g.store.clone() } else { None },
        log_level: match g.verbose {
            0 => None,
            1 => Some("debug".into()),
            _ => Some("trace".into()),
        },
        log_format: g.log_format,
        fallback: g.fallback,
        cache: g.cache || g.cache_consistency.is_some() || g.cache_write_mode.is_some(),
        cache_consistency: g.cache_consistency,
        cache_write_mode: g.cache_write_mode,
    }
}

/// Logs go to stderr only. The filter is `-v`/`-vv` if given, else `RUST_LOG` if set, else
/// `log.level` from the configuration.
fn init_logging(log: &LogConfig, verbose: u8) {
    use tracing_subscriber::EnvFilter;

    let from_config = || EnvFilter::try_new(&log.level).unwrap_or_else(|_| EnvFilter::new("warn"));
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if verbose == 0 && !v.trim().is_empty() => {
            EnvFilter::try_new(&v).unwrap_or_else(|e| {
                eprintln!("warning: ignoring RUST_LOG={v:?}: {e}");
                from_config()
            })
        }
        _ => from_config(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match log.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
