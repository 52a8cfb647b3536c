//! Reads through the cache: whether a cached entry may be served ([`CacheCore::fresh`], the
//! `strict` version check), and single-flight loads that cache what they read unless an
//! invalidation raced with the read (the fences, see `fence.rs`).

use std::sync::Arc;

use super::{
    cache_core::CacheCore,
    entry::{Entry, Tail},
    fence::Ticket,
    validate::SessionStamp,
};
use crate::{Error, Result, Session, SessionId, SessionStore};

/// Why a load did not produce a cacheable entry (shared by every waiter of a single flight).
#[derive(Debug)]
enum LoadErr {
    /// Read, but an invalidation raced with the read: returned, not cached.
    Raced(Box<Session>),
    /// The session does not exist (never cached).
    Absent,
    /// The backend failed.
    Failed(Error),
}

/// A copy of `e` for each waiter of a shared load (backend sources become their messages).
fn clone_error(e: &Error) -> Error {
    match e {
        Error::NotFound { what } => Error::NotFound { what: what.clone() },
        Error::AlreadyExists { what } => Error::AlreadyExists { what: what.clone() },
        Error::Conflict {
            what,
            expected,
            actual,
        } => Error::Conflict {
            what: what.clone(),
            expected: *expected,
            actual: *actual,
        },
        Error::InvalidInput { reason } => Error::InvalidInput {
            reason: reason.clone(),
        },
        Error::LimitExceeded { what, limit } => Error::LimitExceeded {
            what,
            limit: *limit,
        },
        Error::Unavailable { reason } => Error::Unavailable {
            reason: reason.clone(),
        },
        Error::Timeout { op, after } => Error::Timeout { op, after: *after },
        Error::Corrupt { what, reason } => Error::Corrupt {
            what: what.clone(),
            reason: reason.clone(),
        },
        Error::Backend(b) => Error::backend(b.to_string()),
    }
}

impl<S: SessionStore> CacheCore<S> {
    /// The entry of `id` if it may be served now (`strict`: after the version check).
    pub(super) async fn fresh(self: &Arc<Self>, id: &SessionId) -> Result<Option<Arc<Entry>>> {
        let Some(e) = self.entries.get(id).await else {
            return Ok(None);
        };
        let now = self.now();
        if !e.usable(now, self.ttl_ms) || self.fences.crossed(id, e.ticket) {
            self.remove_if_same(id, &e).await;
            return Ok(None);
        }
        if self.strict() {
            self.flush_id(id).await?;
            let stamp = match &self.validator {
                Some(v) => v.stamp(id).await?,
                None => self.store.get(id).await?.map(|s| SessionStamp::of(&s)),
            };
            match stamp {
                Some(st)
                    if st.expires_at > now
                        && st.same_version(&e.session)
                        && (st.last_activity <= e.last_activity()
                            || st.expires_at.0
                                == st
                                    .last_activity
                                    .0
                                    .saturating_add(self.sizes.session_ttl_ms)) =>
                {
                    if st.last_activity > e.last_activity() {
                        e.touched_at(st.last_activity);
                    }
                }
                _ => {
                    self.stats.stale.inc();
                    self.remove_if_same(id, &e).await;
                    return Ok(None);
                }
            }
        }
        Ok(Some(e))
    }

    /// Reads `id` from the backend (one read for all concurrent callers) and caches it
    /// unless an invalidation raced with the read.
    pub(super) async fn load(self: &Arc<Self>, id: &SessionId) -> Result<Option<Session>> {
        self.flush_id(id).await?;
        let init = async {
            let ticket = self.fences.ticket();
            match self.store.get(id).await {
                Ok(Some(s)) => {
                    if !self.enabled() || self.fences.crossed(id, ticket) {
                        return Err(LoadErr::Raced(Box::new(s)));
                    }
                    let tail = (self.tail_on() && s.frame_count == 0).then(Tail::default);
                    Ok(Arc::new(Entry::new(
                        s,
                        self.now(),
                        ticket,
                        tail,
                        self.sizes,
                    )))
                }
                Ok(None) => Err(LoadErr::Absent),
                Err(e) => Err(LoadErr::Failed(e)),
            }
        };
        match self.entries.try_get_with_by_ref(id, init).await {
            Ok(e) => {
                if self.fences.crossed(id, e.ticket)
                    || !self.enabled()
                    || !e.usable(self.now(), self.ttl_ms)
                {
                    // Changed meanwhile, or an old entry: read past the cache.
                    self.remove_if_same(id, &e).await;
                    return self.store.get(id).await;
                }
                Ok(Some(e.snapshot()))
            }
            Err(err) => match &*err {
                LoadErr::Raced(s) => Ok(Some((**s).clone())),
                LoadErr::Absent => Ok(None),
                LoadErr::Failed(e) => Err(clone_error(e)),
            },
        }
    }

    /// The cached entry of `id` if it may be served without asking the backend.
    pub(super) async fn hit(&self, id: &SessionId) -> Option<Arc<Entry>> {
        let e = self.entries.get(id).await?;
        (e.usable(self.now(), self.ttl_ms) && !self.fences.crossed_entry(id, e.ticket)).then_some(e)
    }

    /// A `get` that is not a plain hit: bypass while off, a checked hit, or a load.
    pub(super) async fn get_slow(self: &Arc<Self>, id: &SessionId) -> Result<Option<Session>> {
        if !self.enabled() {
            self.stats.bypassed.inc();
            self.flush_id(id).await?;
            return self.store.get(id).await;
        }
        if let Some(e) = self.fresh(id).await? {
            self.stats.hits_get.inc();
            return Ok(Some(e.snapshot()));
        }
        self.stats.misses_get.inc();
        self.load(id).await
    }

    /// Caches a session read outside a single flight (e.g. by `get_many`).
    pub(super) async fn insert_loaded(&self, s: Session, ticket: Ticket) {
        if !self.enabled() || self.fences.crossed(&s.id, ticket) {
            return;
        }
        let id = s.id.clone();
        let tail = (self.tail_on() && s.frame_count == 0).then(Tail::default);
        let e = Arc::new(Entry::new(s, self.now(), ticket, tail, self.sizes));
        self.entries.insert(id.clone(), Arc::clone(&e)).await;
        if self.fences.crossed(&id, ticket) || !self.enabled() {
            self.remove_if_same(&id, &e).await;
        }
    }
}
