//! Named leases of a session (`session_lease.lua`): one key per lease,
//! `<prefix>:{<sid>}:lease:<name>`, holding the owner token with a PX expiry. Acquire is
//! `SET NX PX` (or an extension by the holder); renew and release compare the owner first.
//! Redis's clock times the lease; the reply's expiry is this store's clock plus what is left.

use std::time::Duration;

use shoal_core::{Error, Lease, LeaseReply, LeaseRequest, Result, SessionId};

use super::{
    exec::{int_of, now_arg, num_arg},
    handle::StoreState,
};
use crate::meta::bytes_of;

impl StoreState {
    pub(super) async fn lease(
        &self,
        id: &SessionId,
        request: LeaseRequest<'_>,
    ) -> Result<LeaseReply> {
        request.validate()?;
        let (mode, owner, ttl) = match request {
            LeaseRequest::Acquire { owner, ttl, .. } => ("acquire", owner, ttl),
            LeaseRequest::Renew { owner, ttl, .. } => ("renew", owner, ttl),
            LeaseRequest::Release { owner, .. } => ("release", owner, Duration::ZERO),
            LeaseRequest::Read { .. } => ("read", "", Duration::ZERO),
        };
        let now = self.now();
        let key = self.keys.session_lease(id, request.name());
        let args = vec![
            now_arg(now),
            mode.as_bytes().to_vec(),
            owner.as_bytes().to_vec(),
            num_arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)),
        ];
        let reply = self
            .script_with_key("lease", id, &self.scripts.session_lease, Some(key), args)
            .await?;
        let reply = self.live("lease", id, reply).await?;
        let granted = reply.get(1).and_then(int_of) == Some(1);
        let holder = match (
            reply.get(2).and_then(bytes_of),
            reply.get(3).and_then(int_of),
        ) {
            (Some(owner), Some(pttl)) => {
                let owner = String::from_utf8(owner.to_vec()).map_err(|_| {
                    Error::corrupt(
                        format!("session {:?} lease {:?}", id.as_str(), request.name()),
                        "owner is not UTF-8",
                    )
                })?;
                // -1: no expiry (written by something else); treat as the longest lease.
                let left = u64::try_from(pttl)
                    .map(Duration::from_millis)
                    .unwrap_or(shoal_core::lease::MAX_LEASE_TTL);
                Some(Lease {
                    owner,
                    expires_at: now.saturating_add(left),
                })
            }
            _ => None,
        };
        Ok(LeaseReply { granted, holder })
    }
}
