//! Applying a batch of feed entries to the analytics structures: per shard, one
//! `analytics_apply.lua` call per 256 entries, which acknowledges each entry in the consumer
//! group and applies only those its acknowledgement took (so nothing counts twice).

use shoal_core::{Change, ChangeKind, Result};

use super::AnalyticsConfig;
use crate::RedisStore;

/// Entries per script call.
const CHUNK: usize = 256;

/// The detail the script reads for `c` (the wire format's `x`).
fn detail(c: &Change) -> String {
    match c.kind {
        ChangeKind::Created => c.session.as_ref().map(|s| s.to_detail()),
        ChangeKind::Frame => c.frame.as_ref().map(|f| f.to_detail()),
        ChangeKind::Updated => c.status.map(|s| s.as_str().to_string()),
        _ => None,
    }
    .unwrap_or_default()
}

/// Applies `batch` (entries of any shards, delivered to `config.group`); returns how many
/// were applied now (the rest had been acknowledged already).
pub async fn apply(store: &RedisStore, config: &AnalyticsConfig, batch: &[Change]) -> Result<u64> {
    let mut applied = 0;
    for shard in 0..store.feed_shard_count() {
        let mine: Vec<&Change> = batch.iter().filter(|c| c.id.shard == shard).collect();
        for chunk in mine.chunks(CHUNK) {
            let keys = [store.keys().feed(shard), store.keys().analytics(shard, "")];
            let mut args: Vec<Vec<u8>> = vec![
                config.group.clone().into_bytes(),
                config.max_names.to_string().into_bytes(),
                config
                    .unpaired_ttl
                    .as_secs()
                    .max(1)
                    .to_string()
                    .into_bytes(),
            ];
            for c in chunk {
                args.push(c.id.stream_id().into_bytes());
                args.push(c.kind.as_str().as_bytes().to_vec());
                args.push(c.session_id.clone().into_bytes());
                args.push(detail(c).into_bytes());
                args.push(
                    c.created_at
                        .map(|t| t.as_millis().to_string())
                        .unwrap_or_default()
                        .into_bytes(),
                );
                args.push(c.id.ms.to_string().into_bytes());
            }
            let v = store
                .eval("analytics", &store.scripts().analytics_apply, &keys, args)
                .await?;
            if let redis::Value::Int(n) = v {
                applied += n.max(0) as u64;
            }
        }
    }
    Ok(applied)
}
