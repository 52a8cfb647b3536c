//! A closed-loop load driver for one operation: `c` tasks call it back to back until a time
//! or count bound, each call timed into an HDR histogram. The Shoal side and the raw side of
//! the Redis comparison run through this same driver, so the harness costs them alike.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;

use crate::workload::{Rng, new_hist};

/// The future of one call: `Err` carries a message (the first is reported).
pub(crate) type OpFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// One operation: called with the task index, the task's call number and a random number
/// (to pick a session), returns the call's future.
pub(crate) type OpFn = Arc<dyn Fn(usize, u64, u64) -> OpFuture + Send + Sync>;

/// When a measurement stops: the first bound reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limit {
    /// Wall-clock bound.
    pub(crate) duration: Duration,
    /// Bound on calls over all tasks.
    pub(crate) ops: u64,
}

/// What one measurement found.
#[derive(Debug)]
pub(crate) struct Driven {
    /// Latencies of the successful calls, nanoseconds.
    pub(crate) hist: Histogram<u64>,
    /// Failed calls.
    pub(crate) errors: u64,
    /// The first failure.
    pub(crate) first_error: Option<String>,
    /// Wall time from the start to the last task's end.
    pub(crate) elapsed: Duration,
    /// Calls started per task (the task's `n` ran from 0 to this), for cleaning up what
    /// creates wrote.
    pub(crate) attempts: Vec<u64>,
}

struct TaskOutcome {
    hist: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
    attempts: u64,
}

/// Runs `op` with `c` tasks until `limit` (or `stop`).
pub(crate) async fn drive(
    op: &OpFn,
    c: usize,
    limit: Limit,
    seed: u64,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<Driven> {
    let c = c.max(1);
    let started = Instant::now();
    let deadline = started
        .checked_add(limit.duration)
        .unwrap_or_else(|| started + crate::args::MAX_BENCH_DURATION);
    let template = new_hist()?;
    let mut handles = Vec::with_capacity(c);
    for task in 0..c {
        let quota = limit.ops / c as u64 + u64::from((task as u64) < limit.ops % c as u64);
        let op = Arc::clone(op);
        let stop = Arc::clone(stop);
        let mut hist = Histogram::new_from(&template);
        let mut rng = Rng::for_worker(seed, 7, task as u64);
        handles.push(tokio::spawn(async move {
            let mut errors = 0;
            let mut first_error = None;
            let mut n = 0u64;
            while n < quota && Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                let r = rng.next_u64();
                let t = Instant::now();
                let result = op(task, n, r).await;
                let d = t.elapsed();
                n += 1;
                match result {
                    Ok(()) => {
                        hist.saturating_record(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
                    }
                    Err(e) => {
                        errors += 1;
                        if first_error.is_none() {
                            first_error = Some(e);
                        }
                    }
                }
            }
            TaskOutcome {
                hist,
                errors,
                first_error,
                attempts: n,
            }
        }));
    }
    let mut out = Driven {
        hist: Histogram::new_from(&template),
        errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
        attempts: Vec::with_capacity(c),
    };
    for h in handles {
        let t = h
            .await
            .map_err(|e| anyhow::anyhow!("a measurement task failed: {e}"))?;
        out.hist.add(&t.hist)?;
        out.errors += t.errors;
        if out.first_error.is_none() {
            out.first_error = t.first_error;
        }
        out.attempts.push(t.attempts);
    }
    out.elapsed = started.elapsed();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn drive_stops_at_the_op_bound_and_counts_errors() {
        let calls = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&calls);
        let op: OpFn = Arc::new(move |_task, n, _r| {
            counter.fetch_add(1, Ordering::Relaxed);
            Box::pin(async move {
                if n % 10 == 9 {
                    Err(format!("failure at {n}"))
                } else {
                    Ok(())
                }
            })
        });
        let stop = Arc::new(AtomicBool::new(false));
        let d = drive(
            &op,
            4,
            Limit {
                duration: Duration::from_secs(600),
                ops: 1_000,
            },
            1,
            &stop,
        )
        .await
        .unwrap();
        assert_eq!(calls.load(Ordering::Relaxed), 1_000);
        assert_eq!(d.attempts, vec![250, 250, 250, 250]);
        assert_eq!(d.errors, 4 * 25);
        assert_eq!(d.hist.len(), 1_000 - 100);
        assert!(d.first_error.unwrap().starts_with("failure at"));
    }
}
