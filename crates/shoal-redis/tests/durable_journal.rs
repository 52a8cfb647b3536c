//! A process killed with `SIGKILL` while Redis is unreachable and its breaker is open, then
//! started again: with `resilience.journal.path` it replays from the journal file every write
//! it acknowledged during the outage, and the drain stores each in Redis exactly once.
//!
//! The writer is this test binary run again (the ignored test `journal_writer_process`,
//! started by the parent with the settings in its environment): it connects, Redis is frozen
//! (`SIGSTOP`), it keeps appending to sessions Redis holds and creating sessions of its own,
//! printing one line per acknowledged write, until the parent kills it at an arbitrary
//! moment. The parent then thaws Redis, opens a new store on the same journal file and
//! checks every acknowledged write against what Redis holds. Every wait is bounded.

use std::{
    collections::{HashMap, HashSet},
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use shoal_core::{
    Direction, FrameQuery, Limits, MemoryStore, NewFrame, Session, SessionId, SessionStore,
    SystemClock, Transport,
    resilient::{BreakerState, FallbackMode, FsyncPolicy, ResilienceConfig, Resilient},
};
use shoal_redis::{RedisConfig, RedisStore};
use shoal_testkit::{fault, redis_server::RedisServer};

const CHILD: &str = "SHOAL_JOURNAL_WRITER";
const HELD: usize = 4;
/// Acknowledged journaled writes to wait for before the kill.
const ACKS_BEFORE_KILL: usize = 300;

fn sid(s: &str) -> SessionId {
    SessionId::new(s).unwrap_or_else(|e| panic!("{e}"))
}

fn config(journal: &Path) -> ResilienceConfig {
    let mut c = ResilienceConfig::default().with_fallback(FallbackMode::Memory);
    c.op_timeout = Duration::from_millis(300);
    c.bulk_timeout = Duration::from_secs(3);
    c.breaker.failure_threshold = 2;
    c.breaker.cooldown = Duration::from_millis(200);
    c.breaker.close_after = 1;
    c.retry.max_retries = 0;
    c.health.timeout = Duration::from_millis(500);
    c.journal.path = Some(journal.to_owned());
    c.journal.fsync = FsyncPolicy::Always;
    c
}

async fn open(url: &str, prefix: &str, journal: &Path) -> Resilient<RedisStore, MemoryStore> {
    let redis = RedisStore::connect(
        RedisConfig::new(url)
            .with_key_prefix(prefix)
            .with_response_timeout(Duration::from_millis(250))
            .with_connect_timeout(Duration::from_millis(500)),
        Limits::default(),
        Arc::new(SystemClock),
    )
    .await
    .unwrap_or_else(|e| panic!("connect: {e}"));
    Resilient::new(redis, MemoryStore::new(), config(journal))
        .unwrap_or_else(|e| panic!("resilient: {e}"))
}

/// The writer process (run by the parent test, never on its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the writer process of a_process_killed_during_an_outage_loses_no_acknowledged_write"]
async fn journal_writer_process() {
    let url = std::env::var(CHILD).unwrap_or_else(|_| panic!("run by the parent test only"));
    let prefix = std::env::var("SHOAL_JOURNAL_PREFIX").unwrap_or_else(|e| panic!("{e}"));
    let journal =
        PathBuf::from(std::env::var("SHOAL_JOURNAL_PATH").unwrap_or_else(|e| panic!("{e}")));
    let store = open(&url, &prefix, &journal).await;
    let out = std::io::stdout();
    let say = |line: String| {
        let mut o = out.lock();
        let _ = writeln!(o, "{line}");
        let _ = o.flush();
    };
    say("READY".into());
    for i in 0..100_000u64 {
        if i % 10 == 9 {
            let id = sid(&format!("local-{i}"));
            if store
                .create(Session::new(id.clone(), Transport::StreamableHttp))
                .await
                .is_ok()
            {
                say(format!("CREATED {id} {:?}", store.breaker_state()));
                for k in 0..3 {
                    let content = format!("l{i}-{k}");
                    let f = NewFrame::new(Direction::ServerToClient, content.clone());
                    if store.append_frames(&id, vec![f]).await.is_ok() {
                        say(format!("ACK {id} {content} {:?}", store.breaker_state()));
                    }
                }
            }
            continue;
        }
        let id = sid(&format!("held-{}", i as usize % HELD));
        let content = format!("f{i}");
        let f = NewFrame::new(Direction::ServerToClient, content.clone());
        match store.append_frames(&id, vec![f]).await {
            Ok(_) => say(format!("ACK {id} {content} {:?}", store.breaker_state())),
            Err(e) => say(format!("ERR {id} {content} {e}")),
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_killed_during_an_outage_loses_no_acknowledged_write() {
    let server = RedisServer::start();
    let prefix = "dj";
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let journal = dir.path().join("journal");
    {
        let seed = RedisStore::connect(
            RedisConfig::new(server.url()).with_key_prefix(prefix),
            Limits::default(),
            Arc::new(SystemClock),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        for h in 0..HELD {
            seed.create(Session::new(
                sid(&format!("held-{h}")),
                Transport::StreamableHttp,
            ))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        }
    }

    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    let mut child = Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            "journal_writer_process",
            "--nocapture",
        ])
        .env(CHILD, server.url())
        .env("SHOAL_JOURNAL_PREFIX", prefix)
        .env("SHOAL_JOURNAL_PATH", &journal)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn the writer: {e}"));
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Wait for the writer to connect, then take Redis away.
    loop {
        assert!(Instant::now() < deadline, "the writer never got ready");
        match lines.next() {
            Some(Ok(l)) if l == "READY" => break,
            Some(Ok(_)) => {}
            _ => panic!("the writer exited before it was ready"),
        }
    }
    let frozen = fault::freeze(&server);
    let mut acked: HashMap<String, Vec<String>> = HashMap::new();
    let mut created: HashSet<String> = HashSet::new();
    let mut journaled = 0usize;
    let mut errors = 0usize;
    while journaled < ACKS_BEFORE_KILL {
        assert!(
            Instant::now() < deadline,
            "too few acknowledged writes during the outage"
        );
        let Some(Ok(line)) = lines.next() else {
            panic!("the writer stopped early")
        };
        let parts: Vec<&str> = line.split(' ').collect();
        match parts.as_slice() {
            ["ACK", id, content, breaker] => {
                acked
                    .entry((*id).to_owned())
                    .or_default()
                    .push((*content).to_owned());
                if *breaker != "Closed" {
                    journaled += 1;
                }
            }
            ["CREATED", id, _] => {
                created.insert((*id).to_owned());
            }
            ["ERR", ..] => errors += 1,
            _ => {}
        }
    }
    // SIGKILL at an arbitrary moment of the writing.
    child.kill().unwrap_or_else(|e| panic!("kill: {e}"));
    let _ = child.wait();
    // Lines the writer printed before it died are acknowledged too.
    for line in lines.map_while(std::result::Result::ok) {
        let parts: Vec<&str> = line.split(' ').collect();
        match parts.as_slice() {
            ["ACK", id, content, _] => acked
                .entry((*id).to_owned())
                .or_default()
                .push((*content).to_owned()),
            ["CREATED", id, _] => {
                created.insert((*id).to_owned());
            }
            _ => {}
        }
    }
    frozen.thaw();
    let journal_bytes = std::fs::metadata(&journal).map(|m| m.len()).unwrap_or(0);

    let store = open(&server.url(), prefix, &journal).await;
    let report = store
        .recover()
        .await
        .unwrap_or_else(|e| panic!("recover: {e}"));
    let started = Instant::now();
    while store.stats().journal_entries > 0 || store.breaker_state() != BreakerState::Closed {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the recovered journal did not drain: {:?}",
            store.stats()
        );
        store.probe().await;
        if store.breaker_state() == BreakerState::Closed {
            store.drain_journal().await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut lost = 0usize;
    let mut duplicated = 0usize;
    let mut out_of_order = 0usize;
    let redis = store.primary();
    let mut frames_acked = 0usize;
    for (id, contents) in &acked {
        frames_acked += contents.len();
        let stored: Vec<String> = match redis.frames(&sid(id), &FrameQuery::after(0, 10_000)).await
        {
            Ok(page) => page
                .frames
                .iter()
                .map(|f| String::from_utf8_lossy(&f.content).into_owned())
                .collect(),
            Err(shoal_core::Error::NotFound { .. }) => Vec::new(),
            Err(e) => panic!("frames of {id}: {e}"),
        };
        let mut seen = HashSet::new();
        duplicated += stored.iter().filter(|c| !seen.insert((*c).clone())).count();
        let positions: Vec<usize> = contents
            .iter()
            .filter_map(|c| stored.iter().position(|s| s == c))
            .collect();
        lost += contents.len() - positions.len();
        out_of_order += positions.windows(2).filter(|w| w[0] > w[1]).count();
    }
    let mut sessions_lost = 0usize;
    for id in &created {
        if redis
            .get(&sid(id))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none()
        {
            sessions_lost += 1;
        }
    }
    eprintln!(
        "acknowledged: {frames_acked} frames ({journaled} while the breaker was open), \
         {} sessions created; writer errors {errors}; journal file {journal_bytes} bytes; \
         recovered {report:?}; lost {lost}, duplicated {duplicated}, out of order \
         {out_of_order}, sessions lost {sessions_lost}",
        created.len()
    );
    assert_eq!(lost, 0, "acknowledged frames lost");
    assert_eq!(duplicated, 0, "frames stored twice");
    assert_eq!(out_of_order, 0, "acknowledged order broken");
    assert_eq!(sessions_lost, 0, "acknowledged sessions lost");
    assert!(report.replayed > 0, "nothing was replayed: {report:?}");
}
