//! Deleting a stateless request's stream session a while after its response: such a stream
//! has a Shoal session of its own, which would otherwise hold its place until the store's
//! session TTL (24 h by default). One task per event store, deletions in due order.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use shoal_core::{SessionId, SessionStore};
use tokio::{sync::mpsc, time::Instant};

/// Schedules deletions of finished stateless streams.
#[derive(Debug, Clone)]
pub(crate) struct StatelessCleanup {
    due: mpsc::UnboundedSender<(Instant, SessionId)>,
    keep: Duration,
}

impl StatelessCleanup {
    /// Starts the task; streams are kept `keep` after their response (for late resumes).
    pub(crate) fn start(store: Arc<dyn SessionStore>, keep: Duration) -> Self {
        let (due, mut queue) = mpsc::unbounded_channel::<(Instant, SessionId)>();
        tokio::spawn(async move {
            let mut pending: VecDeque<(Instant, SessionId)> = VecDeque::new();
            loop {
                let next = pending.front().map(|(at, _)| *at);
                tokio::select! {
                    got = queue.recv() => match got {
                        Some(entry) => pending.push_back(entry),
                        // The event store is gone: what is left expires with the TTL.
                        None => return,
                    },
                    _ = async {
                        match next {
                            Some(at) => tokio::time::sleep_until(at).await,
                            None => std::future::pending().await,
                        }
                    } => {
                        while pending.front().is_some_and(|(at, _)| *at <= Instant::now()) {
                            if let Some((_, session)) = pending.pop_front()
                                && let Err(e) = store.delete(&session).await
                            {
                                tracing::debug!(session = %session, error = %e, "a finished stateless stream could not be deleted; it expires with the TTL");
                            }
                        }
                    }
                }
            }
        });
        StatelessCleanup { due, keep }
    }

    /// The stream in `session` got its response.
    pub(crate) fn finished(&self, session: &SessionId) {
        let _ = self.due.send((Instant::now() + self.keep, session.clone()));
    }
}
