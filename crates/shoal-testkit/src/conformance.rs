//! The [`SessionStore`] conformance suite: the whole contract of `shoal_core::store`, one
//! `pub async fn` per case, each taking a [`StoreFactory`].
//!
//! A backend's test file runs every case with [`conformance_suite!`](crate::conformance_suite):
//!
//! ```ignore
//! async fn memory(h: shoal_testkit::Harness) -> std::sync::Arc<dyn shoal_core::SessionStore> {
//!     std::sync::Arc::new(shoal_core::MemoryStore::builder()
//!         .limits(h.limits).clock(std::sync::Arc::new(h.clock)).build())
//! }
//! shoal_testkit::conformance_suite!(memory);
//! ```
//!
//! Every case builds its own [`Harness`] (cases that need small limits set them), asks the
//! factory for a fresh store, and drives time only through the harness's manual clock, so the
//! suite never sleeps. Failures panic with a message naming the operation and the values.

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use shoal_core::{
    Clock, Direction, Error, Frame, FrameQuery, Limits, ListQuery, NewFrame, PendingRequest,
    QuotaBound, QuotaReply, QuotaRequest, QuotaRule, RequestId, Result, Session, SessionFilter,
    SessionId, SessionRecord, SessionState, SessionStatus, SessionStore, Timestamp, Transport,
    store::{MAX_PAGE_LIMIT, modify},
    transfer::{self, ImportOptions},
};

use crate::{Harness, StoreFactory};

/// Expands to one `#[tokio::test(flavor = "multi_thread", worker_threads = 2)]` per
/// conformance case, inside a module (default name `conformance`), each running the case of
/// the same name in [`shoal_testkit::conformance`](crate::conformance) against `factory`.
///
/// `factory` is a path to an `async fn(Harness) -> Arc<dyn SessionStore>` (anything
/// implementing [`StoreFactory`](crate::StoreFactory)) visible where the macro is invoked. The
/// calling crate needs `tokio` (features `macros`, `rt-multi-thread`) as a dev-dependency.
///
/// ```ignore
/// shoal_testkit::conformance_suite!(memory);                 // mod conformance { … }
/// shoal_testkit::conformance_suite!(cached_memory, cached);  // mod cached_memory { … }
/// ```
#[macro_export]
macro_rules! conformance_suite {
    ($module:ident, $factory:path) => {
        $crate::conformance_suite!(@module $module, $factory;
            create_sets_bookkeeping_fields,
            create_duplicate_is_already_exists,
            get_unknown_is_none,
            get_many_reports_found_in_order_and_missing,
            update_bumps_revision_and_ignores_bookkeeping,
            update_with_stale_revision_conflicts,
            operations_after_delete_are_not_found,
            operations_on_unknown_id_are_not_found,
            touch_slides_expiry,
            expired_session_behaves_as_deleted,
            sweep_removes_only_expired_sessions,
            create_over_expired_id_starts_fresh,
            delete_reports_existence_and_cascades,
            list_and_count_apply_filters,
            list_pages_concatenate_to_all_sessions,
            list_pagination_survives_concurrent_changes,
            list_rejects_invalid_cursor,
            page_limits_are_validated,
            append_frame_returns_increasing_seqs,
            append_frames_returns_contiguous_seqs,
            appends_and_pages_agree_on_epochs,
            concurrent_appends_are_totally_ordered,
            frames_pagination_and_stream_filter,
            trimming_keeps_seqs_counting,
            delete_frames_keeps_seqs_counting,
            frame_content_is_preserved_exactly,
            frame_size_limit_writes_nothing,
            session_count_limit,
            metadata_limit_on_create,
            metadata_limit_on_update,
            pending_limit,
            pending_add_list_take,
            concurrent_take_pending_has_one_winner,
            concurrent_creates_of_one_id_have_one_winner,
            concurrent_creates_respect_session_limit,
            duplicate_creates_do_not_fill_the_store,
            concurrent_updates_of_one_revision_have_one_winner,
            concurrent_adds_respect_pending_limit,
            delete_during_appends_does_not_resurrect,
            restore_round_trips_a_record,
            restore_over_existing_is_already_exists,
            restore_rejects_invalid_records,
            invalid_session_ids_are_rejected,
            health_reports_backend,
            limits_are_the_harness_limits,
            object_safe_behind_arc_dyn,
            transfer_round_trip_is_byte_identical,
            transfer_import_reports_bad_lines,
            transfer_import_rejects_wrong_header,
            leases_are_owned,
            leases_run_out,
            concurrent_lease_acquires_have_one_winner,
            leases_need_a_live_session,
            shared_secret_first_caller_wins,
            quotas_bound_live_sessions,
            quotas_bound_admissions_per_window,
            concurrent_admissions_stop_at_the_bound,
            quotas_refuse_bad_input,
            session_byte_budget_refuses_whole_writes,
            frame_pages_stay_within_their_byte_bound,
        );
    };
    ($factory:path) => {
        $crate::conformance_suite!(conformance, $factory);
    };
    (@module $module:ident, $factory:path; $($case:ident),+ $(,)?) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    $crate::conformance::$case($factory).await;
                }
            )+
        }
    };
}

// ----------------------------------------------------------------------------------------
// Helpers
// ----------------------------------------------------------------------------------------

/// The timestamp every test frame carries, so frames compare exactly.
const FRAME_TIME: Timestamp = Timestamp(1_700_000_000_000);

/// Asserts that `$result` is an `Err` matching `$pat`, with a context message.
macro_rules! assert_err {
    ($result:expr, $pat:pat, $($ctx:tt)+) => {
        match $result {
            Err($pat) => {}
            other => panic!(
                "{}: expected Err({}), got {:?}",
                format_args!($($ctx)+),
                stringify!($pat),
                other
            ),
        }
    };
}

fn ok<T>(r: Result<T>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("{what}: unexpected error: {e} ({e:?})"))
}

fn sid(s: &str) -> SessionId {
    SessionId::new(s).unwrap_or_else(|e| panic!("test id {s:?} is invalid: {e}"))
}

fn plain(id: &str) -> Session {
    Session::new(sid(id), Transport::StreamableHttp)
}

/// A session with every caller-owned field set.
fn rich(id: &str) -> Session {
    let mut s = Session::new(sid(id), Transport::StreamableHttp);
    s.status = SessionStatus::Active;
    s.state = SessionState::Active;
    s.client_info = Some(serde_json::json!({"name": "client", "version": "1.0", "caps": [1, 2]}));
    s.server_info = Some(serde_json::json!({"name": "server", "nested": {"ok": true}}));
    s.protocol_version = Some("2025-11-25".into());
    s.upstream_session_id = Some("upstream-1".into());
    s.initialize_params = Some(serde_json::json!({"protocolVersion": "2025-11-25"}));
    s.principal = Some("alice".into());
    s.tags.insert("team-a".into());
    s.tags.insert("beta".into());
    s.metadata.insert("region".into(), "eu".into());
    s.metadata.insert("note".into(), "héllo ✓".into());
    s
}

/// `s` with the bookkeeping fields a freshly created session has.
fn as_created(mut s: Session, now: Timestamp, ttl: Duration) -> Session {
    s.created_at = now;
    s.last_activity = now;
    s.expires_at = now.saturating_add(ttl);
    s.frame_count = 0;
    s.last_seq = 0;
    s.first_seq = 1;
    s.revision = 1;
    s
}

fn frame(content: impl Into<Bytes>) -> NewFrame {
    NewFrame::new(Direction::ClientToServer, content).with_timestamp(FRAME_TIME)
}

fn pending(id: impl Into<RequestId>, method: &str) -> PendingRequest {
    PendingRequest::new(id, method).with_started_at(FRAME_TIME)
}

fn limits(change: impl FnOnce(&mut Limits)) -> Harness {
    let mut l = Limits::default();
    change(&mut l);
    Harness::new(l)
}

async fn must_get(store: &dyn SessionStore, id: &SessionId, what: &str) -> Session {
    ok(store.get(id).await, what).unwrap_or_else(|| panic!("{what}: session {id} is missing"))
}

async fn all_frames(store: &dyn SessionStore, id: &SessionId) -> Vec<Frame> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = ok(
            store.frames(id, &FrameQuery::after(after, 1_000)).await,
            "frames page",
        );
        after = page.next_after(after);
        out.extend(page.frames);
        if !page.has_more {
            return out;
        }
    }
}

fn seqs(frames: &[Frame]) -> Vec<u64> {
    frames.iter().map(|f| f.seq).collect()
}

/// Every page of a listing, checking page size and that no session appears twice.
async fn list_all(store: &dyn SessionStore, filter: &SessionFilter, limit: usize) -> Vec<Session> {
    let mut out: Vec<Session> = Vec::new();
    let mut seen = HashSet::new();
    let mut cursor = None;
    for _ in 0..100_000 {
        let page = ok(
            store
                .list(
                    &ListQuery::first(limit)
                        .with_filter(filter.clone())
                        .with_cursor(cursor.take()),
                )
                .await,
            "list page",
        );
        assert!(
            page.errors.is_empty(),
            "list reported errors: {:?}",
            page.errors
        );
        assert!(
            page.sessions.len() <= limit,
            "a page of limit {limit} held {} sessions",
            page.sessions.len()
        );
        for s in page.sessions {
            assert!(seen.insert(s.id.clone()), "session {} listed twice", s.id);
            out.push(s);
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
    panic!("listing with limit {limit} did not finish within 100000 pages");
}

/// Waits (real time, at most 30 s) until `done()` holds.
async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn ids_of(sessions: &[Session]) -> BTreeSet<String> {
    sessions.iter().map(|s| s.id.to_string()).collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

/// Asserts that every per-session operation on `id` reports `NotFound` and that nothing
/// came back to life.
async fn assert_gone(store: &dyn SessionStore, id: &SessionId, ctx: &str) {
    let mut probe = Session::new(id.clone(), Transport::Http);
    probe.revision = 1;
    assert_err!(
        store.update(&probe).await,
        Error::NotFound { .. },
        "{ctx}: update"
    );
    probe.revision = 2;
    assert_err!(
        store.update(&probe).await,
        Error::NotFound { .. },
        "{ctx}: update rev 2"
    );
    assert_err!(
        store.touch(id).await,
        Error::NotFound { .. },
        "{ctx}: touch"
    );
    assert_err!(
        store.append_frames(id, vec![frame("x"), frame("y")]).await,
        Error::NotFound { .. },
        "{ctx}: append_frames"
    );
    assert_err!(
        store.append_frame(id, frame("x")).await,
        Error::NotFound { .. },
        "{ctx}: append_frame"
    );
    assert_err!(
        store.add_pending(id, pending(1, "ping")).await,
        Error::NotFound { .. },
        "{ctx}: add_pending"
    );
    assert_err!(
        store.take_pending(id, &RequestId::from(1)).await,
        Error::NotFound { .. },
        "{ctx}: take_pending"
    );
    assert_err!(
        store.list_pending(id).await,
        Error::NotFound { .. },
        "{ctx}: list_pending"
    );
    assert_err!(
        store.frames(id, &FrameQuery::after(0, 10)).await,
        Error::NotFound { .. },
        "{ctx}: frames"
    );
    assert_err!(
        store.count_frames(id).await,
        Error::NotFound { .. },
        "{ctx}: count_frames"
    );
    assert_err!(
        store.delete_frames(id, None).await,
        Error::NotFound { .. },
        "{ctx}: delete_frames(None)"
    );
    assert_err!(
        store.delete_frames(id, Some(1)).await,
        Error::NotFound { .. },
        "{ctx}: delete_frames(Some)"
    );
    // None of the above may have created anything.
    assert!(
        ok(store.get(id).await, "get after probes").is_none(),
        "{ctx}: session {id} was resurrected by a write"
    );
    let many = ok(store.get_many(std::slice::from_ref(id)).await, "get_many");
    assert!(
        many.found.is_empty(),
        "{ctx}: get_many found {:?}",
        many.found
    );
    assert_eq!(many.missing, vec![id.clone()], "{ctx}: get_many missing");
    let listed = list_all(store, &SessionFilter::default(), 100).await;
    assert!(
        !listed.iter().any(|s| &s.id == id),
        "{ctx}: list still shows {id}"
    );
}

// ----------------------------------------------------------------------------------------
// create / get / get_many
// ----------------------------------------------------------------------------------------

/// `create` sets the bookkeeping fields itself (revision 1, `created_at = now`,
/// `expires_at = now + ttl`, seqs 0/1, no frames), ignores what the caller put there, keeps
/// every caller-owned field, and `get` returns exactly what `create` returned.
pub async fn create_sets_bookkeeping_fields(factory: impl StoreFactory) {
    let h = Harness::default();
    let store = factory.make(h.clone()).await;
    let now = h.clock.now();
    let ttl = h.limits.session_ttl;

    let mut input = rich("create-1");
    input.created_at = Timestamp(5);
    input.last_activity = Timestamp(6);
    input.expires_at = Timestamp(7);
    input.frame_count = 3;
    input.last_seq = 9;
    input.first_seq = 4;
    input.revision = 42;
    let created = ok(store.create(input.clone()).await, "create");

    assert_eq!(created.revision, 1, "revision");
    assert_eq!(created.created_at, now, "created_at");
    assert_eq!(created.last_activity, now, "last_activity");
    assert_eq!(created.expires_at, now.saturating_add(ttl), "expires_at");
    assert_eq!(
        (created.frame_count, created.last_seq, created.first_seq),
        (0, 0, 1),
        "frame_count, last_seq, first_seq"
    );
    assert_eq!(created, as_created(input, now, ttl), "caller-owned fields");

    let got = must_get(&*store, &created.id, "get after create").await;
    assert_eq!(got, created, "get returns what create returned");
    assert_eq!(ok(store.count(&SessionFilter::default()).await, "count"), 1);
    assert_eq!(ok(store.count_frames(&created.id).await, "count_frames"), 0);
    assert!(ok(store.list_pending(&created.id).await, "list_pending").is_empty());
}

/// A second `create` with a taken id is `AlreadyExists` and changes nothing.
pub async fn create_duplicate_is_already_exists(factory: impl StoreFactory) {
    let h = Harness::default();
    let store = factory.make(h.clone()).await;
    let first = ok(store.create(rich("dup")).await, "first create");
    ok(store.append_frame(&first.id, frame("f1")).await, "append");
    let first = must_get(&*store, &first.id, "get").await;

    h.clock.advance(Duration::from_secs(3));
    let mut second = plain("dup");
    second.principal = Some("mallory".into());
    second.status = SessionStatus::Failed;
    assert_err!(
        store.create(second).await,
        Error::AlreadyExists { .. },
        "duplicate create"
    );
    assert_eq!(
        must_get(&*store, &first.id, "get after duplicate").await,
        first,
        "the existing session is untouched (fields, expiry, frames)"
    );
    assert_eq!(ok(store.count_frames(&first.id).await, "count_frames"), 1);
    assert_eq!(ok(store.count(&SessionFilter::default()).await, "count"), 1);
}

/// `get` of an id that never existed is `Ok(None)`.
pub async fn get_unknown_is_none(factory: impl StoreFactory) {
    let store = factory.make(Harness::default()).await;
    ok(store.create(plain("known")).await, "create");
    assert!(ok(store.get(&sid("unknown")).await, "get").is_none());
    assert!(ok(store.get(&sid("know")).await, "get prefix").is_none());
    assert!(ok(store.get(&sid("known2")).await, "get extension").is_none());
    assert!(ok(store.get(&sid("known")).await, "get known").is_some());
}

/// `get_many` returns the found sessions in the order asked, and the missing ids in order.
pub async fn get_many_reports_found_in_order_and_missing(factory: impl StoreFactory) {
    let store = factory.make(Harness::default()).await;
    let a = ok(store.create(rich("gm-a")).await, "create a");
    let b = ok(store.create(plain("gm-b")).await, "create b");
    let c = ok(store.create(plain("gm-c")).await, "create c");
    ok(store.delete(&b.id).await, "delete b");

    let ask = [
        sid("gm-c"),
        sid("gm-x"),
        sid("gm-a"),
        sid("gm-b"),
        sid("gm-y"),
    ];
    let many = ok(store.get_many(&ask).await, "get_many");
    assert_eq!(
        many.found,
        vec![c.clone(), a.clone()],
        "found, in order asked"
    );
    assert_eq!(
        many.missing,
        vec![sid("gm-x"), sid("gm-b"), sid("gm-y")],
        "missing, in order asked"
    );
    assert!(many.errors.is_empty(), "errors: {:?}", many.errors);

    let none = ok(store.get_many(&[]).await, "get_many of nothing");
    assert!(none.found.is_empty() && none.missing.is_empty() && none.errors.is_empty());

    let all_missing = ok(store.get_many(&[sid("nope")]).await, "get_many missing");
    assert!(all_missing.found.is_empty());
    assert_eq!(all_missing.missing, vec![sid("nope")]);
}

// ----------------------------------------------------------------------------------------
// update / touch
// ----------------------------------------------------------------------------------------

/// `update` with the current revision replaces every caller-owned field, bumps the revision,
/// refreshes activity and expiry, and ignores whatever the caller put in bookkeeping fields.
pub async fn update_bumps_revision_and_ignores_bookkeeping(factory: impl StoreFactory) {
    let h = Harness::default();
    let ttl = h.limits.session_ttl;
    let store = factory.make(h.clone()).await;
    let created = ok(store.create(rich("upd")).await, "create");
    let id = created.id.clone();
    ok(
        store.append_frames(&id, vec![frame("a"), frame("b")]).await,
        "append",
    );
    h.clock.advance(Duration::from_secs(5));
    let now = h.clock.now();
    let current = must_get(&*store, &id, "get").await;
    assert_eq!(current.revision, 1, "append does not bump the revision");

    let mut change = current.clone();
    change.transport = Transport::Http;
    change.status = SessionStatus::Completed;
    change.state = SessionState::Closed;
    change.client_info = Some(serde_json::json!({"name": "other"}));
    change.server_info = None;
    change.protocol_version = Some("2025-06-18".into());
    change.upstream_session_id = None;
    change.initialize_params = Some(serde_json::json!([1, 2, 3]));
    change.principal = Some("bob".into());
    change.tags = ["x".to_owned()].into_iter().collect();
    change.metadata = [("k".to_owned(), "v2".to_owned())].into_iter().collect();
    // Attempts to change bookkeeping: all ignored.
    change.created_at = Timestamp(1);
    change.last_activity = Timestamp(2);
    change.expires_at = Timestamp(3);
    change.frame_count = 99;
    change.last_seq = 99;
    change.first_seq = 50;

    let updated = ok(store.update(&change).await, "update");
    let mut expected = change.clone();
    expected.created_at = created.created_at;
    expected.last_activity = now;
    expected.expires_at = now.saturating_add(ttl);
    expected.frame_count = 2;
    expected.last_seq = 2;
    expected.first_seq = 1;
    expected.revision = 2;
    assert_eq!(updated, expected, "update result");
    assert_eq!(must_get(&*store, &id, "get after update").await, updated);

    // Frames were not touched by the tampered seq fields.
    assert_eq!(ok(store.count_frames(&id).await, "count_frames"), 2);
    assert_eq!(ok(store.append_frame(&id, frame("c")).await, "append"), 3);

    let mut again = must_get(&*store, &id, "get").await;
    again.status = SessionStatus::Failed;
    let again = ok(store.update(&again).await, "second update");
    assert_eq!(again.revision, 3, "second update bumps to 3");
    assert_eq!(again.status, SessionStatus::Failed);
    assert_eq!(again.last_seq, 3);
}

/// `update` with a revision other than the stored one is `Conflict` (naming both revisions)
/// and writes nothing.
pub async fn update_with_stale_revision_conflicts(factory: impl StoreFactory) {
    let h = Harness::default();
    let store = factory.make(h.clone()).await;
    let id = ok(store.create(plain("conf")).await, "create").id;
    let mut a = must_get(&*store, &id, "get a").await;
    let mut b = a.clone();

    a.status = SessionStatus::Completed;
    let a = ok(store.update(&a).await, "first writer");
    assert_eq!(a.revision, 2);

    h.clock.advance(Duration::from_secs(1));
    b.status = SessionStatus::Failed;
    b.principal = Some("late".into());
    assert_err!(
        store.update(&b).await,
        Error::Conflict {
            expected: 1,
            actual: 2,
            ..
        },
        "stale writer"
    );
    for rev in [0, 3, 9] {
        b.revision = rev;
        assert_err!(
            store.update(&b).await,
            Error::Conflict { .. },
            "update with revision {rev}"
        );
    }
    assert_eq!(
        must_get(&*store, &id, "get").await,
        a,
        "failed updates changed nothing (not even expiry)"
    );
}

/// After `delete`, every per-session operation is `NotFound` and nothing is resurrected.
pub async fn operations_after_delete_are_not_found(factory: impl StoreFactory) {
    let store = factory.make(Harness::default()).await;
    let id = ok(store.create(rich("gone")).await, "create").id;
    ok(store.append_frame(&id, frame("x")).await, "append");
    ok(
        store.add_pending(&id, pending(7, "tools/call")).await,
        "add_pending",
    );
    ok(store.create(plain("stays")).await, "create other");
    assert!(ok(store.delete(&id).await, "delete"));

    assert_gone(&*store, &id, "after delete").await;
    assert_eq!(
        ok(store.count(&SessionFilter::default()).await, "count"),
        1,
        "only the other session counts"
    );
    assert!(!ok(store.delete(&id).await, "second delete"));
}

/// Every per-session operation on an id that never existed is `NotFound` and creates nothing.
pub async fn operations_on_unknown_id_are_not_found(factory: impl StoreFactory) {
    let store = factory.make(Harness::default()).await;
    assert_gone(&*store, &sid("never-was"), "unknown id").await;
    assert_eq!(ok(store.count(&SessionFilter::default()).await, "count"), 0);
    assert!(!ok(store.delete(&sid("never-was")).await, "delete unknown"));
}

/// `touch` moves `last_activity` to now and `expires_at` to now + ttl, and returns it; the
/// revision does not change.
pub async fn touch_slides_expiry(factory: impl StoreFactory) {
    let h = Harness::default();
    let ttl = h.limits.session_ttl;
    let store = factory.make(h.clone()).await;
    let created = ok(store.create(plain("touchy")).await, "create");

    h.clock.advance(Duration::from_secs(10));
    let now = h.clock.now();
    let expires = ok(store.touch(&created.id).await, "touch");
    assert_eq!(expires, now.saturating_add(ttl), "touch returns now + ttl");
    let got = must_get(&*store, &created.id, "get").await;
    assert_eq!(got.last_activity, now, "last_activity");
    assert_eq!(got.expires_at, expires, "expires_at");
    assert_eq!(got.created_at, created.created_at, "created_at unchanged");
    assert_eq!(got.revision, 1, "touch does not bump the revision");

    h.clock.advance(Duration::from_millis(1_234));
    let later = ok(store.touch(&created.id).await, "second touch");
    assert_eq!(later, h.clock.now().saturating_add(ttl));
    assert!(later > expires, "expiry moved forward");
}

// ----------------------------------------------------------------------------------------
// expiry
// ----------------------------------------------------------------------------------------

/// Once the clock reaches `expires_at`, the session is gone for every operation (get, list,
/// count, writes), while a session touched in time survives.
pub async fn expired_session_behaves_as_deleted(factory: impl StoreFactory) {
    let h = limits(|l| l.session_ttl = Duration::from_secs(3_600));
    let ttl = h.limits.session_ttl;
    let store = factory.make(h.clone()).await;
    let a = ok(store.create(rich("exp-a")).await, "create a");
    ok(store.append_frame(&a.id, frame("x")).await, "append a");
    let b = ok(store.create(rich("exp-b")).await, "create b");

    h.clock.advance(ttl - Duration::from_millis(1));
    assert!(
        ok(store.get(&b.id).await, "get b").is_some(),
        "1 ms before expiry the session is live"
    );
    ok(store.touch(&b.id).await, "touch b");
    let a = must_get(&*store, &a.id, "get a just before expiry").await;

    h.clock.set(a.expires_at);
    assert!(
        ok(store.get(&a.id).await, "get a").is_none(),
        "a session is expired at expires_at"
    );
    let b = must_get(&*store, &b.id, "touched session survives").await;
    let many = ok(
        store.get_many(&[a.id.clone(), b.id.clone()]).await,
        "get_many",
    );
    assert_eq!(many.found, vec![b.clone()]);
    assert_eq!(many.missing, vec![a.id.clone()]);
    assert_eq!(ok(store.count(&SessionFilter::default()).await, "count"), 1);
    let alice = SessionFilter::default().with_principal("alice");
    assert_eq!(ok(store.count(&alice).await, "count alice"), 1);
    assert_eq!(
        ids_of(&list_all(&*store, &SessionFilter::default(), 10).await),
        set(&["exp-b"])
    );
    assert_gone(&*store, &a.id, "expired").await;
    assert!(
        !ok(store.delete(&a.id).await, "delete expired"),
        "deleting an expired session reports it did not exist"
    );
}

/// `sweep_expired` removes exactly the expired sessions and reports how many.
pub async fn sweep_removes_only_expired_sessions(factory: impl StoreFactory) {
    let h = limits(|l| l.session_ttl = Duration::from_secs(600));
    let store = factory.make(h.clone()).await;
    for id in ["sw-a", "sw-b", "sw-c"] {
        let s = ok(store.create(plain(id)).await, "create");
        ok(store.append_frame(&s.id, frame("x")).await, "append");
        ok(
            store.add_pending(&s.id, pending(1, "ping")).await,
            "add_pending",
        );
    }
    h.clock.advance(Duration::from_secs(300));
    ok(store.touch(&sid("sw-c")).await, "touch c");
    h.clock.advance(Duration::from_secs(300));

    let report = ok(store.sweep_expired().await, "sweep");
    assert_eq!(report.removed, 2, "two sessions had expired: {report:?}");
    assert_eq!(ok(store.count(&SessionFilter::default()).await, "count"), 1);
    assert!(ok(store.get(&sid("sw-a")).await, "get a").is_none());
    assert!(ok(store.get(&sid("sw-b")).await, "get b").is_none());
    let c = must_get(&*store, &sid("sw-c"), "get c").await;
    assert_eq!(c.frame_count, 1, "the survivor keeps its frames");
    assert_eq!(ok(store.list_pending(&c.id).await, "pending c").len(), 1);

    let again = ok(store.sweep_expired().await, "second sweep");
    assert_eq!(again.removed, 0, "nothing left to sweep: {again:?}");
}

/// Creating an id whose previous session expired succeeds and starts from scratch: no frames,
/// no pending requests, seqs from 1.
pub async fn create_over_expired_id_starts_fresh(factory: impl StoreFactory) {
    let h = Harness::default();
    let ttl = h.limits.session_ttl;
    let store = factory.make(h.clone()).await;
    let old = ok(store.create(rich("phoenix")).await, "create");
    ok(
        store
            .append_frames(&old.id, vec![frame("1"), frame("2"), frame("3")])
            .await,
        "append",
    );
    ok(
        store.add_pending(&old.id, pending(1, "ping")).await,
        "add_pending",
    );

    h.clock.advance(ttl + Duration::from_secs(1));
    let now = h.clock.now();
    let input = plain("phoenix");
    let fresh = ok(store.create(input.clone()).await, "create over expired id");
    assert_eq!(fresh, as_created(input, now, ttl), "a brand-new session");
    assert_eq!(ok(store.count_frames(&fresh.id).await, "count_frames"), 0);
    assert!(ok(store.list_pending(&fresh.id).await, "list_pending").is_empty());
    let page = ok(
        store.frames(&fresh.id, &FrameQuery::after(0, 10)).await,
        "frames",
    );
    assert!(page.frames.is_empty() && !page.trimmed && !page.has_more);
    assert_eq!(page.last_seq, 0);
    assert_eq!(
        ok(store.append_frame(&fresh.id, frame("n")).await, "append"),
        1
    );
}

/// `delete` returns true, then false; it removes frames and pending requests with the session
/// so a new session with the same id starts empty.
pub async fn delete_reports_existence_and_cascades(factory: impl StoreFactory) {
    let store = factory.make(Harness::default()).await;
    let id = ok(store.create(rich("del")).await, "create").id;
    ok(
        store
            .append_frames(&id, vec![frame("1"), frame("2"), frame("3")])
            .await,
        "append",
    );
    ok(
        store.add_pending(&id, pending(1, "a")).await,
        "add_pending 1",
    );
    ok(
        store.add_pending(&id, pending("two", "b")).await,
        "add_pending 2",
    );

    assert!(
        ok(store.delete(&id).await, "delete"),
        "first delete: existed"
    );
    assert!(
        !ok(store.delete(&id).await, "delete again"),
        "second delete: gone"
    );
    assert!(ok(store.get(&id).await, "get").is_none());

    ok(store.create(plain("del")).await, "recreate");
    assert_eq!(ok(store.count_frames(&id).await, "count_frames"), 0);
    assert!(ok(store.list_pending(&id).await, "list_pending").is_empty());
    assert!(
        ok(
            store.take_pending(&id, &RequestId::from(1)).await,
            "take old"
        )
        .is_none(),
        "pending requests of the deleted session are gone"
    );
    let page = ok(store.frames(&id, &FrameQuery::after(0, 10)).await, "frames");
    assert!(
        page.frames.is_empty(),
        "old frames are gone: {:?}",
        page.frames
    );
    assert_eq!(ok(store.append_frame(&id, frame("new")).await, "append"), 1);
}

// ----------------------------------------------------------------------------------------
// list / count
// ----------------------------------------------------------------------------------------

/// `list` and `count` honour status, transport and principal filters, alone and combined.
pub async fn list_and_count_apply_filters(factory: impl StoreFactory) {
    let store = factory.make(Harness::default()).await;
    let specs: [(&str, Transport, SessionStatus, Option<&str>); 6] = [
        (
            "f-1",
            Transport::Stdio,
            SessionStatus::Active,
            Some("alice"),
        ),
        (
            "f-2",
            Transport::Http,
            SessionStatus::Completed,
            Some("alice"),
        ),
        ("f-3", Transport::Stdio, SessionStatus::Failed, Some("bob")),
        (
            "f-4",
            Transport::StreamableHttp,
            SessionStatus::Active,
            None,
        ),
        ("f-5", Transport::Stdio, SessionStatus::Active, Some("bob")),
        ("f-6", Transport::Sse, SessionStatus::Timeout, Some("alice")),
    ];
    let mut stored = BTreeMap::new();
    for (id, transport, status, principal) in specs {
        let mut s = Session::new(sid(id), transport);
        s.status = status;
        s.principal = principal.map(str::to_owned);
        let s = ok(store.create(s).await, "create");
        stored.insert(id.to_owned(), s);
    }
    let f = SessionFilter::default;
    let cases: Vec<(SessionFilter, BTreeSet<String>)> = vec![
        (f(), set(&["f-1", "f-2", "f-3", "f-4", "f-5", "f-6"])),
        (
            f().with_status(SessionStatus::Active),
            set(&["f-1", "f-4", "f-5"]),
        ),
        (f().with_status(SessionStatus::Timeout), set(&["f-6"])),
        (
            f().with_transport(Transport::Stdio),
            set(&["f-1", "f-3", "f-5"]),
        ),
        (f().with_transport(Transport::StreamableHttp), set(&["f-4"])),
        (f().with_principal("alice"), set(&["f-1", "f-2", "f-6"])),
        (f().with_principal("nobody"), set(&[])),
        (
            f().with_status(SessionStatus::Active)
                .with_transport(Transport::Stdio),
            set(&["f-1", "f-5"]),
        ),
        (
            f().with_status(SessionStatus::Active)
                .with_transport(Transport::Stdio)
                .with_principal("bob"),
            set(&["f-5"]),
        ),
        (
            f().with_status(SessionStatus::Completed)
                .with_transport(Transport::Stdio),
            set(&[]),
        ),
    ];
    for (filter, want) in cases {
        for limit in [1, 2, 100] {
            let listed = list_all(&*store, &filter, limit).await;
            assert_eq!(ids_of(&listed), want, "list {filter:?} limit {limit}");
            for s in &listed {
                assert_eq!(
                    Some(s),
                    stored.get(s.id.as_str()),
                    "listed session is whole"
                );
            }
        }
        let n = ok(store.count(&filter).await, "count");
        assert_eq!(n, want.len() as u64, "count {filter:?}");
    }
}

/// Pages of every size concatenate to all sessions, each exactly once.
pub async fn list_pages_concatenate_to_all_sessions(factory: impl StoreFactory) {
    let store = factory.make(Harness::default()).await;
    let mut want = BTreeSet::new();
    for i in 0..23 {
        let mut s = plain(&format!("page-{i:02}"));
        s.principal = Some(if i % 3 == 0 { "p0" } else { "p1" }.into());
        ok(store.create(s).await, "create");
        want.insert(format!("page-{i:02}"));
    }
    for limit in [1, 2, 5, 7, 22, 23, 24, MAX_PAGE_LIMIT] {
        let listed = list_all(&*store, &SessionFilter::default(), limit).await;
        assert_eq!(listed.len(), 23, "limit {limit}: every session once");
        assert_eq!(ids_of(&listed), want, "limit {limit}");
    }
    let p0 = SessionFilter::default().with_principal("p0");
    let listed = list_all(&*store, &p0, 3).await;
    assert_eq!(listed.len(), 8, "filtered pages: ids 0,3,…,21");
    assert!(listed.iter().all(|s| s.principal.as_deref() == Some("p0")));

    let first = ok(store.list(&ListQuery::first(5)).await, "first page");
    assert_eq!(first.sessions.len(), 5, "a full first page");
    assert!(first.next_cursor.is_some(), "more pages follow");
}

/// A scan running while other sessions are created and deleted returns every session that
/// existed for the whole scan exactly once and never returns a session twice.
pub async fn list_pagination_survives_concurrent_changes(factory: impl StoreFactory) {
    let store = factory.make(Harness::default()).await;
    let mut stable = BTreeSet::new();
    for i in 0..150 {
        let id = format!("c{i:03}-stable");
        ok(store.create(plain(&id)).await, "create stable");
        stable.insert(id);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let churned = Arc::new(AtomicU64::new(0));
    let churn = {
        let (store, stop, churned) = (Arc::clone(&store), Arc::clone(&stop), Arc::clone(&churned));
        tokio::spawn(async move {
            let mut i: u64 = 0;
            while !stop.load(Ordering::SeqCst) {
                // Ids interleave with the stable ones in id order.
                let id = sid(&format!("c{:03}-churn-{i}", i % 150));
                ok(store.create(plain(id.as_str())).await, "churn create");
                if i >= 5 {
                    let old = sid(&format!("c{:03}-churn-{}", (i - 5) % 150, i - 5));
                    assert!(ok(store.delete(&old).await, "churn delete"));
                }
                i += 1;
                churned.store(i, Ordering::SeqCst);
                tokio::task::yield_now().await;
            }
        })
    };
    wait_until("the churn task started", || {
        churned.load(Ordering::SeqCst) >= 10
    })
    .await;
    let before = churned.load(Ordering::SeqCst);
    for scan in 0..5 {
        let mut seen = HashSet::new();
        let mut cursor = None;
        loop {
            let page = ok(
                store
                    .list(&ListQuery::first(7).with_cursor(cursor.take()))
                    .await,
                "list during churn",
            );
            for s in page.sessions {
                let name = s.id.to_string();
                assert!(
                    stable.contains(&name) || name.contains("-churn-"),
                    "unknown session {name}"
                );
                assert!(
                    seen.insert(name.clone()),
                    "scan {scan}: {name} listed twice"
                );
            }
            // Let at least one create and delete land between this page and the next.
            let mark = churned.load(Ordering::SeqCst);
            wait_until("the churn task moved on", || {
                churned.load(Ordering::SeqCst) > mark
            })
            .await;
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        for id in &stable {
            assert!(
                seen.contains(id),
                "scan {scan}: stable session {id} was missed"
            );
        }
    }
    stop.store(true, Ordering::SeqCst);
    ok(
        churn.await.map_err(|e| Error::backend(e.to_string())),
        "churn task",
    );
    assert!(
        churned.load(Ordering::SeqCst) > before,
        "the churn task made progress during the scans"
    );
}

/// A cursor that no page produced is `InvalidInput`.
pub async fn list_rejects_invalid_cursor(factory: impl StoreFactory) {
    let store = factory.make(Harness::default()).await;
    ok(store.create(plain("cur-a")).await, "create");
    for bad in ["not a cursor {}", "", "\u{0}\u{1}", "é:*?"] {
        let q = ListQuery::first(10).with_cursor(Some(bad.to_owned()));
        assert_err!(
            store.list(&q).await,
            Error::InvalidInput { .. },
            "cursor {bad:?}"
        );
    }
}

/// Page limits of 0 and above `MAX_PAGE_LIMIT` are `InvalidInput` for `list` and `frames`;
/// `MAX_PAGE_LIMIT` itself is fine.
pub async fn page_limits_are_validated(factory: impl StoreFactory) {
    let store = factory.make(Harness::default()).await;
    let id = ok(store.create(plain("lim")).await, "create").id;
    ok(store.append_frame(&id, frame("x")).await, "append");
    for bad in [0, MAX_PAGE_LIMIT + 1, usize::MAX] {
        assert_err!(
            store.list(&ListQuery::first(bad)).await,
            Error::InvalidInput { .. },
            "list limit {bad}"
        );
        assert_err!(
            store.frames(&id, &FrameQuery::after(0, bad)).await,
            Error::InvalidInput { .. },
            "frames limit {bad}"
        );
    }
    let page = ok(
        store.list(&ListQuery::first(MAX_PAGE_LIMIT)).await,
        "max list",
    );
    assert_eq!(page.sessions.len(), 1);
    let frames = ok(
        store
            .frames(&id, &FrameQuery::after(0, MAX_PAGE_LIMIT))
            .await,
        "max frames",
    );
    assert_eq!(frames.frames.len(), 1);
}

// ----------------------------------------------------------------------------------------
// frames
// ----------------------------------------------------------------------------------------

/// `append_frame` returns 1, 2, 3…, updates `last_seq`/`frame_count` and slides the expiry.
pub async fn append_frame_returns_increasing_seqs(factory: impl StoreFactory) {
    let h = Harness::default();
    let ttl = h.limits.session_ttl;
    let store = factory.make(h.clone()).await;
    let id = ok(store.create(plain("app")).await, "create").id;
    h.clock.advance(Duration::from_secs(7));
    for want in 1..=3 {
        let got = ok(
            store.append_frame(&id, frame(format!("m{want}"))).await,
            "append_frame",
        );
        assert_eq!(got, want, "seq of append {want}");
    }
    let now = h.clock.now();
    let s = must_get(&*store, &id, "get").await;
    assert_eq!((s.last_seq, s.first_seq, s.frame_count), (3, 1, 3));
    assert_eq!(s.last_activity, now, "append records activity");
    assert_eq!(
        s.expires_at,
        now.saturating_add(ttl),
        "append slides expiry"
    );
    assert_eq!(s.revision, 1, "append does not bump the revision");
    assert_eq!(ok(store.count_frames(&id).await, "count_frames"), 3);
}

/// `append_frames` returns one contiguous run of seqs per batch; an empty batch returns no
/// seqs and uses none.
pub async fn append_frames_returns_contiguous_seqs(factory: impl StoreFactory) {
    let store = factory.make(Harness::default()).await;
    let id = ok(store.create(plain("batch")).await, "create").id;
    assert_eq!(ok(store.append_frame(&id, frame("1")).await, "append"), 1);
    assert_eq!(ok(store.append_frame(&id, frame("2")).await, "append"), 2);
    let batch: Vec<NewFrame> = (3..=7).map(|i| frame(i.to_string())).collect();
    assert_eq!(
        ok(store.append_frames(&id, batch).await, "append_frames"),
        vec![3, 4, 5, 6, 7]
    );
    assert_eq!(
        ok(store.append_frames(&id, Vec::new()).await, "empty batch"),
        Vec::<u64>::new()
    );
    assert_eq!(ok(store.append_frame(&id, frame("8")).await, "append"), 8);
    let frames = all_frames(&*store, &id).await;
    assert_eq!(seqs(&frames), (1..=8).collect::<Vec<_>>());
    for f in &frames {
        assert_eq!(
            f.content,
            Bytes::from(f.seq.to_string()),
            "content of {}",
            f.seq
        );
        assert_eq!(f.session_id, id, "frame {} belongs to its session", f.seq);
    }
}

/// The epoch an append reports is the epoch pages give its frames (0 and no epochs for a
/// backend without them), the same for every append while the server stays the same, and an
/// event id of the newest frame resumes after itself.
pub async fn appends_and_pages_agree_on_epochs(factory: impl StoreFactory) {
    let store = factory.make(Harness::default()).await;
    let id = ok(store.create(plain("epochs")).await, "create").id;
    let first = ok(
        store
            .append_frames_with_epoch(&id, vec![frame("1"), frame("2")])
            .await,
        "append_frames_with_epoch",
    );
    assert_eq!(first.seqs, vec![1, 2]);
    assert_eq!(ok(store.append_frame(&id, frame("3")).await, "append"), 3);
    let second = ok(
        store.append_frames_with_epoch(&id, vec![frame("4")]).await,
        "append_frames_with_epoch",
    );
    assert_eq!(second.seqs, vec![4]);
    assert_eq!(second.epoch, first.epoch, "one server, one epoch");
    // Read twice: a wrapper may answer the second read from memory.
    for read in ["first read", "second read"] {
        let page = ok(store.frames(&id, &FrameQuery::after(0, 10)).await, read);
        assert_eq!(seqs(&page.frames), vec![1, 2, 3, 4], "{read}");
        for f in &page.frames {
            assert_eq!(
                page.epochs.of(f.seq),
                first.epoch,
                "{read}: frame {} belongs to the epoch its append reported ({})",
                f.seq,
                page.epochs
            );
        }
        assert_eq!(page.epochs.current(), first.epoch, "{read}");
        assert_eq!(page.epochs.is_empty(), first.epoch == 0, "{read}");
        assert_eq!(
            page.epochs.resume_after(first.epoch, 4),
            4,
            "{read}: nothing was rolled back"
        );
    }
}

/// 64 tasks × 100 appends to one session get 6,400 distinct, contiguous seqs 1..=6400, each
/// task's seqs increase, and `frames` reads every frame back in seq order with its content.
pub async fn concurrent_appends_are_totally_ordered(factory: impl StoreFactory) {
    const TASKS: u64 = 64;
    const EACH: u64 = 100;
    let store = factory.make(Harness::default()).await;
    let id = ok(store.create(plain("hot")).await, "create").id;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (store, id) = (Arc::clone(&store), id.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for j in 0..EACH {
                let content = format!("task-{t}-frame-{j}");
                let seq = ok(
                    store.append_frame(&id, frame(content.clone())).await,
                    "concurrent append",
                );
                mine.push((seq, content));
            }
            mine
        }));
    }
    let mut by_seq = BTreeMap::new();
    for (t, task) in tasks.into_iter().enumerate() {
        let mine = task
            .await
            .unwrap_or_else(|e| panic!("append task {t} failed: {e}"));
        assert!(
            mine.windows(2).all(|w| w[0].0 < w[1].0),
            "task {t}: its own seqs must increase"
        );
        for (seq, content) in mine {
            assert!(
                by_seq.insert(seq, content).is_none(),
                "seq {seq} handed out twice"
            );
        }
    }
    let total = TASKS * EACH;
    assert_eq!(by_seq.len() as u64, total, "distinct seqs");
    assert_eq!(
        by_seq.keys().copied().collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>(),
        "seqs are exactly 1..={total}"
    );
    let frames = all_frames(&*store, &id).await;
    assert_eq!(frames.len() as u64, total, "frames read back");
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f.seq, i as u64 + 1, "frames come back in seq order");
        assert_eq!(
            f.content,
            Bytes::from(by_seq[&f.seq].clone()),
            "content at seq {}",
            f.seq
        );
    }
    let s = must_get(&*store, &id, "get").await;
    assert_eq!((s.last_seq, s.frame_count), (total, total));
    assert_eq!(ok(store.count_frames(&id).await, "count_frames"), total);
}

/// `frames` pages by `after_seq`/`limit` with correct `has_more`, `next_after` and
/// `last_seq`, and filters by stream.
pub async fn frames_pagination_and_stream_filter(factory: impl StoreFactory) {
    let store = factory.make(Harness::default()).await;
    let id = ok(store.create(plain("pages")).await, "create").id;
    let batch: Vec<NewFrame> = (1..=10)
        .map(|i| frame(format!("f{i}")).with_stream(if i % 2 == 1 { "odd" } else { "even" }))
        .collect();
    ok(store.append_frames(&id, batch).await, "append");

    let q = |after, limit| FrameQuery::after(after, limit);
    let p = ok(store.frames(&id, &q(0, 3)).await, "page 1");
    assert_eq!(seqs(&p.frames), vec![1, 2, 3]);
    assert!(p.has_more && !p.trimmed);
    assert_eq!(p.last_seq, 10);
    assert_eq!(p.next_after(0), 3);

    // Walk the whole session in pages of 3.
    let mut after = 0;
    let mut walked = Vec::new();
    let mut pages = 0;
    loop {
        let p = ok(store.frames(&id, &q(after, 3)).await, "walk");
        pages += 1;
        walked.extend(seqs(&p.frames));
        after = p.next_after(after);
        if !p.has_more {
            break;
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(walked, (1..=10).collect::<Vec<_>>());
    assert_eq!(pages, 4, "10 frames in pages of 3");

    let p = ok(store.frames(&id, &q(0, 10)).await, "exact page");
    assert_eq!(p.frames.len(), 10);
    assert!(!p.has_more, "an exactly full page has no more");
    let p = ok(store.frames(&id, &q(9, 1)).await, "last frame");
    assert_eq!(seqs(&p.frames), vec![10]);
    assert!(!p.has_more);
    for after in [10, 11, 1_000, u64::MAX] {
        let p = ok(store.frames(&id, &q(after, 5)).await, "past the end");
        assert!(p.frames.is_empty(), "after {after}: {:?}", p.frames);
        assert!(!p.has_more && !p.trimmed, "after {after}");
        assert_eq!(p.last_seq, 10);
        assert_eq!(p.next_after(after), after, "an empty page keeps the cursor");
    }

    // Stream filter.
    let p = ok(store.frames(&id, &q(0, 2).in_stream("odd")).await, "odd 1");
    assert_eq!(seqs(&p.frames), vec![1, 3]);
    assert!(p.has_more);
    let p = ok(store.frames(&id, &q(3, 2).in_stream("odd")).await, "odd 2");
    assert_eq!(seqs(&p.frames), vec![5, 7]);
    assert!(p.has_more);
    let p = ok(store.frames(&id, &q(7, 2).in_stream("odd")).await, "odd 3");
    assert_eq!(seqs(&p.frames), vec![9]);
    assert!(!p.has_more, "no odd frame after 9");
    let p = ok(store.frames(&id, &q(8, 1).in_stream("even")).await, "even");
    assert_eq!(seqs(&p.frames), vec![10]);
    assert!(!p.has_more);
    let p = ok(
        store.frames(&id, &q(0, 5).in_stream("none")).await,
        "no stream",
    );
    assert!(p.frames.is_empty() && !p.has_more);
    let evens = ok(
        store.frames(&id, &q(0, 100).in_stream("even")).await,
        "evens",
    );
    assert!(
        evens
            .frames
            .iter()
            .all(|f| f.stream_id.as_deref() == Some("even") && f.seq % 2 == 0)
    );
    assert_eq!(evens.frames.len(), 5);
}

/// With a small `max_frames_per_session`, the oldest frames are trimmed, seqs keep counting,
/// `first_seq`/`frame_count` follow, and a page asking for trimmed frames says `trimmed`.
pub async fn trimming_keeps_seqs_counting(factory: impl StoreFactory) {
    let h = limits(|l| l.max_frames_per_session = 5);
    let store = factory.make(h).await;
    let id = ok(store.create(plain("trim")).await, "create").id;
    for i in 1..=8 {
        assert_eq!(
            ok(
                store.append_frame(&id, frame(format!("{i}"))).await,
                "append"
            ),
            i
        );
    }
    assert_eq!(ok(store.count_frames(&id).await, "count_frames"), 5);
    let s = must_get(&*store, &id, "get").await;
    assert_eq!((s.first_seq, s.last_seq, s.frame_count), (4, 8, 5));

    let p = ok(
        store.frames(&id, &FrameQuery::after(0, 100)).await,
        "from 0",
    );
    assert!(p.trimmed, "frames 1..=3 were trimmed");
    assert_eq!(seqs(&p.frames), vec![4, 5, 6, 7, 8]);
    assert_eq!(p.frames[0].content, Bytes::from("4"));
    assert!(
        ok(
            store.frames(&id, &FrameQuery::after(2, 100)).await,
            "after 2"
        )
        .trimmed
    );
    let p = ok(
        store.frames(&id, &FrameQuery::after(3, 100)).await,
        "after 3",
    );
    assert!(!p.trimmed, "nothing after 3 is missing");
    assert_eq!(seqs(&p.frames), vec![4, 5, 6, 7, 8]);
    let p = ok(store.frames(&id, &FrameQuery::after(5, 2)).await, "after 5");
    assert!(!p.trimmed && p.has_more);
    assert_eq!(seqs(&p.frames), vec![6, 7]);

    // A batch larger than the cap keeps only its newest frames.
    let batch: Vec<NewFrame> = (9..=15).map(|i| frame(format!("{i}"))).collect();
    assert_eq!(
        ok(store.append_frames(&id, batch).await, "big batch"),
        (9..=15).collect::<Vec<_>>()
    );
    let s = must_get(&*store, &id, "get").await;
    assert_eq!((s.first_seq, s.last_seq, s.frame_count), (11, 15, 5));
    let p = ok(
        store.frames(&id, &FrameQuery::after(0, 100)).await,
        "after batch",
    );
    assert_eq!(seqs(&p.frames), vec![11, 12, 13, 14, 15]);
    assert!(p.trimmed);
    assert_eq!(p.last_seq, 15);
    assert_eq!(ok(store.append_frame(&id, frame("16")).await, "append"), 16);
}

/// `delete_frames(Some(n))` removes retained frames up to `n`, `delete_frames(None)` all;
/// both return how many went, and seqs keep counting afterwards.
pub async fn delete_frames_keeps_seqs_counting(factory: impl StoreFactory) {
    let h = Harness::default();
    let store = factory.make(h.clone()).await;
    let id = ok(store.create(plain("delf")).await, "create").id;
    ok(
        store
            .append_frames(&id, (1..=6).map(|i| frame(i.to_string())).collect())
            .await,
        "append",
    );
    let before = must_get(&*store, &id, "get").await;

    assert_eq!(ok(store.delete_frames(&id, Some(3)).await, "through 3"), 3);
    assert_eq!(ok(store.count_frames(&id).await, "count"), 3);
    let s = must_get(&*store, &id, "get").await;
    assert_eq!((s.first_seq, s.last_seq, s.frame_count), (4, 6, 3));
    assert_eq!(
        s.revision, before.revision,
        "delete_frames keeps the revision"
    );
    let p = ok(store.frames(&id, &FrameQuery::after(0, 10)).await, "frames");
    assert_eq!(seqs(&p.frames), vec![4, 5, 6]);
    assert!(
        p.trimmed,
        "deleted frames count as trimmed for a replay from 0"
    );

    assert_eq!(ok(store.delete_frames(&id, Some(2)).await, "through 2"), 0);
    assert_eq!(ok(store.delete_frames(&id, Some(0)).await, "through 0"), 0);
    assert_eq!(ok(store.delete_frames(&id, Some(5)).await, "through 5"), 2);
    let p = ok(store.frames(&id, &FrameQuery::after(0, 10)).await, "frames");
    assert_eq!(seqs(&p.frames), vec![6]);

    assert_eq!(ok(store.append_frame(&id, frame("7")).await, "append"), 7);
    assert_eq!(ok(store.delete_frames(&id, None).await, "all"), 2);
    assert_eq!(ok(store.count_frames(&id).await, "count"), 0);
    let s = must_get(&*store, &id, "get").await;
    assert_eq!((s.first_seq, s.last_seq, s.frame_count), (8, 7, 0));
    let p = ok(store.frames(&id, &FrameQuery::after(0, 10)).await, "empty");
    assert!(p.frames.is_empty() && !p.has_more && p.trimmed);
    assert_eq!(p.last_seq, 7);
    assert!(
        !ok(
            store.frames(&id, &FrameQuery::after(7, 10)).await,
            "after 7"
        )
        .trimmed,
        "nothing after 7 was lost"
    );
    assert_eq!(ok(store.delete_frames(&id, None).await, "all again"), 0);

    assert_eq!(ok(store.append_frame(&id, frame("8")).await, "append"), 8);
    let p = ok(store.frames(&id, &FrameQuery::after(7, 10)).await, "frames");
    assert_eq!(seqs(&p.frames), vec![8]);
    assert_eq!(
        ok(store.delete_frames(&id, Some(100)).await, "through 100"),
        1
    );
    assert_eq!(ok(store.count_frames(&id).await, "count"), 0);
    assert_eq!(ok(store.append_frame(&id, frame("9")).await, "append"), 9);
}

/// Frame content and attributes come back exactly: binary, non-UTF-8, empty, large, with
/// stream, content type, repeated headers, direction and timestamp.
pub async fn frame_content_is_preserved_exactly(factory: impl StoreFactory) {
    let store = factory.make(Harness::default()).await;
    let id = ok(store.create(plain("bytes")).await, "create").id;
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    let large: Vec<u8> = (0..256 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let inputs = vec![
        frame(all_bytes),
        frame(vec![0xff, 0xfe, 0x00, 0xc3, 0x28]),
        frame(Bytes::new()),
        frame(r#"{"jsonrpc":"2.0","method":"héllo ✓","params":{"a":"\n\t\u0000"}}"#),
        frame(large),
        NewFrame::new(Direction::ServerToClient, "event: message\ndata: {}\n\n")
            .with_stream("sse-1")
            .with_content_type("text/event-stream")
            .with_header("mcp-session-id", "abc")
            .with_header("x-dup", "1")
            .with_header("x-dup", "2")
            .with_timestamp(Timestamp(1_234_567)),
        frame("  leading and trailing spaces  ").with_header("", ""),
    ];
    let got_seqs = ok(store.append_frames(&id, inputs.clone()).await, "append");
    assert_eq!(got_seqs, (1..=inputs.len() as u64).collect::<Vec<_>>());
    let expected: Vec<Frame> = inputs
        .into_iter()
        .zip(1..)
        .map(|(f, seq)| f.into_frame(id.clone(), seq))
        .collect();
    let frames = all_frames(&*store, &id).await;
    assert_eq!(frames.len(), expected.len());
    for (got, want) in frames.iter().zip(&expected) {
        assert_eq!(got, want, "frame {} round trip", want.seq);
    }
    let one = ok(store.frames(&id, &FrameQuery::after(1, 1)).await, "one");
    assert_eq!(
        one.frames,
        vec![expected[1].clone()],
        "non-UTF-8 frame alone"
    );
}

// ----------------------------------------------------------------------------------------
// limits
// ----------------------------------------------------------------------------------------

/// A frame over `max_frame_bytes` (content + stream + content type + headers) is
/// `LimitExceeded`; a batch with one such frame writes none of the batch and uses no seq.
pub async fn frame_size_limit_writes_nothing(factory: impl StoreFactory) {
    let h = limits(|l| l.max_frame_bytes = 100);
    let store = factory.make(h.clone()).await;
    let id = ok(store.create(plain("big")).await, "create").id;

    assert_eq!(
        ok(
            store.append_frame(&id, frame(vec![b'a'; 100])).await,
            "exactly 100"
        ),
        1
    );
    assert_err!(
        store.append_frame(&id, frame(vec![b'a'; 101])).await,
        Error::LimitExceeded { .. },
        "101 bytes of content"
    );
    assert_err!(
        store
            .append_frame(&id, frame(vec![b'a'; 95]).with_stream("stream"))
            .await,
        Error::LimitExceeded { .. },
        "95 content + 6 stream id"
    );
    assert_err!(
        store
            .append_frame(&id, frame(vec![b'a'; 91]).with_header("abcde", "fghij"))
            .await,
        Error::LimitExceeded { .. },
        "91 content + 10 header"
    );
    assert_err!(
        store
            .append_frame(&id, frame(vec![b'a'; 91]).with_content_type("text/plain"))
            .await,
        Error::LimitExceeded { .. },
        "91 content + 10 content type"
    );
    assert_eq!(
        ok(
            store
                .append_frame(&id, frame(vec![b'a'; 90]).with_header("abcde", "fghij"))
                .await,
            "90 content + 10 header"
        ),
        2
    );
    assert_err!(
        store
            .append_frames(
                &id,
                vec![frame("ok-1"), frame(vec![b'x'; 101]), frame("ok-2")]
            )
            .await,
        Error::LimitExceeded { .. },
        "batch with one oversized frame"
    );
    assert_eq!(
        ok(store.count_frames(&id).await, "count"),
        2,
        "batch wrote nothing"
    );
    let s = must_get(&*store, &id, "get").await;
    assert_eq!((s.last_seq, s.frame_count), (2, 2));
    assert_eq!(
        ok(store.append_frame(&id, frame("next")).await, "append after"),
        3,
        "no seq was used by the refused batch"
    );

    // restore checks frame sizes too.
    let rid = sid("big-restore");
    let mut rs = plain("big-restore");
    rs.last_seq = 1;
    rs.first_seq = 1;
    rs.frame_count = 1;
    rs.revision = 1;
    rs.expires_at = h.clock.now().saturating_add(Duration::from_secs(3_600));
    let record = SessionRecord::new(
        rs,
        vec![frame(vec![b'x'; 101]).into_frame(rid.clone(), 1)],
        vec![],
    );
    assert_err!(
        store.restore(record).await,
        Error::LimitExceeded { .. },
        "restore with an oversized frame"
    );
    assert!(ok(store.get(&rid).await, "get").is_none());
}

/// `max_sessions`: one more `create` (or `restore`) is `LimitExceeded` and stores nothing;
/// deleted and expired sessions free their place.
pub async fn session_count_limit(factory: impl StoreFactory) {
    let h = limits(|l| {
        l.max_sessions = 3;
        l.session_ttl = Duration::from_secs(3_600);
    });
    let store = factory.make(h.clone()).await;
    for id in ["ms-a", "ms-b", "ms-c"] {
        ok(store.create(plain(id)).await, "create within limit");
    }
    assert_err!(
        store.create(plain("ms-d")).await,
        Error::LimitExceeded { .. },
        "fourth create"
    );
    assert!(ok(store.get(&sid("ms-d")).await, "get d").is_none());
    assert_eq!(ok(store.count(&SessionFilter::default()).await, "count"), 3);

    let mut rs = plain("ms-e");
    rs.revision = 1;
    rs.expires_at = h.clock.now().saturating_add(Duration::from_secs(60));
    assert_err!(
        store.restore(SessionRecord::new(rs, vec![], vec![])).await,
        Error::LimitExceeded { .. },
        "restore over the limit"
    );
    assert!(ok(store.get(&sid("ms-e")).await, "get e").is_none());

    assert!(ok(store.delete(&sid("ms-a")).await, "delete a"));
    ok(store.create(plain("ms-d")).await, "create after delete");
    assert_eq!(ok(store.count(&SessionFilter::default()).await, "count"), 3);

    h.clock.advance(Duration::from_secs(3_601));
    for id in ["ms-x", "ms-y", "ms-z"] {
        ok(
            store.create(plain(id)).await,
            "expired sessions do not count against the limit",
        );
    }
    assert_eq!(ok(store.count(&SessionFilter::default()).await, "count"), 3);
    assert_err!(
        store.create(plain("ms-w")).await,
        Error::LimitExceeded { .. },
        "limit after expiry"
    );
}

fn with_metadata(id: &str, bytes: usize) -> Session {
    let mut s = plain(id);
    // metadata_bytes = key + value lengths
    s.metadata.insert("k".into(), "v".repeat(bytes - 1));
    assert_eq!(s.metadata_bytes(), bytes);
    s
}

/// `max_metadata_bytes` on `create`: one byte over is `LimitExceeded` and stores nothing.
pub async fn metadata_limit_on_create(factory: impl StoreFactory) {
    let h = limits(|l| l.max_metadata_bytes = 64);
    let store = factory.make(h).await;
    let at = ok(
        store.create(with_metadata("md-ok", 64)).await,
        "exactly at limit",
    );
    assert_eq!(at.metadata_bytes(), 64);
    assert_err!(
        store.create(with_metadata("md-big", 65)).await,
        Error::LimitExceeded { .. },
        "one byte over"
    );
    assert!(ok(store.get(&sid("md-big")).await, "get").is_none());
    let mut tagged = plain("md-tags");
    tagged.principal = Some("p".repeat(30));
    tagged.tags.insert("t".repeat(35));
    assert_err!(
        store.create(tagged).await,
        Error::LimitExceeded { .. },
        "principal + tags over the limit"
    );
    assert_eq!(ok(store.count(&SessionFilter::default()).await, "count"), 1);
}

/// `max_metadata_bytes` on `update`: over the limit is `LimitExceeded` and changes nothing.
pub async fn metadata_limit_on_update(factory: impl StoreFactory) {
    let h = limits(|l| l.max_metadata_bytes = 64);
    let store = factory.make(h.clone()).await;
    let created = ok(store.create(with_metadata("mu", 10)).await, "create");
    h.clock.advance(Duration::from_secs(1));
    let mut big = with_metadata("mu", 65);
    big.revision = created.revision;
    assert_err!(
        store.update(&big).await,
        Error::LimitExceeded { .. },
        "update over the limit"
    );
    assert_eq!(
        must_get(&*store, &created.id, "get").await,
        created,
        "refused update changed nothing"
    );
    let mut fits = with_metadata("mu", 64);
    fits.revision = created.revision;
    let updated = ok(store.update(&fits).await, "update at limit");
    assert_eq!(updated.revision, 2);
    assert_eq!(updated.metadata, fits.metadata);
}

/// `max_pending_per_session`: one more is `LimitExceeded` and not stored; taking one frees a
/// place.
pub async fn pending_limit(factory: impl StoreFactory) {
    let h = limits(|l| l.max_pending_per_session = 2);
    let store = factory.make(h).await;
    let id = ok(store.create(plain("pl")).await, "create").id;
    ok(store.add_pending(&id, pending(1, "a")).await, "first");
    ok(store.add_pending(&id, pending(2, "b")).await, "second");
    assert_err!(
        store.add_pending(&id, pending(3, "c")).await,
        Error::LimitExceeded { .. },
        "third"
    );
    assert_eq!(
        ok(store.list_pending(&id).await, "list"),
        vec![pending(1, "a"), pending(2, "b")]
    );
    assert!(
        ok(store.take_pending(&id, &RequestId::from(3)).await, "take 3").is_none(),
        "the refused request was not stored"
    );
    assert!(ok(store.take_pending(&id, &RequestId::from(1)).await, "take 1").is_some());
    ok(
        store.add_pending(&id, pending(3, "c")).await,
        "after a take",
    );
    assert_eq!(
        ok(store.list_pending(&id).await, "list"),
        vec![pending(2, "b"), pending(3, "c")]
    );
}

// ----------------------------------------------------------------------------------------
// pending requests
// ----------------------------------------------------------------------------------------

/// `add_pending`/`list_pending` (oldest first)/`take_pending` (once); duplicates are
/// `AlreadyExists`; numeric and string ids are distinct.
pub async fn pending_add_list_take(factory: impl StoreFactory) {
    let store = factory.make(Harness::default()).await;
    let id = ok(store.create(plain("pend")).await, "create").id;
    let p1 = pending(1, "tools/call").with_stream("post-1");
    let p2 = pending("abc", "ping");
    let p3 = pending(3, "resources/read").with_started_at(Timestamp(42));
    for p in [&p1, &p2, &p3] {
        ok(store.add_pending(&id, p.clone()).await, "add");
    }
    assert_eq!(
        ok(store.list_pending(&id).await, "list"),
        vec![p1.clone(), p2.clone(), p3.clone()],
        "oldest first"
    );
    assert_eq!(
        ok(
            store.take_pending(&id, &RequestId::from("abc")).await,
            "take"
        ),
        Some(p2.clone())
    );
    assert_eq!(
        ok(
            store.take_pending(&id, &RequestId::from("abc")).await,
            "take again"
        ),
        None
    );
    assert_eq!(
        ok(
            store.take_pending(&id, &RequestId::from(99)).await,
            "take unknown"
        ),
        None
    );
    assert_eq!(
        ok(store.list_pending(&id).await, "list"),
        vec![p1.clone(), p3.clone()]
    );
    assert_err!(
        store.add_pending(&id, pending(1, "other/method")).await,
        Error::AlreadyExists { .. },
        "duplicate add"
    );
    assert_eq!(
        ok(store.list_pending(&id).await, "list after duplicate"),
        vec![p1.clone(), p3.clone()],
        "the original request is kept"
    );
    ok(store.add_pending(&id, p2.clone()).await, "re-add taken id");
    let p1s = pending("1", "string id");
    ok(
        store.add_pending(&id, p1s.clone()).await,
        "string \"1\" differs from number 1",
    );
    assert_eq!(
        ok(store.list_pending(&id).await, "list"),
        vec![p1.clone(), p3, p2, p1s.clone()]
    );
    assert_eq!(
        ok(store.take_pending(&id, &RequestId::from(1)).await, "take 1"),
        Some(p1)
    );
    assert_eq!(
        ok(
            store.take_pending(&id, &RequestId::from("1")).await,
            "take \"1\""
        ),
        Some(p1s)
    );
    let s = must_get(&*store, &id, "get").await;
    assert_eq!(s.revision, 1, "pending requests do not bump the revision");
}

/// Of 16 tasks taking the same pending request at once, exactly one gets it.
pub async fn concurrent_take_pending_has_one_winner(factory: impl StoreFactory) {
    let store = factory.make(Harness::default()).await;
    let id = ok(store.create(plain("race")).await, "create").id;
    for round in 0..5i64 {
        let p = pending(round, "tools/call");
        ok(store.add_pending(&id, p.clone()).await, "add");
        let barrier = Arc::new(tokio::sync::Barrier::new(16));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (store, id, barrier) = (Arc::clone(&store), id.clone(), Arc::clone(&barrier));
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                ok(
                    store.take_pending(&id, &RequestId::from(round)).await,
                    "concurrent take",
                )
            }));
        }
        let mut winners = Vec::new();
        for task in tasks {
            if let Some(got) = task
                .await
                .unwrap_or_else(|e| panic!("take task failed: {e}"))
            {
                winners.push(got);
            }
        }
        assert_eq!(winners, vec![p], "round {round}: exactly one winner");
        assert!(ok(store.list_pending(&id).await, "list").is_empty());
    }
}

// ----------------------------------------------------------------------------------------
// races
// ----------------------------------------------------------------------------------------

/// Runs `n` copies of `op` at once (released together by a barrier) and returns their
/// results in task order.
async fn race<T, F, Fut>(n: usize, op: F) -> Vec<Result<T>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<T>> + Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let mut tasks = Vec::new();
    for i in 0..n {
        let (barrier, fut) = (Arc::clone(&barrier), op(i));
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            fut.await
        }));
    }
    let mut out = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        out.push(
            t.await
                .unwrap_or_else(|e| panic!("race task {i} failed: {e}")),
        );
    }
    out
}

/// Of 16 concurrent `create`s of one id exactly one succeeds; the others are
/// `AlreadyExists`, and the stored session is the winner's.
pub async fn concurrent_creates_of_one_id_have_one_winner(factory: impl StoreFactory) {
    let store = factory.make(Harness::default()).await;
    let results = race(16, |i| {
        let store = Arc::clone(&store);
        async move {
            let mut s = plain("solo");
            s.principal = Some(format!("p{i}"));
            store.create(s).await
        }
    })
    .await;
    let mut winners = Vec::new();
    for r in results {
        match r {
            Ok(s) => winners.push(s),
            Err(Error::AlreadyExists { .. }) => {}
            Err(e) => panic!("concurrent create: unexpected error {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one create wins: {winners:?}");
    assert_eq!(
        must_get(&*store, &sid("solo"), "get").await,
        winners[0],
        "the stored session is the winner's"
    );
    assert_eq!(ok(store.count(&SessionFilter::default()).await, "count"), 1);
}

/// With `max_sessions` 5, of 24 concurrent `create`s of distinct ids exactly 5 succeed and
/// the rest are `LimitExceeded`.
pub async fn concurrent_creates_respect_session_limit(factory: impl StoreFactory) {
    let store = factory.make(limits(|l| l.max_sessions = 5)).await;
    let results = race(24, |i| {
        let store = Arc::clone(&store);
        async move { store.create(plain(&format!("cap-{i:02}"))).await }
    })
    .await;
    let mut created = BTreeSet::new();
    for r in results {
        match r {
            Ok(s) => {
                created.insert(s.id.to_string());
            }
            Err(Error::LimitExceeded { .. }) => {}
            Err(e) => panic!("concurrent create: unexpected error {e:?}"),
        }
    }
    assert_eq!(created.len(), 5, "exactly max_sessions creates succeed");
    assert_eq!(ok(store.count(&SessionFilter::default()).await, "count"), 5);
    assert_eq!(
        ids_of(&list_all(&*store, &SessionFilter::default(), 100).await),
        created,
        "the stored sessions are the successful ones"
    );
}

/// Creates of a taken id, however many run at once, never make the store look full: with
/// `max_sessions` 2 and one live session, creating (and deleting) another session always
/// succeeds while other tasks keep re-creating the live one.
pub async fn duplicate_creates_do_not_fill_the_store(factory: impl StoreFactory) {
    let store = factory.make(limits(|l| l.max_sessions = 2)).await;
    ok(store.create(plain("resident")).await, "create resident");
    let stop = Arc::new(AtomicBool::new(false));
    let attempts = Arc::new(AtomicU64::new(0));
    let mut spammers = Vec::new();
    for _ in 0..3 {
        let (store, stop, attempts) =
            (Arc::clone(&store), Arc::clone(&stop), Arc::clone(&attempts));
        spammers.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                assert_err!(
                    store.create(plain("resident")).await,
                    Error::AlreadyExists { .. },
                    "duplicate create"
                );
                attempts.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
            }
        }));
    }
    wait_until("the duplicate creates started", || {
        attempts.load(Ordering::SeqCst) > 0
    })
    .await;
    let mut refused = 0;
    for i in 0..2_000 {
        let id = sid(&format!("visitor-{i}"));
        match store
            .create(Session::new(id.clone(), Transport::Http))
            .await
        {
            Ok(_) => assert!(ok(store.delete(&id).await, "delete visitor")),
            Err(Error::LimitExceeded { .. }) => refused += 1,
            Err(e) => panic!("create visitor: unexpected error {e:?}"),
        }
    }
    stop.store(true, Ordering::SeqCst);
    for (i, t) in spammers.into_iter().enumerate() {
        t.await
            .unwrap_or_else(|e| panic!("duplicate-create task {i} failed: {e}"));
    }
    assert_eq!(
        refused, 0,
        "creates refused as over the limit while only one session was live"
    );
    assert_eq!(ok(store.count(&SessionFilter::default()).await, "count"), 1);
}

/// Of 8 concurrent `update`s based on the same revision exactly one succeeds; the others are
/// `Conflict`, and the stored session is the winner's.
pub async fn concurrent_updates_of_one_revision_have_one_winner(factory: impl StoreFactory) {
    let store = factory.make(Harness::default()).await;
    let base = ok(store.create(plain("contended")).await, "create");
    let results = race(8, |i| {
        let (store, mut s) = (Arc::clone(&store), base.clone());
        async move {
            s.principal = Some(format!("writer-{i}"));
            store.update(&s).await
        }
    })
    .await;
    let mut winners = Vec::new();
    for r in results {
        match r {
            Ok(s) => winners.push(s),
            Err(Error::Conflict { .. }) => {}
            Err(e) => panic!("concurrent update: unexpected error {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one update wins: {winners:?}");
    assert_eq!(winners[0].revision, 2);
    assert_eq!(must_get(&*store, &base.id, "get").await, winners[0]);
}

/// With `max_pending_per_session` 3, of 12 concurrent `add_pending`s exactly 3 succeed.
pub async fn concurrent_adds_respect_pending_limit(factory: impl StoreFactory) {
    let store = factory
        .make(limits(|l| l.max_pending_per_session = 3))
        .await;
    let id = ok(store.create(plain("pcap")).await, "create").id;
    let results = race(12, |i| {
        let (store, id) = (Arc::clone(&store), id.clone());
        async move {
            let i = i64::try_from(i).unwrap_or(i64::MAX);
            store.add_pending(&id, pending(i, "m")).await.map(|()| i)
        }
    })
    .await;
    let mut added = BTreeSet::new();
    for r in results {
        match r {
            Ok(i) => {
                added.insert(i);
            }
            Err(Error::LimitExceeded { .. }) => {}
            Err(e) => panic!("concurrent add_pending: unexpected error {e:?}"),
        }
    }
    assert_eq!(added.len(), 3, "exactly the limit is admitted");
    let listed: BTreeSet<i64> = ok(store.list_pending(&id).await, "list")
        .into_iter()
        .map(|p| match p.request_id {
            RequestId::Number(n) => n,
            RequestId::String(s) => panic!("unexpected string id {s}"),
        })
        .collect();
    assert_eq!(listed, added, "the stored requests are the admitted ones");
}

/// A `delete` racing with appenders wins for good: every appender ends with `NotFound`,
/// nothing of the session remains, and a new session with the id starts at seq 1.
pub async fn delete_during_appends_does_not_resurrect(factory: impl StoreFactory) {
    let store = factory.make(Harness::default()).await;
    let id = ok(store.create(plain("doomed")).await, "create").id;
    let appended = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for t in 0..8 {
        let (store, id, appended) = (Arc::clone(&store), id.clone(), Arc::clone(&appended));
        tasks.push(tokio::spawn(async move {
            for j in 0..100_000u32 {
                match store.append_frame(&id, frame(format!("{t}-{j}"))).await {
                    Ok(_) => {
                        appended.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(Error::NotFound { .. }) => return,
                    Err(e) => panic!("append racing a delete: unexpected error {e:?}"),
                }
                tokio::task::yield_now().await;
            }
            panic!("appender {t} never saw the session disappear");
        }));
    }
    wait_until("the appenders started", || {
        appended.load(Ordering::SeqCst) >= 50
    })
    .await;
    assert!(ok(store.delete(&id).await, "delete"), "the session existed");
    for (t, task) in tasks.into_iter().enumerate() {
        task.await
            .unwrap_or_else(|e| panic!("appender {t} failed: {e}"));
    }
    assert!(ok(store.get(&id).await, "get").is_none(), "no resurrection");
    assert_err!(
        store.count_frames(&id).await,
        Error::NotFound { .. },
        "count_frames after delete"
    );
    assert_eq!(ok(store.count(&SessionFilter::default()).await, "count"), 0);
    ok(store.create(plain("doomed")).await, "recreate");
    assert_eq!(
        ok(store.count_frames(&id).await, "count_frames"),
        0,
        "no frame of a racing append survived into the new session"
    );
    assert_eq!(ok(store.append_frame(&id, frame("new")).await, "append"), 1);
}

// ----------------------------------------------------------------------------------------
// restore
// ----------------------------------------------------------------------------------------

fn restorable(h: &Harness, id: &str) -> SessionRecord {
    let sid = sid(id);
    let now = h.clock.now();
    let mut s = rich(id);
    s.status = SessionStatus::Completed;
    s.created_at = Timestamp(now.0 - 3_600_000);
    s.last_activity = Timestamp(now.0 - 1_000);
    s.expires_at = now.saturating_add(Duration::from_secs(3_600));
    s.revision = 7;
    s.last_seq = 12;
    s.first_seq = 10;
    s.frame_count = 3;
    let frames = vec![
        frame("ten").with_stream("a").into_frame(sid.clone(), 10),
        frame(vec![0u8, 159, 146, 150])
            .with_header("h", "v")
            .into_frame(sid.clone(), 11),
        NewFrame::new(Direction::ServerToClient, "twelve")
            .with_timestamp(Timestamp(77))
            .into_frame(sid.clone(), 12),
    ];
    let pend = vec![
        pending(5, "tools/call").with_stream("a"),
        pending("x", "sampling/createMessage"),
    ];
    SessionRecord::new(s, frames, pend)
}

/// `restore` writes a record exactly as given (bookkeeping, seqs, frames, pending), and the
/// session then carries on from there.
pub async fn restore_round_trips_a_record(factory: impl StoreFactory) {
    let h = Harness::default();
    let store = factory.make(h.clone()).await;
    let record = restorable(&h, "restored");
    let id = record.session.id.clone();
    ok(store.restore(record.clone()).await, "restore");

    assert_eq!(
        must_get(&*store, &id, "get").await,
        record.session,
        "the session exactly as given"
    );
    let page = ok(
        store.frames(&id, &FrameQuery::after(0, 100)).await,
        "frames",
    );
    assert_eq!(page.frames, record.frames, "frames exactly as given");
    assert!(page.trimmed, "frames before first_seq 10 are missing");
    assert_eq!(page.last_seq, 12);
    assert_eq!(ok(store.count_frames(&id).await, "count_frames"), 3);
    assert_eq!(
        ok(store.list_pending(&id).await, "list_pending"),
        record.pending,
        "pending exactly as given, in order"
    );
    assert_eq!(ok(store.count(&SessionFilter::default()).await, "count"), 1);

    // It carries on from the restored state.
    assert_eq!(ok(store.append_frame(&id, frame("13")).await, "append"), 13);
    let mut s = must_get(&*store, &id, "get").await;
    s.status = SessionStatus::Active;
    assert_eq!(ok(store.update(&s).await, "update").revision, 8);

    // A record without frames or pending requests.
    let mut bare = plain("bare");
    bare.revision = 3;
    bare.last_seq = 4;
    bare.first_seq = 5;
    bare.created_at = Timestamp(1);
    bare.last_activity = Timestamp(2);
    bare.expires_at = h.clock.now().saturating_add(Duration::from_secs(10));
    let bare_record = SessionRecord::new(bare.clone(), vec![], vec![]);
    ok(store.restore(bare_record).await, "restore bare");
    assert_eq!(must_get(&*store, &bare.id, "get bare").await, bare);
    assert_eq!(
        ok(store.append_frame(&bare.id, frame("5")).await, "append"),
        5
    );
}

/// `restore` over a live id is `AlreadyExists` and leaves the stored session alone; over an
/// expired id it succeeds.
pub async fn restore_over_existing_is_already_exists(factory: impl StoreFactory) {
    let h = Harness::default();
    let store = factory.make(h.clone()).await;
    let existing = ok(store.create(plain("taken")).await, "create");
    ok(
        store.append_frame(&existing.id, frame("mine")).await,
        "append",
    );
    let existing = must_get(&*store, &existing.id, "get").await;

    let record = restorable(&h, "taken");
    assert_err!(
        store.restore(record).await,
        Error::AlreadyExists { .. },
        "restore over a live session"
    );
    assert_eq!(must_get(&*store, &existing.id, "get").await, existing);
    let frames = all_frames(&*store, &existing.id).await;
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].content, Bytes::from("mine"));
    assert!(ok(store.list_pending(&existing.id).await, "pending").is_empty());

    // Once the existing session has expired, the id is free for a restore.
    h.clock
        .advance(h.limits.session_ttl + Duration::from_secs(1));
    let record = restorable(&h, "taken");
    ok(
        store.restore(record.clone()).await,
        "restore over an expired id",
    );
    assert_eq!(must_get(&*store, &existing.id, "get").await, record.session);
    assert_eq!(all_frames(&*store, &existing.id).await, record.frames);
}

/// An inconsistent record (non-contiguous seqs, a frame of another session, `frame_count`
/// mismatch, `first_seq` 0, duplicate pending ids) is `InvalidInput` and writes nothing.
pub async fn restore_rejects_invalid_records(factory: impl StoreFactory) {
    let h = Harness::default();
    let store = factory.make(h.clone()).await;
    let good = restorable(&h, "inv");
    let id = good.session.id.clone();

    let mut gap = good.clone();
    gap.frames.remove(1);
    gap.session.frame_count = 2;
    let mut foreign = good.clone();
    foreign.frames[1] = frame("other").into_frame(sid("someone-else"), 11);
    let mut count = good.clone();
    count.session.frame_count = 5;
    let mut zero = good.clone();
    zero.session.first_seq = 0;
    let mut past_last = good.clone();
    past_last.session.last_seq = 11;
    let mut dup = good.clone();
    dup.pending.push(pending(5, "again"));
    let mut unordered = good.clone();
    unordered.frames.swap(0, 1);

    for (what, record) in [
        ("non-contiguous seqs", gap),
        ("frame of another session", foreign),
        ("frame_count mismatch", count),
        ("first_seq 0", zero),
        ("frames beyond last_seq", past_last),
        ("duplicate pending id", dup),
        ("frames out of order", unordered),
    ] {
        assert_err!(
            store.restore(record).await,
            Error::InvalidInput { .. },
            "{what}"
        );
        assert!(
            ok(store.get(&id).await, "get").is_none(),
            "{what}: nothing may be written"
        );
    }
    assert_eq!(ok(store.count(&SessionFilter::default()).await, "count"), 0);
    ok(store.restore(good).await, "the valid record still restores");
}

// ----------------------------------------------------------------------------------------
// ids, health, object safety, limits
// ----------------------------------------------------------------------------------------

/// Invalid ids are refused at construction (`InvalidInput`), also when deserializing a
/// `Session`; the most awkward valid id (every allowed character, 128 bytes) round-trips
/// through the store.
pub async fn invalid_session_ids_are_rejected(factory: impl StoreFactory) {
    let long = "a".repeat(129);
    for bad in [
        "",
        " ",
        "a b",
        "tab\t",
        "new\nline",
        "é",
        "\u{7f}",
        "a{b",
        "a}b",
        "a:b",
        "a*",
        "a?",
        "[",
        "]",
        "\\",
        long.as_str(),
    ] {
        assert_err!(
            SessionId::new(bad),
            Error::InvalidInput { .. },
            "SessionId::new({bad:?})"
        );
        assert!(bad.parse::<SessionId>().is_err(), "parse {bad:?}");
    }

    let json = serde_json::to_value(plain("good")).unwrap_or_else(|e| panic!("serialize: {e}"));
    let back: Session =
        serde_json::from_value(json.clone()).unwrap_or_else(|e| panic!("deserialize: {e}"));
    assert_eq!(back, plain("good"));
    for bad in ["bad id", "a:b", "", "{x}"] {
        let mut v = json.clone();
        v["id"] = serde_json::Value::String(bad.into());
        assert!(
            serde_json::from_value::<Session>(v).is_err(),
            "a Session with id {bad:?} must not deserialize"
        );
    }

    let mut awkward: String = (0x21u8..=0x7e)
        .map(char::from)
        .filter(|c| !"{}:*?[]\\".contains(*c))
        .collect();
    while awkward.len() < 128 {
        awkward.push('z');
    }
    let id = sid(&awkward);
    let store = factory.make(Harness::default()).await;
    ok(
        store
            .create(Session::new(id.clone(), Transport::Stdio))
            .await,
        "create",
    );
    assert_eq!(must_get(&*store, &id, "get").await.id, id);
    assert_eq!(ok(store.append_frame(&id, frame("x")).await, "append"), 1);
    let listed = list_all(&*store, &SessionFilter::default(), 10).await;
    assert_eq!(ids_of(&listed), set(&[awkward.as_str()]));
    assert!(ok(store.delete(&id).await, "delete"));
}

/// `health` answers `Healthy` with the store's backend name.
pub async fn health_reports_backend(factory: impl StoreFactory) {
    let store = factory.make(Harness::default()).await;
    let health = ok(store.health().await, "health");
    assert_eq!(health.backend, store.backend_name(), "backend name");
    assert!(!health.backend.is_empty());
    assert_eq!(health.status, shoal_core::HealthStatus::Healthy);
}

/// `limits()` reports exactly the harness's limits.
pub async fn limits_are_the_harness_limits(factory: impl StoreFactory) {
    let h = limits(|l| {
        l.max_frame_bytes = 1_234;
        l.max_frames_per_session = 56;
        l.max_sessions = 789;
        l.session_ttl = Duration::from_secs(321);
        l.max_metadata_bytes = 4_321;
        l.max_pending_per_session = 17;
    });
    let store = factory.make(h.clone()).await;
    assert_eq!(store.limits(), &h.limits);
}

async fn generic_roundtrip<S: SessionStore + ?Sized>(store: &S, id: &str) -> Session {
    ok(store.create(plain(id)).await, "generic create")
}

/// The store works as `Arc<dyn SessionStore>`: through the blanket `Arc` impl, nested, in a
/// spawned task, and with the generic helpers.
pub async fn object_safe_behind_arc_dyn(factory: impl StoreFactory) {
    let store: Arc<dyn SessionStore> = factory.make(Harness::default()).await;
    let nested: Arc<dyn SessionStore> = Arc::new(Arc::clone(&store));
    let dynref: &dyn SessionStore = &*store;

    let a = generic_roundtrip(&*nested, "obj-a").await;
    assert_eq!(must_get(dynref, &a.id, "get via &dyn").await, a);
    let b = generic_roundtrip(&store, "obj-b").await;
    assert_eq!(must_get(&*nested, &b.id, "get via nested").await, b);
    assert_eq!(nested.backend_name(), store.backend_name());
    assert_eq!(nested.limits(), store.limits());

    let changed = ok(
        modify(&store, &a.id, 3, |s| s.status = SessionStatus::Completed).await,
        "modify",
    );
    assert_eq!(changed.revision, 2);
    assert_eq!(changed.status, SessionStatus::Completed);

    let task_store = Arc::clone(&store);
    let id = a.id.clone();
    let seq = tokio::spawn(async move { task_store.append_frame(&id, frame("t")).await })
        .await
        .unwrap_or_else(|e| panic!("task failed: {e}"));
    assert_eq!(ok(seq, "append in task"), 1);
    assert_eq!(ok(nested.count_frames(&a.id).await, "count"), 1);
}

// ----------------------------------------------------------------------------------------
// transfer
// ----------------------------------------------------------------------------------------

async fn populate_for_transfer(store: &dyn SessionStore) {
    let a = ok(store.create(rich("tx-a")).await, "create a");
    ok(
        store
            .append_frames(
                &a.id,
                vec![
                    frame("{\"jsonrpc\":\"2.0\"}").with_stream("s1"),
                    frame(vec![0xffu8, 0x00, 0x80]),
                    frame(Bytes::new()).with_header("k", "v"),
                ],
            )
            .await,
        "append a",
    );
    ok(
        store.add_pending(&a.id, pending(1, "tools/call")).await,
        "pending a",
    );
    ok(
        store.add_pending(&a.id, pending("z", "ping")).await,
        "pending a2",
    );
    let mut a2 = must_get(store, &a.id, "get a").await;
    a2.status = SessionStatus::Completed;
    ok(store.update(&a2).await, "update a");

    let b = ok(store.create(plain("tx-b")).await, "create b");
    ok(
        store
            .append_frames(&b.id, (1..=5).map(|i| frame(i.to_string())).collect())
            .await,
        "append b",
    );
    ok(store.delete_frames(&b.id, Some(2)).await, "trim b");

    let c = ok(store.create(plain("tx-c")).await, "create c");
    ok(store.append_frame(&c.id, frame("gone")).await, "append c");
    ok(store.delete_frames(&c.id, None).await, "empty c");

    ok(store.create(plain("tx-d")).await, "create d");
}

async fn export_bytes(store: &dyn SessionStore) -> (Vec<u8>, transfer::ExportReport) {
    let mut out = Vec::new();
    let report = ok(transfer::export(store, &mut out, |_| {}).await, "export");
    assert!(
        report.skipped.is_empty(),
        "export skipped {:?}",
        report.skipped
    );
    (out, report)
}

async fn import_bytes(
    store: &dyn SessionStore,
    input: &[u8],
    options: &ImportOptions,
) -> Result<transfer::ImportReport> {
    let mut reader = input;
    transfer::import(store, &mut reader, options, |_| {}).await
}

/// export → import into a fresh store → export gives byte-identical output, and every session
/// reads back the same from both stores.
pub async fn transfer_round_trip_is_byte_identical(factory: impl StoreFactory) {
    let h = Harness::default();
    let source = factory.make(h.clone()).await;
    populate_for_transfer(&*source).await;
    let (first, report) = export_bytes(&*source).await;
    assert_eq!(report.sessions, 4, "sessions exported");
    assert_eq!(report.frames, 3 + 3, "frames exported");
    let text = String::from_utf8(first.clone()).unwrap_or_else(|e| panic!("utf-8: {e}"));
    assert_eq!(text.lines().count(), 5, "header + 4 sessions:\n{text}");

    let target = factory.make(h.clone()).await;
    let imported = ok(
        import_bytes(&*target, &first, &ImportOptions::default()).await,
        "import",
    );
    assert!(imported.failed.is_empty(), "failed: {:?}", imported.failed);
    assert_eq!((imported.imported, imported.frames), (4, 6));

    let (second, _) = export_bytes(&*target).await;
    assert!(
        first == second,
        "re-export differs:\n--- first\n{}\n--- second\n{}",
        String::from_utf8_lossy(&first),
        String::from_utf8_lossy(&second)
    );
    for id in ["tx-a", "tx-b", "tx-c", "tx-d"] {
        let id = sid(id);
        assert_eq!(
            must_get(&*source, &id, "source").await,
            must_get(&*target, &id, "target").await,
            "session {id}"
        );
        assert_eq!(
            all_frames(&*source, &id).await,
            all_frames(&*target, &id).await,
            "frames of {id}"
        );
        assert_eq!(
            ok(source.list_pending(&id).await, "pending"),
            ok(target.list_pending(&id).await, "pending"),
            "pending of {id}"
        );
    }
    // Importing again fails per line (ids are taken) and changes nothing.
    let again = ok(
        import_bytes(&*target, &first, &ImportOptions::default()).await,
        "import again",
    );
    assert_eq!(again.imported, 0);
    assert_eq!(again.failed.len(), 1, "stops at the first taken id");
    assert_eq!(again.failed[0].line, 2);
    assert!(matches!(again.failed[0].error, Error::AlreadyExists { .. }));
}

/// A bad line is reported with its line number and writes nothing; the import stops there
/// unless `keep_going`.
pub async fn transfer_import_reports_bad_lines(factory: impl StoreFactory) {
    let h = Harness::default();
    let source = factory.make(h.clone()).await;
    populate_for_transfer(&*source).await;
    let (exported, _) = export_bytes(&*source).await;
    let text = String::from_utf8(exported).unwrap_or_else(|e| panic!("utf-8: {e}"));
    let header = text.lines().next().unwrap_or_default();
    let line_of = |id: &str| -> String {
        text.lines()
            .skip(1)
            .find(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .map(|v| v["session"]["id"] == id)
                    .unwrap_or(false)
            })
            .unwrap_or_else(|| panic!("no exported line for {id}:\n{text}"))
            .to_owned()
    };

    // A well-formed line whose record is inconsistent (frame_count off by one).
    let mut broken: serde_json::Value =
        serde_json::from_str(&line_of("tx-a")).unwrap_or_else(|e| panic!("parse: {e}"));
    broken["session"]["id"] = serde_json::Value::String("tx-broken".into());
    let fc = broken["session"]["frame_count"].as_u64().unwrap_or(0);
    broken["session"]["frame_count"] = serde_json::Value::from(fc + 1);
    let broken = broken.to_string();

    // line 1 header, 2 tx-a, 3 garbage, 4 broken record, 5 tx-b
    let input = format!(
        "{header}\n{}\nthis is not json\n{broken}\n{}\n",
        line_of("tx-a"),
        line_of("tx-b")
    );

    let target = factory.make(h.clone()).await;
    let report = ok(
        import_bytes(&*target, input.as_bytes(), &ImportOptions::default()).await,
        "import stopping at the first bad line",
    );
    assert_eq!(report.imported, 1, "only the line before the garbage");
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].line, 3, "garbage is on line 3");
    assert!(matches!(report.failed[0].error, Error::InvalidInput { .. }));
    assert!(ok(target.get(&sid("tx-a")).await, "get a").is_some());
    assert!(
        ok(target.get(&sid("tx-b")).await, "get b").is_none(),
        "stopped"
    );
    assert_eq!(
        ok(target.count(&SessionFilter::default()).await, "count"),
        1
    );

    let target = factory.make(h.clone()).await;
    let mut keep_going = ImportOptions::default();
    keep_going.keep_going = true;
    let report = ok(
        import_bytes(&*target, input.as_bytes(), &keep_going).await,
        "import keep_going",
    );
    assert_eq!(report.imported, 2, "tx-a and tx-b");
    let lines_failed: Vec<u64> = report.failed.iter().map(|e| e.line).collect();
    assert_eq!(lines_failed, vec![3, 4], "garbage and the broken record");
    assert!(matches!(report.failed[1].error, Error::InvalidInput { .. }));
    assert!(
        ok(target.get(&sid("tx-broken")).await, "get broken").is_none(),
        "a refused line writes nothing"
    );
    assert!(ok(target.get(&sid("tx-b")).await, "get b").is_some());
    assert_eq!(
        ok(target.count(&SessionFilter::default()).await, "count"),
        2
    );
}

/// A missing, foreign or future-version header is an error and nothing is imported.
pub async fn transfer_import_rejects_wrong_header(factory: impl StoreFactory) {
    let h = Harness::default();
    let source = factory.make(h.clone()).await;
    populate_for_transfer(&*source).await;
    let (exported, _) = export_bytes(&*source).await;
    let text = String::from_utf8(exported).unwrap_or_else(|e| panic!("utf-8: {e}"));
    let body: String = text.lines().skip(1).map(|l| format!("{l}\n")).collect();

    let target = factory.make(h).await;
    for header in [
        r#"{"format":"other-format","version":1}"#,
        r#"{"format":"shoal-sessions","version":2}"#,
        r#"{"format":"shoal-sessions"}"#,
        "not a header",
        "",
    ] {
        let input = format!("{header}\n{body}");
        assert_err!(
            import_bytes(&*target, input.as_bytes(), &ImportOptions::default()).await,
            Error::InvalidInput { .. },
            "header {header:?}"
        );
    }
    assert_err!(
        import_bytes(&*target, b"", &ImportOptions::default()).await,
        Error::InvalidInput { .. },
        "empty input"
    );
    assert_eq!(
        ok(target.count(&SessionFilter::default()).await, "count"),
        0,
        "nothing imported"
    );
}

// ----------------------------------------------------------------------------------------
// leases
// ----------------------------------------------------------------------------------------

fn acquire<'a>(name: &'a str, owner: &'a str, ttl: Duration) -> shoal_core::LeaseRequest<'a> {
    shoal_core::LeaseRequest::Acquire { name, owner, ttl }
}

fn renew<'a>(name: &'a str, owner: &'a str, ttl: Duration) -> shoal_core::LeaseRequest<'a> {
    shoal_core::LeaseRequest::Renew { name, owner, ttl }
}

fn release<'a>(name: &'a str, owner: &'a str) -> shoal_core::LeaseRequest<'a> {
    shoal_core::LeaseRequest::Release { name, owner }
}

fn read_lease(name: &str) -> shoal_core::LeaseRequest<'_> {
    shoal_core::LeaseRequest::Read { name }
}

fn holder_of(reply: &shoal_core::LeaseReply) -> Option<&str> {
    reply.holder.as_ref().map(|l| l.owner.as_str())
}

/// A lease has one owner: another owner can neither take, renew nor release it while it
/// lives; its owner extends and releases it; after a release anyone takes it and the old
/// owner cannot renew it back. Names are independent, and leases never touch the session
/// (its revision and metadata stay as they were).
pub async fn leases_are_owned(factory: impl StoreFactory) {
    let h = Harness::default();
    let store = factory.make(h.clone()).await;
    let created = ok(store.create(plain("leased")).await, "create");
    let id = created.id.clone();
    let ttl = Duration::from_secs(60);

    let r = ok(store.lease(&id, acquire("g0", "a", ttl)).await, "acquire a");
    assert!(r.granted, "a takes a free lease: {r:?}");
    assert_eq!(holder_of(&r), Some("a"));
    let expires = r.holder.as_ref().map(|l| l.expires_at);
    assert!(
        expires.is_some_and(|e| e > h.clock.now() && e <= h.clock.now().saturating_add(ttl)),
        "expiry within the ttl from now: {r:?}"
    );

    for (what, request) in [
        ("acquire", acquire("g0", "b", ttl)),
        ("renew", renew("g0", "b", ttl)),
        ("release", release("g0", "b")),
    ] {
        let r = ok(store.lease(&id, request).await, what);
        assert!(!r.granted, "b may not {what} a's lease: {r:?}");
        assert_eq!(holder_of(&r), Some("a"), "{what} by b names the holder");
    }
    let r = ok(store.lease(&id, read_lease("g0")).await, "read");
    assert!(r.granted && holder_of(&r) == Some("a"), "read: {r:?}");

    // The holder extends it (acquire again or renew).
    let r = ok(
        store.lease(&id, acquire("g0", "a", ttl)).await,
        "re-acquire",
    );
    assert!(r.granted, "the holder re-acquires: {r:?}");
    let r = ok(store.lease(&id, renew("g0", "a", ttl)).await, "renew a");
    assert!(r.granted && holder_of(&r) == Some("a"), "renew: {r:?}");

    // Names are independent.
    let r = ok(
        store.lease(&id, acquire("g1", "b", ttl)).await,
        "acquire g1",
    );
    assert!(r.granted, "another name is free: {r:?}");

    // Release, then the old owner cannot renew; another owner takes it.
    let r = ok(store.lease(&id, release("g0", "a")).await, "release a");
    assert!(r.granted && r.holder.is_none(), "released: {r:?}");
    let r = ok(store.lease(&id, read_lease("g0")).await, "read released");
    assert!(!r.granted && r.holder.is_none(), "nobody holds it: {r:?}");
    let r = ok(
        store.lease(&id, renew("g0", "a", ttl)).await,
        "renew released",
    );
    assert!(!r.granted, "a released it, renew refused: {r:?}");
    let r = ok(store.lease(&id, acquire("g0", "b", ttl)).await, "acquire b");
    assert!(r.granted && holder_of(&r) == Some("b"), "b takes it: {r:?}");
    let r = ok(
        store.lease(&id, renew("g0", "a", ttl)).await,
        "renew a after b",
    );
    assert!(!r.granted && holder_of(&r) == Some("b"), "a cannot: {r:?}");

    let after = must_get(&*store, &id, "get").await;
    assert_eq!(
        after.revision, created.revision,
        "leases never bump the revision"
    );
    assert_eq!(after.metadata, created.metadata, "nor touch the metadata");
}

/// A lease that ran out is free for anyone and cannot be renewed by its old owner. (Stores
/// may time leases by their own clock, e.g. Redis's `PX`: this case lets real time pass as
/// well as the harness clock, about 150 ms.)
pub async fn leases_run_out(factory: impl StoreFactory) {
    let h = Harness::default();
    let store = factory.make(h.clone()).await;
    let id = ok(store.create(plain("short-lease")).await, "create").id;
    let short = Duration::from_millis(30);
    let r = ok(store.lease(&id, acquire("g0", "a", short)).await, "acquire");
    assert!(r.granted, "{r:?}");
    h.clock.advance(Duration::from_millis(150));
    tokio::time::sleep(Duration::from_millis(150)).await;
    let r = ok(store.lease(&id, read_lease("g0")).await, "read");
    assert!(!r.granted && r.holder.is_none(), "ran out: {r:?}");
    let r = ok(store.lease(&id, renew("g0", "a", short)).await, "renew");
    assert!(!r.granted, "a lease that ran out is not renewed: {r:?}");
    let r = ok(
        store
            .lease(&id, acquire("g0", "b", Duration::from_secs(60)))
            .await,
        "acquire b",
    );
    assert!(r.granted && holder_of(&r) == Some("b"), "b takes it: {r:?}");
}

/// Of 16 owners acquiring one free lease at once exactly one gets it, and every reply
/// names that winner.
pub async fn concurrent_lease_acquires_have_one_winner(factory: impl StoreFactory) {
    let store = factory.make(Harness::default()).await;
    let id = ok(store.create(plain("contended")).await, "create").id;
    let results = race(16, |i| {
        let (store, id) = (Arc::clone(&store), id.clone());
        async move {
            let owner = format!("owner-{i}");
            store
                .lease(&id, acquire("g0", &owner, Duration::from_secs(60)))
                .await
        }
    })
    .await;
    let replies: Vec<_> = results
        .into_iter()
        .enumerate()
        .map(|(i, r)| ok(r, &format!("acquire {i}")))
        .collect();
    let winners: Vec<usize> = (0..replies.len()).filter(|i| replies[*i].granted).collect();
    assert_eq!(winners.len(), 1, "one winner: {replies:?}");
    let winner = format!("owner-{}", winners[0]);
    for r in &replies {
        assert_eq!(holder_of(r), Some(winner.as_str()), "{r:?}");
    }
}

/// Leases of an unknown or deleted session are `NotFound`; a bad name, owner or ttl is
/// `InvalidInput` and takes nothing.
pub async fn leases_need_a_live_session(factory: impl StoreFactory) {
    let store = factory.make(Harness::default()).await;
    let ttl = Duration::from_secs(60);
    let unknown = sid("no-such-session");
    assert_err!(
        store.lease(&unknown, acquire("g0", "a", ttl)).await,
        Error::NotFound { .. },
        "lease of an unknown session"
    );
    let id = ok(store.create(plain("leased-then-deleted")).await, "create").id;
    for (what, request) in [
        ("empty name", acquire("", "a", ttl)),
        ("name with ':'", acquire("a:b", "a", ttl)),
        ("empty owner", acquire("g0", "", ttl)),
        ("owner with a newline", acquire("g0", "a\nb", ttl)),
        ("zero ttl", acquire("g0", "a", Duration::ZERO)),
        (
            "ttl over a day",
            acquire("g0", "a", Duration::from_secs(90_000)),
        ),
    ] {
        assert_err!(
            store.lease(&id, request).await,
            Error::InvalidInput { .. },
            "{what}"
        );
    }
    let r = ok(store.lease(&id, read_lease("g0")).await, "read");
    assert!(!r.granted, "nothing was taken by the refused calls: {r:?}");
    ok(store.lease(&id, acquire("g0", "a", ttl)).await, "acquire");
    assert!(ok(store.delete(&id).await, "delete"));
    assert_err!(
        store.lease(&id, read_lease("g0")).await,
        Error::NotFound { .. },
        "lease of a deleted session"
    );
}

// ----------------------------------------------------------------------------------------
// shared secrets
// ----------------------------------------------------------------------------------------

/// The first caller's candidate becomes the shared secret; every later call, with any
/// candidate, gets it back; names are independent; bad names and sizes are `InvalidInput`.
/// (Run on a fresh store: Redis suites flush their database per case.)
pub async fn shared_secret_first_caller_wins(factory: impl StoreFactory) {
    let store = factory.make(Harness::default()).await;
    let name = format!("eid-{}", SessionId::generate());
    let first = vec![1u8; 32];
    let second = vec![2u8; 32];
    assert_eq!(ok(store.shared_secret(&name, &first).await, "first"), first);
    assert_eq!(
        ok(store.shared_secret(&name, &second).await, "second"),
        first
    );
    let other = format!("{name}.b");
    assert_eq!(
        ok(store.shared_secret(&other, &second).await, "other"),
        second
    );
    for (what, name, candidate) in [
        ("empty name", "", &first[..]),
        ("name with ':'", "a:b", &first[..]),
        ("short secret", "ok", &first[..8]),
    ] {
        assert_err!(
            store.shared_secret(name, candidate).await,
            Error::InvalidInput { .. },
            "{what}"
        );
    }
    // Concurrent first callers agree.
    let raced = format!("{name}.raced");
    let results = race(8, |i| {
        let (store, raced) = (Arc::clone(&store), raced.clone());
        async move { store.shared_secret(&raced, &[i as u8 + 10; 16]).await }
    })
    .await;
    let values: HashSet<Vec<u8>> = results
        .into_iter()
        .map(|r| ok(r, "raced shared_secret"))
        .collect();
    assert_eq!(
        values.len(),
        1,
        "every racer got the same secret: {values:?}"
    );
}

// ----------------------------------------------------------------------------------------
// admission quotas
// ----------------------------------------------------------------------------------------

fn quota_rule(max_live: u32, max_per_window: u32, window: Duration) -> QuotaRule {
    QuotaRule {
        max_live,
        live_ttl: Duration::from_secs(600),
        max_per_window,
        window,
    }
}

fn admit<'a>(subject: &'a str, member: &'a str, rule: QuotaRule) -> QuotaRequest<'a> {
    QuotaRequest::Admit {
        subject,
        member,
        rule,
    }
}

/// `max_live` admissions succeed, the next is refused (bound `Live`, a retry time within the
/// live time); admitting a live member again does not count twice; a release frees a slot and
/// a second release finds nothing; subjects are independent.
pub async fn quotas_bound_live_sessions(factory: impl StoreFactory) {
    let store = factory.make(Harness::default()).await;
    let subject = format!("addr:{}", SessionId::generate());
    let rule = quota_rule(3, 0, Duration::from_secs(60));
    for m in ["a", "b", "c", "a"] {
        let r = ok(store.quota(admit(&subject, m, rule)).await, "admit");
        assert_eq!(r, QuotaReply::Done, "{m}");
    }
    match ok(store.quota(admit(&subject, "d", rule)).await, "admit d") {
        QuotaReply::Refused {
            bound: QuotaBound::Live,
            retry_after,
        } => assert!(
            retry_after > Duration::ZERO && retry_after <= rule.live_ttl,
            "{retry_after:?}"
        ),
        other => panic!("the fourth live session is refused: {other:?}"),
    }
    let other = format!("{subject}-other");
    assert_eq!(
        ok(store.quota(admit(&other, "d", rule)).await, "other subject"),
        QuotaReply::Done
    );
    let release = QuotaRequest::Release {
        subject: &subject,
        member: "b",
    };
    assert_eq!(ok(store.quota(release).await, "release"), QuotaReply::Done);
    assert_eq!(
        ok(store.quota(release).await, "release again"),
        QuotaReply::Absent
    );
    assert_eq!(
        ok(store.quota(admit(&subject, "d", rule)).await, "admit d"),
        QuotaReply::Done
    );
}

/// `max_per_window` admissions within the window succeed and the next is refused (bound
/// `Window`) even after releases; after the window it is admitted; a cancelled admission does
/// not count in the window.
pub async fn quotas_bound_admissions_per_window(factory: impl StoreFactory) {
    let h = Harness::default();
    let store = factory.make(h.clone()).await;
    let subject = format!("principal:{}", SessionId::generate());
    let window = Duration::from_millis(400);
    let rule = quota_rule(0, 2, window);
    let cancelled = ok(store.quota(admit(&subject, "x", rule)).await, "admit x");
    assert_eq!(cancelled, QuotaReply::Done);
    let cancel = QuotaRequest::Cancel {
        subject: &subject,
        member: "x",
    };
    assert_eq!(ok(store.quota(cancel).await, "cancel"), QuotaReply::Done);
    for m in ["a", "b"] {
        assert_eq!(
            ok(store.quota(admit(&subject, m, rule)).await, "admit"),
            QuotaReply::Done,
            "{m}"
        );
        let release = QuotaRequest::Release {
            subject: &subject,
            member: m,
        };
        assert_eq!(ok(store.quota(release).await, "release"), QuotaReply::Done);
    }
    match ok(store.quota(admit(&subject, "c", rule)).await, "admit c") {
        QuotaReply::Refused {
            bound: QuotaBound::Window,
            retry_after,
        } => assert!(
            retry_after > Duration::ZERO && retry_after <= window,
            "{retry_after:?}"
        ),
        other => panic!("the third admission in the window is refused: {other:?}"),
    }
    h.clock.advance(window + Duration::from_millis(100));
    tokio::time::sleep(window + Duration::from_millis(100)).await;
    assert_eq!(
        ok(
            store.quota(admit(&subject, "c", rule)).await,
            "after the window"
        ),
        QuotaReply::Done
    );
}

/// Of 16 admissions at once under `max_live = 5`, exactly 5 are admitted.
pub async fn concurrent_admissions_stop_at_the_bound(factory: impl StoreFactory) {
    let store = factory.make(Harness::default()).await;
    let subject = format!("addr:{}", SessionId::generate());
    let rule = quota_rule(5, 0, Duration::from_secs(60));
    let results = race(16, |i| {
        let (store, subject) = (Arc::clone(&store), subject.clone());
        async move {
            let member = format!("m{i}");
            store.quota(admit(&subject, &member, rule)).await
        }
    })
    .await;
    let admitted = results
        .into_iter()
        .map(|r| ok(r, "admit"))
        .filter(|r| *r == QuotaReply::Done)
        .count();
    assert_eq!(admitted, 5, "exactly max_live admitted");
}

/// Bad subjects, members and rules are `InvalidInput`.
pub async fn quotas_refuse_bad_input(factory: impl StoreFactory) {
    let store = factory.make(Harness::default()).await;
    let rule = quota_rule(1, 1, Duration::from_secs(1));
    let long = "s".repeat(shoal_core::quota::MAX_QUOTA_SUBJECT + 1);
    let bad = [
        ("empty subject", admit("", "a", rule)),
        ("long subject", admit(&long, "a", rule)),
        ("control member", admit("s", "a\u{0}", rule)),
        (
            "zero window",
            admit("s", "a", quota_rule(1, 1, Duration::ZERO)),
        ),
    ];
    for (what, request) in bad {
        assert_err!(
            store.quota(request).await,
            Error::InvalidInput { .. },
            "{what}"
        );
    }
    // A subject with the characters Redis keys treat specially is just another subject.
    let odd = "principal:{a} b%";
    assert_eq!(
        ok(store.quota(admit(odd, "a", rule)).await, "odd subject"),
        QuotaReply::Done
    );
    assert!(matches!(
        ok(
            store.quota(admit(odd, "b", rule)).await,
            "odd subject again"
        ),
        QuotaReply::Refused { .. }
    ));
}

// ----------------------------------------------------------------------------------------
// byte budgets
// ----------------------------------------------------------------------------------------

fn bytes_frame(stream: &str, n: usize) -> NewFrame {
    NewFrame::new(Direction::ServerToClient, Bytes::from(vec![b'x'; n])).with_stream(stream)
}

fn is_over(r: &Error, what: &str, limit: usize) -> bool {
    matches!(r, Error::LimitExceeded { what: w, limit: l } if *w == what && *l == limit as u64)
}

/// Writes that would pass `max_session_bytes` (frames, pending requests, metadata) are
/// refused with `LimitExceeded` and write nothing, a batch as a whole; deleting frames or
/// taking a pending request makes room again; frames trimmed by the retention bound in the
/// same append make room first; a pending request over `max_pending_bytes` is refused.
pub async fn session_byte_budget_refuses_whole_writes(factory: impl StoreFactory) {
    const BUDGET: usize = 65_536;
    let mut limits = Limits::default();
    limits.max_frame_bytes = 16_384;
    limits.max_session_bytes = BUDGET;
    limits.max_page_bytes = BUDGET;
    limits.max_pending_bytes = 8_192;
    let store = factory.make(Harness::new(limits.clone())).await;
    let id = ok(store.create(plain("budget")).await, "create").id;
    // Six frames of 10,000 bytes fit in 64 KiB (with any backend's per-item overhead); the
    // seventh does not.
    for i in 1..=6u64 {
        let seq = ok(
            store.append_frame(&id, bytes_frame("s", 10_000)).await,
            "append under the budget",
        );
        assert_eq!(seq, i);
    }
    let before = ok(
        store.frames(&id, &FrameQuery::after(0, 100)).await,
        "frames",
    );
    let session_before = ok(store.get(&id).await, "get");
    match store.append_frame(&id, bytes_frame("s", 10_000)).await {
        Err(e) if is_over(&e, "session bytes", BUDGET) => {}
        other => panic!("the seventh frame passes the budget: {other:?}"),
    }
    // A batch that would pass it is refused whole, its small frame too.
    let batch = vec![bytes_frame("s", 100), bytes_frame("s", 10_000)];
    match store.append_frames(&id, batch).await {
        Err(e) if is_over(&e, "session bytes", BUDGET) => {}
        other => panic!("the batch passes the budget: {other:?}"),
    }
    let after = ok(
        store.frames(&id, &FrameQuery::after(0, 100)).await,
        "frames",
    );
    assert_eq!(after, before, "nothing of a refused append was written");
    assert_eq!(ok(store.count_frames(&id).await, "count"), 6);
    let session_after = ok(store.get(&id).await, "get");
    assert_eq!(
        session_after
            .as_ref()
            .map(|s| (s.last_seq, s.frame_count, s.revision)),
        session_before
            .as_ref()
            .map(|s| (s.last_seq, s.frame_count, s.revision)),
    );
    // Deleting frames makes room.
    assert_eq!(ok(store.delete_frames(&id, Some(3)).await, "delete"), 3);
    assert_eq!(
        ok(
            store.append_frame(&id, bytes_frame("s", 10_000)).await,
            "after delete"
        ),
        7
    );
    // About 40,000 bytes now: three pending requests of 7,000 fit, the fourth does not.
    let pending = |n: u32| PendingRequest::new(RequestId::Number(i64::from(n)), "m".repeat(7_000));
    for n in 1..=3 {
        ok(
            store.add_pending(&id, pending(n)).await,
            "pending under the budget",
        );
    }
    match store.add_pending(&id, pending(4)).await {
        Err(e) if is_over(&e, "session bytes", BUDGET) => {}
        other => panic!("the fourth pending request passes the budget: {other:?}"),
    }
    assert_eq!(ok(store.list_pending(&id).await, "list").len(), 3);
    assert!(ok(store.take_pending(&id, &RequestId::Number(1)).await, "take").is_some());
    ok(
        store.add_pending(&id, pending(4)).await,
        "room after a take",
    );
    // Metadata counts too: 2,000 more bytes would fit beside 3,000 bytes less metadata.
    let mut s = ok(store.get(&id).await, "get").unwrap_or_else(|| panic!("session is gone"));
    s.metadata.insert("note".into(), "n".repeat(3_000));
    ok(store.update(&s).await, "update within max_metadata_bytes");
    let small = PendingRequest::new(RequestId::Number(5), "m".repeat(2_000));
    match store.add_pending(&id, small).await {
        Err(e) if is_over(&e, "session bytes", BUDGET) => {}
        other => panic!("metadata counts in the budget: {other:?}"),
    }
    assert_eq!(ok(store.list_pending(&id).await, "list").len(), 3);
    // One pending request larger than max_pending_bytes is refused on its own.
    let fat = PendingRequest::new(RequestId::String("f".into()), "m".repeat(9_000));
    match store.add_pending(&id, fat).await {
        Err(e) if is_over(&e, "pending request bytes", 8_192) => {}
        other => panic!("a pending request over max_pending_bytes: {other:?}"),
    }
    // With a retention bound of 3 frames the trimmed frames make room: appends go on.
    limits.max_frames_per_session = 3;
    let store = factory.make(Harness::new(limits.clone())).await;
    let id = ok(store.create(plain("budget-trim")).await, "create").id;
    for _ in 0..12 {
        ok(
            store.append_frame(&id, bytes_frame("s", 10_000)).await,
            "append with trimming",
        );
    }
    assert_eq!(ok(store.count_frames(&id).await, "count"), 3);
    // Far from the budget, frames trimmed by the retention bound leave the count: 2 MB went
    // through a 1 MiB session that keeps 3 frames, and 700 KB of pending requests still fit.
    limits.max_session_bytes = 1024 * 1024;
    limits.max_metadata_bytes = 1024;
    let store = factory.make(Harness::new(limits)).await;
    let id = ok(store.create(plain("budget-far")).await, "create").id;
    for _ in 0..200 {
        ok(
            store.append_frame(&id, bytes_frame("s", 10_000)).await,
            "append through retention",
        );
    }
    for n in 0..100 {
        ok(
            store
                .add_pending(
                    &id,
                    PendingRequest::new(RequestId::Number(n), "m".repeat(7_000)),
                )
                .await,
            "pending after retention",
        );
    }
}

/// Asserts every page of `stream` (or of all frames) holds at most `max_bytes` of frames
/// (counted by [`Frame::size`]) and that the pages together hold `expect` frames in order.
async fn read_in_pages(
    store: &Arc<dyn SessionStore>,
    id: &SessionId,
    stream: Option<&str>,
    max_bytes: usize,
    expect: usize,
) -> usize {
    let mut after = 0;
    let mut seen = 0;
    let mut pages = 0;
    loop {
        let mut q = FrameQuery::after(after, MAX_PAGE_LIMIT);
        if let Some(s) = stream {
            q = q.in_stream(s);
        }
        let page = ok(store.frames(id, &q).await, "frames page");
        pages += 1;
        let bytes: usize = page.frames.iter().map(Frame::size).sum();
        assert!(
            bytes <= max_bytes,
            "page {pages} holds {bytes} bytes, over its bound {max_bytes}"
        );
        for f in &page.frames {
            assert!(f.seq > after, "in order");
            after = f.seq;
        }
        seen += page.frames.len();
        if !page.has_more {
            break;
        }
        assert!(
            !page.frames.is_empty(),
            "a page with more after it is not empty"
        );
    }
    assert_eq!(seen, expect, "every frame is on some page");
    pages
}

/// A `frames` page holds at most `max_page_bytes` of frames (at least one frame), with or
/// without a stream filter, and paging through with `has_more` still yields every frame.
pub async fn frame_pages_stay_within_their_byte_bound(factory: impl StoreFactory) {
    const PAGE: usize = 35_000;
    let mut limits = Limits::default();
    limits.max_frame_bytes = 16_384;
    limits.max_page_bytes = PAGE;
    let store = factory.make(Harness::new(limits)).await;
    let id = ok(store.create(plain("paged")).await, "create").id;
    let frames: Vec<NewFrame> = (0..20)
        .map(|i| bytes_frame(if i % 2 == 0 { "a" } else { "b" }, 10_000))
        .collect();
    ok(store.append_frames(&id, frames).await, "append");
    let first = ok(
        store.frames(&id, &FrameQuery::after(0, 100)).await,
        "first page",
    );
    assert_eq!(
        first.frames.len(),
        3,
        "three 10,000-byte frames fit in 35,000"
    );
    assert!(first.has_more);
    assert!(read_in_pages(&store, &id, None, PAGE, 20).await >= 7);
    assert!(read_in_pages(&store, &id, Some("a"), PAGE, 10).await >= 4);
}

/// 1,000 frames of 1 MiB: every page stays within `max_page_bytes` (8 MiB), and the pages
/// hold all of them. Not part of [`conformance_suite!`] (a gigabyte per run): backends call
/// it from one test each.
pub async fn big_frame_pages_stay_within_their_byte_bound(factory: impl StoreFactory) {
    const MIB: usize = 1024 * 1024;
    let mut limits = Limits::default();
    limits.max_frame_bytes = MIB + 1024;
    limits.max_page_bytes = 8 * MIB;
    limits.max_session_bytes = 1100 * MIB;
    limits.max_frames_per_session = 1000;
    let store = factory.make(Harness::new(limits)).await;
    let id = ok(store.create(plain("big-pages")).await, "create").id;
    let content = Bytes::from(vec![b'y'; MIB]);
    for _ in 0..100 {
        let batch: Vec<NewFrame> = (0..10)
            .map(|_| NewFrame::new(Direction::ServerToClient, content.clone()).with_stream("g0"))
            .collect();
        ok(store.append_frames(&id, batch).await, "append 10 MiB");
    }
    assert_eq!(ok(store.count_frames(&id).await, "count"), 1000);
    let pages = read_in_pages(&store, &id, None, 8 * MIB, 1000).await;
    assert!(
        pages >= 125,
        "1,000 MiB in pages of at most 8 MiB: {pages} pages"
    );
    assert!(ok(store.delete(&id).await, "delete"));
}
