//! Reading and writing one session's meta hash: `get`, `get_many`, `update`, `touch`,
//! `delete`, and the reply readers the other operations share.

use std::sync::Arc;

use redis::Value;
use shoal_core::{
    Change, ChangeKind, Error, GetMany, ItemError, Result, Session, SessionId, SessionStatus,
    Timestamp,
};

use super::{
    exec::{ST_CONFLICT, array, int_of, not_found, now_arg, num_arg, server_error, u64_of},
    feed_write::FeedMode,
    handle::{RedisStore, StoreState},
    metrics::{M_COMPLETED, M_DELETED, M_FAILED},
    sweep::ExpireOutcome,
};
use crate::meta::{self, MAX_LUA_INT, bytes_of};

/// Reports an unreadable item beside the readable ones.
///
/// `shoal_core::ItemError` is `#[non_exhaustive]` and has no constructor, so no backend outside
/// `shoal-core` can build one (reported as a contract problem). Until it gains one, an
/// unreadable item is logged and left out of the result (it is neither found nor missing);
/// single-item reads (`get`) still return [`Error::Corrupt`] for it.
pub(super) fn push_item_error(errors: &mut Vec<ItemError>, id: &SessionId, error: Error) {
    tracing::warn!(session = %id, error = %error, "redis: unreadable session reported beside a multi-session read");
    errors.push(ItemError::new(id.clone(), error));
}

impl RedisStore {
    /// One `HMGET` of `fields` on the session's meta hash (the cheap version check a `strict`
    /// cache makes); one value per field, `Nil` where absent.
    pub(crate) async fn meta_fields(&self, id: &SessionId, fields: &[&str]) -> Result<Vec<Value>> {
        let mut c = redis::cmd("HMGET");
        c.arg(self.state.keys.meta(id)).arg(fields);
        Ok(array(self.state.cmd("stamp", Some(id), c).await?).unwrap_or_default())
    }
}

impl StoreState {
    pub(super) async fn get(&self, id: &SessionId) -> Result<Option<Session>> {
        let mut c = redis::cmd("HGETALL");
        c.arg(self.keys.meta(id));
        let reply = self.cmd("get", Some(id), c).await?;
        let Some(s) = meta::parse_session(id, &reply)? else {
            return Ok(None);
        };
        if s.is_expired_at(self.now()) {
            if let ExpireOutcome::Removed | ExpireOutcome::Gone = self.expire_one(id).await? {
                self.unindex(&[id.as_str()]).await;
            }
            return Ok(None);
        }
        Ok(Some(s))
    }

    pub(super) async fn get_many(&self, ids: &[SessionId]) -> Result<GetMany> {
        let replies = self.hgetall_many(ids).await?;
        let now = self.now();
        let mut out = GetMany::default();
        for (id, v) in ids.iter().zip(&replies) {
            match self.parse_meta_reply(id, v) {
                Ok(Some(s)) if !s.is_expired_at(now) => out.found.push(s),
                Ok(_) => out.missing.push(id.clone()),
                Err(e @ Error::Corrupt { .. }) => push_item_error(&mut out.errors, id, e),
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    pub(super) async fn update(self: &Arc<Self>, session: &Session) -> Result<Session> {
        session.check_metadata(&self.limits)?;
        let now = self.now();
        let expires = self.expiry_from(now);
        let blob = meta::encode_desc(session)?;
        let mut args = vec![
            now_arg(now),
            num_arg(expires.as_millis()),
            num_arg(self.pexpire_ms(expires, now)),
            num_arg(session.revision.min(MAX_LUA_INT)),
        ];
        for (k, v) in meta::chunk_fields(&blob) {
            args.push(k.as_bytes().to_vec());
            args.push(v);
        }
        let id = &session.id;
        let detail = self.updated_detail(session.status);
        let reply = self
            .script_reporting("update", id, &self.scripts.update, args, &detail)
            .await?;
        if reply.first().and_then(int_of) == Some(ST_CONFLICT) {
            return Err(Error::Conflict {
                what: format!("session {:?}", id.as_str()),
                expected: session.revision,
                actual: reply.get(1).and_then(u64_of).unwrap_or(0),
            });
        }
        let reply = self.live("update", id, reply).await?;
        let (Some(old), Some(a)) = (
            reply.get(1).and_then(bytes_of),
            reply.get(2).and_then(bytes_of),
        ) else {
            return Err(Error::backend("redis update: bad reply"));
        };
        // What is stored now: the blob just written, with the script's field a.
        let stored = meta::assemble(id, a, &blob)?;
        let metric = match stored.status {
            SessionStatus::Completed => Some(M_COMPLETED),
            SessionStatus::Failed => Some(M_FAILED),
            _ => None,
        };
        if let Some(m) = metric
            && meta::desc_status(old) != Some(stored.status)
        {
            self.bump(m, 1);
        }
        if self.feed_mode() == FeedMode::After {
            let mut c = Change::new(ChangeKind::Updated, id.as_str());
            c.revision = Some(stored.revision);
            c.status = Some(stored.status);
            self.feed_after(id.as_str(), vec![c]);
        }
        Ok(stored)
    }

    pub(super) async fn touch(&self, id: &SessionId) -> Result<Timestamp> {
        let now = self.now();
        let expires = self.expiry_from(now);
        let mut args = vec![
            now_arg(now),
            num_arg(expires.as_millis()),
            num_arg(self.pexpire_ms(expires, now)),
        ];
        let window = self.feed_config().touch_every_ms();
        if self.feed_in_script()
            && let Some(start) =
                super::feed_write::touch_window_start(self.feed_config(), now.as_millis())
        {
            args.push(num_arg(start));
        }
        let reply = self.script("touch", id, &self.scripts.touch, args).await?;
        let reply = self.live("touch", id, reply).await?;
        if self.feed_mode() == FeedMode::After && window > 0 {
            let before = reply.get(1).and_then(u64_of).unwrap_or(0);
            if before / window != now.as_millis() / window {
                self.feed_after(
                    id.as_str(),
                    vec![Change::new(ChangeKind::Touched, id.as_str())],
                );
            }
        }
        Ok(expires)
    }

    pub(super) async fn delete(self: &Arc<Self>, id: &SessionId) -> Result<bool> {
        let reply = self
            .script(
                "delete",
                id,
                &self.scripts.delete,
                vec![now_arg(self.now())],
            )
            .await?;
        let existed = reply.first().and_then(int_of) == Some(1);
        self.unindex(&[id.as_str()]).await;
        let created = reply.get(1).and_then(u64_of);
        if existed {
            self.feed_end_after(id.as_str(), ChangeKind::Deleted, created);
        } else if reply.get(2).and_then(int_of) == Some(1) {
            self.feed_end_after(id.as_str(), ChangeKind::Expired, created);
        }
        if existed {
            self.bump(M_DELETED, 1);
        }
        Ok(existed)
    }

    /// The session in one `HGETALL` reply of a batch: `Ok(Some)` readable, `Ok(None)` absent,
    /// `Err` unreadable.
    pub(super) fn parse_meta_reply(&self, id: &SessionId, v: &Value) -> Result<Option<Session>> {
        if let Some(e) = server_error(v) {
            return Err(self.map_error(e, "get", Some(id)));
        }
        meta::parse_session(id, v)
    }

    /// Reads an `HGET meta a` reply. A missing `a` is `NotFound` when the hash is gone, else
    /// `Corrupt` (one more round trip, only then), naming schema 1 when the hash was written
    /// by it.
    pub(super) async fn activity_reply(
        &self,
        op: &'static str,
        id: &SessionId,
        reply: &Value,
    ) -> Result<meta::Activity> {
        if let Some(a) = bytes_of(reply) {
            return meta::parse_activity(id, a);
        }
        if let Some(e) = server_error(reply) {
            return Err(self.map_error(e, op, Some(id)));
        }
        let key = self.keys.meta(id);
        let mut pipe = redis::pipe();
        pipe.cmd("EXISTS").arg(&key);
        pipe.cmd("HEXISTS").arg(&key).arg("expires_at");
        let mut c = self.conn();
        let (exists, schema1): (i64, i64) = self.io(op, Some(id), pipe.query_async(&mut c)).await?;
        match (exists, schema1) {
            (0, _) => Err(not_found(id)),
            (_, 1) => Err(meta::corrupt(id, meta::F_ACTIVITY, meta::SCHEMA1)),
            _ => Err(meta::corrupt(id, meta::F_ACTIVITY, "missing")),
        }
    }

    /// One `HGETALL` of each session's meta hash, in order.
    pub(super) async fn hgetall_many(&self, ids: &[SessionId]) -> Result<Vec<Value>> {
        let cmds = ids
            .iter()
            .map(|id| {
                let key = self.keys.meta(id);
                let mut c = redis::cmd("HGETALL");
                c.arg(&key);
                (key, c)
            })
            .collect();
        self.multi("get_many", cmds).await
    }
}
