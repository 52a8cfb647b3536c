//! The conformance suite over TLS (`rediss://` with a CA generated for the test) and as an ACL
//! user that may run only the commands Shoal needs, on keys under its prefix.

use std::sync::{
    Arc, OnceLock,
    atomic::{AtomicU64, Ordering},
};

use shoal_core::{Error, Limits, ManualClock, Session, SessionId, SessionStore, Transport};
use shoal_redis::{RedisConfig, RedisStore};
use shoal_testkit::{Harness, redis_server::RedisServer};

/// Every command Shoal sends, directly or from its scripts (Redis checks commands run by a
/// script against the caller's ACL too). Keep in sync with the README.
const SHOAL_COMMANDS: &[&str] = &[
    // connection check at start and in health (AUTH/HELLO need no permission)
    "+ping",
    // scripts
    "+evalsha",
    "+script|load",
    // session hash, list and requests (direct and inside scripts)
    "+hgetall",
    "+hget",
    "+hmget",
    "+hset",
    "+hdel",
    "+hexists",
    "+hlen",
    "+hstrlen",
    "+rpush",
    "+llen",
    "+ltrim",
    "+lrange",
    "+del",
    "+exists",
    "+type",
    "+pexpire",
    "+pttl",
    // indices
    "+zadd",
    "+zrem",
    "+zcard",
    "+zscore",
    "+zcount",
    "+zrangebyscore",
    "+zrangebylex",
    // admission quotas (the script reads the server's clock and trims its logs)
    "+time",
    "+zremrangebyscore",
    // sweep lease and metrics
    "+set",
    "+get",
    "+incrby",
    // health (optional: without it the report lacks the server version)
    "+info",
    // the change feed: written by the scripts; read by followers, consumer groups, stats
    "+xadd",
    "+xread",
    "+xreadgroup",
    "+xack",
    "+xautoclaim",
    "+xgroup|create",
    "+xlen",
    "+xrevrange",
    "+xinfo|groups",
    "+memory|usage",
    // analytics
    "+hincrby",
    "+expire",
];

const ACL_PASSWORD: &str = "s3cret-pw";

fn tls_server() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(|| RedisServer::builder().tls().start())
}

fn acl_server() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let server = RedisServer::start();
        let mut args = vec![
            "ACL",
            "SETUSER",
            "shoal",
            "reset",
            "on",
            ">s3cret-pw",
            "~acl*",
            "resetchannels",
        ];
        args.extend_from_slice(SHOAL_COMMANDS);
        let out = server.cli(&args);
        assert_eq!(out.trim(), "OK", "ACL SETUSER failed: {out}");
        // A user with one command missing, for the negative test.
        let mut args = vec![
            "ACL",
            "SETUSER",
            "nozadd",
            "reset",
            "on",
            ">s3cret-pw",
            "~acl*",
            "resetchannels",
        ];
        args.extend(SHOAL_COMMANDS.iter().filter(|c| **c != "+zadd"));
        let out = server.cli(&args);
        assert_eq!(out.trim(), "OK", "ACL SETUSER failed: {out}");
        // A user who may not write the change feed.
        let mut args = vec![
            "ACL",
            "SETUSER",
            "noxadd",
            "reset",
            "on",
            ">s3cret-pw",
            "~acl*",
            "resetchannels",
        ];
        args.extend(SHOAL_COMMANDS.iter().filter(|c| **c != "+xadd"));
        let out = server.cli(&args);
        assert_eq!(out.trim(), "OK", "ACL SETUSER failed: {out}");
        server
    })
}

fn next_prefix(kind: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{kind}{}", N.fetch_add(1, Ordering::Relaxed))
}

async fn redis_tls(h: Harness) -> Arc<dyn SessionStore> {
    let server = tls_server();
    let url = server.tls_url().unwrap_or_else(|| panic!("no TLS port"));
    let ca = server
        .tls_certs()
        .unwrap_or_else(|| panic!("no certificates"))
        .ca_cert_path();
    let config = RedisConfig::new(url)
        .with_key_prefix(next_prefix("tls"))
        .with_tls_ca_file(ca);
    Arc::new(
        RedisStore::connect(config, h.limits, Arc::new(h.clock))
            .await
            .unwrap_or_else(|e| panic!("connect over TLS: {e}")),
    )
}

async fn redis_acl(h: Harness) -> Arc<dyn SessionStore> {
    let url = acl_server().url_with_user("shoal", ACL_PASSWORD);
    let config = RedisConfig::new(url)
        .with_key_prefix(next_prefix("acl"))
        .with_feed(h.feed.clone());
    Arc::new(
        RedisStore::connect(config, h.limits, Arc::new(h.clock))
            .await
            .unwrap_or_else(|e| panic!("connect as ACL user: {e}")),
    )
}

shoal_testkit::conformance_suite!(tls, redis_tls);
shoal_testkit::conformance_suite!(acl, redis_acl);
shoal_testkit::feed_suite!(acl_feed, redis_acl);

/// A user who may not write the change feed: with the feed on, the store refuses to start and
/// says what to grant or turn off (every write would otherwise fail after its change); with
/// the feed off it works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_xadd_is_told_at_connect() {
    let url = acl_server().url_with_user("noxadd", ACL_PASSWORD);
    let err = RedisStore::connect(
        RedisConfig::new(url.clone())
            .with_key_prefix(next_prefix("acl"))
            .with_feed(shoal_core::FeedConfig::default()),
        Limits::default(),
        Arc::new(ManualClock::starting_now()),
    )
    .await
    .err()
    .unwrap_or_else(|| panic!("connected without XADD permission"));
    assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
    assert!(err.to_string().contains("[feed] enabled = false"), "{err}");
    assert!(!err.to_string().contains(ACL_PASSWORD), "{err}");
    let store = RedisStore::connect(
        RedisConfig::new(url).with_key_prefix(next_prefix("acl")),
        Limits::default(),
        Arc::new(ManualClock::starting_now()),
    )
    .await
    .unwrap_or_else(|e| panic!("without the feed: {e}"));
    let id = SessionId::new("nofeed").unwrap_or_else(|e| panic!("{e}"));
    store
        .create(Session::new(id, Transport::Http))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}
shoal_testkit::model_test!(model_over_tls, redis_tls);
shoal_testkit::model_test!(model_as_acl_user, redis_acl);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_without_the_ca_is_refused() {
    let url = tls_server()
        .tls_url()
        .unwrap_or_else(|| panic!("no TLS port"));
    let err = RedisStore::connect(
        RedisConfig::new(url),
        Limits::default(),
        Arc::new(ManualClock::starting_now()),
    )
    .await
    .err()
    .unwrap_or_else(|| panic!("an unknown CA was trusted"));
    assert!(err.to_string().contains("cannot connect"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_a_clear_error() {
    let url = acl_server().url_with_user("shoal", "wrong");
    let err = RedisStore::connect(
        RedisConfig::new(url).with_key_prefix("acl-x"),
        Limits::default(),
        Arc::new(ManualClock::starting_now()),
    )
    .await
    .err()
    .unwrap_or_else(|| panic!("a wrong password was accepted"));
    assert!(matches!(err, Error::Backend(_)), "{err:?}");
    assert!(!err.to_string().contains("wrong@"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_permission_is_a_backend_error_not_unavailable() {
    let url = acl_server().url_with_user("nozadd", ACL_PASSWORD);
    let store = RedisStore::connect(
        RedisConfig::new(url).with_key_prefix(next_prefix("acl")),
        Limits::default(),
        Arc::new(ManualClock::starting_now()),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    // Reserving a place (ZADD inside the reserve script) is denied: a Backend error, so a
    // resilience layer does not mistake a misconfiguration for an outage, and nothing is
    // written.
    let id = SessionId::new("p1").unwrap_or_else(|e| panic!("{e}"));
    let err = store
        .create(Session::new(id.clone(), Transport::Http))
        .await
        .err()
        .unwrap_or_else(|| panic!("created without ZADD permission"));
    assert!(matches!(err, Error::Backend(_)), "{err:?}");
    assert!(err.to_string().contains("can't run this command"), "{err}");
    assert!(
        store
            .get(&id)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none()
    );
    // Outside the key pattern: NOPERM is a Backend error — at connect, which writes the
    // dataset marker under the prefix.
    let err = RedisStore::connect(
        RedisConfig::new(acl_server().url_with_user("shoal", ACL_PASSWORD))
            .with_key_prefix("outside"),
        Limits::default(),
        Arc::new(ManualClock::starting_now()),
    )
    .await
    .err()
    .unwrap_or_else(|| panic!("connected with a prefix outside the ACL pattern"));
    assert!(matches!(err, Error::Backend(_)), "{err:?}");
    assert!(err.to_string().to_lowercase().contains("noperm"), "{err}");
    assert!(!err.is_not_found());
}
