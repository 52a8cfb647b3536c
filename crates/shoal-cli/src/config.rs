//! Configuration: built-in defaults < TOML file (`--config`) < `SHOAL_*` environment variables <
//! command-line flags, merged with figment and checked strictly.
//!
//! # File format
//! ```toml
//! store = "memory://"            # or "file:///var/lib/shoal/sessions.jsonl", "redis://…"
//!
//! [limits]
//! max_frame_bytes = 4194304
//! max_frames_per_session = 10000
//! max_sessions = 100000
//! session_ttl = "24h"            # humantime: "90s", "15m", "1h 30m", "7days"
//! max_metadata_bytes = 65536
//! max_pending_per_session = 10000
//!
//! [memory]
//! sweep_interval = "30s"
//!
//! [log]
//! level = "warn"                 # a tracing EnvFilter directive, e.g. "info,shoal_core=debug"
//! format = "text"                # or "json"
//! ```
//! The section names `redis`, `cache`, `resilience` and `proxy` are reserved for later releases;
//! today they are refused like every other unknown key, with an error naming the key and where
//! it came from.
//!
//! # Environment
//! `SHOAL_<KEY>` with `__` between levels: `SHOAL_STORE`, `SHOAL_LIMITS__MAX_SESSIONS`,
//! `SHOAL_MEMORY__SWEEP_INTERVAL`, `SHOAL_LOG__LEVEL`. Only variables whose first part names a
//! section (known or reserved) are read, so unrelated `SHOAL_*` variables (`SHOAL_CONFIG`, test
//! settings) are left alone.

use std::{
    fmt,
    path::{Path, PathBuf},
    time::Duration,
};

use figment::{
    Figment, Metadata, Profile, Provider,
    providers::{Format, Serialized, Toml},
    value::{Dict, Map, Value},
};
use serde::{Deserialize, Serialize};
use shoal_core::Limits;

use crate::{error::UsageError, store::StoreUrl};

/// Top-level keys this build understands.
pub(crate) const SECTIONS: &[&str] = &["store", "limits", "memory", "log"];

/// Top-level sections reserved for later releases (refused today, with a hint).
pub(crate) const RESERVED_SECTIONS: &[&str] = &["redis", "cache", "resilience", "proxy"];

/// The prefix of configuration environment variables.
pub(crate) const ENV_PREFIX: &str = "SHOAL_";

/// The effective configuration of one `shoal` run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Config {
    /// The store URL (`memory://`, `file://PATH`, `redis://…`).
    pub(crate) store: String,
    /// Limits every backend enforces.
    pub(crate) limits: Limits,
    /// Settings of the in-memory backend.
    pub(crate) memory: MemoryConfig,
    /// Logging.
    pub(crate) log: LogConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            store: "memory://".into(),
            limits: Limits::default(),
            memory: MemoryConfig::default(),
            log: LogConfig::default(),
        }
    }
}

/// `[memory]`: the in-memory backend (also behind `file://` stores).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct MemoryConfig {
    /// How often the background sweeper removes expired sessions. Default 30 s.
    #[serde(with = "humantime_duration")]
    pub(crate) sweep_interval: Duration,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            sweep_interval: Duration::from_secs(30),
        }
    }
}

/// `[log]`: diagnostics on stderr.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct LogConfig {
    /// A `tracing` filter directive (`warn`, `info,shoal_core=debug`). Default `warn`.
    /// `RUST_LOG` replaces it when set; `-v`/`-vv` replace both.
    pub(crate) level: String,
    /// `text` or `json`. Default `text`.
    pub(crate) format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "warn".into(),
            format: LogFormat::Text,
        }
    }
}

/// How log lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Values given as command-line flags: the highest layer.
#[derive(Clone, Debug, Default)]
pub(crate) struct Overrides {
    /// `--store` (only when typed on the command line, not taken from `SHOAL_STORE`).
    pub(crate) store: Option<String>,
    /// The level implied by `-v` (`debug`) or `-vv` (`trace`).
    pub(crate) log_level: Option<String>,
    /// `--log-format`.
    pub(crate) log_format: Option<LogFormat>,
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

/// Why the configuration could not be loaded; always a usage-class error (exit code 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigError(pub(crate) String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

impl From<ConfigError> for UsageError {
    fn from(e: ConfigError) -> Self {
        UsageError(e.to_string())
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

/// The `SHOAL_*` environment layer, from an explicit list of variables (testable, no global
/// state). `SHOAL_LIMITS__MAX_SESSIONS=5` becomes `limits.max_sessions = 5`; values are parsed
/// like figment's own `Env` provider (numbers, booleans, else strings).
#[derive(Clone, Debug)]
struct EnvLayer {
    vars: Vec<(Vec<String>, String)>,
}

impl EnvLayer {
    fn new(env: &[(String, String)]) -> Self {
        let mut vars: Vec<(Vec<String>, String)> = env
            .iter()
            .filter_map(|(k, v)| {
                let rest = k.strip_prefix(ENV_PREFIX)?;
                let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
                let first = path.first()?.as_str();
                let wanted = SECTIONS.contains(&first) || RESERVED_SECTIONS.contains(&first);
                (wanted && path.iter().all(|p| !p.is_empty())).then(|| (path, v.clone()))
            })
            .collect();
        vars.sort();
        EnvLayer { vars }
    }

    /// The variable name for a key path, e.g. `SHOAL_LIMITS__MAX_SESSIONS`.
    fn var_name<S: AsRef<str>>(path: &[S]) -> String {
        let joined: Vec<String> = path
            .iter()
            .map(|p| p.as_ref().to_ascii_uppercase())
            .collect();
        format!("{ENV_PREFIX}{}", joined.join("__"))
    }
}

impl Provider for EnvLayer {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment variable")
            .interpolater(|_: &Profile, keys: &[&str]| EnvLayer::var_name(keys))
    }

    fn data(&self) -> figment::Result<Map<Profile, Dict>> {
        let mut dict = Dict::new();
        for (path, raw) in &self.vars {
            let value: Value = raw
                .parse()
                .unwrap_or_else(|e: std::convert::Infallible| match e {});
            insert_path(&mut dict, path, value);
        }
        Ok(Profile::Default.collect(dict))
    }
}

fn insert_path(dict: &mut Dict, path: &[String], value: Value) {
    match path {
        [] => {}
        [last] => {
            dict.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = dict
                .entry(first.clone())
                .or_insert_with(|| Value::from(Dict::new()));
            if !matches!(entry, Value::Dict(..)) {
                *entry = Value::from(Dict::new());
            }
            if let Value::Dict(_, inner) = entry {
                insert_path(inner, rest, value);
            }
        }
    }
}

/// The command-line layer.
#[derive(Serialize)]
struct FlagValues {
    #[serde(skip_serializing_if = "Option::is_none")]
    store: Option<String>,
    #[serde(skip_serializing_if = "FlagLog::is_empty")]
    log: FlagLog,
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

/// Where each layer came from, for error messages.
struct Layers {
    file: Option<(PathBuf, Figment)>,
    env: EnvLayer,
    flags: Figment,
}

/// Loads, merges and checks the configuration.
pub(crate) fn load(sources: &Sources) -> Result<Config, ConfigError> {
    check_env_names(&sources.env)?;
    let defaults = Named {
        name: "built-in defaults",
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
        inner: Serialized::defaults(FlagValues {
            store: sources.flags.store.clone(),
            log: FlagLog {
                level: sources.flags.log_level.clone(),
                format: sources.flags.log_format,
            },
        }),
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

/// `SHOAL_LOG_LEVEL` (one underscore) is a likely typo for `SHOAL_LOG__LEVEL`: say so instead of
/// ignoring it silently. Only for implemented sections, so that unrelated variables such as a
/// test harness's `SHOAL_REDIS_URL` never break the CLI.
fn check_env_names(env: &[(String, String)]) -> Result<(), ConfigError> {
    for (k, _) in env {
        let Some(rest) = k.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let lower = rest.to_ascii_lowercase();
        for section in SECTIONS.iter().filter(|s| **s != "store") {
            if let Some(key) = lower.strip_prefix(&format!("{section}_"))
                && !key.starts_with('_')
                && !key.is_empty()
            {
                return Err(ConfigError(format!(
                    "environment variable {k} is not a configuration key; nested keys \
                     use a double underscore: {}",
                    EnvLayer::var_name(&[*section, key])
                )));
            }
        }
    }
    Ok(())
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

/// Turns a figment error into one line per problem that names the key and where it came from.
fn describe_figment_error(err: figment::Error, figment: &Figment, layers: &Layers) -> String {
    let mut out = Vec::new();
    for e in err {
        out.push(describe_one(&e, figment, layers));
    }
    out.join("\n")
}

/// Keys whose values are humantime durations.
const DURATION_KEYS: &[&str] = &["limits.session_ttl", "memory.sweep_interval"];

fn describe_one(e: &figment::Error, figment: &Figment, layers: &Layers) -> String {
    use figment::error::Kind;
    let key = e.path.join(".");
    match &e.kind {
        Kind::UnknownField(field, expected) => {
            let mut path = e.path.clone();
            if path.last() != Some(field) {
                path.push(field.clone());
            }
            let key = path.join(".");
            let source = locate(&key, &path, layers);
            let top = path.first().map(String::as_str).unwrap_or_default();
            if path.len() == 1 && RESERVED_SECTIONS.contains(&top) {
                format!(
                    "unknown key `{key}` in {source}: the [{top}] section is reserved for a later \
                     release and not supported by this build (supported: {})",
                    SECTIONS.join(", ")
                )
            } else {
                format!(
                    "unknown key `{key}` in {source} (expected one of: {})",
                    expected.join(", ")
                )
            }
        }
        kind if key.is_empty() => match &layers.file {
            // A file that does not parse has no key.
            Some((path, _)) => format!("config file {}: {kind}", path.display()),
            None => kind.to_string(),
        },
        kind => {
            let source = e
                .metadata
                .as_ref()
                .map_or_else(|| origin(figment, &key), |md| describe_metadata(md, &key));
            if DURATION_KEYS.contains(&key.as_str()) {
                let value = figment
                    .find_value(&key)
                    .ok()
                    .and_then(|v| v.into_string())
                    .map_or_else(String::new, |v| format!(" {v:?}"));
                format!(
                    "invalid duration{value} for key `{key}` in {source}: {kind} (write durations \
                     like \"30s\", \"15m\", \"1h 30m\", \"7days\")"
                )
            } else {
                format!("invalid value for key `{key}` in {source}: {kind}")
            }
        }
    }
}

/// Which layer supplied `key` (highest first): the flags, the environment or the file.
fn locate(key: &str, path: &[String], layers: &Layers) -> String {
    if layers.flags.contains(key) {
        return "command-line flags".into();
    }
    if layers.env.vars.iter().any(|(p, _)| p.starts_with(path)) {
        return format!("environment variable {}", EnvLayer::var_name(path));
    }
    match &layers.file {
        Some((file, _)) => format!("config file {}", file.display()),
        None => "the configuration".into(),
    }
}

/// A provider's metadata as a phrase: `config file PATH`, `environment variable SHOAL_X`.
fn describe_metadata(md: &Metadata, key: &str) -> String {
    let keys: Vec<&str> = key.split('.').collect();
    match &md.source {
        Some(figment::Source::File(p)) => format!("config file {}", p.display()),
        _ if md.name == "environment variable" => format!(
            "environment variable {}",
            md.interpolate(&Profile::Default, &keys)
        ),
        _ => md.name.to_string(),
    }
}

/// Where the value of `key` came from, for messages about values that parse but are wrong.
fn origin(figment: &Figment, key: &str) -> String {
    figment.find_metadata(key).map_or_else(
        || "the configuration".into(),
        |md| describe_metadata(md, key),
    )
}

fn validate(config: &Config, figment: &Figment) -> Result<(), ConfigError> {
    let bad = |key: &str, why: String| {
        Err(ConfigError(format!(
            "invalid value for key `{key}` in {}: {why}",
            origin(figment, key)
        )))
    };
    if let Err(why) = StoreUrl::parse(&config.store) {
        return bad("store", why);
    }
    let l = &config.limits;
    for (key, value) in [
        ("limits.max_frame_bytes", l.max_frame_bytes),
        ("limits.max_frames_per_session", l.max_frames_per_session),
        ("limits.max_sessions", l.max_sessions),
        ("limits.max_pending_per_session", l.max_pending_per_session),
    ] {
        if value == 0 {
            return bad(key, "must be at least 1".into());
        }
    }
    if l.session_ttl < Duration::from_secs(1) {
        return bad("limits.session_ttl", "must be at least 1s".into());
    }
    if config.memory.sweep_interval < Duration::from_millis(10) {
        return bad("memory.sweep_interval", "must be at least 10ms".into());
    }
    if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&config.log.level) {
        return bad(
            "log.level",
            format!("{:?} is not a log filter directive ({e})", config.log.level),
        );
    }
    Ok(())
}

/// The configuration as a TOML document (the format of the config file), sections in the
/// order of the documentation.
pub(crate) fn to_toml(config: &Config) -> anyhow::Result<String> {
    let mut out = format!(
        "store = {}\n",
        toml_scalar(&serde_json::to_value(&config.store)?)?
    );
    let sections = [
        ("limits", serde_json::to_value(&config.limits)?),
        ("memory", serde_json::to_value(&config.memory)?),
        ("log", serde_json::to_value(&config.log)?),
    ];
    for (name, value) in sections {
        let serde_json::Value::Object(table) = value else {
            anyhow::bail!("[{name}] did not serialize to a table");
        };
        out.push_str(&format!("\n[{name}]\n"));
        for (k, v) in &table {
            out.push_str(&format!("{k} = {}\n", toml_scalar(v)?));
        }
    }
    Ok(out)
}

fn toml_scalar(v: &serde_json::Value) -> anyhow::Result<String> {
    Ok(match v {
        // JSON string escapes (\" \\ \n \t \uXXXX …) are valid TOML basic-string escapes.
        serde_json::Value::String(_)
        | serde_json::Value::Number(_)
        | serde_json::Value::Bool(_) => v.to_string(),
        other => anyhow::bail!("cannot write {other} as a TOML scalar"),
    })
}

/// Durations as humantime strings (`"30s"`, `"1h 30m"`).
mod humantime_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!(
                "{s:?} is not a duration ({e}); write it like \"30s\", \"15m\" or \"1h 30m\""
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

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

    fn load_err(sources: &Sources) -> String {
        load(sources).expect_err("should fail").to_string()
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
    fn reserved_sections_are_refused_with_a_hint() {
        let f = file("[redis]\nurl = \"redis://localhost\"\n");
        let err = load_err(&Sources {
            file: Some(f.path().to_owned()),
            ..Sources::default()
        });
        assert!(err.contains("`redis`"), "{err}");
        assert!(err.contains("reserved"), "{err}");
        assert!(err.contains(&f.path().display().to_string()), "{err}");
    }

    #[test]
    fn unknown_env_keys_name_the_variable() {
        let err = load_err(&Sources {
            env: env(&[("SHOAL_LIMITS__MAX_SESIONS", "5")]),
            ..Sources::default()
        });
        assert!(err.contains("limits.max_sesions"), "{err}");
        assert!(err.contains("SHOAL_LIMITS__MAX_SESIONS"), "{err}");

        let err = load_err(&Sources {
            env: env(&[("SHOAL_LIMITS_MAX_SESSIONS", "5")]),
            ..Sources::default()
        });
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

        let err = load_err(&Sources {
            env: env(&[("SHOAL_LIMITS__MAX_SESSIONS", "0")]),
            ..Sources::default()
        });
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
}
