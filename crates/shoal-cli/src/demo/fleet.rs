//! Two `shoal proxy` instances in one process, sharing one store and one event-id key, in
//! front of one upstream — the smallest fleet behind a load balancer.

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context as _;
use shoal_core::{SessionStore, notify::NotifyBus};
use shoal_proxy::{EventIdKey, ProxyConfig, ProxyHandle, UpstreamConfig};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// One running proxy instance.
#[derive(Debug)]
pub(crate) struct Instance {
    /// Its name in the demo's output ("A", "B").
    pub(crate) name: &'static str,
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    /// Its metrics and state.
    pub(crate) handle: ProxyHandle,
    task: JoinHandle<std::io::Result<()>>,
}

impl Instance {
    /// The MCP endpoint's URL.
    pub(crate) fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }
}

/// The two instances.
#[derive(Debug)]
pub(crate) struct Fleet {
    /// Instance A.
    pub(crate) a: Instance,
    /// Instance B.
    pub(crate) b: Instance,
    stop: CancellationToken,
}

impl Fleet {
    /// Starts both instances on free loopback ports in front of `upstream`, each with its own
    /// end of the wake-up bus when there is one (without, followers poll the store).
    pub(crate) async fn start(
        upstream: &str,
        store: Arc<dyn SessionStore>,
        buses: [Option<Arc<dyn NotifyBus>>; 2],
    ) -> anyhow::Result<Fleet> {
        let upstream =
            UpstreamConfig::parse(upstream).map_err(|e| anyhow::anyhow!("demo upstream: {e}"))?;
        // One key for the fleet, so an event id minted by A is accepted by B.
        let key = EventIdKey::random();
        let stop = CancellationToken::new();
        let [bus_a, bus_b] = buses;
        let a = start_one("A", &upstream, &key, Arc::clone(&store), bus_a, &stop).await?;
        let b = start_one("B", &upstream, &key, store, bus_b, &stop).await?;
        Ok(Fleet { a, b, stop })
    }

    /// Stops both instances and waits for them (bounded).
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        for task in [self.a.task, self.b.task] {
            match tokio::time::timeout(std::time::Duration::from_secs(5), task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => tracing::warn!(error = %e, "demo proxy stopped with an error"),
                Ok(Err(e)) => tracing::warn!(error = %e, "demo proxy task failed"),
                Err(_) => tracing::warn!("demo proxy did not stop within 5 s"),
            }
        }
    }
}

async fn start_one(
    name: &'static str,
    upstream: &UpstreamConfig,
    key: &EventIdKey,
    store: Arc<dyn SessionStore>,
    bus: Option<Arc<dyn NotifyBus>>,
    stop: &CancellationToken,
) -> anyhow::Result<Instance> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding a loopback port for a demo proxy")?;
    let addr = listener.local_addr()?;
    let mut config = ProxyConfig::new(upstream.clone())
        .with_event_id_key(key.clone())
        .with_instance_id(format!("demo-{}", name.to_ascii_lowercase()));
    if let Some(bus) = bus {
        config = config.with_bus(bus);
    }
    let token = stop.clone();
    let (serve, handle) = shoal_proxy::prepare(listener, config, store, async move {
        token.cancelled().await;
    })
    .with_context(|| format!("starting demo proxy {name}"))?;
    let task = tokio::spawn(serve);
    Ok(Instance {
        name,
        addr,
        handle,
        task,
    })
}
