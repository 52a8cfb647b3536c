//! `shoal demo`: the README's first command. Runs the real binary (two proxy instances, the
//! built-in MCP server and the scripted client in one process) on the embedded memory store and
//! on a real Redis, and checks what it reports against what must hold.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use assert_cmd::Command;
use serde_json::{Value, json};
use shoal_testkit::redis_server::RedisServer;

fn shoal() -> Command {
    let mut cmd = Command::cargo_bin("shoal").unwrap();
    for (k, _) in std::env::vars() {
        if k.starts_with("SHOAL_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd.timeout(std::time::Duration::from_secs(120));
    cmd
}

fn run_json(cmd: &mut Command) -> Value {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "exit {:?}, stdout: {}, stderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// What every run must report: the cut stream resumed on the other instance with each progress
/// notification exactly once, the result delivered, the delete seen by both instances.
fn assert_demo_held(v: &Value, steps: u64, cut_after: u64) {
    assert_eq!(v["progress_steps"], json!(steps));
    let before: Vec<u64> = (1..=cut_after).collect();
    let after: Vec<u64> = (cut_after + 1..=steps).collect();
    assert_eq!(v["progress_before_cut"], json!(before), "{v}");
    assert_eq!(v["progress_after_resume"], json!(after), "{v}");
    assert_eq!(v["every_progress_exactly_once"], json!(true), "{v}");
    assert_eq!(v["countdown_result_received"], json!(true), "{v}");
    assert_eq!(v["deleted_status"], json!(200), "{v}");
    assert_eq!(
        v["after_delete_status_on_other_instance"],
        json!(404),
        "{v}"
    );
    assert_eq!(v["sessions_left"], json!(0), "{v}");
    assert_eq!(v["session"].as_str().map(str::len), Some(32), "{v}");
}

#[test]
fn demo_moves_a_session_between_instances_on_the_memory_store() {
    let v = run_json(shoal().args([
        "demo",
        "--json",
        "--steps",
        "5",
        "--interval-ms",
        "100",
        "--cut-after",
        "2",
    ]));
    assert_eq!(v["store"], json!("memory://"));
    assert_demo_held(&v, 5, 2);
}

#[test]
fn demo_prints_each_step_and_the_store() {
    let out = shoal()
        .args([
            "demo",
            "--steps",
            "3",
            "--interval-ms",
            "50",
            "--cut-after",
            "1",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "1. initialize on A",
        "2. on B (which never saw the session)",
        "3. tools/call countdown (3 steps) on A",
        "4. GET on B with Last-Event-ID",
        "5. DELETE on B → 200; then ping on A → 404",
        "#1 → ",
        "notifications/progress 3/3",
        "every step exactly once: yes",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    // Payloads never appear: the echo tool's text is only in the tool's own answer line.
    assert_eq!(text.matches("hello from B").count(), 1, "{text}");
}

#[test]
fn demo_runs_on_a_real_redis() {
    let server = RedisServer::start();
    let v = run_json(shoal().args([
        "--store",
        &server.url(),
        "demo",
        "--json",
        "--steps",
        "4",
        "--interval-ms",
        "100",
        "--cut-after",
        "1",
    ]));
    assert_demo_held(&v, 4, 1);
}

#[test]
fn demo_flags_out_of_range_are_usage_errors() {
    for args in [
        ["--steps", "1", "--cut-after", "1"],
        ["--steps", "51", "--cut-after", "1"],
        ["--steps", "4", "--cut-after", "4"],
        ["--steps", "4", "--cut-after", "0"],
        ["--steps", "4", "--interval-ms", "2001"],
    ] {
        let out = shoal().arg("demo").args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("must be"), "{args:?}: {err}");
    }
}
