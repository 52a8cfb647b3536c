//! "New events in a session": followers wait for these instead of polling fast.
//!
//! Events stored on this replica wake its followers of that session at once; with a
//! [`NotifyBus`] (Redis pub/sub) they also wake followers on other replicas. Each session
//! with followers here has one `watch` channel, shared by its followers, so a wake-up costs
//! one map lookup however many sessions are followed, and a wake-up that arrives while a
//! follower reads the store is not lost (the follower sees the version moved). A wake-up is
//! only a hint: the store stays the source of events, so a lost one (the bus was down) delays
//! a follower until its next poll and never loses or repeats an event.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use shoal_core::{
    SessionId,
    notify::{BusEvent, NotifyBus},
};
use tokio::sync::{broadcast::error::RecvError, watch};

/// The followed sessions of one event store.
#[derive(Debug, Default)]
struct Watched {
    sessions: Mutex<HashMap<SessionId, watch::Sender<u64>>>,
}

impl Watched {
    fn wake(&self, session: &SessionId) {
        if let Ok(map) = self.sessions.lock()
            && let Some(tx) = map.get(session)
        {
            tx.send_modify(|v| *v = v.wrapping_add(1));
        }
    }

    fn wake_all(&self) {
        if let Ok(map) = self.sessions.lock() {
            for tx in map.values() {
                tx.send_modify(|v| *v = v.wrapping_add(1));
            }
        }
    }
}

/// Publishes wake-ups and hands out subscriptions.
#[derive(Debug, Clone)]
pub(crate) struct Wakeups {
    watched: Arc<Watched>,
    bus: Option<Arc<dyn NotifyBus>>,
    /// Whether the bus carries wake-ups at all.
    bus_wakes: bool,
}

impl Wakeups {
    /// Wake-ups on this replica, and over `bus` when it carries them (a task then hands the
    /// bus's wake-ups to the followers here; it ends when the bus closes).
    pub(crate) fn new(bus: Option<Arc<dyn NotifyBus>>) -> Self {
        let watched = Arc::new(Watched::default());
        let mut bus_wakes = false;
        if let Some(b) = &bus
            && let Some(mut wakeups) = b.subscribe_wakeups()
        {
            bus_wakes = true;
            let mut events = b.subscribe();
            let watched = Arc::downgrade(&watched);
            tokio::spawn(async move {
                loop {
                    let Some(w) = watched.upgrade() else { return };
                    tokio::select! {
                        got = wakeups.recv() => match got {
                            Ok(wakeup) => w.wake(&wakeup.session),
                            // Behind: any session may have news.
                            Err(RecvError::Lagged(_)) => w.wake_all(),
                            Err(RecvError::Closed) => return,
                        },
                        got = events.recv() => match got {
                            // The bus went down or came back: read the store now.
                            Ok(BusEvent::Down | BusEvent::Up) | Err(RecvError::Lagged(_)) => w.wake_all(),
                            Ok(_) => {}
                            Err(RecvError::Closed) => return,
                        },
                    }
                }
            });
        }
        Wakeups {
            watched,
            bus,
            bus_wakes,
        }
    }

    /// Whether wake-ups reach other replicas right now.
    pub(crate) fn crosses_instances(&self) -> bool {
        self.bus_wakes && self.bus.as_ref().is_some_and(|b| b.is_up())
    }

    /// New events were stored on `stream` of `session`.
    pub(crate) fn notify(&self, session: &SessionId, stream: &str) {
        self.watched.wake(session);
        if let Some(bus) = &self.bus {
            bus.publish_wakeup(session, stream);
        }
    }

    /// A subscription to `session`, taken before the follower's first read so nothing is
    /// missed.
    pub(crate) fn subscribe(&self, session: &SessionId) -> Subscription {
        let rx = match self.watched.sessions.lock() {
            Ok(mut map) => map
                .entry(session.clone())
                .or_insert_with(|| watch::channel(0).0)
                .subscribe(),
            // A poisoned map: a subscription that never fires; the follower polls.
            Err(_) => watch::channel(0).1,
        };
        Subscription {
            rx,
            session: session.clone(),
            watched: Arc::clone(&self.watched),
        }
    }
}

/// One follower's wake-ups.
pub(crate) struct Subscription {
    rx: watch::Receiver<u64>,
    session: SessionId,
    watched: Arc<Watched>,
}

impl Subscription {
    /// Returns when the session may have new events since the last call (or since the
    /// subscription was taken). Never returns while nothing happens; the caller bounds it
    /// with its poll interval.
    pub(crate) async fn changed(&mut self) {
        if self.rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Ok(mut map) = self.watched.sessions.lock()
            && map
                .get(&self.session)
                // This subscription's receiver is still counted while it drops.
                .is_some_and(|tx| tx.receiver_count() <= 1)
        {
            map.remove(&self.session);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_wakeup_reaches_the_sessions_followers_only_and_is_not_lost_while_reading() {
        let w = Wakeups::new(None);
        let s1 = SessionId::new("s1").unwrap();
        let s2 = SessionId::new("s2").unwrap();
        let mut a = w.subscribe(&s1);
        let mut b = w.subscribe(&s1);
        let mut c = w.subscribe(&s2);
        // Sent while nobody waits (a follower reading the store): still seen afterwards.
        w.notify(&s1, "common");
        let quick = Duration::from_millis(200);
        assert!(tokio::time::timeout(quick, a.changed()).await.is_ok());
        assert!(tokio::time::timeout(quick, b.changed()).await.is_ok());
        assert!(
            tokio::time::timeout(quick, c.changed()).await.is_err(),
            "another session"
        );
        assert!(
            tokio::time::timeout(quick, a.changed()).await.is_err(),
            "seen once"
        );
        // The last follower of a session leaves: its entry goes.
        drop(a);
        drop(b);
        assert!(!w.watched.sessions.lock().unwrap().contains_key(&s1));
        assert!(w.watched.sessions.lock().unwrap().contains_key(&s2));
    }
}
