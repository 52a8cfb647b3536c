//! [`OpenedStore`]: the store a command works on — the library's [`Stack`], over a loaded
//! export file for `file://`.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::Context as _;
use shoal_core::{MemoryStore, NotifyBus, SessionId, SessionStore, SystemClock};
use shoal_redis::{
    BusStats, RedisConfig, RedisStore, Stack, StackError, redact_url, stack::ResilientRedis,
};

use super::{
    file::{check_parent, load_file, save_file},
    url::StoreUrl,
};
use crate::{config::Config, error::UsageError};

/// A store opened for one command, with what is needed to save it afterwards.
///
/// Composition, outermost first (see [`shoal_redis::stack`]): the cache (`[cache]`,
/// `--cache`), the resilience wrapper (`[resilience]`, `--fallback`; Redis only), the backend.
/// The health monitor, the bus and the sweeper live as long as this value;
/// [`OpenedStore::close`] flushes deferred writes, waits for the outage journal and closes
/// the bus.
#[derive(Debug)]
pub(crate) struct OpenedStore {
    stack: Stack,
    /// The export file behind a `file://` store.
    file: Option<PathBuf>,
    /// The URL, password redacted.
    url: String,
    redis: Option<RedisBacking>,
}

/// The concrete Redis store behind an [`OpenedStore`], for what the trait does not offer
/// (counters, the benchmark's raw baselines).
#[derive(Debug, Clone)]
pub(crate) struct RedisBacking {
    /// The store.
    pub(crate) store: RedisStore,
    /// The configuration it was opened with (URL included: never print it unredacted).
    pub(crate) config: RedisConfig,
}

/// Opens the store named by `url` with the limits and settings of `config`. A background
/// sweeper runs until the returned value is dropped (its first pass comes one
/// `sweep_interval` after opening, so short commands never sweep).
///
/// A Redis server that cannot be reached fails within `redis.connect_timeout`; a bad URL or
/// setting (an unreadable CA file, the breaker on an in-process store, …) is a usage error.
pub(crate) async fn open_store(url: &str, config: &Config) -> anyhow::Result<OpenedStore> {
    let parsed = StoreUrl::parse(url).map_err(UsageError)?;
    let stack_config = config.stack();
    let (stack, file) = match parsed {
        StoreUrl::File(path) => {
            let memory = MemoryStore::builder()
                .limits(stack_config.limits.clone())
                .clock(Arc::new(SystemClock))
                .feed(stack_config.feed.clone())
                .build();
            check_parent(&path)?;
            let loaded = load_file(&memory, &path).await?;
            tracing::debug!(path = %path.display(), sessions = loaded, "loaded file store");
            let stack = Stack::over_memory(memory, &stack_config)
                .await
                .map_err(stack_error)?;
            (stack, Some(path))
        }
        StoreUrl::Memory | StoreUrl::Redis { .. } => {
            let stack = Stack::open(url, &stack_config).await.map_err(stack_error)?;
            (stack, None)
        }
    };
    let redis = match (stack.redis(), stack.redis_config()) {
        (Some(store), Some(config)) => Some(RedisBacking {
            store: store.clone(),
            config: config.clone(),
        }),
        _ => None,
    };
    tracing::debug!(
        store = %redact_url(url),
        backend = stack.store().backend_name(),
        resilient = stack.resilient().is_some(),
        cached = stack.cache().is_some(),
        "store opened"
    );
    Ok(OpenedStore {
        stack,
        file,
        url: redact_url(url),
        redis,
    })
}

/// A configuration the user must change is a usage error (exit 2); anything else (an
/// unreachable server) is a failure.
fn stack_error(e: StackError) -> anyhow::Error {
    match e {
        // Usually asked for with the flag: name both.
        StackError::Setting(s) if s.key == "resilience.fallback" => {
            UsageError(format!("--fallback / {}", s.reason)).into()
        }
        e if e.is_invalid_configuration() => UsageError(e.to_string()).into(),
        e => anyhow::Error::new(e),
    }
}

impl OpenedStore {
    /// The store, shareable.
    pub(crate) fn store(&self) -> Arc<dyn SessionStore> {
        self.stack.store()
    }

    /// Starts the analytics consumer (Redis, `[feed]` on; see
    /// `shoal_redis::Stack::start_analytics`); returns whether it runs.
    pub(crate) fn start_analytics(&mut self) -> bool {
        self.stack
            .start_analytics(shoal_redis::analytics::AnalyticsConfig::default())
    }

    /// The resilience wrapper, when on.
    pub(crate) fn resilient(&self) -> Option<&ResilientRedis> {
        self.stack.resilient()
    }

    /// The Redis store behind a `redis…://` URL.
    pub(crate) fn redis(&self) -> Option<&RedisBacking> {
        self.redis.as_ref()
    }

    /// The pub/sub bus between instances (Redis stores): the cache's, or one opened now.
    pub(crate) async fn notify_bus(&self) -> shoal_core::Result<Option<Arc<dyn NotifyBus>>> {
        self.stack.notify_bus().await
    }

    /// The bus's counters, when one is open.
    pub(crate) async fn bus_stats(&self) -> Option<BusStats> {
        self.stack.bus_stats().await
    }

    /// Tells other instances' caches that `ids` changed (see [`Stack::announce`]).
    pub(crate) async fn announce(&self, ids: &[SessionId]) {
        self.stack.announce(ids).await;
    }

    /// Tells other instances' caches that any session may have changed (after an import).
    pub(crate) async fn announce_all(&self) {
        self.stack.announce_all().await;
    }

    /// Stops the background sweeper (so an explicit `sweep` reports everything it removes).
    pub(crate) async fn stop_sweeper(&mut self) {
        self.stack.stop_sweeper().await;
    }

    /// The URL, password redacted.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The file behind a `file://` store.
    pub(crate) fn file_path(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// True for `memory://`: changes vanish when the command ends.
    pub(crate) fn is_ephemeral(&self) -> bool {
        self.file.is_none() && self.stack.memory().is_some()
    }

    /// Persists the store where that means something: the cache's deferred writes, then a
    /// `file://` store is exported to a temporary file beside its file and renamed over it; a
    /// Redis store writes the counter increments it has not flushed yet (they are otherwise
    /// written in the background, which a short command may not wait for). A no-op for
    /// `memory://`.
    pub(crate) async fn save(&self) -> anyhow::Result<()> {
        self.stack
            .save()
            .await
            .context("writing the cache's deferred writes")?;
        match (&self.file, self.stack.memory()) {
            (Some(path), Some(memory)) => save_file(memory, path).await,
            _ => Ok(()),
        }
    }

    /// Ends the command's use of the store (see [`Stack::close`]): an error says what was
    /// acknowledged but could not be written.
    pub(crate) async fn close(self) -> anyhow::Result<()> {
        self.stack.close().await.map_err(anyhow::Error::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_redis_fails_fast_without_the_password() {
        let mut config = Config::default();
        config.redis.connection.connect_timeout = std::time::Duration::from_millis(500);
        let err = open_store("redis://:hunter2@127.0.0.1:1", &config)
            .await
            .expect_err("nothing listens on port 1");
        let msg = format!("{err:#}");
        assert!(msg.contains("127.0.0.1:1"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
        assert_eq!(crate::error::exit_code_for(&err).0, 1, "{msg}");
    }

    #[tokio::test]
    async fn a_missing_ca_file_is_a_usage_error() {
        let mut config = Config::default();
        config.redis.connection.tls_ca_file = Some("/definitely/not/here.pem".into());
        let err = open_store("rediss://127.0.0.1:1", &config)
            .await
            .expect_err("no CA file");
        assert!(
            format!("{err:#}").contains("/definitely/not/here.pem"),
            "{err:#}"
        );
        assert_eq!(crate::error::exit_code_for(&err).0, 2);
    }

    #[tokio::test]
    async fn file_store_round_trips_and_tolerates_a_missing_file() {
        use shoal_core::{Session, SessionId, Transport};
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("s.jsonl");
        let url = format!("file://{}", path.display());
        let opened = open_store(&url, &Config::default()).await.expect("open");
        assert_eq!(opened.file_path(), Some(path.as_path()));
        assert!(!opened.is_ephemeral());
        let id = SessionId::new("abc").expect("id");
        opened
            .store()
            .create(Session::new(id.clone(), Transport::Http))
            .await
            .expect("create");
        opened.save().await.expect("save");
        drop(opened);

        let again = open_store(&url, &Config::default()).await.expect("reopen");
        assert!(again.store().get(&id).await.expect("get").is_some());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .expect("ls")
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("s.jsonl")]);
    }
}
