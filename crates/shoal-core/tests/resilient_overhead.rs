//! What the wrapper costs on the hot path with a healthy primary: the same bounded workload
//! (get, touch, append) on `MemoryStore` and on `Resilient<MemoryStore, MemoryStore>`,
//! interleaved in rounds, ratios printed (median of the rounds). Ignored by default; no
//! timed assertion:
//!
//! ```text
//! cargo test --release -p shoal-core --test resilient_overhead -- --ignored --nocapture
//! ```

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use shoal_core::{
    Direction, MemoryStore, NewFrame, ResilienceConfig, Resilient, Session, SessionId,
    SessionStore, Transport,
};

const SESSIONS: usize = 1_000;
const OPS_PER_TASK: usize = 20_000;
const TASKS: usize = 4;
const ROUNDS: usize = 5;

async fn workload(store: Arc<dyn SessionStore>) -> Duration {
    let ids: Arc<Vec<SessionId>> = Arc::new((0..SESSIONS).map(|_| SessionId::generate()).collect());
    for id in ids.iter() {
        store
            .create(Session::new(id.clone(), Transport::StreamableHttp))
            .await
            .unwrap_or_else(|e| panic!("create: {e}"));
    }
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let store = Arc::clone(&store);
            let ids = Arc::clone(&ids);
            tokio::spawn(async move {
                for i in 0..OPS_PER_TASK {
                    let id = &ids[(i * 7 + t * 13) % SESSIONS];
                    match i % 3 {
                        0 => drop(store.get(id).await),
                        1 => drop(store.touch(id).await),
                        _ => drop(
                            store
                                .append_frame(id, NewFrame::new(Direction::ClientToServer, "{}"))
                                .await,
                        ),
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap_or_else(|e| panic!("task: {e}"));
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run with --ignored --nocapture in release"]
async fn overhead_of_the_wrapper() {
    let mut ratios = Vec::new();
    let mut plain_ops = Vec::new();
    let mut wrapped_ops = Vec::new();
    let ops = (TASKS * OPS_PER_TASK) as f64;
    for _ in 0..ROUNDS {
        let plain = workload(Arc::new(MemoryStore::new())).await;
        let wrapped = workload(Arc::new(
            Resilient::new(
                MemoryStore::new(),
                MemoryStore::new(),
                ResilienceConfig::default(),
            )
            .unwrap_or_else(|e| panic!("{e}")),
        ))
        .await;
        plain_ops.push(ops / plain.as_secs_f64());
        wrapped_ops.push(ops / wrapped.as_secs_f64());
        ratios.push(wrapped.as_secs_f64() / plain.as_secs_f64());
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    eprintln!(
        "memory: {:.0} ops/s; Resilient<memory, memory>: {:.0} ops/s; time ratio (median of \
         {ROUNDS}): {:.3}",
        median(plain_ops),
        median(wrapped_ops),
        median(ratios)
    );
}
