//! The baseline: the original in-memory design (Shadowcat's store), measured in the same run.
//!
//! Two global maps behind `tokio::sync::RwLock`s — sessions, and a `Vec` of frames per
//! session — exactly as the original kept them:
//! - `get` clones the session under the read lock;
//! - `append` pushes under the write lock of the frame map and updates the session's frame
//!   count and activity under the write lock of the session map (both held, frames first, so
//!   seqs are assigned and pushed in one critical section: appends stay totally ordered);
//! - `frames` clones the session's whole `Vec` under the read lock and cuts the page
//!   afterwards (the original had no pagination);
//! - `list` clones every session, then sorts and cuts.
//!
//! It keeps no retention cap and no session limit (the original had none). Pending requests,
//! and `restore`, are not part of the original and answer `Unavailable`.

use std::{collections::HashMap, sync::Arc, time::Instant};

use async_trait::async_trait;

use shoal_core::{
    Error, Frame, FramePage, FrameQuery, GetMany, Health, Limits, ListPage, ListQuery, NewFrame,
    PendingRequest, RequestId, Result, Session, SessionFilter, SessionId, SessionRecord,
    SessionStore, SweepReport, Timestamp, store::MAX_PAGE_LIMIT,
};
use tokio::sync::RwLock;

/// The original `RwLock<HashMap>` session store, as a [`SessionStore`].
#[derive(Debug)]
pub(crate) struct BaselineStore {
    sessions: Arc<RwLock<HashMap<SessionId, Session>>>,
    frames: Arc<RwLock<HashMap<SessionId, Vec<Frame>>>>,
    limits: Limits,
}

impl Default for BaselineStore {
    fn default() -> Self {
        BaselineStore::new()
    }
}

impl BaselineStore {
    /// An empty store. Its limits are the defaults except that frames per session and sessions
    /// are unbounded, as in the original.
    pub(crate) fn new() -> Self {
        let mut limits = Limits::default();
        limits.max_frames_per_session = usize::MAX;
        limits.max_sessions = usize::MAX;
        BaselineStore {
            sessions: Arc::new(RwLock::new(HashMap::new())),
            frames: Arc::new(RwLock::new(HashMap::new())),
            limits,
        }
    }

    fn expiry(&self, now: Timestamp) -> Timestamp {
        now.saturating_add(self.limits.session_ttl)
    }

    fn unsupported(what: &str) -> Error {
        Error::unavailable(format!(
            "the baseline store (the original design) does not implement {what}"
        ))
    }
}

fn check_limit(limit: usize) -> Result<()> {
    if limit == 0 || limit > MAX_PAGE_LIMIT {
        return Err(Error::invalid(format!(
            "page limit {limit} is out of range 1..={MAX_PAGE_LIMIT}"
        )));
    }
    Ok(())
}

/// The live session `id` in `map`, or `NotFound`.
fn live_mut<'a>(
    map: &'a mut HashMap<SessionId, Session>,
    id: &SessionId,
    now: Timestamp,
) -> Result<&'a mut Session> {
    map.get_mut(id)
        .filter(|s| !s.is_expired_at(now))
        .ok_or_else(|| Error::session_not_found(id))
}

impl BaselineStore {
    /// `SessionStore::create`, the original way.
    async fn op_create(&self, mut session: Session) -> Result<Session> {
        let now = Timestamp::now();
        session.created_at = now;
        session.last_activity = now;
        session.expires_at = self.expiry(now);
        session.frame_count = 0;
        session.last_seq = 0;
        session.first_seq = 1;
        session.revision = 1;
        let mut sessions = self.sessions.write().await;
        if sessions
            .get(&session.id)
            .is_some_and(|s| !s.is_expired_at(now))
        {
            return Err(Error::AlreadyExists {
                what: format!("session {:?}", session.id.as_str()),
            });
        }
        sessions.insert(session.id.clone(), session.clone());
        Ok(session)
    }

    /// `SessionStore::get`, the original way.
    async fn op_get(&self, id: &SessionId) -> Result<Option<Session>> {
        let now = Timestamp::now();
        let sessions = self.sessions.read().await;
        Ok(sessions.get(id).filter(|s| !s.is_expired_at(now)).cloned())
    }

    /// `SessionStore::get_many`, the original way.
    async fn op_get_many(&self, ids: &[SessionId]) -> Result<GetMany> {
        let mut out = GetMany::default();
        for id in ids {
            match self.op_get(id).await? {
                Some(s) => out.found.push(s),
                None => out.missing.push(id.clone()),
            }
        }
        Ok(out)
    }

    /// `SessionStore::update`, the original way.
    async fn op_update(&self, session: &Session) -> Result<Session> {
        let now = Timestamp::now();
        let expires = self.expiry(now);
        let mut sessions = self.sessions.write().await;
        let s = live_mut(&mut sessions, &session.id, now)?;
        if s.revision != session.revision {
            return Err(Error::Conflict {
                what: format!("session {:?}", session.id.as_str()),
                expected: session.revision,
                actual: s.revision,
            });
        }
        s.apply_caller_fields(session);
        s.revision += 1;
        s.last_activity = now;
        s.expires_at = expires;
        Ok(s.clone())
    }

    /// `SessionStore::touch`, the original way.
    async fn op_touch(&self, id: &SessionId) -> Result<Timestamp> {
        let now = Timestamp::now();
        let expires = self.expiry(now);
        let mut sessions = self.sessions.write().await;
        let s = live_mut(&mut sessions, id, now)?;
        s.last_activity = now;
        s.expires_at = expires;
        Ok(expires)
    }

    /// `SessionStore::delete`, the original way.
    async fn op_delete(&self, id: &SessionId) -> Result<bool> {
        let now = Timestamp::now();
        let mut frames = self.frames.write().await;
        let mut sessions = self.sessions.write().await;
        frames.remove(id);
        Ok(sessions.remove(id).is_some_and(|s| !s.is_expired_at(now)))
    }

    /// `SessionStore::list`, the original way.
    async fn op_list(&self, query: &ListQuery) -> Result<ListPage> {
        query.validate()?;
        let now = Timestamp::now();
        let mut all: Vec<Session> = {
            let sessions = self.sessions.read().await;
            sessions
                .values()
                .filter(|s| !s.is_expired_at(now) && query.filter.matches(s))
                .cloned()
                .collect()
        };
        all.sort_by(|a, b| a.id.cmp(&b.id));
        let start = match &query.cursor {
            None => 0,
            Some(c) => all.partition_point(|s| s.id.as_str() <= c.as_str()),
        };
        let mut page = ListPage::default();
        let end = start.saturating_add(query.limit).min(all.len());
        if end < all.len() && end > start {
            page.next_cursor = Some(all[end - 1].id.to_string());
        }
        page.sessions = all.drain(start.min(end)..end).collect();
        Ok(page)
    }

    /// `SessionStore::count`, the original way.
    async fn op_count(&self, filter: &SessionFilter) -> Result<u64> {
        let now = Timestamp::now();
        let sessions = self.sessions.read().await;
        Ok(sessions
            .values()
            .filter(|s| !s.is_expired_at(now) && filter.matches(s))
            .count() as u64)
    }

    /// `SessionStore::append_frames`, the original way.
    async fn op_append_frames(&self, id: &SessionId, new: Vec<NewFrame>) -> Result<Vec<u64>> {
        let now = Timestamp::now();
        let expires = self.expiry(now);
        let mut frames = self.frames.write().await;
        let mut sessions = self.sessions.write().await;
        let s = live_mut(&mut sessions, id, now)?;
        let list = frames.entry(id.clone()).or_default();
        let mut seqs = Vec::with_capacity(new.len());
        for f in new {
            s.last_seq += 1;
            s.frame_count += 1;
            list.push(f.into_frame(id.clone(), s.last_seq));
            seqs.push(s.last_seq);
        }
        s.last_activity = now;
        s.expires_at = expires;
        Ok(seqs)
    }

    /// `SessionStore::frames`, the original way.
    async fn op_frames(&self, id: &SessionId, query: &FrameQuery) -> Result<FramePage> {
        check_limit(query.limit)?;
        let now = Timestamp::now();
        let (first_seq, last_seq) = {
            let sessions = self.sessions.read().await;
            let s = sessions
                .get(id)
                .filter(|s| !s.is_expired_at(now))
                .ok_or_else(|| Error::session_not_found(id))?;
            (s.first_seq, s.last_seq)
        };
        // The original returned the whole history: clone it all, cut the page afterwards.
        let all: Vec<Frame> = {
            let frames = self.frames.read().await;
            frames.get(id).cloned().unwrap_or_default()
        };
        let mut page = FramePage::default();
        page.last_seq = last_seq;
        page.trimmed = query.after_seq.saturating_add(1) < first_seq;
        for f in all.into_iter().filter(|f| f.seq > query.after_seq) {
            if let Some(stream) = &query.stream_id
                && f.stream_id.as_ref() != Some(stream)
            {
                continue;
            }
            if page.frames.len() == query.limit {
                page.has_more = true;
                break;
            }
            page.frames.push(f);
        }
        Ok(page)
    }

    /// `SessionStore::count_frames`, the original way.
    async fn op_count_frames(&self, id: &SessionId) -> Result<u64> {
        let now = Timestamp::now();
        let frames = self.frames.read().await;
        let sessions = self.sessions.read().await;
        if sessions.get(id).is_none_or(|s| s.is_expired_at(now)) {
            return Err(Error::session_not_found(id));
        }
        Ok(frames.get(id).map_or(0, Vec::len) as u64)
    }

    /// `SessionStore::delete_frames`, the original way.
    async fn op_delete_frames(&self, id: &SessionId, through_seq: Option<u64>) -> Result<u64> {
        let now = Timestamp::now();
        let mut frames = self.frames.write().await;
        let mut sessions = self.sessions.write().await;
        let s = live_mut(&mut sessions, id, now)?;
        let list = frames.entry(id.clone()).or_default();
        let before = list.len();
        match through_seq {
            None => list.clear(),
            Some(t) => list.retain(|f| f.seq > t),
        }
        s.frame_count = list.len() as u64;
        s.first_seq = list.first().map_or(s.last_seq + 1, |f| f.seq);
        Ok((before - list.len()) as u64)
    }

    /// `SessionStore::add_pending`, the original way.
    async fn op_add_pending(&self, _id: &SessionId, _request: PendingRequest) -> Result<()> {
        Err(Self::unsupported("pending requests"))
    }

    /// `SessionStore::take_pending`, the original way.
    async fn op_take_pending(
        &self,
        _id: &SessionId,
        _request_id: &RequestId,
    ) -> Result<Option<PendingRequest>> {
        Err(Self::unsupported("pending requests"))
    }

    /// `SessionStore::list_pending`, the original way.
    async fn op_list_pending(&self, _id: &SessionId) -> Result<Vec<PendingRequest>> {
        Err(Self::unsupported("pending requests"))
    }

    /// `SessionStore::sweep_expired`, the original way.
    async fn op_sweep_expired(&self) -> Result<SweepReport> {
        let now = Timestamp::now();
        let mut frames = self.frames.write().await;
        let mut sessions = self.sessions.write().await;
        let expired: Vec<SessionId> = sessions
            .values()
            .filter(|s| s.is_expired_at(now))
            .map(|s| s.id.clone())
            .collect();
        for id in &expired {
            sessions.remove(id);
            frames.remove(id);
        }
        let mut report = SweepReport::default();
        report.removed = expired.len() as u64;
        Ok(report)
    }

    /// `SessionStore::health`, the original way.
    async fn op_health(&self) -> Result<Health> {
        let started = Instant::now();
        let n = self.sessions.read().await.len();
        Ok(Health::healthy("baseline", started.elapsed()).with_detail("sessions", n))
    }

    /// `SessionStore::restore`, the original way.
    async fn op_restore(&self, _record: SessionRecord) -> Result<()> {
        Err(Self::unsupported("restore"))
    }
}

#[async_trait]
impl SessionStore for BaselineStore {
    fn backend_name(&self) -> &'static str {
        "baseline"
    }

    fn limits(&self) -> &Limits {
        &self.limits
    }

    async fn create(&self, session: Session) -> Result<Session> {
        self.op_create(session).await
    }

    async fn get(&self, id: &SessionId) -> Result<Option<Session>> {
        self.op_get(id).await
    }

    async fn get_many(&self, ids: &[SessionId]) -> Result<GetMany> {
        self.op_get_many(ids).await
    }

    async fn update(&self, session: &Session) -> Result<Session> {
        self.op_update(session).await
    }

    async fn touch(&self, id: &SessionId) -> Result<Timestamp> {
        self.op_touch(id).await
    }

    async fn delete(&self, id: &SessionId) -> Result<bool> {
        self.op_delete(id).await
    }

    async fn list(&self, query: &ListQuery) -> Result<ListPage> {
        self.op_list(query).await
    }

    async fn count(&self, filter: &SessionFilter) -> Result<u64> {
        self.op_count(filter).await
    }

    async fn append_frames(&self, id: &SessionId, frames: Vec<NewFrame>) -> Result<Vec<u64>> {
        self.op_append_frames(id, frames).await
    }

    async fn frames(&self, id: &SessionId, query: &FrameQuery) -> Result<FramePage> {
        self.op_frames(id, query).await
    }

    async fn count_frames(&self, id: &SessionId) -> Result<u64> {
        self.op_count_frames(id).await
    }

    async fn delete_frames(&self, id: &SessionId, through_seq: Option<u64>) -> Result<u64> {
        self.op_delete_frames(id, through_seq).await
    }

    async fn add_pending(&self, id: &SessionId, request: PendingRequest) -> Result<()> {
        self.op_add_pending(id, request).await
    }

    async fn take_pending(
        &self,
        id: &SessionId,
        request_id: &RequestId,
    ) -> Result<Option<PendingRequest>> {
        self.op_take_pending(id, request_id).await
    }

    async fn list_pending(&self, id: &SessionId) -> Result<Vec<PendingRequest>> {
        self.op_list_pending(id).await
    }

    async fn sweep_expired(&self) -> Result<SweepReport> {
        self.op_sweep_expired().await
    }

    async fn health(&self) -> Result<Health> {
        self.op_health().await
    }

    async fn restore(&self, record: SessionRecord) -> Result<()> {
        self.op_restore(record).await
    }
}

#[cfg(test)]
mod tests {
    use shoal_core::{Direction, Transport};

    use super::*;

    fn id(s: &str) -> SessionId {
        SessionId::new(s).unwrap()
    }

    fn frame(n: u64) -> NewFrame {
        NewFrame::new(Direction::ClientToServer, format!("frame-{n}"))
    }

    #[tokio::test]
    async fn sessions_create_get_touch_update_delete() {
        let store = BaselineStore::new();
        let a = id("a");
        let s = store
            .create(Session::new(a.clone(), Transport::Http))
            .await
            .unwrap();
        assert_eq!((s.revision, s.first_seq, s.last_seq), (1, 1, 0));
        let err = store
            .create(Session::new(a.clone(), Transport::Http))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");

        let got = store.get(&a).await.unwrap().unwrap();
        assert_eq!(got, s);
        assert!(store.get(&id("nope")).await.unwrap().is_none());

        let exp = store.touch(&a).await.unwrap();
        assert_eq!(store.get(&a).await.unwrap().unwrap().expires_at, exp);
        assert!(store.touch(&id("nope")).await.unwrap_err().is_not_found());

        let mut changed = got.clone();
        changed.protocol_version = Some("2025-11-25".into());
        let updated = store.update(&changed).await.unwrap();
        assert_eq!(updated.revision, 2);
        assert_eq!(updated.protocol_version.as_deref(), Some("2025-11-25"));
        // Stale revision.
        let err = store.update(&changed).await.unwrap_err();
        assert!(matches!(err, Error::Conflict { actual: 2, .. }), "{err}");

        assert_eq!(store.count(&SessionFilter::default()).await.unwrap(), 1);
        assert!(store.delete(&a).await.unwrap());
        assert!(!store.delete(&a).await.unwrap());
        assert!(store.get(&a).await.unwrap().is_none());
        assert_eq!(store.count(&SessionFilter::default()).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn frames_are_numbered_paged_and_never_resurrect() {
        let store = BaselineStore::new();
        let a = id("a");
        store
            .create(Session::new(a.clone(), Transport::Http))
            .await
            .unwrap();
        let seqs = store
            .append_frames(&a, (1..=5).map(frame).collect())
            .await
            .unwrap();
        assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
        assert_eq!(store.append_frame(&a, frame(6)).await.unwrap(), 6);
        let s = store.get(&a).await.unwrap().unwrap();
        assert_eq!((s.frame_count, s.last_seq), (6, 6));

        let page = store.frames(&a, &FrameQuery::after(2, 3)).await.unwrap();
        let got: Vec<u64> = page.frames.iter().map(|f| f.seq).collect();
        assert_eq!(got, vec![3, 4, 5]);
        assert!(page.has_more);
        assert_eq!(page.last_seq, 6);
        assert_eq!(&page.frames[0].content[..], b"frame-3");
        let page = store.frames(&a, &FrameQuery::after(5, 3)).await.unwrap();
        assert_eq!(page.frames.len(), 1);
        assert!(!page.has_more);
        assert!(store.frames(&a, &FrameQuery::after(0, 0)).await.is_err());

        assert_eq!(store.delete_frames(&a, Some(2)).await.unwrap(), 2);
        assert_eq!(store.count_frames(&a).await.unwrap(), 4);
        let s = store.get(&a).await.unwrap().unwrap();
        assert_eq!((s.first_seq, s.frame_count), (3, 4));
        let page = store.frames(&a, &FrameQuery::after(0, 10)).await.unwrap();
        assert!(page.trimmed);
        assert_eq!(page.frames[0].seq, 3);
        // Seqs keep counting after deletion.
        assert_eq!(store.append_frame(&a, frame(7)).await.unwrap(), 7);

        assert!(store.delete(&a).await.unwrap());
        assert!(
            store
                .append_frame(&a, frame(8))
                .await
                .unwrap_err()
                .is_not_found()
        );
        assert!(
            store
                .frames(&a, &FrameQuery::after(0, 10))
                .await
                .unwrap_err()
                .is_not_found()
        );
        assert!(store.get(&a).await.unwrap().is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_get_contiguous_seqs_in_order() {
        let store = Arc::new(BaselineStore::new());
        let a = id("a");
        store
            .create(Session::new(a.clone(), Transport::Http))
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for t in 0..8u64 {
            let store = Arc::clone(&store);
            let a = a.clone();
            tasks.push(tokio::spawn(async move {
                let mut seqs = Vec::new();
                for n in 0..200 {
                    seqs.push(store.append_frame(&a, frame(t * 1000 + n)).await.unwrap());
                    tokio::task::yield_now().await;
                }
                seqs
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all.sort_unstable();
        assert_eq!(all, (1..=1600).collect::<Vec<u64>>());
        let page = store
            .frames(&a, &FrameQuery::after(0, 10_000))
            .await
            .unwrap();
        let stored: Vec<u64> = page.frames.iter().map(|f| f.seq).collect();
        assert_eq!(stored, (1..=1600).collect::<Vec<u64>>());
    }

    #[tokio::test]
    async fn list_pages_cover_every_session_once_in_id_order() {
        let store = BaselineStore::new();
        for i in 0..25 {
            store
                .create(Session::new(id(&format!("s{i:02}")), Transport::Http))
                .await
                .unwrap();
        }
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = store
                .list(&ListQuery::first(10).with_cursor(cursor))
                .await
                .unwrap();
            assert!(page.sessions.len() <= 10);
            seen.extend(page.sessions.iter().map(|s| s.id.to_string()));
            cursor = page.next_cursor;
            if cursor.is_none() {
                break;
            }
        }
        let expected: Vec<String> = (0..25).map(|i| format!("s{i:02}")).collect();
        assert_eq!(seen, expected);
        assert!(store.list(&ListQuery::first(0)).await.is_err());
        let filtered = store
            .count(&SessionFilter::default().with_transport(Transport::Stdio))
            .await
            .unwrap();
        assert_eq!(filtered, 0);
    }

    #[tokio::test]
    async fn unsupported_parts_say_so() {
        let store = BaselineStore::new();
        let err = store
            .add_pending(&id("a"), PendingRequest::new(1, "ping"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Unavailable { .. }));
        assert!(err.to_string().contains("baseline"));
        assert_eq!(store.backend_name(), "baseline");
        assert_eq!(store.limits().max_frames_per_session, usize::MAX);
    }
}
