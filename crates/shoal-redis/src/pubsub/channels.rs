//! The channel names of one key prefix, and which one a wake-up goes to.

use shoal_core::SessionId;

/// How many wake-up channels there are. Their hash tags `{w0}` … `{w15}` fall on slots spread
/// over the masters of a Cluster, so wake-up traffic is shared between shards. Every instance
/// must use the same number: subscribers listen on all of them.
pub(crate) const WAKE_CHANNELS: usize = 16;

/// What a channel carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChannelKind {
    /// `<prefix>:invalidate`: sessions changed.
    Invalidate,
    /// `<prefix>:wake:{w<N>}`: new events on a stream.
    Wake,
}

/// The channels of one key prefix: `<prefix>:invalidate` and `<prefix>:wake:{w0}` …
/// `<prefix>:wake:{w15}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Channels {
    invalidate: String,
    wake: Vec<String>,
}

impl Channels {
    /// The channels under `key_prefix`.
    pub(crate) fn new(key_prefix: &str) -> Self {
        Channels {
            invalidate: format!("{key_prefix}:invalidate"),
            wake: (0..WAKE_CHANNELS)
                .map(|n| format!("{key_prefix}:wake:{{w{n}}}"))
                .collect(),
        }
    }

    /// The invalidation channel.
    pub(crate) fn invalidate(&self) -> &str {
        &self.invalidate
    }

    /// The wake-up channel of `session`: chosen by a hash of its id that is the same in every
    /// process (FNV-1a), so one session's wake-ups keep to one channel.
    pub(crate) fn wake_for(&self, session: &SessionId) -> &str {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in session.as_str().bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        let n = usize::try_from(h % WAKE_CHANNELS as u64).unwrap_or(0);
        self.wake
            .get(n)
            .map_or(self.invalidate.as_str(), String::as_str)
    }

    /// The wake-up channels.
    pub(crate) fn wake(&self) -> &[String] {
        &self.wake
    }

    /// Every channel a subscriber listens on.
    pub(crate) fn all(&self) -> Vec<String> {
        std::iter::once(self.invalidate.clone())
            .chain(self.wake.iter().cloned())
            .collect()
    }

    /// What `channel` carries, if it is one of these.
    pub(crate) fn kind(&self, channel: &str) -> Option<ChannelKind> {
        if channel == self.invalidate {
            Some(ChannelKind::Invalidate)
        } else if self.wake.iter().any(|w| w == channel) {
            Some(ChannelKind::Wake)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_kinds_and_a_stable_wake_channel_per_session() {
        let c = Channels::new("app");
        assert_eq!(c.invalidate(), "app:invalidate");
        assert_eq!(c.wake().len(), WAKE_CHANNELS);
        assert_eq!(c.wake()[3], "app:wake:{w3}");
        assert_eq!(c.all().len(), WAKE_CHANNELS + 1);
        assert_eq!(c.kind("app:invalidate"), Some(ChannelKind::Invalidate));
        assert_eq!(c.kind("app:wake:{w15}"), Some(ChannelKind::Wake));
        assert_eq!(c.kind("app:wake:{w16}"), None);
        assert_eq!(c.kind("other:invalidate"), None);
        let s = SessionId::new("s-1").unwrap();
        assert_eq!(c.wake_for(&s), c.wake_for(&s));
        assert!(c.wake().iter().any(|w| w == c.wake_for(&s)));
        // Many sessions use many channels.
        let used: std::collections::HashSet<&str> = (0..200)
            .map(|i| c.wake_for(&SessionId::new(format!("s{i}")).unwrap()))
            .collect();
        assert!(used.len() > WAKE_CHANNELS / 2, "{used:?}");
    }
}
