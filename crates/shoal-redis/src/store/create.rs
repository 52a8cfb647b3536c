//! `create`: on a single server (standalone, Sentinel) one script writes the session, takes
//! its place under `max_sessions` in the capacity set and adds its listing entry — one round
//! trip, atomic, and a full store writes nothing. On a Cluster (the capacity set and the
//! listing bucket live in other slots) the steps run one by one: reserve a place, run the
//! create script, add the listing entry, and give the place back when the session was
//! definitely not written. A create that fails in doubt is settled in the background.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use redis::Value;
use shoal_core::{
    Change, ChangeKind, Error, Result, Session, SessionId, Timestamp, feed::SessionSummary,
};

use super::{
    exec::{ST_CORRUPT, ST_EXISTS, ST_FULL, ST_OK, array, int_of, now_arg, num_arg},
    handle::StoreState,
    metrics::M_CREATED,
};
use crate::{keys::bucket_of, meta};

/// The `created` entry of `session` (written after the change on a Cluster).
pub(super) fn created_change(session: &Session) -> Change {
    let mut c = Change::new(ChangeKind::Created, session.id.as_str());
    c.session = Some(SessionSummary::of(session));
    c
}

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
        let detail = self.created_detail(&session);
        if !self.cluster {
            self.create_placed(&id, session.expires_at, args, &detail)
                .await?;
            self.bump(M_CREATED, 1);
            return Ok(session);
        }
        let reserved = self.reserve(&id, session.expires_at).await?;
        let reply = self
            .script("create", &id, &self.scripts.create, args)
            .await?;
        self.created_status(&id, &reply, reserved).await?;
        self.feed_after(id.as_str(), vec![created_change(&session)]);
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

    /// On a single server (standalone, Sentinel): the session, its place under
    /// `max_sessions` and its listing entry in one script (`create_placed.lua`), so a create
    /// is one round trip and one script, and a full store writes nothing. When the store is
    /// full, the places of a bounded batch of expired sessions are freed (`reclaim_due`) and
    /// the script runs once more.
    async fn create_placed(
        &self,
        id: &SessionId,
        expires: Timestamp,
        args: Vec<Vec<u8>>,
        detail: &str,
    ) -> Result<()> {
        let max = self.max_sessions();
        for attempt in 0..2 {
            let mut inv = self.scripts.create_placed.prepare_invoke();
            for k in self.keys.session(id) {
                inv.key(k);
            }
            inv.key(self.keys.cap())
                .key(self.keys.all(bucket_of(id.as_str())));
            let [now, pexpire, pairs @ ..] = &args[..] else {
                return Err(Error::backend("redis create: too few arguments"));
            };
            let (head, feed_key) = self.script_head(now.clone(), id, detail);
            if let Some(k) = feed_key {
                inv.key(k);
            }
            inv.arg(head)
                .arg(&pexpire[..])
                .arg(expires.as_millis())
                .arg(max.min(i64::MAX as u64))
                .arg(id.as_str());
            for a in pairs {
                inv.arg(&a[..]);
            }
            let mut c = self.conn();
            let v = self
                .io("create", Some(id), inv.invoke_async::<Value>(&mut c))
                .await?;
            let reply = array(v)
                .ok_or_else(|| Error::backend("redis create: the script gave a non-array reply"))?;
            match reply.first().and_then(int_of) {
                Some(ST_FULL) => {
                    if attempt == 0 && self.reclaim_due().await? > 0 {
                        continue;
                    }
                    return Err(Error::LimitExceeded {
                        what: "sessions",
                        limit: max,
                    });
                }
                Some(ST_OK) => {
                    self.confirm_replicated("create", Some(id), &mut c).await?;
                    return Ok(());
                }
                _ => return self.created_status(id, &reply, false).await,
            }
        }
        Err(Error::LimitExceeded {
            what: "sessions",
            limit: max,
        })
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
