//! Shared sessions and resumable SSE streams for [rmcp](https://docs.rs/rmcp) servers, on any
//! Shoal [`SessionStore`](shoal_core::SessionStore): memory, Redis (standalone, TLS,
//! Sentinel, Cluster), and the cache and resilience wrappers.
//!
//! Run several replicas of an rmcp Streamable HTTP server behind a load balancer: a session
//! initialized on one replica is served by any other, an SSE stream cut on one resumes on
//! another with `Last-Event-ID` (every event exactly once), and a session deleted on one is
//! 404 on all.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! # #[derive(Clone)] struct MyServer;
//! # impl rmcp::ServerHandler for MyServer {}
//! use rmcp::transport::streamable_http_server::StreamableHttpService;
//!
//! let shoal = shoal_rmcp::ShoalRmcp::open("redis://127.0.0.1:6379").await?;
//! let mcp = StreamableHttpService::new(|| Ok(MyServer), shoal.session_manager(), shoal.server_config());
//! let app: axum::Router = axum::Router::new().nest_service("/mcp", mcp);
//! # Ok(()) }
//! ```
//!
//! The parts, each usable alone:
//! - [`ShoalSessionStore`]: rmcp's `SessionStore` (the `initialize` parameters a replica
//!   needs to restore a session it has never seen);
//! - [`ShoalEventStore`]: rmcp's `EventStore` (SSE events as frames; tamper-evident ids that
//!   locate their stream; replays that follow the store while another replica still writes);
//! - [`ShoalSessionManager`]: rmcp's `LocalSessionManager` with the store deciding which
//!   sessions exist (limits at `initialize`, TTL slid per request, deletes seen by all).
//!
//! Supports rmcp 3.11 (pinned: `=3.11.0`).

mod builder;
mod error;
mod event_store;
pub mod inbox;
mod producer;
mod session_manager;
mod session_store;
mod sse_frame;
mod stateless_cleanup;
pub mod stream_ref;
mod wakeups;

pub use builder::{Builder, EVENT_ID_KEY_NAME, ShoalRmcp};
pub use error::{Error, Result};
pub use event_store::{ReplaySettings, ShoalEventStore};
pub use session_manager::ShoalSessionManager;
pub use session_store::ShoalSessionStore;
