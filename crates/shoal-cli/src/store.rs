//! Store URLs and opening the store a command works on.
//!
//! | URL | store |
//! |---|---|
//! | `memory://` | an empty in-memory store, gone when the command ends (the default) |
//! | `file://PATH` | an in-memory store loaded from the Shoal JSON Lines export at `PATH` (a missing file is an empty store) and written back atomically after a command that changes data |
//! | `redis://`, `rediss://`, `redis+cluster://`, `redis+sentinel://` (and `rediss+cluster://`, `rediss+sentinel://`) | Redis ([`shoal_redis::RedisStore`]), configured by the `[redis]` section |
//!
//! Everything after `file://` is the path: `file:///var/lib/shoal/s.jsonl` is absolute,
//! `file://s.jsonl` is relative to the working directory. A `file://` store is meant for one
//! `shoal` at a time: two commands changing the same file concurrently lose one's changes.

use std::{
    fmt,
    future::Future,
    path::{Path, PathBuf},
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use shoal_core::{
    Cached, Clock, MemoryStore, SessionId, SessionStore, SweeperHandle, SystemClock,
    cached::{
        CacheConfig, CacheStats, Consistency, FlushReport, InvalidationBus, Revalidate,
        SessionStamp,
    },
    resilient::{BreakerState, MonitorHandle, Resilient},
    transfer,
};
use shoal_redis::{BusConfig, BusStats, RedisConfig, RedisPubSub, RedisStore, RedisSweeper};
use tokio::io::{AsyncWriteExt as _, BufReader, BufWriter};

use crate::{config::Config, error::UsageError};

/// A Redis store behind the resilience wrapper, with a memory fallback.
pub(crate) type ResilientRedis = Resilient<RedisStore, MemoryStore>;

/// Schemes that select the Redis backend.
const REDIS_SCHEMES: &[&str] = &[
    "redis",
    "rediss",
    "redis+cluster",
    "rediss+cluster",
    "redis+sentinel",
    "rediss+sentinel",
];

/// The supported URL forms, for error messages.
const SUPPORTED: &str = "memory://, file://PATH, redis://, rediss://, redis+cluster://, \
                         redis+sentinel://";

/// A parsed store URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum StoreUrl {
    /// `memory://`.
    Memory,
    /// `file://PATH`.
    File(PathBuf),
    /// One of the Redis schemes (the URL kept whole for the Redis backend).
    Redis {
        /// `redis`, `rediss`, `redis+cluster` or `redis+sentinel`.
        scheme: String,
        /// The whole URL.
        url: String,
    },
}

impl StoreUrl {
    /// Parses a store URL; the error says what is wrong and lists the supported forms.
    pub(crate) fn parse(url: &str) -> Result<StoreUrl, String> {
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(format!(
                "{:?} is not a store URL (supported: {SUPPORTED})",
                redact(url)
            ));
        };
        let scheme_lc = scheme.to_ascii_lowercase();
        match scheme_lc.as_str() {
            "memory" if rest.is_empty() => Ok(StoreUrl::Memory),
            "memory" => Err(format!(
                "memory:// takes no host or path (got {url:?}); to keep sessions in a file use \
                 file://PATH"
            )),
            "file" if rest.is_empty() => {
                Err("file:// needs a path, e.g. file:///var/lib/shoal/sessions.jsonl".to_owned())
            }
            "file" => Ok(StoreUrl::File(PathBuf::from(rest))),
            s if REDIS_SCHEMES.contains(&s) => {
                if rest.is_empty() {
                    return Err(format!("{s}:// needs a host, e.g. {s}://127.0.0.1:6379"));
                }
                // The backend's own parser: topology, sentinel master, database number.
                // Its messages redact passwords.
                let lower = format!("{scheme_lc}://{rest}");
                if let Err(e) = RedisConfig::new(lower).validate() {
                    return Err(match e {
                        shoal_core::Error::InvalidInput { reason } => reason,
                        other => other.to_string(),
                    });
                }
                Ok(StoreUrl::Redis {
                    scheme: scheme_lc.clone(),
                    url: format!("{scheme_lc}://{rest}"),
                })
            }
            _ => Err(format!(
                "unsupported store URL scheme {scheme:?} (supported: {SUPPORTED})"
            )),
        }
    }
}

/// `url` with any password replaced by `***` (safe for logs and messages).
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let hidden = if userinfo.contains(':') {
                format!("{user}:***")
            } else if scheme.starts_with("redis") && !userinfo.is_empty() {
                // redis://PASSWORD@host: a lone userinfo is the password.
                "***".to_owned()
            } else {
                user.to_owned()
            };
            format!("{scheme}://{hidden}@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

/// A store opened for one command, with what is needed to save it afterwards.
///
/// Composition, outermost first: the cache (`[cache]`, `--cache`), the resilience wrapper
/// (`[resilience]`, `--fallback`; Redis only), the backend. The health monitor, the
/// invalidation bus and the sweeper live as long as this value; [`OpenedStore::close`]
/// flushes deferred writes, waits for the outage journal and closes the bus.
#[derive(Debug)]
pub(crate) struct OpenedStore {
    store: Arc<dyn SessionStore>,
    /// The store without the cache (the same as `store` when there is none).
    uncached: Arc<dyn SessionStore>,
    backing: Backing,
    sweeper: Option<Sweeper>,
    url: String,
    resilient: Option<ResilientRedis>,
    monitor: Option<MonitorHandle>,
    drain_timeout: Duration,
    cache: Option<Arc<dyn CacheControl>>,
    /// The pub/sub bus: the cache's, or one opened for announcing writes or for the proxy.
    bus: tokio::sync::Mutex<Option<RedisPubSub>>,
    /// How to open a bus (Redis stores).
    bus_config: Option<(RedisConfig, BusConfig)>,
}

/// What the CLI needs of a [`Cached`] store, whatever it wraps.
pub(crate) trait CacheControl: Send + Sync + fmt::Debug {
    /// Counters.
    fn stats(&self) -> CacheStats;
    /// The configuration in force.
    fn config(&self) -> &CacheConfig;
    /// Drops every entry (local only).
    fn invalidate_all(&self);
    /// Writes every deferred write.
    fn flush(&self) -> BoxFuture<'_, shoal_core::Result<FlushReport>>;
    /// Stops deferring and writes everything deferred.
    fn shutdown(&self) -> BoxFuture<'_, shoal_core::Result<FlushReport>>;
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl<S: SessionStore> CacheControl for Cached<S> {
    fn stats(&self) -> CacheStats {
        Cached::stats(self)
    }
    fn config(&self) -> &CacheConfig {
        Cached::config(self)
    }
    fn invalidate_all(&self) {
        Cached::invalidate_all(self);
    }
    fn flush(&self) -> BoxFuture<'_, shoal_core::Result<FlushReport>> {
        Box::pin(Cached::flush(self))
    }
    fn shutdown(&self) -> BoxFuture<'_, shoal_core::Result<FlushReport>> {
        Box::pin(Cached::shutdown(self))
    }
}

/// The `strict` cache's version check when the breaker sits between the cache and Redis:
/// one `HMGET` under the breaker's `op_timeout` while the breaker is closed; otherwise the
/// wrapper's own `get` (the fallback's answer, or `Unavailable`), so a hit is never checked
/// against a server the breaker keeps out.
#[derive(Debug)]
struct GuardedStamp {
    redis: RedisStore,
    resilient: ResilientRedis,
}

#[async_trait::async_trait]
impl Revalidate for GuardedStamp {
    async fn stamp(&self, id: &SessionId) -> shoal_core::Result<Option<SessionStamp>> {
        if self.resilient.breaker_state() == BreakerState::Closed {
            let after = self.resilient.config().op_timeout;
            match tokio::time::timeout(after, self.redis.stamp(id)).await {
                Ok(r) => return r,
                Err(_) => {
                    return Err(shoal_core::Error::Timeout { op: "stamp", after });
                }
            }
        }
        Ok(self.resilient.get(id).await?.map(|s| SessionStamp::of(&s)))
    }
}

#[derive(Debug)]
enum Backing {
    /// `memory://`: nothing to save.
    Ephemeral(MemoryStore),
    /// `file://PATH`.
    File { path: PathBuf, memory: MemoryStore },
    /// A Redis store: the data lives in Redis.
    Redis(Box<RedisBacking>),
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

/// Builds a cache with the CLI's settings.
fn build_cache<S: SessionStore>(
    b: shoal_core::CachedBuilder<S>,
    cc: &CacheConfig,
    clock: &Arc<dyn Clock>,
    bus: &Option<RedisPubSub>,
) -> Result<Cached<S>, UsageError> {
    let mut b = b.config(cc.clone()).clock(Arc::clone(clock));
    if let Some(bus) = bus {
        b = b.bus(Arc::new(bus.clone()) as Arc<dyn InvalidationBus>);
    }
    b.build()
        .map_err(|e| UsageError(format!("invalid [cache] configuration: {e}")))
}

/// A background sweeper, stopped when dropped.
#[derive(Debug)]
enum Sweeper {
    Memory(SweeperHandle),
    Redis(RedisSweeper),
}

/// Opens the store named by `url` with the limits and settings of `config`. A background
/// sweeper runs until the returned value is dropped (its first pass comes one
/// `sweep_interval` after opening, so short commands never sweep).
///
/// A Redis server that cannot be reached fails within `redis.connect_timeout`; a bad Redis
/// configuration (an unreadable CA file, …) is a usage error.
pub(crate) async fn open_store(url: &str, config: &Config) -> anyhow::Result<OpenedStore> {
    let parsed = StoreUrl::parse(url).map_err(UsageError)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let memory = || {
        MemoryStore::builder()
            .limits(config.limits.clone())
            .clock(Arc::clone(&clock))
            .build()
    };
    let (store, backing, sweeper): (Arc<dyn SessionStore>, Backing, Option<Sweeper>) = match parsed
    {
        StoreUrl::Memory => {
            let m = memory();
            let sweeper = m.spawn_sweeper(config.memory.sweep_interval);
            (
                Arc::new(m.clone()),
                Backing::Ephemeral(m),
                Some(Sweeper::Memory(sweeper)),
            )
        }
        StoreUrl::File(path) => {
            let m = memory();
            check_parent(&path)?;
            let loaded = load_file(&m, &path).await?;
            tracing::debug!(path = %path.display(), sessions = loaded, "loaded file store");
            let sweeper = m.spawn_sweeper(config.memory.sweep_interval);
            (
                Arc::new(m.clone()),
                Backing::File { path, memory: m },
                Some(Sweeper::Memory(sweeper)),
            )
        }
        StoreUrl::Redis { url, .. } => {
            let rc = config.redis.to_redis_config(&url);
            let r = RedisStore::connect(rc.clone(), config.limits.clone(), Arc::clone(&clock))
                .await
                .map_err(|e| match e {
                    shoal_core::Error::InvalidInput { reason } => anyhow::Error::new(UsageError(
                        format!("invalid Redis configuration: {reason}"),
                    )),
                    other => anyhow::Error::new(other),
                })?;
            let sweeper = r.spawn_sweeper(config.redis.sweep_interval);
            (
                Arc::new(r.clone()),
                Backing::Redis(Box::new(RedisBacking {
                    store: r,
                    config: rc,
                })),
                Some(Sweeper::Redis(sweeper)),
            )
        }
    };
    let mut opened = OpenedStore {
        uncached: Arc::clone(&store),
        store,
        backing,
        sweeper,
        url: redact(url),
        resilient: None,
        monitor: None,
        drain_timeout: config.resilience.drain_timeout,
        cache: None,
        bus: tokio::sync::Mutex::new(None),
        bus_config: None,
    };
    opened.wrap(config, clock).await?;
    tracing::debug!(
        store = %redact(url),
        backend = opened.store.backend_name(),
        resilient = opened.resilient.is_some(),
        cached = opened.cache.is_some(),
        "store opened"
    );
    Ok(opened)
}

impl OpenedStore {
    /// Puts the resilience wrapper and the cache around the backend, as configured.
    async fn wrap(&mut self, config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<()> {
        let redis = self.redis().cloned();
        if let Some(rc) = config.resilience.to_resilience_config() {
            let Some(r) = &redis else {
                return Err(UsageError(format!(
                    "--fallback / resilience.fallback = {:?} needs a Redis store (the circuit \
                     breaker guards a remote server); {} is in process: drop the setting",
                    rc.fallback.as_str(),
                    self.url
                ))
                .into());
            };
            let fallback = MemoryStore::builder()
                .limits(config.limits.clone())
                .clock(Arc::clone(&clock))
                .build();
            let res = Resilient::new(r.store.clone(), fallback, rc)
                .map_err(|e| UsageError(format!("invalid [resilience] configuration: {e}")))?;
            self.monitor = Some(res.spawn_monitor());
            self.store = Arc::new(res.clone());
            self.uncached = Arc::clone(&self.store);
            self.resilient = Some(res);
        }
        if let Some(r) = &redis {
            self.bus_config = Some((r.config.clone(), config.cache.bus.clone()));
        }
        if !config.cache.enabled {
            return Ok(());
        }
        let mut cc = config.cache.to_cache_config();
        let bus = match (&redis, cc.consistency) {
            (None, Consistency::Invalidate) => {
                // Nothing else can write an in-process store: no announcements to wait for.
                tracing::debug!("cache: consistency `local` for an in-process store");
                cc = cc.with_consistency(Consistency::Local);
                None
            }
            (Some(r), Consistency::Invalidate | Consistency::Strict) => Some(
                RedisPubSub::connect(&r.config, config.cache.bus.clone())
                    .await
                    .context("starting the cache's invalidation bus")?,
            ),
            _ => None,
        };
        let (store, control): (Arc<dyn SessionStore>, Arc<dyn CacheControl>) =
            match (&self.resilient, &redis, &self.backing) {
                (Some(res), Some(r), _) => {
                    let v: Arc<dyn Revalidate> = Arc::new(GuardedStamp {
                        redis: r.store.clone(),
                        resilient: res.clone(),
                    });
                    let c =
                        build_cache(Cached::builder(res.clone()).validator(v), &cc, &clock, &bus)?;
                    (Arc::new(c.clone()), Arc::new(c))
                }
                (None, Some(r), _) => {
                    let v: Arc<dyn Revalidate> = Arc::new(r.store.clone());
                    let c = build_cache(
                        Cached::builder(r.store.clone()).validator(v),
                        &cc,
                        &clock,
                        &bus,
                    )?;
                    (Arc::new(c.clone()), Arc::new(c))
                }
                (_, None, Backing::File { memory, .. } | Backing::Ephemeral(memory)) => {
                    let c = build_cache(Cached::builder(memory.clone()), &cc, &clock, &bus)?;
                    (Arc::new(c.clone()), Arc::new(c))
                }
                (_, None, Backing::Redis(_)) => unreachable!("a Redis backing has a Redis store"),
            };
        self.store = store;
        self.cache = Some(control);
        *self.bus.get_mut() = bus;
        Ok(())
    }

    /// The store, shareable.
    pub(crate) fn store(&self) -> Arc<dyn SessionStore> {
        Arc::clone(&self.store)
    }

    /// The store without the cache (the bench's uncached side).
    pub(crate) fn uncached_store(&self) -> Arc<dyn SessionStore> {
        Arc::clone(&self.uncached)
    }

    /// The resilience wrapper, when on.
    pub(crate) fn resilient(&self) -> Option<&ResilientRedis> {
        self.resilient.as_ref()
    }

    /// The cache, when on.
    pub(crate) fn cache(&self) -> Option<&Arc<dyn CacheControl>> {
        self.cache.as_ref()
    }

    /// The invalidation bus's counters, when one is open.
    pub(crate) async fn bus_stats(&self) -> Option<BusStats> {
        self.bus.lock().await.as_ref().map(RedisPubSub::stats)
    }

    /// Tells other instances' caches that `ids` changed (a Redis store only). Through a cache
    /// with a bus this already happened; otherwise a bus is opened for it (best effort: if it
    /// cannot be, a warning says that other caches may serve the old copy for up to their
    /// entry ttl).
    pub(crate) async fn announce(&self, ids: &[SessionId]) {
        self.announce_inner(Some(ids)).await;
    }

    /// Tells other instances' caches that any session may have changed (after an import).
    pub(crate) async fn announce_all(&self) {
        self.announce_inner(None).await;
    }

    async fn announce_inner(&self, ids: Option<&[SessionId]>) {
        if self.cache.is_some() && ids.is_some() && self.bus.lock().await.is_some() {
            // The cache published the ids of its own writes.
            return;
        }
        let bus = match self.bus().await {
            Ok(Some(b)) => b,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "could not announce the change to other instances' caches; they may \
                     serve their copy until its entry ttl passes"
                );
                return;
            }
        };
        match ids {
            Some(ids) => bus.publish(ids),
            None => bus.publish_all(),
        }
    }

    /// The pub/sub bus between instances (a Redis store only, any topology): the cache's, or
    /// one opened now and kept (closed with the store). `Ok(None)` for other stores.
    pub(crate) async fn bus(&self) -> shoal_core::Result<Option<RedisPubSub>> {
        let Some((rc, bc)) = &self.bus_config else {
            return Ok(None);
        };
        let mut bus = self.bus.lock().await;
        if bus.is_none() {
            *bus = Some(RedisPubSub::connect(rc, bc.clone()).await?);
        }
        Ok(bus.clone())
    }

    /// Ends the command's use of the store: writes the cache's deferred writes, waits (up to
    /// `resilience.drain_timeout`) until the outage journal is replayed into Redis, sends the
    /// pending invalidations (up to 2 s; the bus ends with the store), stops the health
    /// monitor. An error says what was acknowledged but could not be written.
    pub(crate) async fn close(mut self) -> anyhow::Result<()> {
        let mut problems = Vec::new();
        if let Some(c) = &self.cache {
            match c.shutdown().await {
                Ok(r) if r.updates_dropped > 0 => problems.push(format!(
                    "{} cached updates were refused by the store at flush time",
                    r.updates_dropped
                )),
                Ok(_) => {}
                Err(e) => problems.push(format!("cache flush: {e}")),
            }
        }
        if let Some(res) = &self.resilient {
            let deadline = Instant::now() + self.drain_timeout;
            loop {
                let st = res.stats();
                if st.journal_entries == 0 && st.marked_sessions == 0 {
                    break;
                }
                if Instant::now() >= deadline {
                    problems.push(format!(
                        "{} journaled writes ({} sessions) were not replayed into Redis within \
                         {} (breaker {}): they are lost when shoal exits",
                        st.journal_entries,
                        st.marked_sessions,
                        humantime::format_duration(self.drain_timeout),
                        st.breaker
                    ));
                    break;
                }
                if st.breaker == BreakerState::Closed {
                    res.replay().await;
                } else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        if let Some(bus) = self.bus.get_mut().take() {
            // Sent, then closed; if they cannot be sent, a warning says what that means and
            // the bus is dropped with the store (its tasks end with the last handle).
            if bus.flush(Duration::from_secs(2)).await {
                bus.close().await;
            } else {
                tracing::warn!(
                    "some cache invalidations were not sent before exit; other instances' \
                     caches may serve their copy until its entry ttl passes"
                );
            }
        }
        if let Some(m) = self.monitor.take() {
            m.stop().await;
        }
        if problems.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("{}", problems.join("; "))
        }
    }

    /// The URL, password redacted.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The file behind a `file://` store.
    pub(crate) fn file_path(&self) -> Option<&Path> {
        match &self.backing {
            Backing::File { path, .. } => Some(path),
            Backing::Ephemeral(_) | Backing::Redis(_) => None,
        }
    }

    /// The Redis store behind a `redis…://` URL.
    pub(crate) fn redis(&self) -> Option<&RedisBacking> {
        match &self.backing {
            Backing::Redis(r) => Some(r),
            Backing::Ephemeral(_) | Backing::File { .. } => None,
        }
    }

    /// True for `memory://`: changes vanish when the command ends.
    pub(crate) fn is_ephemeral(&self) -> bool {
        matches!(self.backing, Backing::Ephemeral(_))
    }

    /// Stops the background sweeper (so an explicit `sweep` reports everything it removes).
    pub(crate) async fn stop_sweeper(&mut self) {
        match self.sweeper.take() {
            Some(Sweeper::Memory(s)) => s.stop().await,
            Some(Sweeper::Redis(s)) => s.stop(),
            None => {}
        }
    }

    /// Persists the store where that means something: a `file://` store is exported to a
    /// temporary file beside its file and renamed over it; a Redis store writes the counter
    /// increments it has not flushed yet (they are otherwise written in the background, which
    /// a short command may not wait for). A no-op for `memory://`.
    pub(crate) async fn save(&self) -> anyhow::Result<()> {
        if let Some(c) = &self.cache {
            c.flush()
                .await
                .context("writing the cache's deferred writes")?;
        }
        let (path, memory) = match &self.backing {
            Backing::File { path, memory } => (path, memory),
            Backing::Redis(r) => {
                // Counters are best effort: never fail a command that changed data for them.
                if let Err(e) = r.store.metrics().await {
                    tracing::warn!(error = %e, "redis counters not flushed");
                }
                return Ok(());
            }
            Backing::Ephemeral(_) => return Ok(()),
        };
        let out = AtomicFile::create(path)?;
        let mut w = BufWriter::new(out.tokio_file()?);
        let report = transfer::export(memory, &mut w, |_| {})
            .await
            .with_context(|| format!("writing store file {}", path.display()))?;
        w.flush().await?;
        if let Some((id, e)) = report.skipped.iter().find(|(_, e)| !e.is_not_found()) {
            anyhow::bail!(
                "store file {} not written: session {id} could not be saved: {e}",
                path.display()
            );
        }
        out.commit()
            .with_context(|| format!("saving store file {}", path.display()))?;
        tracing::debug!(path = %path.display(), sessions = report.sessions, "saved file store");
        Ok(())
    }
}

fn check_parent(path: &Path) -> anyhow::Result<()> {
    let parent = parent_dir(path);
    match std::fs::metadata(parent) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => anyhow::bail!(
            "store file {}: {} is not a directory",
            path.display(),
            parent.display()
        ),
        Err(e) => anyhow::bail!(
            "store file {}: directory {} is not usable: {e}",
            path.display(),
            parent.display()
        ),
    }
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Loads a Shoal export into `store`. A missing or empty file is an empty store.
async fn load_file(store: &MemoryStore, path: &Path) -> anyhow::Result<u64> {
    let file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => {
            return Err(e).with_context(|| format!("opening store file {}", path.display()));
        }
    };
    if file.metadata().await?.len() == 0 {
        return Ok(0);
    }
    let mut reader = BufReader::new(file);
    let report = transfer::import(
        store,
        &mut reader,
        &transfer::ImportOptions::default(),
        |_| {},
    )
    .await
    .with_context(|| format!("loading store file {}", path.display()))?;
    if let Some(bad) = report.failed.first() {
        anyhow::bail!(
            "loading store file {}: {bad} (the file is not a valid Shoal export)",
            path.display()
        );
    }
    Ok(report.imported)
}

/// A file written under a temporary name in the target's directory and renamed over the target
/// only on [`AtomicFile::commit`]; dropped uncommitted, the temporary file is removed.
#[derive(Debug)]
pub(crate) struct AtomicFile {
    tmp: tempfile::NamedTempFile,
    target: PathBuf,
}

impl AtomicFile {
    /// Starts writing `target`. An existing target keeps its permissions.
    pub(crate) fn create(target: &Path) -> anyhow::Result<AtomicFile> {
        let dir = parent_dir(target);
        let tmp = tempfile::Builder::new()
            .prefix(".shoal-")
            .suffix(".tmp")
            .tempfile_in(dir)
            .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
        if let Ok(meta) = std::fs::metadata(target) {
            std::fs::set_permissions(tmp.path(), meta.permissions())
                .with_context(|| format!("copying permissions of {}", target.display()))?;
        }
        Ok(AtomicFile {
            tmp,
            target: target.to_owned(),
        })
    }

    /// A Tokio handle on the temporary file.
    pub(crate) fn tokio_file(&self) -> anyhow::Result<tokio::fs::File> {
        Ok(tokio::fs::File::from_std(self.tmp.as_file().try_clone()?))
    }

    /// Syncs the data and renames the file over the target.
    pub(crate) fn commit(self) -> anyhow::Result<()> {
        self.tmp.as_file().sync_all()?;
        let target = self.target;
        self.tmp
            .persist(&target)
            .map_err(|e| e.error)
            .with_context(|| format!("renaming into {}", target.display()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_supported_urls() {
        assert_eq!(StoreUrl::parse("memory://"), Ok(StoreUrl::Memory));
        assert_eq!(StoreUrl::parse("MEMORY://"), Ok(StoreUrl::Memory));
        assert_eq!(
            StoreUrl::parse("file:///var/lib/shoal/s.jsonl"),
            Ok(StoreUrl::File("/var/lib/shoal/s.jsonl".into()))
        );
        assert_eq!(
            StoreUrl::parse("file://rel/s.jsonl"),
            Ok(StoreUrl::File("rel/s.jsonl".into()))
        );
        for url in [
            "redis://127.0.0.1:6379",
            "rediss://user:pw@h:6380/0",
            "redis+cluster://a:1,b:2",
            "redis+sentinel://s1:26379/mymaster",
        ] {
            assert!(
                matches!(StoreUrl::parse(url), Ok(StoreUrl::Redis { .. })),
                "{url}"
            );
        }
    }

    #[test]
    fn refuses_bad_urls_clearly() {
        let e = StoreUrl::parse("postgres://x").expect_err("scheme");
        assert!(
            e.contains("\"postgres\"") && e.contains("file://PATH"),
            "{e}"
        );
        let e = StoreUrl::parse("memory").expect_err("no scheme");
        assert!(e.contains("not a store URL"), "{e}");
        let e = StoreUrl::parse("memory://x").expect_err("memory path");
        assert!(e.contains("no host or path"), "{e}");
        let e = StoreUrl::parse("file://").expect_err("empty path");
        assert!(e.contains("needs a path"), "{e}");
        let e = StoreUrl::parse("redis://").expect_err("no host");
        assert!(e.contains("needs a host"), "{e}");
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("redis://u:secret@h:1/0"), "redis://u:***@h:1/0");
        assert_eq!(redact("redis://secret@h"), "redis://***@h");
        assert_eq!(redact("redis://h:6379"), "redis://h:6379");
        assert_eq!(redact("file:///a/b@c"), "file:///a/b@c");
        let e = StoreUrl::parse("foo://u:secret@h").expect_err("scheme");
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn redis_urls_are_checked_by_the_backend() {
        let e = StoreUrl::parse("redis+sentinel://u:secret@s1:26379").expect_err("no master");
        assert!(e.contains("master"), "{e}");
        assert!(!e.contains("secret"), "{e}");
        let e = StoreUrl::parse("redis+cluster://a:1/0").expect_err("cluster db");
        assert!(e.contains("database"), "{e}");
        assert_eq!(
            StoreUrl::parse("REDIS://h:1/2"),
            Ok(StoreUrl::Redis {
                scheme: "redis".into(),
                url: "redis://h:1/2".into()
            })
        );
    }

    #[tokio::test]
    async fn an_unreachable_redis_fails_fast_without_the_password() {
        let mut config = Config::default();
        config.redis.connect_timeout = std::time::Duration::from_millis(500);
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
        config.redis.tls_ca_file = Some("/definitely/not/here.pem".into());
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
