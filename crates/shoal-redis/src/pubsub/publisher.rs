//! The publisher task: drains the outbox, one pipeline per channel at a time, retrying
//! failures.

use std::{
    sync::{Arc, Weak, atomic::Ordering},
    time::Duration,
};

use futures_util::future::join_all;
use tokio::sync::Notify;

use super::bus::BusState;
use crate::conn::Conn;

/// Runs until the bus is dropped: on each notification, sends everything queued — `PUBLISH`
/// (or `SPUBLISH` on a Cluster, routed to the channel's shard), one pipeline per channel, all
/// channels at once — and puts everything back for a retry (with backoff) if any send failed.
pub(crate) async fn publish_loop(
    weak: Weak<BusState>,
    notify: Arc<Notify>,
    conn: Conn,
    deadline: Duration,
) {
    let mut failures = 0u32;
    loop {
        notify.notified().await;
        loop {
            let Some(state) = weak.upgrade() else { return };
            state.sending.store(true, Ordering::Release);
            let out = state.take_outbox();
            if out.is_empty() {
                state.sending.store(false, Ordering::Release);
                break;
            }
            let batches = out.batches(
                &state.origin,
                state.config.max_ids_per_message,
                &state.channels,
            );
            let command = if state.sharded { "SPUBLISH" } else { "PUBLISH" };
            let sends = batches.iter().map(|b| {
                let mut pipe = redis::pipe();
                for m in &b.payloads {
                    pipe.cmd(command).arg(&b.channel).arg(m).ignore();
                }
                let mut conn = conn.clone();
                async move {
                    match tokio::time::timeout(deadline, pipe.query_async::<()>(&mut conn)).await {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(e)) => Err(format!("{}: {e}", b.channel)),
                        Err(_) => Err(format!("{}: no reply within {deadline:?}", b.channel)),
                    }
                }
            });
            let failed: Vec<String> = join_all(sends)
                .await
                .into_iter()
                .filter_map(Result::err)
                .collect();
            if failed.is_empty() {
                failures = 0;
                let sum = |f: fn(&super::outbox::Batch) -> u64| batches.iter().map(f).sum::<u64>();
                state.published_msgs.fetch_add(
                    sum(|b| b.payloads.len() as u64 - b.wakeups),
                    Ordering::Relaxed,
                );
                state
                    .published_ids
                    .fetch_add(sum(|b| b.ids), Ordering::Relaxed);
                state
                    .published_wakeups
                    .fetch_add(sum(|b| b.wakeups), Ordering::Relaxed);
                state.sending.store(false, Ordering::Release);
            } else {
                state.publish_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    channel = state.channels.invalidate(),
                    errors = ?failed,
                    "redis bus: publish failed; will retry"
                );
                // At least once: batches that went through are sent again with the rest.
                state.requeue(out);
                state.sending.store(false, Ordering::Release);
                let delay = state.config.backoff(failures);
                failures = failures.saturating_add(1);
                drop(state);
                tokio::time::sleep(delay).await;
            }
        }
    }
}
