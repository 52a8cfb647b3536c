//! Whether the server may evict session keys: its `maxmemory` and `maxmemory-policy` (and
//! how many keys it has evicted), read from `INFO` (no `CONFIG` permission needed).
//!
//! A session is several keys (meta, frames, requests); an evicting policy can remove one of
//! them and leave the others — the scripts then report the session as corrupt
//! (`Corrupt("evicted")`) rather than serve a history with holes, but the data is gone. Every
//! policy but `noeviction` can do this once `maxmemory` is set: `volatile-*` policies evict
//! exactly the keys with a TTL, which is all of the store's.

use shoal_core::{Error, Result};

use super::handle::StoreState;
use crate::{config::EvictingPolicy, meta::bytes_of};

/// What `INFO memory` and `INFO stats` say about eviction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct MemoryPolicy {
    /// `maxmemory` in bytes (0: no limit).
    pub(super) maxmemory: u64,
    /// `maxmemory_policy`, e.g. `noeviction`, `allkeys-lru`.
    pub(super) policy: String,
    /// `evicted_keys` since the server started.
    pub(super) evicted_keys: u64,
}

impl MemoryPolicy {
    /// Reads the fields from `INFO` text (any sections; missing fields stay default).
    pub(super) fn parse(info: &str) -> MemoryPolicy {
        let mut m = MemoryPolicy::default();
        for line in info.lines() {
            let Some((k, v)) = line.trim().split_once(':') else {
                continue;
            };
            match k {
                "maxmemory" => m.maxmemory = v.parse().unwrap_or(0),
                "maxmemory_policy" => m.policy = v.to_owned(),
                "evicted_keys" => m.evicted_keys = v.parse().unwrap_or(0),
                _ => {}
            }
        }
        m
    }

    /// Whether the server can evict session keys now.
    pub(super) fn can_evict(&self) -> bool {
        self.maxmemory > 0 && !self.policy.is_empty() && self.policy != "noeviction"
    }

    /// The warning for an evicting server.
    pub(super) fn warning(&self) -> String {
        format!(
            "redis maxmemory-policy is {} with maxmemory {} bytes: the server can evict a \
             session's keys one at a time, losing frames or pending requests; set \
             maxmemory-policy noeviction (writes then fail with an out-of-memory error instead)",
            self.policy, self.maxmemory
        )
    }
}

impl StoreState {
    /// The server's eviction settings (one node of a cluster).
    pub(super) async fn memory_policy(&self) -> Result<MemoryPolicy> {
        let mut info = redis::cmd("INFO");
        info.arg("memory").arg("stats");
        let reply = self.cmd("info", None, info).await?;
        let text = bytes_of(&reply)
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .ok_or_else(|| Error::backend("redis INFO returned an unexpected reply"))?;
        Ok(MemoryPolicy::parse(&text))
    }

    /// At connect: warns about, or refuses, a server that can evict session keys. A server
    /// that does not answer `INFO` (a restricted command) is let through with a debug line.
    pub(super) async fn check_memory_policy(&self) -> Result<()> {
        let policy = match self.memory_policy().await {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(error = %e, "redis eviction policy not checked");
                return Ok(());
            }
        };
        if !policy.can_evict() {
            return Ok(());
        }
        match self.config.evicting_policy {
            EvictingPolicy::Warn => {
                tracing::warn!("{}", policy.warning());
                Ok(())
            }
            EvictingPolicy::Refuse => Err(Error::invalid(format!(
                "{} (redis.evicting_policy = \"refuse\")",
                policy.warning()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_text_is_read() {
        let info = "# Memory\r\nused_memory:100\r\nmaxmemory:1048576\r\n\
                    maxmemory_policy:allkeys-lru\r\n# Stats\r\nevicted_keys:42\r\n";
        let m = MemoryPolicy::parse(info);
        assert_eq!(m.maxmemory, 1_048_576);
        assert_eq!(m.policy, "allkeys-lru");
        assert_eq!(m.evicted_keys, 42);
        assert!(m.can_evict());
        assert!(m.warning().contains("allkeys-lru"));
    }

    #[test]
    fn only_a_bounded_evicting_server_can_evict() {
        let with = |maxmemory, policy: &str| MemoryPolicy {
            maxmemory,
            policy: policy.into(),
            evicted_keys: 0,
        };
        assert!(!with(0, "allkeys-lru").can_evict());
        assert!(!with(1 << 20, "noeviction").can_evict());
        assert!(with(1 << 20, "volatile-lru").can_evict());
        assert!(!with(1 << 20, "").can_evict());
        assert!(!MemoryPolicy::parse("garbage\nmaxmemory:x").can_evict());
    }
}
