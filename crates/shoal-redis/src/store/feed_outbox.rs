//! On a Cluster, the change feed's entries are written after their changes: queued here in
//! the order the changes completed and written by one task in batches (a pipeline per feed
//! shard), so a change pays no extra round trip. A session's entries keep their order (one
//! queue, one writer, one shard per session). Bounded: past [`CAPACITY`] queued entries new
//! ones are dropped and counted (a Redis too slow to take the feed never holds up the
//! changes). Readers in this process flush the queue first, so they see every entry of a
//! change that returned.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use redis::Value;
use shoal_core::Change;
use tokio::sync::{mpsc, oneshot};

use crate::conn::Conn;

/// Most entries waiting to be written.
pub(super) const CAPACITY: usize = 65_536;
/// Most entries written in one round.
const BATCH: usize = 512;

enum Item {
    /// An entry for the stream `key`.
    Entry { key: String, change: Box<Change> },
    /// Answered once everything queued before it was written (or failed).
    Flush(oneshot::Sender<()>),
}

/// The queue of entries waiting to be written, and its writer task (ends when this is
/// dropped, after writing what is queued).
pub(super) struct FeedOutbox {
    tx: mpsc::Sender<Item>,
    dropped: AtomicU64,
}

impl std::fmt::Debug for FeedOutbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedOutbox")
            .field("dropped", &self.dropped.load(Ordering::Relaxed))
            .finish()
    }
}

impl FeedOutbox {
    /// Starts the writer on `conn`: `XADD key MAXLEN ~ cap`, each call bounded by `deadline`.
    pub(super) fn spawn(conn: Conn, cap: u64, deadline: Duration) -> Self {
        let (tx, rx) = mpsc::channel(CAPACITY);
        tokio::spawn(write_loop(rx, conn, cap, deadline));
        FeedOutbox {
            tx,
            dropped: AtomicU64::new(0),
        }
    }

    /// Queues `changes` for the stream `key`, in order; dropped (and counted) when the queue
    /// is full.
    pub(super) fn push(&self, key: &str, changes: Vec<Change>) {
        for change in changes {
            let item = Item::Entry {
                key: key.to_string(),
                change: Box::new(change),
            };
            if self.tx.try_send(item).is_err() {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n == 1 || n.is_multiple_of(10_000) {
                    tracing::warn!(
                        dropped = n,
                        "redis: change feed entries dropped: the writer is {CAPACITY} entries \
                         behind (the changes themselves were written)"
                    );
                }
            }
        }
    }

    /// Waits until every entry queued before this call was written (or failed), at most
    /// `within`.
    pub(super) async fn flush(&self, within: Duration) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Item::Flush(done)).await.is_ok() {
            let _ = tokio::time::timeout(within, wait).await;
        }
    }

    /// Entries dropped because the queue was full.
    #[cfg(test)]
    pub(super) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

async fn write_loop(mut rx: mpsc::Receiver<Item>, mut conn: Conn, cap: u64, deadline: Duration) {
    while let Some(first) = rx.recv().await {
        let mut items = vec![first];
        while items.len() < BATCH {
            match rx.try_recv() {
                Ok(i) => items.push(i),
                Err(_) => break,
            }
        }
        // Entries per stream in queue order; a flush answers after what precedes it.
        let mut pending: Vec<(String, redis::Pipeline, usize)> = Vec::new();
        for item in items {
            match item {
                Item::Entry { key, change } => {
                    let at = match pending.iter().position(|(k, _, _)| *k == key) {
                        Some(at) => at,
                        None => {
                            pending.push((key.clone(), redis::pipe(), 0));
                            pending.len() - 1
                        }
                    };
                    let (_, pipe, n) = &mut pending[at];
                    let cmd = pipe
                        .cmd("XADD")
                        .arg(&key)
                        .arg("MAXLEN")
                        .arg("~")
                        .arg(cap)
                        .arg("*");
                    for (k, v) in change.to_fields() {
                        cmd.arg(k).arg(v);
                    }
                    *n += 1;
                }
                Item::Flush(done) => {
                    write(&mut conn, std::mem::take(&mut pending), deadline).await;
                    let _ = done.send(());
                }
            }
        }
        write(&mut conn, pending, deadline).await;
    }
}

async fn write(
    conn: &mut Conn,
    pending: Vec<(String, redis::Pipeline, usize)>,
    deadline: Duration,
) {
    for (key, pipe, n) in pending {
        let r = tokio::time::timeout(deadline, pipe.query_async::<Vec<Value>>(conn)).await;
        let failed = match r {
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no reply within {deadline:?}"),
        };
        tracing::warn!(stream = %key, entries = n, error = %shoal_core::redact::redact_text(&failed), "redis: change feed entries lost (the changes themselves were written)");
    }
}

#[cfg(test)]
mod tests {
    // The writer's behaviour against a real Cluster is covered by the feed conformance suite
    // (`tests/cluster.rs`); here only the bound on the queue, which needs no server.
    use super::*;

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_instead_of_blocking() {
        let (tx, _rx) = mpsc::channel(2);
        let outbox = FeedOutbox {
            tx,
            dropped: AtomicU64::new(0),
        };
        let changes = (0..5)
            .map(|_| Change::new(shoal_core::ChangeKind::Touched, "s"))
            .collect();
        outbox.push("k", changes);
        assert_eq!(outbox.dropped(), 3);
    }
}
