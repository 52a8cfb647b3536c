//! [`MemoryFeed`]: the change feed kept in process, with the same reads, consumer groups and
//! pending-entry recovery as the Redis one. The memory store writes to it under the session's
//! lock, so a session's entries are in the order its changes happened.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use tokio::sync::watch;

use super::{
    change::{Change, FeedId},
    reader::{ChangeFeed, FeedCursor, FeedStats, GroupStart, GroupStats, check_count, check_name},
};
use crate::{Error, Result, Timestamp};

/// A change feed in process memory (one shard), bounded by its cap.
#[derive(Debug)]
pub struct MemoryFeed {
    log: Mutex<FeedLog>,
    /// Bumped on every write; readers that wait watch it.
    written: watch::Sender<u64>,
    cap: u64,
}

#[derive(Debug, Default)]
struct FeedLog {
    entries: VecDeque<Change>,
    last: FeedId,
    groups: HashMap<String, Group>,
}

#[derive(Debug)]
struct Group {
    delivered: FeedId,
    pending: BTreeMap<FeedId, Delivery>,
}

#[derive(Debug)]
struct Delivery {
    consumer: String,
    at: Instant,
}

impl MemoryFeed {
    /// A feed keeping at most `cap` entries.
    pub fn new(cap: u64) -> Self {
        MemoryFeed {
            log: Mutex::new(FeedLog::default()),
            written: watch::channel(0).0,
            cap: cap.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, FeedLog> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `changes` at `now` (ids are `now` or later, increasing), trimming to the cap.
    pub fn push(&self, now: Timestamp, changes: impl IntoIterator<Item = Change>) {
        let mut log = self.lock();
        let mut any = false;
        for mut c in changes {
            let ms = now.as_millis().max(log.last.ms);
            let seq = if ms == log.last.ms && log.last != FeedId::default() {
                log.last.seq + 1
            } else {
                0
            };
            c.id = FeedId::new(0, ms, seq);
            log.last = c.id;
            log.entries.push_back(c);
            any = true;
        }
        while log.entries.len() as u64 > self.cap {
            log.entries.pop_front();
        }
        drop(log);
        if any {
            self.written.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Runs `attempt` until it returns entries or `wait` passes.
    async fn waiting<F>(&self, wait: Option<Duration>, mut attempt: F) -> Result<Vec<Change>>
    where
        F: FnMut(&MemoryFeed) -> Result<Vec<Change>>,
    {
        let mut rx = self.written.subscribe();
        let deadline = wait.map(|w| tokio::time::Instant::now() + w);
        loop {
            rx.borrow_and_update();
            let got = attempt(self)?;
            let Some(deadline) = deadline else {
                return Ok(got);
            };
            if !got.is_empty() {
                return Ok(got);
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return Ok(Vec::new());
            }
        }
    }
}

fn no_group(group: &str) -> Error {
    Error::invalid(format!("no consumer group {group:?} on the feed"))
}

#[async_trait]
impl ChangeFeed for MemoryFeed {
    fn shards(&self) -> u16 {
        1
    }

    async fn end(&self) -> Result<FeedCursor> {
        Ok(FeedCursor::from_ids(vec![self.lock().last]))
    }

    async fn read(
        &self,
        cursor: &FeedCursor,
        count: usize,
        wait: Option<Duration>,
    ) -> Result<Vec<Change>> {
        check_count(count)?;
        let after = cursor.position(0);
        self.waiting(wait, |f| {
            Ok(MemoryFeed::after_in(&f.lock().entries, after, count))
        })
        .await
    }

    async fn create_group(&self, group: &str, start: GroupStart) -> Result<bool> {
        check_name("consumer group", group)?;
        let mut log = self.lock();
        if log.groups.contains_key(group) {
            return Ok(false);
        }
        let delivered = match start {
            GroupStart::Beginning => FeedId::default(),
            GroupStart::End => log.last,
        };
        log.groups.insert(
            group.to_string(),
            Group {
                delivered,
                pending: BTreeMap::new(),
            },
        );
        Ok(true)
    }

    async fn read_group(
        &self,
        group: &str,
        consumer: &str,
        count: usize,
        wait: Option<Duration>,
    ) -> Result<Vec<Change>> {
        check_name("consumer", consumer)?;
        check_count(count)?;
        self.waiting(wait, |f| {
            let mut log = f.lock();
            let log = &mut *log;
            let g = log.groups.get_mut(group).ok_or_else(|| no_group(group))?;
            let out = MemoryFeed::after_in(&log.entries, g.delivered, count);
            let now = Instant::now();
            for c in &out {
                g.pending.insert(
                    c.id,
                    Delivery {
                        consumer: consumer.to_string(),
                        at: now,
                    },
                );
                g.delivered = c.id;
            }
            Ok(out)
        })
        .await
    }

    async fn ack(&self, group: &str, ids: &[FeedId]) -> Result<u64> {
        let mut log = self.lock();
        let g = log.groups.get_mut(group).ok_or_else(|| no_group(group))?;
        Ok(ids
            .iter()
            .filter(|id| g.pending.remove(id).is_some())
            .count() as u64)
    }

    async fn claim_stale(
        &self,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<Change>> {
        check_name("consumer", consumer)?;
        check_count(count)?;
        let mut log = self.lock();
        let log = &mut *log;
        let g = log.groups.get_mut(group).ok_or_else(|| no_group(group))?;
        let now = Instant::now();
        let stale: Vec<FeedId> = g
            .pending
            .iter()
            .filter(|(_, d)| now.duration_since(d.at) >= min_idle)
            .map(|(id, _)| *id)
            .take(count)
            .collect();
        let mut out = Vec::with_capacity(stale.len());
        for id in stale {
            let at = log.entries.binary_search_by(|c| c.id.cmp(&id));
            match at {
                Ok(i) => {
                    out.push(log.entries[i].clone());
                    g.pending.insert(
                        id,
                        Delivery {
                            consumer: consumer.to_string(),
                            at: now,
                        },
                    );
                }
                Err(_) => {
                    g.pending.remove(&id);
                }
            }
        }
        Ok(out)
    }

    async fn stats(&self) -> Result<FeedStats> {
        let log = self.lock();
        let mut groups: Vec<GroupStats> = log
            .groups
            .iter()
            .map(|(name, g)| GroupStats {
                name: name.clone(),
                pending: g.pending.len() as u64,
                consumers: g
                    .pending
                    .values()
                    .map(|d| d.consumer.as_str())
                    .collect::<std::collections::HashSet<_>>()
                    .len() as u64,
                lag: Some(
                    (log.entries.len() - log.entries.partition_point(|c| c.id <= g.delivered))
                        as u64,
                ),
            })
            .collect();
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(FeedStats {
            length: log.entries.len() as u64,
            cap: self.cap,
            shards: 1,
            last: vec![log.entries.back().map(|c| c.id)],
            bytes: None,
            groups,
        })
    }
}

impl MemoryFeed {
    /// Entries after `after`, at most `count`.
    fn after_in(entries: &VecDeque<Change>, after: FeedId, count: usize) -> Vec<Change> {
        let start = entries.partition_point(|c| c.id <= after);
        entries.range(start..).take(count).cloned().collect()
    }

    /// Whether this pending entry's consumer is `consumer` (tests).
    #[cfg(test)]
    fn pending_of(&self, group: &str, id: FeedId) -> Option<String> {
        self.lock()
            .groups
            .get(group)
            .and_then(|g| g.pending.get(&id))
            .map(|d| d.consumer.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::ChangeKind;

    fn touched(s: &str) -> Change {
        Change::new(ChangeKind::Touched, s)
    }

    #[tokio::test]
    async fn ids_increase_and_the_cap_holds() {
        let f = MemoryFeed::new(3);
        f.push(Timestamp(10), [touched("a"), touched("b")]);
        f.push(Timestamp(5), [touched("c"), touched("d")]);
        let all = f
            .read(&FeedCursor::beginning(1), 100, None)
            .await
            .unwrap_or_default();
        let ids: Vec<String> = all.iter().map(|c| c.id.to_string()).collect();
        assert_eq!(ids, ["10-1", "10-2", "10-3"]);
        assert_eq!(all[0].session_id, "b");
    }

    #[tokio::test]
    async fn groups_deliver_once_and_recover_a_dead_consumers_entries() {
        let f = MemoryFeed::new(100);
        assert!(
            f.create_group("g", GroupStart::Beginning)
                .await
                .unwrap_or(false)
        );
        assert!(
            !f.create_group("g", GroupStart::Beginning)
                .await
                .unwrap_or(true)
        );
        f.push(Timestamp(1), (0..5).map(|i| touched(&format!("s{i}"))));
        let a = f.read_group("g", "a", 3, None).await.unwrap_or_default();
        let b = f.read_group("g", "b", 10, None).await.unwrap_or_default();
        assert_eq!((a.len(), b.len()), (3, 2));
        assert_eq!(f.ack("g", &[b[0].id, b[0].id, b[1].id]).await.ok(), Some(2));
        // "a" died: b takes its three over.
        let claimed = f
            .claim_stale("g", "b", Duration::ZERO, 10)
            .await
            .unwrap_or_default();
        assert_eq!(claimed, a);
        assert_eq!(f.pending_of("g", a[0].id).as_deref(), Some("b"));
        let stats = f.stats().await.unwrap_or_default();
        assert_eq!(stats.groups[0].pending, 3);
        assert_eq!(stats.groups[0].lag, Some(0));
        assert!(f.read_group("nope", "a", 1, None).await.is_err());
    }

    #[tokio::test]
    async fn a_waiting_read_wakes_on_a_write() {
        let f = std::sync::Arc::new(MemoryFeed::new(10));
        let end = f.end().await.unwrap_or_else(|_| FeedCursor::beginning(1));
        let writer = f.clone();
        let t = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            writer.push(Timestamp(1), [touched("x")]);
        });
        let got = f
            .read(&end, 10, Some(Duration::from_secs(5)))
            .await
            .unwrap_or_default();
        assert_eq!(got.len(), 1);
        let _ = t.await;
        let none = f
            .read(
                &FeedCursor::after_id(1, got[0].id),
                10,
                Some(Duration::from_millis(10)),
            )
            .await
            .unwrap_or_default();
        assert!(none.is_empty());
    }
}
