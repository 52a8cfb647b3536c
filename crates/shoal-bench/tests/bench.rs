//! `shoal-bench` end to end: the real binary against the memory store and real Redis servers —
//! the raw baselines and cleanup on Redis, `--fallback memory --verify` across a stopped and a
//! killed-and-restarted server, and the cache's figures.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use assert_cmd::Command;
use serde_json::Value;
use shoal_testkit::{fault, redis_server::RedisServer};

/// The binary with no SHOAL_* or RUST_LOG variables from the test environment.
fn bench() -> Command {
    let mut cmd = Command::cargo_bin("shoal-bench").unwrap();
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

fn json_out(cmd: &mut Command) -> Value {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "exit {:?}, stderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    json_of(&out)
}

#[test]
fn help_lists_the_workload_and_the_store_flags() {
    let out = bench().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--store",
        "--fallback",
        "--cache",
        "--verify",
        "--mix",
        "--redis-concurrency",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help:\n{help}");
    }
}

#[test]
fn memory_run_verifies_and_reports_every_op() {
    let v = json_out(bench().args([
        "--json",
        "--verify",
        "--ops",
        "3000",
        "--sessions",
        "50",
        "--frames",
        "5",
        "--warmup",
        "0s",
        "--scaling-appends",
        "50",
    ]));
    assert_eq!(v["store"], "memory");
    let verify = &v["verify"];
    assert_eq!(
        (
            &verify["lost"],
            &verify["duplicated"],
            &verify["out_of_order"]
        ),
        (&Value::from(0), &Value::from(0), &Value::from(0)),
        "{v}"
    );
    let ops: Vec<&str> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["op"].as_str().unwrap())
        .collect();
    assert!(ops.contains(&"append") && ops.contains(&"get"), "{ops:?}");
    assert!(!v["baseline"].as_array().unwrap().is_empty(), "{v}");
}

#[test]
fn bad_settings_are_usage_errors() {
    let out = bench()
        .args(["--store", "memory://x", "--ops", "10"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = bench()
        .args(["--ops", "10"])
        .env("SHOAL_LIMITS__MAX_SESSIONS", "0")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("max_sessions"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A bench with `--fallback memory --verify` while the server is stopped (SIGSTOP) for 2 s
/// and then killed and restarted (AOF with fsync always, so acknowledged writes survive the
/// kill): nothing acknowledged is lost, duplicated or reordered.
/// A bench with `--fallback memory --verify` while the server is stopped (SIGSTOP) for 2 s
/// and then killed and restarted (AOF with fsync always, so acknowledged writes survive the
/// kill): nothing acknowledged is lost, duplicated or reordered.
#[test]
fn fallback_memory_bench_verifies_across_a_stop_and_a_restart() {
    let mut server = RedisServer::builder()
        .args(["--appendonly", "yes", "--appendfsync", "always"])
        .start();
    let bin = assert_cmd::cargo::cargo_bin("shoal-bench");
    let mut child = std::process::Command::new(bin)
        .args([
            "--store",
            &server.url(),
            "--fallback",
            "memory",
            "--verify",
            "--json",
            "--duration",
            "9s",
            "--sessions",
            "100",
            "--frames",
            "5",
            "--concurrency",
            "4",
            "--warmup",
            "0s",
            "--no-baseline",
            "--scaling-appends",
            "0",
            // Bounded load: an unthrottled bench against an open breaker journals tens of
            // thousands of entries, and replaying them against fsync-always Redis on a loaded
            // CI machine can outlast the bench's 60 s settle limit.
            "--rate",
            "800",
        ])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the set-up (100 sessions, each with a frame list) to be written, so the faults
    // hit the timed phase.
    let started = Instant::now();
    loop {
        let keys: u64 = server
            .cli(&[
                "EVAL",
                "return #redis.call('KEYS', ARGV[1])",
                "0",
                "*}:frames",
            ])
            .trim()
            .parse()
            .unwrap_or(0);
        if keys >= 100 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the bench's set-up did not finish: {keys} keys"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let frozen = fault::freeze(&server);
    std::thread::sleep(Duration::from_secs(2));
    frozen.thaw();
    std::thread::sleep(Duration::from_secs(1));
    fault::kill_and_restart_after(&mut server, Duration::from_secs(2));

    let started = Instant::now();
    let out = loop {
        if let Some(_status) = child.try_wait().unwrap() {
            break child.wait_with_output().unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "the bench did not end"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let r = json_of(&out);
    assert!(
        out.status.success(),
        "exit {:?}: {r}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v = &r["verify"];
    assert_eq!(
        (&v["lost"], &v["duplicated"], &v["out_of_order"]),
        (&Value::from(0), &Value::from(0), &Value::from(0)),
        "{r}"
    );
    assert!(v["checked"].as_u64().unwrap() > 500, "{r}");
    let res = &r["resilience"];
    assert!(res["breaker_opened"].as_u64().unwrap() >= 1, "{res}");
    assert_eq!(res["breaker"], "closed", "{res}");
    assert_eq!(res["journal_entries"], 0, "{res}");
    assert_eq!(res["settle"]["settled"], true, "{res}");
    assert_eq!(res["settle"]["unresolved_seqs"], 0, "{res}");
    assert!(
        res["counters"]
            .as_object()
            .unwrap()
            .keys()
            .any(|k| k.starts_with("shoal_resilient_breaker_transitions_total")),
        "{res}"
    );
    let rows = r["timeline"]["rows"].as_array().unwrap();
    assert!(rows.len() >= 8, "{r}");
    assert!(rows.iter().any(|row| row["breaker"] != "closed"), "{r}");
}

#[test]
fn bench_with_the_cache_reports_hits_and_compares() {
    let server = RedisServer::start();
    let out = bench()
        .args([
            "--store",
            &server.url(),
            "--cache",
            "--fallback",
            "memory",
            "--json",
            "--verify",
            "--duration",
            "1s",
            "--sessions",
            "50",
            "--frames",
            "5",
            "--concurrency",
            "4",
            "--warmup",
            "0s",
            "--no-baseline",
            "--scaling-appends",
            "0",
            "--compare-cache",
            "1",
        ])
        .output()
        .unwrap();
    let r = json_of(&out);
    assert!(out.status.success(), "{r}");
    let v = &r["verify"];
    assert_eq!(v["lost"], 0, "{r}");
    let c = &r["cache"];
    assert!(c["hits"].as_u64().unwrap() > 0, "{c}");
    assert_eq!(c["consistency"], "invalidate", "{c}");
    let cmp = &r["compare_cache"];
    assert_eq!(cmp["rounds"], 1, "{cmp}");
    assert!(cmp["median_get_cached"].as_f64().unwrap() > 0.0, "{cmp}");
    assert!(cmp["get_ratio"].as_f64().is_some(), "{cmp}");
    assert!(
        cmp["uncached"][0]["redis_commands_per_touch"]
            .as_f64()
            .is_some(),
        "{cmp}"
    );
    assert_eq!(r["resilience"]["breaker"], "closed", "{r}");
    assert!(r["redis_baseline"].is_null(), "{r}");
}

#[test]
fn bench_against_redis_measures_the_raw_baselines_and_cleans_up() {
    let server = RedisServer::start();
    let store = format!("{}/3", server.url());
    let v = json_out(bench().args([
        "--json",
        "--store",
        &store,
        "--sessions",
        "20",
        "--frames",
        "5",
        "--ops",
        "400",
        "--warmup",
        "0s",
        "--scaling-appends",
        "20",
        "--no-baseline",
        "--verify",
        "--repeat",
        "2",
        "--redis-concurrency",
        "2,4",
        "--redis-duration",
        "200ms",
        "--redis-ops",
        "300",
        "--redis-benchmark-requests",
        "2000",
        "--redis-peer",
    ]));
    assert_eq!(v["store"], "redis");
    assert_eq!(v["verify"]["lost"], 0);
    assert_eq!(v["total"]["errors"], 0, "{}", v["errors"]);
    let rb = &v["redis_baseline"];
    assert!(rb["skipped"].is_null(), "{rb}");
    assert_eq!(rb["rounds"], 2);
    for (script, loaded) in rb["scripts_loaded_by_shoal"].as_object().unwrap() {
        assert_eq!(
            loaded, true,
            "Shoal did not load the raw side's {script} script"
        );
    }
    assert!(rb["session_hash_bytes"].as_u64().unwrap() > 100, "{rb}");
    let levels = rb["levels"].as_array().unwrap();
    assert_eq!(levels.len(), 2);
    for (level, c) in levels.iter().zip([2, 4]) {
        assert_eq!(level["concurrency"], c);
        let ops: Vec<&str> = level["ops"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["op"].as_str().unwrap())
            .collect();
        assert_eq!(ops, ["get", "touch", "append", "create"]);
        for o in level["ops"].as_array().unwrap() {
            for side in ["shoal", "raw"] {
                assert!(o[side]["count"].as_u64().unwrap() > 0, "{o}");
                assert_eq!(o[side]["errors"], 0, "{side} {o} {rb}");
            }
            assert!(o["ratio"].as_f64().unwrap() > 0.0, "{o}");
            assert_eq!(o["rounds"].as_array().unwrap().len(), 2);
            // The peer (tower-sessions-redis-store) beside create, touch and get.
            let call = match o["op"].as_str().unwrap() {
                "create" => Some("create"),
                "touch" => Some("save"),
                "get" => Some("load"),
                _ => None,
            };
            match call {
                Some(call) => {
                    assert_eq!(o["peer_call"], call, "{o}");
                    assert!(o["peer"]["count"].as_u64().unwrap() > 0, "{o}");
                    assert_eq!(o["peer"]["errors"], 0, "peer {o} {rb}");
                    assert!(o["ratio_vs_peer"].as_f64().unwrap() > 0.0, "{o}");
                }
                None => assert!(o["peer"].is_null(), "{o}"),
            }
        }
        assert!(level["raw_get_blob"]["count"].as_u64().unwrap() > 0);
        assert!(level["get_vs_blob"].as_f64().unwrap() > 0.0);
    }
    let goals: Vec<&str> = rb["goals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert!(
        goals
            .iter()
            .any(|g| g.contains("raw GET of one blob at c4")),
        "{goals:?}"
    );
    // redis-benchmark's figures, or an explicit reason why this run has none (runs that
    // failed three times on a starved machine): never a silently missing field.
    let tool = &rb["redis_benchmark"];
    if tool.is_null() {
        let why = rb["redis_benchmark_skipped"].as_str().unwrap_or_default();
        assert!(
            why.contains("redis-benchmark"),
            "no figures and no reason: {rb}"
        );
        eprintln!("redis-benchmark gave no figures in this run: {why}");
    } else {
        assert!(tool["hgetall"]["rps"].as_f64().unwrap() > 0.0, "{rb}");
        assert!(
            tool["evalsha_append"]["rps"].as_f64().unwrap() > 0.0,
            "{rb}"
        );
        assert!(
            goals
                .iter()
                .any(|g| g.contains("redis-benchmark EVALSHA append")),
            "{goals:?}"
        );
    }

    // Nothing the bench wrote is left but Shoal's counters, its dataset marker and the change
    // feed (the fleet's capped history of changes, not the bench's data; the peer's records
    // included).
    let keys = server.cli(&["-n", "3", "--scan"]);
    let left: Vec<&str> = keys
        .lines()
        .filter(|k| {
            !k.starts_with("shoal:metrics:")
                && *k != "shoal:dataset"
                && !k.starts_with("shoal:feed:")
        })
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    // Shoal's own counters recorded the bench's frames.
    let frames: u64 = server
        .cli(&["-n", "3", "GET", "shoal:metrics:frames"])
        .trim()
        .parse()
        .unwrap_or(0);
    assert!(frames > 100, "frames counter {frames}");
}

/// A `SHOAL_*` value that figment's parser would panic on is refused with a usage error
/// naming the variable.
#[test]
fn an_environment_value_figment_cannot_parse_is_a_usage_error() {
    let out = bench()
        .env("SHOAL_REDIS__KEY_PREFIX", "\"é\\n\"")
        .args(["--duration", "1s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SHOAL_REDIS__KEY_PREFIX"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
