//! `redis-benchmark`, the server's own load generator, as the ceiling of what the server does:
//! 64 clients, 16 commands pipelined per client, bounded by a request count and a timeout —
//! and, at 16 clients without pipelining, as the latency floor a client at the bench's
//! concurrency meets on this server (what the p95 goals are compared with).

use std::{ffi::OsString, process::Stdio, time::Duration};

use anyhow::{Context as _, bail};
use serde::Serialize;

/// Clients of every `redis-benchmark` run.
pub(crate) const CLIENTS: u32 = 64;
/// Pipeline depth of every `redis-benchmark` run.
pub(crate) const PIPELINE: u32 = 16;
/// Clients of the latency-floor runs (the bench's p95 goals are at concurrency 16).
pub(crate) const FLOOR_CLIENTS: u32 = 16;
/// Bound on one `redis-benchmark` run.
const TIMEOUT: Duration = Duration::from_secs(120);

/// Where `redis-benchmark` connects (plain TCP, no credentials).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    /// Host.
    pub(crate) host: String,
    /// Port.
    pub(crate) port: u16,
    /// Database number.
    pub(crate) db: i64,
}

impl Target {
    /// The target of a standalone store URL, or why `redis-benchmark` cannot be pointed at it
    /// (TLS, credentials — never put on a command line — or a Unix socket).
    pub(crate) fn of_url(url: &str) -> Result<Target, String> {
        use redis::IntoConnectionInfo as _;
        let info = url
            .into_connection_info()
            .map_err(|e| format!("the store URL is not a redis-rs URL: {e}"))?;
        let settings = info.redis_settings();
        if settings.password().is_some() || settings.username().is_some() {
            return Err(
                "the store URL has credentials (they are never passed on a command line)".into(),
            );
        }
        match info.addr() {
            redis::ConnectionAddr::Tcp(host, port) => Ok(Target {
                host: host.clone(),
                port: *port,
                db: settings.db(),
            }),
            redis::ConnectionAddr::TcpTls { .. } => {
                Err("the store uses TLS (redis-benchmark runs without it here)".into())
            }
            _ => Err("the store is not on a TCP address".into()),
        }
    }
}

/// One `redis-benchmark --csv` result line.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct ToolStats {
    /// Requests per second.
    pub(crate) rps: f64,
    /// Median latency, milliseconds (of a pipelined request: includes queueing in the batch).
    pub(crate) p50_ms: Option<f64>,
    /// 95th percentile, milliseconds.
    pub(crate) p95_ms: Option<f64>,
    /// 99th percentile, milliseconds.
    pub(crate) p99_ms: Option<f64>,
}

/// Parses `redis-benchmark --csv` output: a header line, then one result per test. A result's
/// first cell is the command line itself, which may hold newlines, commas and quotes (a
/// script's arguments); the cells after it are numbers, so they are read from the end.
pub(crate) fn parse_csv(out: &str) -> anyhow::Result<ToolStats> {
    let start = out
        .find("\"test\"")
        .context("redis-benchmark printed no CSV header")?;
    let (header, row) = out[start..]
        .split_once('\n')
        .context("redis-benchmark printed no result line")?;
    let row = row.trim();
    if row.is_empty() {
        bail!("redis-benchmark printed no result line");
    }
    let names: Vec<&str> = header
        .trim()
        .split("\",\"")
        .map(|c| c.trim_matches('"'))
        .collect();
    let mut values: Vec<&str> = row
        .rsplitn(names.len(), "\",\"")
        .map(|c| c.trim_matches('"'))
        .collect();
    values.reverse();
    let get = |name: &str| -> Option<f64> {
        let i = names.iter().position(|n| *n == name)?;
        values.get(i)?.parse().ok()
    };
    let Some(rps) = get("rps") else {
        bail!("redis-benchmark's CSV has no rps column: {header}");
    };
    Ok(ToolStats {
        rps,
        p50_ms: get("p50_latency_ms"),
        p95_ms: get("p95_latency_ms"),
        p99_ms: get("p99_latency_ms"),
    })
}

/// Whether `redis-benchmark` can be run.
pub(crate) async fn available() -> bool {
    tokio::process::Command::new("redis-benchmark")
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .status()
        .await
        .is_ok_and(|s| s.success())
}

/// Runs `redis-benchmark -c 64 -P 16 -n requests --csv <command…>` against `target`.
pub(crate) async fn run(
    target: &Target,
    requests: u64,
    command: Vec<OsString>,
) -> anyhow::Result<ToolStats> {
    run_with(target, CLIENTS, PIPELINE, requests, command).await
}

/// Tries of one run: a run that fails or prints nothing usable (a starved machine can make
/// redis-benchmark give up) is tried again before the round reports an error.
const ATTEMPTS: u32 = 3;

/// Runs `redis-benchmark -c clients -P pipeline -n requests --csv <command…>` against `target`,
/// up to [`ATTEMPTS`] times until one run yields a result; the error is the last run's.
pub(crate) async fn run_with(
    target: &Target,
    clients: u32,
    pipeline: u32,
    requests: u64,
    command: Vec<OsString>,
) -> anyhow::Result<ToolStats> {
    let mut attempt = 1;
    loop {
        match run_once(target, clients, pipeline, requests, command.clone()).await {
            Ok(stats) => return Ok(stats),
            Err(e) if attempt >= ATTEMPTS => {
                return Err(e.context(format!("redis-benchmark failed {ATTEMPTS} times")));
            }
            Err(e) => {
                tracing::debug!(error = %format!("{e:#}"), attempt, "redis-benchmark run failed; trying again");
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// One `redis-benchmark` run.
async fn run_once(
    target: &Target,
    clients: u32,
    pipeline: u32,
    requests: u64,
    command: Vec<OsString>,
) -> anyhow::Result<ToolStats> {
    let mut cmd = tokio::process::Command::new("redis-benchmark");
    cmd.arg("-h")
        .arg(&target.host)
        .arg("-p")
        .arg(target.port.to_string())
        .arg("--dbnum")
        .arg(target.db.to_string())
        .arg("-c")
        .arg(clients.to_string())
        .arg("-P")
        .arg(pipeline.to_string())
        .arg("-n")
        .arg(requests.to_string())
        .arg("--csv")
        .args(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(TIMEOUT, cmd.output())
        .await
        .with_context(|| format!("redis-benchmark did not finish within {TIMEOUT:?}"))?
        .context("running redis-benchmark")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "redis-benchmark failed ({}): {}{}",
            out.status,
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    parse_csv(&stdout).with_context(|| format!("reading redis-benchmark's output: {stdout}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_redis_benchmark_csv() {
        let out = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\
                   \"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\
                   \"HGETALL k\",\"487804.88\",\"1.9\",\"0.2\",\"1.871\",\"2.5\",\"3.1\",\"9\"\n";
        let s = parse_csv(out).unwrap();
        assert_eq!(s.rps, 487_804.88);
        assert_eq!(s.p50_ms, Some(1.871));
        assert_eq!(s.p99_ms, Some(3.1));
        assert!(parse_csv("nothing useful").is_err());
        // A script's arguments in the command cell: newlines, tabs, commas and quotes.
        let out = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\
                   \"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\
                   \"EVALSHA abc 4 k1 k2 1 100000 60000 s\nc\t\t256\",\"x\",\"y 9\",\"50200.80\",\
                   \"20.182\",\"0.840\",\"21.231\",\"25.503\",\"27.471\",\"31.583\"\n";
        let s = parse_csv(out).unwrap();
        assert_eq!(s.rps, 50_200.80);
        assert_eq!(s.p95_ms, Some(25.503));
        assert!(parse_csv("\"test\",\"rps\"\n").is_err());
    }

    #[test]
    fn targets_come_from_plain_urls_only() {
        assert_eq!(
            Target::of_url("redis://127.0.0.1:7000/3"),
            Ok(Target {
                host: "127.0.0.1".into(),
                port: 7000,
                db: 3
            })
        );
        let e = Target::of_url("redis://:pw@127.0.0.1:7000").unwrap_err();
        assert!(e.contains("credentials") && !e.contains("pw@"), "{e}");
        assert!(Target::of_url("rediss://127.0.0.1:7000").is_err());
    }
}
