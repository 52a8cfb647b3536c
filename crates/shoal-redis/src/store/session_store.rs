//! `impl SessionStore for RedisStore`: each method runs the operation of the same name on the
//! shared [`StoreState`](super::handle::StoreState); the operations live in the files named
//! after what they touch.

use async_trait::async_trait;
use shoal_core::{
    AppendedFrames, FramePage, FrameQuery, GetMany, Health, LeaseReply, LeaseRequest, Limits,
    ListPage, ListQuery, NewFrame, PendingRequest, QuotaReply, QuotaRequest, RequestId, Result,
    Session, SessionFilter, SessionId, SessionRecord, SessionStore, SweepReport, Timestamp,
};

use super::handle::RedisStore;

#[async_trait]
impl SessionStore for RedisStore {
    fn backend_name(&self) -> &'static str {
        "redis"
    }

    fn limits(&self) -> &Limits {
        &self.state.limits
    }

    fn change_feed(&self) -> Option<std::sync::Arc<dyn shoal_core::ChangeFeed>> {
        self.feed()
            .map(|f| f as std::sync::Arc<dyn shoal_core::ChangeFeed>)
    }

    async fn create(&self, session: Session) -> Result<Session> {
        self.state.create(session).await
    }

    async fn get(&self, id: &SessionId) -> Result<Option<Session>> {
        self.state.get(id).await
    }

    async fn get_many(&self, ids: &[SessionId]) -> Result<GetMany> {
        self.state.get_many(ids).await
    }

    async fn update(&self, session: &Session) -> Result<Session> {
        self.state.update(session).await
    }

    async fn touch(&self, id: &SessionId) -> Result<Timestamp> {
        self.state.touch(id).await
    }

    async fn delete(&self, id: &SessionId) -> Result<bool> {
        self.state.delete(id).await
    }

    async fn list(&self, query: &ListQuery) -> Result<ListPage> {
        self.state.list(query).await
    }

    async fn count(&self, filter: &SessionFilter) -> Result<u64> {
        self.state.count(filter).await
    }

    async fn append_frames(&self, id: &SessionId, frames: Vec<NewFrame>) -> Result<Vec<u64>> {
        Ok(self.state.append_frames(id, frames).await?.seqs)
    }

    async fn append_frames_with_epoch(
        &self,
        id: &SessionId,
        frames: Vec<NewFrame>,
    ) -> Result<AppendedFrames> {
        self.state.append_frames(id, frames).await
    }

    async fn frames(&self, id: &SessionId, query: &FrameQuery) -> Result<FramePage> {
        self.state.frames(id, query).await
    }

    async fn count_frames(&self, id: &SessionId) -> Result<u64> {
        self.state.count_frames(id).await
    }

    async fn delete_frames(&self, id: &SessionId, through_seq: Option<u64>) -> Result<u64> {
        self.state.delete_frames(id, through_seq).await
    }

    async fn add_pending(&self, id: &SessionId, request: PendingRequest) -> Result<()> {
        self.state.add_pending(id, request).await
    }

    async fn take_pending(
        &self,
        id: &SessionId,
        request_id: &RequestId,
    ) -> Result<Option<PendingRequest>> {
        self.state.take_pending(id, request_id).await
    }

    async fn list_pending(&self, id: &SessionId) -> Result<Vec<PendingRequest>> {
        self.state.list_pending(id).await
    }

    async fn sweep_expired(&self) -> Result<SweepReport> {
        self.state.sweep_expired().await
    }

    async fn health(&self) -> Result<Health> {
        self.state.health().await
    }

    async fn lease(&self, id: &SessionId, request: LeaseRequest<'_>) -> Result<LeaseReply> {
        self.state.lease(id, request).await
    }
    async fn quota(&self, request: QuotaRequest<'_>) -> Result<QuotaReply> {
        self.state.quota(request).await
    }

    async fn shared_secret(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>> {
        self.state.shared_secret(name, candidate).await
    }

    async fn restore(&self, record: SessionRecord) -> Result<()> {
        self.state.restore(record).await
    }
}
