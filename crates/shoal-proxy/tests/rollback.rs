//! Resuming after the store rolled back: a real Redis restarted from a snapshot older than
//! the last frames a client received. The lost frames' seqs are handed out again to new
//! frames; a client that resumes with the `Last-Event-ID` of a lost frame gets exactly the new
//! frames — none skipped because its seq "was already seen", none of the old ones again.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use common::*;
use serde_json::json;
use shoal_core::{AppendedFrames, Direction, NewFrame, SessionId, SessionStore};
use shoal_proxy::{UpstreamConfig, event_id::EventIdCodec};
use shoal_redis::{RedisConfig, RedisStore};
use shoal_testkit::redis_server::RedisServer;

const STREAM: &str = "prollback";
const BOUND: Duration = Duration::from_secs(30);

fn progress(n: u64) -> NewFrame {
    let v = json!({"jsonrpc":"2.0","method":"notifications/progress",
                   "params":{"progressToken":"t","progress":n}});
    NewFrame::new(Direction::ServerToClient, v.to_string())
        .with_stream(STREAM)
        .with_content_type("application/json")
}

/// Appends `frame`, retrying (bounded) while the store reconnects after a restart.
async fn append(store: &dyn SessionStore, id: &SessionId, frame: NewFrame) -> AppendedFrames {
    let started = Instant::now();
    loop {
        match store
            .append_frames_with_epoch(id, vec![frame.clone()])
            .await
        {
            Ok(a) => return a,
            Err(e) => {
                assert!(started.elapsed() < BOUND, "append: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_from_a_rolled_back_event_gets_exactly_the_new_frames() {
    let mut server = RedisServer::start();
    let store: Arc<dyn SessionStore> = Arc::new(
        RedisStore::connect_default(RedisConfig::new(server.url()))
            .await
            .unwrap(),
    );
    let f = fake_upstream().await;
    let mut cfg = config(UpstreamConfig::Http { url: f.url() }, "a");
    cfg.open_standalone_stream = false;
    let a = start_proxy(cfg, store.clone()).await;
    let c = Client::new("2025-11-25");
    let sid = c.initialize(&a.url()).await;
    let id = SessionId::new(&sid).unwrap();

    // Progress 0..10 is in the snapshot; 10..15 reaches the client, then is lost.
    let mut old = Vec::new();
    for n in 0..15 {
        if n == 10 {
            assert!(server.cli(&["SAVE"]).contains("OK"));
        }
        old.push(append(&*store, &id, progress(n)).await);
    }
    server.restart();
    let mut new = Vec::new();
    for n in 100..105 {
        new.push(append(&*store, &id, progress(n)).await);
    }
    let result = NewFrame::new(
        Direction::ServerToClient,
        json!({"jsonrpc":"2.0","id":"r","result":{}}).to_string(),
    )
    .with_stream(STREAM)
    .with_content_type("application/json");
    append(&*store, &id, result).await;
    // The new frames took the lost frames' seqs, in another epoch.
    assert_eq!(
        new[0].seqs, old[10].seqs,
        "the lost seqs are handed out again"
    );
    assert_ne!(new[0].epoch, old[10].epoch);

    let codec = EventIdCodec::new(&key());
    let resume = async |seq: u64, epoch: u64| {
        let resp = c
            .http
            .get(a.url())
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &sid)
            .header("mcp-protocol-version", "2025-11-25")
            .header("last-event-id", codec.encode(&sid, STREAM, seq, epoch))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        read_progress(&mut SseReader::new(resp)).await
    };
    // The client's last event was progress 14 (lost): it gets exactly 100..105.
    let last = &old[14];
    let run = resume(last.seqs[0], last.epoch).await;
    assert_eq!(run.progress, (100..105).collect::<Vec<_>>());
    assert!(run.result.is_some(), "and the result");
    for eid in &run.ids {
        let decoded = codec.decode(&sid, eid).unwrap();
        assert_eq!(
            decoded.epoch, new[0].epoch,
            "{eid}: ids carry the new epoch"
        );
    }
    assert_eq!(a.handle.metrics().resumes_rewound.get(), 1);
    // A client whose last event was progress 9 (kept in the snapshot) gets the same.
    let kept = &old[9];
    let run = resume(kept.seqs[0], kept.epoch).await;
    assert_eq!(run.progress, (100..105).collect::<Vec<_>>());
    assert_eq!(
        a.handle.metrics().resumes_rewound.get(),
        1,
        "nothing to rewind"
    );
    // An id of the new epoch resumes after itself.
    let run = resume(new[2].seqs[0], new[2].epoch).await;
    assert_eq!(run.progress, vec![103, 104]);
}
