//! Where configuration is read from ([`Sources`], [`Overrides`]) and [`load`]: the layers
//! merged, extracted and checked.

use std::path::{Path, PathBuf};

use figment::{
    Figment, Metadata, Profile, Provider,
    providers::{Format, Serialized, Toml},
    value::{Dict, Map},
};
use serde::Serialize;
use shoal_core::{
    cached::{Consistency, WriteMode},
    resilient::FallbackMode,
};

use super::{
    env::{EnvLayer, check_env_names},
    errors::{ConfigError, Layers, describe_figment_error, origin},
    model::{Config, LogFormat},
};
use crate::store::StoreUrl;

/// Values given as command-line flags: the highest layer.
#[derive(Clone, Debug, Default)]
pub(crate) struct Overrides {
    /// `--store` (only when typed on the command line, not taken from `SHOAL_STORE`).
    pub(crate) store: Option<String>,
    /// The level implied by `-v` (`debug`) or `-vv` (`trace`).
    pub(crate) log_level: Option<String>,
    /// `--log-format`.
    pub(crate) log_format: Option<LogFormat>,
    /// `--fallback`: turns the resilience wrapper on with this mode.
    pub(crate) fallback: Option<FallbackMode>,
    /// `--cache`: turns the cache on.
    pub(crate) cache: bool,
    /// `--cache-consistency`.
    pub(crate) cache_consistency: Option<Consistency>,
    /// `--cache-write-mode`.
    pub(crate) cache_write_mode: Option<WriteMode>,
}

/// Everything configuration is read from.
#[derive(Clone, Debug, Default)]
pub(crate) struct Sources {
    /// The TOML file (`--config` / `SHOAL_CONFIG`), which must exist when given.
    pub(crate) file: Option<PathBuf>,
    /// The environment variables (all of them; only `SHOAL_<section>…` ones are used).
    pub(crate) env: Vec<(String, String)>,
    /// Command-line flags.
    pub(crate) flags: Overrides,
}

impl Sources {
    /// Sources with the process environment.
    pub(crate) fn from_process(file: Option<PathBuf>, flags: Overrides) -> Self {
        Sources {
            file,
            env: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
            flags,
        }
    }
}

/// A provider with a fixed, readable name in error messages.
struct Named<P> {
    name: &'static str,
    inner: P,
}

impl<P: Provider> Provider for Named<P> {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name)
    }

    fn data(&self) -> figment::Result<Map<Profile, Dict>> {
        self.inner.data()
    }
}

/// The command-line layer.
#[derive(Serialize)]
struct FlagValues {
    #[serde(skip_serializing_if = "Option::is_none")]
    store: Option<String>,
    #[serde(skip_serializing_if = "FlagLog::is_empty")]
    log: FlagLog,
    #[serde(skip_serializing_if = "FlagResilience::is_empty")]
    resilience: FlagResilience,
    #[serde(skip_serializing_if = "FlagCache::is_empty")]
    cache: FlagCache,
}

#[derive(Serialize)]
struct FlagResilience {
    #[serde(skip_serializing_if = "Option::is_none")]
    fallback: Option<FallbackMode>,
}

impl FlagResilience {
    fn is_empty(&self) -> bool {
        self.fallback.is_none()
    }
}

#[derive(Serialize)]
struct FlagCache {
    #[serde(skip_serializing_if = "Option::is_none")]
    enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    consistency: Option<Consistency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    write_mode: Option<WriteMode>,
}

impl FlagCache {
    fn is_empty(&self) -> bool {
        self.enabled.is_none() && self.consistency.is_none() && self.write_mode.is_none()
    }
}

#[derive(Serialize)]
struct FlagLog {
    #[serde(skip_serializing_if = "Option::is_none")]
    level: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<LogFormat>,
}

impl FlagLog {
    fn is_empty(&self) -> bool {
        self.level.is_none() && self.format.is_none()
    }
}

impl FlagValues {
    fn of(flags: &Overrides) -> Self {
        FlagValues {
            store: flags.store.clone(),
            log: FlagLog {
                level: flags.log_level.clone(),
                format: flags.log_format,
            },
            resilience: FlagResilience {
                fallback: flags.fallback,
            },
            cache: FlagCache {
                enabled: flags.cache.then_some(true),
                consistency: flags.cache_consistency,
                write_mode: flags.cache_write_mode,
            },
        }
    }
}

/// Loads, merges and checks the configuration.
/// The name of the defaults layer in messages.
const DEFAULTS: &str = "built-in defaults";

pub(crate) fn load(sources: &Sources) -> Result<Config, ConfigError> {
    check_env_names(&sources.env)?;
    let defaults = Named {
        name: DEFAULTS,
        inner: Serialized::defaults(Config::default()),
    };
    let mut figment = Figment::from(defaults);
    let mut file_layer = None;
    if let Some(path) = &sources.file {
        check_file(path)?;
        let toml = Figment::from(Toml::file_exact(path));
        figment = figment.merge(toml.clone());
        file_layer = Some((path.clone(), toml));
    }
    let env = EnvLayer::new(&sources.env);
    figment = figment.merge(env.clone());
    let flags = Figment::from(Named {
        name: "command-line flag",
        inner: Serialized::defaults(FlagValues::of(&sources.flags)),
    });
    figment = figment.merge(flags.clone());
    let layers = Layers {
        file: file_layer,
        env,
        flags,
    };

    let config: Config = figment
        .extract()
        .map_err(|e| ConfigError(describe_figment_error(e, &figment, &layers)))?;
    validate(&config, &figment)?;
    Ok(config)
}

fn check_file(path: &Path) -> Result<(), ConfigError> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(ConfigError(format!(
            "config file {} is not a regular file",
            path.display()
        ))),
        Err(e) => Err(ConfigError(format!(
            "cannot read config file {}: {e}",
            path.display()
        ))),
    }
}

/// The checks serde cannot make: the store URL, every store setting (the library's rules),
/// the log filter. The error names the key and where its value came from.
fn validate(config: &Config, figment: &Figment) -> Result<(), ConfigError> {
    let bad = |key: &str, why: String| {
        // A rule between two keys (`a must be <= b`) names one of them; when that one kept its
        // default, the value to change is the other one the message names.
        let mut key = key.to_owned();
        let mut from = origin(figment, &key);
        if from == DEFAULTS {
            let named = why
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
                .filter(|w| w.contains('.') && *w != key)
                .find(|w| origin(figment, w) != DEFAULTS && figment.find_value(w).is_ok());
            if let Some(other) = named {
                key = other.to_owned();
                from = origin(figment, &key);
            }
        }
        Err(ConfigError(format!(
            "invalid value for key `{key}` in {from}: {why}"
        )))
    };
    if let Err(why) = StoreUrl::parse(&config.store) {
        return bad("store", why);
    }
    if let Err(e) = config.stack().validate() {
        return bad(&e.key, e.reason);
    }
    let mut proxy = shoal_proxy::ProxyConfig::new(shoal_proxy::UpstreamConfig::Http {
        url: "http://127.0.0.1/mcp".into(),
    });
    config.proxy.apply_to(&mut proxy);
    if let Err(shoal_proxy::ConfigError::Setting { name, reason }) = proxy.check() {
        return bad(&format!("proxy.{name}"), reason);
    }
    if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&config.log.level) {
        return bad(
            "log.level",
            format!("{:?} is not a log filter directive ({e})", config.log.level),
        );
    }
    Ok(())
}
