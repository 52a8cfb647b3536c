//! Reads that fall back (read-only mode serves sessions the fallback holds), and the health
//! of the wrapper while the breaker is closed.

use std::{future::Future, time::Duration};

use tokio::time::Instant;

use super::{call::Call, config::FallbackMode, wrapper::Resilient};
use crate::{Health, HealthStatus, Result, SessionId, SessionStore};

impl<P: SessionStore, F: SessionStore> Resilient<P, F> {
    /// A read of a session the primary holds: primary, else (read-only mode) the fallback,
    /// else `Unavailable`. `held` tells whether the fallback's answer means it holds the
    /// session.
    pub(super) async fn read<T, PF, FF>(
        &self,
        id: &SessionId,
        op: &'static str,
        timeout: Duration,
        primary: impl FnMut() -> PF,
        fallback: impl FnOnce() -> FF,
        held: impl FnOnce(&Result<T>) -> bool,
    ) -> Result<T>
    where
        PF: Future<Output = Result<T>>,
        FF: Future<Output = Result<T>>,
    {
        match self.retrying(op, timeout, primary).await {
            Call::Done(r) => r,
            Call::Rejected if self.mode() == FallbackMode::ReadOnly => {
                let r = self.on_fallback(op, fallback()).await;
                if held(&r) {
                    r
                } else {
                    Err(self.not_held(id, op))
                }
            }
            Call::Rejected => Err(self.not_held(id, op)),
        }
    }

    pub(super) async fn health_closed(&self) -> Health {
        let started = Instant::now();
        let timeout = self.state.config.health.timeout;
        match tokio::time::timeout(timeout, self.state.primary.health()).await {
            Ok(Ok(h)) => {
                let mut out = Health::healthy("resilient", started.elapsed());
                // An unhealthy primary behind a closed breaker: calls will soon take the
                // fallback path, so the wrapper is as degraded as its fallback mode allows.
                out.status = match h.status {
                    HealthStatus::Unhealthy => self.degraded_status(),
                    other => other,
                };
                for (k, v) in h.details {
                    out.details.insert(format!("primary.{k}"), v);
                }
                out
            }
            Ok(Err(e)) => {
                let mut out =
                    Health::healthy("resilient", started.elapsed()).with_detail("primary.error", e);
                out.status = self.degraded_status();
                out
            }
            Err(_) => {
                let mut out = Health::healthy("resilient", started.elapsed())
                    .with_detail("primary.error", format!("no answer within {timeout:?}"));
                out.status = self.degraded_status();
                out
            }
        }
    }

    pub(super) fn degraded_status(&self) -> HealthStatus {
        match self.mode() {
            FallbackMode::None => HealthStatus::Unhealthy,
            _ => HealthStatus::Degraded,
        }
    }
}
