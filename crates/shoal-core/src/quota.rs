//! Admission quotas: how many sessions one subject (a principal, a client address) may hold at
//! once and may open per time window, counted by the store so that every process sharing it
//! enforces the same numbers.
//!
//! A subject keeps two logs of session ids: the *live* log (each id with when it stops counting,
//! `admitted + live_ttl`) and the *recent* log (each id with when it was admitted). Admitting an
//! id first drops what has aged out of both, then refuses when the live log holds `max_live`
//! ids or the recent log holds `max_per_window` ids, saying when a slot frees up; otherwise it
//! records the id in both. Admitting an id that is already live admits it again without
//! counting it twice (a retried call). [`QuotaRequest::Release`] takes a session that ended off
//! the live log (the recent log keeps it: a create-and-delete loop is still a loop);
//! [`QuotaRequest::Cancel`] takes an admission back from both (the session was never created).
//!
//! The live log is a bound, not a census: a session that stays active past `live_ttl` after its
//! admission stops counting then (hosts pass the session TTL, so only sessions kept alive by
//! use for longer escape it). Stores keep the time themselves (Redis: the server's clock), so
//! instance clock skew does not shift the windows.

use std::{collections::HashMap, time::Duration};

use crate::{Error, Result, Timestamp};

/// The longest subject, in bytes.
pub const MAX_QUOTA_SUBJECT: usize = 256;
/// The longest member (session id), in bytes.
pub const MAX_QUOTA_MEMBER: usize = 128;
/// The longest window or live time.
pub const MAX_QUOTA_TIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// The numbers one subject is held to. A count of 0 means "no bound".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaRule {
    /// Most sessions live at once.
    pub max_live: u32,
    /// How long an admitted session counts as live unless released first (the session TTL).
    pub live_ttl: Duration,
    /// Most sessions admitted per `window`.
    pub max_per_window: u32,
    /// The sliding window of `max_per_window`.
    pub window: Duration,
}

/// What to do with a subject's quota ([`SessionStore::quota`](crate::SessionStore::quota)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaRequest<'a> {
    /// Admits `member` under `rule` if both of the subject's bounds allow it.
    Admit {
        /// Who is counted, e.g. `addr:192.0.2.7` or `principal:alice`.
        subject: &'a str,
        /// The session id being admitted.
        member: &'a str,
        /// The bounds.
        rule: QuotaRule,
    },
    /// The session ended: it no longer counts as live (it still counts in its window).
    Release {
        /// The subject it was admitted under.
        subject: &'a str,
        /// The session id.
        member: &'a str,
    },
    /// The admission is taken back entirely (the session was never created).
    Cancel {
        /// The subject it was admitted under.
        subject: &'a str,
        /// The session id.
        member: &'a str,
    },
}

/// Which bound refused an admission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaBound {
    /// `max_live`: too many sessions at once.
    Live,
    /// `max_per_window`: too many sessions opened recently.
    Window,
}

impl QuotaBound {
    /// `live` or `window`, for metrics and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            QuotaBound::Live => "live",
            QuotaBound::Window => "window",
        }
    }
}

/// The answer to a [`QuotaRequest`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaReply {
    /// Admit: the member counts now. Release, Cancel: the member was found and taken off.
    Done,
    /// Release, Cancel: the member was not counted (already released, aged out, never admitted).
    Absent,
    /// Admit refused by `bound`; a slot frees up after `retry_after` at the latest.
    Refused {
        /// The bound that refused.
        bound: QuotaBound,
        /// When to try again.
        retry_after: Duration,
    },
}

impl<'a> QuotaRequest<'a> {
    /// The subject.
    pub fn subject(&self) -> &'a str {
        match *self {
            QuotaRequest::Admit { subject, .. }
            | QuotaRequest::Release { subject, .. }
            | QuotaRequest::Cancel { subject, .. } => subject,
        }
    }

    /// The member.
    pub fn member(&self) -> &'a str {
        match *self {
            QuotaRequest::Admit { member, .. }
            | QuotaRequest::Release { member, .. }
            | QuotaRequest::Cancel { member, .. } => member,
        }
    }

    /// Checks the subject (1–256 bytes, no control characters), the member (1–128 bytes, no
    /// control characters) and the rule's times (1 ms to 7 days).
    pub fn validate(&self) -> Result<()> {
        let subject = self.subject();
        if subject.is_empty()
            || subject.len() > MAX_QUOTA_SUBJECT
            || subject.chars().any(char::is_control)
        {
            return Err(Error::invalid(format!(
                "quota subject must be 1-{MAX_QUOTA_SUBJECT} bytes without control characters"
            )));
        }
        let member = self.member();
        if member.is_empty()
            || member.len() > MAX_QUOTA_MEMBER
            || member.chars().any(char::is_control)
        {
            return Err(Error::invalid(format!(
                "quota member must be 1-{MAX_QUOTA_MEMBER} bytes without control characters"
            )));
        }
        if let QuotaRequest::Admit { rule, .. } = self {
            for (what, d) in [("live_ttl", rule.live_ttl), ("window", rule.window)] {
                if d < Duration::from_millis(1) || d > MAX_QUOTA_TIME {
                    return Err(Error::invalid(format!(
                        "quota {what} must be between 1 ms and 7 days"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// One subject's logs as a store that keeps them itself (memory) holds them. Times are
/// milliseconds of the store's clock.
#[derive(Clone, Debug, Default)]
pub struct QuotaLog {
    /// Member → when it stops counting as live.
    live: HashMap<String, u64>,
    /// Member → when it was admitted.
    recent: HashMap<String, u64>,
    /// The longest time any entry counts (for dropping a whole idle subject).
    keep_until: u64,
}

impl QuotaLog {
    /// Whether nothing in the log counts any more at `now`.
    pub fn is_idle(&self, now: Timestamp) -> bool {
        self.keep_until <= now.as_millis()
    }

    /// Applies `request` at `now`: the rules every store follows. Stores that keep quota logs
    /// themselves (memory) call it, the others (Redis) run the same rules in their own language.
    pub fn apply(&mut self, request: &QuotaRequest<'_>, now: Timestamp) -> QuotaReply {
        let now = now.as_millis();
        match *request {
            QuotaRequest::Release { member, .. } => match self.live.remove(member) {
                Some(until) if until > now => QuotaReply::Done,
                _ => QuotaReply::Absent,
            },
            QuotaRequest::Cancel { member, .. } => {
                let live = self.live.remove(member).is_some_and(|until| until > now);
                let recent = self.recent.remove(member).is_some();
                if live || recent {
                    QuotaReply::Done
                } else {
                    QuotaReply::Absent
                }
            }
            QuotaRequest::Admit { member, rule, .. } => {
                let window = millis(rule.window);
                let ttl = millis(rule.live_ttl);
                self.live.retain(|_, until| *until > now);
                self.recent.retain(|_, at| at.saturating_add(window) > now);
                if self.live.contains_key(member) {
                    return QuotaReply::Done;
                }
                if rule.max_live > 0 && self.live.len() >= rule.max_live as usize {
                    let first = self.live.values().min().copied().unwrap_or(now);
                    return refused(QuotaBound::Live, first.saturating_sub(now));
                }
                if rule.max_per_window > 0 && self.recent.len() >= rule.max_per_window as usize {
                    let first = self.recent.values().min().copied().unwrap_or(now);
                    return refused(
                        QuotaBound::Window,
                        first.saturating_add(window).saturating_sub(now),
                    );
                }
                self.live.insert(member.to_owned(), now.saturating_add(ttl));
                self.recent.insert(member.to_owned(), now);
                self.keep_until = self.keep_until.max(now.saturating_add(ttl.max(window)));
                QuotaReply::Done
            }
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A refusal whose retry time is at least one millisecond.
fn refused(bound: QuotaBound, after_ms: u64) -> QuotaReply {
    QuotaReply::Refused {
        bound,
        retry_after: Duration::from_millis(after_ms.max(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: QuotaRule = QuotaRule {
        max_live: 2,
        live_ttl: Duration::from_secs(100),
        max_per_window: 3,
        window: Duration::from_secs(10),
    };

    fn admit(log: &mut QuotaLog, member: &str, at: u64) -> QuotaReply {
        let r = QuotaRequest::Admit {
            subject: "s",
            member,
            rule: RULE,
        };
        log.apply(&r, Timestamp(at))
    }

    #[test]
    fn the_live_bound_frees_on_release_and_the_window_does_not() {
        let mut log = QuotaLog::default();
        assert_eq!(admit(&mut log, "a", 1_000), QuotaReply::Done);
        assert_eq!(admit(&mut log, "b", 1_000), QuotaReply::Done);
        // Again: not counted twice.
        assert_eq!(admit(&mut log, "a", 1_001), QuotaReply::Done);
        assert_eq!(
            admit(&mut log, "c", 2_000),
            QuotaReply::Refused {
                bound: QuotaBound::Live,
                retry_after: Duration::from_millis(99_000)
            }
        );
        let release = QuotaRequest::Release {
            subject: "s",
            member: "a",
        };
        assert_eq!(log.apply(&release, Timestamp(2_000)), QuotaReply::Done);
        assert_eq!(log.apply(&release, Timestamp(2_000)), QuotaReply::Absent);
        assert_eq!(admit(&mut log, "c", 2_000), QuotaReply::Done);
        // Three admitted within 10 s: the window refuses the fourth even with a free slot.
        let release_b = QuotaRequest::Release {
            subject: "s",
            member: "b",
        };
        assert_eq!(log.apply(&release_b, Timestamp(3_000)), QuotaReply::Done);
        assert_eq!(
            admit(&mut log, "d", 3_000),
            QuotaReply::Refused {
                bound: QuotaBound::Window,
                retry_after: Duration::from_millis(8_000)
            }
        );
        assert_eq!(admit(&mut log, "d", 11_000), QuotaReply::Done);
    }

    #[test]
    fn cancel_takes_an_admission_back_from_the_window_too() {
        let mut log = QuotaLog::default();
        for m in ["a", "b", "c"] {
            assert_eq!(admit(&mut log, m, 0), QuotaReply::Done);
            let cancel = QuotaRequest::Cancel {
                subject: "s",
                member: m,
            };
            assert_eq!(log.apply(&cancel, Timestamp(0)), QuotaReply::Done);
        }
        assert_eq!(admit(&mut log, "d", 0), QuotaReply::Done);
        assert!(!log.is_idle(Timestamp(99_999)));
        assert!(log.is_idle(Timestamp(100_000)));
    }

    #[test]
    fn zero_means_no_bound_and_bad_input_is_refused() {
        let mut log = QuotaLog::default();
        let rule = QuotaRule {
            max_live: 0,
            max_per_window: 0,
            ..RULE
        };
        for i in 0..50 {
            let m = format!("m{i}");
            let r = QuotaRequest::Admit {
                subject: "s",
                member: &m,
                rule,
            };
            assert_eq!(log.apply(&r, Timestamp(0)), QuotaReply::Done);
        }
        let bad = [
            QuotaRequest::Release {
                subject: "",
                member: "a",
            },
            QuotaRequest::Release {
                subject: "s",
                member: "a\nb",
            },
            QuotaRequest::Admit {
                subject: "s",
                member: "a",
                rule: QuotaRule {
                    window: Duration::ZERO,
                    ..RULE
                },
            },
            QuotaRequest::Admit {
                subject: "s",
                member: "a",
                rule: QuotaRule {
                    live_ttl: Duration::from_secs(8 * 24 * 3600),
                    ..RULE
                },
            },
        ];
        for r in bad {
            assert!(r.validate().is_err(), "{r:?}");
        }
        let long = "x".repeat(MAX_QUOTA_SUBJECT + 1);
        assert!(
            QuotaRequest::Cancel {
                subject: &long,
                member: "a"
            }
            .validate()
            .is_err()
        );
    }
}
