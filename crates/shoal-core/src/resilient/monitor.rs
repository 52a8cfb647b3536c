//! The health monitor: probes the primary, feeds the breaker, drains the journal.

use std::{sync::Arc, time::Duration};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{breaker::BreakerState, metrics, state::lock, wrapper::Resilient};
use crate::{HealthStatus, SessionStore, Timestamp};

/// The outcome of one health probe of the primary.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProbeReport {
    /// When it started (wall clock).
    pub at: Timestamp,
    /// Whether the primary answered `Healthy` or `Degraded` in time.
    pub ok: bool,
    /// How long it took (the deadline when it timed out).
    pub latency: Duration,
    /// Why it failed.
    pub error: Option<String>,
}

/// Stops the health monitor when dropped (or when [`MonitorHandle::stop`] is called). A probe
/// or drain in progress finishes first; the journal is never left half-drained.
#[derive(Debug)]
pub struct MonitorHandle {
    cancel: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl MonitorHandle {
    /// Stops the monitor and waits for its current step to finish.
    pub async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for MonitorHandle {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl<P: SessionStore, F: SessionStore> Resilient<P, F> {
    /// Starts the health monitor on the current Tokio runtime: every
    /// [`health.interval`](super::HealthConfig::interval) it runs [`Resilient::probe`], and
    /// whenever the breaker is closed and sessions are marked, [`Resilient::drain_journal`].
    /// The task holds no strong reference to the store between steps; it ends when the
    /// handle is dropped or the store is gone.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn spawn_monitor(&self) -> MonitorHandle {
        let weak = Arc::downgrade(&self.state);
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        let every = self.state.config.health.interval;
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let Some(state) = weak.upgrade() else { break };
                let store = Resilient { state };
                // Not raced against `stop`: a drain step is finished, never abandoned.
                store.probe().await;
                let pending = {
                    let j = store.journal();
                    j.len() > 0 || j.marked() > 0
                };
                if store.breaker_state() == BreakerState::Closed && pending {
                    store.drain_journal().await;
                }
            }
        });
        MonitorHandle {
            cancel,
            task: Some(task),
        }
    }

    /// Probes the primary once: its `health()` under
    /// [`health.timeout`](super::HealthConfig::timeout); `Healthy` or `Degraded` in time is
    /// a success. The outcome counts for the breaker (a success only while it is half-open,
    /// a failure always), and is kept for [`Resilient::stats`] and `health()`.
    pub async fn probe(&self) -> ProbeReport {
        let at = Timestamp::now();
        let started = Instant::now();
        let (mut ok, mut error) = self.probe_once().await;
        if !ok {
            // A probe landing in the first instant after a fault (a connection still being
            // re-established) would cost a whole cooldown: look again, a moment later.
            let settle = (self.state.config.health.interval / 4).min(Duration::from_millis(250));
            tokio::time::sleep(settle).await;
            (ok, error) = self.probe_once().await;
        }
        let latency = started.elapsed();
        ::metrics::histogram!(metrics::HEALTH_LATENCY).record(latency.as_secs_f64());
        ::metrics::counter!(
            metrics::HEALTH_PROBES,
            "result" => if ok { "ok" } else { "failed" }
        )
        .increment(1);
        self.on_transition(self.state.breaker.record_probe(ok));
        let report = ProbeReport {
            at,
            ok,
            latency,
            error,
        };
        *lock(&self.state.probe) = Some(report.clone());
        report
    }

    /// Asks the primary's `health()` once, under the health timeout.
    async fn probe_once(&self) -> (bool, Option<String>) {
        let timeout = self.state.config.health.timeout;
        match tokio::time::timeout(timeout, self.state.primary.health()).await {
            Ok(Ok(h)) if h.status != HealthStatus::Unhealthy => (true, None),
            Ok(Ok(h)) => (
                false,
                Some(
                    h.details
                        .get("error")
                        .cloned()
                        .unwrap_or_else(|| "the primary reports itself unhealthy".into()),
                ),
            ),
            Ok(Err(e)) => (false, Some(e.to_string())),
            Err(_) => (false, Some(format!("no answer within {timeout:?}"))),
        }
    }
}
