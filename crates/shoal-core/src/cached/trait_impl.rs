//! `impl SessionStore for Cached`: which calls are served from the cache, and what each write
//! does to it.

use std::collections::HashMap;

use async_trait::async_trait;

use super::{entry::Tail, wrapper::Cached};
use crate::{
    AppendedFrames, Error, FramePage, FrameQuery, GetMany, Health, HealthStatus, LeaseReply,
    LeaseRequest, ListPage, ListQuery, NewFrame, PendingRequest, QuotaReply, QuotaRequest,
    RequestId, Result, Session, SessionFilter, SessionId, SessionRecord, SessionStore, SweepReport,
    Timestamp,
};

#[async_trait]
impl<S: SessionStore> SessionStore for Cached<S> {
    fn backend_name(&self) -> &'static str {
        self.core.store.backend_name()
    }

    fn limits(&self) -> &crate::Limits {
        self.core.store.limits()
    }

    fn change_feed(&self) -> Option<std::sync::Arc<dyn crate::feed::ChangeFeed>> {
        self.core.store.change_feed()
    }

    async fn create(&self, session: Session) -> Result<Session> {
        let s = &self.core;
        let id = session.id.clone();
        s.flush_id(&id).await?;
        let created = s.store.create(session).await?;
        let ticket = s.fences.raise(&id);
        if s.caches_writes() {
            let tail = s.tail_on().then(Tail::default);
            s.put(created.clone(), ticket, false, tail).await;
        }
        s.publish(&id);
        Ok(created)
    }

    // The hit path is kept small (its future is what every `get` allocates); anything else
    // goes to `CacheCore::get_slow` in its own allocation.
    async fn get(&self, id: &SessionId) -> Result<Option<Session>> {
        let s = &self.core;
        if s.enabled()
            && !s.strict()
            && let Some(e) = s.hit(id).await
        {
            s.stats.hits_get.inc();
            return Ok(Some(e.snapshot()));
        }
        Box::pin(s.get_slow(id)).await
    }

    async fn get_many(&self, ids: &[SessionId]) -> Result<GetMany> {
        let s = &self.core;
        if !s.enabled() || s.strict() {
            s.stats.bypassed.add(ids.len() as u64);
            for id in ids {
                s.flush_id(id).await?;
            }
            return s.store.get_many(ids).await;
        }
        let now = s.now();
        let mut hits = HashMap::new();
        let mut misses = Vec::new();
        for id in ids {
            match s.entries.get(id).await {
                Some(e) if e.usable(now, s.ttl_ms) && !s.fences.crossed(id, e.ticket) => {
                    hits.insert(id.clone(), e.snapshot());
                }
                _ => misses.push(id.clone()),
            }
        }
        s.stats.hits_get.add(hits.len() as u64);
        s.stats.misses_get.add(misses.len() as u64);
        let mut loaded = GetMany::default();
        if !misses.is_empty() {
            for id in &misses {
                s.flush_id(id).await?;
            }
            let ticket = s.fences.ticket();
            loaded = s.store.get_many(&misses).await?;
            for found in &loaded.found {
                s.insert_loaded(found.clone(), ticket).await;
            }
        }
        let found: HashMap<SessionId, Session> = loaded
            .found
            .into_iter()
            .map(|s| (s.id.clone(), s))
            .collect();
        let mut out = GetMany::default();
        for id in ids {
            if let Some(s) = hits.get(id).or_else(|| found.get(id)) {
                out.found.push(s.clone());
            }
        }
        out.missing = loaded.missing;
        out.errors = loaded.errors;
        Ok(out)
    }

    async fn update(&self, session: &Session) -> Result<Session> {
        let s = &self.core;
        let _serial = s.update_lock(&session.id).await;
        if s.defers_updates()
            && let Some(r) = s.update_behind(session).await
        {
            return r;
        }
        let id = &session.id;
        s.flush_id(id).await?;
        match s.store.update(session).await {
            Ok(stored) => {
                let ticket = s.fences.raise(id);
                if s.caches_writes() {
                    s.put(stored.clone(), ticket, true, None).await;
                } else {
                    s.entries.invalidate(id).await;
                }
                s.publish(id);
                Ok(stored)
            }
            Err(e) => {
                if matches!(e, Error::NotFound { .. } | Error::Conflict { .. }) {
                    s.evict(id, e.is_not_found()).await;
                }
                Err(e)
            }
        }
    }

    async fn touch(&self, id: &SessionId) -> Result<Timestamp> {
        let s = &self.core;
        if s.coalescing()
            && let Some(expires) = s.try_coalesce(id, s.now()).await
        {
            return Ok(expires);
        }
        s.touch_through(id).await
    }

    async fn delete(&self, id: &SessionId) -> Result<bool> {
        let s = &self.core;
        s.flush_id(id).await?;
        s.evict(id, true).await;
        let r = s.store.delete(id).await;
        s.evict(id, true).await;
        if let Ok(true) = r {
            s.publish(id);
        }
        r
    }

    async fn list(&self, query: &ListQuery) -> Result<ListPage> {
        let s = &self.core;
        if let (_, Some(e)) = s.flush_queue().await {
            return Err(e);
        }
        s.store.list(query).await
    }

    async fn count(&self, filter: &SessionFilter) -> Result<u64> {
        let s = &self.core;
        if let (_, Some(e)) = s.flush_queue().await {
            return Err(e);
        }
        s.store.count(filter).await
    }

    async fn append_frames(&self, id: &SessionId, frames: Vec<NewFrame>) -> Result<Vec<u64>> {
        Ok(self.append_frames_with_epoch(id, frames).await?.seqs)
    }

    async fn append_frames_with_epoch(
        &self,
        id: &SessionId,
        frames: Vec<NewFrame>,
    ) -> Result<AppendedFrames> {
        let s = &self.core;
        s.flush_id(id).await?;
        let keep = (s.tail_on() && s.caches_writes()).then(|| frames.clone());
        let now = s.now();
        let appended = match s.store.append_frames_with_epoch(id, frames).await {
            Ok(a) => a,
            Err(e) => {
                if e.is_not_found() {
                    s.evict(id, true).await;
                }
                return Err(e);
            }
        };
        let ticket = s.fences.raise(id);
        if appended.seqs.is_empty() || !s.caches_writes() {
            s.entries.invalidate(id).await;
        } else {
            s.apply_append(id, &appended.seqs, appended.epoch, keep, now, ticket)
                .await;
        }
        s.publish(id);
        Ok(appended)
    }

    async fn frames(&self, id: &SessionId, query: &FrameQuery) -> Result<FramePage> {
        query.validate()?;
        let s = &self.core;
        let on = s.enabled();
        if s.tail_on() && on {
            if let Some(e) = s.fresh(id).await?
                && let Some(page) = e
                    .tail
                    .as_ref()
                    .and_then(|t| t.page(&e.session, query, s.store.limits().max_page_bytes))
            {
                s.stats.hits_frames.inc();
                return Ok(page);
            }
            s.stats.misses_frames.inc();
        } else if !on {
            s.stats.bypassed.inc();
        }
        s.flush_id(id).await?;
        let ticket = s.fences.ticket();
        match s.store.frames(id, query).await {
            Ok(page) => {
                if s.tail_on()
                    && s.enabled()
                    && query.stream_id.is_none()
                    && !page.has_more
                    && page.frames.last().is_some_and(|f| f.seq == page.last_seq)
                {
                    s.fill_tail(id, &page, ticket).await;
                }
                Ok(page)
            }
            Err(e) => {
                if e.is_not_found() {
                    s.evict(id, true).await;
                }
                Err(e)
            }
        }
    }

    async fn count_frames(&self, id: &SessionId) -> Result<u64> {
        let s = &self.core;
        if s.enabled() {
            if let Some(e) = s.fresh(id).await? {
                s.stats.hits_count.inc();
                return Ok(e.session.frame_count);
            }
            s.stats.misses_count.inc();
        } else {
            s.stats.bypassed.inc();
        }
        s.flush_id(id).await?;
        let r = s.store.count_frames(id).await;
        if matches!(&r, Err(e) if e.is_not_found()) {
            s.evict(id, true).await;
        }
        r
    }

    async fn delete_frames(&self, id: &SessionId, through_seq: Option<u64>) -> Result<u64> {
        let s = &self.core;
        s.flush_id(id).await?;
        s.fences.raise(id);
        let r = s.store.delete_frames(id, through_seq).await;
        let gone = matches!(&r, Err(e) if e.is_not_found());
        s.evict(id, gone).await;
        if let Ok(n) = r
            && n > 0
        {
            s.publish(id);
        }
        r
    }

    async fn add_pending(&self, id: &SessionId, request: PendingRequest) -> Result<()> {
        let s = &self.core;
        s.flush_id(id).await?;
        let r = s.store.add_pending(id, request).await;
        if matches!(&r, Err(e) if e.is_not_found()) {
            s.evict(id, true).await;
        }
        r
    }

    async fn take_pending(
        &self,
        id: &SessionId,
        request_id: &RequestId,
    ) -> Result<Option<PendingRequest>> {
        let s = &self.core;
        s.flush_id(id).await?;
        let r = s.store.take_pending(id, request_id).await;
        if matches!(&r, Err(e) if e.is_not_found()) {
            s.evict(id, true).await;
        }
        r
    }

    async fn list_pending(&self, id: &SessionId) -> Result<Vec<PendingRequest>> {
        let s = &self.core;
        s.flush_id(id).await?;
        let r = s.store.list_pending(id).await;
        if matches!(&r, Err(e) if e.is_not_found()) {
            s.evict(id, true).await;
        }
        r
    }

    async fn sweep_expired(&self) -> Result<SweepReport> {
        let s = &self.core;
        let (_, err) = s.flush_everything(true).await;
        if let Some(e) = err {
            return Err(e);
        }
        s.store.sweep_expired().await
    }

    async fn health(&self) -> Result<Health> {
        let s = &self.core;
        let mut h = s.store.health().await?;
        let on = s.enabled();
        h = h
            .with_detail("cache", if on { "on" } else { "off" })
            .with_detail("cache_entries", s.entries.entry_count())
            .with_detail("cache_consistency", s.config.consistency.as_str())
            .with_detail("cache_write_mode", s.config.write_mode.as_str());
        if !s.queue.is_empty() {
            h = h.with_detail("cache_queued_writes", s.queue.len());
        }
        if !on && h.status == HealthStatus::Healthy {
            h.status = HealthStatus::Degraded;
            h = h.with_detail("cache_reason", "invalidation bus down");
        }
        Ok(h)
    }

    /// Leases are never cached: every call goes to the store (after the session's deferred
    /// writes, so a session created write-behind exists there).
    async fn lease(&self, id: &SessionId, request: LeaseRequest<'_>) -> Result<LeaseReply> {
        let s = &self.core;
        s.flush_id(id).await?;
        let r = s.store.lease(id, request).await;
        if matches!(&r, Err(e) if e.is_not_found()) {
            s.evict(id, true).await;
        }
        r
    }

    async fn shared_secret(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>> {
        self.core.store.shared_secret(name, candidate).await
    }

    /// Quotas are never cached: every process must count against the same numbers.
    async fn quota(&self, request: QuotaRequest<'_>) -> Result<QuotaReply> {
        self.core.store.quota(request).await
    }

    async fn restore(&self, record: SessionRecord) -> Result<()> {
        let s = &self.core;
        let id = record.session.id.clone();
        s.flush_id(&id).await?;
        s.fences.raise(&id);
        let r = s.store.restore(record).await;
        s.evict(&id, false).await;
        if r.is_ok() {
            s.publish(&id);
        }
        r
    }
}
