//! Opt-in synchronous replication: with [`RedisConfig::wait_replicas`](crate::RedisConfig)
//! set, every write that changed a session is followed by `WAIT <replicas> <timeout>` on the
//! same connection, and acknowledged only once that many replicas have it — so a failover
//! to one of them keeps it. Fewer in time is [`Error::not_replicated`] (an `Unavailable`,
//! message from [`NotReplicated`]): the write *is* on the master (it was applied), but a
//! failover before the replicas catch up can lose it, and the caller is told so instead of
//! getting a success. Being `Unavailable`, it opens a circuit breaker when replication keeps
//! failing (the fallback then takes the writes) and a journal drain retries it.

use std::time::Duration;

use redis::{
    Value,
    cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr},
};
use shoal_core::{Error, Result, SessionId};

use super::{
    exec::{ST_OK, int_of},
    handle::StoreState,
};
use crate::conn::Conn;

/// The per-session scripts that write (their `ok` status means something changed).
const WRITES: &[&str] = &[
    "create",
    "append",
    "touch",
    "update",
    "delete",
    "delete_frames",
    "add_pending",
    "take_pending",
    "restore",
];

/// What a write applied on the master that fewer replicas than required acknowledged in
/// time says (the detail of [`Error::not_replicated`]).
#[derive(Debug, thiserror::Error)]
#[error(
    "redis {op}: written on the master, but {acked} of {wanted} replicas acknowledged it \
     within {timeout:?}; a failover before they catch up loses it (redis.wait_replicas)"
)]
pub(crate) struct NotReplicated {
    op: &'static str,
    acked: u64,
    wanted: u32,
    timeout: Duration,
}

impl StoreState {
    /// After a script reply on `conn`: waits for the replicas when the script was a write that
    /// wrote and replication is required.
    pub(super) async fn confirm_script(
        &self,
        op: &'static str,
        id: &SessionId,
        reply: &[Value],
        conn: &mut Conn,
    ) -> Result<()> {
        if self.config.wait_replicas == 0
            || !WRITES.contains(&op)
            || reply.first().and_then(int_of) != Some(ST_OK)
        {
            return Ok(());
        }
        self.confirm_replicated(op, Some(id), conn).await
    }

    /// `WAIT <wait_replicas> <wait_timeout>` on `conn` (which carried the write).
    pub(super) async fn confirm_replicated(
        &self,
        op: &'static str,
        id: Option<&SessionId>,
        conn: &mut Conn,
    ) -> Result<()> {
        let wanted = self.config.wait_replicas;
        if wanted == 0 {
            return Ok(());
        }
        let timeout = self.config.wait_timeout;
        let mut wait = redis::cmd("WAIT");
        wait.arg(wanted).arg(
            u64::try_from(timeout.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
        );
        let v: Value = match (conn, id) {
            // On a Cluster, WAIT goes to the master of the session's slot (the node that took
            // the write), not to every master: a fault on another shard must not fail it.
            (Conn::Cluster(c), Some(session)) => {
                let [meta_key, ..] = self.keys.session(session);
                let route = Route::with_slot(Slot::for_key(meta_key.as_bytes()), SlotAddr::Master);
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                self.io(op, id, c.route_command(wait, routing)).await?
            }
            (conn, _) => self.io(op, id, wait.query_async(conn)).await?,
        };
        let acked = int_of(&v).and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
        if acked >= u64::from(wanted) {
            return Ok(());
        }
        Err(Error::not_replicated(NotReplicated {
            op,
            acked,
            wanted,
            timeout,
        }))
    }
}
