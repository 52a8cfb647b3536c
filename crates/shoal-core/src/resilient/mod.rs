//! The resilience wrapper [`Resilient<P, F>`]: a [`SessionStore`](crate::SessionStore) over
//! a *primary* store (usually Redis) and a *fallback* store (usually
//! [`MemoryStore`](crate::MemoryStore)) that keeps the proxy serving while the primary is in
//! trouble.
//!
//! # What it does to every call
//! - **Deadline.** Every attempt on the primary is bounded by
//!   [`op_timeout`](ResilienceConfig::op_timeout) (point operations) or
//!   [`bulk_timeout`](ResilienceConfig::bulk_timeout) (get_many, list, count, frames,
//!   sweep_expired, restore); a late answer is [`Error::Timeout`](crate::Error::Timeout).
//! - **Retries** (backoff with jitter, [`RetryConfig`]) only for idempotent operations — the
//!   reads, `touch` and `sweep_expired` — after `Unavailable` or `Timeout`, and only while the
//!   breaker lets calls through. `create`, `update`, `delete`, `append_frames`,
//!   `delete_frames`, `add_pending`, `take_pending` and `restore` are never retried: their
//!   effect after a timeout is unknown, and the caller gets the error.
//! - **Circuit breaker** ([`BreakerConfig`]): `Unavailable` and `Timeout` are failures; any
//!   other answer (also `NotFound`, `Conflict`) is a success. Closed → Open after
//!   `failure_threshold` consecutive failures or a failure ratio over a sliding window;
//!   Open → HalfOpen after `cooldown`; in HalfOpen a few live calls and the health monitor's
//!   probes reach the primary, `close_after` consecutive successes close it, a failure opens
//!   it again. While open, calls do not wait for the primary at all: they take the fallback
//!   path at once (fail fast).
//! - **Health monitor** ([`Resilient::spawn_monitor`]): probes `primary.health()` every
//!   [`interval`](HealthConfig::interval) under its own deadline, feeds the breaker, and once
//!   the breaker is closed drains the journal.
//!
//! # The fallback path (breaker open), per [`FallbackMode`]
//! - **`none`**: every call is [`Error::Unavailable`](crate::Error::Unavailable).
//! - **`read-only`**: reads (`get`, `get_many`, `frames`, `count_frames`, `list_pending`) are
//!   served from the fallback store when it holds the session — point it at a replica or a
//!   snapshot; a session it does not hold is `Unavailable`, never `NotFound`. `list`, `count`
//!   and every write are `Unavailable`.
//! - **`memory`**: writes are accepted into the fallback store and a bounded journal:
//!   - a session **created** (or restored) during the outage lives in the fallback and is
//!     marked *local*; every operation on it works, and its seqs are the ones it will keep;
//!   - for a session **held by the primary**, `append_frames`, `touch` and `delete` are
//!     journaled and acknowledged (appends get *provisional* seqs, see below); `get`,
//!     `frames`, `count_frames`, `list_pending`, `update`, `delete_frames`, `add_pending` and
//!     `take_pending` need the primary and are `Unavailable`;
//!   - a read of a session the fallback does not hold is `Unavailable`, never `NotFound`;
//!     `list` and `count` are `Unavailable` (a partial listing would look complete);
//!   - `touch` of a session held by the primary answers `now + session_ttl` by the wall
//!     clock (the primary's own answer is not available);
//!   - a full journal ([`JournalConfig`]) refuses the write with `Unavailable` ("journal is
//!     full", nothing written) and counts `shoal_resilient_journal_full_total`.
//!
//! # Guarantees
//! - **An acknowledged frame is stored in the primary exactly once, in the order it was
//!   acknowledged within its session**, also across an outage: frames acknowledged by the
//!   primary are there; frames acknowledged during an outage are drained into it after the
//!   frames the session had, in order. The one exception is a session that no longer exists
//!   when the journal is drained (deleted or expired elsewhere, or never existed): its
//!   journaled frames are dropped, exactly as if they had been appended just before the
//!   delete, and counted in
//!   `shoal_resilient_replay_dropped_total{reason="session_gone"}` with a warning.
//! - **A write that returned an error may or may not have been applied** — the caller was
//!   told. This is the case for a non-idempotent write that reached the primary and timed out
//!   or lost its connection (it is not retried, so it is applied at most once).
//! - **Draining is idempotent.** A drained append that fails without an answer
//!   (`Unavailable`, `Timeout`: the breaker trips) or with an unreadable one (`Backend`, e.g. a
//!   reply truncated by a lost connection: the breaker stays as it is) is marked in doubt;
//!   the next attempt first reads the primary's frames after the `last_seq` it saw before,
//!   and appends only if the exact frames (content, stream, direction, timestamp, content
//!   type, headers) are not there as one contiguous run. (The only way this can wrongly skip a
//!   frame is another writer appending byte-identical frames with the same millisecond
//!   timestamp in that window.) A local session whose `restore` failed the same way refuses
//!   writes (reads still work) until the next drain settles it. A write found absent by that
//!   read-back and failing with `Backend` again is taken as refused (below), so one batch the
//!   primary keeps failing cannot hold the journal forever.
//! - **Order.** While a session has journaled writes not yet drained, later writes to it are
//!   journaled too, even once the breaker has closed, so they reach the primary after them.
//!   A session's journaled writes are drained in the order they were accepted, one after
//!   another, under its lock. Sessions are started in the order of their first journaled
//!   write, up to [`JournalConfig::replay_concurrency`] at a time, so order holds within a
//!   session but not across sessions (as for live writes to different sessions). Until a
//!   local session is drained, `list` and `count` (served by the primary) do not include it.
//! - **Scope.** Without [`JournalConfig::path`] the journal lives in process memory: an
//!   instance that dies during an outage loses what it journaled (those writes were
//!   acknowledged). With it, every fallback-path write is appended to that file before it is
//!   acknowledged, and [`Resilient::recover`] replays the file when the instance starts again
//!   (the drain's progress is logged too, so a crash mid-drain reads back instead of writing
//!   twice).
//!
//! # Conflict rules when draining
//! - **Session deleted (or expired) elsewhere during the outage**: journaled appends and
//!   touches are dropped (metric + warning); a journaled delete is applied (idempotent).
//! - **Other instances appended meanwhile**: drained frames get the next seqs after theirs;
//!   the primary's per-session seq order is the truth.
//! - **A local session's id exists in the primary** (another instance created the same id —
//!   with random ids this means an id was reused on purpose): the primary's session wins and
//!   the local copy is dropped with an error log and
//!   `shoal_resilient_replay_dropped_total{reason="conflict"}`. A session the primary
//!   refuses (e.g. `max_sessions` reached) is dropped the same way (`reason="refused"`), and
//!   so are journaled frames it refuses. A refusal is a definite answer (`LimitExceeded`,
//!   `InvalidInput`, …), or a second `Backend` error after a read-back found the write absent.
//!
//! # Seqs and SSE event ids
//! - Frames of a **local** session keep their seqs: the drain copies the session with `restore`,
//!   which keeps seqs, so event ids issued during the outage stay valid.
//! - Frames appended during the outage to a session **held by the primary** get provisional
//!   seqs in `2^52 + 1 .. 2^53` ([`is_provisional`]; unique on this instance), because only the
//!   primary can assign the final ones. After the drain, [`Resilient::resolve_seq`] maps a
//!   provisional seq to its final seq, and `frames(after_seq = provisional)` /
//!   `delete_frames(through = provisional)` translate it automatically while the mapping is
//!   kept ([`JournalConfig::seq_map_capacity`]). A provisional seq this instance does not know
//!   (another instance, a restart, an evicted mapping) is `InvalidInput`: the proxy must then
//!   restart the stream instead of resuming it. Before the drain, `frames` of such a session is
//!   `Unavailable`.
//!
//! # Example
//! ```
//! use shoal_core::resilient::{FallbackMode, ResilienceConfig, Resilient};
//! use shoal_core::{Direction, MemoryStore, NewFrame, Session, SessionId, SessionStore, Transport};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! // In production the primary is a `shoal_redis::RedisStore`.
//! let store = Resilient::new(
//!     MemoryStore::new(),
//!     MemoryStore::new(),
//!     ResilienceConfig::default().with_fallback(FallbackMode::Memory),
//! )?;
//! let _monitor = store.spawn_monitor(); // probes, closes the breaker, drains; stops on drop
//!
//! let id = SessionId::generate();
//! store.create(Session::new(id.clone(), Transport::StreamableHttp)).await?;
//! let seq = store.append_frame(&id, NewFrame::new(Direction::ClientToServer, "{}")).await?;
//! assert_eq!(seq, 1);
//! let health = store.health().await?;
//! assert_eq!(health.details["breaker_state"], "closed");
//! # Ok::<(), shoal_core::Error>(())
//! # }).unwrap();
//! ```
mod breaker;
mod call;
mod config;
mod drain;
mod drain_local;
mod drain_shadow;
mod durable;
mod fallback;
mod journal;
mod metrics;
mod monitor;
mod recover;
mod refusal;
mod route;
mod seqmap;
mod state;
mod stats;
mod trait_impl;
mod wrapper;
mod write_path;

pub use breaker::BreakerState;
pub use config::{
    BreakerConfig, FallbackMode, FsyncPolicy, HealthConfig, JournalConfig, ResilienceConfig,
    RetryConfig,
};
pub use drain::DrainReport;
pub use monitor::{MonitorHandle, ProbeReport};
pub use recover::RecoveryReport;
pub use seqmap::{PROVISIONAL_SEQ_BASE, PROVISIONAL_SEQ_END, is_provisional};
pub use stats::ResilienceStats;
pub use wrapper::Resilient;
