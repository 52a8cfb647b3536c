//! What one session read costs the client, by reply shape: the same ~170 bytes fetched as
//! one `GET` of a blob, `HGETALL` of a schema-2 meta hash, `HMGET` of its known fields,
//! `HGET` of one field, and `EVALSHA` of a script that returns the fields joined into one
//! string. Each through one multiplexed `ConnectionManager`, closed loop, c16 and c64,
//! rounds interleaved, medians printed with the ratio to `GET`.
//!
//! On two shared cores the client (reply parsing, allocation, task wake-ups) is the limit,
//! so the number of reply elements matters more than the bytes (DESIGN §9). This example
//! is the measurement behind the choice of read command in `RedisStore::get`.
//!
//! ```text
//! redis-server --port 6390 --save '' &
//! cargo run --release -p shoal-redis --example reply_shapes -- redis://127.0.0.1:6390 [seconds] [rounds]
//! ```

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use redis::{Client, Cmd, Value, aio::ConnectionManager};

type Error = Box<dyn std::error::Error + Send + Sync>;

const KEYS: usize = 1_000;
const A: &[u8] = b"1795651977742:1795738377742:1795651977742:100:1:100:1:0";

fn chunk(n: usize, fill: u8) -> Vec<u8> {
    vec![fill; n]
}

#[derive(Clone, Copy, Debug)]
enum Shape {
    Get,
    HGetAll,
    HMGetKnown,
    HMGetAll8,
    HGet,
    EvalJoined,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Get => "GET blob",
            Shape::HGetAll => "HGETALL a,d,d1",
            Shape::HMGetKnown => "HMGET a d d1",
            Shape::HMGetAll8 => "HMGET a d..d7",
            Shape::HGet => "HGET d",
            Shape::EvalJoined => "EVALSHA joined",
        }
    }

    fn cmd(self, i: usize, script_sha: &str) -> Cmd {
        let hk = format!("shapes:{{{i}}}:meta");
        match self {
            Shape::Get => {
                let mut c = redis::cmd("GET");
                c.arg(format!("shapes:{{{i}}}:blob"));
                c
            }
            Shape::HGetAll => {
                let mut c = redis::cmd("HGETALL");
                c.arg(hk);
                c
            }
            Shape::HMGetKnown => {
                let mut c = redis::cmd("HMGET");
                c.arg(hk).arg("a").arg("d").arg("d1");
                c
            }
            Shape::HMGetAll8 => {
                let mut c = redis::cmd("HMGET");
                c.arg(hk)
                    .arg(&["a", "d", "d1", "d2", "d3", "d4", "d5", "d6", "d7"]);
                c
            }
            Shape::HGet => {
                let mut c = redis::cmd("HGET");
                c.arg(hk).arg("d");
                c
            }
            Shape::EvalJoined => {
                let mut c = redis::cmd("EVALSHA");
                c.arg(script_sha).arg(1).arg(hk);
                c
            }
        }
    }
}

async fn run(
    conn: &ConnectionManager,
    shape: Shape,
    sha: &Arc<String>,
    concurrency: usize,
    dur: Duration,
) -> Result<(f64, u64), Error> {
    let end = Instant::now() + dur;
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let mut c = conn.clone();
        let sha = sha.clone();
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new(3)?;
            let mut n = 0u64;
            let mut i = t;
            while Instant::now() < end && n < 10_000_000 {
                let cmd = shape.cmd(i % KEYS, &sha);
                let t0 = Instant::now();
                let v: Value = cmd.query_async(&mut c).await?;
                h.record(t0.elapsed().as_micros() as u64)?;
                if matches!(v, Value::Nil) {
                    return Err::<_, Error>("missing key".into());
                }
                n += 1;
                i += concurrency;
            }
            Ok((n, h))
        }));
    }
    let mut total = 0;
    let mut all = Histogram::<u64>::new(3)?;
    for t in tasks {
        let (n, h) = t.await??;
        total += n;
        all.add(h)?;
    }
    Ok((
        total as f64 / dur.as_secs_f64(),
        all.value_at_quantile(0.95),
    ))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let secs: f64 = args.next().map_or(Ok(1.0), |s| s.parse())?;
    let rounds: usize = args.next().map_or(Ok(3), |s| s.parse())?;
    let conn = ConnectionManager::new(Client::open(url.as_str())?).await?;
    let mut setup = conn.clone();
    let (d, d1) = (chunk(64, b'x'), chunk(50, b'y'));
    let blob: Vec<u8> = [A, &d, &d1].concat();
    for i in 0..KEYS {
        let mut p = redis::pipe();
        p.cmd("DEL").arg(format!("shapes:{{{i}}}:meta")).ignore();
        p.cmd("SET")
            .arg(format!("shapes:{{{i}}}:blob"))
            .arg(&blob)
            .ignore();
        p.cmd("HSET")
            .arg(format!("shapes:{{{i}}}:meta"))
            .arg("a")
            .arg(A)
            .arg("d")
            .arg(&d)
            .arg("d1")
            .arg(&d1)
            .ignore();
        p.query_async::<()>(&mut setup).await?;
    }
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(
            "local v = redis.call('HMGET', KEYS[1], 'a', 'd', 'd1', 'd2', 'd3', 'd4', 'd5', 'd6', 'd7') \
             local out = {} for i = 1, 9 do if v[i] then out[#out + 1] = v[i] end end \
             return table.concat(out, '\\0')",
        )
        .query_async(&mut setup)
        .await?;
    let sha = Arc::new(sha);
    println!(
        "blob {} B; hash fields a ({} B), d ({} B), d1 ({} B); {secs} s per measurement, {rounds} rounds",
        blob.len(),
        A.len(),
        d.len(),
        d1.len()
    );
    let shapes = [
        Shape::Get,
        Shape::HGetAll,
        Shape::HMGetKnown,
        Shape::HMGetAll8,
        Shape::HGet,
        Shape::EvalJoined,
    ];
    for c in [16usize, 64] {
        let mut rates = vec![Vec::new(); shapes.len()];
        let mut p95s = vec![Vec::new(); shapes.len()];
        for _ in 0..rounds {
            for (k, s) in shapes.iter().enumerate() {
                let (r, p) = run(&conn, *s, &sha, c, Duration::from_secs_f64(secs)).await?;
                rates[k].push(r);
                p95s[k].push(p as f64);
            }
        }
        let base = median(rates[0].clone());
        println!("c{c}:");
        for (k, s) in shapes.iter().enumerate() {
            let r = median(rates[k].clone());
            println!(
                "  {:<16} {:>9.0} ops/s  {:>5.2}x GET  p95 {:>5.0} µs",
                s.name(),
                r,
                r / base,
                median(p95s[k].clone())
            );
        }
    }
    Ok(())
}
