//! Stream leases: which instance reads a stream upstream.
//!
//! A lease is `<instance>@<until ms>` under `shoal.lease.<stream>` in the session's metadata,
//! written with the store's optimistic revision check. An instance takes or renews a lease
//! only when no other instance holds a live one, and releases only its own; a pump whose
//! renewal finds another holder stops (it never appends after losing its stream).

use shoal_core::{Error, Session, SessionId, Timestamp};

use crate::state::ProxyState;

/// The metadata key prefix of stream holder leases.
pub(crate) const LEASE_PREFIX: &str = "shoal.lease.";

/// Attempts of one read-modify-write before giving up on revision conflicts.
const ATTEMPTS: usize = 8;

/// The holder and expiry (ms) of the lease on `stream`, live or not.
fn lease_of(s: &Session, stream: &str) -> Option<(String, u64)> {
    let v = s.metadata.get(&format!("{LEASE_PREFIX}{stream}"))?;
    let (inst, until) = v.rsplit_once('@')?;
    Some((inst.to_owned(), until.parse().ok()?))
}

/// The instance holding a live lease on `stream`, if any.
pub(crate) fn lease_holder_alive(s: &Session, stream: &str, now: Timestamp) -> Option<String> {
    lease_of(s, stream).and_then(|(inst, until)| (until > now.as_millis()).then_some(inst))
}

impl ProxyState {
    fn lease_value(&self) -> String {
        let until = Timestamp::now().saturating_add(self.cfg.stream_lease);
        format!("{}@{}", self.cfg.instance_id, until.as_millis())
    }

    /// Takes or renews this instance's lease on `stream` unless another instance holds a live
    /// one. Returns whether this instance holds it now.
    pub(crate) async fn claim_lease(
        &self,
        id: &SessionId,
        stream: &str,
    ) -> shoal_core::Result<bool> {
        let key = format!("{LEASE_PREFIX}{stream}");
        for _ in 0..ATTEMPTS {
            let mut s = self
                .store
                .get(id)
                .await?
                .ok_or_else(|| Error::session_not_found(id))?;
            if lease_holder_alive(&s, stream, Timestamp::now())
                .is_some_and(|inst| inst != self.cfg.instance_id)
            {
                return Ok(false);
            }
            s.metadata.insert(key.clone(), self.lease_value());
            match self.store.update(&s).await {
                Ok(_) => return Ok(true),
                Err(Error::Conflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }

    /// Removes this instance's lease on `stream`; a lease another instance holds stays.
    pub(crate) async fn release_lease(
        &self,
        id: &SessionId,
        stream: &str,
    ) -> shoal_core::Result<()> {
        let key = format!("{LEASE_PREFIX}{stream}");
        for _ in 0..ATTEMPTS {
            let Some(mut s) = self.store.get(id).await? else {
                return Ok(());
            };
            if lease_of(&s, stream).is_none_or(|(inst, _)| inst != self.cfg.instance_id) {
                return Ok(());
            }
            s.metadata.remove(&key);
            match self.store.update(&s).await {
                Ok(_) | Err(Error::NotFound { .. }) => return Ok(()),
                Err(Error::Conflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_core::Transport;

    #[test]
    fn leases_parse_and_expire() {
        let mut s = Session::new(SessionId::generate(), Transport::StreamableHttp);
        assert_eq!(lease_holder_alive(&s, "p1", Timestamp(10)), None);
        s.metadata
            .insert(format!("{LEASE_PREFIX}p1"), "inst-a@100".into());
        assert_eq!(
            lease_holder_alive(&s, "p1", Timestamp(99)).as_deref(),
            Some("inst-a")
        );
        assert_eq!(lease_holder_alive(&s, "p1", Timestamp(100)), None);
        assert_eq!(lease_of(&s, "p1"), Some(("inst-a".into(), 100)));
        s.metadata
            .insert(format!("{LEASE_PREFIX}p2"), "junk".into());
        assert_eq!(lease_holder_alive(&s, "p2", Timestamp(1)), None);
    }
}
