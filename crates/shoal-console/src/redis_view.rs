//! Redis as the console shows it: `INFO` figures, replication, the Cluster's nodes, and
//! warnings for settings that endanger sessions.

use serde::Serialize;
use shoal_redis::{ClusterNode, ServerInfo};

/// What the Redis page shows.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RedisView {
    /// `standalone`, `sentinel` or `cluster`.
    pub topology: String,
    /// `redis_version`.
    pub version: String,
    /// `run_id` (changes when the server restarts).
    pub run_id: String,
    /// `uptime_in_seconds`.
    pub uptime_s: f64,
    /// `used_memory` (bytes).
    pub used_memory: f64,
    /// `maxmemory` (bytes; 0 = no limit).
    pub maxmemory: f64,
    /// `maxmemory_policy`.
    pub policy: String,
    /// `evicted_keys` since the server started.
    pub evicted_keys: f64,
    /// `connected_clients`.
    pub clients: f64,
    /// `blocked_clients`.
    pub blocked_clients: f64,
    /// `instantaneous_ops_per_sec`.
    pub ops_per_sec: f64,
    /// `role` (`master`, `slave`).
    pub role: String,
    /// `connected_slaves`.
    pub replicas: f64,
    /// The largest replica lag `INFO replication` reports (seconds), when there are replicas.
    pub replica_lag_s: Option<f64>,
    /// For a replica: `master_host:master_port` and `master_link_status`.
    pub master: Option<String>,
    /// Persistence: `aof`, `rdb`, `aof+rdb` or `none`.
    pub persistence: String,
    /// Keys in db0.
    pub keys: Option<f64>,
    /// A Cluster's nodes.
    pub nodes: Vec<ClusterNode>,
    /// Settings or states that endanger sessions, in words.
    pub warnings: Vec<String>,
}

impl RedisView {
    /// Reads `info`.
    pub fn of(info: &ServerInfo) -> Self {
        let num = |f: &str| info.number(f).unwrap_or(0.0);
        let text = |f: &str| info.get(f).unwrap_or("").to_owned();
        let role = text("role");
        let replica_lag_s = info
            .fields
            .iter()
            .filter(|(k, _)| k.starts_with("slave") && k[5..].chars().all(|c| c.is_ascii_digit()))
            .filter_map(|(_, v)| {
                v.split(',')
                    .find_map(|kv| kv.strip_prefix("lag="))
                    .and_then(|l| l.parse::<f64>().ok())
            })
            .reduce(f64::max);
        let master = (role == "slave").then(|| {
            format!(
                "{}:{} ({})",
                text("master_host"),
                text("master_port"),
                text("master_link_status")
            )
        });
        let aof = info.get("aof_enabled") == Some("1");
        let rdb = info.number("rdb_saves").is_some_and(|n| n > 0.0);
        let persistence = match (aof, rdb) {
            (true, true) => "aof+rdb",
            (true, false) => "aof",
            (false, true) => "rdb",
            (false, false) => "none seen",
        };
        let keys = info
            .get("db0")
            .and_then(|v| v.split(',').find_map(|kv| kv.strip_prefix("keys=")))
            .and_then(|k| k.parse().ok());
        let mut view = RedisView {
            topology: info.topology.to_owned(),
            version: text("redis_version"),
            run_id: text("run_id"),
            uptime_s: num("uptime_in_seconds"),
            used_memory: num("used_memory"),
            maxmemory: num("maxmemory"),
            policy: text("maxmemory_policy"),
            evicted_keys: num("evicted_keys"),
            clients: num("connected_clients"),
            blocked_clients: num("blocked_clients"),
            ops_per_sec: num("instantaneous_ops_per_sec"),
            role,
            replicas: num("connected_slaves"),
            replica_lag_s,
            master,
            persistence: persistence.to_owned(),
            keys,
            nodes: info.nodes.clone(),
            warnings: Vec::new(),
        };
        view.warnings = warnings(&view);
        view
    }
}

fn warnings(v: &RedisView) -> Vec<String> {
    let mut w = Vec::new();
    if !v.policy.is_empty() && v.policy != "noeviction" {
        w.push(format!(
            "maxmemory-policy is {}: Redis may evict session keys (every Shoal key has a TTL, so \
             volatile-* policies evict them too); use noeviction",
            v.policy
        ));
    }
    if v.maxmemory > 0.0 && v.used_memory / v.maxmemory > 0.9 {
        w.push(format!(
            "used memory is {:.0}% of maxmemory: writes will be refused (noeviction) or sessions \
             evicted",
            100.0 * v.used_memory / v.maxmemory
        ));
    }
    if v.evicted_keys > 0.0 {
        w.push(format!(
            "{} keys evicted since the server started",
            v.evicted_keys
        ));
    }
    if v.persistence == "none seen" {
        w.push(
            "no persistence seen (AOF off, no RDB save yet): a restart loses every session".into(),
        );
    }
    if let Some(m) = &v.master
        && !m.ends_with("(up)")
    {
        w.push(format!("replica's link to its master is not up: {m}"));
    }
    if let Some(lag) = v.replica_lag_s
        && lag > 10.0
    {
        w.push(format!("a replica lags {lag:.0} s behind"));
    }
    for n in v.nodes.iter().filter(|n| n.failing) {
        w.push(format!("cluster node {} is failing", n.address));
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(topology: &'static str, text: &str) -> ServerInfo {
        ServerInfo::from_text(topology, text)
    }

    #[test]
    fn warns_about_eviction_memory_and_persistence() {
        let v = RedisView::of(&info(
            "standalone",
            "redis_version:7.0.15\nmaxmemory:1000\nused_memory:950\nmaxmemory_policy:allkeys-lru\n\
             evicted_keys:3\naof_enabled:0\nrole:master\nconnected_slaves:1\n\
             slave0:ip=127.0.0.1,port=7002,state=online,offset=10,lag=12\ndb0:keys=42,expires=42,avg_ttl=1\n",
        ));
        assert_eq!(v.keys, Some(42.0));
        assert_eq!(v.replica_lag_s, Some(12.0));
        let all = v.warnings.join("\n");
        for needle in [
            "allkeys-lru",
            "95%",
            "3 keys evicted",
            "no persistence",
            "lags 12 s",
        ] {
            assert!(all.contains(needle), "{needle} not in {all}");
        }
        let ok = RedisView::of(&info(
            "standalone",
            "maxmemory:0\nused_memory:10\nmaxmemory_policy:noeviction\nevicted_keys:0\naof_enabled:1\nrole:master\n",
        ));
        assert!(ok.warnings.is_empty(), "{:?}", ok.warnings);
    }
}
