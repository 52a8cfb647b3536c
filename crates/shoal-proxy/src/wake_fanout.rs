//! Cross-instance wake-ups over the [`NotifyBus`] the proxy was given.
//!
//! The instance that records a stream's events publishes a wake-up after each append; every
//! instance wakes its local followers of that stream, which then read the new frames from the
//! store. The store stays the only source of events (so no gap and no duplicate); a lost
//! wake-up only delays delivery until the follower's fallback poll. When the bus goes down or
//! comes back, or this instance fell behind its wake-ups, every follower here is woken once so
//! it reads the store and polls at the pace the bus state calls for.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use shoal_core::{
    SessionId,
    notify::{BusEvent, NotifyBus, Wakeup},
};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

type StreamKey = (SessionId, String);

/// Publishes this instance's wake-ups and hands the bus's wake-ups to local followers.
pub(crate) struct WakeupFanout {
    bus: Arc<dyn NotifyBus>,
    followers: Mutex<HashMap<StreamKey, broadcast::Sender<()>>>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for WakeupFanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WakeupFanout")
            .field("bus", &self.bus)
            .finish_non_exhaustive()
    }
}

/// What [`WakeupFanout::run`] reads: the bus's wake-ups and its state changes.
pub(crate) struct BusFeed {
    wakeups: broadcast::Receiver<Wakeup>,
    events: broadcast::Receiver<BusEvent>,
}

impl WakeupFanout {
    /// A fan-out on `bus`, with the subscriptions its [`WakeupFanout::run`] task reads (taken
    /// now, so nothing published from here on is missed). `None` if the bus carries no
    /// wake-ups.
    pub(crate) fn new(bus: Arc<dyn NotifyBus>, metrics: Arc<Metrics>) -> Option<(Self, BusFeed)> {
        let wakeups = bus.subscribe_wakeups()?;
        let events = bus.subscribe();
        Some((
            WakeupFanout {
                bus,
                followers: Mutex::new(HashMap::new()),
                metrics,
            },
            BusFeed { wakeups, events },
        ))
    }

    /// Whether the bus is connected, so wake-ups arrive (followers may then poll slowly).
    pub(crate) fn is_up(&self) -> bool {
        self.bus.is_up()
    }

    /// Announces new frames of `stream` (never blocks; best effort).
    pub(crate) fn publish(&self, session: &SessionId, stream: &str) {
        self.bus.publish_wakeup(session, stream);
    }

    /// Wake-ups for one stream, for as long as the receiver lives.
    pub(crate) fn follow(&self, session: &SessionId, stream: &str) -> broadcast::Receiver<()> {
        let mut m = self.followers.lock().unwrap_or_else(|e| e.into_inner());
        // Drop channels nobody listens to any more.
        m.retain(|_, tx| tx.receiver_count() > 0);
        m.entry((session.clone(), stream.to_owned()))
            .or_insert_with(|| broadcast::channel(16).0)
            .subscribe()
    }

    fn wake(&self, w: &Wakeup) {
        let tx = self
            .followers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(w.session.clone(), w.stream.to_string()))
            .cloned();
        if let Some(tx) = tx {
            self.metrics.wakeups_received.inc();
            let _ = tx.send(());
        }
    }

    fn wake_all(&self) {
        let all: Vec<broadcast::Sender<()>> = self
            .followers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for tx in all {
            let _ = tx.send(());
        }
    }

    /// Hands wake-ups to followers until `shutdown` (or until the bus ends).
    pub(crate) async fn run(self: Arc<Self>, mut feed: BusFeed, shutdown: CancellationToken) {
        let mut events_open = true;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                w = feed.wakeups.recv() => match w {
                    Ok(w) => self.wake(&w),
                    Err(RecvError::Lagged(n)) => {
                        tracing::debug!(missed = n, "wake-ups lagged; waking every follower");
                        self.wake_all();
                    }
                    Err(RecvError::Closed) => return,
                },
                e = feed.events.recv(), if events_open => match e {
                    Ok(BusEvent::Down | BusEvent::Up) => self.wake_all(),
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => events_open = false,
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use shoal_core::LocalBus;

    use super::*;

    fn sid(s: &str) -> SessionId {
        SessionId::new(s).unwrap()
    }

    #[tokio::test]
    async fn wakes_the_followers_of_the_stream_and_everyone_on_bus_changes() {
        let here = LocalBus::new();
        let there = here.endpoint();
        let metrics = Arc::new(Metrics::new(
            crate::MetricsExport::private(),
            "memory",
            "test",
        ));
        let (fanout, feed) = WakeupFanout::new(Arc::new(here.clone()), metrics.clone()).unwrap();
        let fanout = Arc::new(fanout);
        let stop = CancellationToken::new();
        let task = tokio::spawn(fanout.clone().run(feed, stop.clone()));
        let mut p1 = fanout.follow(&sid("s"), "p1");
        let mut g = fanout.follow(&sid("s"), "g");
        let within = Duration::from_secs(5);

        there.publish_wakeup(&sid("s"), "p1");
        tokio::time::timeout(within, p1.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(g.try_recv().is_err(), "other streams sleep on");
        assert_eq!(metrics.wakeups_received.get(), 1);
        there.publish_wakeup(&sid("unknown"), "p1");

        here.set_up(false);
        tokio::time::timeout(within, g.recv())
            .await
            .unwrap()
            .unwrap();
        tokio::time::timeout(within, p1.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(!fanout.is_up());
        assert_eq!(metrics.wakeups_received.get(), 1, "only matches count");
        stop.cancel();
        task.await.unwrap();
    }
}
