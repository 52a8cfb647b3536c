//! Loading, layering, checking and printing the configuration.

use std::io::Write as _;

use std::{path::Path, time::Duration};

use shoal_core::{
    cached::{CacheConfig, Consistency, WriteMode},
    resilient::FallbackMode,
};
use shoal_redis::RedisConfig;

use super::{Config, LogFormat, Overrides, Sources, load, model::SECTIONS, to_toml};

fn file(contents: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("temp file");
    f.write_all(contents.as_bytes()).expect("write");
    f
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The load error with only `vars` set in the environment.
fn env_err(vars: &[(&str, &str)]) -> String {
    load_err(&Sources {
        env: env(vars),
        ..Sources::default()
    })
}

fn load_err(sources: &Sources) -> String {
    load(sources).expect_err("should fail").to_string()
}

/// Loading `toml` as the config file fails with an error naming `key`, containing
/// `needle`, and naming the file.
fn assert_file_error(toml: &str, key: &str, needle: &str) {
    let f = file(toml);
    let err = load_err(&Sources {
        file: Some(f.path().to_owned()),
        ..Sources::default()
    });
    assert!(err.contains(key), "{toml}: {err}");
    assert!(err.contains(needle), "{toml}: {err}");
    assert!(err.contains(&f.path().display().to_string()), "{err}");
}

#[test]
fn defaults_apply_without_any_source() {
    let c = load(&Sources::default()).expect("defaults");
    assert_eq!(c, Config::default());
    assert_eq!(c.store, "memory://");
    assert_eq!(c.limits.session_ttl, Duration::from_secs(24 * 3600));
    assert_eq!(c.memory.sweep_interval, Duration::from_secs(30));
    assert_eq!(c.log.level, "warn");
    assert_eq!(c.log.format, LogFormat::Text);
}

#[test]
fn precedence_is_defaults_file_env_flags() {
    let f = file(
        "store = \"file:///tmp/from-file.jsonl\"\n[limits]\nmax_sessions = 10\n\
         max_frame_bytes = 1000\nsession_ttl = \"2h\"\n[memory]\nsweep_interval = \"5s\"\n\
         [log]\nlevel = \"info\"\nformat = \"json\"\n",
    );
    // File alone beats defaults.
    let c = load(&Sources {
        file: Some(f.path().to_owned()),
        ..Sources::default()
    })
    .expect("file");
    assert_eq!(c.store, "file:///tmp/from-file.jsonl");
    assert_eq!(c.limits.max_sessions, 10);
    assert_eq!(c.limits.session_ttl, Duration::from_secs(7200));
    assert_eq!(c.limits.max_frames_per_session, 10_000, "untouched default");
    assert_eq!(c.memory.sweep_interval, Duration::from_secs(5));
    assert_eq!(c.log.format, LogFormat::Json);

    // Env beats the file, key by key.
    let e = env(&[
        ("SHOAL_STORE", "file:///tmp/from-env.jsonl"),
        ("SHOAL_LIMITS__MAX_SESSIONS", "20"),
        ("SHOAL_LOG__LEVEL", "debug"),
        ("SHOAL_CONFIG", "/ignored.toml"),
        ("SHOAL_REDIS_URL", "redis://harness-only"),
        ("SHOAL_TEST_THREADS", "4"),
        ("UNRELATED", "x"),
    ]);
    let c = load(&Sources {
        file: Some(f.path().to_owned()),
        env: e.clone(),
        ..Sources::default()
    })
    .expect("file+env");
    assert_eq!(c.store, "file:///tmp/from-env.jsonl");
    assert_eq!(c.limits.max_sessions, 20);
    assert_eq!(c.limits.max_frame_bytes, 1000, "from the file");
    assert_eq!(c.log.level, "debug");

    // Flags beat everything.
    let c = load(&Sources {
        file: Some(f.path().to_owned()),
        env: e,
        flags: Overrides {
            store: Some("memory://".into()),
            log_level: Some("trace".into()),
            log_format: Some(LogFormat::Text),
            ..Overrides::default()
        },
    })
    .expect("all");
    assert_eq!(c.store, "memory://");
    assert_eq!(c.log.level, "trace");
    assert_eq!(c.log.format, LogFormat::Text);
    assert_eq!(c.limits.max_sessions, 20, "still from env");
}

#[test]
fn unknown_keys_name_the_key_and_the_file() {
    let f = file("[limits]\nmax_sesions = 5\n");
    let err = load_err(&Sources {
        file: Some(f.path().to_owned()),
        ..Sources::default()
    });
    assert!(err.contains("limits.max_sesions"), "{err}");
    assert!(err.contains(&f.path().display().to_string()), "{err}");
    assert!(
        err.contains("max_sessions"),
        "lists the expected keys: {err}"
    );

    let f = file("stor = \"memory://\"\n");
    let err = load_err(&Sources {
        file: Some(f.path().to_owned()),
        ..Sources::default()
    });
    assert!(err.contains("`stor`"), "{err}");
    assert!(err.contains(&f.path().display().to_string()), "{err}");
}

#[test]
fn the_resilience_section_maps_layers_and_round_trips() {
    let c = load(&Sources::default()).expect("defaults");
    assert_eq!(c.resilience.fallback, None, "off by default");
    assert!(c.resilience.wrapper_config().is_none());
    assert!(!c.cache.enabled, "off by default");

    let f = file(
        "store = \"redis://127.0.0.1:6379\"\n[resilience]\nfallback = \"read-only\"\n\
         op_timeout = \"250ms\"\ndrain_timeout = \"3s\"\n[resilience.breaker]\n\
         failure_threshold = 3\ncooldown = \"5s\"\nfailure_ratio = 0.25\n\
         [resilience.journal]\nmax_entries = 50\n[resilience.health]\ninterval = \"100ms\"\n\
         [resilience.retry]\nmax_retries = 0\n",
    );
    let sources = |env: &[(&str, &str)], flags: Overrides| Sources {
        file: Some(f.path().to_owned()),
        env: self::env(env),
        flags,
    };
    let c = load(&sources(&[], Overrides::default())).expect("file");
    let rc = c.resilience.wrapper_config().expect("on");
    assert_eq!(rc.fallback, FallbackMode::ReadOnly);
    assert_eq!(rc.op_timeout, Duration::from_millis(250));
    assert_eq!(rc.breaker.failure_threshold, 3);
    assert_eq!(rc.breaker.cooldown, Duration::from_secs(5));
    assert_eq!(rc.breaker.failure_ratio, 0.25);
    assert_eq!(rc.breaker.close_after, 3, "untouched default");
    assert_eq!(rc.journal.max_entries, 50);
    assert_eq!(rc.health.interval, Duration::from_millis(100));
    assert_eq!(rc.retry.max_retries, 0);
    assert_eq!(c.resilience.drain_timeout, Duration::from_secs(3));

    // Env beats the file; the flag beats both.
    let env = [
        ("SHOAL_RESILIENCE__FALLBACK", "none"),
        ("SHOAL_RESILIENCE__BREAKER__COOLDOWN", "7s"),
        ("SHOAL_RESILIENCE__BREAKER__FAILURE_RATIO", "1"),
    ];
    let c = load(&sources(&env, Overrides::default())).expect("env");
    let rc = c.resilience.wrapper_config().expect("on");
    assert_eq!(rc.fallback, FallbackMode::None);
    assert_eq!(rc.breaker.cooldown, Duration::from_secs(7));
    assert_eq!(rc.breaker.failure_ratio, 1.0);
    let c = load(&sources(
        &env,
        Overrides {
            fallback: Some(FallbackMode::Memory),
            ..Overrides::default()
        },
    ))
    .expect("flag");
    assert_eq!(c.resilience.fallback, Some(FallbackMode::Memory));
    assert_eq!(c.resilience.config.breaker.cooldown, Duration::from_secs(7));

    // Printed back, it loads to the same configuration.
    let text = to_toml(&c).expect("toml");
    assert!(text.contains("[resilience.breaker]"), "{text}");
    let again = file(&text);
    let back = load(&Sources {
        file: Some(again.path().to_owned()),
        ..Sources::default()
    })
    .expect("reload");
    assert_eq!(back, c);
}

#[test]
fn the_cache_section_maps_layers_and_round_trips() {
    let f = file(
        "[cache]\nenabled = true\nmax_entries = 500\nttl = \"2s\"\nconsistency = \"strict\"\n\
         write_mode = \"write_behind\"\ntouch_interval = \"250ms\"\ntail_frames = 0\n\
         [cache.bus]\nping_interval = \"300ms\"\n",
    );
    let c = load(&Sources {
        file: Some(f.path().to_owned()),
        ..Sources::default()
    })
    .expect("file");
    assert!(c.cache.enabled);
    let cc = c.cache.config.clone();
    assert_eq!(cc.max_entries, 500);
    assert_eq!(cc.ttl, Duration::from_secs(2));
    assert_eq!(cc.consistency, Consistency::Strict);
    assert_eq!(cc.write_mode, WriteMode::WriteBehind);
    assert_eq!(cc.touch_interval, Duration::from_millis(250));
    assert_eq!(cc.tail_frames, 0);
    assert_eq!(cc.max_bytes, CacheConfig::default().max_bytes);
    assert_eq!(c.cache.bus.ping_interval, Duration::from_millis(300));

    let c = load(&Sources {
        file: Some(f.path().to_owned()),
        env: env(&[
            ("SHOAL_CACHE__TTL", "9s"),
            ("SHOAL_CACHE__CONSISTENCY", "invalidate"),
            ("SHOAL_CACHE__BUS__MAX_IDS_PER_MESSAGE", "16"),
        ]),
        flags: Overrides {
            cache_write_mode: Some(WriteMode::ReadThrough),
            ..Overrides::default()
        },
    })
    .expect("env + flags");
    assert_eq!(c.cache.config.ttl, Duration::from_secs(9));
    assert_eq!(c.cache.config.consistency, Consistency::Invalidate);
    assert_eq!(c.cache.config.write_mode, WriteMode::ReadThrough);
    assert_eq!(c.cache.bus.max_ids_per_message, 16);

    let on = load(&Sources {
        flags: Overrides {
            cache: true,
            ..Overrides::default()
        },
        ..Sources::default()
    })
    .expect("--cache");
    assert!(on.cache.enabled);

    let text = to_toml(&c).expect("toml");
    assert!(text.contains("[cache.bus]"), "{text}");
    let again = file(&text);
    let back = load(&Sources {
        file: Some(again.path().to_owned()),
        ..Sources::default()
    })
    .expect("reload");
    assert_eq!(back, c);
}

#[test]
fn bad_resilience_and_cache_keys_are_located() {
    for (toml, key, needle) in [
        (
            "[resilience]\nfallbak = \"memory\"\n",
            "resilience.fallbak",
            "expected one of",
        ),
        (
            "[resilience.breaker]\nthreshold = 1\n",
            "resilience.breaker.threshold",
            "failure_threshold",
        ),
        (
            "[resilience]\nfallback = \"disk\"\n",
            "resilience.fallback",
            "disk",
        ),
        (
            "[resilience.breaker]\nfailure_ratio = 1.5\n",
            "resilience.breaker.failure_ratio",
            "(0, 1]",
        ),
        (
            "[resilience.breaker]\ncooldown = \"soon\"\n",
            "resilience.breaker.cooldown",
            "soon",
        ),
        (
            "[resilience.journal]\nmax_entries = 0\n",
            "resilience.journal.max_entries",
            ">= 1",
        ),
        ("[cache]\nttl_ms = 5\n", "cache.ttl_ms", "expected one of"),
        ("[cache]\nttl = \"0s\"\n", "cache.ttl", "greater than zero"),
        (
            "[cache]\nconsistency = \"eventual\"\n",
            "cache.consistency",
            "eventual",
        ),
        (
            "[cache]\nmax_entries = 0\n",
            "cache.max_entries",
            "at least 1",
        ),
        (
            "[cache.bus]\nmax_ids_per_message = 0\n",
            "cache.bus.max_ids_per_message",
            "at least 1",
        ),
        (
            "[cache.bus]\nping = \"1s\"\n",
            "cache.bus.ping",
            "ping_interval",
        ),
    ] {
        assert_file_error(toml, key, needle);
    }
    let err = env_err(&[("SHOAL_RESILIENCE__BREAKER__COOLDOWN", "0s")]);
    assert!(err.contains("resilience.breaker.cooldown"), "{err}");
    assert!(err.contains("SHOAL_RESILIENCE__BREAKER__COOLDOWN"), "{err}");
    let err = env_err(&[("SHOAL_CACHE__TTL", "0s")]);
    assert!(err.contains("SHOAL_CACHE__TTL"), "{err}");
    let err = env_err(&[("SHOAL_CACHE_TTL", "1s")]);
    assert!(err.contains("SHOAL_CACHE__TTL"), "{err}");
}

#[test]
fn the_redis_section_maps_to_the_backend_config() {
    let c = load(&Sources::default()).expect("defaults");
    let d = RedisConfig::default();
    let rc = c.redis.connection_for("redis://h:1/2");
    assert_eq!(rc.url, "redis://h:1/2");
    assert_eq!(
        (rc.key_prefix.as_str(), rc.connect_timeout, rc.connections),
        (d.key_prefix.as_str(), d.connect_timeout, d.connections)
    );
    assert_eq!(c.redis.sweep_interval, Duration::from_secs(30));

    let f = file(
        "store = \"redis://127.0.0.1:6379/3\"\n[redis]\nkey_prefix = \"app\"\n\
         connect_timeout = \"750ms\"\nresponse_timeout = \"1s\"\nconnections = 3\n\
         tls_ca_file = \"/etc/ca.pem\"\nexpiry_grace = \"2m\"\nsweep_lease = \"10s\"\n\
         reconnect_retries = 5\nsweep_interval = \"5s\"\n",
    );
    let c = load(&Sources {
        file: Some(f.path().to_owned()),
        env: env(&[
            ("SHOAL_REDIS__PREFIX", "2024"),
            ("SHOAL_REDIS__CONNECTIONS", "2"),
            ("SHOAL_REDIS_URL", "redis://harness-only"),
        ]),
        ..Sources::default()
    })
    .expect("file + env");
    let rc = c.redis.connection_for(&c.store);
    assert_eq!(
        rc.key_prefix, "2024",
        "env beats the file, numbers kept as text"
    );
    assert_eq!(rc.connections, 2);
    assert_eq!(rc.connect_timeout, Duration::from_millis(750));
    assert_eq!(rc.response_timeout, Duration::from_secs(1));
    assert_eq!(rc.tls_ca_file.as_deref(), Some(Path::new("/etc/ca.pem")));
    assert_eq!(rc.expiry_grace, Duration::from_secs(120));
    assert_eq!(rc.sweep_lease, Duration::from_secs(10));
    assert_eq!(rc.reconnect_retries, 5);
    assert_eq!(c.redis.sweep_interval, Duration::from_secs(5));
    assert!(rc.validate().is_ok());

    // Printed back, it loads to the same configuration.
    let text = to_toml(&c).expect("toml");
    assert!(
        text.contains("[redis]") && text.contains("key_prefix = \"2024\""),
        "{text}"
    );
    let again = file(&text);
    let back = load(&Sources {
        file: Some(again.path().to_owned()),
        ..Sources::default()
    })
    .expect("reload");
    assert_eq!(back, c);
}

#[test]
fn bad_redis_keys_are_named() {
    for (toml, key, needle) in [
        (
            "[redis]\nurl = \"redis://x\"\n",
            "redis.url",
            "expected one of",
        ),
        (
            "[redis]\nkey_prefix = \"a{b\"\n",
            "redis.key_prefix",
            "reserved",
        ),
        ("[redis]\nconnections = 0\n", "redis.connections", "1 to 64"),
        (
            "[redis]\nconnect_timeout = \"0s\"\n",
            "redis.connect_timeout",
            "zero",
        ),
        (
            "[redis]\nresponse_timeout = \"soon\"\n",
            "redis.response_timeout",
            "soon",
        ),
        (
            "[redis]\nsweep_interval = \"1ms\"\n",
            "redis.sweep_interval",
            "10ms",
        ),
    ] {
        assert_file_error(toml, key, needle);
    }
    let err = env_err(&[("SHOAL_REDIS_KEY_PREFIX", "x")]);
    assert!(err.contains("SHOAL_REDIS__KEY_PREFIX"), "{err}");
    let err = env_err(&[("SHOAL_REDIS__CONNECTIONS", "100")]);
    assert!(err.contains("SHOAL_REDIS__CONNECTIONS"), "{err}");
    let err = load_err(&Sources {
        flags: Overrides {
            store: Some("redis+sentinel://s1:26379".into()),
            ..Overrides::default()
        },
        ..Sources::default()
    });
    assert!(err.contains("master"), "{err}");
}

#[test]
fn passwords_never_show_in_debug_or_redacted_output() {
    let mut c = Config {
        store: "redis://user:hunter2@127.0.0.1:6379/0".into(),
        ..Config::default()
    };
    c.proxy.upstream = "https://up:hunter3@mcp.example/mcp?token=hunter4".into();
    let dbg = format!("{c:?}");
    for secret in ["hunter2", "hunter3", "hunter4"] {
        assert!(!dbg.contains(secret), "{dbg}");
    }
    assert!(
        dbg.contains("user:***@") && dbg.contains("up:***@mcp.example/mcp?token=***"),
        "{dbg}"
    );
    let text = to_toml(&c.redacted()).expect("toml");
    for secret in ["hunter2", "hunter3", "hunter4"] {
        assert!(!text.contains(secret), "{text}");
    }

    c.proxy.upstream = "stdio:'server --url https://hunter5@api.example/'".into();
    let text = to_toml(&c.redacted()).expect("toml");
    assert!(
        !text.contains("hunter5") && text.contains("stdio:'server"),
        "{text}"
    );
}

#[test]
fn unknown_env_keys_name_the_variable() {
    let err = env_err(&[("SHOAL_LIMITS__MAX_SESIONS", "5")]);
    assert!(err.contains("limits.max_sesions"), "{err}");
    assert!(err.contains("SHOAL_LIMITS__MAX_SESIONS"), "{err}");

    let err = env_err(&[("SHOAL_LIMITS_MAX_SESSIONS", "5")]);
    assert!(err.contains("SHOAL_LIMITS__MAX_SESSIONS"), "{err}");
}

#[test]
fn bad_values_are_clear() {
    let f = file("[limits]\nsession_ttl = \"soon\"\n");
    let err = load_err(&Sources {
        file: Some(f.path().to_owned()),
        ..Sources::default()
    });
    assert!(err.contains("soon"), "{err}");
    assert!(err.contains("limits.session_ttl"), "{err}");
    assert!(err.contains(&f.path().display().to_string()), "{err}");

    let f = file("[limits]\nmax_sessions = \"many\"\n");
    let err = load_err(&Sources {
        file: Some(f.path().to_owned()),
        ..Sources::default()
    });
    assert!(err.contains("limits.max_sessions"), "{err}");

    let err = env_err(&[("SHOAL_LIMITS__MAX_SESSIONS", "0")]);
    assert!(err.contains("limits.max_sessions"), "{err}");
    assert!(err.contains("SHOAL_LIMITS__MAX_SESSIONS"), "{err}");

    let f = file("store = \"ftp://x\"\n");
    let err = load_err(&Sources {
        file: Some(f.path().to_owned()),
        ..Sources::default()
    });
    assert!(err.contains("ftp"), "{err}");
    assert!(err.contains("memory://"), "lists supported schemes: {err}");
    assert!(err.contains(&f.path().display().to_string()), "{err}");

    let err = load_err(&Sources {
        flags: Overrides {
            log_level: Some("[[[".into()),
            ..Overrides::default()
        },
        ..Sources::default()
    });
    assert!(err.contains("log.level"), "{err}");
}

#[test]
fn syntax_errors_and_missing_files_are_reported() {
    let f = file("[limits\nmax_sessions = 1\n");
    let err = load_err(&Sources {
        file: Some(f.path().to_owned()),
        ..Sources::default()
    });
    assert!(err.contains(&f.path().display().to_string()), "{err}");

    let err = load_err(&Sources {
        file: Some("/definitely/not/here.toml".into()),
        ..Sources::default()
    });
    assert!(err.contains("/definitely/not/here.toml"), "{err}");
}

#[test]
fn effective_config_round_trips_through_toml() {
    let mut c = Config {
        store: "file:///tmp/a \"quoted\".jsonl".into(),
        ..Config::default()
    };
    c.limits.session_ttl = Duration::from_secs(90);
    let text = to_toml(&c).expect("toml");
    assert!(text.starts_with("store = "), "{text}");
    assert!(text.contains("[limits]"), "{text}");
    assert!(text.contains("session_ttl = \"1m 30s\""), "{text}");
    let f = file(&text);
    let back = load(&Sources {
        file: Some(f.path().to_owned()),
        ..Sources::default()
    })
    .expect("reload");
    assert_eq!(back, c);
}

#[test]
fn sections_list_every_top_level_key() {
    let Ok(serde_json::Value::Object(top)) = serde_json::to_value(Config::default()) else {
        panic!("the configuration serializes to a table");
    };
    let mut keys: Vec<&str> = top.keys().map(String::as_str).collect();
    let mut listed = SECTIONS.to_vec();
    keys.sort_unstable();
    listed.sort_unstable();
    assert_eq!(keys, listed);
}

#[test]
fn proxy_settings_are_checked_at_load_and_located() {
    for (var, key) in [
        ("SHOAL_PROXY__POLL_INTERVAL", "proxy.poll_interval"),
        (
            "SHOAL_PROXY__MAX_STREAMS_PER_SESSION",
            "proxy.max_streams_per_session",
        ),
        ("SHOAL_PROXY__REQUEST_TIMEOUT", "proxy.request_timeout"),
    ] {
        let err = env_err(&[(var, "0")]);
        assert!(err.contains(key) && err.contains(var), "{var}: {err}");
    }
    let err = env_err(&[("SHOAL_PROXY__UPSTREAM_TIMEOUT", "1000000y")]);
    assert!(err.contains("SHOAL_PROXY__UPSTREAM_TIMEOUT"), "{err}");
    // A rule between two keys names the one that was set, not the default.
    let err = env_err(&[("SHOAL_RESILIENCE__RETRY__MAX_DELAY", "1ms")]);
    assert!(
        err.contains("resilience.retry.max_delay")
            && err.contains("SHOAL_RESILIENCE__RETRY__MAX_DELAY"),
        "{err}"
    );
}
