//! Criterion: one multiplexed `ConnectionManager` vs four round robin vs a naive pool of 16
//! connections with exclusive checkout, under 256 concurrent tasks (SET/GET of 300 B). Each
//! iteration is 256 tasks × 20 calls; throughput is reported in calls.
//!
//! ```text
//! cargo bench -p shoal-redis --bench connections
//! SHOAL_BENCH_REDIS_URL=redis://127.0.0.1:6379/9 cargo bench -p shoal-redis --bench connections
//! ```
//!
//! Starts its own `redis-server` unless `SHOAL_BENCH_REDIS_URL` names one. The example
//! `connection_choice` prints the same comparison with latency percentiles.

#![allow(missing_docs)]

#[path = "../examples/support/conn_modes.rs"]
#[allow(dead_code)] // the example uses more of it
mod conn_modes;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use conn_modes::{MODES, Mode, run};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shoal_testkit::redis_server::RedisServer;

/// Tasks per iteration.
const TASKS: usize = 256;
/// Calls per task per iteration.
const CALLS: u64 = 20;

fn connections(c: &mut Criterion) {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("tokio runtime: {e}"),
    };
    let (_server, url) = match std::env::var("SHOAL_BENCH_REDIS_URL") {
        Ok(url) => (None, url),
        Err(_) => {
            let s = RedisServer::start();
            let url = s.url();
            (Some(s), url)
        }
    };
    let client = match redis::Client::open(url.as_str()) {
        Ok(c) => c,
        Err(e) => panic!("redis url: {e}"),
    };
    let mut group = c.benchmark_group("connections_256_tasks");
    group.throughput(Throughput::Elements(TASKS as u64 * CALLS));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    for name in MODES {
        let mode = match rt.block_on(Mode::open(&client, name)) {
            Ok(m) => Arc::new(m),
            Err(e) => panic!("opening {name}: {e}"),
        };
        group.bench_function(name, |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let mode = Arc::clone(&mode);
                async move {
                    let started = Instant::now();
                    for _ in 0..iters {
                        if let Err(e) =
                            run(Arc::clone(&mode), TASKS, CALLS, Duration::from_secs(60)).await
                        {
                            panic!("{name}: {e}");
                        }
                    }
                    started.elapsed()
                }
            });
        });
    }
    group.finish();
}

criterion_group!(benches, connections);
criterion_main!(benches);
