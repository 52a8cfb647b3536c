//! Keeping the index sets: every session is a member of its listing bucket (what `list`
//! walks) and of the capacity set (what `max_sessions`, `count` and the sweeper read),
//! written by separate commands after the session's own keys.

use std::collections::BTreeMap;

use shoal_core::{Result, Timestamp};

use super::{
    exec::{server_error, u64_of},
    handle::StoreState,
};
use crate::keys::bucket_of;

impl StoreState {
    /// Adds sessions to their listing buckets and to the capacity set, which is also the
    /// expiry index (after their per-session write).
    pub(super) async fn index(&self, entries: &[(&str, Timestamp)]) -> Result<()> {
        let mut by_bucket: BTreeMap<u32, Vec<(&str, Timestamp)>> = BTreeMap::new();
        for (id, exp) in entries {
            by_bucket.entry(bucket_of(id)).or_default().push((id, *exp));
        }
        let mut cmds = Vec::new();
        for (b, items) in by_bucket {
            let mut zall = redis::cmd("ZADD");
            zall.arg(self.keys.all(b));
            for (id, _) in items {
                zall.arg(0).arg(id);
            }
            cmds.push((self.keys.all(b), zall));
        }
        let cap = self.keys.cap();
        let mut zcap = redis::cmd("ZADD");
        zcap.arg(&cap);
        for (id, exp) in entries {
            zcap.arg(exp.as_millis()).arg(*id);
        }
        cmds.push((cap, zcap));
        let values = self.multi("index", cmds).await?;
        match values.iter().find_map(server_error) {
            Some(e) => Err(self.map_error(e, "index", None)),
            None => Ok(()),
        }
    }

    /// Removes members from their listing buckets and the capacity set. Best effort: a
    /// failure leaves a dangling member that readers and the sweeper remove later.
    pub(super) async fn unindex(&self, ids: &[&str]) {
        if ids.is_empty() {
            return;
        }
        let mut by_bucket: BTreeMap<u32, Vec<&str>> = BTreeMap::new();
        for id in ids {
            by_bucket.entry(bucket_of(id)).or_default().push(id);
        }
        let mut cmds = Vec::new();
        for (b, members) in by_bucket {
            let key = self.keys.all(b);
            let mut c = redis::cmd("ZREM");
            c.arg(&key).arg(&members);
            cmds.push((key, c));
        }
        let cap = self.keys.cap();
        let mut c = redis::cmd("ZREM");
        c.arg(&cap).arg(ids);
        cmds.push((cap, c));
        if let Err(e) = self.multi("unindex", cmds).await {
            tracing::warn!(error = %e, "redis: could not remove index entries; they will be repaired later");
        }
    }

    /// Removes index members whose session is gone (lazy repair by readers).
    pub(super) async fn repair(&self, members: &[String]) {
        if members.is_empty() {
            return;
        }
        let refs: Vec<&str> = members.iter().map(String::as_str).collect();
        self.unindex(&refs).await;
    }

    /// Sessions counted against `max_sessions` (live, expired-but-unswept, and the rare
    /// dangling entry alike).
    pub(super) async fn indexed(&self) -> Result<u64> {
        let mut c = redis::cmd("ZCARD");
        c.arg(self.keys.cap());
        let v = self.cmd("count", None, c).await?;
        Ok(u64_of(&v).unwrap_or(0))
    }
}
