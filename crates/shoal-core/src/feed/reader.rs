//! [`ChangeFeed`]: reading the change feed from a position, or as a consumer group
//! (at-least-once: delivered entries stay pending until acknowledged, and a dead consumer's
//! pending entries are claimed by another).

use std::{fmt, time::Duration};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::change::{Change, FeedId};
use crate::{Error, Result, Timestamp};

/// Where a reader is: the last id it has seen in each shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedCursor {
    after: Vec<FeedId>,
}

impl FeedCursor {
    /// Before every entry of a feed with `shards` shards.
    pub fn beginning(shards: u16) -> Self {
        FeedCursor::since(shards, Timestamp(0))
    }

    /// Before the entries written at or after `at`.
    pub fn since(shards: u16, at: Timestamp) -> Self {
        let ms = at.as_millis();
        let after = (0..shards.max(1))
            .map(|s| {
                if ms == 0 {
                    FeedId::new(s, 0, 0)
                } else {
                    FeedId::new(s, ms - 1, u64::MAX)
                }
            })
            .collect();
        FeedCursor { after }
    }

    /// Just after `id` (in its shard) and after the same time in every other shard.
    pub fn after_id(shards: u16, id: FeedId) -> Self {
        let mut c = FeedCursor::since(shards, Timestamp(id.ms.saturating_add(1)));
        if let Some(slot) = c.after.get_mut(usize::from(id.shard)) {
            *slot = id;
        }
        c
    }

    /// A cursor from each shard's last id (`ids[i]` is shard `i`'s).
    pub fn from_ids(ids: Vec<FeedId>) -> Self {
        FeedCursor { after: ids }
    }

    /// The last id seen in each shard.
    pub fn positions(&self) -> &[FeedId] {
        &self.after
    }

    /// The last id seen in `shard` (the beginning when the cursor has no such shard).
    pub fn position(&self, shard: u16) -> FeedId {
        self.after
            .get(usize::from(shard))
            .copied()
            .unwrap_or(FeedId::new(shard, 0, 0))
    }

    /// Moves past every change in `changes`.
    pub fn advance(&mut self, changes: &[Change]) {
        for c in changes {
            let i = usize::from(c.id.shard);
            if i >= self.after.len() {
                let len = self.after.len() as u16;
                self.after
                    .extend((len..=c.id.shard).map(|s| FeedId::new(s, 0, 0)));
            }
            if c.id > self.after[i] {
                self.after[i] = c.id;
            }
        }
    }
}

/// Where a new consumer group starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GroupStart {
    /// With the oldest entry the feed still holds.
    Beginning,
    /// With the next entry written.
    End,
}

/// One consumer group's progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupStats {
    /// The group's name.
    pub name: String,
    /// Entries delivered and not acknowledged.
    pub pending: u64,
    /// Consumers the group knows (memory: those with pending entries).
    pub consumers: u64,
    /// Entries not delivered yet (`None` when the backend cannot tell, e.g. after trimming).
    pub lag: Option<u64>,
}

/// The feed's size and its groups.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedStats {
    /// Entries held, over every shard.
    pub length: u64,
    /// The configured bound on entries held per shard.
    pub cap: u64,
    /// Shards.
    pub shards: u16,
    /// The newest entry's id per shard (absent for an empty shard).
    pub last: Vec<Option<FeedId>>,
    /// Bytes the backend uses for the feed, when it can tell (Redis `MEMORY USAGE`).
    pub bytes: Option<u64>,
    /// Consumer groups, summed over shards.
    pub groups: Vec<GroupStats>,
}

/// Checks a consumer group or consumer name: 1–64 of `[A-Za-z0-9._-]`.
pub fn check_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(Error::invalid(format!(
            "bad {what} name {name:?}: 1-64 characters of [A-Za-z0-9._-]"
        )));
    }
    Ok(())
}

/// The change feed of a store: every session lifecycle change and every appended frame, in
/// per-session order (see [`feed`](crate::feed) for the guarantees per backend).
///
/// Reads return at most `count` entries (1–10,000); with `wait`, a read that finds none waits
/// up to that long for the next one.
#[async_trait]
pub trait ChangeFeed: Send + Sync + fmt::Debug {
    /// How many shards the feed has (1 on a single server and in memory).
    fn shards(&self) -> u16;

    /// A cursor after the newest entry of every shard (follow "from now").
    async fn end(&self) -> Result<FeedCursor>;

    /// Entries after `cursor`, oldest first (merged across shards by time); advance the
    /// cursor with [`FeedCursor::advance`].
    async fn read(
        &self,
        cursor: &FeedCursor,
        count: usize,
        wait: Option<Duration>,
    ) -> Result<Vec<Change>>;

    /// Creates consumer group `group` unless it exists (`true`: created now).
    async fn create_group(&self, group: &str, start: GroupStart) -> Result<bool>;

    /// Delivers entries no member of `group` has been given yet to `consumer`; they stay
    /// pending for it until [`ack`](Self::ack)ed. [`Error::InvalidInput`] if the group does
    /// not exist.
    async fn read_group(
        &self,
        group: &str,
        consumer: &str,
        count: usize,
        wait: Option<Duration>,
    ) -> Result<Vec<Change>>;

    /// Acknowledges delivered entries; returns how many were pending (an entry acknowledged
    /// twice counts once).
    async fn ack(&self, group: &str, ids: &[FeedId]) -> Result<u64>;

    /// Takes over entries of `group` pending for longer than `min_idle` (their consumer is
    /// presumed dead) and delivers them to `consumer`. Entries the cap trimmed away meanwhile
    /// are dropped from the pending list.
    async fn claim_stale(
        &self,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<Change>>;

    /// Size, cap, last ids and groups.
    async fn stats(&self) -> Result<FeedStats>;
}

/// Checks a read's `count`.
pub fn check_count(count: usize) -> Result<()> {
    if count == 0 || count > 10_000 {
        return Err(Error::invalid(format!(
            "bad feed read count {count}: 1-10000"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::ChangeKind;

    #[test]
    fn cursors_advance_per_shard() {
        let mut c = FeedCursor::beginning(2);
        let mut a = Change::new(ChangeKind::Touched, "a");
        a.id = FeedId::new(1, 10, 2);
        let mut b = Change::new(ChangeKind::Touched, "b");
        b.id = FeedId::new(3, 5, 0);
        c.advance(&[a, b]);
        assert_eq!(c.position(0), FeedId::new(0, 0, 0));
        assert_eq!(c.position(1), FeedId::new(1, 10, 2));
        assert_eq!(c.position(3), FeedId::new(3, 5, 0));
        let s = FeedCursor::since(2, Timestamp(100));
        assert_eq!(s.position(1), FeedId::new(1, 99, u64::MAX));
        let after = FeedCursor::after_id(2, FeedId::new(1, 7, 1));
        assert_eq!(after.position(1), FeedId::new(1, 7, 1));
        assert_eq!(after.position(0), FeedId::new(0, 7, u64::MAX));
    }

    #[test]
    fn names_and_counts_are_checked() {
        assert!(check_name("group", "analytics-1.a_b").is_ok());
        for bad in ["", "a b", "x{y}", &"a".repeat(65)] {
            assert!(check_name("group", bad).is_err(), "{bad:?}");
        }
        assert!(check_count(0).is_err() && check_count(10_001).is_err());
        assert!(check_count(1).is_ok());
    }
}
