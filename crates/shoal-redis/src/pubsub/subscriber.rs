//! The subscriber task: opens the subscription, reports the bus up, forwards messages, pings,
//! reports the bus down the moment the subscription could miss a message, and reconnects.
//!
//! - **Standalone and Sentinel**: a dedicated RESP2 pub/sub connection (`SUBSCRIBE` to every
//!   channel at once) to the server, or to the master the Sentinels name now — asked again on
//!   every reconnection, so the bus follows the master after a failover.
//! - **Cluster**: a RESP3 cluster connection with a push channel, `SSUBSCRIBE` to each channel
//!   (each on the master owning its slot). Any node connection closing, or a shard dropping a
//!   subscription (`sunsubscribe` after a slot moved), counts as a lost subscription: the
//!   whole connection is dropped and built again from the seed nodes and the current slot map.

use std::{future::Future, sync::Weak};

use futures_util::{StreamExt, future::join_all};
use redis::{
    ProtocolVersion, PushInfo, PushKind, Value,
    cluster::ClusterClientBuilder,
    cluster_async::ClusterConnection,
    cluster_routing::{MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo},
};
use shoal_core::{Error, Result};
use tokio::sync::mpsc;

use super::bus::BusState;
use crate::{
    config::{RedisConfig, Topology, redact_url},
    conn,
};

/// Why a subscription ended.
enum Ended {
    /// The bus was dropped: stop.
    BusDropped,
    /// Lost (or never established): report down, back off, reconnect. `was_up` says whether
    /// every channel had been subscribed (then the backoff starts over).
    Lost { was_up: bool, why: String },
}

/// Opens and keeps the subscription.
pub(crate) struct Subscriber {
    config: RedisConfig,
    topology: Topology,
    channels: Vec<String>,
}

impl Subscriber {
    /// A subscriber to `channels` on the servers `config` names.
    pub(crate) fn new(config: RedisConfig, topology: Topology, channels: Vec<String>) -> Self {
        Subscriber {
            config,
            topology,
            channels,
        }
    }

    /// Subscribes, reports up, forwards messages and pings until the subscription fails;
    /// reports down; reconnects with backoff. Ends when the bus is dropped.
    pub(crate) async fn run(self, weak: Weak<BusState>) {
        let mut failures: u32 = 0;
        loop {
            let ended = match &self.topology {
                Topology::Cluster { nodes, .. } => self.sharded(nodes, &weak).await,
                _ => self.classic(&weak).await,
            };
            let Ended::Lost { was_up, why } = ended else {
                return;
            };
            let Some(state) = weak.upgrade() else { return };
            tracing::debug!(reason = %why, "redis bus subscription lost");
            state.set_up(false);
            if was_up {
                failures = 0;
            }
            let delay = state.config.backoff(failures);
            drop(state);
            tokio::time::sleep(delay).await;
            failures = failures.saturating_add(1);
        }
    }

    /// Standalone or Sentinel: one RESP2 pub/sub connection subscribed to every channel.
    async fn classic(&self, weak: &Weak<BusState>) -> Ended {
        let lost = |why: String| Ended::Lost { was_up: false, why };
        let client = match self.client().await {
            Ok(c) => c,
            Err(e) => return lost(format!("cannot connect the subscriber: {e}")),
        };
        let pubsub = match self.bounded(client.get_async_pubsub()).await {
            Ok(p) => p,
            Err(e) => return lost(format!("cannot connect the subscriber: {e}")),
        };
        let (mut sink, mut stream) = pubsub.split();
        let subscribed =
            tokio::time::timeout(self.config.response_timeout, sink.subscribe(&self.channels))
                .await;
        match subscribed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return lost(format!("subscribe failed: {e}")),
            Err(_) => return lost("subscribe unanswered".to_owned()),
        }
        let Some(mut ping) = report_up(weak) else {
            return Ended::BusDropped;
        };
        let why = loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(m) => match weak.upgrade() {
                        Some(s) => s.deliver(m.get_channel_name(), m.get_payload_bytes()),
                        None => return Ended::BusDropped,
                    },
                    None => break "connection closed".to_owned(),
                },
                _ = ping.tick() => {
                    let pong = tokio::time::timeout(
                        self.config.response_timeout,
                        sink.ping::<Value>(),
                    ).await;
                    match pong {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => break format!("ping failed: {e}"),
                        Err(_) => break "ping unanswered".to_owned(),
                    }
                }
            }
        };
        Ended::Lost { was_up: true, why }
    }

    /// The client for the standalone server, or for the master the Sentinels name now.
    async fn client(&self) -> Result<redis::Client> {
        let certs = conn::tls_certificates(&self.config)?;
        if self.topology.tls() {
            conn::ensure_crypto_provider();
        }
        let bad = |e: redis::RedisError| {
            Error::invalid(format!("redis url {}: {e}", redact_url(&self.config.url)))
        };
        match &self.topology {
            Topology::Standalone { url, .. } => match certs {
                Some(c) => redis::Client::build_with_tls(url.as_str(), c),
                None => redis::Client::open(url.as_str()),
            }
            .map_err(bad),
            Topology::Sentinel { .. } => {
                let mut sentinel =
                    crate::sentinel::sentinel_client(&self.config, &self.topology, certs)?;
                self.bounded(sentinel.async_get_client()).await
            }
            Topology::Cluster { .. } => Err(Error::invalid(
                "redis bus: a cluster subscribes through its cluster connection",
            )),
        }
    }

    /// Cluster: `SSUBSCRIBE` to every channel over one RESP3 cluster connection whose pushes
    /// (messages, and the library's notice of a closed node connection) come on a channel.
    async fn sharded(&self, nodes: &[String], weak: &Weak<BusState>) -> Ended {
        let lost = |why: String| Ended::Lost { was_up: false, why };
        let (conn, mut pushes) = match self.cluster_connection(nodes).await {
            Ok(c) => c,
            Err(e) => return lost(format!("cannot connect the subscriber: {e}")),
        };
        let subscribed = join_all(self.channels.iter().map(|channel| {
            let mut conn = conn.clone();
            async move {
                match tokio::time::timeout(
                    self.config.response_timeout,
                    conn.ssubscribe(channel.as_str()),
                )
                .await
                {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(format!("ssubscribe {channel} failed: {e}")),
                    Err(_) => Err(format!("ssubscribe {channel} unanswered")),
                }
            }
        }))
        .await;
        if let Some(Err(why)) = subscribed.into_iter().find(Result::is_err) {
            return lost(why);
        }
        let Some(mut ping) = report_up(weak) else {
            return Ended::BusDropped;
        };
        let every_master = RoutingInfo::MultiNode((
            MultipleNodeRoutingInfo::AllMasters,
            Some(ResponsePolicy::AllSucceeded),
        ));
        let why = loop {
            tokio::select! {
                push = pushes.recv() => match push {
                    Some(PushInfo { kind: PushKind::SMessage | PushKind::Message, data }) => {
                        let Some(state) = weak.upgrade() else { return Ended::BusDropped };
                        if let [Value::BulkString(channel), Value::BulkString(payload), ..] =
                            data.as_slice()
                            && let Ok(channel) = std::str::from_utf8(channel)
                        {
                            state.deliver(channel, payload);
                        }
                    }
                    Some(PushInfo { kind: PushKind::Disconnection, .. }) => {
                        break "a node connection closed".to_owned();
                    }
                    Some(PushInfo { kind: PushKind::SUnsubscribe, data }) => {
                        break format!("a shard dropped a subscription: {data:?}");
                    }
                    Some(_) => {}
                    None => break "push channel closed".to_owned(),
                },
                _ = ping.tick() => {
                    let mut conn = conn.clone();
                    let pong = tokio::time::timeout(
                        self.config.response_timeout,
                        conn.route_command(redis::cmd("PING"), every_master.clone()),
                    ).await;
                    match pong {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => break format!("ping failed: {e}"),
                        Err(_) => break "ping unanswered".to_owned(),
                    }
                }
            }
        };
        Ended::Lost { was_up: true, why }
    }

    async fn cluster_connection(
        &self,
        nodes: &[String],
    ) -> Result<(ClusterConnection, mpsc::UnboundedReceiver<PushInfo>)> {
        let certs = conn::tls_certificates(&self.config)?;
        if self.topology.tls() {
            conn::ensure_crypto_provider();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let mut builder = ClusterClientBuilder::new(nodes.iter().map(String::as_str))
            .use_protocol(ProtocolVersion::RESP3)
            .push_sender(tx)
            .connection_timeout(self.config.connect_timeout)
            .response_timeout(self.config.response_timeout);
        if let Some(c) = certs {
            builder = builder.certs(c);
        }
        let client = builder.build().map_err(|e| {
            Error::invalid(format!("redis url {}: {e}", redact_url(&self.config.url)))
        })?;
        let conn = self.bounded(client.get_async_connection()).await?;
        Ok((conn, rx))
    }

    async fn bounded<T>(&self, fut: impl Future<Output = redis::RedisResult<T>>) -> Result<T> {
        match tokio::time::timeout(self.config.connect_timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(conn::connect_error(&self.config.url, &e)),
            Err(_) => Err(Error::unavailable(format!(
                "redis bus: no connection to {} within {:?}",
                redact_url(&self.config.url),
                self.config.connect_timeout
            ))),
        }
    }
}

/// Reports the bus up and returns its ping timer (first tick one interval from now), or
/// `None` if the bus is gone.
fn report_up(weak: &Weak<BusState>) -> Option<tokio::time::Interval> {
    let state = weak.upgrade()?;
    state.set_up(true);
    let every = state
        .config
        .ping_interval
        .max(std::time::Duration::from_millis(1));
    let now = tokio::time::Instant::now();
    let mut ping = tokio::time::interval_at(now.checked_add(every).unwrap_or(now), every);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    Some(ping)
}
