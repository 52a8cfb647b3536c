//! `shoal console`: the live console over the configured store and the listed proxies.

use anyhow::Context as _;
use shoal_console::{Console, ConsoleConfig, Sources};

use super::Ctx;
use crate::{
    cli::ConsoleArgs,
    error::{Outcome, UsageError},
};

/// The token: `--token-file`, else `SHOAL_CONSOLE_TOKEN`.
fn token(args: &ConsoleArgs) -> anyhow::Result<Option<String>> {
    if let Some(file) = &args.token_file {
        let t = std::fs::read_to_string(file)
            .map_err(|e| UsageError(format!("--token-file {}: {e}", file.display())))?;
        return Ok(Some(t.trim().to_owned()));
    }
    Ok(std::env::var("SHOAL_CONSOLE_TOKEN")
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty()))
}

/// `console`.
pub(crate) async fn run(ctx: &Ctx, args: &ConsoleArgs) -> anyhow::Result<Outcome> {
    let mut config = ConsoleConfig::default();
    config.proxies = args
        .proxies
        .iter()
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    config.token = token(args)?;
    config.read_only = args.read_only;
    config.allowed_hosts = args.allowed_hosts.clone();
    config.scrape_interval = args.scrape_interval.into();
    config.check().map_err(|e| UsageError(e.to_string()))?;
    let listen: std::net::SocketAddr = args.listen.parse().map_err(|_| {
        UsageError(format!(
            "--listen {:?}: not an address (IP:PORT)",
            args.listen
        ))
    })?;
    if !listen.ip().is_loopback() && config.token.is_none() {
        return Err(UsageError(format!(
            "--listen {listen} is not on loopback: give a token (--token-file or SHOAL_CONSOLE_TOKEN)"
        ))
        .into());
    }
    let opened = ctx.open().await?;
    // Reads go to Redis itself (not a cache, not a fallback): the console shows what the
    // fleet shares.
    let (store, redis) = match opened.redis() {
        Some(r) => (
            std::sync::Arc::new(r.store.clone()) as std::sync::Arc<dyn shoal_core::SessionStore>,
            Some(r.store.clone()),
        ),
        None => (opened.store(), None),
    };
    if redis.is_none() {
        eprintln!(
            "shoal console: the store is {} (this process only): sessions shown are this \
             process's; use the fleet's Redis URL",
            store.backend_name()
        );
    }
    let bus = match opened.notify_bus().await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "no bus: deletes reach other instances' caches only at their entry ttl");
            None
        }
    };
    let console = Console::new(config, Sources { store, redis, bus })
        .map_err(|e| UsageError(e.to_string()))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    eprintln!(
        "shoal console: http://{} (Ctrl-C to stop)",
        listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default()
    );
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    console.serve(listener, shutdown).await.context("console")?;
    let closed = opened.close().await;
    closed?;
    eprintln!("shoal console: stopped");
    Ok(Outcome::Success)
}
