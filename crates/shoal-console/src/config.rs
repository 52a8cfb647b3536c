//! The console's settings (`[console]` in the CLI's config; `shoal console` flags).

use std::{fmt, time::Duration};

use serde::Deserialize;

use crate::error::ConsoleError;

/// How the console runs.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ConsoleConfig {
    /// Base URLs of the proxies to watch (`http://10.0.0.5:8080`); the console reads each
    /// one's `/metrics`.
    pub proxies: Vec<String>,
    /// The access token: required from every client that is not on loopback (as
    /// `Authorization: Bearer …` or the cookie the login form sets). Without one the console
    /// only listens on loopback. Never logged.
    pub token: Option<String>,
    /// Shows everything, changes nothing: no delete actions.
    pub read_only: bool,
    /// `Host` values the console answers (against DNS rebinding): `name` (any port) or
    /// `name:port`, `*` for any. Empty: `localhost`, `127.0.0.1` and `[::1]`.
    pub allowed_hosts: Vec<String>,
    /// How often the proxies are read (default 500 ms).
    #[serde(with = "shoal_core::serde_util::duration")]
    pub scrape_interval: Duration,
    /// How often the store and Redis are read (default 1 s; analytics every 5th time).
    #[serde(with = "shoal_core::serde_util::duration")]
    pub store_interval: Duration,
    /// The window rates and percentiles are computed over (default 10 s).
    #[serde(with = "shoal_core::serde_util::duration")]
    pub rate_window: Duration,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            proxies: Vec::new(),
            token: None,
            read_only: false,
            allowed_hosts: Vec::new(),
            scrape_interval: Duration::from_millis(500),
            store_interval: Duration::from_secs(1),
            rate_window: Duration::from_secs(10),
        }
    }
}

impl fmt::Debug for ConsoleConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsoleConfig")
            .field("proxies", &self.proxies)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("read_only", &self.read_only)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("scrape_interval", &self.scrape_interval)
            .field("store_interval", &self.store_interval)
            .field("rate_window", &self.rate_window)
            .finish()
    }
}

impl ConsoleConfig {
    /// Checks every setting.
    pub fn check(&self) -> Result<(), ConsoleError> {
        let bad = |name: &'static str, reason: String| Err(ConsoleError::Setting { name, reason });
        for p in &self.proxies {
            match reqwest::Url::parse(p) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                _ => {
                    return bad(
                        "proxies",
                        format!("{p:?} is not an http(s) URL with a host"),
                    );
                }
            }
        }
        if let Some(t) = &self.token
            && t.len() < 16
        {
            return bad("token", "must be at least 16 characters".into());
        }
        let ms = |d: Duration| d.as_millis();
        if !(100..=60_000).contains(&ms(self.scrape_interval)) {
            return bad("scrape_interval", "must be between 100ms and 60s".into());
        }
        if !(100..=60_000).contains(&ms(self.store_interval)) {
            return bad("store_interval", "must be between 100ms and 60s".into());
        }
        if self.rate_window < self.scrape_interval * 2
            || self.rate_window > Duration::from_secs(600)
        {
            return bad(
                "rate_window",
                "must be at least two scrape intervals and at most 10m".into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_settings_and_never_shows_the_token() {
        let mut c = ConsoleConfig {
            proxies: vec!["http://127.0.0.1:8080".into()],
            token: Some("a-long-enough-secret-token".into()),
            ..ConsoleConfig::default()
        };
        assert!(c.check().is_ok());
        assert!(!format!("{c:?}").contains("secret"));
        c.proxies.push("ftp://x".into());
        assert!(c.check().is_err());
        c.proxies.pop();
        c.token = Some("short".into());
        assert!(c.check().is_err());
        c.token = None;
        c.rate_window = Duration::from_millis(10);
        assert!(c.check().is_err());
    }
}
