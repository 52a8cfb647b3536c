//! What waits to be published: de-duplicated, and cut into one batch of messages per channel.

use std::{
    collections::{BTreeMap, HashSet},
    sync::Arc,
};

use shoal_core::SessionId;

use super::{
    channels::Channels,
    message::{format_invalidations, format_wakeup},
};

/// Announcements not sent yet. Repeats collapse: an id (or a stream) waiting once is announced
/// once.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    /// Changed sessions.
    pub(crate) ids: HashSet<SessionId>,
    /// "Everything changed".
    pub(crate) all: bool,
    /// Streams with new events.
    pub(crate) wakeups: HashSet<(SessionId, Arc<str>)>,
}

/// The messages for one channel, sent as one pipeline.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Batch {
    /// The channel.
    pub(crate) channel: String,
    /// The message payloads, in order.
    pub(crate) payloads: Vec<String>,
    /// Session ids the invalidation messages carry.
    pub(crate) ids: u64,
    /// Wake-ups among the messages.
    pub(crate) wakeups: u64,
}

impl Outbox {
    /// Whether nothing waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.ids.is_empty() && !self.all && self.wakeups.is_empty()
    }

    /// Puts back what `failed` held (after a failed send).
    pub(crate) fn requeue(&mut self, failed: Outbox) {
        self.ids.extend(failed.ids);
        self.all |= failed.all;
        self.wakeups.extend(failed.wakeups);
    }

    /// The messages, one batch per channel: invalidations on the invalidation channel (at most
    /// `max_ids` ids per message), each wake-up on its session's wake-up channel.
    pub(crate) fn batches(&self, origin: &str, max_ids: usize, channels: &Channels) -> Vec<Batch> {
        let mut batches = Vec::new();
        if !self.ids.is_empty() || self.all {
            let msgs = format_invalidations(origin, self.ids.iter(), self.all, max_ids);
            batches.push(Batch {
                channel: channels.invalidate().to_owned(),
                ids: msgs.iter().map(|(_, n)| *n as u64).sum(),
                payloads: msgs.into_iter().map(|(m, _)| m).collect(),
                wakeups: 0,
            });
        }
        let mut wake: BTreeMap<&str, Batch> = BTreeMap::new();
        for (session, stream) in &self.wakeups {
            let channel = channels.wake_for(session);
            let batch = wake.entry(channel).or_insert_with(|| Batch {
                channel: channel.to_owned(),
                payloads: Vec::new(),
                ids: 0,
                wakeups: 0,
            });
            batch.payloads.push(format_wakeup(origin, session, stream));
            batch.wakeups += 1;
        }
        batches.extend(wake.into_values());
        batches
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pubsub::message::{parse_invalidation, parse_wakeup};

    fn sid(s: &str) -> SessionId {
        SessionId::new(s).unwrap()
    }

    #[test]
    fn one_batch_per_channel_with_at_most_max_ids_per_message() {
        let channels = Channels::new("p");
        let mut out = Outbox::default();
        assert!(out.is_empty());
        for i in 0..5 {
            out.ids.insert(sid(&format!("s{i}")));
        }
        out.wakeups.insert((sid("a"), "p1".into()));
        out.wakeups.insert((sid("a"), "p2".into()));
        out.wakeups.insert((sid("b"), "g".into()));
        let batches = out.batches("o", 2, &channels);
        let inv = &batches[0];
        assert_eq!(inv.channel, "p:invalidate");
        assert_eq!((inv.payloads.len(), inv.ids, inv.wakeups), (3, 5, 0));
        assert!(
            inv.payloads
                .iter()
                .all(|m| parse_invalidation(m.as_bytes()).unwrap().ids.len() <= 2)
        );
        let wake: Vec<&Batch> = batches[1..].iter().collect();
        assert_eq!(wake.iter().map(|b| b.wakeups).sum::<u64>(), 3);
        for b in &wake {
            assert_eq!(b.payloads.len() as u64, b.wakeups);
            for m in &b.payloads {
                let w = parse_wakeup(m.as_bytes()).unwrap();
                assert_eq!(channels.wake_for(&w.session), b.channel);
            }
        }
        let names: HashSet<&str> = batches.iter().map(|b| b.channel.as_str()).collect();
        assert_eq!(names.len(), batches.len(), "one batch per channel");
    }

    #[test]
    fn requeue_keeps_everything_once() {
        let mut out = Outbox::default();
        out.ids.insert(sid("x"));
        let mut failed = Outbox::default();
        failed.ids.insert(sid("x"));
        failed.all = true;
        failed.wakeups.insert((sid("x"), "p1".into()));
        out.requeue(failed);
        assert_eq!(out.ids.len(), 1);
        assert!(out.all);
        assert_eq!(out.wakeups.len(), 1);
    }
}
