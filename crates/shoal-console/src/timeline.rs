//! The incident timeline: breaker transitions, proxies lost and back, outage-journal
//! replays, Redis evictions, failovers and restarts — noticed by comparing each reading with
//! the one before, kept in memory (the newest [`KEPT`]).

use std::collections::VecDeque;

use serde::Serialize;

/// How many incidents are kept.
pub const KEPT: usize = 500;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentKind {
    /// A proxy's breaker opened: its store calls go to the fallback.
    BreakerOpened,
    /// A proxy's breaker is letting a trial call through.
    BreakerHalfOpen,
    /// A proxy's breaker closed: Redis serves again.
    BreakerClosed,
    /// A proxy stopped answering its `/metrics`.
    InstanceDown,
    /// A proxy answers again (or for the first time after being down).
    InstanceUp,
    /// A proxy replayed outage-journal entries into Redis.
    Replayed,
    /// Redis evicted keys.
    Evicted,
    /// Redis's role or master changed (a failover), or a Cluster node failed or recovered.
    Failover,
    /// The Redis server restarted (its run id changed).
    RedisRestarted,
    /// The console could not reach Redis.
    RedisUnreachable,
    /// An operator deleted sessions from the console.
    SessionsDeleted,
    /// The console reaches Redis again.
    RedisReachable,
}

impl IncidentKind {
    /// A short label.
    pub fn label(self) -> &'static str {
        match self {
            IncidentKind::BreakerOpened => "breaker opened",
            IncidentKind::BreakerHalfOpen => "breaker half-open",
            IncidentKind::BreakerClosed => "breaker closed",
            IncidentKind::InstanceDown => "proxy down",
            IncidentKind::InstanceUp => "proxy up",
            IncidentKind::Replayed => "journal replayed",
            IncidentKind::Evicted => "keys evicted",
            IncidentKind::Failover => "failover",
            IncidentKind::RedisRestarted => "redis restarted",
            IncidentKind::RedisUnreachable => "redis unreachable",
            IncidentKind::RedisReachable => "redis reachable",
            IncidentKind::SessionsDeleted => "sessions deleted",
        }
    }

    /// `bad`, `good` or `info`, for the page's colours.
    pub fn severity(self) -> &'static str {
        match self {
            IncidentKind::BreakerOpened
            | IncidentKind::InstanceDown
            | IncidentKind::Evicted
            | IncidentKind::RedisUnreachable
            | IncidentKind::RedisRestarted => "bad",
            IncidentKind::BreakerClosed
            | IncidentKind::InstanceUp
            | IncidentKind::RedisReachable => "good",
            _ => "info",
        }
    }
}

/// One incident.
#[derive(Clone, Debug, Serialize)]
pub struct Incident {
    /// When the console noticed it (Unix ms).
    pub at_ms: u64,
    /// What happened.
    pub kind: IncidentKind,
    /// Where: a proxy's URL or `redis`.
    pub source: String,
    /// Details (counts, addresses).
    pub detail: String,
}

/// The kept incidents.
#[derive(Debug, Default)]
pub struct Timeline {
    incidents: VecDeque<Incident>,
}

impl Timeline {
    /// Notes an incident (and logs it).
    pub fn note(&mut self, at_ms: u64, kind: IncidentKind, source: &str, detail: String) {
        tracing::info!(target: "shoal::console", kind = kind.label(), source, detail, "incident");
        if self.incidents.len() == KEPT {
            self.incidents.pop_front();
        }
        self.incidents.push_back(Incident {
            at_ms,
            kind,
            source: source.to_owned(),
            detail,
        });
    }

    /// The newest `n`, newest first.
    pub fn newest(&self, n: usize) -> Vec<Incident> {
        self.incidents.iter().rev().take(n).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_first_and_bounded() {
        let mut t = Timeline::default();
        for i in 0..(KEPT as u64 + 10) {
            t.note(i, IncidentKind::Replayed, "p", i.to_string());
        }
        let all = t.newest(usize::MAX);
        assert_eq!(all.len(), KEPT);
        assert_eq!(all[0].at_ms, KEPT as u64 + 9);
        assert_eq!(all[KEPT - 1].at_ms, 10);
    }
}
