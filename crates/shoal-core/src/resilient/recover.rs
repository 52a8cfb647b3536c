//! The durable journal seen from the wrapper: logging each fallback-path write after it is
//! applied and before it is acknowledged, the drain's progress, emptying the file once the journal is
//! drained — and [`Resilient::recover`], which replays the file after a restart.

use std::{
    collections::HashMap,
    sync::atomic::{AtomicUsize, Ordering},
};

use super::{durable::Record, state::lock, wrapper::Resilient};
use crate::{Result, SessionId, SessionStore};

/// What [`Resilient::recover`] found in the journal file and replayed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// Acknowledged calls replayed into the fallback and the in-memory journal.
    pub replayed: u64,
    /// Calls the replay refused (each had been refused the same way when first made, e.g. an
    /// update that conflicted); nothing of them was acknowledged.
    pub refused: u64,
    /// Sessions whose drain had started when the process stopped: their writes are read
    /// back from the primary before being written again.
    pub in_doubt: u64,
    /// Bytes after the last whole record (a write cut by the crash), dropped. Such a write
    /// was never acknowledged.
    pub torn_bytes: u64,
    /// Journal entries drained into the primary right away (it answered at recovery); the
    /// rest drain once the health monitor finds it healthy.
    pub drained: u64,
}

/// Counts a logged write in flight until dropped.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<P: SessionStore, F: SessionStore> Resilient<P, F> {
    /// Replays the journal file (if [`JournalConfig::path`](super::JournalConfig::path) is
    /// set) after a restart: every write this instance acknowledged during an outage and had
    /// not drained is applied again to the fallback and the in-memory journal — with the
    /// breaker open, so nothing reaches the primary before the journal's order is rebuilt;
    /// then, if the primary answers its health check, the breaker is closed and the journal
    /// drained at once (else the health monitor does it once the primary is back). Call it once, before serving (and before
    /// [`spawn_monitor`](Resilient::spawn_monitor)); later calls find nothing.
    pub async fn recover(&self) -> Result<RecoveryReport> {
        let found = lock(&self.state.recovered).take();
        let Some(found) = found else {
            return Ok(RecoveryReport::default());
        };
        let mut report = RecoveryReport {
            torn_bytes: found.torn_bytes,
            ..RecoveryReport::default()
        };
        if found.torn_bytes > 0 {
            tracing::warn!(
                bytes = found.torn_bytes,
                "resilient: the journal file ends in a torn record (a write cut by the crash, \
                 never acknowledged); dropped"
            );
        }
        if found.records.is_empty() {
            return Ok(report);
        }
        self.state.recovering.store(true, Ordering::Release);
        self.on_transition(self.state.breaker.trip());
        let mut started: HashMap<SessionId, u64> = HashMap::new();
        for record in found.records {
            let r = match record {
                Record::DrainStarted(id, after) => {
                    started.insert(id, after);
                    continue;
                }
                Record::Settled(_) => continue,
                Record::Create(s) => self.create(s).await.map(drop),
                Record::Restore(r) => self.restore(*r).await.map(drop),
                Record::Update(s) => self.update(&s).await.map(drop),
                Record::Touch(id) => self.touch(&id).await.map(drop),
                Record::Delete(id) => self.delete(&id).await.map(drop),
                Record::Append(id, frames) => self.append_frames(&id, frames).await.map(drop),
                Record::DeleteFrames(id, through) => {
                    self.delete_frames(&id, through).await.map(drop)
                }
                Record::AddPending(id, p) => self.add_pending(&id, p).await,
                Record::TakePending(id, r) => self.take_pending(&id, &r).await.map(drop),
            };
            match r {
                Ok(()) => report.replayed += 1,
                Err(e) => {
                    tracing::debug!(error = %e, "resilient: a journaled call is refused again");
                    report.refused += 1;
                }
            }
        }
        for (id, after) in started {
            let marked = self.with_journal(|j| {
                let marked = j.kind(&id).is_some();
                j.mark_in_doubt(&id, after);
                marked
            });
            if marked {
                report.in_doubt += 1;
            }
        }
        self.state.recovering.store(false, Ordering::Release);
        // The breaker was opened only to route the replay; when the primary answers now,
        // close it and drain at once, so the instance starts as it would without a file.
        let healthy = matches!(
            tokio::time::timeout(
                self.state.config.health.timeout,
                self.state.primary.health()
            )
            .await,
            Ok(Ok(h)) if h.status != crate::HealthStatus::Unhealthy
        );
        if healthy {
            self.on_transition(self.state.breaker.close());
            let drained = self.drain_journal().await;
            report.drained = drained.entries;
        }
        tracing::info!(
            replayed = report.replayed,
            refused = report.refused,
            in_doubt = report.in_doubt,
            drained = report.drained,
            "resilient: journal file replayed"
        );
        Ok(report)
    }

    /// Logs `record` — a call just applied on the fallback path, answered `r` — and waits
    /// until it is durable before the call is acknowledged. Only calls that succeeded are
    /// logged (a replay never applies what was refused). A failed log write turns the answer
    /// into `Unavailable`: the write is in memory but was not acknowledged, which the
    /// contract allows for any failed write. Callers hold the session's lock, so the drain
    /// cannot settle the session between the write and its record. Without a journal file,
    /// or while replaying it, returns `r` as it is.
    pub(super) async fn log_after<T>(
        &self,
        r: Result<T>,
        record: impl FnOnce() -> Record,
    ) -> Result<T> {
        let Some(log) = &self.state.durable else {
            return r;
        };
        if r.is_err() || self.state.recovering.load(Ordering::Acquire) {
            return r;
        }
        let submitted = {
            let _gate = lock(&self.state.log_gate);
            self.state.logging.fetch_add(1, Ordering::AcqRel);
            log.submit(&record())
        };
        let _in_flight = InFlight(&self.state.logging);
        log.wait(submitted?).await?;
        r
    }

    /// Logs that the drain of `id` starts writing into the primary (whose `last_seq` is
    /// `after`), and waits until that is durable.
    pub(super) async fn log_drain_started(&self, id: &SessionId, after: u64) -> Result<()> {
        let Some(log) = &self.state.durable else {
            return Ok(());
        };
        let submitted = log.submit(&Record::DrainStarted(id.clone(), after))?;
        log.wait(submitted).await
    }

    /// Logs that `id` is settled (not waited for: a lost `Settled` only makes a recovery
    /// read the session's writes back from the primary before skipping them).
    pub(super) fn log_settled(&self, id: &SessionId) {
        if let Some(log) = &self.state.durable
            && let Err(e) = log.submit(&Record::Settled(id.clone()))
        {
            tracing::debug!(session = %id, error = %e, "resilient: settled mark not logged");
        }
    }

    /// Empties the journal file when the journal is empty and no logged write is in flight
    /// (checked under the same gate writes are logged under, so no record acknowledged
    /// after the check is cut).
    pub(super) async fn compact_durable(&self) {
        let Some(log) = &self.state.durable else {
            return;
        };
        let submitted = {
            let _gate = lock(&self.state.log_gate);
            let idle = self.state.logging.load(Ordering::Acquire) == 0
                && self.with_journal(|j| j.len() == 0 && j.marked() == 0);
            if !idle || log.bytes() <= super::durable::HEADER_BYTES {
                return;
            }
            log.submit_reset()
        };
        let r = match submitted {
            Ok(p) => log.wait(p).await,
            Err(e) => Err(e),
        };
        if let Err(e) = r {
            tracing::warn!(error = %e, "resilient: the drained journal file was not emptied");
        }
    }
}
