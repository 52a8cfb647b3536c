//! End-to-end tests of `--fallback` (the resilience wrapper) and `--cache` in the `shoal`
//! binary against real Redis servers: health shows the breaker, env and flags configure the
//! wrappers, CLI deletes invalidate another process's cache. (The benchmark's runs through the
//! wrappers are in `crates/shoal-bench/tests/`.)

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;
use shoal_core::{
    Limits, Session, SessionId, SessionStore, SystemClock, Transport, cached::CacheConfig,
};
use shoal_redis::{BusConfig, RedisConfig, RedisPubSub, RedisStore, cache_builder};
use shoal_testkit::redis_server::RedisServer;

/// The binary with no SHOAL_* or RUST_LOG variables from the test environment.
fn shoal() -> Command {
    let mut cmd = Command::cargo_bin("shoal").unwrap();
    for (k, _) in std::env::vars() {
        if k.starts_with("SHOAL_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd
}

fn json_of(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn health_shows_the_breaker_and_the_last_probe() {
    let server = RedisServer::start();
    let out = shoal()
        .args([
            "--store",
            &server.url(),
            "--fallback",
            "memory",
            "health",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let h = json_of(&out);
    assert_eq!(h["backend"], "resilient");
    let d = &h["details"];
    assert_eq!(d["breaker_state"], "closed", "{h}");
    assert_eq!(d["fallback_mode"], "memory", "{h}");
    assert_eq!(d["last_probe_ok"], "true", "{h}");
    assert!(d["last_probe_at"].as_str().unwrap().contains('T'), "{h}");
    assert_eq!(d["journal_entries"], "0", "{h}");

    // In text, with the cache too.
    shoal()
        .args([
            "--store",
            &server.url(),
            "--fallback",
            "read-only",
            "--cache",
            "health",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("breaker_state:"))
        .stdout(predicate::str::contains("closed"))
        .stdout(predicate::str::contains("last_probe_ok:"))
        .stdout(predicate::str::contains("cache_bus:"));

    // The breaker guards a remote server: on an in-process store it is a usage error.
    shoal()
        .args(["--fallback", "memory", "sessions", "count"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("needs a Redis store"));
    // A wrong mode is a usage error from the flag parser.
    shoal()
        .args(["--fallback", "disk", "sessions", "count"])
        .assert()
        .code(2);
}

#[test]
fn env_and_flags_configure_the_wrappers() {
    let out = shoal()
        .env("SHOAL_RESILIENCE__FALLBACK", "none")
        .env("SHOAL_RESILIENCE__BREAKER__COOLDOWN", "7s")
        .env("SHOAL_CACHE__TTL", "3s")
        .args([
            "--fallback",
            "memory",
            "--cache-consistency",
            "strict",
            "config",
            "show",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("fallback = \"memory\""),
        "flag beats env: {text}"
    );
    assert!(text.contains("cooldown = \"7s\""), "{text}");
    assert!(text.contains("ttl = \"3s\""), "{text}");
    assert!(text.contains("consistency = \"strict\""), "{text}");
    assert!(
        text.contains("enabled = true"),
        "--cache-consistency implies --cache: {text}"
    );

    shoal()
        .env("SHOAL_RESILIENCE__BREAKER__THRESHOLD", "3")
        .args(["config", "show"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("resilience.breaker.threshold"))
        .stderr(predicate::str::contains(
            "SHOAL_RESILIENCE__BREAKER__THRESHOLD",
        ));
}

/// A long-lived cache in this process (entry ttl 60 s, so only an announcement can drop an
/// entry) sees `shoal sessions delete` from another process, with and without `--cache` on
/// the CLI, and after `shoal import --on-existing replace`.
#[test]
fn cli_writes_invalidate_another_instances_cache() {
    let server = RedisServer::start();
    let rt = runtime();
    let config = RedisConfig::new(server.url());
    let (store, cached, bus) = rt.block_on(async {
        let store = RedisStore::connect(config.clone(), Limits::default(), Arc::new(SystemClock))
            .await
            .unwrap();
        let bus = RedisPubSub::connect(&config, BusConfig::default())
            .await
            .unwrap();
        let cached = cache_builder(store.clone(), Some(bus.clone()))
            .config(CacheConfig::default().with_ttl(Duration::from_secs(60)))
            .build()
            .unwrap();
        (store, cached, bus)
    });
    let ids: Vec<SessionId> = ["plain", "cached", "imported"]
        .iter()
        .map(|s| SessionId::new(*s).unwrap())
        .collect();
    rt.block_on(async {
        for id in &ids {
            store
                .create(Session::new(id.clone(), Transport::StreamableHttp))
                .await
                .unwrap();
            assert!(cached.get(id).await.unwrap().is_some());
        }
        // Served from the cache now.
        let hits = cached.stats().hits;
        assert!(cached.get(&ids[0]).await.unwrap().is_some());
        assert_eq!(cached.stats().hits, hits + 1);
    });
    let gone = |id: &SessionId| {
        rt.block_on(async {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                if cached.get(id).await.unwrap().is_none() {
                    return true;
                }
                if Instant::now() >= deadline {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    // Without --cache: the CLI announces the delete itself.
    shoal()
        .args(["--store", &server.url(), "sessions", "delete", "plain"])
        .assert()
        .success();
    assert!(gone(&ids[0]), "the cache still serves a deleted session");

    // With --cache: the CLI's own cache announces it.
    shoal()
        .args([
            "--store",
            &server.url(),
            "--cache",
            "sessions",
            "delete",
            "cached",
        ])
        .assert()
        .success();
    assert!(gone(&ids[1]), "the cache still serves a deleted session");

    // An import that replaces a session: everything is announced.
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("one.jsonl");
    shoal()
        .args([
            "--store",
            &server.url(),
            "export",
            "--out",
            export.to_str().unwrap(),
        ])
        .assert()
        .success();
    rt.block_on(async {
        let hits = cached.stats().hits;
        assert!(cached.get(&ids[2]).await.unwrap().is_some());
        assert_eq!(cached.stats().hits, hits + 1, "cached before the import");
    });
    shoal()
        .args([
            "--store",
            &server.url(),
            "import",
            "--in",
            export.to_str().unwrap(),
            "--on-existing",
            "replace",
        ])
        .assert()
        .success();
    rt.block_on(async {
        // "Everything changed": the next read of the replaced session is a miss.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let misses = cached.stats().misses;
            assert!(cached.get(&ids[2]).await.unwrap().is_some());
            if cached.stats().misses > misses {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no announcement after the import"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        cached.shutdown().await.unwrap();
        bus.close().await;
    });
}

/// `[resilience.journal] path` belongs to the long-running process: while a store holds the
/// journal file (locked), one-shot commands on the same configuration still work — they do
/// not take the file.
#[test]
fn one_shot_commands_leave_the_instance_journal_alone() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let rt = runtime();
    // The "proxy": a resilient store holding the journal file.
    let holder = rt.block_on(async {
        let redis = RedisStore::connect(
            RedisConfig::new(server.url()),
            Limits::default(),
            Arc::new(SystemClock),
        )
        .await
        .unwrap();
        let mut c = shoal_core::resilient::ResilienceConfig::default()
            .with_fallback(shoal_core::resilient::FallbackMode::Memory);
        c.journal.path = Some(journal.clone());
        shoal_core::resilient::Resilient::new(redis, shoal_core::MemoryStore::new(), c).unwrap()
    });
    let out = shoal()
        .env("SHOAL_RESILIENCE__JOURNAL__PATH", &journal)
        .args([
            "--store",
            &server.url(),
            "--fallback",
            "memory",
            "sessions",
            "count",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "a one-shot command failed on the held journal: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(holder);
}
