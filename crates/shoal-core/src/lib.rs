//! # shoal-core
//!
//! The contract at the centre of Shoal — shared, durable sessions for MCP proxies — and
//! everything that needs no external service:
//!
//! - [`SessionStore`]: the one async trait every backend and wrapper implements;
//! - the data types: [`SessionId`], [`Session`], [`Frame`]/[`NewFrame`], [`PendingRequest`];
//! - [`Error`]: the one error enum;
//! - [`Limits`] and [`Clock`];
//! - [`codec`]: the versioned MessagePack format backends persist;
//! - [`MemoryStore`]: the in-memory backend, the embedded default;
//! - [`transfer`]: JSON Lines export and import between any two stores;
//! - [`feed`]: the change feed (every session change and frame, read from a position or by
//!   consumer groups) and its in-process implementation;
//! - [`notify`]: pub/sub between instances ([`NotifyBus`]: cache invalidations and stream
//!   wake-ups), with the in-process [`LocalBus`].
//!
//! Redis lives in `shoal-redis`, so an embedded user compiles none of it. The two wrappers are
//! behind features, off by default:
//!
//! - `cache`: the module `cached`, the hot-session cache `Cached` (pulls in `moka`);
//! - `resilience`: the module `resilient`, the breaker-and-fallback wrapper `Resilient` (pulls
//!   in `backon`).
//!
//! [`serde_util`] holds the humantime duration helper every crate's config types use.

#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
pub mod cached;
pub mod clock;
pub mod codec;
pub mod epoch;
pub mod error;
#[cfg(feature = "event-id")]
#[cfg_attr(docsrs, doc(cfg(feature = "event-id")))]
pub mod event_id;
pub mod feed;
pub mod frame;
pub mod id;
pub mod lease;
pub mod limits;
pub mod memory;
pub mod notify;
pub mod quota;
pub mod redact;
#[cfg(feature = "resilience")]
#[cfg_attr(docsrs, doc(cfg(feature = "resilience")))]
pub mod resilient;
pub mod serde_util;
pub mod session;
pub mod setting;
pub mod store;
pub mod transfer;

#[cfg(feature = "cache")]
pub use cached::{CacheConfig, Cached, CachedBuilder};
pub use clock::{Clock, ManualClock, SystemClock};
pub use epoch::{AppendedFrames, EpochStart, FrameEpochs};
pub use error::{BoxError, Error, Result};
pub use feed::{Change, ChangeFeed, ChangeKind, FeedConfig, FeedCursor, FeedId};
pub use frame::{Direction, Frame, NewFrame, PendingRequest, RequestId};
pub use id::SessionId;
pub use lease::{Lease, LeaseReply, LeaseRequest};
pub use limits::Limits;
pub use memory::{MemoryStore, MemoryStoreBuilder, SweeperHandle};
pub use notify::{LocalBus, NotifyBus, Wakeup};
pub use quota::{QuotaBound, QuotaReply, QuotaRequest, QuotaRule};
#[cfg(feature = "resilience")]
pub use resilient::{FallbackMode, ResilienceConfig, Resilient};
pub use session::{Session, SessionState, SessionStatus, Timestamp, Transport};
pub use store::{
    FramePage, FrameQuery, GetMany, Health, HealthStatus, ItemError, ListPage, ListQuery,
    SessionFilter, SessionRecord, SessionStore, SweepReport,
};
