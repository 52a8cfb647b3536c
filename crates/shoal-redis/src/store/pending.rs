//! A session's pending requests (its `requests` hash): `add_pending`, `take_pending`,
//! `list_pending`, in the order they were added.

use redis::Value;
use shoal_core::{Error, PendingRequest, RequestId, Result, SessionId, codec};

use super::{
    exec::{ST_EXISTS, ST_PENDING_LIMIT, int_of, not_found, now_arg, num_arg},
    handle::StoreState,
};
use crate::meta::{self, bytes_of, hash_pairs};

/// A requests-hash field no request id maps to (they are `n:` or `s:` prefixed).
const PROBE_FIELD: &[u8] = b"probe";

impl StoreState {
    pub(super) async fn add_pending(&self, id: &SessionId, request: PendingRequest) -> Result<()> {
        shoal_core::store::check_pending(&self.limits, &request)?;
        let field = meta::request_field(&request.request_id);
        let value = codec::encode(&request)
            .map_err(|e| Error::invalid(format!("cannot encode pending request: {e}")))?;
        let args = vec![
            now_arg(self.now()),
            field,
            value,
            num_arg(self.limits.max_pending_per_session as u64),
            num_arg(self.limits.max_session_bytes as u64),
            num_arg(self.metadata_allowance()),
        ];
        let reply = self
            .script("add_pending", id, &self.scripts.add_pending, args)
            .await?;
        match reply.first().and_then(int_of) {
            Some(ST_EXISTS) => Err(Error::AlreadyExists {
                what: format!(
                    "pending request {} in session {:?}",
                    request.request_id,
                    id.as_str()
                ),
            }),
            Some(ST_PENDING_LIMIT) => Err(Error::LimitExceeded {
                what: "pending requests per session",
                limit: self.limits.max_pending_per_session as u64,
            }),
            _ => self.live("add_pending", id, reply).await.map(|_| ()),
        }
    }

    pub(super) async fn take_pending(
        &self,
        id: &SessionId,
        request_id: &RequestId,
    ) -> Result<Option<PendingRequest>> {
        let field = meta::request_field(request_id);
        let reply = self
            .script(
                "take_pending",
                id,
                &self.scripts.take_pending,
                vec![now_arg(self.now()), field.clone()],
            )
            .await?;
        let reply = self.live("take_pending", id, reply).await?;
        match reply.get(1).and_then(bytes_of) {
            None => Ok(None),
            Some(v) => Ok(Some(meta::decode_pending(id, &field, v)?.r)),
        }
    }

    pub(super) async fn list_pending(&self, id: &SessionId) -> Result<Vec<PendingRequest>> {
        let [meta_key, _, requests_key] = self.keys.session(id);
        let mut pipe = redis::pipe();
        pipe.cmd("HGET").arg(&meta_key).arg(meta::F_ACTIVITY);
        pipe.cmd("HGETALL").arg(&requests_key);
        pipe.cmd("HGET").arg(&meta_key).arg(meta::F_PENDING_COUNT);
        let mut c = self.conn();
        let (activity, all, counted): (Value, Value, Value) = self
            .io("list_pending", Some(id), pipe.query_async(&mut c))
            .await?;
        let activity = self.activity_reply("list_pending", id, &activity).await?;
        if activity.expires_at <= self.now() {
            return Err(not_found(id));
        }
        let pairs = hash_pairs(&all).ok_or_else(|| {
            Error::corrupt(
                format!("session {:?} pending requests", id.as_str()),
                "not a hash",
            )
        })?;
        if int_of(&counted).is_some_and(|q| q > pairs.len() as i64) {
            // Fewer requests than meta counts: evicted, or an add_pending landed between the
            // reads. The take_pending script checks again atomically (and removes the
            // session if the hash was evicted); a probe field that no request id maps to
            // takes nothing.
            let reply = self
                .script(
                    "list_pending",
                    id,
                    &self.scripts.take_pending,
                    vec![now_arg(self.now()), PROBE_FIELD.to_vec()],
                )
                .await?;
            self.live("list_pending", id, reply).await?;
        }
        let mut out = Vec::with_capacity(pairs.len());
        for (field, value) in pairs {
            out.push(meta::decode_pending(id, field, value)?);
        }
        out.sort_by_key(|p| p.o);
        Ok(out.into_iter().map(|p| p.r).collect())
    }
}
