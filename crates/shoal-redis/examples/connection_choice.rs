//! Why `RedisStore` uses one multiplexed `ConnectionManager` and no pool: 256 tasks issue a
//! SET/GET mix (300 B values over 1,000 keys) through each way of sharing connections, and
//! the run prints ops/s and latency percentiles, median of three rounds (modes interleaved).
//!
//! ```text
//! cargo run --release -p shoal-redis --example connection_choice               # own redis-server
//! cargo run --release -p shoal-redis --example connection_choice -- 2000 redis://127.0.0.1:6379/9
//! ```
//!
//! Arguments: calls per task (default 2,000; each run is also bounded to 20 s) and optionally
//! the URL of a server to use instead of one started for the run (its `conn-bench:*` keys are
//! deleted afterwards). The modes are in `support/conn_modes.rs`; `benches/connections.rs`
//! runs the same comparison under criterion.

#[path = "support/conn_modes.rs"]
mod conn_modes;

use std::{error::Error, sync::Arc, time::Duration};

use conn_modes::{MODES, Mode, describe, run};
use shoal_testkit::redis_server::RedisServer;

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

/// Concurrent tasks.
const TASKS: usize = 256;
/// Rounds; medians are reported.
const ROUNDS: usize = 3;
/// Bound on one run.
const BOUND: Duration = Duration::from_secs(20);

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let per_task: u64 = match args.next() {
        Some(a) => a.parse()?,
        None => 2_000,
    };
    if per_task == 0 || per_task > 1_000_000 {
        return Err("calls per task must be 1 to 1,000,000".into());
    }
    let given = args.next();
    let (_server, url) = match &given {
        Some(url) => (None, url.clone()),
        None => {
            let s = RedisServer::start();
            let url = s.url();
            (Some(s), url)
        }
    };
    let client = redis::Client::open(url.as_str())?;
    let mut modes = Vec::new();
    for name in MODES {
        modes.push((name, Arc::new(Mode::open(&client, name).await?)));
    }
    // Warm-up: every mode once, untimed.
    for (_, mode) in &modes {
        run(Arc::clone(mode), TASKS, per_task / 10 + 1, BOUND).await?;
    }
    let mut results: Vec<Vec<[f64; 5]>> = vec![Vec::new(); modes.len()];
    for _ in 0..ROUNDS {
        for (i, (_, mode)) in modes.iter().enumerate() {
            let r = run(Arc::clone(mode), TASKS, per_task, BOUND).await?;
            if r.errors > 0 {
                eprintln!(
                    "{}: {} errors, first: {}",
                    MODES[i],
                    r.errors,
                    r.first_error.as_deref().unwrap_or("?")
                );
            }
            let q = |x: f64| r.hist.value_at_quantile(x) as f64 / 1000.0;
            results[i].push([
                r.ops as f64 / r.elapsed.as_secs_f64(),
                q(0.50),
                q(0.99),
                q(0.999),
                r.hist.max() as f64 / 1000.0,
            ]);
        }
    }
    println!(
        "{TASKS} tasks × {per_task} calls (SET/GET of {} B over {} keys), median of {ROUNDS} rounds",
        conn_modes::VALUE_BYTES,
        conn_modes::KEYS
    );
    println!(
        "{:<68} {:>10} {:>9} {:>9} {:>10} {:>10}",
        "mode", "ops/s", "p50 µs", "p99 µs", "p99.9 µs", "max µs"
    );
    for (i, (name, _)) in modes.iter().enumerate() {
        let col = |k: usize| median(results[i].iter().map(|r| r[k]).collect());
        println!(
            "{:<68} {:>10.0} {:>9.0} {:>9.0} {:>10.0} {:>10.0}",
            describe(name),
            col(0),
            col(1),
            col(2),
            col(3),
            col(4)
        );
    }
    if given.is_some() {
        let mut conn = client.get_connection_manager().await?;
        let keys: Vec<String> = (0..conn_modes::KEYS)
            .map(|k| format!("conn-bench:{k}"))
            .collect();
        let _: u64 = redis::cmd("UNLINK")
            .arg(&keys)
            .query_async(&mut conn)
            .await?;
    }
    Ok(())
}
