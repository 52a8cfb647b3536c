//! Stream leases: which instance reads a stream upstream.
//!
//! One store lease per stream (`stream.<stream id>`, see
//! [`SessionStore::lease`](shoal_core::SessionStore::lease)), owned by the instance id: taken
//! only when no other instance holds a live one, renewed and released only by its owner
//! (compare-and-renew, compare-and-delete in the store). Leases live beside the session, never
//! in its metadata, so renewing one bumps no revision and invalidates no cache. On Redis the
//! lease is timed by Redis's clock, so instances whose clocks disagree still never both hold it.

use shoal_core::{LeaseReply, LeaseRequest, SessionId};

use crate::state::ProxyState;

/// The store lease name of `stream` (stream ids are `g0` or a letter and 16 hex digits).
fn lease_name(stream: &str) -> String {
    format!("stream.{stream}")
}

impl ProxyState {
    async fn stream_lease(
        &self,
        id: &SessionId,
        stream: &str,
        request: impl for<'a> FnOnce(&'a str, &'a str) -> LeaseRequest<'a>,
    ) -> shoal_core::Result<LeaseReply> {
        let name = lease_name(stream);
        let request = request(&name, &self.cfg.instance_id);
        self.store.lease(id, request).await
    }

    /// Takes this instance's lease on `stream` (or extends it) unless another instance holds a
    /// live one. Returns whether this instance holds it now.
    pub(crate) async fn claim_lease(
        &self,
        id: &SessionId,
        stream: &str,
    ) -> shoal_core::Result<bool> {
        let ttl = self.cfg.stream_lease;
        let reply = self
            .stream_lease(id, stream, |name, owner| LeaseRequest::Acquire {
                name,
                owner,
                ttl,
            })
            .await?;
        Ok(reply.granted)
    }

    /// Extends this instance's live lease on `stream`. `false` when it ran out or another
    /// instance holds it: the caller no longer owns the stream.
    pub(crate) async fn renew_lease(
        &self,
        id: &SessionId,
        stream: &str,
    ) -> shoal_core::Result<bool> {
        let ttl = self.cfg.stream_lease;
        let reply = self
            .stream_lease(id, stream, |name, owner| LeaseRequest::Renew {
                name,
                owner,
                ttl,
            })
            .await?;
        Ok(reply.granted)
    }

    /// Gives up this instance's lease on `stream`; a lease another instance holds stays.
    pub(crate) async fn release_lease(
        &self,
        id: &SessionId,
        stream: &str,
    ) -> shoal_core::Result<()> {
        match self
            .stream_lease(id, stream, |name, owner| LeaseRequest::Release {
                name,
                owner,
            })
            .await
        {
            Ok(_) | Err(shoal_core::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The instance holding a live lease on `stream`, if any.
    pub(crate) async fn lease_holder(
        &self,
        id: &SessionId,
        stream: &str,
    ) -> shoal_core::Result<Option<String>> {
        let reply = self
            .stream_lease(id, stream, |name, _| LeaseRequest::Read { name })
            .await?;
        Ok(reply.holder.map(|l| l.owner))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_names_are_valid_store_lease_names() {
        for stream in [
            "g0",
            "p0123456789abcdef",
            "gffffffffffffffff",
            crate::bridge::input_required::HOLDER_STREAM,
        ] {
            let name = lease_name(stream);
            let request = LeaseRequest::Read { name: &name };
            assert!(request.validate().is_ok(), "{name}");
        }
    }
}
