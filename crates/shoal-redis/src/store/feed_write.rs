//! Writing the change feed (see `shoal_core::feed` for the entries and guarantees).
//!
//! On a single server (standalone, Sentinel) the entry is written by the change's own script:
//! every per-session script gets the feed stream as its last key and, in `ARGV[1]`, a header
//! (`<now> <cap> <touch_ms> <sid>`) and the entry's detail built here (`feed_add` in
//! `common.lua`). On a Cluster the stream cannot share the session's slot, so the entry is
//! written right after the change succeeded, to the shard of the session id.

use shoal_core::feed::{FrameSummary, SessionSummary};
use shoal_core::{
    Change, ChangeKind, Error, FeedConfig, NewFrame, Result, Session, SessionId, SessionStatus,
    Timestamp,
};

use super::handle::StoreState;
use crate::keys::bucket_of;

/// `ARGV[1]` of a per-session script that writes its change's feed entry itself: `now`, then
/// ` <cap> <touch_ms> <sid>` and, when there is one, a newline and `detail` (see `common.lua`).
pub(crate) fn feed_script_head(
    feed: &FeedConfig,
    now: Vec<u8>,
    sid: &str,
    detail: &str,
) -> Vec<u8> {
    let mut head = now;
    head.extend_from_slice(format!(" {} {} {sid}", feed.cap, feed.touch_every_ms()).as_bytes());
    if !detail.is_empty() {
        head.push(b'\n');
        head.extend_from_slice(detail.as_bytes());
    }
    head
}

/// The touch script's last argument when it reports touches: the start of the touch window
/// `now` falls in (`None` when touches are not reported).
pub(crate) fn touch_window_start(feed: &FeedConfig, now_ms: u64) -> Option<u64> {
    let window = feed.touch_every_ms();
    (window > 0).then(|| now_ms / window * window)
}

/// The `frame` entries' detail of an append: one summary line per frame.
pub(crate) fn frames_detail(summaries: &[FrameSummary]) -> String {
    summaries
        .iter()
        .map(FrameSummary::to_detail)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Where this store's feed entries are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum FeedMode {
    /// No feed.
    Off,
    /// By the change's script (single server).
    InScript,
    /// After the change, by a separate `XADD` (Cluster).
    After,
}

impl StoreState {
    pub(super) fn feed_config(&self) -> &FeedConfig {
        &self.config.feed
    }

    pub(super) fn feed_mode(&self) -> FeedMode {
        match (self.config.feed.enabled, self.cluster) {
            (false, _) => FeedMode::Off,
            (true, false) => FeedMode::InScript,
            (true, true) => FeedMode::After,
        }
    }

    /// How many feed shards: 1 on a single server, `cluster_shards` on a Cluster.
    pub(super) fn feed_shards(&self) -> u16 {
        if self.cluster {
            self.config.feed.cluster_shards.max(1)
        } else {
            1
        }
    }

    /// The shard a session's entries go to.
    pub(super) fn feed_shard_of(&self, id: &str) -> u16 {
        (bucket_of(id) % u32::from(self.feed_shards())) as u16
    }

    /// Whether a script should be given a detail (only computed when the script writes it).
    pub(super) fn feed_in_script(&self) -> bool {
        self.feed_mode() == FeedMode::InScript
    }

    /// `ARGV[1]` of a per-session script and the feed key to add after its keys: `now`
    /// alone when the script does not write the feed.
    pub(super) fn script_head(
        &self,
        now: Vec<u8>,
        id: &SessionId,
        detail: &str,
    ) -> (Vec<u8>, Option<String>) {
        if !self.feed_in_script() {
            return (now, None);
        }
        (
            feed_script_head(&self.config.feed, now, id.as_str(), detail),
            Some(self.keys.feed(0)),
        )
    }

    /// The `created` detail of `session` (empty when no script writes it).
    pub(super) fn created_detail(&self, session: &Session) -> String {
        if self.feed_in_script() {
            SessionSummary::of(session).to_detail()
        } else {
            String::new()
        }
    }

    /// The `updated` detail: the status after the update.
    pub(super) fn updated_detail(&self, status: SessionStatus) -> String {
        if self.feed_in_script() {
            status.as_str().to_string()
        } else {
            String::new()
        }
    }

    /// The frames' summaries, when the feed is written (in a script or after) with frames.
    pub(super) fn frame_summaries(&self, frames: &[NewFrame]) -> Vec<FrameSummary> {
        if self.feed_mode() == FeedMode::Off || !self.config.feed.frames {
            Vec::new()
        } else {
            frames.iter().map(FrameSummary::of).collect()
        }
    }

    /// At connect, when the feed is on: may this user write the feed stream? A probe `XADD …
    /// NOMKSTREAM` on a key that never exists (so nothing is written) is checked against the
    /// ACL like the scripts' `XADD`; refused, the store does not start (every write would fail
    /// after its change was applied) and says what to grant or turn off.
    pub(super) async fn check_feed_permission(&self) -> Result<()> {
        if self.feed_mode() == FeedMode::Off {
            return Ok(());
        }
        let mut probe = redis::cmd("XADD");
        probe
            .arg(format!("{}:acl-probe", self.keys.feed(0)))
            .arg("NOMKSTREAM")
            .arg("*")
            .arg("v")
            .arg("1");
        match self.cmd("connect", None, probe).await {
            Ok(_) => Ok(()),
            Err(e) if e.to_string().contains("NOPERM") || e.to_string().contains("permission") => {
                Err(Error::invalid(format!(
                    "the Redis user may not write the change feed ({e}): grant +xadd on the \
                     key prefix (and the feed's reading commands, see the ACL section of the \
                     shoal-redis README), or set [feed] enabled = false"
                )))
            }
            Err(e) => Err(e),
        }
    }

    /// Queues `changes` of session `id`, written after the fact (Cluster only; a no-op
    /// otherwise): see `feed_outbox`.
    pub(super) fn feed_after(&self, id: &str, changes: Vec<Change>) {
        if changes.is_empty() {
            return;
        }
        if let Some(outbox) = &self.feed_outbox {
            outbox.push(&self.keys.feed(self.feed_shard_of(id)), changes);
        }
    }

    /// Waits until this process's queued feed entries are written (Cluster), so a reader here
    /// sees the entries of every change that returned.
    pub(super) async fn flush_feed(&self) {
        if let Some(outbox) = &self.feed_outbox {
            outbox.flush(self.deadline).await;
        }
    }

    /// Cluster: the entry of a session that ended with `kind`.
    pub(super) fn feed_end_after(&self, id: &str, kind: ChangeKind, created: Option<u64>) {
        if self.feed_mode() != FeedMode::After {
            return;
        }
        let mut c = Change::new(kind, id);
        c.created_at = created.filter(|c| *c > 0).map(Timestamp);
        self.feed_after(id, vec![c]);
    }
}
