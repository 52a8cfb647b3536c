//! One connection type for every topology, so the store code is shared.

use std::{sync::Arc, time::Duration};

use redis::{
    Cmd, Pipeline, RedisFuture, RedisResult, TlsCertificates, Value,
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig},
    cluster::ClusterClientBuilder,
    cluster_async::ClusterConnection,
};
use shoal_core::{Error, Result};

use crate::{
    config::{RedisConfig, Topology, redact_url},
    sentinel::SentinelConn,
};

/// A multiplexed connection to standalone Redis, a Cluster, or the master behind Sentinels.
/// Cloning is cheap and shares the underlying connection.
#[derive(Clone)]
pub(crate) enum Conn {
    /// Standalone: a reconnecting multiplexed connection.
    Single(ConnectionManager),
    /// Cluster: routes each command (or same-slot pipeline) by its key.
    Cluster(ClusterConnection),
    /// Sentinel: follows the master across failovers.
    Sentinel(Arc<SentinelConn>),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
            Conn::Sentinel(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Sentinel(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
            Conn::Sentinel(c) => c.get_db(),
        }
    }
}

/// Reads the CA file named in the config, if any.
pub(crate) fn tls_certificates(config: &RedisConfig) -> Result<Option<TlsCertificates>> {
    let Some(path) = &config.tls_ca_file else {
        return Ok(None);
    };
    let pem = std::fs::read(path).map_err(|e| {
        Error::invalid(format!(
            "cannot read the redis TLS CA file {}: {e}",
            path.display()
        ))
    })?;
    Ok(Some(TlsCertificates {
        client_tls: None,
        root_cert: Some(pem),
    }))
}

/// rustls needs a process-wide crypto provider; install ring's unless one is installed.
pub(crate) fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race against another installer is fine: one provider is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// A connection failure at start-up, as a clear error.
pub(crate) fn connect_error(url: &str, e: &redis::RedisError) -> Error {
    let shown = redact_url(url);
    if e.to_string().contains("DB index is out of range") {
        return Error::invalid(format!(
            "redis at {shown}: the database index in the URL does not exist on this server \
             (its `databases` setting bounds it; the default allows 0-15)"
        ));
    }
    if e.kind() == redis::ErrorKind::AuthenticationFailed {
        return Error::backend(format!(
            "cannot connect to redis at {shown}: authentication failed (check the user name \
             and password in the URL, and the server's ACL)"
        ));
    }
    let msg = format!("cannot connect to redis at {shown}: {e}");
    match e.kind() {
        redis::ErrorKind::InvalidClientConfig => Error::backend(msg),
        redis::ErrorKind::Server(redis::ServerErrorKind::NoPerm) => Error::backend(msg),
        _ => Error::unavailable(msg),
    }
}

/// `fut` (a connection to `url`) bounded by `timeout`, its failure as a clear error. A TLS
/// connection still pending after [`PROBE_AFTER`](crate::tls_probe::PROBE_AFTER) is checked
/// against a plain server (which never answers the handshake): if the port answers plain
/// Redis, the error comes at once and says to use `redis://`.
async fn bounded<T>(
    url: &str,
    node: &str,
    timeout: Duration,
    fut: impl std::future::Future<Output = RedisResult<T>>,
) -> Result<T> {
    let connect = tokio::time::timeout(timeout, fut);
    tokio::pin!(connect);
    let plain = async {
        match crate::tls_probe::tls_target(node) {
            Some((host, port)) => {
                tokio::time::sleep(crate::tls_probe::PROBE_AFTER).await;
                if crate::tls_probe::answers_plain_text(&host, port, timeout).await {
                    return (host, port);
                }
                std::future::pending().await
            }
            None => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        outcome = &mut connect => outcome,
        (host, port) = plain => {
            return Err(Error::invalid(format!(
                "cannot connect to redis at {}: {host}:{port} answers plain Redis, not TLS; \
                 use redis:// for this server, or its TLS port with rediss://",
                redact_url(url)
            )));
        }
    };
    match outcome {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(connect_error(url, &e)),
        Err(_) => {
            let hint = if url.trim_start().to_ascii_lowercase().starts_with("rediss") {
                " (the URL asks for TLS: a server without TLS on this port never answers the \
                 handshake; use redis:// for a plain server)"
            } else {
                ""
            };
            Err(Error::unavailable(format!(
                "cannot connect to redis at {}: no connection within {timeout:?}{hint}",
                redact_url(url)
            )))
        }
    }
}

/// Opens `config.connections` connections for the configured topology, each bounded by the
/// connect timeout.
pub(crate) async fn connect(config: &RedisConfig, topology: &Topology) -> Result<Vec<Conn>> {
    if topology.tls() {
        ensure_crypto_provider();
    }
    let certs = tls_certificates(config)?;
    let url = config.url.as_str();
    let mut conns = Vec::with_capacity(config.connections);
    match topology {
        Topology::Standalone { url: u, .. } => {
            let client = match certs {
                Some(c) => redis::Client::build_with_tls(u.as_str(), c),
                None => redis::Client::open(u.as_str()),
            }
            .map_err(|e| Error::invalid(format!("redis url {}: {e}", redact_url(url))))?;
            let mgr_config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(config.connect_timeout))
                .set_response_timeout(Some(config.response_timeout))
                .set_number_of_retries(config.reconnect_retries)
                .set_max_delay(Duration::from_secs(1));
            for _ in 0..config.connections {
                let mgr = bounded(
                    url,
                    u,
                    config.connect_timeout,
                    ConnectionManager::new_with_config(client.clone(), mgr_config.clone()),
                )
                .await?;
                conns.push(Conn::Single(mgr));
            }
        }
        Topology::Cluster { nodes, .. } => {
            let mut builder = ClusterClientBuilder::new(nodes.iter().map(String::as_str))
                .connection_timeout(config.connect_timeout)
                .response_timeout(config.response_timeout)
                .retries(config.reconnect_retries.max(3) as u32);
            if let Some(c) = certs {
                builder = builder.certs(c);
            }
            let client = builder
                .build()
                .map_err(|e| Error::invalid(format!("redis url {}: {e}", redact_url(url))))?;
            for _ in 0..config.connections {
                let first = nodes.first().map_or("", String::as_str);
                let c = bounded(
                    url,
                    first,
                    config.connect_timeout,
                    client.get_async_connection(),
                )
                .await?;
                conns.push(Conn::Cluster(c));
            }
        }
        Topology::Sentinel { .. } => {
            for _ in 0..config.connections {
                let c = SentinelConn::connect(config, topology, certs.clone()).await?;
                conns.push(Conn::Sentinel(Arc::new(c)));
            }
        }
    }
    Ok(conns)
}
