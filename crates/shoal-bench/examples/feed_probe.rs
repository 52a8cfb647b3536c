//! The change feed's own figures on one Redis, measured in one run:
//!
//! - end-to-end feed latency: from the start of an append on one connection to a follower on
//!   another connection (the `ChangeFeed::read` that `shoal tail` runs) seeing its entry;
//! - beside it, the pub/sub wake-up latency (`RedisPubSub::publish_wakeup` → the other
//!   instance's `subscribe_wakeups`), what the proxy and the rmcp adapter wake followers with;
//! - Redis bytes per feed entry (`MEMORY USAGE` of the stream ÷ its length), for frame
//!   entries of a JSON-RPC request and for lifecycle entries.
//!
//! ```sh
//! cargo run --release -p shoal-bench --example feed_probe -- redis://127.0.0.1:6379 [SAMPLES]
//! ```
//! Bounded: SAMPLES (default 2,000, at most 100,000) writes, 1 ms apart, each waited for at
//! most 5 s. It writes under a fresh key prefix and deletes it at the end.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use shoal_core::{
    ChangeFeed, ChangeKind, Direction, FeedConfig, Limits, NewFrame, NotifyBus, Session, SessionId,
    SessionStore, SystemClock, Transport,
};
use shoal_redis::{BusConfig, RedisConfig, RedisPubSub, RedisStore};

fn pct(h: &Histogram<u64>) -> String {
    format!(
        "p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms ({} samples)",
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        h.max() as f64 / 1000.0,
        h.len()
    )
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 60_000_000, 3)?)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let samples: u64 = match args.next() {
        Some(s) => s.parse()?,
        None => 2000,
    };
    anyhow::ensure!((1..=100_000).contains(&samples), "SAMPLES must be 1-100000");
    let prefix = format!("feedprobe{}", std::process::id());
    let config = RedisConfig::new(&url)
        .with_key_prefix(&prefix)
        .with_feed(FeedConfig::default());
    let writer =
        RedisStore::connect(config.clone(), Limits::default(), Arc::new(SystemClock)).await?;
    let reader =
        RedisStore::connect(config.clone(), Limits::default(), Arc::new(SystemClock)).await?;
    let feed = reader.feed().ok_or_else(|| anyhow::anyhow!("no feed"))?;

    // 1. Feed latency: append on `writer`, seen by a follower on `reader`.
    let id = SessionId::new("probe")?;
    writer
        .create(Session::new(id.clone(), Transport::StreamableHttp))
        .await?;
    let seen: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let follower = {
        let seen = Arc::clone(&seen);
        let feed = Arc::clone(&feed);
        let mut cursor = feed.end().await?;
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(600);
            while Instant::now() < deadline {
                let Ok(batch) = feed.read(&cursor, 500, Some(Duration::from_secs(1))).await else {
                    continue;
                };
                let now = Instant::now();
                cursor.advance(&batch);
                let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                for c in batch {
                    if c.kind == ChangeKind::Frame
                        && let Some(q) = c.seq
                    {
                        seen.insert(q, now);
                    }
                }
            }
        })
    };
    let request = r#"{"jsonrpc":"2.0","id":17,"method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":2}}}"#;
    let mut sent = HashMap::new();
    for _ in 0..samples {
        let t0 = Instant::now();
        let seq = writer
            .append_frame(
                &id,
                NewFrame::new(Direction::ClientToServer, request).with_stream("post-1"),
            )
            .await?;
        sent.insert(seq, t0);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let wait_until = Instant::now() + Duration::from_secs(5);
    while seen.lock().map(|s| s.len()).unwrap_or(0) < sent.len() && Instant::now() < wait_until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    follower.abort();
    let mut feed_lat = histogram()?;
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    for (seq, t0) in &sent {
        if let Some(t) = seen.get(seq) {
            feed_lat.record(t.duration_since(*t0).as_micros().max(1) as u64)?;
        }
    }
    println!(
        "feed latency (append start → follower on another connection sees it): {}; {} of {} seen",
        pct(&feed_lat),
        seen.len(),
        sent.len()
    );

    // 2. Pub/sub wake-ups between two buses, the same number, 1 ms apart.
    let a = RedisPubSub::connect(&config, BusConfig::default()).await?;
    let b = RedisPubSub::connect(&config, BusConfig::default()).await?;
    let mut rx = b
        .subscribe_wakeups()
        .ok_or_else(|| anyhow::anyhow!("the bus carries no wake-ups"))?;
    let up_by = Instant::now() + Duration::from_secs(10);
    while !(a.is_up() && b.is_up()) && Instant::now() < up_by {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut wake_lat = histogram()?;
    let mut lost = 0;
    for i in 0..samples {
        let stream = format!("s{i}");
        let t0 = Instant::now();
        a.publish_wakeup(&id, &stream);
        let got = tokio::time::timeout(Duration::from_secs(1), async {
            loop {
                match rx.recv().await {
                    Ok(w) if *w.stream == *stream => return true,
                    Ok(_) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return false,
                }
            }
        })
        .await;
        match got {
            Ok(true) => wake_lat.record(t0.elapsed().as_micros().max(1) as u64)?,
            _ => lost += 1,
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    println!(
        "pub/sub wake-up latency (publish → the other bus receives it): {}; {lost} lost",
        pct(&wake_lat)
    );

    // 3. Bytes per entry.
    let stats = feed.stats().await?;
    println!(
        "feed bytes: {} entries of frames (a {}-byte tools/call request each) use {} bytes: {:.1} B/entry",
        stats.length,
        request.len(),
        stats.bytes.unwrap_or(0),
        stats.bytes.unwrap_or(0) as f64 / stats.length.max(1) as f64
    );
    let mut life = FeedConfig::default();
    life.cap = 1_000_000;
    let config2 = RedisConfig::new(&url)
        .with_key_prefix(format!("{prefix}l"))
        .with_feed(life);
    let s2 = RedisStore::connect(config2, Limits::default(), Arc::new(SystemClock)).await?;
    for i in 0..samples {
        let sid = SessionId::new(format!("life-{i:08}"))?;
        let mut s = Session::new(sid.clone(), Transport::StreamableHttp);
        s.client_info = Some(serde_json::json!({"name": "claude-code", "version": "2.1.0"}));
        s.protocol_version = Some("2025-11-25".into());
        s2.create(s).await?;
        s2.delete(&sid).await?;
    }
    let f2 = s2.feed().ok_or_else(|| anyhow::anyhow!("no feed"))?;
    let st = f2.stats().await?;
    println!(
        "feed bytes: {} lifecycle entries (created with client info, deleted) use {} bytes: {:.1} B/entry",
        st.length,
        st.bytes.unwrap_or(0),
        st.bytes.unwrap_or(0) as f64 / st.length.max(1) as f64
    );

    // Clean up what this probe wrote (a single server; on a Cluster the keys are left under
    // the printed prefix).
    if url.contains("+cluster") {
        println!("keys left under the prefixes {prefix} and {prefix}l (Cluster: not cleaned up)");
        return Ok(());
    }
    for p in [prefix.clone(), format!("{prefix}l")] {
        let client = redis::Client::open(url.as_str())?;
        let mut c = client.get_multiplexed_async_connection().await?;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{p}:*"))
            .query_async(&mut c)
            .await?;
        for chunk in keys.chunks(500) {
            let _: () = redis::cmd("DEL").arg(chunk).query_async(&mut c).await?;
        }
    }
    Ok(())
}
