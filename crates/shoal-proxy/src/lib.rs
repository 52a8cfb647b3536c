//! # shoal-proxy
//!
//! An MCP Streamable HTTP reverse proxy whose sessions live in any Shoal
//! [`SessionStore`], so any instance can serve any session.
//!
//! ```text
//!  MCP client ──HTTP──▶ shoal-proxy (N instances) ──▶ upstream MCP server (HTTP or stdio)
//!                           │
//!                    SessionStore (memory, Redis, …)
//! ```
//!
//! - **Protocol eras.** Revisions 2025-03-26, 2025-06-18 and 2025-11-25 have sessions: the
//!   proxy mints a 128-bit CSPRNG session id on `initialize`, stores the session (client and
//!   server info, protocol version, initialize params, the upstream's session id, the
//!   principal) and answers 400 without a session id, 404 for an unknown or deleted one.
//!   2026-07-28 is sessionless: POSTs pass through, GET and DELETE are 405.
//! - **Frames.** Every message in both directions is a frame in the store, tagged with its
//!   stream id, written off the response path (SSE events before they are sent: their seq
//!   is their event id); slow requests, requests answered on a stream and the upstream's own
//!   requests to the client are pending until their response passes. The only store call a
//!   reply waits for is one read proving the session still exists (a memory hit on a
//!   hot-session cache with invalidation).
//! - **Event ids** are `<stream>.<seq>.<mac>`: the store's seq, so any instance can replay a
//!   stream from the store after `Last-Event-ID` and continue live with no gap and no
//!   duplicate; the MAC binds the id to its session.
//! - **Any instance, any session.** An instance loads an unknown session from the store and
//!   forwards with the stored upstream session id; for a stdio upstream it starts the server
//!   and replays the stored `initialize` first (single-flight; published only when done).
//!
//! ```no_run
//! use std::sync::Arc;
//! use shoal_core::MemoryStore;
//! use shoal_proxy::{ProxyConfig, UpstreamConfig, serve};
//!
//! # async fn demo() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let config = ProxyConfig::new(UpstreamConfig::parse("http://127.0.0.1:3001/mcp").unwrap());
//! serve(listener, config, Arc::new(MemoryStore::new()), async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await
//! # }
//! ```

use std::{future::Future, sync::Arc, time::Duration};

use axum::serve::ListenerExt as _;
use shoal_core::SessionStore;
use tokio_util::sync::CancellationToken;

mod admission;
pub mod bridge;
mod config;
mod error;
pub use shoal_core::event_id;
mod handlers;
pub mod metrics;
pub mod protocol;
mod record;
mod retention;
pub mod sse;
mod state;
mod stream;
mod upstream;
mod wake_fanout;

/// The name under which a proxy fleet without a configured key agrees on its event id key
/// ([`EventIdKey::shared`]).
pub const EVENT_ID_KEY_NAME: &str = "proxy.event-id-key";

pub use bridge::BridgeMode;
pub use config::{EventIdKey, ProxyConfig, QuotaConfig, UpstreamConfig};
pub use error::ConfigError;
pub use metrics::{DURATION_BUCKETS, Level, Metrics, MetricsExport, Tally};
pub use upstream::FORWARDED_HEADERS;

/// Fills `buf` from the OS CSPRNG.
#[allow(clippy::expect_used)]
pub(crate) fn fill_random(buf: &mut [u8]) {
    // Without an OS random source no id could be minted safely; shoal-core panics likewise.
    getrandom::fill(buf).expect("the OS random source is unavailable");
}

/// Installs rustls' ring provider as the process default when none is installed yet.
/// reqwest is built here without a bundled provider (ring is what the Redis backend uses too),
/// and refuses to build a client without one. Call it before building your own reqwest client
/// in a process that uses this crate.
pub fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// A running proxy's handle, for callers that want its metrics.
#[derive(Debug, Clone)]
pub struct ProxyHandle {
    metrics: Arc<Metrics>,
    state: Arc<state::ProxyState>,
}

impl ProxyHandle {
    /// The proxy's counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Whether cross-instance wake-ups flow: a bus that carries them is attached
    /// ([`ProxyConfig::bus`]) and up.
    pub fn wakeups_connected(&self) -> bool {
        self.state.wakeups.as_ref().is_some_and(|w| w.is_up())
    }
}

/// Serves the proxy on `listener` until `shutdown` completes, then stops gracefully: new
/// connections are refused, open SSE streams end (clients resume on another instance with
/// `Last-Event-ID`), upstream readers stop and release their leases.
///
/// Errors only when the configuration is unusable or the listener fails.
pub async fn serve<F>(
    listener: tokio::net::TcpListener,
    config: ProxyConfig,
    store: Arc<dyn SessionStore>,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let (fut, _handle) = prepare(listener, config, store, shutdown)?;
    fut.await
}

/// Like [`serve`], but returns the server future and a [`ProxyHandle`] first.
pub fn prepare<F>(
    listener: tokio::net::TcpListener,
    config: ProxyConfig,
    store: Arc<dyn SessionStore>,
    shutdown: F,
) -> std::io::Result<(
    impl Future<Output = std::io::Result<()>> + Send + 'static,
    ProxyHandle,
)>
where
    F: Future<Output = ()> + Send + 'static,
{
    let metrics = Arc::new(Metrics::new(
        config.metrics.clone(),
        store.backend_name(),
        &config.instance_id,
    ));
    let token = CancellationToken::new();
    let fanout = config
        .bus
        .clone()
        .and_then(|bus| wake_fanout::WakeupFanout::new(bus, metrics.clone()));
    if config.bus.is_some() && fanout.is_none() {
        tracing::warn!("the bus carries no wake-ups; followers poll the store");
    }
    let (fanout, feed) = match fanout {
        Some((f, feed)) => (Some(Arc::new(f)), Some(feed)),
        None => (None, None),
    };
    let mut config = config;
    let addr = listener.local_addr()?;
    if config.allowed_hosts.is_empty() {
        if !addr.ip().is_loopback() {
            return Err(std::io::Error::other(error::ConfigError::Setting {
                name: "allowed_hosts",
                reason: format!(
                    "the proxy listens on {addr}, not on loopback: list the host names clients \
                     use (e.g. mcp.example.com), or * to accept any Host"
                ),
            }));
        }
        config.allowed_hosts = protocol::LOOPBACK_HOSTS
            .iter()
            .map(|h| (*h).to_owned())
            .collect();
    }
    let inner = state::ProxyState::new(config, store, metrics.clone(), token.clone(), fanout)
        .map_err(std::io::Error::other)?;
    let inner = Arc::new(inner);
    let app = handlers::router(inner.clone());
    tracing::info!(%addr, instance = %inner.cfg.instance_id, store = inner.store.backend_name(), "shoal proxy listening");

    let idle = inner
        .store
        .limits()
        .session_ttl
        .min(Duration::from_secs(3600));
    let reaper_inner = inner.clone();
    let reaper_token = token.clone();
    let wake_inner = inner.clone();
    let handle_inner = inner.clone();
    let fut = async move {
        if let (Some(fanout), Some(feed)) = (wake_inner.wakeups.clone(), feed) {
            tracing::info!("cross-instance wake-ups over the bus");
            tokio::spawn(fanout.run(feed, wake_inner.shutdown.clone()));
        }
        let reaper = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(30));
            let mut upkeep = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = reaper_token.cancelled() => break,
                    _ = upkeep.tick() => reaper_inner.metrics.export().run_upkeep(),
                    _ = tick.tick() => {
                        let n = reaper_inner.evict_idle(idle);
                        if n > 0 {
                            tracing::debug!(evicted = n, "idle sessions forgotten");
                        }
                    }
                }
            }
        });
        let t2 = token.clone();
        // No Nagle delay on small JSON-RPC replies.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        let res = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                shutdown.await;
                tracing::info!("shutting down");
                t2.cancel();
            })
            .await;
        token.cancel();
        reaper.abort();
        res
    };
    Ok((
        fut,
        ProxyHandle {
            metrics,
            state: handle_inner,
        },
    ))
}
