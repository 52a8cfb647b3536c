//! Planted secrets never reach any output: `shoal` runs with the most logging (`-vv`) in
//! situations that fail and log — an upstream that refuses connections, a store that cannot
//! be reached, a store that refuses the password — and everything it printed is searched for
//! the secrets in its URLs.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use shoal_testkit::redis_server::RedisServer;

const SECRETS: &[&str] = &[
    "PLANTEDPASS1",
    "PLANTEDTOKEN2",
    "PLANTEDPASS3",
    "PLANTEDQUERY4",
    "PLANTEDWRONG5",
    "PLANTEDBEARER6",
    "PLANTEDPASS7",
    "PLANTEDTOKEN8",
];

fn shoal() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shoal"));
    for (k, _) in std::env::vars() {
        if k.starts_with("SHOAL_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn assert_clean(what: &str, out: &[u8]) {
    let text = String::from_utf8_lossy(out);
    for s in SECRETS {
        assert!(!text.contains(s), "{what} printed {s}:\n{text}");
    }
}

/// One HTTP/1.1 request on a fresh connection; the response's status line.
fn post(port: u16, body: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let req = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\n\
         Authorization: Bearer PLANTEDBEARER6\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    resp.lines().next().unwrap_or_default().to_owned()
}

#[test]
fn a_proxy_whose_upstream_fails_logs_no_credentials() {
    let port = free_port();
    let closed = free_port();
    let upstream =
        format!("http://planted-user:PLANTEDPASS1@127.0.0.1:{closed}/mcp?token=PLANTEDTOKEN2");
    let mut child = shoal()
        .args(["-vv", "proxy", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--upstream", &upstream])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the proxy did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}"#;
    let status = post(port, init);
    assert!(status.contains("502"), "the upstream is down: {status}");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let all = [out.stdout, out.stderr].concat();
    let text = String::from_utf8_lossy(&all);
    assert!(
        text.contains("upstream failed") && text.contains("planted-user:***@"),
        "the failure was logged, redacted:\n{text}"
    );
    assert_clean("shoal proxy", &all);
}

#[test]
fn stores_that_fail_log_no_credentials() {
    let closed = free_port();
    let unreachable =
        format!("redis://user:PLANTEDPASS3@127.0.0.1:{closed}/0?password=PLANTEDQUERY4");
    let out = shoal()
        .args(["-vv", "sessions", "count", "--store", &unreachable])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert_clean("an unreachable store", &[out.stdout, out.stderr].concat());

    let server = RedisServer::builder()
        .args(["--requirepass", "the-real-one"])
        .start();
    let wrong = format!("redis://:PLANTEDWRONG5@127.0.0.1:{}", server.port());
    for args in [vec!["-vv", "health"], vec!["-vv", "sessions", "count"]] {
        let out = shoal()
            .args(&args)
            .args(["--store", &wrong])
            .output()
            .unwrap();
        assert_ne!(out.status.code(), Some(0), "{args:?}");
        assert_clean("a refused password", &[out.stdout, out.stderr].concat());
    }
}

#[test]
fn an_upstream_from_the_configuration_is_shown_redacted() {
    let closed = free_port();
    let upstream =
        format!("http://planted-user:PLANTEDPASS7@127.0.0.1:{closed}/mcp?token=PLANTEDTOKEN8");
    let out = shoal()
        .args(["-vv", "config", "show"])
        .env("SHOAL_PROXY__UPSTREAM", &upstream)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "planted-user:***@127.0.0.1:{closed}/mcp?token=***"
        )),
        "the upstream is shown, redacted:\n{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("configuration loaded"), "{stderr}");
    assert_clean("shoal config show", &[out.stdout, out.stderr].concat());

    let dir = std::env::temp_dir().join(format!("shoal-secrets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("shoal.toml");
    std::fs::write(&file, format!("[proxy]\nupstream = \"{upstream}\"\n")).unwrap();
    let out = shoal()
        .args(["-vv", "config", "check"])
        .arg(&file)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(0));
    assert_clean("shoal config check", &[out.stdout, out.stderr].concat());
}
