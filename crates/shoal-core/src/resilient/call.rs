//! One call on a store: the breaker's admission, the deadline, retries with backoff for
//! idempotent calls, and the metrics and breaker transitions each attempt reports.

use std::{future::Future, time::Duration};

use backon::BackoffBuilder;
use tokio::time::Instant;

use super::{
    breaker::{BreakerState, Outcome, Ticket, Transition},
    config::FallbackMode,
    metrics,
    wrapper::Resilient,
};
use crate::{Error, Result, SessionStore};

/// What became of a call on the primary.
pub(super) enum Call<T> {
    /// The primary was called (perhaps several times); its last answer.
    Done(Result<T>),
    /// The breaker refused the call; the primary was not called (or, for retried idempotent
    /// calls, refused a retry).
    Rejected,
}

/// How an answer counts for the breaker.
fn classify<T>(r: &Result<T>) -> Outcome {
    match r {
        Ok(_) => Outcome::Success,
        Err(Error::Unavailable { .. } | Error::Timeout { .. }) => Outcome::Failure,
        Err(Error::Backend(_)) => Outcome::Neutral,
        Err(_) => Outcome::Success,
    }
}

/// Whether an idempotent call may be retried after `e`.
pub(super) fn retryable(e: &Error) -> bool {
    matches!(e, Error::Unavailable { .. } | Error::Timeout { .. })
}

impl<P: SessionStore, F: SessionStore> Resilient<P, F> {
    pub(super) fn mode(&self) -> FallbackMode {
        self.state.config.fallback
    }

    pub(super) fn point(&self) -> Duration {
        self.state.config.op_timeout
    }

    pub(super) fn bulk(&self) -> Duration {
        self.state.config.bulk_timeout
    }

    pub(super) fn primary_name(&self) -> &'static str {
        self.state.primary.backend_name()
    }

    pub(super) fn fallback_name(&self) -> &'static str {
        self.state.fallback.backend_name()
    }

    pub(super) fn on_transition(&self, t: Option<Transition>) {
        let Some(t) = t else { return };
        let b = self.primary_name();
        ::metrics::gauge!(metrics::BREAKER_STATE, "backend" => b).set(t.to.gauge_value());
        ::metrics::counter!(
            metrics::BREAKER_TRANSITIONS,
            "backend" => b,
            "to" => t.to.as_str()
        )
        .increment(1);
        match t.to {
            BreakerState::Open => tracing::warn!(
                primary = self.primary_name(),
                from = t.from.as_str(),
                mode = self.mode().as_str(),
                "resilient: circuit breaker opened; calls take the fallback path"
            ),
            BreakerState::HalfOpen => tracing::info!(
                primary = self.primary_name(),
                "resilient: circuit breaker half-open; probing the primary"
            ),
            BreakerState::Closed => tracing::info!(
                primary = self.primary_name(),
                "resilient: circuit breaker closed; the primary is back"
            ),
        }
    }

    /// Asks the breaker for a ticket; counts a refusal.
    pub(super) fn admit(&self, op: &'static str) -> Option<Ticket<'_>> {
        let (ticket, t) = self.state.breaker.admit();
        self.on_transition(t);
        if ticket.is_none() {
            metrics::rejected(self.primary_name(), op);
        }
        ticket
    }

    /// One attempt on the primary under `timeout`, reported to the breaker and the metrics.
    pub(super) async fn run<T>(
        &self,
        op: &'static str,
        timeout: Duration,
        ticket: Ticket<'_>,
        fut: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        self.attempt(op, timeout, ticket, fut, false).await
    }

    /// [`run`](Self::run), where `retried` says a failure from a lost connection will be
    /// retried at once on the fresh connection: it then does not count (the retry does).
    async fn attempt<T>(
        &self,
        op: &'static str,
        timeout: Duration,
        ticket: Ticket<'_>,
        fut: impl Future<Output = Result<T>>,
        retried: bool,
    ) -> Result<T> {
        let started = Instant::now();
        let r = match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout { op, after: timeout }),
        };
        self.state.primary_metrics.record(op, &r, started.elapsed());
        let outcome = match &r {
            Err(e) if e.is_connection_lost() => self.connection_lost_outcome(retried),
            r => classify(r),
        };
        self.on_transition(ticket.finish(outcome));
        r
    }

    /// How a failure from a lost connection counts: not at all when the call is retried on
    /// the fresh connection, and once per burst (`breaker.failure_burst`) otherwise.
    fn connection_lost_outcome(&self, retried: bool) -> Outcome {
        if retried {
            return Outcome::Neutral;
        }
        let burst = self.state.config.breaker.failure_burst;
        let now = Instant::now();
        let mut last = super::state::lock(&self.state.last_connection_lost);
        match *last {
            Some(at) if now.saturating_duration_since(at) < burst => Outcome::Neutral,
            _ => {
                *last = Some(now);
                Outcome::Failure
            }
        }
    }

    /// A non-idempotent call: one attempt, if the breaker allows it.
    pub(super) async fn once<T, Fut>(
        &self,
        op: &'static str,
        timeout: Duration,
        make: impl FnOnce() -> Fut,
    ) -> Call<T>
    where
        Fut: Future<Output = Result<T>>,
    {
        match self.admit(op) {
            Some(t) => Call::Done(self.run(op, timeout, t, make()).await),
            None => Call::Rejected,
        }
    }

    /// An idempotent call: retried with backoff after `Unavailable`/`Timeout` while the
    /// breaker allows it. A first attempt that lost its connection is retried at once, on
    /// the fresh connection, and only the retry counts for the breaker.
    pub(super) async fn retrying<T, Fut>(
        &self,
        op: &'static str,
        timeout: Duration,
        mut make: impl FnMut() -> Fut,
    ) -> Call<T>
    where
        Fut: Future<Output = Result<T>>,
    {
        // Built at the first failure only: the common case never needs it.
        let mut backoff: Option<backon::ExponentialBackoff> = None;
        let mut first = true;
        loop {
            let Some(ticket) = self.admit(op) else {
                return Call::Rejected;
            };
            let r = self.attempt(op, timeout, ticket, make(), first).await;
            if first && r.as_ref().is_err_and(Error::is_connection_lost) {
                first = false;
                ::metrics::counter!(metrics::RETRIES, "op" => op).increment(1);
                continue;
            }
            first = false;
            match r {
                Err(e) if retryable(&e) => {
                    let delays = backoff.get_or_insert_with(|| {
                        let r = &self.state.config.retry;
                        backon::ExponentialBuilder::default()
                            .with_min_delay(r.min_delay)
                            .with_max_delay(r.max_delay)
                            .with_max_times(r.max_retries)
                            .with_jitter()
                            .build()
                    });
                    match delays.next() {
                        Some(delay) => {
                            ::metrics::counter!(metrics::RETRIES, "op" => op).increment(1);
                            tokio::time::sleep(delay).await;
                        }
                        None => return Call::Done(Err(e)),
                    }
                }
                r => return Call::Done(r),
            }
        }
    }

    /// One call on the fallback store under the point deadline.
    pub(super) async fn on_fallback<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let started = Instant::now();
        let timeout = self.point();
        let r = match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout { op, after: timeout }),
        };
        self.state
            .fallback_metrics
            .record(op, &r, started.elapsed());
        ::metrics::counter!(metrics::FALLBACK_OPS, "mode" => self.mode().as_str(), "op" => op)
            .increment(1);
        r
    }
}
