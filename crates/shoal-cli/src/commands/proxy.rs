//! `shoal proxy`: the MCP Streamable HTTP reverse proxy on the configured store.

use anyhow::Context as _;
use shoal_proxy::{EventIdKey, ProxyConfig, UpstreamConfig};

use crate::{
    cli::ProxyArgs,
    commands::Ctx,
    error::{Outcome, UsageError},
    store::redact,
};

/// Serves until Ctrl-C or SIGTERM, then shuts down gracefully (exit 0).
pub(crate) async fn run(ctx: &Ctx, args: &ProxyArgs) -> anyhow::Result<Outcome> {
    let p = &ctx.config.proxy;
    let upstream = args
        .upstream
        .clone()
        .or_else(|| (!p.upstream.trim().is_empty()).then(|| p.upstream.clone()))
        .ok_or_else(|| {
            UsageError(
                "an upstream is needed: --upstream URL|stdio:'CMD ARGS' or proxy.upstream".into(),
            )
        })?;
    let upstream = UpstreamConfig::parse(&upstream).map_err(|e| UsageError(e.to_string()))?;
    let mut cfg = ProxyConfig::new(upstream.clone());
    p.apply_to(&mut cfg);
    if let Some(origins) = &args.allowed_origins {
        cfg.allowed_origins = crate::config::comma_list(origins);
    }
    cfg.check().map_err(|e| UsageError(format!("proxy.{e}")))?;
    let key_file = args
        .event_id_key_file
        .as_ref()
        .or(p.event_id_key_file.as_ref());
    if let Some(file) = key_file {
        cfg.event_id_key = EventIdKey::from_file(file).map_err(|e| UsageError(e.to_string()))?;
    }
    if let Some(file) = &p.event_id_previous_key_file {
        let previous = EventIdKey::from_file(file).map_err(|e| UsageError(e.to_string()))?;
        cfg.previous_event_id_keys.push(previous);
    }
    let listen = args.listen.clone().unwrap_or_else(|| p.listen.clone());

    // The global recorder before the store is opened: the cache and the resilience wrapper
    // register their handles when they are built, and `/metrics` shows them beside the
    // proxy's own.
    match shoal_proxy::MetricsExport::install_global() {
        Ok(export) => cfg.metrics = export,
        Err(e) => tracing::warn!(error = %e, "metrics: the proxy exports only its own"),
    }
    let mut opened = ctx.open_instance().await?;
    if opened.start_analytics() {
        tracing::debug!("analytics: this instance keeps them up to date when it holds the lease");
    }
    if key_file.is_none() {
        // No key configured: every instance on this store agrees on one through it.
        match EventIdKey::shared(&*opened.store(), shoal_proxy::EVENT_ID_KEY_NAME).await {
            Ok(key) => cfg.event_id_key = key,
            Err(e) => tracing::warn!(
                error = %e,
                "no event id key file and none agreed through the store: using a random key, so \
                 SSE streams can only be resumed on this instance (set --event-id-key-file or \
                 proxy.event_id_key_file on every instance)"
            ),
        }
    }
    // Cross-instance SSE wake-ups over the stack's pub/sub on the store's own servers, for
    // every Redis URL form (standalone, rediss, Sentinel, Cluster) — one subscription with the
    // cache's invalidations; followers still poll the store as a fallback. Other stores have
    // no other instances.
    match opened.notify_bus().await {
        Ok(Some(bus)) => cfg = cfg.with_bus(bus),
        Ok(None) => {}
        Err(e) => tracing::warn!(
            error = %e,
            "no pub/sub wake-ups between instances; followers poll the store"
        ),
    }
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr()?;
    if cfg.allowed_hosts.is_empty() && !addr.ip().is_loopback() {
        return Err(UsageError(format!(
            "listening on {addr}, not on loopback: set proxy.allowed_hosts to the host names \
             clients use (e.g. mcp.example.com), or * to accept any Host"
        ))
        .into());
    }
    let shown = match &upstream {
        UpstreamConfig::Http { url } => redact(url),
        UpstreamConfig::Stdio { command, .. } => format!("stdio:{command} …"),
        _ => "upstream".into(),
    };
    eprintln!(
        "shoal proxy: listening on http://{addr}{} -> {shown} (store {})",
        cfg.path,
        redact(&ctx.config.store)
    );
    let shutdown = async {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
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
    };
    let served = shoal_proxy::serve(listener, cfg, opened.store(), shutdown)
        .await
        .context("proxy");
    // Deferred cache writes, the outage journal and the bus, also after a failure.
    let saved = opened.save().await;
    let closed = opened.close().await;
    served?;
    saved?;
    closed?;
    eprintln!("shoal proxy: stopped");
    Ok(Outcome::Success)
}
