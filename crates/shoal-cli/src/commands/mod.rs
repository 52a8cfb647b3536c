//! The subcommands. Each returns an [`Outcome`] (exit 0 or 1) or an error (see
//! [`crate::error`] for how errors become exit codes).

use std::future::Future;

use crate::{
    cli::{Command, SessionsCommand},
    config::Config,
    error::{Interrupted, Outcome},
    store::{OpenedStore, open_store},
};

pub(crate) mod analytics;
pub(crate) mod config;
pub(crate) mod console;
pub(crate) mod health;
pub(crate) mod proxy;
pub(crate) mod sessions;
pub(crate) mod stats;
pub(crate) mod sweep;
pub(crate) mod tail;
pub(crate) mod transfer;

/// What every command gets.
#[derive(Debug)]
pub(crate) struct Ctx {
    /// The effective configuration.
    pub(crate) config: Config,
    /// `--json`.
    pub(crate) json: bool,
}

impl Ctx {
    /// Opens the configured store for a one-shot command: without the instance's durable
    /// outage journal (`[resilience.journal] path` belongs to the long-running process — a
    /// proxy — and is locked by it; a command's writes during an outage are journaled in
    /// memory and drained before it exits).
    pub(crate) async fn open(&self) -> anyhow::Result<OpenedStore> {
        let mut config = self.config.clone();
        if config.resilience.config.journal.path.take().is_some() {
            tracing::debug!("one-shot command: the durable journal file is the proxy's; not used");
        }
        open_store(&config.store, &config).await
    }

    /// Opens the configured store for the long-running process (`proxy`), with its durable
    /// outage journal when one is configured (replayed first if the last run left writes in it).
    pub(crate) async fn open_instance(&self) -> anyhow::Result<OpenedStore> {
        open_store(&self.config.store, &self.config).await
    }
}

/// Runs `command`. Every command ends cleanly on
/// Ctrl-C: nothing half-written is kept (exports go to a temporary file, file stores are only
/// saved at the end).
pub(crate) async fn run(command: Command, ctx: &Ctx) -> anyhow::Result<Outcome> {
    match command {
        Command::Sessions(cmd) => {
            interruptible(async {
                match cmd {
                    SessionsCommand::List(a) => sessions::list(ctx, &a).await,
                    SessionsCommand::Show(a) => sessions::show(ctx, &a).await,
                    SessionsCommand::Frames(a) => sessions::frames(ctx, &a).await,
                    SessionsCommand::Delete(a) => sessions::delete(ctx, &a).await,
                    SessionsCommand::Count(a) => sessions::count(ctx, &a).await,
                }
            })
            .await
        }
        Command::Export(a) => interruptible(transfer::export(ctx, &a)).await,
        Command::Import(a) => interruptible(transfer::import(ctx, &a)).await,
        Command::Sweep => interruptible(sweep::run(ctx)).await,
        Command::Health => interruptible(health::run(ctx)).await,
        Command::Stats => interruptible(stats::run(ctx)).await,
        Command::Proxy(a) => proxy::run(ctx, &a).await,
        Command::Tail(a) => interruptible(tail::run(ctx, &a)).await,
        Command::Analytics(a) => interruptible(analytics::run(ctx, &a)).await,
        Command::Console(a) => console::run(ctx, &a).await,
        Command::Demo(a) => interruptible(crate::demo::run(ctx, &a)).await,
        Command::Config(crate::cli::ConfigCommand::Show) => config::show(ctx),
        Command::Config(crate::cli::ConfigCommand::Check(_)) => {
            // Handled before the configuration is loaded (see main).
            anyhow::bail!("config check is dispatched early")
        }
    }
}

/// Runs `fut` until it ends or Ctrl-C arrives; then it is dropped (its temporary files with it)
/// and the result is [`Interrupted`].
async fn interruptible<F>(fut: F) -> anyhow::Result<Outcome>
where
    F: Future<Output = anyhow::Result<Outcome>>,
{
    let signal = async {
        if tokio::signal::ctrl_c().await.is_err() {
            // No signal handling available: never interrupt.
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        r = fut => r,
        () = signal => Err(Interrupted.into()),
    }
}

/// Tells the user that changes to a `memory://` store end with the command.
pub(crate) fn note_ephemeral(opened: &OpenedStore, changed: bool) {
    if changed && opened.is_ephemeral() {
        eprintln!(
            "note: the memory:// store is discarded when shoal exits; use --store file://PATH \
             to keep changes"
        );
    }
}
