//! Criterion benchmarks of [`MemoryStore`]: the cost of one call of each operation, on one
//! Tokio current-thread runtime, against a store of 10,000 sessions.
//!
//! `cargo bench -p shoal-core --bench memory` (about half a minute). `shoal bench` measures the
//! same operations under a concurrent mixed workload, side by side with the original design.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_main};
use serde_json::json;
use shoal_core::{
    Direction, FrameQuery, Limits, ListQuery, MemoryStore, NewFrame, Session, SessionId,
    SessionStore, Transport,
};
use tokio::runtime::Runtime;

/// Sessions in the store.
const SESSIONS: usize = 10_000;
/// Bytes of content per frame.
const FRAME_BYTES: usize = 256;
/// Page size of `frames` and `list`.
const PAGE: usize = 100;

/// A current-thread runtime, as a single caller sees the store.
fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building a Tokio runtime")
}

/// The id of session `i` (zero-padded, so id order is index order).
fn id(i: usize) -> SessionId {
    SessionId::new(format!("bench-{i:06}")).expect("a valid session id")
}

/// A session shaped like one a proxy stores after `initialize`.
fn session(id: SessionId) -> Session {
    let mut s = Session::new(id, Transport::StreamableHttp);
    s.protocol_version = Some("2025-11-25".to_owned());
    s.client_info = Some(json!({"name": "criterion", "version": "1.0.0"}));
    s.upstream_session_id = Some("upstream-bench".to_owned());
    s
}

/// A frame of [`FRAME_BYTES`].
fn frame() -> NewFrame {
    NewFrame::new(Direction::ServerToClient, vec![b'.'; FRAME_BYTES])
}

/// Appends `n` frames to `id` in batches.
async fn fill(store: &MemoryStore, id: &SessionId, n: usize) {
    let mut left = n;
    while left > 0 {
        let k = left.min(1_000);
        store
            .append_frames(id, (0..k).map(|_| frame()).collect())
            .await
            .expect("filling a session");
        left -= k;
    }
}

/// A store with [`SESSIONS`] sessions (no frames) and room for the `create` benchmark.
fn populated(rt: &Runtime) -> MemoryStore {
    let mut limits = Limits::default();
    limits.max_sessions = 1_000_000;
    let store = MemoryStore::builder().limits(limits).build();
    rt.block_on(async {
        for i in 0..SESSIONS {
            store
                .create(session(id(i)))
                .await
                .expect("creating a session");
        }
    });
    store
}

fn bench_memory(c: &mut Criterion) {
    let rt = runtime();
    let store = populated(&rt);
    let ids: Vec<SessionId> = (0..SESSIONS).map(id).collect();
    let mut g = c.benchmark_group("memory");

    g.bench_function("get", |b| {
        let mut i = 0;
        b.to_async(&rt).iter(|| {
            i = (i + 7_919) % SESSIONS;
            let (store, id) = (&store, &ids[i]);
            async move { store.get(id).await.expect("get") }
        });
    });

    g.bench_function("touch", |b| {
        let mut i = 0;
        b.to_async(&rt).iter(|| {
            i = (i + 7_919) % SESSIONS;
            let (store, id) = (&store, &ids[i]);
            async move { store.touch(id).await.expect("touch") }
        });
    });

    // Appends to a session of 10 frames and to one of 10,000 (the default retention cap, so
    // there every append also trims the oldest frame, as for any long-lived session). Sessions
    // below the cap are trimmed back to their size every 10 appends, outside the timing; 9,990
    // is such a session of (nearly) the same size, to tell the cost of size from the cost of
    // trimming.
    let cap = store.limits().max_frames_per_session;
    let mut sizes = vec![10.min(cap), 9_990.min(cap), 10_000.min(cap)];
    sizes.dedup();
    for size in sizes {
        let sid = SessionId::new(format!("append-{size}")).expect("a valid session id");
        rt.block_on(async {
            store.create(session(sid.clone())).await.expect("create");
            fill(&store, &sid, size).await;
        });
        g.bench_with_input(BenchmarkId::new("append_frame", size), &size, |b, &size| {
            b.to_async(&rt).iter_custom(|iters| {
                let (store, sid) = (&store, &sid);
                async move {
                    let mut busy = Duration::ZERO;
                    for k in 0..iters {
                        let f = frame();
                        let t = Instant::now();
                        let seq = store.append_frame(sid, f).await.expect("append");
                        busy += t.elapsed();
                        if (k + 1) % 10 == 0 && seq > size as u64 && size < cap {
                            store
                                .delete_frames(sid, Some(seq - size as u64))
                                .await
                                .expect("trim");
                        }
                    }
                    busy
                }
            });
        });
    }

    // A page of 100 frames from a varying position of a session of 10,000 frames.
    let fid = SessionId::new("frames-10000").expect("a valid session id");
    rt.block_on(async {
        store.create(session(fid.clone())).await.expect("create");
        fill(&store, &fid, 10_000).await;
    });
    g.bench_function("frames_page_100", |b| {
        let mut k = 0u64;
        b.to_async(&rt).iter(|| {
            k = (k + 997) % (10_000 - PAGE as u64);
            let (store, fid) = (&store, &fid);
            async move {
                let page = store
                    .frames(fid, &FrameQuery::after(k, PAGE))
                    .await
                    .expect("frames");
                assert_eq!(page.frames.len(), PAGE);
                page
            }
        });
    });

    // A page of 100 sessions, continuing from a varying cursor, over 10,000 sessions.
    g.bench_function("list_page_100", |b| {
        let mut i = 0;
        b.to_async(&rt).iter(|| {
            i = (i + 7_919) % (SESSIONS - 2 * PAGE);
            let (store, cursor) = (&store, ids[i].to_string());
            async move {
                let page = store
                    .list(&ListQuery::first(PAGE).with_cursor(Some(cursor)))
                    .await
                    .expect("list");
                assert_eq!(page.sessions.len(), PAGE);
                page
            }
        });
    });

    // Creates, in chunks; each chunk is deleted again (untimed) so the store keeps its size.
    g.bench_function("create", |b| {
        let mut next = 0usize;
        b.to_async(&rt).iter_custom(|iters| {
            let store = &store;
            let first = next;
            next += usize::try_from(iters).unwrap_or(usize::MAX);
            async move {
                let mut busy = Duration::ZERO;
                let mut made = Vec::with_capacity(1_000);
                for n in 0..iters {
                    let new_id = SessionId::new(format!("create-{}", first as u64 + n))
                        .expect("a valid session id");
                    let s = session(new_id.clone());
                    let t = Instant::now();
                    store.create(s).await.expect("create");
                    busy += t.elapsed();
                    made.push(new_id);
                    if made.len() == 1_000 {
                        for old in made.drain(..) {
                            store.delete(&old).await.expect("delete");
                        }
                    }
                }
                for old in made {
                    store.delete(&old).await.expect("delete");
                }
                busy
            }
        });
    });

    g.finish();
}

/// The benchmarks, with a short configuration (what `criterion_group!` would generate, plus
/// documentation).
pub fn benches() {
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    bench_memory(&mut c);
}

criterion_main!(benches);
