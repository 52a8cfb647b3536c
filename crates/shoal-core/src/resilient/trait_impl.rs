//! `impl SessionStore for Resilient`: where each operation goes (primary, fallback, journal)
//! per the session's route, the breaker and the fallback mode.

use std::{
    borrow::Cow,
    collections::{HashMap, HashSet},
    sync::atomic::Ordering,
    time::Duration,
};

use async_trait::async_trait;

use super::{
    breaker::BreakerState,
    call::Call,
    config::FallbackMode,
    durable::Record,
    journal::{MarkKind, Op},
    route::Route,
    seqmap::is_provisional,
    wrapper::Resilient,
    write_path::{frames_bytes, record_bytes},
};
use crate::{
    AppendedFrames, Error, FramePage, FrameQuery, GetMany, Health, HealthStatus, ItemError,
    LeaseReply, LeaseRequest, Limits, ListPage, ListQuery, NewFrame, PendingRequest, QuotaReply,
    QuotaRequest, RequestId, Result, Session, SessionFilter, SessionId, SessionRecord,
    SessionStore, SweepReport, Timestamp,
};

#[async_trait]
impl<P: SessionStore, F: SessionStore> SessionStore for Resilient<P, F> {
    fn backend_name(&self) -> &'static str {
        "resilient"
    }

    fn limits(&self) -> &Limits {
        self.state.primary.limits()
    }

    fn change_feed(&self) -> Option<std::sync::Arc<dyn crate::feed::ChangeFeed>> {
        self.state.primary.change_feed()
    }

    async fn create(&self, session: Session) -> Result<Session> {
        let id = session.id.clone();
        match self.route(&id).await {
            Route::Marked(kind, guard) => {
                let r = match kind {
                    MarkKind::Local { in_doubt: false } => {
                        let b = session.metadata_bytes();
                        let record = Record::Create(session.clone());
                        let fut = self.state.fallback.create(session);
                        self.local_write(&id, "create", b, Op::Created, fut, || record)
                            .await
                    }
                    MarkKind::Local { in_doubt: true } => Err(self.in_doubt_error(&id, "create")),
                    MarkKind::Shadow { .. } => Err(self.pending_error(&id, "create")),
                };
                drop(guard);
                r
            }
            Route::Direct => {
                if let Some(t) = self.admit("create") {
                    let fut = self.state.primary.create(session);
                    return self.run("create", self.point(), t, fut).await;
                }
                if self.mode() != FallbackMode::Memory {
                    return Err(self.refused("create"));
                }
                let b = session.metadata_bytes();
                let record = Record::Create(session.clone());
                self.create_local(
                    &id,
                    "create",
                    b,
                    || self.state.fallback.create(session),
                    || record,
                )
                .await
            }
        }
    }

    async fn get(&self, id: &SessionId) -> Result<Option<Session>> {
        match self.route(id).await {
            Route::Marked(MarkKind::Local { .. }, guard) => {
                let r = self.on_fallback("get", self.state.fallback.get(id)).await;
                drop(guard);
                r
            }
            Route::Marked(MarkKind::Shadow { deleted: true }, _) => Ok(None),
            Route::Marked(MarkKind::Shadow { .. }, guard) => {
                drop(guard);
                match self
                    .retrying("get", self.point(), || self.state.primary.get(id))
                    .await
                {
                    Call::Done(r) => r,
                    Call::Rejected => Err(self.not_held(id, "get")),
                }
            }
            Route::Direct => {
                self.read(
                    id,
                    "get",
                    self.point(),
                    || self.state.primary.get(id),
                    || self.state.fallback.get(id),
                    |r| matches!(r, Ok(Some(_))),
                )
                .await
            }
        }
    }

    async fn get_many(&self, ids: &[SessionId]) -> Result<GetMany> {
        if self.state.marked.load(Ordering::Acquire) == 0 {
            return match self
                .retrying("get_many", self.bulk(), || self.state.primary.get_many(ids))
                .await
            {
                Call::Done(r) => r,
                Call::Rejected if self.mode() == FallbackMode::ReadOnly => {
                    let mut r = self
                        .on_fallback("get_many", self.state.fallback.get_many(ids))
                        .await?;
                    for id in std::mem::take(&mut r.missing) {
                        let e = self.not_held(&id, "get_many");
                        r.errors.push(ItemError::new(id, e));
                    }
                    Ok(r)
                }
                Call::Rejected => Err(self.refused("get_many")),
            };
        }
        // Some sessions are marked: those go one by one through `get`, the rest in one call.
        let (marked, plain): (Vec<&SessionId>, Vec<&SessionId>) = {
            let j = self.journal();
            ids.iter().partition(|id| j.kind(id).is_some())
        };
        let mut answers: HashMap<SessionId, Result<Option<Session>>> = HashMap::new();
        let mut extra_errors = Vec::new();
        if !plain.is_empty() {
            let plain_ids: Vec<SessionId> = plain.iter().map(|id| (*id).clone()).collect();
            match self
                .retrying("get_many", self.bulk(), || {
                    self.state.primary.get_many(&plain_ids)
                })
                .await
            {
                Call::Done(Ok(gm)) => {
                    for s in gm.found {
                        answers.insert(s.id.clone(), Ok(Some(s)));
                    }
                    for id in gm.missing {
                        answers.insert(id, Ok(None));
                    }
                    extra_errors = gm.errors;
                }
                Call::Done(Err(e)) => return Err(e),
                Call::Rejected => {
                    for id in plain_ids {
                        let r = self.get(&id).await;
                        answers.insert(id, r);
                    }
                }
            }
        }
        for id in marked {
            let r = self.get(id).await;
            answers.insert(id.clone(), r);
        }
        let mut out = GetMany::default();
        let mut seen = HashSet::new();
        for id in ids {
            if !seen.insert(id) {
                continue;
            }
            match answers.remove(id) {
                Some(Ok(Some(s))) => out.found.push(s),
                Some(Ok(None)) => out.missing.push(id.clone()),
                Some(Err(e)) => out.errors.push(ItemError::new(id.clone(), e)),
                None => {}
            }
        }
        out.errors.extend(extra_errors);
        Ok(out)
    }

    async fn update(&self, session: &Session) -> Result<Session> {
        let id = &session.id;
        match self.route(id).await {
            Route::Marked(kind, guard) => {
                let r = match kind {
                    MarkKind::Local { in_doubt: false } => {
                        let fut = self.state.fallback.update(session);
                        self.local_write(
                            id,
                            "update",
                            session.metadata_bytes(),
                            Op::LocalWrite,
                            fut,
                            || Record::Update(session.clone()),
                        )
                        .await
                    }
                    MarkKind::Local { in_doubt: true } => Err(self.in_doubt_error(id, "update")),
                    MarkKind::Shadow { deleted: true } => Err(Self::not_found(id)),
                    MarkKind::Shadow { .. } => Err(self.pending_error(id, "update")),
                };
                drop(guard);
                r
            }
            Route::Direct => match self
                .once("update", self.point(), || {
                    self.state.primary.update(session)
                })
                .await
            {
                Call::Done(r) => r,
                Call::Rejected => Err(self.refused("update")),
            },
        }
    }

    async fn touch(&self, id: &SessionId) -> Result<Timestamp> {
        loop {
            match self.route(id).await {
                Route::Marked(kind, guard) => {
                    let r = match kind {
                        MarkKind::Local { in_doubt: false } => {
                            let fut = self.state.fallback.touch(id);
                            self.local_write(id, "touch", 0, Op::LocalWrite, fut, || {
                                Record::Touch(id.clone())
                            })
                            .await
                        }
                        MarkKind::Local { in_doubt: true } => Err(self.in_doubt_error(id, "touch")),
                        MarkKind::Shadow { deleted: true } => Err(Self::not_found(id)),
                        MarkKind::Shadow { .. } => {
                            let r = self.shadow_write(id, Op::Touch, 0).map(|()| {
                                Timestamp::now().saturating_add(self.limits().session_ttl)
                            });
                            self.log_after(r, || Record::Touch(id.clone())).await
                        }
                    };
                    drop(guard);
                    return r;
                }
                Route::Direct => match self
                    .retrying("touch", self.point(), || self.state.primary.touch(id))
                    .await
                {
                    Call::Done(r) => return r,
                    Call::Rejected if self.mode() == FallbackMode::Memory => self.mark_shadow(id),
                    Call::Rejected => return Err(self.refused("touch")),
                },
            }
        }
    }

    async fn delete(&self, id: &SessionId) -> Result<bool> {
        loop {
            match self.route(id).await {
                Route::Marked(kind, guard) => {
                    let r = match kind {
                        MarkKind::Local { in_doubt: false } => {
                            let r = self
                                .on_fallback("delete", self.state.fallback.delete(id))
                                .await;
                            if r.is_ok() {
                                self.with_journal(|j| j.unmark(id));
                            }
                            self.log_after(r, || Record::Delete(id.clone())).await
                        }
                        MarkKind::Local { in_doubt: true } => {
                            // The primary may hold a copy: journal a delete for it.
                            let _ = self
                                .on_fallback("delete", self.state.fallback.delete(id))
                                .await;
                            let r = self.journal_delete(id).map(|()| true);
                            self.log_after(r, || Record::Delete(id.clone())).await
                        }
                        MarkKind::Shadow { deleted: true } => Ok(false),
                        MarkKind::Shadow { .. } => {
                            let r = self.journal_delete(id).map(|()| true);
                            self.log_after(r, || Record::Delete(id.clone())).await
                        }
                    };
                    drop(guard);
                    return r;
                }
                Route::Direct => match self
                    .once("delete", self.point(), || self.state.primary.delete(id))
                    .await
                {
                    Call::Done(r) => return r,
                    Call::Rejected if self.mode() == FallbackMode::Memory => self.mark_shadow(id),
                    Call::Rejected => return Err(self.refused("delete")),
                },
            }
        }
    }

    async fn list(&self, query: &ListQuery) -> Result<ListPage> {
        query.validate()?;
        match self
            .retrying("list", self.bulk(), || self.state.primary.list(query))
            .await
        {
            Call::Done(r) => r,
            Call::Rejected => Err(self.refused("list")),
        }
    }

    async fn count(&self, filter: &SessionFilter) -> Result<u64> {
        match self
            .retrying("count", self.bulk(), || self.state.primary.count(filter))
            .await
        {
            Call::Done(r) => r,
            Call::Rejected => Err(self.refused("count")),
        }
    }

    async fn append_frames(&self, id: &SessionId, frames: Vec<NewFrame>) -> Result<Vec<u64>> {
        Ok(self.append_frames_with_epoch(id, frames).await?.seqs)
    }

    /// The primary's epoch; appends journaled during an outage have provisional seqs and
    /// epoch 0 (not known).
    async fn append_frames_with_epoch(
        &self,
        id: &SessionId,
        frames: Vec<NewFrame>,
    ) -> Result<AppendedFrames> {
        loop {
            match self.route(id).await {
                Route::Marked(kind, guard) => {
                    let r = match kind {
                        MarkKind::Local { in_doubt: false } => {
                            let b = frames_bytes(&frames);
                            let record = self.state.durable.as_ref().map(|_| frames.clone());
                            let fut = self.state.fallback.append_frames(id, frames);
                            self.local_write(id, "append_frames", b, Op::LocalWrite, fut, || {
                                Record::Append(id.clone(), record.unwrap_or_default())
                            })
                            .await
                        }
                        MarkKind::Local { in_doubt: true } => {
                            Err(self.in_doubt_error(id, "append_frames"))
                        }
                        MarkKind::Shadow { deleted: true } => Err(Self::not_found(id)),
                        MarkKind::Shadow { .. } => {
                            let record = self.state.durable.as_ref().map(|_| frames.clone());
                            let r = self.shadow_append(id, frames);
                            self.log_after(r, || {
                                Record::Append(id.clone(), record.unwrap_or_default())
                            })
                            .await
                        }
                    };
                    drop(guard);
                    return r.map(|seqs| AppendedFrames::new(seqs, 0));
                }
                Route::Direct => {
                    if let Some(t) = self.admit("append_frames") {
                        let fut = self.state.primary.append_frames_with_epoch(id, frames);
                        return self.run("append_frames", self.point(), t, fut).await;
                    }
                    if self.mode() != FallbackMode::Memory {
                        return Err(self.refused("append_frames"));
                    }
                    self.mark_shadow(id);
                }
            }
        }
    }

    async fn frames(&self, id: &SessionId, query: &FrameQuery) -> Result<FramePage> {
        query.validate()?;
        let query: Cow<'_, FrameQuery> = if is_provisional(query.after_seq) {
            let mut q = query.clone();
            q.after_seq = self.translate(id, query.after_seq, "frames")?;
            Cow::Owned(q)
        } else {
            Cow::Borrowed(query)
        };
        let query = &*query;
        match self.route(id).await {
            Route::Marked(MarkKind::Local { .. }, guard) => {
                let r = self
                    .on_fallback("frames", self.state.fallback.frames(id, query))
                    .await;
                drop(guard);
                r
            }
            Route::Marked(MarkKind::Shadow { deleted: true }, _) => Err(Self::not_found(id)),
            Route::Marked(MarkKind::Shadow { .. }, _) => Err(self.pending_error(id, "frames")),
            Route::Direct => {
                self.read(
                    id,
                    "frames",
                    self.bulk(),
                    || self.state.primary.frames(id, query),
                    || self.state.fallback.frames(id, query),
                    |r| !matches!(r, Err(Error::NotFound { .. })),
                )
                .await
            }
        }
    }

    async fn count_frames(&self, id: &SessionId) -> Result<u64> {
        match self.route(id).await {
            Route::Marked(MarkKind::Local { .. }, guard) => {
                let r = self
                    .on_fallback("count_frames", self.state.fallback.count_frames(id))
                    .await;
                drop(guard);
                r
            }
            Route::Marked(MarkKind::Shadow { deleted: true }, _) => Err(Self::not_found(id)),
            Route::Marked(MarkKind::Shadow { .. }, _) => {
                Err(self.pending_error(id, "count_frames"))
            }
            Route::Direct => {
                self.read(
                    id,
                    "count_frames",
                    self.point(),
                    || self.state.primary.count_frames(id),
                    || self.state.fallback.count_frames(id),
                    |r| !matches!(r, Err(Error::NotFound { .. })),
                )
                .await
            }
        }
    }

    async fn delete_frames(&self, id: &SessionId, through_seq: Option<u64>) -> Result<u64> {
        let through_seq = match through_seq {
            Some(s) => Some(self.translate(id, s, "delete_frames")?),
            None => None,
        };
        match self.route(id).await {
            Route::Marked(kind, guard) => {
                let r = match kind {
                    MarkKind::Local { in_doubt: false } => {
                        let fut = self.state.fallback.delete_frames(id, through_seq);
                        self.local_write(id, "delete_frames", 0, Op::LocalWrite, fut, || {
                            Record::DeleteFrames(id.clone(), through_seq)
                        })
                        .await
                    }
                    MarkKind::Local { in_doubt: true } => {
                        Err(self.in_doubt_error(id, "delete_frames"))
                    }
                    MarkKind::Shadow { deleted: true } => Err(Self::not_found(id)),
                    MarkKind::Shadow { .. } => Err(self.pending_error(id, "delete_frames")),
                };
                drop(guard);
                r
            }
            Route::Direct => match self
                .once("delete_frames", self.point(), || {
                    self.state.primary.delete_frames(id, through_seq)
                })
                .await
            {
                Call::Done(r) => r,
                Call::Rejected => Err(self.refused("delete_frames")),
            },
        }
    }

    async fn add_pending(&self, id: &SessionId, request: PendingRequest) -> Result<()> {
        match self.route(id).await {
            Route::Marked(kind, guard) => {
                let r = match kind {
                    MarkKind::Local { in_doubt: false } => {
                        let b = request.method.len();
                        let record = Record::AddPending(id.clone(), request.clone());
                        let fut = self.state.fallback.add_pending(id, request);
                        self.local_write(id, "add_pending", b, Op::LocalWrite, fut, || record)
                            .await
                    }
                    MarkKind::Local { in_doubt: true } => {
                        Err(self.in_doubt_error(id, "add_pending"))
                    }
                    MarkKind::Shadow { deleted: true } => Err(Self::not_found(id)),
                    MarkKind::Shadow { .. } => Err(self.pending_error(id, "add_pending")),
                };
                drop(guard);
                r
            }
            Route::Direct => {
                if let Some(t) = self.admit("add_pending") {
                    let fut = self.state.primary.add_pending(id, request);
                    return self.run("add_pending", self.point(), t, fut).await;
                }
                Err(self.refused("add_pending"))
            }
        }
    }

    async fn take_pending(
        &self,
        id: &SessionId,
        request_id: &RequestId,
    ) -> Result<Option<PendingRequest>> {
        match self.route(id).await {
            Route::Marked(kind, guard) => {
                let r = match kind {
                    MarkKind::Local { in_doubt: false } => {
                        let fut = self.state.fallback.take_pending(id, request_id);
                        self.local_write(id, "take_pending", 0, Op::LocalWrite, fut, || {
                            Record::TakePending(id.clone(), request_id.clone())
                        })
                        .await
                    }
                    MarkKind::Local { in_doubt: true } => {
                        Err(self.in_doubt_error(id, "take_pending"))
                    }
                    MarkKind::Shadow { deleted: true } => Err(Self::not_found(id)),
                    MarkKind::Shadow { .. } => Err(self.pending_error(id, "take_pending")),
                };
                drop(guard);
                r
            }
            Route::Direct => match self
                .once("take_pending", self.point(), || {
                    self.state.primary.take_pending(id, request_id)
                })
                .await
            {
                Call::Done(r) => r,
                Call::Rejected => Err(self.refused("take_pending")),
            },
        }
    }

    async fn list_pending(&self, id: &SessionId) -> Result<Vec<PendingRequest>> {
        match self.route(id).await {
            Route::Marked(MarkKind::Local { .. }, guard) => {
                let r = self
                    .on_fallback("list_pending", self.state.fallback.list_pending(id))
                    .await;
                drop(guard);
                r
            }
            Route::Marked(MarkKind::Shadow { deleted: true }, _) => Err(Self::not_found(id)),
            Route::Marked(MarkKind::Shadow { .. }, guard) => {
                drop(guard);
                match self
                    .retrying("list_pending", self.point(), || {
                        self.state.primary.list_pending(id)
                    })
                    .await
                {
                    Call::Done(r) => r,
                    Call::Rejected => Err(self.not_held(id, "list_pending")),
                }
            }
            Route::Direct => {
                self.read(
                    id,
                    "list_pending",
                    self.point(),
                    || self.state.primary.list_pending(id),
                    || self.state.fallback.list_pending(id),
                    |r| !matches!(r, Err(Error::NotFound { .. })),
                )
                .await
            }
        }
    }

    async fn sweep_expired(&self) -> Result<SweepReport> {
        let local = self.journal().local() > 0;
        match self
            .retrying("sweep_expired", self.bulk(), || {
                self.state.primary.sweep_expired()
            })
            .await
        {
            Call::Done(Ok(mut report)) => {
                if local
                    && let Ok(f) = self
                        .on_fallback("sweep_expired", self.state.fallback.sweep_expired())
                        .await
                {
                    report.removed += f.removed;
                }
                Ok(report)
            }
            Call::Done(Err(e)) => Err(e),
            Call::Rejected if self.mode() == FallbackMode::Memory => {
                self.on_fallback("sweep_expired", self.state.fallback.sweep_expired())
                    .await
            }
            Call::Rejected => Err(self.refused("sweep_expired")),
        }
    }

    async fn health(&self) -> Result<Health> {
        let state = self.breaker_state();
        let mut h = if state == BreakerState::Closed {
            self.health_closed().await
        } else {
            let mut h = Health::healthy("resilient", Duration::ZERO);
            h.status = self.degraded_status();
            h
        };
        let stats = self.stats();
        if h.status == HealthStatus::Healthy && stats.journal_entries > 0 {
            h.status = HealthStatus::Degraded;
        }
        h = h
            .with_detail("breaker_state", state)
            .with_detail(
                "breaker_for",
                humantime::format_duration(Duration::from_millis(
                    stats.breaker_for.as_millis() as u64
                )),
            )
            .with_detail("breaker_opened", stats.breaker_opened)
            .with_detail("fallback_mode", self.mode())
            .with_detail("primary", self.primary_name())
            .with_detail("fallback", self.fallback_name())
            .with_detail("journal_entries", stats.journal_entries)
            .with_detail("journal_bytes", stats.journal_bytes)
            .with_detail("marked_sessions", stats.marked_sessions)
            .with_detail("local_sessions", stats.local_sessions)
            .with_detail("journal_full_rejections", stats.journal_full_rejections);
        match &stats.last_probe {
            Some(p) => {
                h = h
                    .with_detail("last_probe_at", p.at)
                    .with_detail("last_probe_ok", p.ok)
                    .with_detail("last_probe_latency_us", p.latency.as_micros());
                if let Some(e) = &p.error {
                    h = h.with_detail("last_probe_error", e);
                }
            }
            None => h = h.with_detail("last_probe_at", "never"),
        }
        if let Some(r) = &stats.last_drain {
            h = h
                .with_detail("last_replay_entries", r.entries)
                .with_detail("last_replay_complete", r.complete);
        }
        Ok(h)
    }

    /// Leases follow the session: a session held only by the fallback keeps its leases there
    /// (no other instance can see it anyway); every other session's leases live in the primary
    /// and are refused while it is unavailable. Leases are never journaled: they are short-lived
    /// and an outage outlasts them.
    async fn lease(&self, id: &SessionId, request: LeaseRequest<'_>) -> Result<LeaseReply> {
        request.validate()?;
        let on_primary = || async {
            match self
                .retrying("lease", self.point(), || {
                    self.state.primary.lease(id, request)
                })
                .await
            {
                Call::Done(r) => r,
                Call::Rejected => Err(self.refused("lease")),
            }
        };
        match self.route(id).await {
            Route::Marked(MarkKind::Local { in_doubt: false }, guard) => {
                let r = self
                    .on_fallback("lease", self.state.fallback.lease(id, request))
                    .await;
                drop(guard);
                r
            }
            Route::Marked(MarkKind::Local { in_doubt: true }, _) => {
                Err(self.in_doubt_error(id, "lease"))
            }
            Route::Marked(MarkKind::Shadow { deleted: true }, _) => Err(Self::not_found(id)),
            Route::Marked(MarkKind::Shadow { .. }, guard) => {
                drop(guard);
                on_primary().await
            }
            Route::Direct => on_primary().await,
        }
    }

    /// From the primary only: the fallback is this process's alone, and a secret agreed there
    /// would not be the fleet's.
    async fn shared_secret(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>> {
        crate::store::check_secret(name, candidate)?;
        match self
            .retrying("shared_secret", self.point(), || {
                self.state.primary.shared_secret(name, candidate)
            })
            .await
        {
            Call::Done(r) => r,
            Call::Rejected => Err(self.refused("shared_secret")),
        }
    }

    /// Counted by the primary, so every instance sees the same numbers; while the primary
    /// cannot answer, by the fallback (this process alone enforces the bounds then, as it
    /// alone creates sessions then). Never journaled.
    async fn quota(&self, request: QuotaRequest<'_>) -> Result<QuotaReply> {
        request.validate()?;
        match self
            .retrying("quota", self.point(), || self.state.primary.quota(request))
            .await
        {
            Call::Done(Err(e)) if e.is_transient() && self.mode() != FallbackMode::Memory => Err(e),
            Call::Done(Err(e)) if e.is_transient() => {
                self.on_fallback("quota", self.state.fallback.quota(request))
                    .await
            }
            Call::Done(r) => r,
            Call::Rejected if self.mode() != FallbackMode::Memory => Err(self.refused("quota")),
            Call::Rejected => {
                self.on_fallback("quota", self.state.fallback.quota(request))
                    .await
            }
        }
    }

    async fn restore(&self, record: SessionRecord) -> Result<()> {
        let id = record.session.id.clone();
        match self.route(&id).await {
            Route::Marked(kind, guard) => {
                let r = match kind {
                    MarkKind::Local { in_doubt: false } => {
                        let b = record_bytes(&record);
                        let logged = Record::Restore(Box::new(record.clone()));
                        let fut = self.state.fallback.restore(record);
                        self.local_write(&id, "restore", b, Op::Created, fut, || logged)
                            .await
                    }
                    MarkKind::Local { in_doubt: true } => Err(self.in_doubt_error(&id, "restore")),
                    MarkKind::Shadow { .. } => Err(self.pending_error(&id, "restore")),
                };
                drop(guard);
                r
            }
            Route::Direct => {
                if let Some(t) = self.admit("restore") {
                    let fut = self.state.primary.restore(record);
                    return self.run("restore", self.bulk(), t, fut).await;
                }
                if self.mode() != FallbackMode::Memory {
                    return Err(self.refused("restore"));
                }
                let b = record_bytes(&record);
                let logged = Record::Restore(Box::new(record.clone()));
                self.create_local(
                    &id,
                    "restore",
                    b,
                    || self.state.fallback.restore(record),
                    || logged,
                )
                .await
            }
        }
    }
}
