//! Cross-instance wake-ups over Redis pub/sub.
//!
//! The instance that records a stream's events publishes `PUBLISH <prefix>:<sid> <stream>`
//! after each append; every instance pattern-subscribes to `<prefix>:*` and wakes its local
//! followers of that stream, which then read the new frames from the store. The store stays
//! the only source of events (so no gap and no duplicate); a lost wake-up only delays delivery
//! until the follower's fallback poll.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, atomic::Ordering::Relaxed},
    time::Duration,
};

use futures_util::StreamExt as _;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

type Key = (String, String);

/// Publishes and receives wake-ups.
pub(crate) struct Wakeups {
    publish: redis::aio::ConnectionManager,
    prefix: String,
    local: Mutex<HashMap<Key, broadcast::Sender<()>>>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Wakeups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Wakeups({})", self.prefix)
    }
}

impl Wakeups {
    /// Connects (bounded by 5 s) and starts the subscriber, which reconnects on failure until
    /// `cancel`.
    pub(crate) async fn connect(
        url: &str,
        prefix: &str,
        metrics: Arc<Metrics>,
        cancel: CancellationToken,
    ) -> Result<Arc<Self>, String> {
        let client = redis::Client::open(url).map_err(|e| format!("wake-up Redis URL: {e}"))?;
        let publish = tokio::time::timeout(
            Duration::from_secs(5),
            redis::aio::ConnectionManager::new(client.clone()),
        )
        .await
        .map_err(|_| "wake-up Redis: connect timed out".to_string())?
        .map_err(|e| format!("wake-up Redis: {e}"))?;
        let w = Arc::new(Wakeups {
            publish,
            prefix: prefix.to_owned(),
            local: Mutex::new(HashMap::new()),
            metrics,
        });
        let w2 = w.clone();
        tokio::spawn(async move {
            let pattern = format!("{}:*", w2.prefix);
            while !cancel.is_cancelled() {
                match client.get_async_pubsub().await {
                    Ok(mut ps) => {
                        if let Err(e) = ps.psubscribe(&pattern).await {
                            tracing::warn!(error = %e, "wake-up subscribe failed");
                        } else {
                            let mut msgs = ps.on_message();
                            loop {
                                let msg = tokio::select! {
                                    _ = cancel.cancelled() => return,
                                    m = msgs.next() => m,
                                };
                                let Some(msg) = msg else { break };
                                let channel = msg.get_channel_name().to_owned();
                                let Ok(stream) = msg.get_payload::<String>() else {
                                    continue;
                                };
                                if let Some(sid) = channel
                                    .strip_prefix(w2.prefix.as_str())
                                    .and_then(|s| s.strip_prefix(':'))
                                {
                                    w2.wake_local(sid, &stream);
                                }
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "wake-up subscriber cannot connect"),
                }
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        });
        Ok(w)
    }

    fn wake_local(&self, sid: &str, stream: &str) {
        let tx = self
            .local
            .lock()
            .ok()
            .and_then(|m| m.get(&(sid.to_owned(), stream.to_owned())).cloned());
        if let Some(tx) = tx {
            self.metrics.wakeups_received.fetch_add(1, Relaxed);
            let _ = tx.send(());
        }
    }

    /// Announces new frames of `stream` (fire and forget).
    pub(crate) fn publish(&self, sid: &str, stream: &str) {
        let mut conn = self.publish.clone();
        let channel = format!("{}:{sid}", self.prefix);
        let stream = stream.to_owned();
        tokio::spawn(async move {
            let r: redis::RedisResult<i64> = redis::cmd("PUBLISH")
                .arg(channel)
                .arg(stream)
                .query_async(&mut conn)
                .await;
            if let Err(e) = r {
                tracing::debug!(error = %e, "wake-up publish failed");
            }
        });
    }

    /// Wake-ups for one stream, for as long as the receiver lives.
    pub(crate) fn subscribe(&self, sid: &str, stream: &str) -> Option<broadcast::Receiver<()>> {
        let mut m = self.local.lock().ok()?;
        // Drop channels nobody listens to any more.
        m.retain(|_, tx| tx.receiver_count() > 0);
        Some(
            m.entry((sid.to_owned(), stream.to_owned()))
                .or_insert_with(|| broadcast::channel(16).0)
                .subscribe(),
        )
    }
}
