//! "New events on a stream": followers of a stream wait for these instead of polling fast.
//!
//! Events stored on this instance wake local followers at once (an in-process broadcast);
//! with a [`NotifyBus`] (Redis pub/sub) they also wake followers on other instances. A
//! wake-up is only a hint: the store stays the source of events, so a lost one (the bus was
//! down) delays a follower until its next poll and never loses or repeats an event.

use std::sync::Arc;

use shoal_core::{SessionId, notify::NotifyBus};
use tokio::sync::broadcast::{self, error::RecvError};

/// How many local wake-ups a follower may fall behind before it is told it lagged (it then
/// reads the store, as for a wake-up).
const LOCAL_CAPACITY: usize = 4_096;

/// Publishes wake-ups and hands out subscriptions.
#[derive(Debug, Clone)]
pub(crate) struct Wakeups {
    local: broadcast::Sender<SessionId>,
    bus: Option<Arc<dyn NotifyBus>>,
}

impl Wakeups {
    pub(crate) fn new(bus: Option<Arc<dyn NotifyBus>>) -> Self {
        Wakeups {
            local: broadcast::channel(LOCAL_CAPACITY).0,
            bus,
        }
    }

    /// Whether wake-ups reach other instances.
    pub(crate) fn crosses_instances(&self) -> bool {
        self.bus
            .as_ref()
            .is_some_and(|b| b.is_up() && b.subscribe_wakeups().is_some())
    }

    /// New events were stored on `stream` of `session`.
    pub(crate) fn notify(&self, session: &SessionId, stream: &str) {
        let _ = self.local.send(session.clone());
        if let Some(bus) = &self.bus {
            bus.publish_wakeup(session, stream);
        }
    }

    /// A subscription, taken before the follower's first read so nothing is missed.
    pub(crate) fn subscribe(&self) -> Subscription {
        Subscription {
            local: self.local.subscribe(),
            remote: self.bus.as_ref().and_then(|b| b.subscribe_wakeups()),
        }
    }
}

/// One follower's wake-ups.
pub(crate) struct Subscription {
    local: broadcast::Receiver<SessionId>,
    remote: Option<broadcast::Receiver<shoal_core::notify::Wakeup>>,
}

impl Subscription {
    /// Returns when `session` may have new events (or a wake-up may have been missed).
    /// Never returns while nothing happens; the caller bounds it with its poll interval.
    pub(crate) async fn changed(&mut self, session: &SessionId) {
        loop {
            let hit = match &mut self.remote {
                Some(remote) => tokio::select! {
                    r = self.local.recv() => local_hit(r, session),
                    r = remote.recv() => match r {
                        Ok(w) if w.session == *session => LocalHit::Yes,
                        Ok(_) => LocalHit::No,
                        Err(RecvError::Lagged(_)) => LocalHit::Yes,
                        // The bus is gone: local wake-ups and polling remain.
                        Err(RecvError::Closed) => { self.remote = None; LocalHit::No }
                    },
                },
                None => local_hit(self.local.recv().await, session),
            };
            match hit {
                LocalHit::Yes => return,
                LocalHit::No => {}
                LocalHit::Closed => std::future::pending::<()>().await,
            }
        }
    }
}

fn local_hit(r: Result<SessionId, RecvError>, session: &SessionId) -> LocalHit {
    match r {
        Ok(s) if s == *session => LocalHit::Yes,
        Ok(_) => LocalHit::No,
        Err(RecvError::Lagged(_)) => LocalHit::Yes,
        Err(RecvError::Closed) => LocalHit::Closed,
    }
}

enum LocalHit {
    Yes,
    No,
    /// The hub is gone (the event store was dropped): only the caller's polling remains.
    Closed,
}
