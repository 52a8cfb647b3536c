//! The in-memory backend: the embedded default, zero set-up.
//!
//! # Design
//! - Each session is a slot with its own `Mutex`. Slots are found by id through a hash index
//!   split into 64 shards, each a `std::sync::RwLock<HashMap>` with a fast seeded hash
//!   (`foldhash`); the index is the authority for which ids are taken. Point operations take
//!   one shard's read lock and the session's mutex, nothing else, so operations on different
//!   sessions never wait for each other and there is no global lock. The same slots are also
//!   kept in a lock-free ordered map (`crossbeam_skiplist::SkipMap`) used only for listing and
//!   sweeping. No lock is ever held across an `.await`: all work under a lock is synchronous
//!   and short. Lock order is always shard → session; removal from the index happens after
//!   the session's mutex is released.
//! - Why not a lock-free hash map: measured here (2 vCPU), `papaya` lookups made `get` slower
//!   than the original single `RwLock<HashMap>`; an uncontended shard read lock plus a fast
//!   hash is cheaper, and 64 shards keep contention negligible.
//! - The ordered map is sorted by id, so listing walks it from the cursor (the last id of the
//!   previous page): sessions that exist for the whole scan are seen exactly once, whatever is
//!   inserted or removed meanwhile. A slot enters the ordered map right after the hash map and
//!   leaves it when it dies; a node only ever replaces a dead slot's node, so a live session is
//!   never pushed out of the listing by a racing create/delete of the same id.
//! - Frames are a `VecDeque` per session holding seqs `first_seq..=last_seq` contiguously, so
//!   append is O(1) and a page read is O(page): the start index is `after_seq + 1 - first_seq`.
//! - Expiry is lazy (an expired session is removed when it is next touched) and in the
//!   background ([`MemoryStore::spawn_sweeper`]).
//! - Memory is bounded by the [`Limits`]: sessions × (metadata + frames per session × frame bytes).

use std::{
    collections::{HashMap, VecDeque},
    hash::BuildHasher,
    ops::Bound,
    sync::{
        Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use async_trait::async_trait;
use crossbeam_skiplist::SkipMap;
use tokio_util::sync::CancellationToken;

use crate::feed::{
    Change, ChangeFeed, ChangeKind, FeedConfig, FrameSummary, MemoryFeed, SessionSummary,
};
use crate::lease::{self, LeaseRecord};
use crate::quota::{QuotaReply, QuotaRequest};
use crate::{
    Clock, Error, Frame, FramePage, FrameQuery, GetMany, Health, LeaseReply, LeaseRequest, Limits,
    ListPage, ListQuery, NewFrame, PendingRequest, RequestId, Result, Session, SessionFilter,
    SessionId, SessionRecord, SessionStore, SweepReport, SystemClock, Timestamp,
    store::{check_pending, session_bytes_exceeded},
};

/// The in-memory [`SessionStore`]. Cloning shares the same sessions.
///
/// ```
/// use shoal_core::{Limits, MemoryStore, Session, SessionId, SessionStore, Transport};
/// use std::time::Duration;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let mut limits = Limits::default();
/// limits.max_sessions = 1_000;
/// let store = MemoryStore::builder().limits(limits).build();
/// let _sweeper = store.spawn_sweeper(Duration::from_secs(30)); // stops when dropped
/// let s = store.create(Session::new(SessionId::generate(), Transport::Stdio)).await?;
/// assert_eq!(s.revision, 1);
/// # Ok::<(), shoal_core::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct MemoryStore {
    state: Arc<StoreState>,
}

/// What every clone of a [`MemoryStore`] shares: the session index, the live count, the limits
/// and the clock.
#[derive(Debug)]
struct StoreState {
    /// Point lookups: id → slot, sharded. Decides whether an id is taken.
    shards: Box<[RwLock<Shard>]>,
    /// Picks the shard. Seeded apart from the shards' own hashers, so the keys of one shard
    /// do not share hash bits inside it.
    shard_hasher: foldhash::fast::RandomState,
    /// The same slots ordered by id, for listing and sweeping.
    order: SkipMap<SessionId, Arc<Slot>>,
    /// Live (not yet dead) sessions, for `max_sessions`.
    live: AtomicUsize,
    limits: Limits,
    clock: Arc<dyn Clock>,
    /// Shared secrets by name ([`SessionStore::shared_secret`]).
    secrets: Mutex<HashMap<String, Vec<u8>>>,
    /// Admission quota logs by subject ([`SessionStore::quota`]).
    quotas: Mutex<QuotaBook>,
    /// The change feed, when enabled; written under the session's lock.
    feed: Option<Arc<MemoryFeed>>,
    /// A session's touches are reported at most once per window of this many ms (0: never).
    touch_every_ms: u64,
    /// Whether appended frames have feed entries.
    feed_frames: bool,
}

/// The memory store's admission quota logs.
#[derive(Debug, Default)]
struct QuotaBook {
    logs: HashMap<String, crate::quota::QuotaLog>,
    /// Calls since subjects with nothing left to count were last dropped.
    since_purge: u32,
}

/// How many quota calls pass between drops of idle subjects.
const QUOTA_PURGE_EVERY: u32 = 1024;

#[derive(Debug)]
struct Slot(Mutex<SlotData>);

/// Number of index shards (a power of two).
const SHARDS: usize = 64;

type Shard = HashMap<SessionId, Arc<Slot>, foldhash::fast::RandomState>;

#[derive(Debug)]
struct SlotData {
    session: Session,
    frames: VecDeque<Frame>,
    pending: HashMap<RequestId, (u64, PendingRequest)>,
    pending_order: u64,
    /// Named leases (see [`crate::lease`]), ended with the session.
    leases: HashMap<String, LeaseRecord>,
    /// [`Frame::size`] of every retained frame plus [`PendingRequest::size`] of every pending
    /// request: the session's bytes besides its metadata.
    bytes: usize,
    /// [`Session::metadata_bytes`] as last written.
    meta_bytes: usize,
    /// Set once, when the session is deleted or found expired; a dead slot is never revived.
    dead: bool,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, SlotData> {
        // No code panics while holding the lock, so poisoning cannot carry a broken invariant.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Builds a [`MemoryStore`] with non-default limits or clock.
#[derive(Debug, Default)]
pub struct MemoryStoreBuilder {
    limits: Limits,
    clock: Option<Arc<dyn Clock>>,
    feed: Option<FeedConfig>,
}

impl MemoryStoreBuilder {
    /// Sets the limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the clock (tests use [`ManualClock`](crate::ManualClock)).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Writes the change feed with these settings (off unless set; the feed is
    /// [`SessionStore::change_feed`]).
    pub fn feed(mut self, config: FeedConfig) -> Self {
        self.feed = Some(config);
        self
    }

    /// Builds the store.
    pub fn build(self) -> MemoryStore {
        let feed = self
            .feed
            .as_ref()
            .filter(|f| f.enabled)
            .map(|f| Arc::new(MemoryFeed::new(f.cap)));
        let touch_every_ms = self.feed.as_ref().map_or(0, FeedConfig::touch_every_ms);
        MemoryStore {
            state: Arc::new(StoreState {
                shards: (0..SHARDS).map(|_| RwLock::new(Shard::default())).collect(),
                shard_hasher: foldhash::fast::RandomState::default(),
                order: SkipMap::new(),
                live: AtomicUsize::new(0),
                limits: self.limits,
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
                secrets: Mutex::new(HashMap::new()),
                quotas: Mutex::new(QuotaBook::default()),
                feed,
                touch_every_ms,
                feed_frames: self.feed.as_ref().is_some_and(|f| f.frames),
            }),
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

/// Stops the background sweeper when dropped (or when [`SweeperHandle::stop`] is called).
#[derive(Debug)]
pub struct SweeperHandle {
    cancel: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl SweeperHandle {
    /// Stops the sweeper and waits for it to finish its current pass.
    pub async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SweeperHandle {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl MemoryStore {
    /// A store with default [`Limits`] and the system clock.
    pub fn new() -> Self {
        MemoryStore::builder().build()
    }

    /// A builder for limits and clock.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder::default()
    }

    /// Starts a task on the current Tokio runtime that removes expired sessions every `every`.
    /// The task holds no strong reference to the store and ends when the handle is dropped or
    /// the store is gone.
    pub fn spawn_sweeper(&self, every: Duration) -> SweeperHandle {
        let cancel = CancellationToken::new();
        let weak: Weak<StoreState> = Arc::downgrade(&self.state);
        let token = cancel.clone();
        let every = every.max(Duration::from_millis(1));
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    () = token.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let Some(state) = weak.upgrade() else { break };
                let removed = state.sweep();
                if removed > 0 {
                    tracing::debug!(removed, "memory store swept expired sessions");
                }
            }
        });
        SweeperHandle {
            cancel,
            task: Some(task),
        }
    }

    /// Number of sessions held, including expired ones not yet swept.
    pub fn len(&self) -> usize {
        self.state.live.load(Ordering::Relaxed)
    }

    /// Whether the store holds no sessions.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl StoreState {
    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn expiry_from(&self, now: Timestamp) -> Timestamp {
        now.saturating_add(self.limits.session_ttl)
    }

    fn shard(&self, id: &SessionId) -> &RwLock<Shard> {
        let h = self.shard_hasher.hash_one(id.as_str()) as usize;
        &self.shards[h & (SHARDS - 1)]
    }

    fn read_shard(&self, id: &SessionId) -> RwLockReadGuard<'_, Shard> {
        // Nothing panics while a shard lock is held, so poisoning carries no broken state.
        self.shard(id).read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_shard(&self, id: &SessionId) -> RwLockWriteGuard<'_, Shard> {
        self.shard(id).write().unwrap_or_else(|e| e.into_inner())
    }

    /// The slot of `id`, if any (live or not).
    fn slot(&self, id: &SessionId) -> Option<Arc<Slot>> {
        self.read_shard(id).get(id).cloned()
    }

    /// Writes `change` to the feed, when there is one. Called with the session's lock held,
    /// so a session's entries are in the order of its changes.
    fn report(&self, change: impl FnOnce() -> Change) {
        if let Some(feed) = &self.feed {
            feed.push(self.now(), [change()]);
        }
    }

    /// Reports that `data`'s session ended with `kind`.
    fn report_end(&self, kind: ChangeKind, data: &SlotData) {
        self.report(|| {
            let mut c = Change::new(kind, data.session.id.as_str());
            c.created_at = Some(data.session.created_at);
            c
        });
    }

    /// Marks a session dead, once. Called with its mutex held; follow with [`StoreState::unlink`]
    /// after releasing it.
    fn mark_dead(&self, data: &mut SlotData) {
        if !data.dead {
            data.dead = true;
            self.live.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Removes this exact slot (not a newer one with the same id) from the index and the
    /// ordered map. Must be called without holding the slot's mutex (lock order).
    fn unlink(&self, id: &SessionId, slot: &Arc<Slot>) {
        {
            let mut shard = self.write_shard(id);
            if shard.get(id).is_some_and(|cur| Arc::ptr_eq(cur, slot)) {
                shard.remove(id);
            }
        }
        if let Some(entry) = self.order.get(id)
            && Arc::ptr_eq(entry.value(), slot)
        {
            entry.remove();
        }
    }

    /// Runs `f` on the live session `id` under its lock, as seen at `now`. Expired sessions
    /// are removed and reported as not found.
    fn with_live<T>(
        &self,
        id: &SessionId,
        now: Timestamp,
        f: impl FnOnce(&mut SlotData) -> Result<T>,
    ) -> Result<T> {
        let shard = self.read_shard(id);
        let Some(slot) = shard.get(id) else {
            return Err(Error::session_not_found(id));
        };
        let mut data = slot.lock();
        if data.dead {
            return Err(Error::session_not_found(id));
        }
        if data.session.is_expired_at(now) {
            if !data.dead {
                self.report_end(ChangeKind::Expired, &data);
            }
            self.mark_dead(&mut data);
            let slot = Arc::clone(slot);
            drop(data);
            drop(shard);
            self.unlink(id, &slot);
            return Err(Error::session_not_found(id));
        }
        f(&mut data)
    }

    fn reserve(&self) -> Result<()> {
        let max = self.limits.max_sessions;
        let prev = self.live.fetch_add(1, Ordering::AcqRel);
        if prev >= max {
            self.live.fetch_sub(1, Ordering::AcqRel);
            return Err(Error::LimitExceeded {
                what: "sessions",
                limit: max as u64,
            });
        }
        Ok(())
    }

    /// Inserts a new session unless a live one has the id.
    fn insert_new(&self, data: SlotData) -> Result<()> {
        let id = data.session.id.clone();
        // Refuse a taken id before taking a place: a reservation held by a create that is
        // about to fail with AlreadyExists would make a concurrent create of another id see
        // the store as full (spurious LimitExceeded). Only two creates racing for the same
        // new id can still hold a place briefly.
        if self.is_live(&id) {
            return Err(already_exists(&id));
        }
        if self.reserve().is_err() {
            // Expired sessions may still count; drop them and try once more.
            self.sweep();
            self.reserve()?;
        }
        let slot = Arc::new(Slot(Mutex::new(data)));
        {
            let mut shard = self.write_shard(&id);
            if let Some(existing) = shard.get(&id) {
                let mut other = existing.lock();
                if !other.dead && !other.session.is_expired_at(self.now()) {
                    drop(other);
                    drop(shard);
                    self.live.fetch_sub(1, Ordering::AcqRel);
                    return Err(already_exists(&id));
                }
                // Dead or expired: the new slot takes its place (its ordered node is
                // replaced below).
                if !other.dead {
                    self.report_end(ChangeKind::Expired, &other);
                }
                self.mark_dead(&mut other);
            }
            shard.insert(id.clone(), Arc::clone(&slot));
            // Under the shard's write lock: no change to the new session can be reported
            // before its creation.
            self.report(|| {
                let data = slot.lock();
                let mut c = Change::new(ChangeKind::Created, id.as_str());
                c.session = Some(SessionSummary::of(&data.session));
                c
            });
        }
        // Replace an ordered node only if it belongs to a dead slot: a racing create of the
        // same id that already won keeps its place.
        self.order
            .compare_insert(id, Arc::clone(&slot), |current| current.lock().dead);
        Ok(())
    }

    /// Whether a live (not dead, not expired) session has this id right now.
    fn is_live(&self, id: &SessionId) -> bool {
        let now = self.now();
        self.read_shard(id).get(id).is_some_and(|slot| {
            let data = slot.lock();
            !data.dead && !data.session.is_expired_at(now)
        })
    }

    fn sweep(&self) -> u64 {
        let now = self.now();
        let mut removed = 0;
        for entry in self.order.iter() {
            let slot = Arc::clone(entry.value());
            let mut data = slot.lock();
            if data.dead {
                // A node left behind by a create that lost a race with a delete.
                drop(data);
                entry.remove();
            } else if data.session.is_expired_at(now) {
                self.report_end(ChangeKind::Expired, &data);
                self.mark_dead(&mut data);
                drop(data);
                self.unlink(entry.key(), &slot);
                removed += 1;
            }
        }
        removed
    }
}

fn already_exists(id: &SessionId) -> Error {
    Error::AlreadyExists {
        what: format!("session {:?}", id.as_str()),
    }
}

impl SlotData {
    fn new(session: Session) -> Self {
        SlotData {
            meta_bytes: session.metadata_bytes(),
            bytes: 0,
            session,
            frames: VecDeque::new(),
            pending: HashMap::new(),
            pending_order: 0,
            leases: HashMap::new(),
            dead: false,
        }
    }

    fn touch(&mut self, now: Timestamp, expires_at: Timestamp) {
        self.session.last_activity = now;
        self.session.expires_at = expires_at;
    }

    /// The session's bytes after adding `adding` and trimming the oldest frames so that at
    /// most `keep` of the current frames plus `incoming` more remain (`incoming_sizes`: the
    /// new frames' sizes, oldest first, for when they would be trimmed themselves).
    fn bytes_after(&self, incoming_sizes: &[usize], keep: usize) -> usize {
        let total = self.frames.len() + incoming_sizes.len();
        let drop = total.saturating_sub(keep);
        let dropped_old: usize = self.frames.iter().take(drop).map(Frame::size).sum();
        let dropped_new: usize = incoming_sizes
            .iter()
            .take(drop.saturating_sub(self.frames.len()))
            .sum();
        let adding: usize = incoming_sizes.iter().sum();
        (self.bytes + self.meta_bytes + adding).saturating_sub(dropped_old + dropped_new)
    }

    /// Drops frames from the front until at most `keep` remain.
    fn trim_to(&mut self, keep: usize) {
        while self.frames.len() > keep {
            if let Some(f) = self.frames.pop_front() {
                self.bytes = self.bytes.saturating_sub(f.size());
            }
            self.session.first_seq += 1;
        }
        self.session.frame_count = self.frames.len() as u64;
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    fn backend_name(&self) -> &'static str {
        "memory"
    }

    fn limits(&self) -> &Limits {
        &self.state.limits
    }

    fn change_feed(&self) -> Option<Arc<dyn ChangeFeed>> {
        self.state
            .feed
            .as_ref()
            .map(|f| Arc::clone(f) as Arc<dyn ChangeFeed>)
    }

    async fn create(&self, mut session: Session) -> Result<Session> {
        let state = &self.state;
        session.begin(state.now(), &state.limits)?;
        state.insert_new(SlotData::new(session.clone()))?;
        Ok(session)
    }

    async fn get(&self, id: &SessionId) -> Result<Option<Session>> {
        match self
            .state
            .with_live(id, self.state.now(), |d| Ok(d.session.clone()))
        {
            Ok(s) => Ok(Some(s)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn get_many(&self, ids: &[SessionId]) -> Result<GetMany> {
        let mut out = GetMany::default();
        for id in ids {
            match self
                .state
                .with_live(id, self.state.now(), |d| Ok(d.session.clone()))
            {
                Ok(s) => out.found.push(s),
                Err(Error::NotFound { .. }) => out.missing.push(id.clone()),
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    async fn update(&self, session: &Session) -> Result<Session> {
        let state = &self.state;
        session.check_metadata(&state.limits)?;
        let meta_bytes = session.metadata_bytes();
        let now = state.now();
        let expires = state.expiry_from(now);
        state.with_live(&session.id, now, |d| {
            if d.session.revision != session.revision {
                return Err(Error::Conflict {
                    what: format!("session {:?}", session.id.as_str()),
                    expected: session.revision,
                    actual: d.session.revision,
                });
            }
            d.session.apply_caller_fields(session);
            d.meta_bytes = meta_bytes;
            d.session.revision += 1;
            d.touch(now, expires);
            state.report(|| {
                let mut c = Change::new(ChangeKind::Updated, session.id.as_str());
                c.revision = Some(d.session.revision);
                c.status = Some(d.session.status);
                c
            });
            Ok(d.session.clone())
        })
    }

    async fn touch(&self, id: &SessionId) -> Result<Timestamp> {
        let state = &self.state;
        let now = state.now();
        let expires = state.expiry_from(now);
        state.with_live(id, now, |d| {
            let window = state.touch_every_ms;
            if window > 0
                && d.session.last_activity.as_millis() / window != now.as_millis() / window
            {
                state.report(|| Change::new(ChangeKind::Touched, id.as_str()));
            }
            d.touch(now, expires);
            Ok(expires)
        })
    }

    async fn delete(&self, id: &SessionId) -> Result<bool> {
        let state = &self.state;
        let Some(slot) = state.slot(id) else {
            return Ok(false);
        };
        let mut data = slot.lock();
        let existed = !data.dead && !data.session.is_expired_at(state.now());
        if existed {
            state.report_end(ChangeKind::Deleted, &data);
        } else if !data.dead {
            state.report_end(ChangeKind::Expired, &data);
        }
        state.mark_dead(&mut data);
        data.frames = VecDeque::new();
        data.pending = HashMap::new();
        drop(data);
        state.unlink(id, &slot);
        Ok(existed)
    }

    async fn list(&self, query: &ListQuery) -> Result<ListPage> {
        query.validate()?;
        let state = &self.state;
        let start = match &query.cursor {
            None => None,
            Some(c) => Some(
                SessionId::new(c).map_err(|e| Error::invalid(format!("bad list cursor: {e}")))?,
            ),
        };
        let lower = match &start {
            Some(id) => Bound::Excluded(id.as_str()),
            None => Bound::Unbounded,
        };
        let now = state.now();
        let mut page = ListPage::default();
        for entry in state
            .order
            .range::<str, _>((lower, Bound::<&str>::Unbounded))
        {
            let slot = Arc::clone(entry.value());
            let session = {
                let data = slot.lock();
                if data.dead || data.session.is_expired_at(now) {
                    continue;
                }
                if !query.filter.matches(&data.session) {
                    continue;
                }
                if page.sessions.len() == query.limit {
                    // One more match exists: there is a next page.
                    page.next_cursor = page.sessions.last().map(|s| s.id.to_string());
                    break;
                }
                data.session.clone()
            };
            page.sessions.push(session);
        }
        Ok(page)
    }

    async fn count(&self, filter: &SessionFilter) -> Result<u64> {
        let now = self.state.now();
        let mut n = 0;
        for entry in self.state.order.iter() {
            let data = entry.value().lock();
            if !data.dead && !data.session.is_expired_at(now) && filter.matches(&data.session) {
                n += 1;
            }
        }
        Ok(n)
    }

    async fn append_frames(&self, id: &SessionId, frames: Vec<NewFrame>) -> Result<Vec<u64>> {
        let state = &self.state;
        let max_bytes = state.limits.max_frame_bytes;
        if frames.iter().any(|f| f.size() > max_bytes) {
            return Err(Error::LimitExceeded {
                what: "frame bytes",
                limit: max_bytes as u64,
            });
        }
        let keep = state.limits.max_frames_per_session;
        let sizes: Vec<usize> = frames.iter().map(NewFrame::size).collect();
        let now = state.now();
        let expires = state.expiry_from(now);
        // Summaries are read outside the session's lock.
        let summaries: Vec<FrameSummary> = match &state.feed {
            Some(_) if state.feed_frames => frames.iter().map(FrameSummary::of).collect(),
            _ => Vec::new(),
        };
        state.with_live(id, now, |d| {
            if !sizes.is_empty() && d.bytes_after(&sizes, keep) > state.limits.max_session_bytes {
                return Err(session_bytes_exceeded(&state.limits));
            }
            let mut seqs = Vec::with_capacity(frames.len());
            for (f, size) in frames.into_iter().zip(&sizes) {
                d.session.last_seq += 1;
                let seq = d.session.last_seq;
                d.frames.push_back(f.into_frame(id.clone(), seq));
                d.bytes += size;
                seqs.push(seq);
            }
            if let Some(feed) = state.feed.as_ref().filter(|_| state.feed_frames) {
                let changes = summaries.into_iter().zip(&seqs).map(|(summary, seq)| {
                    let mut c = Change::new(ChangeKind::Frame, id.as_str());
                    c.seq = Some(*seq);
                    c.frame = Some(summary);
                    c
                });
                feed.push(now, changes);
            }
            if d.frames.is_empty() {
                d.session.first_seq = d.session.last_seq + 1;
            }
            d.trim_to(keep);
            d.touch(now, expires);
            Ok(seqs)
        })
    }

    async fn frames(&self, id: &SessionId, query: &FrameQuery) -> Result<FramePage> {
        query.validate()?;
        self.state.with_live(id, self.state.now(), |d| {
            let first = d.session.first_seq;
            let last = d.session.last_seq;
            let mut page = FramePage {
                last_seq: last,
                trimmed: query.after_seq.saturating_add(1) < first,
                ..FramePage::default()
            };
            let start_seq = query.after_seq.saturating_add(1).max(first);
            let start = usize::try_from(start_seq - first).unwrap_or(usize::MAX);
            let max_bytes = self.state.limits.max_page_bytes;
            let mut bytes = 0usize;
            let mut iter = d.frames.range(start.min(d.frames.len())..);
            for f in iter.by_ref() {
                if let Some(s) = &query.stream_id
                    && f.stream_id.as_ref() != Some(s)
                {
                    continue;
                }
                let size = f.size();
                if page.frames.len() == query.limit
                    || (!page.frames.is_empty() && bytes + size > max_bytes)
                {
                    page.has_more = true;
                    break;
                }
                bytes += size;
                page.frames.push(f.clone());
            }
            Ok(page)
        })
    }

    async fn count_frames(&self, id: &SessionId) -> Result<u64> {
        self.state
            .with_live(id, self.state.now(), |d| Ok(d.frames.len() as u64))
    }

    async fn delete_frames(&self, id: &SessionId, through_seq: Option<u64>) -> Result<u64> {
        self.state.with_live(id, self.state.now(), |d| {
            let before = d.frames.len();
            let keep = match through_seq {
                None => 0,
                Some(t) => {
                    let gone = t.saturating_add(1).saturating_sub(d.session.first_seq);
                    before.saturating_sub(usize::try_from(gone).unwrap_or(usize::MAX))
                }
            };
            d.trim_to(keep);
            if d.frames.is_empty() {
                d.session.first_seq = d.session.last_seq + 1;
            }
            Ok((before - d.frames.len()) as u64)
        })
    }

    async fn add_pending(&self, id: &SessionId, request: PendingRequest) -> Result<()> {
        let limits = &self.state.limits;
        check_pending(limits, &request)?;
        let max = limits.max_pending_per_session;
        let size = request.size();
        self.state.with_live(id, self.state.now(), |d| {
            if d.pending.contains_key(&request.request_id) {
                return Err(Error::AlreadyExists {
                    what: format!(
                        "pending request {} in session {:?}",
                        request.request_id,
                        id.as_str()
                    ),
                });
            }
            if d.pending.len() >= max {
                return Err(Error::LimitExceeded {
                    what: "pending requests per session",
                    limit: max as u64,
                });
            }
            if d.bytes + d.meta_bytes + size > limits.max_session_bytes {
                return Err(session_bytes_exceeded(limits));
            }
            d.bytes += size;
            d.pending_order += 1;
            d.pending
                .insert(request.request_id.clone(), (d.pending_order, request));
            Ok(())
        })
    }

    async fn take_pending(
        &self,
        id: &SessionId,
        request_id: &RequestId,
    ) -> Result<Option<PendingRequest>> {
        self.state.with_live(id, self.state.now(), |d| {
            let taken = d.pending.remove(request_id).map(|(_, p)| p);
            if let Some(p) = &taken {
                d.bytes = d.bytes.saturating_sub(p.size());
            }
            Ok(taken)
        })
    }

    async fn list_pending(&self, id: &SessionId) -> Result<Vec<PendingRequest>> {
        self.state.with_live(id, self.state.now(), |d| {
            let mut v: Vec<_> = d.pending.values().cloned().collect();
            v.sort_by_key(|(order, _)| *order);
            Ok(v.into_iter().map(|(_, p)| p).collect())
        })
    }

    async fn sweep_expired(&self) -> Result<SweepReport> {
        Ok(SweepReport {
            removed: self.state.sweep(),
            repaired: 0,
        })
    }

    async fn health(&self) -> Result<Health> {
        let started = Instant::now();
        let sessions = self.len();
        Ok(Health::healthy("memory", started.elapsed())
            .with_detail("sessions", sessions)
            .with_detail("max_sessions", self.state.limits.max_sessions))
    }

    async fn lease(&self, id: &SessionId, request: LeaseRequest<'_>) -> Result<LeaseReply> {
        request.validate()?;
        let now = self.state.now();
        self.state.with_live(id, now, |d| {
            let name = request.name();
            let (reply, record) = lease::apply(d.leases.get(name), &request, now);
            match record {
                Some(record) if record.expires_at > now => {
                    d.leases.insert(name.to_owned(), record);
                }
                Some(_) => {
                    d.leases.remove(name);
                }
                None => {}
            }
            // Forget leases that ran out, so many short-lived names cannot pile up.
            if d.leases.len() > 16 {
                d.leases.retain(|_, r| r.expires_at > now);
            }
            Ok(reply)
        })
    }

    /// Kept for the life of the store (there is no other process to share it with, but a
    /// caller gets the same answer every time).
    async fn shared_secret(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>> {
        crate::store::check_secret(name, candidate)?;
        let mut secrets = self.state.secrets.lock().unwrap_or_else(|e| e.into_inner());
        Ok(secrets
            .entry(name.to_owned())
            .or_insert_with(|| candidate.to_vec())
            .clone())
    }

    /// Counted in this process (the store is no other process's).
    async fn quota(&self, request: QuotaRequest<'_>) -> Result<QuotaReply> {
        request.validate()?;
        let now = self.state.now();
        let mut book = self.state.quotas.lock().unwrap_or_else(|e| e.into_inner());
        // Subjects whose entries all aged out are dropped now and then, so many one-off
        // subjects (client addresses) cannot pile up.
        book.since_purge += 1;
        if book.since_purge >= QUOTA_PURGE_EVERY {
            book.since_purge = 0;
            book.logs.retain(|_, log| !log.is_idle(now));
        }
        let quotas = &mut book.logs;
        let reply = match request {
            QuotaRequest::Admit { subject, .. } => quotas
                .entry(subject.to_owned())
                .or_default()
                .apply(&request, now),
            _ => match quotas.get_mut(request.subject()) {
                Some(log) => log.apply(&request, now),
                None => QuotaReply::Absent,
            },
        };
        Ok(reply)
    }

    async fn restore(&self, record: SessionRecord) -> Result<()> {
        let state = &self.state;
        record.validate(&state.limits)?;
        let SessionRecord {
            session,
            frames,
            pending,
        } = record;
        let mut data = SlotData::new(session);
        data.bytes = frames.iter().map(Frame::size).sum::<usize>()
            + pending.iter().map(PendingRequest::size).sum::<usize>();
        data.frames = frames.into();
        for p in pending {
            data.pending_order += 1;
            data.pending
                .insert(p.request_id.clone(), (data.pending_order, p));
        }
        state.insert_new(data)
    }
}
