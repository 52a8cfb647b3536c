//! A stdio upstream behind two proxy instances: the second instance restores the session by
//! starting its own server process and replaying the stored initialize handshake, once, before
//! it forwards anything.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::sync::Arc;

use common::*;
use serde_json::{Value, json};
use shoal_core::{MemoryStore, SessionStore};
use shoal_proxy::UpstreamConfig;

fn upstream() -> Option<UpstreamConfig> {
    let ok = std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIP: python3 is not installed; the stdio fixture needs it");
        return None;
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/stdio_server.py"
    );
    Some(UpstreamConfig::Stdio {
        command: "python3".into(),
        args: vec!["-u".into(), script.into()],
        env: vec![],
    })
}

async fn tools_meta(c: &Client, url: &str, sid: &str, id: u64) -> Value {
    let v = c.call(url, sid, id, "tools/list", json!({})).await;
    assert_eq!(v["result"]["tools"][0]["name"], "count");
    v["result"]["_meta"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_session_restored_on_another_instance() {
    let Some(up) = upstream() else { return };
    let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    let a = start_proxy(config(up.clone(), "a"), store.clone()).await;
    let b = start_proxy(config(up.clone(), "b"), store.clone()).await;
    let c = Client::new("2025-06-18");
    let sid = c.initialize(&a.url()).await;
    let on_a = tools_meta(&c, &a.url(), &sid, 1).await;
    assert_eq!(on_a["handshakes"], 1);

    // B has never seen the session: it starts its own server and replays the handshake.
    let on_b = tools_meta(&c, &b.url(), &sid, 2).await;
    assert_ne!(on_a["pid"], on_b["pid"], "a separate server process on B");
    assert_eq!(on_b["handshakes"], 1, "exactly one replayed initialize");
    assert_eq!(b.handle.metrics().sessions_restored.get(), 1);

    // A streaming call through the restored session.
    let v = c
        .call(
            &b.url(),
            &sid,
            3,
            "tools/call",
            json!({"name":"count","arguments":{"n":4}}),
        )
        .await;
    assert_eq!(v["result"]["content"][0]["text"], "counted 4");

    // Many concurrent first requests on a third instance: one restore (single flight), and
    // none is forwarded before the handshake is done.
    let d = start_proxy(config(up, "d"), store).await;
    let mut tasks = Vec::new();
    for i in 0..6u64 {
        let (c, url, sid) = (c.clone(), d.url(), sid.clone());
        tasks.push(tokio::spawn(async move {
            tools_meta(&c, &url, &sid, 10 + i).await
        }));
    }
    let mut pids = std::collections::BTreeSet::new();
    for t in tasks {
        let m = t.await.unwrap();
        assert_eq!(m["handshakes"], 1);
        pids.insert(m["pid"].to_string());
    }
    assert_eq!(pids.len(), 1);
    assert_eq!(d.handle.metrics().sessions_restored.get(), 1);

    // DELETE ends it everywhere.
    let r = c
        .http
        .delete(d.url())
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for url in [a.url(), b.url()] {
        let r = c
            .post_req(
                &url,
                Some(&sid),
                &json!({"jsonrpc":"2.0","id":99,"method":"ping"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }
}
