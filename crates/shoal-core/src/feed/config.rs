//! [`FeedConfig`]: whether a store writes the change feed, how much of it is kept, how often
//! a touched session is reported.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The change feed's settings (the `[feed]` section of the CLI's config).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct FeedConfig {
    /// Write the feed (default on).
    pub enabled: bool,
    /// Entries kept per shard (oldest trimmed first). Redis trims with `MAXLEN ~`, so a
    /// shard may hold up to one stream node (100 entries by default) more.
    pub cap: u64,
    /// Write one `frame` entry per appended frame (default on). Off, the feed carries the
    /// session lifecycle only: appends cost next to nothing more, and the analytics lose
    /// methods, tools and latencies.
    pub frames: bool,
    /// A session's touches are reported at most once per window of this length (0: never).
    #[serde(with = "crate::serde_util::duration")]
    pub touch_every: Duration,
    /// Feed shards on Redis Cluster (a single server always has one).
    pub cluster_shards: u16,
    /// Long-running instances (`shoal proxy`) on Redis keep the session analytics up to date
    /// from the feed (one instance at a time; default on).
    pub analytics: bool,
}

impl Default for FeedConfig {
    fn default() -> Self {
        FeedConfig {
            enabled: true,
            cap: 100_000,
            frames: true,
            touch_every: Duration::from_secs(60),
            cluster_shards: 8,
            analytics: true,
        }
    }
}

impl FeedConfig {
    /// A feed that is not written.
    pub fn disabled() -> Self {
        FeedConfig {
            enabled: false,
            ..FeedConfig::default()
        }
    }

    /// Checks every setting's range.
    pub fn check(&self) -> Result<()> {
        if !(100..=100_000_000).contains(&self.cap) {
            return Err(Error::invalid(format!(
                "feed.cap {} is out of range 100-100000000",
                self.cap
            )));
        }
        if self.touch_every > Duration::from_secs(86_400) {
            return Err(Error::invalid("feed.touch_every is over 24h"));
        }
        if !(1..=256).contains(&self.cluster_shards) {
            return Err(Error::invalid(format!(
                "feed.cluster_shards {} is out of range 1-256",
                self.cluster_shards
            )));
        }
        Ok(())
    }

    /// The touch window in ms (0: touches are not reported).
    pub fn touch_every_ms(&self) -> u64 {
        self.touch_every.as_millis().min(u128::from(u64::MAX)) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_checked() {
        assert!(FeedConfig::default().check().is_ok());
        for bad in [
            FeedConfig {
                cap: 5,
                ..FeedConfig::default()
            },
            FeedConfig {
                cluster_shards: 0,
                ..FeedConfig::default()
            },
            FeedConfig {
                touch_every: Duration::from_secs(100_000),
                ..FeedConfig::default()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }
}
