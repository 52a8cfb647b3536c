//! The proxy's errors: [`ConfigError`] for settings that cannot be used (the upstream, the
//! event-id key), [`UpstreamError`] for an upstream that could not be asked or whose stream
//! broke. Handlers turn the latter into 502 answers; neither carries a credential.

/// A proxy setting that cannot be used; the message names the setting and what to change.
/// `Debug` shows the same redacted message as `Display`.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The upstream is neither an HTTP(S) URL nor `stdio:'CMD ARGS'`.
    #[error(
        "upstream {:?}: expected an http:// or https:// URL, or stdio:'CMD ARGS'",
        shoal_core::redact::redact_url(.0)
    )]
    UnknownUpstream(String),
    /// `stdio:` without a command.
    #[error("stdio upstream needs a command: stdio:'CMD ARGS'")]
    MissingCommand,
    /// A quote in a stdio command line is not closed.
    #[error("unbalanced quote in {0:?}")]
    UnbalancedQuote(String),
    /// The upstream URL does not parse.
    #[error(
        "upstream URL {:?}: {}",
        shoal_core::redact::redact_url(url),
        shoal_core::redact::redact_text(reason)
    )]
    UpstreamUrl {
        /// The URL as given.
        url: String,
        /// Why it does not parse.
        reason: String,
    },
    /// The HTTP client for the upstream cannot be built.
    #[error("HTTP client: {0}")]
    HttpClient(String),
    /// The event-id key (or its file) cannot be used.
    #[error(transparent)]
    EventIdKey(#[from] shoal_core::event_id::KeyError),
    /// A setting out of its range.
    #[error("{name}: {reason}")]
    Setting {
        /// The setting's name (a [`ProxyConfig`](crate::ProxyConfig) field).
        name: &'static str,
        /// What it must be.
        reason: String,
    },
}

impl std::fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ConfigError")
            .field(&self.to_string())
            .finish()
    }
}

/// Why the upstream could not be asked, or why its stream ended early. Shown redacted, by
/// `Display` and `Debug` alike: an HTTP client's message carries the upstream URL, credentials
/// included.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", shoal_core::redact::redact_text(.0))]
pub(crate) struct UpstreamError(pub(crate) String);

impl std::fmt::Debug for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("UpstreamError")
            .field(&shoal_core::redact::redact_text(&self.0))
            .finish()
    }
}

impl From<&str> for UpstreamError {
    fn from(s: &str) -> Self {
        UpstreamError(s.to_owned())
    }
}

impl From<String> for UpstreamError {
    fn from(s: String) -> Self {
        UpstreamError(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_is_redacted_too() {
        let upstream = UpstreamError(
            "error sending request for url (http://u:PLANTED1@h/mcp?token=PLANTED2)".into(),
        );
        let config = ConfigError::UpstreamUrl {
            url: "http://u:PLANTED3@h:x/?key=PLANTED4".into(),
            reason: "invalid port".into(),
        };
        let unknown = ConfigError::UnknownUpstream("ftp://PLANTED5@h".into());
        let shown = format!("{upstream:?} {upstream} {config:?} {config} {unknown:?} {unknown}");
        for secret in ["PLANTED1", "PLANTED2", "PLANTED3", "PLANTED4", "PLANTED5"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(
            shown.contains("UpstreamError(") && shown.contains("http://u:***@h"),
            "{shown}"
        );
    }
}
