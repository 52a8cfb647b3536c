//! End-to-end tests of the `shoal` binary against real Redis servers started for each test
//! (`shoal_testkit::redis_server`): export → import → export across databases, the session
//! commands, stats, health, sweep, the `[redis]` configuration and password redaction.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::{path::Path, sync::Arc};

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;
use shoal_core::{
    Direction, Limits, NewFrame, PendingRequest, Session, SessionId, SessionStatus, SessionStore,
    SystemClock, Transport, store::modify, transfer,
};
use shoal_redis::{RedisConfig, RedisStore};
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

fn json_out(cmd: &mut Command) -> Value {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "exit {:?}, stderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn connect(url: &str, prefix: &str) -> RedisStore {
    RedisStore::connect(
        RedisConfig::new(url).with_key_prefix(prefix),
        Limits::default(),
        Arc::new(SystemClock),
    )
    .await
    .unwrap()
}

/// Writes the fixture with the library: `alpha` (http, 3 frames of which one binary, 2
/// pending), `beta` (stdio, completed, principal alice), `gamma` (streamable_http, frames on
/// two streams), and `extra` more sessions with 2 frames each (so exports span pages).
async fn fixture(store: &RedisStore, extra: usize) {
    let alpha = SessionId::new("alpha").unwrap();
    let beta = SessionId::new("beta").unwrap();
    let gamma = SessionId::new("gamma").unwrap();
    let mut a = Session::new(alpha.clone(), Transport::Http);
    a.client_info = Some(serde_json::json!({"name": "inspector", "version": "0.15.0"}));
    a.tags.insert("vip".into());
    store.create(a).await.unwrap();
    store
        .append_frames(
            &alpha,
            vec![
                NewFrame::new(
                    Direction::ClientToServer,
                    r#"{"jsonrpc":"2.0","id":1,"method":"initialize"}"#,
                ),
                NewFrame::new(Direction::ServerToClient, r#"{"jsonrpc":"2.0","id":1}"#),
                NewFrame::new(Direction::ServerToClient, vec![0xffu8, 0xfe, 0x00]),
            ],
        )
        .await
        .unwrap();
    store
        .add_pending(&alpha, PendingRequest::new(2, "tools/list"))
        .await
        .unwrap();
    store
        .add_pending(&alpha, PendingRequest::new("req-b", "tools/call"))
        .await
        .unwrap();
    store
        .create(Session::new(beta.clone(), Transport::Stdio))
        .await
        .unwrap();
    modify(store, &beta, 3, |s| {
        s.status = SessionStatus::Completed;
        s.principal = Some("alice".into());
    })
    .await
    .unwrap();
    store
        .create(Session::new(gamma.clone(), Transport::StreamableHttp))
        .await
        .unwrap();
    for i in 0..4 {
        let stream = if i % 2 == 0 { "get-1" } else { "post-1" };
        store
            .append_frame(
                &gamma,
                NewFrame::new(Direction::ServerToClient, format!("event {i}")).with_stream(stream),
            )
            .await
            .unwrap();
    }
    for i in 0..extra {
        let id = SessionId::new(format!("extra-{i:04}")).unwrap();
        store
            .create(Session::new(id.clone(), Transport::StreamableHttp))
            .await
            .unwrap();
        store
            .append_frames(
                &id,
                vec![
                    NewFrame::new(Direction::ClientToServer, format!("request {i}")),
                    NewFrame::new(Direction::ServerToClient, format!("response {i}")),
                ],
            )
            .await
            .unwrap();
    }
}

fn export_to(store_url: &str, out: &Path) -> Value {
    json_out(shoal().args([
        "export",
        "--json",
        "--out",
        out.to_str().unwrap(),
        "--store",
        store_url,
    ]))
}

#[test]
fn export_import_export_is_byte_identical_across_databases() {
    let server = RedisServer::start();
    let db0 = format!("{}/0", server.url());
    let db1 = format!("{}/1", server.url());
    let rt = runtime();
    let library_export = rt.block_on(async {
        let store = connect(&db0, "shoal").await;
        fixture(&store, 150).await;
        let mut out = Vec::new();
        transfer::export(&store, &mut out, |_| {}).await.unwrap();
        out
    });

    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("db0.jsonl");
    let v = export_to(&db0, &first);
    assert_eq!(v["sessions"], 153);
    assert_eq!(v["frames"], 3 + 4 + 300);
    assert_eq!(v["skipped"].as_array().unwrap().len(), 0);
    let first_bytes = std::fs::read(&first).unwrap();
    assert_eq!(
        first_bytes, library_export,
        "the binary exports what the library does"
    );
    let text = String::from_utf8(first_bytes.clone()).unwrap();
    assert!(text.starts_with("{\"format\":\"shoal-sessions\",\"version\":1}\n"));
    let alpha = text
        .lines()
        .find(|l| l.contains("\"id\":\"alpha\""))
        .unwrap();
    assert!(
        alpha.contains("tools/list") && alpha.contains("req-b"),
        "{alpha}"
    );
    assert!(alpha.contains("\"content_b64\":\"//4A\""), "{alpha}");
    assert!(
        alpha.contains("inspector") && alpha.contains("vip"),
        "{alpha}"
    );

    // db 1 starts empty.
    let v = json_out(shoal().args(["sessions", "count", "--json", "--store", &db1]));
    assert_eq!(v["count"], 0);
    let v = json_out(shoal().args([
        "import",
        "--json",
        "--in",
        first.to_str().unwrap(),
        "--store",
        &db1,
    ]));
    assert_eq!(v["failed"].as_array().map(Vec::len), Some(0), "{v}");
    assert_eq!(v["imported"], 153, "{v}");
    assert_eq!(v["frames"], 307, "{v}");
    // The import's counter increments were written before the command ended.
    let v = json_out(shoal().args(["stats", "--json", "--store", &db1]));
    assert_eq!(v["sessions"], 153);
    assert_eq!(v["counters"]["created"], 153);

    let second = dir.path().join("db1.jsonl");
    export_to(&db1, &second);
    assert_eq!(std::fs::read(&second).unwrap(), first_bytes);

    // Importing again refuses every line by default, and skips them on request.
    shoal()
        .args(["import", "--in", first.to_str().unwrap(), "--store", &db1])
        .assert()
        .code(1);
    let v = json_out(shoal().args([
        "import",
        "--json",
        "--on-existing",
        "skip",
        "--in",
        first.to_str().unwrap(),
        "--store",
        &db1,
    ]));
    assert_eq!(v["skipped"], 153);
    let third = dir.path().join("db1-again.jsonl");
    export_to(&db1, &third);
    assert_eq!(std::fs::read(&third).unwrap(), first_bytes);
}

#[test]
fn session_commands_stats_health_and_sweep_work_against_redis() {
    let server = RedisServer::start();
    let store_url = format!("{}/2", server.url());
    let store = store_url.as_str();
    let rt = runtime();
    rt.block_on(async {
        let s = connect(store, "shoal").await;
        fixture(&s, 0).await;
        // Counters are flushed in the background; write the rest before the runtime ends.
        s.metrics().await.unwrap();
    });

    // list, filters, paging
    let v = json_out(shoal().args(["sessions", "list", "--all", "--json", "--store", store]));
    let mut ids: Vec<&str> = v["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["alpha", "beta", "gamma"]);
    let v = json_out(shoal().args([
        "sessions",
        "list",
        "--json",
        "--status",
        "completed",
        "--store",
        store,
    ]));
    assert_eq!(v["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(v["sessions"][0]["principal"], "alice");
    let v = json_out(shoal().args([
        "sessions", "list", "--json", "--limit", "2", "--store", store,
    ]));
    assert_eq!(v["sessions"].as_array().unwrap().len(), 2);
    let cursor = v["next_cursor"].as_str().unwrap().to_owned();
    let v = json_out(shoal().args([
        "sessions", "list", "--json", "--limit", "2", "--cursor", &cursor, "--store", store,
    ]));
    assert_eq!(v["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(v["next_cursor"], Value::Null);
    shoal()
        .args(["sessions", "count", "--store", store])
        .assert()
        .success()
        .stdout("3\n");
    shoal()
        .args([
            "sessions",
            "count",
            "--transport",
            "stdio",
            "--store",
            store,
        ])
        .assert()
        .success()
        .stdout("1\n");

    // show and frames
    let v = json_out(shoal().args(["sessions", "show", "alpha", "--json", "--store", store]));
    assert_eq!(v["session"]["transport"], "http");
    assert_eq!(v["frame_count"], 3);
    assert_eq!(v["pending_count"], 2);
    let v = json_out(shoal().args(["sessions", "frames", "alpha", "--json", "--store", store]));
    let frames = v["frames"].as_array().unwrap();
    assert_eq!(frames.len(), 3);
    assert_eq!(frames[2]["content_b64"], "//4A");
    assert_eq!(v["last_seq"], 3);
    let v = json_out(shoal().args([
        "sessions", "frames", "gamma", "--stream", "post-1", "--json", "--store", store,
    ]));
    let seqs: Vec<u64> = v["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [2, 4]);
    shoal()
        .args(["sessions", "frames", "gamma", "--raw", "--store", store])
        .assert()
        .success()
        .stdout("event 0\nevent 1\nevent 2\nevent 3\n");

    // stats: the Redis counters and the session count
    let v = json_out(shoal().args(["stats", "--json", "--store", store]));
    assert_eq!(v["backend"], "redis");
    assert_eq!(v["sessions"], 3);
    assert_eq!(v["counters"]["created"], 3);
    assert_eq!(v["counters"]["completed"], 1);
    assert_eq!(v["counters"]["failed"], 0);
    assert_eq!(v["counters"]["deleted"], 0);
    assert_eq!(v["counters"]["frames"], 7);

    // delete: the data is gone from Redis, for every later command
    let v = json_out(shoal().args(["sessions", "delete", "beta", "--json", "--store", store]));
    assert_eq!(v["deleted"], serde_json::json!(["beta"]));
    shoal()
        .args(["sessions", "delete", "beta", "gamma", "--store", store])
        .assert()
        .code(1)
        .stdout("deleted gamma\n")
        .stderr(predicate::str::contains("not found: beta"));
    shoal()
        .args(["sessions", "show", "gamma", "--store", store])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("not found"));
    assert_eq!(
        server
            .cli(&["-n", "2", "EXISTS", "shoal:{gamma}:frames"])
            .trim(),
        "0"
    );
    let v = json_out(shoal().args(["stats", "--json", "--store", store]));
    assert_eq!(v["sessions"], 1);
    assert_eq!(v["counters"]["deleted"], 2);

    // health and sweep
    let v = json_out(shoal().args(["health", "--json", "--store", store]));
    assert_eq!(v["status"], "healthy");
    assert_eq!(v["backend"], "redis");
    assert_eq!(v["details"]["topology"], "standalone");
    assert_eq!(v["details"]["key_prefix"], "shoal");
    let v = json_out(shoal().args(["sweep", "--json", "--store", store]));
    assert_eq!(v["removed"], 0);

    // A session that expired is removed by one sweep pass.
    rt.block_on(async {
        let mut limits = Limits::default();
        limits.session_ttl = std::time::Duration::from_secs(1);
        let short = RedisStore::connect(RedisConfig::new(store), limits, Arc::new(SystemClock))
            .await
            .unwrap();
        short
            .create(Session::new(
                SessionId::new("brief").unwrap(),
                Transport::Http,
            ))
            .await
            .unwrap();
    });
    // Wait (bounded) until the session's logical expiry has passed.
    let mut expired = false;
    for _ in 0..100 {
        let v = json_out(shoal().args(["sessions", "count", "--json", "--store", store]));
        if v["count"] == 1 {
            expired = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(expired, "the 1 s session never expired");
    let v = json_out(shoal().args(["sweep", "--json", "--store", store]));
    assert_eq!(v["removed"], 1);
    assert_eq!(
        server
            .cli(&["-n", "2", "EXISTS", "shoal:{brief}:meta"])
            .trim(),
        "0"
    );
}

#[test]
fn the_redis_section_and_env_select_the_key_prefix() {
    let server = RedisServer::start();
    let url = server.url();
    let rt = runtime();
    rt.block_on(async {
        let s = connect(&url, "tenant-a").await;
        s.create(Session::new(
            SessionId::new("only-a").unwrap(),
            Transport::Http,
        ))
        .await
        .unwrap();
    });
    shoal()
        .args(["sessions", "count", "--store", &url])
        .assert()
        .success()
        .stdout("0\n");
    shoal()
        .args(["sessions", "count", "--store", &url])
        .env("SHOAL_REDIS__PREFIX", "tenant-a")
        .assert()
        .success()
        .stdout("1\n");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("shoal.toml");
    std::fs::write(
        &config,
        format!(
            "store = \"{url}\"\n[redis]\nkey_prefix = \"tenant-a\"\nconnect_timeout = \"2s\"\n"
        ),
    )
    .unwrap();
    let v = json_out(shoal().args([
        "sessions",
        "show",
        "only-a",
        "--json",
        "--config",
        config.to_str().unwrap(),
    ]));
    assert_eq!(v["session"]["id"], "only-a");
    let v = json_out(shoal().args([
        "config",
        "show",
        "--json",
        "--config",
        config.to_str().unwrap(),
    ]));
    assert_eq!(v["redis"]["key_prefix"], "tenant-a");
    assert_eq!(v["redis"]["connect_timeout"], "2s");
    shoal()
        .args(["sessions", "count", "--store", &url])
        .env("SHOAL_REDIS__KEY_PREFIX", "a{b")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("SHOAL_REDIS__KEY_PREFIX"));
}

#[test]
fn passwords_are_never_printed() {
    let server = RedisServer::builder()
        .args(["--requirepass", "s3cret-pw"])
        .start();
    let good = format!("redis://:s3cret-pw@127.0.0.1:{}", server.port());
    let bad = format!("redis://:wrong-pw@127.0.0.1:{}", server.port());
    for args in [
        vec!["health"],
        vec!["health", "--json"],
        vec!["stats"],
        vec!["config", "show"],
        vec!["config", "show", "--json"],
        vec!["sessions", "count", "-vv"],
    ] {
        let out = shoal()
            .args(&args)
            .args(["--store", &good])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let all = [out.stdout, out.stderr].concat();
        let all = String::from_utf8_lossy(&all);
        assert!(
            !all.contains("s3cret-pw"),
            "{args:?} printed the password: {all}"
        );
    }
    let out = shoal()
        .args(["sessions", "count", "--store", &bad])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("wrong-pw"), "{err}");
    assert!(err.contains("redis://:***@127.0.0.1"), "{err}");
}

/// An import stopped by a line refused while writing (its session exists) says exactly what
/// was written: the session before the line, not the one after.
#[test]
fn an_import_stopped_midway_says_what_it_wrote() {
    let server = RedisServer::start();
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let store = connect(&url, "shoal").await;
        for id in ["im-before", "im-existing", "im-after"] {
            store
                .create(Session::new(SessionId::new(id).unwrap(), Transport::Http))
                .await
                .unwrap();
        }
    });
    let all = dir.path().join("all.jsonl");
    export_to(&url, &all);
    let text = std::fs::read_to_string(&all).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let line_of = |id: &str| {
        text.lines()
            .find(|l| l.contains(&format!("\"{id}\"")))
            .unwrap()
            .to_owned()
    };
    let ordered = dir.path().join("ordered.jsonl");
    std::fs::write(
        &ordered,
        format!(
            "{header}\n{}\n{}\n{}\n",
            line_of("im-before"),
            line_of("im-existing"),
            line_of("im-after")
        ),
    )
    .unwrap();
    runtime().block_on(async {
        let store = connect(&url, "shoal").await;
        for id in ["im-before", "im-after"] {
            store.delete(&SessionId::new(id).unwrap()).await.unwrap();
        }
    });
    let out = shoal()
        .args(["import", "--in", ordered.to_str().unwrap(), "--store", &url])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("imported 1 session "), "{stdout}");
    assert!(
        stderr.contains("line 3 was refused; the 1 session before it was imported"),
        "{stderr}"
    );
    assert!(!stderr.contains("nothing was imported"), "{stderr}");
    runtime().block_on(async {
        let store = connect(&url, "shoal").await;
        assert!(
            store
                .get(&SessionId::new("im-before").unwrap())
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            store
                .get(&SessionId::new("im-after").unwrap())
                .await
                .unwrap()
                .is_none()
        );
    });
}

/// Connection errors say what to change: a database index the server does not have is a
/// configuration error (exit 2); a wrong password is said once; `rediss://` against a plain
/// server hints at TLS.
#[test]
fn connection_errors_say_what_to_fix() {
    let server = RedisServer::builder()
        .args(["--requirepass", "right-pw"])
        .start();
    let port = server.port();
    let out = shoal()
        .args(["sessions", "count", "--store"])
        .arg(format!("redis://:right-pw@127.0.0.1:{port}/99"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("database index"), "{err}");

    let out = shoal()
        .args(["sessions", "count", "--store"])
        .arg(format!("redis://:wrong-pw@127.0.0.1:{port}"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.matches("authentication failed").count(), 1, "{err}");
    assert_eq!(err.matches("cannot connect").count(), 1, "{err}");
    // `health` reports it the same way, once, in text and in JSON.
    for json in [false, true] {
        let mut cmd = shoal();
        cmd.args(["health", "--store"])
            .arg(format!("redis://:wrong-pw@127.0.0.1:{port}"));
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert_eq!(text.matches("authentication failed").count(), 1, "{text}");
        assert!(!text.contains("wrong-pw"), "{text}");
    }

    // TLS asked of a plain server: told at once (not at the 30 s connect timeout), as a
    // configuration error.
    let started = std::time::Instant::now();
    let out = shoal()
        .args(["sessions", "count", "--store"])
        .arg(format!("rediss://:right-pw@127.0.0.1:{port}"))
        .env("SHOAL_REDIS__CONNECT_TIMEOUT", "30s")
        .output()
        .unwrap();
    let took = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("not TLS") && err.contains("redis://") && !err.contains("right-pw"),
        "{err}"
    );
    assert!(took < std::time::Duration::from_secs(10), "took {took:?}");
}

/// `shoal tail` follows what another process writes (every kind, in order, as JSON lines and
/// as text), and `shoal analytics` reports what the analytics consumer computed from it.
#[test]
fn tail_follows_another_process_and_analytics_report_it() {
    let server = RedisServer::start();
    let url = server.url();
    let rt = runtime();
    let store = rt.block_on(async {
        RedisStore::connect(
            RedisConfig::new(&url).with_feed(shoal_core::FeedConfig::default()),
            Limits::default(),
            Arc::new(SystemClock),
        )
        .await
        .unwrap()
    });
    // A follower started before the writes (from the start of this server's empty feed, so
    // a slow start under load cannot make it miss the first entries).
    let follower = std::process::Command::new(assert_cmd::cargo::cargo_bin("shoal"))
        .args([
            "--store", &url, "--json", "tail", "--from", "start", "--limit", "4", "--for", "60s",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let id = SessionId::new("tailed").unwrap();
    rt.block_on(async {
        let mut s = Session::new(id.clone(), Transport::StreamableHttp);
        s.client_info = Some(serde_json::json!({"name": "probe", "version": "1"}));
        store.create(s).await.unwrap();
        store
            .append_frames(
                &id,
                vec![
                    NewFrame::new(
                        Direction::ClientToServer,
                        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add"}}"#,
                    ),
                    NewFrame::new(
                        Direction::ServerToClient,
                        r#"{"jsonrpc":"2.0","id":1,"error":{"code":-1,"message":"no"}}"#,
                    ),
                ],
            )
            .await
            .unwrap();
        assert!(store.delete(&id).await.unwrap());
    });
    let out = follower.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = lines.iter().map(|l| l["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["created", "frame", "frame", "deleted"]);
    assert!(lines.iter().all(|l| l["session_id"] == "tailed"));
    assert_eq!(lines[0]["session"]["client_name"], "probe");
    assert_eq!(lines[1]["frame"]["tool"], "add");
    assert_eq!(lines[2]["frame"]["error"], "rpc");

    // The same entries as text, from the start, this session's frames only.
    let text = shoal()
        .args([
            "--store",
            &url,
            "tail",
            "--from",
            "start",
            "--session",
            "tailed",
            "--kinds",
            "frame",
            "--limit",
            "2",
            "--for",
            "10s",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    assert!(text.contains("#1 -> tools/call id=1 tool=add"), "{text}");
    assert!(text.contains("#2 <- response id=1 ERROR"), "{text}");

    // The analytics consumer (a proxy runs one) catches up; the command reports it.
    rt.block_on(async {
        let worker = shoal_redis::analytics::AnalyticsWorker::spawn(
            store.clone(),
            shoal_redis::analytics::AnalyticsConfig::default(),
        )
        .unwrap();
        let feed = store.feed().unwrap();
        for _ in 0..200 {
            use shoal_core::ChangeFeed as _;
            let stats = feed.stats().await.unwrap();
            if stats
                .groups
                .iter()
                .any(|g| g.name == "analytics" && g.lag == Some(0) && g.pending == 0)
            {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        drop(worker);
    });
    let v = json_out(shoal().args(["--store", &url, "--json", "analytics"]));
    assert_eq!(v["totals"]["created"], 1);
    assert_eq!(v["totals"]["deleted"], 1);
    assert_eq!(v["tools"][0]["name"], "add");
    assert_eq!(v["tools"][0]["errors"], 1);
    assert_eq!(v["methods"][0]["name"], "tools/call");
    let text = shoal()
        .args(["--store", &url, "analytics"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    assert!(text.contains("sessions: 1 created, 1 ended"), "{text}");

    // `stats` says how big the feed is and how far the analytics group is behind.
    let v = json_out(shoal().args(["--store", &url, "--json", "stats"]));
    assert_eq!(v["feed"]["length"], 4, "{v}");
    assert!(v["feed"]["bytes"].as_u64().unwrap() > 0, "{v}");
    let group = v["feed"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "analytics")
        .cloned()
        .unwrap();
    assert_eq!(
        (group["pending"].as_u64(), group["lag"].as_u64()),
        (Some(0), Some(0)),
        "{v}"
    );
    let text = shoal().args(["--store", &url, "stats"]).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    assert!(
        text.contains("4 entries (cap 100000 per shard, 1 shard"),
        "{text}"
    );
    assert!(
        text.contains("group analytics: 0 pending, 0 behind"),
        "{text}"
    );

    // The memory store has a feed but no analytics: a usage error that says so.
    shoal()
        .args(["--store", "memory://", "analytics"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("analytics are kept in Redis"));
}
