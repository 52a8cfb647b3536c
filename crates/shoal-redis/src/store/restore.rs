//! `restore`: writes an exported session back whole — meta, frames, pending requests — with
//! one script, under a place reserved like `create`'s.

use std::sync::Arc;

use shoal_core::{Error, Result, SessionRecord, Timestamp, codec};

use super::{
    exec::{ST_CORRUPT, ST_EXISTS, ST_OK, int_of, now_arg, num_arg},
    handle::StoreState,
    metrics::M_CREATED,
};
use crate::meta::{self, MAX_LUA_INT, StoredPending};

impl StoreState {
    pub(super) async fn restore(self: &Arc<Self>, record: SessionRecord) -> Result<()> {
        record.validate(&self.limits)?;
        let s = &record.session;
        let numbers = [
            s.last_seq,
            s.first_seq,
            s.revision,
            s.frame_count,
            s.created_at.as_millis(),
            s.last_activity.as_millis(),
            s.expires_at.as_millis(),
        ];
        if numbers.iter().any(|n| *n > MAX_LUA_INT) {
            return Err(Error::invalid(format!(
                "session {:?}: seqs, revisions and timestamps above 2^53 - 1 are not supported \
                 by the redis backend (its scripts compute with Lua doubles)",
                s.id.as_str()
            )));
        }
        let reserved = self.reserve(&s.id, s.expires_at).await?;
        let args = self.restore_args(&record, self.now())?;
        let id = &s.id;
        let detail = self.created_detail(s);
        let reply = self
            .script_reporting("restore", id, &self.scripts.restore, args, &detail)
            .await?;
        match reply.first().and_then(int_of) {
            Some(ST_OK) => {}
            Some(ST_EXISTS) => {
                return Err(Error::AlreadyExists {
                    what: format!("session {:?}", id.as_str()),
                });
            }
            Some(ST_CORRUPT) => {
                if reserved {
                    self.unreserve(id).await;
                }
                return Err(self.corrupt_status(id, &reply));
            }
            other => {
                return Err(Error::backend(format!(
                    "redis restore: unexpected script status {other:?}"
                )));
            }
        }
        if let Err(e) = self.index(&[(id.as_str(), s.expires_at)]).await {
            tracing::warn!(session = %id, error = %e, "redis: restored session could not be indexed");
        }
        self.feed_after(id.as_str(), vec![super::create::created_change(s)]);
        self.bump(M_CREATED, 1);
        Ok(())
    }

    /// The restore script's arguments: now, the PEXPIRE ms, the number of meta fields and the
    /// fields, the number of frames and their encodings, then the pending requests as
    /// field/value pairs (numbered in their order).
    fn restore_args(&self, record: &SessionRecord, now: Timestamp) -> Result<Vec<Vec<u8>>> {
        let s = &record.session;
        let fields = meta::all_fields(s, record.pending.len() as u64)?;
        let mut args = vec![
            now_arg(now),
            num_arg(self.pexpire_ms(s.expires_at, now)),
            num_arg(fields.len() as u64),
        ];
        for (k, v) in fields {
            args.push(k.as_bytes().to_vec());
            args.push(v);
        }
        args.push(num_arg(record.frames.len() as u64));
        for f in &record.frames {
            args.push(
                codec::encode_frame(f)
                    .map_err(|e| Error::invalid(format!("cannot encode frame: {e}")))?,
            );
        }
        for (i, p) in record.pending.iter().enumerate() {
            args.push(meta::request_field(&p.request_id));
            args.push(
                codec::encode(&StoredPending {
                    o: i as u64 + 1,
                    r: p.clone(),
                })
                .map_err(|e| Error::invalid(format!("cannot encode pending request: {e}")))?,
            );
        }
        Ok(args)
    }
}
