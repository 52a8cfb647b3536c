//! Bridging protocol eras: clients of one MCP revision in front of an upstream of another.
//!
//! - `legacy_upstream`: 2026-07-28 clients (sessionless, `_meta` on every request) in front
//!   of a 2025 upstream (sessions, `initialize`): the proxy keeps the upstream sessions the
//!   clients cannot, in the store, shared by every instance.
//!
//! - `modern_upstream`: 2025-revision clients (sessions, `initialize`, resumption) in front of
//!   a 2026-07-28 upstream: the proxy answers `initialize` from `server/discover`, keeps the
//!   session and the resumable record, and sends each request as a 2026 one.
//!
//! - `param_headers`: the `Mcp-Param-*` headers of tool arguments (2026), added for a 2026
//!   upstream and checked for 2026 clients.
//!
//! Switched by [`ProxyConfig::bridge`](crate::ProxyConfig::bridge); off by default (2026
//! requests pass through untouched).

pub(crate) mod input_requests;
pub(crate) mod input_required;
pub(crate) mod legacy_listen;
pub(crate) mod legacy_stream;
pub(crate) mod legacy_upstream;
pub(crate) mod modern_checks;
pub(crate) mod modern_upstream;
pub(crate) mod param_headers;
pub(crate) mod reissue;

/// Which bridge the proxy runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum BridgeMode {
    /// No bridge: each request goes upstream in its own revision.
    #[default]
    Off,
    /// 2026-07-28 clients in front of a 2025-revision upstream: the proxy answers
    /// `server/discover` from the upstream's `initialize`, runs that `initialize` itself (one
    /// upstream session per principal and declared client capabilities, kept in the store and
    /// reused by every instance, re-initialized when the upstream forgets it) and sends each
    /// request in that session.
    ModernClientsToLegacyUpstream,
    /// 2025-revision clients in front of a 2026-07-28 upstream: the proxy answers
    /// `initialize` from the upstream's `server/discover`, keeps the session (and its
    /// resumable record) itself, and sends each request as a 2026 request.
    LegacyClientsToModernUpstream,
}

impl BridgeMode {
    /// `off`, `2026-to-2025` or `2025-to-2026`.
    pub fn as_str(self) -> &'static str {
        match self {
            BridgeMode::Off => "off",
            BridgeMode::ModernClientsToLegacyUpstream => "2026-to-2025",
            BridgeMode::LegacyClientsToModernUpstream => "2025-to-2026",
        }
    }

    /// Parses [`BridgeMode::as_str`]'s form.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "off" | "" => Some(BridgeMode::Off),
            "2026-to-2025" => Some(BridgeMode::ModernClientsToLegacyUpstream),
            "2025-to-2026" => Some(BridgeMode::LegacyClientsToModernUpstream),
            _ => None,
        }
    }
}

impl serde::Serialize for BridgeMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for BridgeMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        BridgeMode::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{s:?} is not a bridge mode (off, 2026-to-2025, 2025-to-2026)"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_round_trip_and_unknown_ones_are_refused() {
        for m in [
            BridgeMode::Off,
            BridgeMode::ModernClientsToLegacyUpstream,
            BridgeMode::LegacyClientsToModernUpstream,
        ] {
            assert_eq!(BridgeMode::parse(m.as_str()), Some(m));
        }
        assert_eq!(BridgeMode::parse("sideways"), None);
        assert!(serde_json::from_str::<BridgeMode>("\"sideways\"").is_err());
    }
}
