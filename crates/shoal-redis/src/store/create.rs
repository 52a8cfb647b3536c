//! `create`: reserve a place under `max_sessions` in the capacity set, write the session with
//! the create script, add its listing entry — in one pipelined round trip on a single server,
//! step by step on a Cluster or when the pipeline cannot finish the job — and give a place
//! back when the session was definitely not written.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use redis::Value;
use shoal_core::{Error, Result, Session, SessionId, Timestamp};

use super::{
    exec::{ST_CORRUPT, ST_EXISTS, ST_OK, array, int_of, now_arg, num_arg, server_error},
    handle::StoreState,
    metrics::M_CREATED,
};
use crate::{keys::bucket_of, meta};

/// Most creates settled at once; past it, a place reserved in doubt waits for its expiry.
const MAX_SETTLING: usize = 1024;

/// When a create that failed in doubt is settled: after each of these waits (from the
/// failure), until one check gets an answer. The first wait lets a request still in flight
/// on the old connection reach the server before the check looks.
const SETTLE_AFTER: [Duration; 4] = [
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
    Duration::from_secs(16),
];

impl StoreState {
    pub(super) async fn create(self: &Arc<Self>, session: Session) -> Result<Session> {
        let id = session.id.clone();
        let r = self.create_session(session).await;
        // In doubt: the request may have reached the server (a refused connection or an
        // open breaker is a plain `Unavailable`: nothing was sent).
        if let Err(e) = &r
            && (matches!(e, Error::Timeout { .. } | Error::Backend(_)) || e.is_connection_lost())
        {
            // The place may be reserved while the session was never written: without this,
            // it stays taken until the session's expiry (a whole TTL).
            self.settle_in_doubt_create(&id);
        }
        r
    }

    async fn create_session(self: &Arc<Self>, mut session: Session) -> Result<Session> {
        let now = self.now();
        session.begin(now, &self.limits)?;
        let mut args = vec![
            now_arg(now),
            num_arg(self.pexpire_ms(session.expires_at, now)),
        ];
        for (k, v) in meta::all_fields(&session, 0)? {
            args.push(k.as_bytes().to_vec());
            args.push(v);
        }
        let id = session.id.clone();
        if !self.cluster
            && let Some((reply, reserved)) = self
                .create_in_one_trip(&id, session.expires_at, &args)
                .await?
        {
            self.created_status(&id, &reply, reserved).await?;
            self.bump(M_CREATED, 1);
            return Ok(session);
        }
        let reserved = self.reserve(&id, session.expires_at).await?;
        let reply = self
            .script("create", &id, &self.scripts.create, args)
            .await?;
        self.created_status(&id, &reply, reserved).await?;
        if let Err(e) = self.index(&[(id.as_str(), session.expires_at)]).await {
            // The session exists; only listing misses it until the index is written again.
            tracing::warn!(session = %id, error = %e, "redis: created session could not be indexed");
        }
        self.bump(M_CREATED, 1);
        Ok(session)
    }

    /// Reserves a place for `id` under `max_sessions`, atomically (one script on the
    /// capacity set); when the store is full, frees the places of a bounded batch of expired
    /// sessions (`reclaim_due`) and tries once more. Returns whether `id` was newly added (so
    /// a definite failure can give the place back).
    pub(super) async fn reserve(&self, id: &SessionId, expires: Timestamp) -> Result<bool> {
        let max = self.max_sessions();
        for attempt in 0..2 {
            match self.reserve_script(id, expires, max).await? {
                1 => return Ok(true),
                2 => return Ok(false),
                // Expired sessions may still hold places; free some and try once more.
                _ if attempt == 0 && self.reclaim_due().await? == 0 => break,
                _ => {}
            }
        }
        Err(Error::LimitExceeded {
            what: "sessions",
            limit: max,
        })
    }

    /// Create's three steps — reserve a place, run the create script, add the listing
    /// entry — as one pipeline, so a create costs one round trip instead of three. Only on a
    /// single server (standalone, Sentinel): the capacity set and the listing bucket live in
    /// other cluster slots than the session.
    ///
    /// Returns the create script's reply and whether the place was newly reserved, or `None`
    /// when the caller must take the step-by-step path: a script was not loaded yet
    /// (`NOSCRIPT`), or the store is full — then the session this pipeline may have created is
    /// removed again first, and the step-by-step path frees the places of expired sessions
    /// (a bounded batch) and retries or
    /// refuses. (While it exists, a concurrent `list` or `get` of that id may see it.)
    async fn create_in_one_trip(
        &self,
        id: &SessionId,
        expires: Timestamp,
        args: &[Vec<u8>],
    ) -> Result<Option<(Vec<Value>, bool)>> {
        let max = self.max_sessions();
        let pipe = self.one_trip_pipeline(id, expires, max, args);
        let mut c = self.conn();
        let values: Vec<Value> = self
            .io("create", Some(id), pipe.query_async(&mut c))
            .await?;
        let [reserve, created, listed] = <[Value; 3]>::try_from(values).map_err(|v| {
            Error::backend(format!("redis create: {} replies for 3 commands", v.len()))
        })?;
        let noscript = |v: &Value| server_error(v).is_some_and(|e| e.code() == Some("NOSCRIPT"));
        if noscript(&created) {
            // Nothing was created; the step-by-step path loads the scripts (a place this
            // pipeline reserved is found again as "already a member").
            return Ok(None);
        }
        if let Some(e) = server_error(&created) {
            return Err(self.map_error(e, "create", Some(id)));
        }
        let reply = array(created)
            .ok_or_else(|| Error::backend("redis create: the script gave a non-array reply"))?;
        let created_now = reply.first().and_then(int_of) == Some(ST_OK);
        let reserved = if noscript(&reserve) {
            if !created_now {
                return Ok(Some((reply, false)));
            }
            match self.reserve_script(id, expires, max).await? {
                0 => None,
                r => Some(r == 1),
            }
        } else if let Some(e) = server_error(&reserve) {
            if created_now {
                self.remove_created(id).await;
            }
            return Err(self.map_error(e, "create", Some(id)));
        } else {
            match int_of(&reserve) {
                Some(0) => None,
                Some(1) => Some(true),
                Some(2) => Some(false),
                other => {
                    if created_now {
                        self.remove_created(id).await;
                    }
                    return Err(Error::backend(format!(
                        "redis reserve: unexpected reply {other:?}"
                    )));
                }
            }
        };
        let Some(reserved) = reserved else {
            // Full. Whatever the script did to this id is undone only if it created it.
            if created_now {
                self.remove_created(id).await;
                return Ok(None);
            }
            return Ok(Some((reply, false)));
        };
        if let Some(e) = server_error(&listed) {
            // The session exists; only listing misses it until the index is written again.
            tracing::warn!(session = %id, error = %e, "redis: created session could not be indexed");
        }
        if created_now {
            self.confirm_replicated("create", Some(id), &mut c).await?;
        }
        Ok(Some((reply, reserved)))
    }

    /// The pipeline of [`create_in_one_trip`](Self::create_in_one_trip): `EVALSHA reserve`,
    /// `EVALSHA create`, `ZADD` to the listing bucket; errors stay in place.
    fn one_trip_pipeline(
        &self,
        id: &SessionId,
        expires: Timestamp,
        max: u64,
        args: &[Vec<u8>],
    ) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        pipe.cmd("EVALSHA")
            .arg(self.scripts.reserve.get_hash())
            .arg(1)
            .arg(self.keys.cap())
            .arg(id.as_str())
            .arg(expires.as_millis())
            .arg(max.min(i64::MAX as u64));
        let create = pipe
            .cmd("EVALSHA")
            .arg(self.scripts.create.get_hash())
            .arg(3);
        for k in self.keys.session(id) {
            create.arg(k);
        }
        for a in args {
            create.arg(a);
        }
        pipe.cmd("ZADD")
            .arg(self.keys.all(bucket_of(id.as_str())))
            .arg(0)
            .arg(id.as_str());
        pipe
    }

    /// One run of the reserve script: 1 reserved, 2 already a member, 0 full.
    async fn reserve_script(&self, id: &SessionId, expires: Timestamp, max: u64) -> Result<i64> {
        let mut inv = self.scripts.reserve.prepare_invoke();
        inv.key(self.keys.cap())
            .arg(id.as_str())
            .arg(expires.as_millis())
            .arg(max.min(i64::MAX as u64));
        let mut c = self.conn();
        let v = self
            .io("reserve", Some(id), inv.invoke_async::<Value>(&mut c))
            .await?;
        match int_of(&v) {
            Some(r @ 0..=2) => Ok(r),
            other => Err(Error::backend(format!(
                "redis reserve: unexpected reply {other:?}"
            ))),
        }
    }

    /// Removes a session this instance has just created but may not keep (no place left):
    /// its keys and its index entries. Counters are not touched: it was never counted.
    async fn remove_created(&self, id: &SessionId) {
        let res = self
            .script(
                "create",
                id,
                &self.scripts.delete,
                vec![now_arg(self.now())],
            )
            .await;
        if let Err(e) = res {
            tracing::warn!(session = %id, error = %e, "redis: a session created over the limit could not be removed");
        }
        self.unindex(&[id.as_str()]).await;
    }

    /// Maps the create script's status to the result; a place newly reserved for a session
    /// that was not written is given back.
    async fn created_status(&self, id: &SessionId, reply: &[Value], reserved: bool) -> Result<()> {
        match reply.first().and_then(int_of) {
            Some(ST_OK) => Ok(()),
            Some(ST_EXISTS) => Err(Error::AlreadyExists {
                what: format!("session {:?}", id.as_str()),
            }),
            Some(ST_CORRUPT) => {
                if reserved {
                    self.unreserve(id).await;
                }
                Err(self.corrupt_status(id, reply))
            }
            other => Err(Error::backend(format!(
                "redis create: unexpected script status {other:?}"
            ))),
        }
    }

    /// Checks, in the background, a create that failed in doubt (a timeout or a lost
    /// connection: its place may be reserved while the session was not written) and gives the
    /// place back when the session does not exist. On a single server the check and the
    /// release are one script; on a Cluster they are two commands (the capacity set and the
    /// session live in different slots), so a create of the same id that succeeds on another
    /// instance between them would be left without its place — ids are random, so only a
    /// caller retrying its own id could do that.
    pub(super) fn settle_in_doubt_create(self: &Arc<Self>, id: &SessionId) {
        if self.settling.fetch_add(1, Ordering::Relaxed) >= MAX_SETTLING {
            self.settling.fetch_sub(1, Ordering::Relaxed);
            tracing::debug!(session = %id, "redis: too many creates in doubt to settle; this one's place (if reserved) is freed when its expiry passes");
            return;
        }
        let state = Arc::clone(self);
        let id = id.clone();
        tokio::spawn(async move {
            state.settle(&id).await;
            state.settling.fetch_sub(1, Ordering::Relaxed);
        });
    }

    async fn settle(&self, id: &SessionId) {
        {
            let mut waited = Duration::ZERO;
            for after in SETTLE_AFTER {
                tokio::time::sleep(after.saturating_sub(waited)).await;
                waited = after;
                match self.release_orphan_place(id).await {
                    Ok(true) => {
                        tracing::info!(session = %id, "redis: a create that failed in doubt had reserved a place without writing the session; the place was given back");
                        return;
                    }
                    Ok(false) => return,
                    Err(e) => {
                        tracing::debug!(session = %id, error = %e, "redis: could not settle a create that failed in doubt yet");
                    }
                }
            }
            tracing::warn!(session = %id, "redis: a create that failed in doubt could not be settled; its place (if reserved) is freed when its expiry passes");
        }
    }

    /// Gives back `id`'s place unless the session exists. `Ok(true)`: a place was released.
    async fn release_orphan_place(&self, id: &SessionId) -> Result<bool> {
        let [meta_key, _, _] = self.keys.session(id);
        if self.cluster {
            let mut exists = redis::cmd("EXISTS");
            exists.arg(&meta_key);
            if int_of(&self.cmd("settle", Some(id), exists).await?) != Some(0) {
                return Ok(false);
            }
            let mut rem = redis::cmd("ZREM");
            rem.arg(self.keys.cap()).arg(id.as_str());
            return Ok(int_of(&self.cmd("settle", Some(id), rem).await?) == Some(1));
        }
        let mut inv = self.scripts.release_place.prepare_invoke();
        inv.key(self.keys.cap()).key(meta_key).arg(id.as_str());
        let mut c = self.conn();
        let v = self
            .io("settle", Some(id), inv.invoke_async::<Value>(&mut c))
            .await?;
        Ok(int_of(&v) == Some(1))
    }

    /// Gives back a place reserved for a session that was definitely not written.
    pub(super) async fn unreserve(&self, id: &SessionId) {
        let mut c = redis::cmd("ZREM");
        c.arg(self.keys.cap()).arg(id.as_str());
        if let Err(e) = self.cmd("unreserve", Some(id), c).await {
            tracing::debug!(session = %id, error = %e, "redis: reservation not released");
        }
    }
}
