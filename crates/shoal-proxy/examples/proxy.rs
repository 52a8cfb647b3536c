//! A stand-alone proxy for the end-to-end harness (`tests/e2e/run.sh`) and the overhead
//! benchmark; `shoal proxy` is the product command.
//!
//! ```text
//! cargo run -p shoal-proxy --example proxy -- --listen 127.0.0.1:8080 \
//!     --upstream http://127.0.0.1:3001/mcp --store redis://127.0.0.1:6379 --key-file key.txt
//! ```
//! `--store` is `memory://` (default) or any Redis URL `shoal-redis` accepts. Prints
//! `listening <addr>` on stdout once bound; stops on SIGINT/SIGTERM.

use std::{sync::Arc, time::Duration};

use shoal_core::{MemoryStore, SessionStore};
use shoal_proxy::{EventIdKey, ProxyConfig, UpstreamConfig};

fn usage() -> ! {
    eprintln!(
        "usage: proxy --listen ADDR --upstream URL|stdio:'CMD ARGS' [--store URL] [--key-file F] [--instance NAME] [--poll-ms N] [--lease-ms N] [--sessions-per-minute N]"
    );
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    tracing_init();
    let mut listen = "127.0.0.1:0".to_string();
    let mut upstream = None;
    let mut store_url = "memory://".to_string();
    let mut key = None;
    let mut instance = None;
    let mut poll_ms = None;
    let mut lease_ms = None;
    let mut per_minute = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--listen" => listen = val(),
            "--upstream" => upstream = Some(val()),
            "--store" => store_url = val(),
            "--key-file" => key = Some(val()),
            "--instance" => instance = Some(val()),
            "--poll-ms" => poll_ms = val().parse().ok(),
            "--lease-ms" => lease_ms = val().parse().ok(),
            "--sessions-per-minute" => per_minute = Some(val().parse().unwrap_or_else(|_| usage())),
            _ => usage(),
        }
    }
    let upstream =
        UpstreamConfig::parse(&upstream.unwrap_or_else(|| usage())).unwrap_or_else(|e| {
            eprintln!("{e}");
            std::process::exit(2)
        });
    let mut cfg = ProxyConfig::new(upstream);
    if let Some(k) = key {
        cfg.event_id_key = EventIdKey::from_file(k.as_ref()).unwrap_or_else(|e| {
            eprintln!("{e}");
            std::process::exit(2)
        });
    }
    if let Some(i) = instance {
        cfg.instance_id = i;
    }
    if let Some(ms) = poll_ms {
        cfg.poll_interval = Duration::from_millis(ms);
    }
    if let Some(ms) = lease_ms {
        cfg.stream_lease = Duration::from_millis(ms);
    }
    if let Some(n) = per_minute {
        // Every test client comes from 127.0.0.1: one address, one quota.
        cfg.quota.sessions_per_address_per_minute = n;
        cfg.quota.sessions_per_principal_per_minute = n;
    }
    let mut analytics = None;
    let store: Arc<dyn SessionStore> = if store_url.starts_with("memory:") {
        Arc::new(MemoryStore::new())
    } else {
        // As `shoal proxy` runs on Redis: the change feed on, and the analytics kept (one
        // instance of the fleet at a time applies them).
        let redis =
            shoal_redis::RedisConfig::new(&store_url).with_feed(shoal_core::FeedConfig::default());
        let store = shoal_redis::RedisStore::connect_default(redis.clone())
            .await
            .unwrap_or_else(|e| {
                eprintln!("store {store_url}: {e}");
                std::process::exit(1)
            });
        analytics = shoal_redis::analytics::AnalyticsWorker::spawn(
            store.clone(),
            shoal_redis::analytics::AnalyticsConfig::default(),
        );
        // Cross-instance wake-ups over pub/sub on the store's own servers (any topology).
        match shoal_redis::RedisPubSub::connect(&redis, shoal_redis::BusConfig::default()).await {
            Ok(bus) => cfg = cfg.with_bus(Arc::new(bus)),
            Err(e) => eprintln!("no wake-ups (followers poll the store): {e}"),
        }
        Arc::new(store)
    };
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .unwrap_or_else(|e| {
            eprintln!("bind {listen}: {e}");
            std::process::exit(1)
        });
    if let Ok(addr) = listener.local_addr() {
        println!("listening {addr}");
    }
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .unwrap_or_else(|e| {
                eprintln!("signal: {e}");
                std::process::exit(1)
            });
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    if let Err(e) = shoal_proxy::serve(listener, cfg, store, shutdown).await {
        eprintln!("proxy: {e}");
        std::process::exit(1)
    }
    drop(analytics);
}

fn tracing_init() {
    // Logs only when RUST_LOG is set; the harness keeps stdout for the address line.
    if let Ok(filter) = std::env::var("RUST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
    }
}
