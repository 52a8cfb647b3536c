//! Tamper-evident SSE event ids: `<stream>.<seq>.<mac>`, or `<stream>.<seq>.<epoch>.<mac>`
//! for a frame whose store keeps frame epochs. Shared by the proxy and the rmcp adapter.
//!
//! The id names the stream and the store's frame seq, so any instance can replay exactly that
//! stream after exactly that frame; the epoch (see [`crate::epoch`]) tells that frame from
//! another given the same seq after the store rolled back, so a resume never starts after a
//! frame the client did not receive. The MAC (HMAC-SHA-256 over session id, stream, seq and
//! epoch, truncated to 96 bits, base64url) binds it to its session, so an id forged, edited
//! or taken from another session is refused.
//!
//! ```
//! use shoal_core::event_id::{EventIdCodec, EventIdKey};
//!
//! let codec = EventIdCodec::new(&EventIdKey::new(vec![7u8; 32]).unwrap());
//! let id = codec.encode("session-1", "g0", 42, 0);
//! assert_eq!(codec.decode("session-1", &id).unwrap().seq, 42);
//! assert!(codec.decode("session-2", &id).is_err());
//! ```

mod codec;
mod key;

pub use codec::{EventId, EventIdCodec, EventIdError, valid_stream};
pub use key::{EventIdKey, KeyError};
