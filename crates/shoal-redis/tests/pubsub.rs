//! [`RedisPubSub`] on every topology against real servers: invalidations and wake-ups between
//! instances on a 6-node Cluster (sharded pub/sub, channels on several masters), after a
//! Cluster master and a Sentinel master fail over, and over TLS as an ACL user holding only
//! the documented permissions.

use std::{
    collections::{BTreeSet, HashSet},
    sync::OnceLock,
    time::Duration,
};

use shoal_core::{
    SessionId,
    notify::{BusEvent, NotifyBus, Wakeup},
};
use shoal_redis::{BusConfig, RedisConfig, RedisPubSub};
use shoal_testkit::redis_server::{RedisCluster, RedisSentinel, RedisServer};
use tokio::sync::broadcast;

/// Bounds every wait: generous for a busy 2-core machine, far below any hang.
const WAIT: Duration = Duration::from_secs(20);

/// Failovers take a few seconds here (node timeout / down-after 1 s); leave room.
const FAILOVER_WAIT: Duration = Duration::from_secs(45);

fn cluster() -> &'static RedisCluster {
    static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
    CLUSTER.get_or_init(RedisCluster::start)
}

fn sid(s: &str) -> SessionId {
    SessionId::new(s).unwrap_or_else(|e| panic!("{e}"))
}

fn quick() -> BusConfig {
    let mut c = BusConfig::default();
    c.ping_interval = Duration::from_millis(200);
    c
}

async fn bus(config: &RedisConfig) -> RedisPubSub {
    RedisPubSub::connect(config, quick())
        .await
        .unwrap_or_else(|e| panic!("bus on {config:?}: {e}"))
}

async fn eventually(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Receives invalidation events until `ids` were all named (bounded by [`WAIT`]).
async fn invalidated(rx: &mut broadcast::Receiver<BusEvent>, ids: &[SessionId]) {
    let mut missing: HashSet<SessionId> = ids.iter().cloned().collect();
    tokio::time::timeout(WAIT, async {
        while !missing.is_empty() {
            if let Ok(BusEvent::Invalidate(inv)) = rx.recv().await {
                for id in inv.ids.iter() {
                    missing.remove(id);
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("invalidations never arrived: {missing:?}"));
}

/// Receives `n` wake-ups (bounded by [`WAIT`]).
async fn wakeups(rx: &mut broadcast::Receiver<Wakeup>, n: usize) -> BTreeSet<(String, String)> {
    let mut got = BTreeSet::new();
    tokio::time::timeout(WAIT, async {
        while got.len() < n {
            if let Ok(w) = rx.recv().await {
                got.insert((w.session.as_str().to_owned(), w.stream.to_string()));
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {} of {n} wake-ups arrived: {got:?}", got.len()));
    got
}

/// `n` wake-ups on as many sessions (so every wake-up channel is used), published by `from`.
fn publish_wakeups(from: &RedisPubSub, tag: &str, n: usize) -> BTreeSet<(String, String)> {
    (0..n)
        .map(|i| {
            let s = sid(&format!("{tag}-{i}"));
            from.publish_wakeup(&s, "p1");
            (s.as_str().to_owned(), "p1".to_owned())
        })
        .collect()
}

/// Three instances on the Cluster: the channels live on several masters (sharded pub/sub,
/// each channel on its slot's master), and what any instance publishes — invalidations and
/// wake-ups on every wake-up channel — reaches every other one, never itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_instances_hear_each_other_on_every_shard() {
    let config = RedisConfig::new(cluster().url()).with_key_prefix("ps1");
    let (a, b, c) = (bus(&config).await, bus(&config).await, bus(&config).await);
    assert!(a.is_sharded());

    // Where the channels live: every master lists the shard channels it serves.
    let mut served = BTreeSet::new();
    let mut masters_used = 0;
    for node in cluster().nodes() {
        if !node.cli(&["ROLE"]).starts_with("master") {
            continue;
        }
        let here: Vec<String> = node
            .cli(&["PUBSUB", "SHARDCHANNELS", "ps1:*"])
            .lines()
            .map(str::to_owned)
            .filter(|l| !l.is_empty())
            .collect();
        masters_used += usize::from(!here.is_empty());
        served.extend(here);
    }
    let expected: BTreeSet<String> = std::iter::once(a.channel().to_owned())
        .chain(a.wake_channels().map(str::to_owned))
        .collect();
    assert_eq!(served, expected, "every channel is subscribed on its shard");
    assert!(masters_used >= 2, "the channels spread over the masters");

    let (mut ra, mut rb, mut rc) = (a.subscribe(), b.subscribe(), c.subscribe());
    let mut wa = a.subscribe_wakeups().unwrap_or_else(|| panic!("wake-ups"));
    let mut wb = b.subscribe_wakeups().unwrap_or_else(|| panic!("wake-ups"));
    let mut wc = c.subscribe_wakeups().unwrap_or_else(|| panic!("wake-ups"));

    let ids = [sid("c1"), sid("c2"), sid("c3")];
    a.publish(&ids);
    invalidated(&mut rb, &ids).await;
    invalidated(&mut rc, &ids).await;
    b.publish_all();
    tokio::time::timeout(WAIT, async {
        while !matches!(ra.recv().await, Ok(BusEvent::InvalidateAll)) {}
    })
    .await
    .unwrap_or_else(|_| panic!("a never got b's invalidate-all"));

    let sent = publish_wakeups(&a, "wa", 64);
    assert_eq!(wakeups(&mut wb, sent.len()).await, sent);
    assert_eq!(wakeups(&mut wc, sent.len()).await, sent);
    let sent = publish_wakeups(&c, "wc", 64);
    assert_eq!(wakeups(&mut wa, sent.len()).await, sent);
    assert_eq!(wakeups(&mut wb, sent.len()).await, sent);
    assert!(a.flush(WAIT).await && c.flush(WAIT).await);
    // Nobody hears itself: a's own wake-ups never came back to a.
    assert!(wa.try_recv().is_err(), "no echo");
    assert_eq!(b.stats().wakeups_received, 128);
    assert_eq!(a.stats().wakeups_published, 64);
    assert_eq!(a.stats().ids_published, 3);
    assert_eq!(a.stats().subscriptions, 1, "no spurious reconnection");
    assert_eq!(b.stats().subscriptions, 1, "no spurious reconnection");
}

/// The master serving the invalidation channel dies: the bus reports down, follows the slot
/// to the promoted replica, reports up, and messages flow again on every channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_bus_follows_a_master_failover() {
    let mut own = RedisCluster::start();
    let config = RedisConfig::new(own.url())
        .with_key_prefix("psfo")
        .with_connect_timeout(Duration::from_secs(1))
        .with_response_timeout(Duration::from_secs(1));
    let (a, b) = (bus(&config).await, bus(&config).await);
    let mut events = b.subscribe();
    let owner = own
        .nodes()
        .iter()
        .position(|n| {
            n.cli(&["ROLE"]).starts_with("master")
                && n.cli(&["PUBSUB", "SHARDCHANNELS", "psfo:invalidate"])
                    .contains("psfo:invalidate")
        })
        .unwrap_or_else(|| panic!("no master serves psfo:invalidate"));
    own.nodes_mut()[owner].stop();

    tokio::time::timeout(FAILOVER_WAIT, async {
        let mut down = false;
        loop {
            match events.recv().await {
                Ok(BusEvent::Down) => down = true,
                Ok(BusEvent::Up) if down => return,
                _ => {}
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("b never went down and up again"));
    eventually("a is up again", FAILOVER_WAIT, || a.is_up()).await;

    let mut rb = b.subscribe();
    let mut wb = b.subscribe_wakeups().unwrap_or_else(|| panic!("wake-ups"));
    let ids = [sid("after-failover")];
    // Publishes during the failover window may need the publisher's retry.
    a.publish(&ids);
    invalidated(&mut rb, &ids).await;
    let sent = publish_wakeups(&a, "fo", 32);
    assert_eq!(wakeups(&mut wb, sent.len()).await, sent);
    assert!(b.stats().subscriptions >= 2);
}

/// The Sentinel master dies: both buses go down, reconnect through the Sentinels to the
/// promoted replica and carry invalidations and wake-ups again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_bus_follows_the_master_after_a_failover() {
    let mut set = RedisSentinel::start();
    let config = RedisConfig::new(set.url())
        .with_key_prefix("pss")
        .with_connect_timeout(Duration::from_secs(1))
        .with_response_timeout(Duration::from_secs(1));
    let (a, b) = (bus(&config).await, bus(&config).await);
    assert!(!a.is_sharded());
    let mut wb = b.subscribe_wakeups().unwrap_or_else(|| panic!("wake-ups"));
    let sent = publish_wakeups(&a, "before", 8);
    assert_eq!(wakeups(&mut wb, sent.len()).await, sent);

    let old = set.master().port();
    set.master_mut().stop();
    eventually("b noticed the lost master", FAILOVER_WAIT, || !b.is_up()).await;
    eventually("the sentinels promoted the replica", FAILOVER_WAIT, || {
        set.current_master_port().is_some_and(|p| p != old)
    })
    .await;
    eventually("both buses are up again", FAILOVER_WAIT, || {
        a.is_up() && b.is_up()
    })
    .await;

    let mut rb = b.subscribe();
    let ids = [sid("promoted")];
    a.publish(&ids);
    invalidated(&mut rb, &ids).await;
    let sent = publish_wakeups(&a, "after", 8);
    assert_eq!(wakeups(&mut wb, sent.len()).await, sent);
    assert!(b.stats().subscriptions >= 2);
}

/// Over `rediss://` as an ACL user with nothing but the permissions the module docs list:
/// both instances subscribe and hear each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_an_acl_user_with_the_documented_permissions() {
    let server = RedisServer::builder().tls().start();
    let out = server.cli(&[
        "ACL",
        "SETUSER",
        "bus",
        "reset",
        "on",
        ">bus-pw",
        "resetchannels",
        "&pst:invalidate",
        "&pst:wake:*",
        "+subscribe",
        "+publish",
        "+ping",
    ]);
    assert_eq!(out.trim(), "OK", "{out}");
    let url = server
        .tls_url()
        .unwrap_or_else(|| panic!("no TLS port"))
        .replace("rediss://", "rediss://bus:bus-pw@");
    let ca = server
        .tls_certs()
        .unwrap_or_else(|| panic!("no certificates"))
        .ca_cert_path();
    let config = RedisConfig::new(url)
        .with_key_prefix("pst")
        .with_tls_ca_file(ca);
    let (a, b) = (bus(&config).await, bus(&config).await);
    let mut rb = b.subscribe();
    let mut wa = a.subscribe_wakeups().unwrap_or_else(|| panic!("wake-ups"));
    let ids = [sid("tls-1")];
    a.publish(&ids);
    invalidated(&mut rb, &ids).await;
    let sent = publish_wakeups(&b, "tls", 20);
    assert_eq!(wakeups(&mut wa, sent.len()).await, sent);
    assert_eq!(b.stats().publish_failures, 0);
}
