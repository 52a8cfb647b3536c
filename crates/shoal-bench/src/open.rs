//! Opening the store under test: the settings (a shoal config file's store sections, then
//! `SHOAL_<SECTION>__<KEY>` variables, then flags) and [`Stack::open`] — the same composition
//! `shoal` and `shoal proxy` run.

use std::path::Path;

use figment::{
    Figment,
    providers::{Env, Format as _, Toml},
};
use serde::Deserialize;
use shoal_redis::{
    RedisConfig, RedisStore,
    stack::{Stack, StackConfig},
};

use crate::{args::Cli, error::UsageError};

/// The sections of a shoal config file the bench reads; any other section (`[log]`,
/// `[proxy]`, …) is left alone.
const STORE_SECTIONS: [&str; 6] = ["limits", "memory", "redis", "resilience", "cache", "feed"];

/// The Redis store behind a Redis URL, with the configuration it was opened with (the raw
/// baselines connect to the same server the same way).
#[derive(Debug, Clone)]
pub(crate) struct RedisBacking {
    /// The store.
    pub(crate) store: RedisStore,
    /// Its configuration (URL included: never print it unredacted).
    pub(crate) config: RedisConfig,
}

/// The store URL and its settings, from the config file, the environment and the flags.
pub(crate) fn settings(cli: &Cli) -> Result<(String, StackConfig), UsageError> {
    let mut figment = Figment::new();
    if let Some(path) = &cli.config {
        check_file(path)?;
        figment = figment.merge(Toml::file_exact(path));
    }
    // figment 0.10's value parser panics on a quoted value with a backslash after non-ASCII
    // text; such a value is refused here, naming the variable.
    for (k, v) in std::env::vars_os() {
        let (Some(k), v) = (k.to_str(), v.to_string_lossy()) else {
            continue;
        };
        if k.starts_with("SHOAL_") && v.contains('\\') && !v.is_ascii() {
            return Err(UsageError(format!(
                "configuration: {k}: a value with both a backslash and non-ASCII text is not \
                 supported"
            )));
        }
    }
    figment = figment.merge(Env::prefixed("SHOAL_").split("__").filter(|k| {
        let k = k.as_str().to_ascii_lowercase();
        STORE_SECTIONS
            .iter()
            .any(|s| k.starts_with(&format!("{s}.")))
    }));
    let mut all: serde_json::Map<String, serde_json::Value> = figment
        .extract()
        .map_err(|e| UsageError(format!("configuration: {e}")))?;
    let file_store = all
        .remove("store")
        .and_then(|v| v.as_str().map(str::to_owned));
    all.retain(|k, _| STORE_SECTIONS.contains(&k.as_str()));
    let mut config = StackConfig::deserialize(serde_json::Value::Object(all))
        .map_err(|e| UsageError(format!("configuration: {e}")))?;
    if let Some(mode) = cli.fallback {
        config.resilience.fallback = Some(mode);
    }
    if cli.cache || cli.cache_consistency.is_some() || cli.cache_write_mode.is_some() {
        config.cache.enabled = true;
    }
    if let Some(c) = cli.cache_consistency {
        config.cache.config.consistency = c;
    }
    if let Some(m) = cli.cache_write_mode {
        config.cache.config.write_mode = m;
    }
    config
        .validate()
        .map_err(|e| UsageError(format!("configuration: {e}")))?;
    let store = cli
        .store
        .clone()
        .or(file_store)
        .unwrap_or_else(|| "memory://".to_owned());
    Ok((store, config))
}

/// A config file that cannot be read is a usage error naming it (figment would treat a
/// missing file as empty).
fn check_file(path: &Path) -> Result<(), UsageError> {
    std::fs::metadata(path)
        .map(|_| ())
        .map_err(|e| UsageError(format!("config file {}: {e}", path.display())))
}

/// Opens the stack; a bad URL or setting is a usage error.
pub(crate) async fn open(store: &str, config: &StackConfig) -> anyhow::Result<Stack> {
    Ok(Stack::open(store, config).await?)
}

/// The Redis store of `stack`, when it is on Redis.
pub(crate) fn redis_backing(stack: &Stack) -> Option<RedisBacking> {
    Some(RedisBacking {
        store: stack.redis()?.clone(),
        config: stack.redis_config()?.clone(),
    })
}
