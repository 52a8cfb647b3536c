//! The live console: a web dashboard for a Shoal fleet, rendered on the server and kept up
//! to date with server-sent events. No wasm, no CDN: the stylesheet and the one small
//! script are embedded in the binary.
//!
//! It watches:
//! - **the proxies**, through their `/metrics` (`collector`, `scrape`): requests, latency
//!   percentiles from the histograms, 5xx share, breaker state, outage journal, cache hit
//!   rate, each store operation's rate and percentiles;
//! - **the store**: live sessions, the change feed (its analytics' lag), Redis `INFO`
//!   (`redis_view`: memory against maxmemory, the eviction policy, evictions, clients,
//!   replication, the Cluster's nodes, with warnings for settings that endanger sessions),
//!   and the analytics kept from the feed;
//! - **incidents** (`timeline`): breakers opening and closing, proxies lost and back,
//!   journal replays, evictions, failovers, restarts — noticed between two readings.
//!
//! Pages (`pages`): overview, Redis, timeline, analytics (charts), session search, a session
//! with its frames as a timeline, one frame's payload (only on request, audited), and
//! confirmed actions: delete a session, delete every session of a principal.
//!
//! Access (`access`): loopback, or a token; `Host` allowlist; CSRF tokens; read-only mode;
//! actions audited on target `shoal::audit`.
//!
//! ```no_run
//! # async fn demo(store: std::sync::Arc<dyn shoal_core::SessionStore>) -> Result<(), shoal_console::ConsoleError> {
//! use shoal_console::{Console, ConsoleConfig, Sources};
//! let mut config = ConsoleConfig::default();
//! config.proxies = vec!["http://127.0.0.1:8080".into()];
//! let console = Console::new(config, Sources { store, redis: None, bus: None })?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:7070").await?;
//! console.serve(listener, std::future::pending()).await
//! # }
//! ```

pub mod access;
pub mod collector;
pub mod config;
pub mod error;
pub mod pages;
pub mod redis_view;
pub mod routes;
pub mod scrape;
pub mod snapshot;
pub mod timeline;

use std::{future::Future, sync::Arc};

pub use collector::{Collector, Sources};
pub use config::ConsoleConfig;
pub use error::ConsoleError;
pub use snapshot::Snapshot;
use tokio_util::sync::CancellationToken;

/// A console, ready to serve.
#[derive(Debug)]
pub struct Console {
    app: routes::AppState,
}

impl Console {
    /// Checks `config` and builds the console over `sources`; nothing runs yet.
    pub fn new(config: ConsoleConfig, sources: Sources) -> Result<Self, ConsoleError> {
        config.check()?;
        let access = access::Access::new(config.token.clone(), config.allowed_hosts.clone())
            .map_err(|reason| ConsoleError::Setting {
                name: "token",
                reason: reason.into(),
            })?;
        let read_only = config.read_only;
        let collector = Collector::new(config, sources)?;
        Ok(Console {
            app: Arc::new(routes::App {
                collector,
                access,
                read_only,
                stop: CancellationToken::new(),
            }),
        })
    }

    /// The router (for serving it yourself, or tests). Serve it with
    /// `into_make_service_with_connect_info::<SocketAddr>()`: access depends on the peer.
    pub fn router(&self) -> axum::Router {
        routes::router(self.app.clone())
    }

    /// The collector (start it with [`Collector::run`] when serving the router yourself).
    pub fn collector(&self) -> &Arc<Collector> {
        &self.app.collector
    }

    /// Runs the collector and serves on `listener` until `shutdown` completes. Refuses a
    /// listener off loopback unless a token is configured.
    pub async fn serve<F>(
        self,
        listener: tokio::net::TcpListener,
        shutdown: F,
    ) -> Result<(), ConsoleError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let addr = listener.local_addr()?;
        if !addr.ip().is_loopback() && !self.app.access.has_token() {
            return Err(ConsoleError::Setting {
                name: "token",
                reason: format!(
                    "the console listens on {addr}, not on loopback: set a token (at least 16 characters)"
                ),
            });
        }
        let stop = self.app.stop.clone();
        let collector = tokio::spawn(self.app.collector.clone().run(stop.clone()));
        tracing::info!(target: "shoal::console", %addr, read_only = self.app.read_only, proxies = self.app.collector.proxies(), "shoal console listening");
        let app = self
            .router()
            .into_make_service_with_connect_info::<std::net::SocketAddr>();
        let stop2 = stop.clone();
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                shutdown.await;
                stop2.cancel();
            })
            .await;
        stop.cancel();
        let _ = collector.await;
        served.map_err(ConsoleError::Io)
    }
}
