//! What can go wrong opening and closing a [`Stack`](super::Stack).

use std::time::Duration;

use shoal_core::resilient::BreakerState;

/// A setting the stack refuses, with the key it is under (`cache.ttl`, `redis.connections`,
/// `resilience.fallback`) and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid value for `{key}`: {reason}")]
pub struct InvalidSetting {
    /// The dotted key, as in a config file (`cache.bus.ping_interval`); the section alone
    /// when the rule is about the section as a whole.
    pub key: String,
    /// Why the value is refused (it starts with the key when it comes from the library
    /// config's own `validate`).
    pub reason: String,
}

impl InvalidSetting {
    /// `key` refused for `reason`.
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        InvalidSetting {
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// The error of a library config's `validate` under `section`. Those messages start
    /// with the key they are about (`cache.ttl must be greater than zero`), which becomes
    /// [`InvalidSetting::key`]; a message that does not names the section.
    pub(super) fn from_validation(section: &str, e: shoal_core::Error) -> Self {
        let reason = match e {
            shoal_core::Error::InvalidInput { reason } => reason,
            other => other.to_string(),
        };
        let key = reason
            .split_whitespace()
            .next()
            .filter(|word| word.starts_with(&format!("{section}.")))
            .unwrap_or(section)
            .to_owned();
        InvalidSetting { key, reason }
    }
}

/// Why [`Stack::open`](super::Stack::open) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StackError {
    /// The URL is not one the stack opens (or is malformed); says which forms are.
    #[error("{0}")]
    Url(String),
    /// A setting is out of range, or does not fit the store (the breaker on an in-process
    /// store).
    #[error(transparent)]
    Setting(#[from] InvalidSetting),
    /// The Redis backend refused its configuration before connecting (an unreadable CA
    /// file, a URL it cannot use).
    #[error("invalid Redis configuration: {0}")]
    Redis(String),
    /// The store could not be reached, or refused the connection (credentials).
    #[error(transparent)]
    Store(shoal_core::Error),
    /// The pub/sub bus of the cache could not be started.
    #[error("starting the cache's invalidation bus: {0}")]
    Bus(#[source] shoal_core::Error),
}

impl StackError {
    /// True for a configuration the caller must change (the URL, a setting): retrying will
    /// not help. A command line tool reports these as usage errors.
    pub fn is_invalid_configuration(&self) -> bool {
        matches!(
            self,
            StackError::Url(_) | StackError::Setting(_) | StackError::Redis(_)
        )
    }
}

/// Writes that were acknowledged but could not be written when the stack closed: with a
/// `memory://` store they are simply gone; with Redis they are lost when the process exits.
#[derive(Debug, Default, thiserror::Error)]
#[error("{}", self.describe())]
#[non_exhaustive]
pub struct CloseError {
    /// Deferred cache updates (write-behind) the store refused at the final flush.
    pub updates_dropped: u64,
    /// The final cache flush failed as a whole.
    pub flush_failed: Option<shoal_core::Error>,
    /// The outage journal was not drained into Redis in time.
    pub journal: Option<UndrainedJournal>,
}

/// The part of the outage journal still not written into Redis when the stack closed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct UndrainedJournal {
    /// Journaled writes still not in Redis.
    pub entries: usize,
    /// Sessions they belong to.
    pub sessions: usize,
    /// How long the close waited for the drain.
    pub waited: Duration,
    /// The breaker when the close gave up.
    pub breaker: BreakerState,
}

impl CloseError {
    /// True when nothing was lost.
    pub(super) fn is_empty(&self) -> bool {
        self.updates_dropped == 0 && self.flush_failed.is_none() && self.journal.is_none()
    }

    fn describe(&self) -> String {
        let mut problems = Vec::new();
        if self.updates_dropped > 0 {
            problems.push(format!(
                "{} cached updates were refused by the store at flush time",
                self.updates_dropped
            ));
        }
        if let Some(e) = &self.flush_failed {
            problems.push(format!("cache flush: {e}"));
        }
        if let Some(j) = &self.journal {
            problems.push(format!(
                "{} journaled writes ({} sessions) were not drained into Redis within {} \
                 (breaker {}): they are lost when this process exits",
                j.entries,
                j.sessions,
                humantime::format_duration(j.waited),
                j.breaker
            ));
        }
        problems.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_messages_give_their_key() {
        let e = InvalidSetting::from_validation(
            "cache",
            shoal_core::Error::invalid("cache.ttl must be greater than zero"),
        );
        assert_eq!(e.key, "cache.ttl");
        assert_eq!(e.reason, "cache.ttl must be greater than zero");
        let e = InvalidSetting::from_validation(
            "redis",
            shoal_core::Error::invalid("redis url redis+sentinel://h: needs a master"),
        );
        assert_eq!(e.key, "redis");
    }

    #[test]
    fn a_close_error_says_what_was_lost() {
        let e = CloseError {
            updates_dropped: 2,
            journal: Some(UndrainedJournal {
                entries: 5,
                sessions: 1,
                waited: Duration::from_secs(3),
                breaker: BreakerState::Open,
            }),
            ..CloseError::default()
        };
        let text = e.to_string();
        assert!(text.contains("2 cached updates"), "{text}");
        assert!(text.contains("5 journaled writes (1 sessions)"), "{text}");
        assert!(text.contains("within 3s (breaker open)"), "{text}");
        assert!(CloseError::default().is_empty());
    }
}
