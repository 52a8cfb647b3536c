//! A connection to the master that a set of Sentinels names, following failovers.
//!
//! The master's address is asked of the Sentinels when connecting and again after any command
//! fails in a way that suggests the master moved (connection lost or refused, `READONLY` from a
//! demoted master, time-outs). The failing command itself returns its error (a caller's retry
//! then reaches the new master); nothing is retried silently, because not every command is
//! idempotent.

use std::sync::Mutex;

use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, ErrorKind, Pipeline, RedisError, RedisFuture,
    RedisResult, ServerErrorKind, TlsCertificates, TlsMode, Value,
    aio::{ConnectionLike, MultiplexedConnection},
    sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType},
};
use shoal_core::{Error, Result};

use crate::{
    config::{RedisConfig, Topology, redact_url},
    conn::connect_error,
};

/// The master behind a set of Sentinels, reconnected through them when it moves.
pub(crate) struct SentinelConn {
    sentinel: tokio::sync::Mutex<SentinelClient>,
    current: Mutex<Option<MultiplexedConnection>>,
    conn_config: AsyncConnectionConfig,
    url: String,
    db: i64,
}

/// A Sentinel client for the master `topology` names (a `redis+sentinel://` URL), with the
/// credentials, database, TLS mode and certificates the master is reached with. Used by the
/// store's connection and by the pub/sub bus.
pub(crate) fn sentinel_client(
    config: &RedisConfig,
    topology: &Topology,
    certs: Option<TlsCertificates>,
) -> Result<SentinelClient> {
    let Topology::Sentinel {
        sentinels,
        master,
        username,
        password,
        db,
        tls,
    } = topology
    else {
        return Err(Error::invalid("not a sentinel url"));
    };
    let bad = |e: RedisError| Error::invalid(format!("redis url {}: {e}", redact_url(&config.url)));
    let addrs = sentinels
        .iter()
        .map(|(h, p)| ConnectionAddr::Tcp(h.clone(), *p));
    let mut builder = SentinelClientBuilder::new(addrs, master, SentinelServerType::Master)
        .map_err(bad)?
        .set_client_to_redis_db(*db);
    if let Some(u) = username {
        builder = builder.set_client_to_redis_username(u);
    }
    if let Some(p) = password {
        builder = builder.set_client_to_redis_password(p);
    }
    if *tls {
        builder = builder.set_client_to_redis_tls_mode(TlsMode::Secure);
    }
    if let Some(c) = certs {
        builder = builder.set_client_to_redis_certificates(c);
    }
    builder.build().map_err(bad)
}

fn should_reconnect(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || matches!(
            e.kind(),
            ErrorKind::Server(ServerErrorKind::ReadOnly)
                | ErrorKind::Server(ServerErrorKind::MasterDown)
        )
}

impl SentinelConn {
    pub(crate) async fn connect(
        config: &RedisConfig,
        topology: &Topology,
        certs: Option<TlsCertificates>,
    ) -> Result<Self> {
        let Topology::Sentinel { db, .. } = topology else {
            return Err(Error::invalid("not a sentinel url"));
        };
        let client = sentinel_client(config, topology, certs)?;
        let conn = SentinelConn {
            sentinel: tokio::sync::Mutex::new(client),
            current: Mutex::new(None),
            conn_config: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(config.connect_timeout))
                .set_response_timeout(Some(config.response_timeout)),
            url: config.url.clone(),
            db: *db,
        };
        match tokio::time::timeout(config.connect_timeout, conn.get()).await {
            Ok(Ok(_)) => Ok(conn),
            Ok(Err(e)) => Err(connect_error(&config.url, &e)),
            Err(_) => Err(Error::unavailable(format!(
                "cannot connect to redis at {}: no master within {:?}",
                redact_url(&config.url),
                config.connect_timeout
            ))),
        }
    }

    fn cached(&self) -> Option<MultiplexedConnection> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn reset(&self) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The current master connection, asking the Sentinels when there is none.
    async fn get(&self) -> RedisResult<MultiplexedConnection> {
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        let mut sentinel = self.sentinel.lock().await;
        // Someone else may have reconnected while we waited.
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        let c = sentinel
            .get_async_connection_with_config(&self.conn_config)
            .await?;
        drop(sentinel);
        tracing::debug!(url = %redact_url(&self.url), "connected to the sentinel master");
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(c.clone());
        Ok(c)
    }

    pub(crate) fn req_packed_command<'a>(&'a self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let mut c = self.get().await?;
            let r = c.req_packed_command(cmd).await;
            if let Err(e) = &r
                && should_reconnect(e)
            {
                self.reset();
            }
            r
        })
    }

    pub(crate) fn req_packed_commands<'a>(
        &'a self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let mut c = self.get().await?;
            let r = c.req_packed_commands(pipeline, offset, count).await;
            if let Err(e) = &r
                && should_reconnect(e)
            {
                self.reset();
            }
            r
        })
    }

    pub(crate) fn get_db(&self) -> i64 {
        self.db
    }
}
