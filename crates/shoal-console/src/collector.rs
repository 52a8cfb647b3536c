//! The collector: two loops that read the fleet and publish a [`Snapshot`] after every
//! scrape of the proxies.
//!
//! - **Proxies** (every `scrape_interval`): each proxy's `/metrics`, concurrently, each
//!   bounded by a timeout; rates and percentiles over `rate_window`; breaker transitions,
//!   proxies lost and back, and journal replays become incidents.
//! - **Store** (every `store_interval`, on its own so a stalled Redis never delays the
//!   proxies' figures): live sessions, the feed's stats, Redis `INFO` (evictions, failovers,
//!   restarts become incidents), and every 5th time the analytics.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures_util::future::join_all;
use shoal_core::{SessionFilter, SessionStore, Timestamp, notify::NotifyBus, redact::redact_url};
use shoal_redis::RedisStore;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{
    config::ConsoleConfig,
    error::ConsoleError,
    redis_view::RedisView,
    scrape::{
        parse::parse,
        reading::{Reading, bucket_growth, merge_buckets, quantile, rate},
    },
    snapshot::{FleetView, HistoryPoint, InstanceView, OpView, Snapshot},
    timeline::{IncidentKind, Timeline},
};

/// What the console reads and acts on.
#[derive(Clone)]
pub struct Sources {
    /// The fleet's store: sessions, counts, deletes.
    pub store: Arc<dyn SessionStore>,
    /// The Redis store under it, for `INFO` and the analytics (`None` otherwise).
    pub redis: Option<RedisStore>,
    /// The bus that tells the proxies' caches a session changed (a delete).
    pub bus: Option<Arc<dyn NotifyBus>>,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources")
            .field("store", &self.store.backend_name())
            .field("redis", &self.redis.is_some())
            .field("bus", &self.bus.is_some())
            .finish()
    }
}

/// How many points of rate history the overview's charts keep.
const HISTORY: usize = 240;
/// Store operation results that are not failures.
const OK_RESULTS: [&str; 3] = ["ok", "not_found", "already_exists"];

/// An operation's calls/s, failures/s and latency bucket growth, summed over the proxies.
type OpSums = (String, f64, f64, Vec<(f64, f64)>);

/// One watched proxy.
#[derive(Debug)]
struct Track {
    /// As configured (scraped at `<url>/metrics`).
    url: String,
    /// Shown (credentials redacted).
    shown: String,
    readings: VecDeque<Reading>,
    up: Option<bool>,
    error: Option<String>,
    breaker: Option<f64>,
    replayed: Option<f64>,
}

#[derive(Debug, Default)]
struct State {
    tracks: Vec<Track>,
    timeline: Timeline,
    live_sessions: Option<u64>,
    store_error: Option<String>,
    redis: Option<RedisView>,
    redis_reachable: Option<bool>,
    feed: Option<shoal_core::feed::FeedStats>,
    analytics: Option<shoal_redis::analytics::AnalyticsReport>,
    analytics_note: Option<String>,
    history: VecDeque<HistoryPoint>,
}

/// Reads the fleet and publishes snapshots.
#[derive(Debug)]
pub struct Collector {
    cfg: ConsoleConfig,
    sources: Sources,
    http: reqwest::Client,
    state: Mutex<State>,
    tx: watch::Sender<Arc<Snapshot>>,
    /// The consumer group whose lag is the analytics' lag.
    analytics_group: String,
}

fn now_ms() -> u64 {
    Timestamp::now().as_millis()
}

impl Collector {
    /// A collector for `cfg.proxies` and `sources`; nothing runs until [`Collector::run`].
    /// Errors when no HTTP client can be built.
    pub fn new(cfg: ConsoleConfig, sources: Sources) -> Result<Arc<Self>, ConsoleError> {
        let tracks = cfg
            .proxies
            .iter()
            .map(|u| Track {
                url: u.trim_end_matches('/').to_owned(),
                shown: redact_url(u.trim_end_matches('/')),
                readings: VecDeque::new(),
                up: None,
                error: None,
                breaker: None,
                replayed: None,
            })
            .collect();
        let timeout = cfg.scrape_interval.max(Duration::from_secs(1));
        // reqwest is built without a bundled TLS provider (ring, as the Redis backend uses):
        // install it unless the process has one.
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .no_proxy()
            .build()
            .map_err(|e| ConsoleError::Setting {
                name: "proxies",
                reason: format!("no HTTP client for scraping: {e}"),
            })?;
        let (tx, _) = watch::channel(Arc::new(Snapshot::default()));
        Ok(Arc::new(Collector {
            cfg,
            sources,
            http,
            state: Mutex::new(State {
                tracks,
                ..State::default()
            }),
            tx,
            analytics_group: shoal_redis::analytics::AnalyticsConfig::default().group,
        }))
    }

    /// How many proxies are watched.
    pub fn proxies(&self) -> usize {
        self.cfg.proxies.len()
    }

    /// The sources.
    pub fn sources(&self) -> &Sources {
        &self.sources
    }

    /// The latest snapshot, and every next one.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.tx.subscribe()
    }

    /// The latest snapshot.
    pub fn latest(&self) -> Arc<Snapshot> {
        self.tx.borrow().clone()
    }

    /// Notes an incident the console itself caused or saw (an operator's delete).
    pub fn note(&self, kind: IncidentKind, source: &str, detail: String) {
        self.lock().timeline.note(now_ms(), kind, source, detail);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs both loops until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let store = tokio::spawn(self.clone().store_loop(stop.clone()));
        self.proxy_loop(stop).await;
        let _ = store.await;
    }

    async fn proxy_loop(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.cfg.scrape_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let urls: Vec<String> = self.lock().tracks.iter().map(|t| t.url.clone()).collect();
            let results = join_all(urls.iter().map(|u| self.scrape(u))).await;
            let snapshot = {
                let mut st = self.lock();
                for (track, result) in st.tracks.iter_mut().zip(results) {
                    track.apply(result, self.cfg.rate_window);
                }
                let mut incidents = Vec::new();
                for t in &mut st.tracks {
                    incidents.extend(t.incidents());
                }
                let at = now_ms();
                for (kind, source, detail) in incidents {
                    st.timeline.note(at, kind, &source, detail);
                }
                self.build(&mut st)
            };
            self.tx.send_replace(Arc::new(snapshot));
        }
    }

    async fn scrape(&self, url: &str) -> Result<Reading, String> {
        let resp = self
            .http
            .get(format!("{url}/metrics"))
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    "timed out".to_owned()
                } else if e.is_connect() {
                    "connection refused or unreachable".to_owned()
                } else {
                    "request failed".to_owned()
                }
            })?;
        if !resp.status().is_success() {
            return Err(format!("/metrics answered {}", resp.status()));
        }
        let text = resp
            .text()
            .await
            .map_err(|_| "body unreadable".to_owned())?;
        let (samples, skipped) = parse(&text);
        if skipped > 0 {
            tracing::debug!(target: "shoal::console", url = %redact_url(url), skipped, "unreadable metric lines skipped");
        }
        Ok(Reading {
            at: Instant::now(),
            samples,
        })
    }

    async fn store_loop(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.cfg.store_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut n: u64 = 0;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            self.read_store(n.is_multiple_of(5)).await;
            n += 1;
        }
    }

    async fn read_store(&self, with_analytics: bool) {
        let bound = self.cfg.store_interval.max(Duration::from_secs(2));
        let count =
            tokio::time::timeout(bound, self.sources.store.count(&SessionFilter::default())).await;
        let (live, store_error) = match count {
            Ok(Ok(n)) => (Some(n), None),
            Ok(Err(e)) => (None, Some(shoal_core::redact::redact_text(&e.to_string()))),
            Err(_) => (None, Some("timed out".to_owned())),
        };
        let feed = match self.sources.store.change_feed() {
            Some(f) => tokio::time::timeout(bound, f.stats())
                .await
                .ok()
                .and_then(Result::ok),
            None => None,
        };
        let info = match &self.sources.redis {
            Some(r) => Some(
                tokio::time::timeout(bound, r.server_info())
                    .await
                    .map_err(|_| "timed out".to_owned())
                    .and_then(|r| r.map_err(|e| shoal_core::redact::redact_text(&e.to_string()))),
            ),
            None => None,
        };
        let analytics = match (&self.sources.redis, with_analytics) {
            (Some(r), true) => Some(
                tokio::time::timeout(
                    bound,
                    shoal_redis::analytics::read_report(r, Duration::from_secs(3600), 10),
                )
                .await
                .map_err(|_| "timed out".to_owned())
                .and_then(|r| r.map_err(|e| shoal_core::redact::redact_text(&e.to_string()))),
            ),
            _ => None,
        };
        let mut st = self.lock();
        let at = now_ms();
        st.live_sessions = live;
        st.store_error = store_error;
        if feed.is_some() {
            st.feed = feed;
        }
        match info {
            Some(Ok(info)) => {
                let view = RedisView::of(&info);
                if st.redis_reachable == Some(false) {
                    st.timeline
                        .note(at, IncidentKind::RedisReachable, "redis", String::new());
                }
                st.redis_reachable = Some(true);
                if let Some(before) = st.redis.take() {
                    for (kind, detail) in redis_changes(&before, &view) {
                        st.timeline.note(at, kind, "redis", detail);
                    }
                }
                st.redis = Some(view);
            }
            Some(Err(e)) => {
                if st.redis_reachable != Some(false) {
                    st.timeline
                        .note(at, IncidentKind::RedisUnreachable, "redis", e);
                }
                st.redis_reachable = Some(false);
            }
            None => {}
        }
        match analytics {
            Some(Ok(r)) => {
                st.analytics = Some(r);
                st.analytics_note = None;
            }
            Some(Err(e)) => st.analytics_note = Some(format!("analytics not read: {e}")),
            None if self.sources.redis.is_none() => {
                st.analytics_note =
                    Some("analytics are kept on Redis stores only (with [feed] on)".into());
            }
            None => {}
        }
    }

    /// The snapshot of `st` now.
    fn build(&self, st: &mut State) -> Snapshot {
        let at_ms = now_ms();
        let mut fleet = FleetView {
            live_sessions: st.live_sessions,
            store_error: st.store_error.clone(),
            instances_total: st.tracks.len(),
            ..FleetView::default()
        };
        let mut instances = Vec::with_capacity(st.tracks.len());
        let mut request_buckets = Vec::new();
        let mut ops: Vec<OpSums> = Vec::new();
        let (mut responses, mut errors) = (0.0, 0.0);
        let (mut calls, mut failed) = (0.0, 0.0);
        let (mut hits, mut lookups) = (0.0, 0.0);
        for t in &st.tracks {
            let mut v = InstanceView {
                url: t.shown.clone(),
                up: t.up == Some(true),
                error: t.error.clone(),
                breaker: "none".into(),
                ..InstanceView::default()
            };
            if v.up {
                fleet.instances_up += 1;
            }
            if let (Some(now), Some(then)) = (t.readings.back(), t.readings.front()) {
                let secs = now.at.duration_since(then.at).as_secs_f64();
                let any = |_: &_| true;
                let info = now.samples.iter().find(|s| s.name == "shoal_proxy_info");
                v.instance = info.and_then(|s| s.label("instance")).map(str::to_owned);
                v.store = info.and_then(|s| s.label("store")).map(str::to_owned);
                let grew = |name: &str, f: &dyn Fn(&crate::scrape::parse::Sample) -> bool| {
                    let n = now.sum(name, f);
                    let b = then.sum(name, f);
                    if secs > 0.0 {
                        rate(n, b, secs) * secs
                    } else {
                        0.0
                    }
                };
                v.requests_per_sec = if secs > 0.0 {
                    grew("shoal_proxy_requests_total", &any) / secs
                } else {
                    0.0
                };
                v.sessions_per_min = if secs > 0.0 {
                    grew("shoal_proxy_sessions_created_total", &any) / secs * 60.0
                } else {
                    0.0
                };
                let growth = bucket_growth(
                    &now.buckets("shoal_proxy_request_duration_seconds", any),
                    &then.buckets("shoal_proxy_request_duration_seconds", any),
                );
                v.p50_ms = quantile(&growth, 0.5).map(|s| s * 1000.0);
                v.p99_ms = quantile(&growth, 0.99).map(|s| s * 1000.0);
                merge_buckets(&mut request_buckets, &growth);
                responses += grew("shoal_proxy_responses_total", &any);
                errors += grew("shoal_proxy_responses_total", &|s| {
                    s.label("class") == Some("5xx")
                });
                if let Some(b) = now.first("shoal_resilient_breaker_state", any) {
                    v.breaker = breaker_name(b).into();
                    if b >= 2.0 {
                        fleet.breakers_open += 1;
                    }
                }
                v.journal_entries = now.sum("shoal_resilient_journal_entries", any);
                fleet.journal_entries += v.journal_entries;
                v.open_streams = now.sum("shoal_proxy_open_streams", any);
                let h = grew("shoal_cache_hits_total", &any);
                let m = grew("shoal_cache_misses_total", &any);
                v.cache_hit_rate = (h + m > 0.0).then(|| h / (h + m));
                hits += h;
                lookups += h + m;
                for op in now.label_values("shoal_resilient_ops_total", "op") {
                    let is_op =
                        |s: &crate::scrape::parse::Sample| s.label("op") == Some(op.as_str());
                    let all = grew("shoal_resilient_ops_total", &is_op);
                    let bad = grew("shoal_resilient_ops_total", &|s| {
                        is_op(s) && !s.label("result").is_some_and(|r| OK_RESULTS.contains(&r))
                    });
                    calls += all;
                    failed += bad;
                    let g = bucket_growth(
                        &now.buckets("shoal_resilient_op_duration_seconds", is_op),
                        &then.buckets("shoal_resilient_op_duration_seconds", is_op),
                    );
                    match ops.iter_mut().find(|(o, ..)| *o == op) {
                        Some(entry) => {
                            entry.1 += all / secs.max(1e-9);
                            entry.2 += bad / secs.max(1e-9);
                            merge_buckets(&mut entry.3, &g);
                        }
                        None => {
                            ops.push((op.clone(), all / secs.max(1e-9), bad / secs.max(1e-9), g))
                        }
                    }
                }
                fleet.requests_per_sec += v.requests_per_sec;
                fleet.sessions_per_min += v.sessions_per_min;
            }
            instances.push(v);
        }
        fleet.request_p50_ms = quantile(&request_buckets, 0.5).map(|s| s * 1000.0);
        fleet.request_p99_ms = quantile(&request_buckets, 0.99).map(|s| s * 1000.0);
        fleet.error_rate = if responses > 0.0 {
            errors / responses
        } else {
            0.0
        };
        fleet.store_error_rate = if calls > 0.0 { failed / calls } else { 0.0 };
        fleet.cache_hit_rate = (lookups > 0.0).then(|| hits / lookups);
        ops.sort_by(|a, b| b.1.total_cmp(&a.1));
        let ops: Vec<OpView> = ops
            .into_iter()
            .map(|(op, per_sec, errors_per_sec, b)| OpView {
                op,
                per_sec,
                errors_per_sec,
                p50_ms: quantile(&b, 0.5).map(|s| s * 1000.0),
                p99_ms: quantile(&b, 0.99).map(|s| s * 1000.0),
            })
            .collect();
        fleet.ops_per_sec = ops.iter().map(|o| o.per_sec).sum();
        fleet.feed_lag = st.feed.as_ref().and_then(|f| {
            f.groups
                .iter()
                .find(|g| g.name == self.analytics_group)
                .and_then(|g| g.lag)
        });
        if st.history.len() == HISTORY {
            st.history.pop_front();
        }
        st.history.push_back(HistoryPoint {
            at_ms,
            requests_per_sec: fleet.requests_per_sec,
            ops_per_sec: fleet.ops_per_sec,
            live_sessions: fleet.live_sessions,
        });
        Snapshot {
            at_ms,
            fleet,
            instances,
            ops,
            redis: st.redis.clone(),
            feed: st.feed.clone(),
            analytics: st.analytics.clone(),
            analytics_note: st.analytics_note.clone(),
            incidents: st.timeline.newest(200),
            history: st.history.iter().copied().collect(),
        }
    }
}

fn breaker_name(v: f64) -> &'static str {
    if v >= 2.0 {
        "open"
    } else if v >= 1.0 {
        "half-open"
    } else {
        "closed"
    }
}

impl Track {
    /// Takes a scrape's result; keeps readings back to `window` (plus one older, the base).
    fn apply(&mut self, result: Result<Reading, String>, window: Duration) {
        match result {
            Ok(r) => {
                self.error = None;
                self.readings.push_back(r);
                while self.readings.len() > 2
                    && self.readings.get(1).is_some_and(|second| {
                        self.readings
                            .back()
                            .is_some_and(|last| last.at.duration_since(second.at) >= window)
                    })
                {
                    self.readings.pop_front();
                }
            }
            Err(e) => self.error = Some(e),
        }
    }

    /// What changed since the last scrape.
    fn incidents(&mut self) -> Vec<(IncidentKind, String, String)> {
        let mut out = Vec::new();
        let up = self.error.is_none() && !self.readings.is_empty();
        match (self.up, up) {
            (Some(true), false) => out.push((
                IncidentKind::InstanceDown,
                self.shown.clone(),
                self.error.clone().unwrap_or_default(),
            )),
            (Some(false), true) => {
                out.push((IncidentKind::InstanceUp, self.shown.clone(), String::new()))
            }
            _ => {}
        }
        self.up = Some(up);
        if !up {
            return out;
        }
        let Some(last) = self.readings.back() else {
            return out;
        };
        let any = |_: &_| true;
        let breaker = last.first("shoal_resilient_breaker_state", any);
        if let Some(b) = breaker
            && self.breaker.is_some_and(|before| before != b)
        {
            let kind = match breaker_name(b) {
                "open" => IncidentKind::BreakerOpened,
                "half-open" => IncidentKind::BreakerHalfOpen,
                _ => IncidentKind::BreakerClosed,
            };
            out.push((
                kind,
                self.shown.clone(),
                format!("was {}", breaker_name(self.breaker.unwrap_or(0.0))),
            ));
        }
        self.breaker = breaker.or(self.breaker);
        let replayed = last.sum("shoal_resilient_replayed_total", any);
        if let Some(before) = self.replayed
            && replayed > before
        {
            out.push((
                IncidentKind::Replayed,
                self.shown.clone(),
                format!("{} journal entries replayed into Redis", replayed - before),
            ));
        }
        self.replayed = Some(replayed);
        out
    }
}

/// Incidents between two readings of Redis.
fn redis_changes(before: &RedisView, now: &RedisView) -> Vec<(IncidentKind, String)> {
    let mut out = Vec::new();
    if !before.run_id.is_empty() && !now.run_id.is_empty() && before.run_id != now.run_id {
        // Behind Sentinel the store follows the master: another server answering is a
        // failover; the same address with a new run id is a restart.
        if now.topology == "sentinel" && now.uptime_s > before.uptime_s {
            out.push((
                IncidentKind::Failover,
                "Sentinel's master is another server now".to_owned(),
            ));
        } else {
            out.push((
                IncidentKind::RedisRestarted,
                format!("run id changed; up {:.0} s", now.uptime_s),
            ));
        }
    }
    if now.evicted_keys > before.evicted_keys {
        out.push((
            IncidentKind::Evicted,
            format!("{} keys evicted", now.evicted_keys - before.evicted_keys),
        ));
    }
    if before.role != now.role || before.master != now.master {
        out.push((
            IncidentKind::Failover,
            format!(
                "role {} → {}{}",
                before.role,
                now.role,
                now.master
                    .as_deref()
                    .map(|m| format!(", master {m}"))
                    .unwrap_or_default()
            ),
        ));
    }
    for n in &now.nodes {
        let was = before.nodes.iter().find(|b| b.address == n.address);
        if let Some(was) = was
            && (was.failing != n.failing || was.role != n.role)
        {
            out.push((
                IncidentKind::Failover,
                format!(
                    "cluster node {}: {}{} → {}{}",
                    n.address,
                    was.role,
                    if was.failing { " (failing)" } else { "" },
                    n.role,
                    if n.failing { " (failing)" } else { "" }
                ),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(text: &str) -> Result<Reading, String> {
        Ok(Reading {
            at: Instant::now(),
            samples: parse(text).0,
        })
    }

    #[test]
    fn a_proxy_s_changes_are_incidents() {
        let mut t = Track {
            url: "http://p".into(),
            shown: "http://p".into(),
            readings: VecDeque::new(),
            up: None,
            error: None,
            breaker: None,
            replayed: None,
        };
        let w = Duration::from_secs(10);
        let kinds = |t: &mut Track| -> Vec<IncidentKind> {
            t.incidents().into_iter().map(|(k, ..)| k).collect()
        };
        t.apply(
            reading("shoal_resilient_breaker_state{backend=\"redis\"} 0\n"),
            w,
        );
        assert!(
            kinds(&mut t).is_empty(),
            "the first reading is the baseline"
        );
        t.apply(
            reading(
                "shoal_resilient_breaker_state{backend=\"redis\"} 2\n\
                 shoal_resilient_replayed_total{kind=\"frames\"} 0\n",
            ),
            w,
        );
        assert_eq!(kinds(&mut t), vec![IncidentKind::BreakerOpened]);
        t.apply(Err("connection refused or unreachable".into()), w);
        assert_eq!(kinds(&mut t), vec![IncidentKind::InstanceDown]);
        t.apply(
            reading(
                "shoal_resilient_breaker_state{backend=\"redis\"} 0\n\
                 shoal_resilient_replayed_total{kind=\"frames\"} 4\n\
                 shoal_resilient_replayed_total{kind=\"session\"} 1\n",
            ),
            w,
        );
        assert_eq!(
            kinds(&mut t),
            vec![
                IncidentKind::InstanceUp,
                IncidentKind::BreakerClosed,
                IncidentKind::Replayed
            ]
        );
        t.apply(
            reading("shoal_resilient_breaker_state{backend=\"redis\"} 0\n"),
            w,
        );
        assert!(
            kinds(&mut t).is_empty(),
            "a restarted proxy's counters are no replay"
        );
    }

    #[test]
    fn redis_changes_are_incidents() {
        let a = RedisView {
            run_id: "a".into(),
            role: "master".into(),
            evicted_keys: 1.0,
            ..RedisView::default()
        };
        let b = RedisView {
            run_id: "b".into(),
            role: "slave".into(),
            master: Some("127.0.0.1:7000 (up)".into()),
            evicted_keys: 4.0,
            ..RedisView::default()
        };
        let kinds: Vec<IncidentKind> = redis_changes(&a, &b).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            kinds,
            vec![
                IncidentKind::RedisRestarted,
                IncidentKind::Evicted,
                IncidentKind::Failover
            ]
        );
        assert!(redis_changes(&a, &a).is_empty());
    }
}
