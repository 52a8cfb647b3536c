//! Shared by the fault tests (`faults.rs`, `in_doubt.rs`): the resilience settings they run
//! with, the workload's log of appends, and the read-back that checks every acknowledged frame
//! is in Redis exactly once and in order.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use shoal_core::{
    FrameQuery, SessionId, SessionStore,
    resilient::{BreakerState, FallbackMode, ResilienceConfig, Resilient, is_provisional},
};

/// Short deadlines and cooldowns so a fault opens and closes the breaker within seconds.
pub(crate) fn config() -> ResilienceConfig {
    let mut c = ResilienceConfig::default().with_fallback(FallbackMode::Memory);
    c.op_timeout = Duration::from_millis(750);
    c.bulk_timeout = Duration::from_secs(3);
    c.breaker.failure_threshold = 5;
    c.breaker.cooldown = Duration::from_secs(1);
    c.breaker.close_after = 3;
    c.health.interval = Duration::from_millis(200);
    c.health.timeout = Duration::from_millis(500);
    c
}

/// One append as the workload saw it.
#[derive(Debug)]
pub(crate) struct Attempt {
    pub(crate) content: String,
    pub(crate) result: Result<u64, String>,
    pub(crate) started: Instant,
    pub(crate) latency: Duration,
}

/// Every append the workload tried on one session, in order.
#[derive(Debug)]
pub(crate) struct SessionLog {
    pub(crate) id: SessionId,
    pub(crate) appends: Vec<Attempt>,
}

/// What the read-back found, summed over sessions.
#[derive(Debug, Default)]
pub(crate) struct Verdict {
    pub(crate) sessions: usize,
    pub(crate) stored: usize,
    pub(crate) acked: usize,
    pub(crate) provisional_acks: usize,
    pub(crate) unacked: usize,
    pub(crate) unacked_stored: usize,
    pub(crate) lost: usize,
    pub(crate) duplicated: usize,
    pub(crate) out_of_order: usize,
    pub(crate) unknown: usize,
    pub(crate) seq_mismatch: usize,
    pub(crate) seq_gaps: usize,
}

/// Every frame of `id` as `store` holds it: (seq, content).
pub(crate) async fn stored(store: &impl SessionStore, id: &SessionId) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = store
            .frames(id, &FrameQuery::after(after, 1_000))
            .await
            .unwrap_or_else(|e| panic!("read back session {id}: {e}"));
        after = page.next_after(after);
        out.extend(
            page.frames
                .iter()
                .map(|f| (f.seq, String::from_utf8_lossy(&f.content).into_owned())),
        );
        if !page.has_more || page.frames.is_empty() {
            return out;
        }
    }
}

impl Verdict {
    /// Compares one session's frames as Redis holds them (`held`) with the workload's log;
    /// `resolve` maps an acknowledged (maybe provisional) seq to its final seq.
    pub(crate) fn check(
        &mut self,
        held: &[(u64, String)],
        log: &SessionLog,
        resolve: impl Fn(u64) -> Option<u64>,
    ) {
        self.sessions += 1;
        self.stored += held.len();
        self.seq_gaps += held.windows(2).filter(|w| w[1].0 != w[0].0 + 1).count();
        let mut at: HashMap<&str, Vec<u64>> = HashMap::new();
        for (seq, c) in held {
            at.entry(c.as_str()).or_default().push(*seq);
        }
        let mut known = HashSet::new();
        let mut last_acked = 0;
        for a in &log.appends {
            known.insert(a.content.as_str());
            let seqs = at.get(a.content.as_str()).cloned().unwrap_or_default();
            self.duplicated += seqs.len().saturating_sub(1);
            match &a.result {
                Ok(acked_seq) => {
                    self.acked += 1;
                    let Some(&final_seq) = seqs.first() else {
                        self.lost += 1;
                        continue;
                    };
                    if final_seq <= last_acked {
                        self.out_of_order += 1;
                    }
                    last_acked = final_seq;
                    if is_provisional(*acked_seq) {
                        self.provisional_acks += 1;
                    }
                    if resolve(*acked_seq) != Some(final_seq) {
                        self.seq_mismatch += 1;
                    }
                }
                Err(_) => {
                    self.unacked += 1;
                    if !seqs.is_empty() {
                        self.unacked_stored += 1;
                    }
                }
            }
        }
        self.unknown += held
            .iter()
            .filter(|(_, c)| !known.contains(c.as_str()))
            .count();
    }
}

/// Breaker transitions as seen by a 2 ms poll, until `stop`.
pub(crate) async fn sample<P: SessionStore, F: SessionStore>(
    store: Arc<Resilient<P, F>>,
    stop: Arc<AtomicBool>,
) -> Vec<(Instant, BreakerState)> {
    let mut seen = vec![(Instant::now(), store.breaker_state())];
    while !stop.load(Ordering::Relaxed) {
        let s = store.breaker_state();
        if seen.last().is_none_or(|(_, last)| *last != s) {
            seen.push((Instant::now(), s));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    seen
}
