//! The peer of the comparison: `tower-sessions-redis-store` (over `fred`), the Redis session
//! store of the tower-sessions ecosystem, against the same server in the same run. Its
//! `create` (one `SET NX EXAT`), `save` (one `SET XX EXAT`) and `load` (`GET` and a
//! MessagePack decode) are set beside Shoal's `create`, `touch` and `get`.
//!
//! The peer talks through one `fred` client (one connection, pipelined), as Shoal and the raw
//! side each talk through one multiplexed connection. Its records carry as many bytes of data
//! as a Shoal pool session's meta hash. Ids are made from the run's nonce, the measurement's
//! tag and the call, so every key the peer wrote can be deleted afterwards.

use std::{collections::HashMap, sync::Arc};

use anyhow::Context as _;
use serde_json::Value;
use time::OffsetDateTime;
use tower_sessions_core::{
    SessionStore as PeerStore,
    session::{Id, Record},
};
use tower_sessions_redis_store::{
    RedisStore as PeerRedisStore,
    fred::{
        clients::Client,
        prelude::{ClientLike as _, Config},
        types::Builder,
    },
};

use super::driver::{OpFn, OpFuture};

/// What the peer's calls share.
pub(crate) struct PeerCtx {
    store: PeerRedisStore<Client>,
    client: Client,
    /// The pool's records, one per Shoal pool session.
    records: Vec<Record>,
    /// The data a new record carries.
    data: HashMap<String, Value>,
    /// High bits of every id this run makes.
    nonce: u64,
    /// Session lifetime, seconds.
    ttl_s: i64,
}

/// The peer's name in reports.
pub(crate) const PEER: &str = "tower-sessions-redis-store 0.16 (fred 10)";

/// Which peer call stands beside a Shoal op (`None`: the peer has none, e.g. `append`).
pub(crate) fn peer_call(op: &str) -> Option<&'static str> {
    match op {
        "create" => Some("create"),
        "touch" => Some("save"),
        "get" => Some("load"),
        _ => None,
    }
}

/// The id of call `n` of task `task` in the measurement tagged `tag` (or of pool record `n`
/// with tag `"pool"`).
fn id_of(nonce: u64, tag: &str, task: usize, n: u64) -> Id {
    // FNV-1a of the tag: measurements get distinct ids without a registry.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in tag.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let low = (h << 40) ^ ((task as u64) << 32) ^ n;
    Id((i128::from(nonce) << 64) | i128::from(low))
}

impl PeerCtx {
    /// Connects to `url` (plain `redis://`) and writes `pool` records of about `bytes` data
    /// bytes each, lasting `ttl_s`.
    pub(crate) async fn connect(
        url: &str,
        pool: usize,
        bytes: usize,
        ttl_s: i64,
    ) -> anyhow::Result<Self> {
        let config = Config::from_url(url).context("the peer's fred config")?;
        let client = Builder::from_config(config)
            .build()
            .context("the peer's fred client")?;
        client.init().await.context("connecting the peer")?;
        let store = PeerRedisStore::new(client.clone());
        let mut data = HashMap::new();
        data.insert("blob".to_owned(), Value::String("x".repeat(bytes.max(1))));
        let nonce = u64::from_le_bytes(
            shoal_core::SessionId::generate().as_str().as_bytes()[..8]
                .try_into()
                .unwrap_or([7; 8]),
        );
        let mut ctx = PeerCtx {
            store,
            client,
            records: Vec::with_capacity(pool),
            data,
            nonce,
            ttl_s,
        };
        for n in 0..pool {
            let mut record = ctx.record(id_of(nonce, "pool", 0, n as u64));
            ctx.store
                .create(&mut record)
                .await
                .map_err(|e| anyhow::anyhow!("the peer's pool: {e}"))?;
            ctx.records.push(record);
        }
        Ok(ctx)
    }

    fn record(&self, id: Id) -> Record {
        Record {
            id,
            data: self.data.clone(),
            expiry_date: OffsetDateTime::now_utc() + time::Duration::seconds(self.ttl_s),
        }
    }

    /// Deletes the pool and every record the creates of `runs` (tag, attempts per task)
    /// made.
    pub(crate) async fn forget(
        &self,
        runs: &[(String, Vec<u64>)],
        pool: bool,
    ) -> anyhow::Result<()> {
        let mut ids: Vec<Id> = Vec::new();
        for (tag, attempts) in runs {
            for (task, n) in attempts.iter().enumerate() {
                ids.extend((0..*n).map(|k| id_of(self.nonce, tag, task, k)));
            }
        }
        if pool {
            ids.extend(self.records.iter().map(|r| r.id));
        }
        for chunk in ids.chunks(500) {
            let keys: Vec<String> = chunk.iter().map(Id::to_string).collect();
            let () =
                tower_sessions_redis_store::fred::prelude::KeysInterface::del(&self.client, keys)
                    .await
                    .context("deleting the peer's records")?;
        }
        Ok(())
    }
}

/// The peer's side of `op` (see [`peer_call`]); `tag` names the measurement's new records.
pub(crate) fn peer_op(op: &str, ctx: &Arc<PeerCtx>, tag: &str) -> Option<OpFn> {
    let ctx = Arc::clone(ctx);
    let tag: Arc<str> = Arc::from(tag);
    let f: OpFn = match op {
        "get" => Arc::new(move |_task, _n, r| -> OpFuture {
            let ctx = Arc::clone(&ctx);
            Box::pin(async move {
                let i = (r % ctx.records.len().max(1) as u64) as usize;
                let id = ctx.records.get(i).map(|r| r.id).ok_or("empty pool")?;
                match ctx.store.load(&id).await {
                    Ok(Some(_)) => Ok(()),
                    Ok(None) => Err(format!("peer load: record {id} is gone")),
                    Err(e) => Err(format!("peer load: {e}")),
                }
            })
        }),
        "touch" => Arc::new(move |_task, _n, r| -> OpFuture {
            let ctx = Arc::clone(&ctx);
            Box::pin(async move {
                let i = (r % ctx.records.len().max(1) as u64) as usize;
                let record = ctx.records.get(i).ok_or("empty pool")?;
                ctx.store
                    .save(record)
                    .await
                    .map_err(|e| format!("peer save: {e}"))
            })
        }),
        "create" => Arc::new(move |task, n, _r| -> OpFuture {
            let ctx = Arc::clone(&ctx);
            let tag = Arc::clone(&tag);
            Box::pin(async move {
                let mut record = ctx.record(id_of(ctx.nonce, &tag, task, n));
                ctx.store
                    .create(&mut record)
                    .await
                    .map_err(|e| format!("peer create: {e}"))
            })
        }),
        _ => return None,
    };
    Some(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_differ_by_tag_task_and_call() {
        let a = id_of(1, "t0", 0, 0);
        assert_ne!(a, id_of(1, "t1", 0, 0));
        assert_ne!(a, id_of(1, "t0", 1, 0));
        assert_ne!(a, id_of(1, "t0", 0, 1));
        assert_ne!(a, id_of(2, "t0", 0, 0));
        assert_eq!(a, id_of(1, "t0", 0, 0));
        assert_eq!(peer_call("touch"), Some("save"));
        assert_eq!(peer_call("append"), None);
    }
}
