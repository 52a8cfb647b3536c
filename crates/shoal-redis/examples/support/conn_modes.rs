//! The three ways of sharing Redis connections that `connection_choice` (example) and
//! `connections` (criterion bench) compare, and a bounded closed-loop driver for them.
//!
//! - `one`: one multiplexed `ConnectionManager` shared by every task (what `RedisStore` does
//!   with `connections = 1`);
//! - `rr4`: four `ConnectionManager`s used round robin (`connections = 4`);
//! - `pool16`: a naive pool — sixteen `MultiplexedConnection`s behind a tokio `Semaphore`,
//!   each checked out by one request at a time (what bb8/deadpool do: exclusive use, so
//!   requests of different tasks never share a connection's pipeline).

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use redis::{
    AsyncCommands as _, Client, RedisResult,
    aio::{ConnectionManager, MultiplexedConnection},
};
use tokio::sync::Semaphore;

/// Keys the workload spreads over.
pub(crate) const KEYS: u64 = 1_000;
/// Value size of the SETs, bytes.
pub(crate) const VALUE_BYTES: usize = 300;

/// One way of sharing connections.
pub(crate) enum Mode {
    /// One multiplexed connection for everything.
    One(ConnectionManager),
    /// Several, round robin.
    RoundRobin(Vec<ConnectionManager>, AtomicUsize),
    /// Exclusive checkout from a fixed set.
    Pool(NaivePool),
}

/// The naive pool: connections in a `Vec`, a semaphore with one permit per connection.
pub(crate) struct NaivePool {
    conns: Mutex<Vec<MultiplexedConnection>>,
    permits: Semaphore,
}

impl NaivePool {
    async fn checkout(
        &self,
    ) -> RedisResult<(tokio::sync::SemaphorePermit<'_>, MultiplexedConnection)> {
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "pool closed")))?;
        let conn = self
            .conns
            .lock()
            .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "pool poisoned")))?
            .pop()
            .ok_or_else(|| redis::RedisError::from((redis::ErrorKind::Io, "pool empty")))?;
        Ok((permit, conn))
    }

    fn checkin(&self, conn: MultiplexedConnection) {
        if let Ok(mut v) = self.conns.lock() {
            v.push(conn);
        }
    }
}

/// The modes by name, in report order.
pub(crate) const MODES: [&str; 3] = ["one", "rr4", "pool16"];

/// What each mode name means, for reports.
pub(crate) fn describe(name: &str) -> &'static str {
    match name {
        "one" => "1 ConnectionManager (multiplexed)",
        "rr4" => "4 ConnectionManagers, round robin",
        _ => "pool of 16 multiplexed connections, exclusive checkout (Semaphore)",
    }
}

impl Mode {
    /// Opens the connections of mode `name` (see [`MODES`]).
    pub(crate) async fn open(client: &Client, name: &str) -> RedisResult<Mode> {
        Ok(match name {
            "one" => Mode::One(client.get_connection_manager().await?),
            "rr4" => {
                let mut v = Vec::new();
                for _ in 0..4 {
                    v.push(client.get_connection_manager().await?);
                }
                Mode::RoundRobin(v, AtomicUsize::new(0))
            }
            _ => {
                let mut v = Vec::new();
                for _ in 0..16 {
                    v.push(client.get_multiplexed_async_connection().await?);
                }
                Mode::Pool(NaivePool {
                    permits: Semaphore::new(v.len()),
                    conns: Mutex::new(v),
                })
            }
        })
    }

    /// `SET key value` (even `n`) or `GET key` (odd `n`).
    pub(crate) async fn call(&self, n: u64, key: &str, value: &[u8]) -> RedisResult<()> {
        async fn op<C: redis::aio::ConnectionLike + Send + Sync>(
            c: &mut C,
            n: u64,
            key: &str,
            value: &[u8],
        ) -> RedisResult<()> {
            if n.is_multiple_of(2) {
                c.set::<_, _, ()>(key, value).await
            } else {
                c.get::<_, Option<Vec<u8>>>(key).await.map(|_| ())
            }
        }
        match self {
            Mode::One(c) => op(&mut c.clone(), n, key, value).await,
            Mode::RoundRobin(v, next) => {
                let i = next.fetch_add(1, Ordering::Relaxed) % v.len();
                op(&mut v[i].clone(), n, key, value).await
            }
            Mode::Pool(p) => {
                let (_permit, mut c) = p.checkout().await?;
                let r = op(&mut c, n, key, value).await;
                p.checkin(c);
                r
            }
        }
    }
}

/// What one run measured.
pub(crate) struct Run {
    /// Successful calls.
    pub(crate) ops: u64,
    /// Failed calls.
    pub(crate) errors: u64,
    /// The first failure.
    pub(crate) first_error: Option<String>,
    /// Wall time.
    pub(crate) elapsed: Duration,
    /// Latencies, nanoseconds.
    pub(crate) hist: Histogram<u64>,
}

/// `tasks` tasks, each issuing up to `ops_per_task` calls back to back (until `bound`).
pub(crate) async fn run(
    mode: Arc<Mode>,
    tasks: usize,
    ops_per_task: u64,
    bound: Duration,
) -> RedisResult<Run> {
    let started = Instant::now();
    let deadline = started + bound;
    let mut handles = Vec::with_capacity(tasks);
    for t in 0..tasks {
        let mode = Arc::clone(&mode);
        handles.push(tokio::spawn(async move {
            let mut hist =
                Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).map_err(|e| {
                    redis::RedisError::from((redis::ErrorKind::Client, "histogram", e.to_string()))
                })?;
            let value = vec![b'v'; VALUE_BYTES];
            let mut errors = 0u64;
            let mut first_error = None;
            let mut x = (t as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            for n in 0..ops_per_task {
                if Instant::now() >= deadline {
                    break;
                }
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let key = format!("conn-bench:{}", x % KEYS);
                let t0 = Instant::now();
                match mode.call(n, &key, &value).await {
                    Ok(()) => hist.saturating_record(
                        u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX),
                    ),
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            Ok::<_, redis::RedisError>((hist, errors, first_error))
        }));
    }
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).map_err(|e| {
        redis::RedisError::from((redis::ErrorKind::Client, "histogram", e.to_string()))
    })?;
    let mut errors = 0;
    let mut first_error = None;
    for h in handles {
        let (hist, e, first) = h.await.map_err(|e| {
            redis::RedisError::from((redis::ErrorKind::Client, "task", e.to_string()))
        })??;
        all.add(&hist).map_err(|e| {
            redis::RedisError::from((redis::ErrorKind::Client, "histogram", e.to_string()))
        })?;
        errors += e;
        first_error = first_error.or(first);
    }
    Ok(Run {
        ops: all.len(),
        errors,
        first_error,
        elapsed: started.elapsed(),
        hist: all,
    })
}
