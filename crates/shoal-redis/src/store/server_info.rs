//! `server_info`: the server's own figures (`INFO`), and on a Cluster its topology
//! (`CLUSTER NODES`), for monitoring.

use std::collections::BTreeMap;

use serde::Serialize;
use shoal_core::Result;

use super::handle::RedisStore;
use crate::meta::bytes_of;

/// What the server says about itself.
#[derive(Clone, Debug, Default, Serialize)]
#[non_exhaustive]
pub struct ServerInfo {
    /// `standalone`, `sentinel` or `cluster`.
    pub topology: &'static str,
    /// Every `field:value` line of `INFO` (all default sections), by field name. On a
    /// Cluster, from the node the command reached.
    pub fields: BTreeMap<String, String>,
    /// On a Cluster, one entry per node of `CLUSTER NODES`.
    pub nodes: Vec<ClusterNode>,
}

/// One node of a Cluster, as `CLUSTER NODES` lists it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterNode {
    /// `host:port`.
    pub address: String,
    /// `master` or `replica`.
    pub role: String,
    /// Whether the node is marked failing (`fail` or `fail?`).
    pub failing: bool,
    /// The slot ranges a master serves (`0-5460`), empty for a replica.
    pub slots: String,
}

impl ServerInfo {
    /// Reads `INFO`'s text (no Cluster nodes).
    pub fn from_text(topology: &'static str, info: &str) -> Self {
        ServerInfo {
            topology,
            fields: parse_info(info),
            nodes: Vec::new(),
        }
    }

    /// One field as text.
    pub fn get(&self, field: &str) -> Option<&str> {
        self.fields.get(field).map(String::as_str)
    }

    /// One field as a number.
    pub fn number(&self, field: &str) -> Option<f64> {
        self.get(field).and_then(|v| v.trim().parse().ok())
    }
}

/// Parses `INFO`'s text (`# Section` headers, `field:value` lines).
pub(crate) fn parse_info(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// Parses `CLUSTER NODES`.
pub(crate) fn parse_cluster_nodes(text: &str) -> Vec<ClusterNode> {
    text.lines()
        .filter_map(|line| {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let address = parts.get(1)?.split('@').next()?.to_owned();
            let flags = parts.get(2)?;
            let role = if flags.contains("master") {
                "master"
            } else {
                "replica"
            };
            Some(ClusterNode {
                address,
                role: role.to_owned(),
                failing: flags.split(',').any(|f| f == "fail" || f == "fail?"),
                slots: parts.get(8..).map(|s| s.join(" ")).unwrap_or_default(),
            })
        })
        .collect()
}

impl RedisStore {
    /// `INFO` (and on a Cluster `CLUSTER NODES`), under the store's deadline.
    pub async fn server_info(&self) -> Result<ServerInfo> {
        let v = self.command("info", redis::cmd("INFO")).await?;
        let text = text_of(&v);
        let mut info = ServerInfo {
            topology: self.topology(),
            fields: parse_info(&text),
            nodes: Vec::new(),
        };
        if info.topology == "cluster" {
            let mut c = redis::cmd("CLUSTER");
            c.arg("NODES");
            let v = self.command("info", c).await?;
            info.nodes = parse_cluster_nodes(&text_of(&v));
        }
        Ok(info)
    }
}

/// A reply's text: a bulk or verbatim string, or (a Cluster routed to several nodes) the
/// first node's.
fn text_of(v: &redis::Value) -> String {
    match v {
        redis::Value::VerbatimString { text, .. } => text.clone(),
        redis::Value::Map(pairs) => pairs.first().map(|(_, v)| text_of(v)).unwrap_or_default(),
        other => bytes_of(other)
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_info_and_cluster_nodes() {
        let f = parse_info("# Memory\r\nused_memory:1024\r\nmaxmemory_policy:noeviction\r\n\r\n");
        assert_eq!(f.get("used_memory").map(String::as_str), Some("1024"));
        assert_eq!(
            f.get("maxmemory_policy").map(String::as_str),
            Some("noeviction")
        );
        let nodes = parse_cluster_nodes(
            "07c3 127.0.0.1:7101@17101 myself,master - 0 0 1 connected 0-5460\n\
             a1b2 127.0.0.1:7104@17104 slave,fail 07c3 0 0 1 connected\n",
        );
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[0].address, "127.0.0.1:7101");
        assert_eq!(nodes[0].slots, "0-5460");
        assert!(!nodes[0].failing);
        assert_eq!(nodes[1].role, "replica");
        assert!(nodes[1].failing);
    }
}
