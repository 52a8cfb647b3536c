//! End-to-end tests of the `shoal` binary: the real executable, file:// stores in temporary
//! directories, exports made with the library.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;
use shoal_core::{
    Direction, MemoryStore, NewFrame, PendingRequest, Session, SessionId, SessionStatus,
    SessionStore, Transport, store::modify, transfer,
};

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

fn url(path: &Path) -> String {
    format!("file://{}", path.display())
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

/// Three sessions made with the library, exported: `alpha` (http, active, 3 frames of which
/// one binary, 1 pending), `beta` (stdio, completed, principal alice), `gamma` (streamable_http,
/// active, frames on two streams).
fn fixture_export() -> Vec<u8> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = MemoryStore::new();
        let alpha = SessionId::new("alpha").unwrap();
        let beta = SessionId::new("beta").unwrap();
        let gamma = SessionId::new("gamma").unwrap();
        store
            .create(Session::new(alpha.clone(), Transport::Http))
            .await
            .unwrap();
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
            .create(Session::new(beta.clone(), Transport::Stdio))
            .await
            .unwrap();
        modify(&store, &beta, 3, |s| {
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
                    NewFrame::new(Direction::ServerToClient, format!("event {i}"))
                        .with_stream(stream),
                )
                .await
                .unwrap();
        }
        let mut out = Vec::new();
        transfer::export(&store, &mut out, |_| {}).await.unwrap();
        out
    })
}

/// A temp dir with the fixture export at `fixture.jsonl` and an (absent) store file.
struct Setup {
    dir: tempfile::TempDir,
    fixture: PathBuf,
    store: PathBuf,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let fixture = dir.path().join("fixture.jsonl");
        std::fs::write(&fixture, fixture_export()).unwrap();
        let store = dir.path().join("store.jsonl");
        Setup {
            dir,
            fixture,
            store,
        }
    }

    /// The store file already holding the fixture.
    fn loaded() -> Self {
        let s = Setup::new();
        std::fs::copy(&s.fixture, &s.store).unwrap();
        s
    }

    fn url(&self) -> String {
        url(&self.store)
    }

    fn count(&self) -> u64 {
        let v = json_out(shoal().args(["sessions", "count", "--json", "--store", &self.url()]));
        v["count"].as_u64().unwrap()
    }
}

#[test]
fn help_lists_commands_store_urls_and_exit_codes() {
    shoal()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("sessions"))
        .stdout(predicate::str::contains("import"))
        .stdout(predicate::str::contains("file://PATH"))
        .stdout(predicate::str::contains("Exit codes"))
        .stdout(predicate::str::contains("130"));
    shoal()
        .args(["sessions", "frames", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("--after"))
        .stdout(predicate::str::contains("--raw"));
    shoal()
        .arg("--version")
        .assert()
        .success()
        .stdout(predicate::str::starts_with("shoal "));
}

#[test]
fn usage_errors_exit_2() {
    shoal().assert().code(2);
    shoal()
        .arg("frobnicate")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("frobnicate"));
    shoal()
        .args(["sessions", "list", "--limit", "0"])
        .assert()
        .code(2);
    shoal()
        .args(["sessions", "list", "--status", "zombie"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("completed"));
    shoal()
        .args(["import", "--on-existing", "merge"])
        .assert()
        .code(2);
    shoal()
        .args(["sessions", "frames", "x", "--raw", "--json"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--raw"));
}

#[test]
fn malformed_session_ids_are_usage_errors() {
    shoal()
        .args(["sessions", "show", "a:b"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("reserved character ':'"));
    shoal()
        .args(["sessions", "delete", "ok", "has space"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("non-visible"));
    let long = "x".repeat(200);
    shoal()
        .args(["sessions", "frames", &long])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("128"));
}

#[test]
fn store_flag_works_before_and_after_the_subcommand_and_from_env() {
    let s = Setup::loaded();
    shoal()
        .args(["--store", &s.url(), "sessions", "count"])
        .assert()
        .success()
        .stdout("3\n");
    shoal()
        .args(["sessions", "count", "--store", &s.url()])
        .assert()
        .success()
        .stdout("3\n");
    shoal()
        .env("SHOAL_STORE", s.url())
        .args(["sessions", "count"])
        .assert()
        .success()
        .stdout("3\n");
    // The flag beats the environment.
    let empty = s.dir.path().join("empty.jsonl");
    shoal()
        .env("SHOAL_STORE", url(&empty))
        .args(["sessions", "count", "--store", &s.url()])
        .assert()
        .success()
        .stdout("3\n");
    // The default is an empty memory:// store.
    shoal()
        .args(["sessions", "count"])
        .assert()
        .success()
        .stdout("0\n");
}

#[test]
fn config_file_env_and_flags_layer_in_order() {
    let s = Setup::loaded();
    let cfg = s.dir.path().join("shoal.toml");
    std::fs::write(
        &cfg,
        format!("store = \"{}\"\n[limits]\nmax_sessions = 50\n", s.url()),
    )
    .unwrap();
    // The file's store is used...
    shoal()
        .args(["--config", cfg.to_str().unwrap(), "sessions", "count"])
        .assert()
        .success()
        .stdout("3\n");
    // ...SHOAL_CONFIG works too, and the environment beats the file...
    let v = json_out(
        shoal()
            .env("SHOAL_CONFIG", &cfg)
            .env("SHOAL_LIMITS__MAX_SESSIONS", "60")
            .args(["config", "show", "--json"]),
    );
    assert_eq!(v["store"], s.url());
    assert_eq!(v["limits"]["max_sessions"], 60);
    assert_eq!(v["limits"]["session_ttl"], "1day");
    // ...and flags beat both.
    let v = json_out(
        shoal()
            .env("SHOAL_CONFIG", &cfg)
            .env("SHOAL_STORE", "file:///from/env.jsonl")
            .args(["config", "show", "--json", "--store", "memory://", "-v"]),
    );
    assert_eq!(v["store"], "memory://");
    assert_eq!(v["log"]["level"], "debug");
    // Limits from the config reach the store: two sessions do not fit in max_sessions = 2.
    shoal()
        .env("SHOAL_LIMITS__MAX_SESSIONS", "2")
        .args(["sessions", "count", "--store", &s.url()])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("limit exceeded: sessions"));
}

#[test]
fn config_check_reports_good_bad_and_unknown_files() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "store = \"memory://\"\n[limits]\nmax_sessions = 7\nsession_ttl = \"2h\"\n\
         [memory]\nsweep_interval = \"5s\"\n[log]\nlevel = \"info\"\nformat = \"json\"\n",
    )
    .unwrap();
    shoal()
        .args(["config", "check", good.to_str().unwrap()])
        .assert()
        .success()
        .stdout(predicate::str::contains("max_sessions = 7"))
        .stdout(predicate::str::contains("session_ttl = \"2h\""))
        .stdout(predicate::str::contains("[memory]"));
    let v = json_out(shoal().args(["config", "check", good.to_str().unwrap(), "--json"]));
    assert_eq!(v["limits"]["max_sessions"], 7);
    assert_eq!(v["memory"]["sweep_interval"], "5s");
    assert_eq!(v["log"]["format"], "json");

    // The printed TOML is itself a valid config file.
    let printed = shoal()
        .args(["config", "check", good.to_str().unwrap()])
        .output()
        .unwrap()
        .stdout;
    let again = dir.path().join("again.toml");
    std::fs::write(&again, printed).unwrap();
    shoal()
        .args(["config", "check", again.to_str().unwrap()])
        .assert()
        .success();

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[limits]\nsession_ttl = \"soon\"\n").unwrap();
    shoal()
        .args(["config", "check", bad.to_str().unwrap()])
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains("\"soon\""))
        .stderr(predicate::str::contains("limits.session_ttl"))
        .stderr(predicate::str::contains(bad.to_str().unwrap()));

    let unknown = dir.path().join("unknown.toml");
    std::fs::write(&unknown, "[limits]\nmax_sesions = 5\n").unwrap();
    shoal()
        .args(["config", "check", unknown.to_str().unwrap()])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("limits.max_sesions"))
        .stderr(predicate::str::contains(unknown.to_str().unwrap()));

    let cache = dir.path().join("cache.toml");
    std::fs::write(&cache, "[cache]\nttl = \"1s\"\nttl_ms = 5\n").unwrap();
    shoal()
        .args(["config", "check", cache.to_str().unwrap()])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cache.ttl_ms"))
        .stderr(predicate::str::contains(cache.to_str().unwrap()));

    shoal()
        .args([
            "config",
            "check",
            dir.path().join("nope.toml").to_str().unwrap(),
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("nope.toml"));

    // A bad --config stops every command with exit 2, before touching any store.
    shoal()
        .args(["--config", bad.to_str().unwrap(), "sessions", "count"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("limits.session_ttl"));
    // So does a bad environment value, named by its variable.
    shoal()
        .env("SHOAL_MEMORY__SWEEP_INTERVAL", "often")
        .args(["sessions", "count"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("SHOAL_MEMORY__SWEEP_INTERVAL"));
}

#[test]
fn file_store_round_trip() {
    let s = Setup::new();
    let store = s.url();

    // Import the library-made export into a new file store.
    let v = json_out(shoal().args([
        "import",
        "--in",
        s.fixture.to_str().unwrap(),
        "--store",
        &store,
        "--json",
    ]));
    assert_eq!(v["imported"], 3);
    assert_eq!(v["frames"], 7);
    assert_eq!(v["written"], true);
    assert_eq!(v["failed"].as_array().unwrap().len(), 0);
    assert!(s.store.exists());

    // list
    let v = json_out(shoal().args(["sessions", "list", "--json", "--store", &store]));
    let ids: Vec<&str> = v["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["alpha", "beta", "gamma"]);
    assert_eq!(v["next_cursor"], Value::Null);
    assert_eq!(v["sessions"][1]["principal"], "alice");
    shoal()
        .args(["sessions", "list", "--store", &store])
        .assert()
        .success()
        .stdout(predicate::str::starts_with("ID "))
        .stdout(predicate::str::contains("gamma"))
        .stdout(predicate::str::contains("streamable_http"));

    // filters and paging
    let v = json_out(shoal().args([
        "sessions",
        "list",
        "--json",
        "--status",
        "completed",
        "--store",
        &store,
    ]));
    assert_eq!(v["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(v["sessions"][0]["id"], "beta");
    let v = json_out(shoal().args([
        "sessions", "list", "--json", "--limit", "2", "--store", &store,
    ]));
    assert_eq!(v["sessions"].as_array().unwrap().len(), 2);
    let cursor = v["next_cursor"].as_str().unwrap().to_owned();
    let v = json_out(shoal().args([
        "sessions", "list", "--json", "--limit", "2", "--cursor", &cursor, "--store", &store,
    ]));
    assert_eq!(v["sessions"][0]["id"], "gamma");
    assert_eq!(v["next_cursor"], Value::Null);
    let v = json_out(shoal().args(["sessions", "list", "--all", "--json", "--store", &store]));
    assert_eq!(v["sessions"].as_array().unwrap().len(), 3);
    shoal()
        .args([
            "sessions",
            "count",
            "--transport",
            "stdio",
            "--store",
            &store,
        ])
        .assert()
        .success()
        .stdout("1\n");
    shoal()
        .args([
            "sessions",
            "count",
            "--principal",
            "alice",
            "--status",
            "active",
        ])
        .args(["--store", &store])
        .assert()
        .success()
        .stdout("0\n");

    // show
    let v = json_out(shoal().args(["sessions", "show", "alpha", "--json", "--store", &store]));
    assert_eq!(v["session"]["id"], "alpha");
    assert_eq!(v["session"]["transport"], "http");
    assert_eq!(v["frame_count"], 3);
    assert_eq!(v["pending_count"], 1);
    assert_eq!(v["pending"][0]["method"], "tools/list");
    shoal()
        .args(["sessions", "show", "alpha", "--store", &store])
        .assert()
        .success()
        .stdout(predicate::str::contains("pending requests: 1"))
        .stdout(predicate::str::contains("3 (seqs 1..=3)"));

    // frames: text as text, binary as base64; paging; streams; raw
    let v = json_out(shoal().args(["sessions", "frames", "alpha", "--json", "--store", &store]));
    let frames = v["frames"].as_array().unwrap();
    assert_eq!(frames.len(), 3);
    assert_eq!(
        frames[0]["content"],
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize"}"#
    );
    assert_eq!(frames[0]["direction"], "client_to_server");
    assert_eq!(frames[2]["content_b64"], "//4A");
    assert!(frames[2].get("content").is_none());
    assert_eq!(v["has_more"], false);
    assert_eq!(v["last_seq"], 3);
    let v = json_out(shoal().args([
        "sessions", "frames", "alpha", "--after", "1", "--limit", "1", "--json", "--store", &store,
    ]));
    assert_eq!(v["frames"].as_array().unwrap().len(), 1);
    assert_eq!(v["frames"][0]["seq"], 2);
    assert_eq!(v["has_more"], true);
    assert_eq!(v["next_after"], 2);
    let v = json_out(shoal().args([
        "sessions", "frames", "gamma", "--stream", "post-1", "--json", "--store", &store,
    ]));
    let seqs: Vec<u64> = v["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [2, 4]);
    shoal()
        .args(["sessions", "frames", "gamma", "--raw", "--store", &store])
        .assert()
        .success()
        .stdout("event 0\nevent 1\nevent 2\nevent 3\n");
    shoal()
        .args(["sessions", "frames", "alpha", "--store", &store])
        .assert()
        .success()
        .stdout(predicate::str::contains("#1 "))
        .stdout(predicate::str::contains("base64://4A"));

    // export reproduces the imported file byte for byte
    let exported = s.dir.path().join("exported.jsonl");
    shoal()
        .args([
            "export",
            "--out",
            exported.to_str().unwrap(),
            "--store",
            &store,
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("exported 3 sessions (7 frames)"));
    let original = std::fs::read(&s.fixture).unwrap();
    assert_eq!(std::fs::read(&exported).unwrap(), original);

    // delete one; missing ids are reported and make the exit code 1
    let v = json_out(shoal().args(["sessions", "delete", "beta", "--json", "--store", &store]));
    assert_eq!(v["deleted"], serde_json::json!(["beta"]));
    assert_eq!(v["missing"], serde_json::json!([]));
    assert_eq!(s.count(), 2);
    shoal()
        .args(["sessions", "delete", "beta", "gamma", "--store", &store])
        .assert()
        .code(1)
        .stdout("deleted gamma\n")
        .stderr(predicate::str::contains("not found: beta"));
    shoal()
        .args([
            "sessions",
            "delete",
            "beta",
            "--missing-ok",
            "--store",
            &store,
        ])
        .assert()
        .success();
    shoal()
        .args(["sessions", "show", "beta", "--store", &store])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("session \"beta\" not found"));
    shoal()
        .args(["sessions", "frames", "gamma", "--store", &store])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("not found"));

    // export to stdout: the original minus the deleted sessions' lines
    let out = shoal()
        .args(["export", "--store", &store])
        .output()
        .unwrap();
    assert!(out.status.success());
    let original = String::from_utf8(original).unwrap();
    let expected: String = original
        .lines()
        .filter(|l| !l.contains("\"id\":\"beta\"") && !l.contains("\"id\":\"gamma\""))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), expected);
    assert!(String::from_utf8_lossy(&out.stderr).contains("exported 1 session ("));
}

#[test]
fn import_of_garbage_reports_the_line_and_changes_nothing() {
    let s = Setup::loaded();
    let before = std::fs::read(&s.store).unwrap();
    let fixture = std::fs::read_to_string(&s.fixture).unwrap();
    let mut lines = fixture.lines();
    let header = lines.next().unwrap();
    // A valid new session (alpha renamed), then garbage on line 3, then another valid one.
    let alpha = lines.next().unwrap();
    let delta = alpha.replace("\"alpha\"", "\"delta\"");
    let epsilon = alpha.replace("\"alpha\"", "\"epsilon\"");
    let garbage = s.dir.path().join("garbage.jsonl");
    std::fs::write(
        &garbage,
        format!("{header}\n{delta}\n{{\"frames\": oops\n{epsilon}\n"),
    )
    .unwrap();

    shoal()
        .args([
            "import",
            "--in",
            garbage.to_str().unwrap(),
            "--store",
            &s.url(),
        ])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("line 3:"))
        // The summary says what was written (nothing), not what the check pass counted.
        .stdout(predicate::str::contains("imported 0 sessions (0 frames)"))
        .stderr(predicate::str::contains("nothing was imported"))
        .stderr(predicate::str::contains("may have been").not());
    assert_eq!(
        std::fs::read(&s.store).unwrap(),
        before,
        "store file untouched"
    );
    assert_eq!(s.count(), 3);

    let v = {
        let out = shoal()
            .args([
                "import",
                "--json",
                "--in",
                garbage.to_str().unwrap(),
                "--store",
                &s.url(),
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    assert_eq!(v["failed"][0]["line"], 3);
    assert_eq!(v["written"], false);

    // --dry-run checks and writes nothing.
    shoal()
        .args([
            "import",
            "--dry-run",
            "--in",
            garbage.to_str().unwrap(),
            "--store",
            &s.url(),
        ])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("would import 2 sessions"));
    assert_eq!(s.count(), 3);

    // --keep-going imports the good lines and still exits 1.
    shoal()
        .args([
            "import",
            "--keep-going",
            "--in",
            garbage.to_str().unwrap(),
            "--store",
            &s.url(),
        ])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("imported 2 sessions"))
        .stdout(predicate::str::contains("line 3:"));
    assert_eq!(s.count(), 5);

    // A file that is not an export at all.
    let not_export = s.dir.path().join("not-export.jsonl");
    std::fs::write(&not_export, "hello\n").unwrap();
    shoal()
        .args([
            "import",
            "--in",
            not_export.to_str().unwrap(),
            "--store",
            &s.url(),
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("line 1"));
}

#[test]
fn import_handles_existing_ids_and_stdin() {
    let s = Setup::loaded();
    let before = std::fs::read(&s.store).unwrap();
    // Every id exists: refused, store unchanged.
    shoal()
        .args([
            "import",
            "--in",
            s.fixture.to_str().unwrap(),
            "--store",
            &s.url(),
        ])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("already exists"));
    assert_eq!(std::fs::read(&s.store).unwrap(), before);
    let v = json_out(shoal().args([
        "import",
        "--on-existing",
        "skip",
        "--json",
        "--in",
        s.fixture.to_str().unwrap(),
        "--store",
        &s.url(),
    ]));
    assert_eq!(v["skipped"], 3);
    assert_eq!(v["imported"], 0);
    let v = json_out(shoal().args([
        "import",
        "--on-existing",
        "replace",
        "--json",
        "--in",
        s.fixture.to_str().unwrap(),
        "--store",
        &s.url(),
    ]));
    assert_eq!(v["imported"], 3);
    assert_eq!(s.count(), 3);

    // stdin (the default --in)
    let fresh = s.dir.path().join("fresh.jsonl");
    shoal()
        .args(["import", "--store", &url(&fresh)])
        .write_stdin(std::fs::read(&s.fixture).unwrap())
        .assert()
        .success()
        .stdout(predicate::str::contains("imported 3 sessions (7 frames)"));
    assert_eq!(
        std::fs::read(&fresh).unwrap(),
        std::fs::read(&s.fixture).unwrap()
    );
}

#[test]
fn sweep_removes_expired_sessions_and_saves() {
    let s = Setup::new();
    let fixture = std::fs::read_to_string(&s.fixture).unwrap();
    // Make beta long expired.
    let patched: String = fixture
        .lines()
        .map(|l| {
            if l.contains("\"id\":\"beta\"") {
                let v: Value = serde_json::from_str(l).unwrap();
                let mut v = v;
                v["session"]["expires_at"] = Value::from(1_000);
                format!("{}\n", serde_json::to_string(&v).unwrap())
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&s.store, patched).unwrap();
    let v = json_out(shoal().args(["sweep", "--json", "--store", &s.url()]));
    assert_eq!(v["removed"], 1);
    assert_eq!(v["repaired"], 0);
    assert!(
        !std::fs::read_to_string(&s.store)
            .unwrap()
            .contains("\"beta\"")
    );
    shoal()
        .args(["sweep", "--store", &s.url()])
        .assert()
        .success()
        .stdout("removed 0 expired sessions, repaired 0 index entries\n");
    assert_eq!(s.count(), 2);
}

#[test]
fn health_reports_status_and_fails_for_unusable_stores() {
    let s = Setup::loaded();
    shoal()
        .arg("health")
        .assert()
        .success()
        .stdout(predicate::str::contains("status:"))
        .stdout(predicate::str::contains("healthy"));
    let v = json_out(shoal().args(["health", "--json", "--store", &s.url()]));
    assert_eq!(v["status"], "healthy");
    assert_eq!(v["backend"], "memory");
    assert_eq!(v["details"]["sessions"], "3");
    assert_eq!(v["details"]["file"], s.store.display().to_string());
    assert!(v["latency_us"].is_u64());

    let out = shoal()
        .args(["health", "--json", "--store", "redis://:secret@127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "unhealthy");
    let error = v["error"].as_str().unwrap();
    assert!(
        error.contains("cannot connect to redis at redis://:***@127.0.0.1:1"),
        "{error}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("secret"));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("secret"));
}

#[test]
fn store_url_errors_are_clear() {
    // Nothing listens on port 1: a runtime error (exit 1), not a usage error.
    shoal()
        .args([
            "sessions",
            "list",
            "--store",
            "redis://u:secret@127.0.0.1:1",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "cannot connect to redis at redis://u:***@127.0.0.1:1",
        ))
        .stderr(predicate::str::contains("secret").not());
    shoal()
        .args(["sessions", "list", "--store", "redis+sentinel://s1:26379"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("master"));
    shoal()
        .args(["sessions", "list", "--store", "postgres://db"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unsupported store URL scheme"))
        .stderr(predicate::str::contains("file://PATH"));
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt.jsonl");
    std::fs::write(
        &corrupt,
        "{\"format\":\"shoal-sessions\",\"version\":1}\nnope\n",
    )
    .unwrap();
    shoal()
        .args(["sessions", "count", "--store", &url(&corrupt)])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("line 2"))
        .stderr(predicate::str::contains("corrupt.jsonl"));
    shoal()
        .args([
            "sessions",
            "count",
            "--store",
            "file:///no/such/dir/s.jsonl",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("/no/such/dir"));
}

#[test]
fn json_output_is_one_document_and_logs_stay_on_stderr() {
    let s = Setup::loaded();
    let out = shoal()
        .args(["-vv", "sessions", "list", "--json", "--store", &s.url()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["sessions"].as_array().unwrap().len(), 3);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("store opened"), "{stderr}");

    let out = shoal()
        .args([
            "--log-format",
            "json",
            "-v",
            "sessions",
            "count",
            "--store",
            &s.url(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"3\n");
    let first_log = String::from_utf8_lossy(&out.stderr)
        .lines()
        .next()
        .unwrap()
        .to_owned();
    let log: Value = serde_json::from_str(&first_log).unwrap();
    assert!(log["level"].is_string(), "{first_log}");

    // RUST_LOG is honoured when no -v is given.
    let out = shoal()
        .env("RUST_LOG", "debug")
        .args(["sessions", "count", "--store", &s.url()])
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"3\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("store opened"));
    // Quiet by default.
    shoal()
        .args(["sessions", "count", "--store", &s.url()])
        .assert()
        .success()
        .stderr("");
}

/// `shoal console` refuses what it cannot serve safely before it binds anything.
#[test]
fn console_settings_are_checked_before_listening() {
    // Off loopback without a token: refused (the address is never bound).
    shoal()
        .env_remove("SHOAL_CONSOLE_TOKEN")
        .args(["console", "--listen", "0.0.0.0:0"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not on loopback"));
    shoal()
        .args(["console", "--proxy", "ftp://example"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("console.proxies"));
    shoal()
        .env("SHOAL_CONSOLE_TOKEN", "short")
        .args(["console", "--listen", "127.0.0.1:0"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("at least 16"));
    shoal()
        .args(["console", "--listen", "nowhere"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not an address"));
    shoal()
        .args(["console", "--scrape-interval", "1ms"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("scrape_interval"));
}
