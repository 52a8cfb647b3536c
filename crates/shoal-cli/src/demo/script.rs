//! The demo's script: one MCP session that moves between two proxy instances, with what the
//! store holds printed after every step.
//!
//! 1. `initialize` on A (A mints the session and stores it);
//! 2. `notifications/initialized`, `tools/list` and `tools/call echo` on B (B has never seen the
//!    session: it loads it from the store and forwards with the stored upstream session id);
//! 3. `tools/call countdown` on A, answered on an SSE stream; the client cuts the stream after a
//!    few progress notifications;
//! 4. the client resumes on B with `Last-Event-ID`: B replays the stream from the store and
//!    follows it live to the result — every progress notification arrives exactly once;
//! 5. `DELETE` on B; a request on A is then 404: the session is gone for the whole fleet.

use std::{collections::BTreeMap, sync::Arc};

use anyhow::{Context as _, bail};
use serde::Serialize;
use serde_json::{Value, json};
use shoal_core::{
    SessionId, SessionStore,
    notify::{LocalBus, NotifyBus},
};

use super::{
    client::{DemoClient, PostReply, SseStream, first_response},
    fleet::{Fleet, Instance},
    store_view::{StoreView, what},
    upstream::DemoServer,
};
use shoal_redis::RedisPubSub;

use crate::{cli::DemoArgs, commands::Ctx, error::Outcome, output};

/// What `--json` prints.
#[derive(Debug, Default, Serialize)]
struct Summary {
    session: String,
    store: String,
    progress_steps: u64,
    progress_before_cut: Vec<u64>,
    progress_after_resume: Vec<u64>,
    every_progress_exactly_once: bool,
    countdown_result_received: bool,
    deleted_status: u16,
    after_delete_status_on_other_instance: u16,
    sessions_left: u64,
}

/// The demo's output: lines on stdout, or nothing until the JSON summary.
struct Printer {
    quiet: bool,
}

impl Printer {
    fn line(&self, s: impl AsRef<str>) {
        if !self.quiet {
            println!("{}", s.as_ref());
        }
    }
}

/// Runs the demo on the configured store (the embedded memory store by default).
pub(crate) async fn run(ctx: &Ctx, args: &DemoArgs) -> anyhow::Result<Outcome> {
    args.validate()?;
    let opened = ctx.open().await?;
    let store = opened.store();
    let out = Printer { quiet: ctx.json };
    let server = DemoServer::start()
        .await
        .context("starting the demo MCP server")?;
    // Each instance gets its own end of a bus: an in-process one on an in-process store, two
    // connections to the store's own pub/sub on Redis (any topology).
    let (buses, wakeups): ([Option<Arc<dyn NotifyBus>>; 2], &str) = match opened.redis() {
        None => {
            let a = LocalBus::new();
            let b = a.endpoint();
            ([Some(Arc::new(a)), Some(Arc::new(b))], "an in-process bus")
        }
        Some(redis) => {
            let a = opened.notify_bus().await?;
            let b = RedisPubSub::connect(&redis.config, ctx.config.cache.bus.clone())
                .await
                .context("connecting instance B's pub/sub")?;
            ([a, Some(Arc::new(b))], "the store's Redis pub/sub")
        }
    };
    let fleet = Fleet::start(&server.url(), Arc::clone(&store), buses).await?;

    out.line(
        "Shoal demo: two proxy instances share one store in front of one MCP server \
         (all in this process, on loopback).",
    );
    out.line(format!(
        "  MCP server  {}  (built in: tools echo, countdown)",
        server.url()
    ));
    out.line(format!("  proxy A     {}", fleet.a.url()));
    out.line(format!("  proxy B     {}", fleet.b.url()));
    out.line(format!(
        "  store       {} ({}); wake-ups between A and B over {wakeups}",
        opened.url(),
        store.backend_name()
    ));

    let result = script(&out, &fleet, store.as_ref(), args, opened.url()).await;
    fleet.stop().await;
    server.stop();
    let closed = opened.close().await;
    let summary = result?;
    closed?;
    let ok = summary.every_progress_exactly_once
        && summary.countdown_result_received
        && summary.after_delete_status_on_other_instance == 404;
    if ctx.json {
        output::print_json(&summary)?;
    } else if ok {
        out.line(
            "\nDone: the session moved between instances, its stream resumed on the other \
                  instance with every event exactly once, and its delete held fleet-wide.",
        );
    } else {
        out.line("\nThe demo did not go as it should (see above).");
    }
    Ok(Outcome::from_ok(ok))
}

async fn script(
    out: &Printer,
    fleet: &Fleet,
    store: &dyn SessionStore,
    args: &DemoArgs,
    store_url: &str,
) -> anyhow::Result<Summary> {
    let (a, b) = (&fleet.a, &fleet.b);
    let mut view = StoreView::default();
    let mut client = DemoClient::new()?;
    let mut summary = Summary {
        store: store_url.to_owned(),
        progress_steps: args.steps,
        ..Summary::default()
    };

    // 1. initialize on A.
    let init = client.initialize(&a.url()).await?;
    let sid_text = client
        .session()
        .context("no session after initialize")?
        .to_owned();
    let sid = SessionId::new(&sid_text).context("the proxy minted an invalid session id")?;
    summary.session.clone_from(&sid_text);
    out.line(format!(
        "\n1. initialize on {} → session {sid_text} (server {} {}, protocol {})",
        a.name,
        init.pointer("/result/serverInfo/name")
            .and_then(Value::as_str)
            .unwrap_or("?"),
        init.pointer("/result/serverInfo/version")
            .and_then(Value::as_str)
            .unwrap_or("?"),
        init.pointer("/result/protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or("?"),
    ));
    show_store(out, &mut view, store, &sid).await?;

    // 2. The rest of the handshake and a tool call on B.
    handshake_and_echo(out, &client, b).await?;
    show_store(out, &mut view, store, &sid).await?;

    // 3. A progress stream on A, cut by the client.
    let mut seen = BTreeMap::<u64, u32>::new();
    let last_id = cut_countdown(out, &client, a, args, &mut summary, &mut seen).await?;
    show_store(out, &mut view, store, &sid).await?;

    // 4. Resume on B.
    out.line(format!(
        "\n4. GET on {} with Last-Event-ID: {last_id} → replayed from the store, then live",
        b.name
    ));
    let mut resumed = client.resume(&b.url(), &last_id).await?;
    summary.countdown_result_received = follow(out, &mut resumed, &mut summary, &mut seen).await?;
    summary.every_progress_exactly_once = seen.len() as u64 == args.steps
        && seen.values().all(|&n| n == 1)
        && seen.keys().copied().eq(1..=args.steps);
    out.line(format!(
        "   progress seen: {} before the cut + {} after the resume; every step exactly once: {}",
        summary.progress_before_cut.len(),
        summary.progress_after_resume.len(),
        if summary.every_progress_exactly_once {
            "yes"
        } else {
            "NO"
        }
    ));
    show_store(out, &mut view, store, &sid).await?;

    // 5. Delete on B; A then answers 404.
    summary.deleted_status = client.delete(&b.url()).await?;
    summary.after_delete_status_on_other_instance = client
        .post_status(&a.url(), &rpc(5, "ping", json!({})))
        .await?;
    summary.sessions_left = store.count(&shoal_core::SessionFilter::default()).await?;
    out.line(format!(
        "\n5. DELETE on {} → {}; then ping on {} → {} (gone for the whole fleet); the store \
         holds {} session(s)",
        b.name,
        summary.deleted_status,
        a.name,
        summary.after_delete_status_on_other_instance,
        summary.sessions_left
    ));
    print_metrics(out, a);
    print_metrics(out, b);
    Ok(summary)
}

/// Step 2: `notifications/initialized`, `tools/list` and `tools/call echo` on `b`, an
/// instance that has never seen the session.
async fn handshake_and_echo(
    out: &Printer,
    client: &DemoClient,
    b: &Instance,
) -> anyhow::Result<()> {
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    match client.post(&b.url(), &initialized).await? {
        PostReply::Accepted => {}
        _ => bail!("notifications/initialized on B was not answered 202"),
    }
    let list = json_reply(
        client
            .post(&b.url(), &rpc(2, "tools/list", json!({})))
            .await?,
    )
    .await?;
    let names: Vec<&str> = list
        .pointer("/result/tools")
        .and_then(Value::as_array)
        .map(|t| t.iter().filter_map(|x| x["name"].as_str()).collect())
        .unwrap_or_default();
    let echo = json_reply(
        client
            .post(
                &b.url(),
                &rpc(
                    3,
                    "tools/call",
                    json!({"name": "echo", "arguments": {"text": "hello from B"}}),
                ),
            )
            .await?,
    )
    .await?;
    out.line(format!(
        "\n2. on {} (which never saw the session): notifications/initialized → 202, tools/list → \
         [{}], tools/call echo → {:?}",
        b.name,
        names.join(", "),
        echo.pointer("/result/content/0/text")
            .and_then(Value::as_str)
            .unwrap_or("?")
    ));
    Ok(())
}

/// Step 3: `tools/call countdown` on `a`, answered on an SSE stream the client reads until
/// `--cut-after` progress notifications, then drops. Returns the last event id it saw.
async fn cut_countdown(
    out: &Printer,
    client: &DemoClient,
    a: &Instance,
    args: &DemoArgs,
    summary: &mut Summary,
    seen: &mut BTreeMap<u64, u32>,
) -> anyhow::Result<String> {
    let call = rpc(
        4,
        "tools/call",
        json!({
            "name": "countdown",
            "arguments": {"steps": args.steps, "interval_ms": args.interval_ms},
            "_meta": {"progressToken": "demo-countdown"},
        }),
    );
    let mut stream = match client.post(&a.url(), &call).await? {
        PostReply::Stream(s) => s,
        _ => bail!("tools/call countdown on A was not answered with an SSE stream"),
    };
    let mut last_id = None;
    out.line(format!(
        "\n3. tools/call countdown ({} steps) on {}: an SSE stream",
        args.steps, a.name
    ));
    while summary.progress_before_cut.len() < usize::try_from(args.cut_after).unwrap_or(usize::MAX)
    {
        let Some(e) = stream.next().await? else {
            bail!("the countdown stream on A ended before the cut");
        };
        if e.id.is_some() {
            last_id.clone_from(&e.id);
        }
        if let Some(p) = progress_of(&e.message()) {
            summary.progress_before_cut.push(p);
            *seen.entry(p).or_default() += 1;
        }
        out.line(format!(
            "   event {} {}",
            e.id.as_deref().unwrap_or("-"),
            label(&e.data)
        ));
    }
    drop(stream);
    let last_id: String = last_id.context("no event id on the countdown stream")?;
    out.line(format!(
        "   ✂ the client drops the connection to {} (last event id {last_id}); {} keeps \
         recording the upstream's events",
        a.name, a.name
    ));
    Ok(last_id)
}

/// Reads the resumed stream to the countdown's result; true when the result arrived.
async fn follow(
    out: &Printer,
    stream: &mut SseStream,
    summary: &mut Summary,
    seen: &mut BTreeMap<u64, u32>,
) -> anyhow::Result<bool> {
    while let Some(e) = stream.next().await? {
        out.line(format!(
            "   event {} {}",
            e.id.as_deref().unwrap_or("-"),
            label(&e.data)
        ));
        let msg = e.message();
        if let Some(p) = progress_of(&msg) {
            summary.progress_after_resume.push(p);
            *seen.entry(p).or_default() += 1;
        }
        if msg
            .as_ref()
            .is_some_and(|m| m.get("id") == Some(&json!(4)) && m.get("result").is_some())
        {
            return Ok(true);
        }
    }
    Ok(false)
}

fn rpc(id: u64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// The JSON-RPC response of a reply, whether it came as JSON or on a stream.
async fn json_reply(reply: PostReply) -> anyhow::Result<Value> {
    match reply {
        PostReply::Json(v) => Ok(v),
        PostReply::Stream(mut s) => first_response(&mut s).await,
        PostReply::Accepted => bail!("a request was answered 202 without a response"),
    }
}

/// The progress count of a `notifications/progress` message.
fn progress_of(msg: &Option<Value>) -> Option<u64> {
    let m = msg.as_ref()?;
    (m.get("method")?.as_str()? == "notifications/progress")
        .then(|| m.pointer("/params/progress")?.as_u64())
        .flatten()
}

/// An SSE event's data in a few words.
fn label(data: &str) -> String {
    what(data.as_bytes())
}

async fn show_store(
    out: &Printer,
    view: &mut StoreView,
    store: &dyn SessionStore,
    sid: &SessionId,
) -> anyhow::Result<()> {
    let snap = view.look(store, Some(sid)).await?;
    if !snap.session_exists {
        out.line(format!(
            "   store: {} session(s); this one is gone",
            snap.sessions
        ));
        return Ok(());
    }
    out.line(format!(
        "   store: {} session(s); this one: last seq {}, {} pending request(s); new frames:",
        snap.sessions, snap.last_seq, snap.pending
    ));
    for f in &snap.new_frames {
        out.line(format!("     {f}"));
    }
    Ok(())
}

fn print_metrics(out: &Printer, instance: &Instance) {
    let m = instance.handle.metrics();
    let requests: u64 = m.requests.iter().map(|r| r.get()).sum();
    out.line(format!(
        "   proxy {}: {requests} requests, {} session(s) created, {} loaded from the store, {} \
         SSE event(s) replayed from the store, {} wake-up(s) received",
        instance.name,
        m.sessions_created.get(),
        m.sessions_loaded.get(),
        m.sse_replayed.get(),
        m.wakeups_received.get(),
    ));
}
