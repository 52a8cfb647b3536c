//! SSE streams between the upstream, the store and clients.
//!
//! - [`pump`]: reads one upstream stream, records every event (its seq is its event id),
//!   tracks requests the upstream sends the client, and hands events to the attached client
//!   with a deadline (a client that stops reading is detached, never waited for).
//! - [`follow`]: replays a stream from the store after a position and continues live, for a
//!   client on any instance; takes the upstream stream over when its holder is gone.
//! - [`standalone`]: the session's standalone (GET) stream, opened upstream by the proxy itself
//!   when the session is initialized, so nothing the server sends there is lost.
//! - [`lease`]: which instance reads a stream upstream (a store lease per stream owned by the
//!   instance id: compare-and-renew, compare-and-release, renewed before appends).
//! - [`response`]: the client-facing SSE body (priming event, keep-alive comments, slots).

mod follow;
mod lease;
mod pump;
mod response;
mod standalone;

pub(crate) use follow::{Follow, follow};
pub(crate) use pump::{Kind, PumpSpec, spawn_pump};
pub(crate) use response::{priming, session_header, sse_response, try_open_slot};
pub(crate) use standalone::{Standalone, ensure_standalone};

/// The frame header that keeps the upstream's own event id, for resuming the upstream.
pub(crate) const UPSTREAM_EVENT_ID: &str = "upstream-event-id";

/// The stream id of every session's standalone stream: the same on every instance, so a
/// client's GET anywhere follows the one stream the proxy records.
pub(crate) const STANDALONE: &str = "g0";

/// A new stream id: `p`/`g` and 16 random hex digits.
pub(crate) fn new_stream_id(prefix: char) -> String {
    let mut b = [0u8; 8];
    crate::fill_random(&mut b);
    format!("{prefix}{}", crate::state::hex(&b))
}
