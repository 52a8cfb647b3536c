//! The `SHOAL_*` environment layer.

use figment::{
    Metadata, Profile, Provider,
    value::{Dict, Map, Value},
};

use super::{errors::ConfigError, model::Config, model::SECTIONS};

/// The prefix of configuration environment variables.
pub(super) const ENV_PREFIX: &str = "SHOAL_";

/// Short environment names for long keys: `SHOAL_REDIS__PREFIX` sets `redis.key_prefix`.
/// (Only in the environment: a key spelled two ways in one layer would be ambiguous.)
const ENV_ALIASES: &[(&[&str], &[&str])] = &[(&["redis", "prefix"], &["redis", "key_prefix"])];

/// Keys absent from the serialized defaults (optional ones, unset by default), as
/// `(section, key)`.
const OPTIONAL_KEYS: &[(&str, &str)] = &[
    ("redis", "tls_ca_file"),
    ("proxy", "event_id_key_file"),
    ("proxy", "event_id_previous_key_file"),
    ("proxy", "principal_header"),
    ("resilience", "fallback"),
];

/// The `SHOAL_*` environment layer, from an explicit list of variables (testable, no global
/// state). `SHOAL_LIMITS__MAX_SESSIONS=5` becomes `limits.max_sessions = 5`; values are parsed
/// like figment's own `Env` provider (numbers, booleans, else strings).
#[derive(Clone, Debug)]
pub(super) struct EnvLayer {
    /// Each variable as its key path and raw value.
    pub(super) vars: Vec<(Vec<String>, String)>,
}

impl EnvLayer {
    /// The variables of `env` whose first part names a section.
    pub(super) fn new(env: &[(String, String)]) -> Self {
        let mut vars: Vec<(Vec<String>, String)> = env
            .iter()
            .filter_map(|(k, v)| {
                let rest = k.strip_prefix(ENV_PREFIX)?;
                let mut path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
                if let Some((_, to)) = ENV_ALIASES.iter().find(|(from, _)| *from == path) {
                    path = to.iter().map(|p| (*p).to_owned()).collect();
                }
                let first = path.first()?.as_str();
                (SECTIONS.contains(&first) && path.iter().all(|p| !p.is_empty()))
                    .then(|| (path, v.clone()))
            })
            .collect();
        vars.sort();
        EnvLayer { vars }
    }

    /// The variable name for a key path, e.g. `SHOAL_LIMITS__MAX_SESSIONS`.
    pub(super) fn var_name<S: AsRef<str>>(path: &[S]) -> String {
        let joined: Vec<String> = path
            .iter()
            .map(|p| p.as_ref().to_ascii_uppercase())
            .collect();
        format!("{ENV_PREFIX}{}", joined.join("__"))
    }
}

/// A variable's value as figment's own `Env` provider reads it (numbers, booleans, arrays,
/// quoted strings, else the text) — except text with a backslash and a non-ASCII character,
/// which is taken as it is: figment's string unescaping (0.10) slices such a quoted string at
/// a character count instead of a byte offset and panics.
fn parse_value(raw: &str) -> Value {
    if raw.contains('\\') && !raw.is_ascii() {
        return Value::from(raw.to_owned());
    }
    raw.parse()
        .unwrap_or_else(|e: std::convert::Infallible| match e {})
}

impl Provider for EnvLayer {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment variable")
            .interpolater(|_: &Profile, keys: &[&str]| EnvLayer::var_name(keys))
    }

    fn data(&self) -> figment::Result<Map<Profile, Dict>> {
        let mut dict = Dict::new();
        for (path, raw) in &self.vars {
            insert_path(&mut dict, path, parse_value(raw));
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

/// `SHOAL_LOG_LEVEL` (one underscore) is a likely typo for `SHOAL_LOG__LEVEL`: say so instead of
/// ignoring it silently. Only for keys that exist in a section, so that unrelated variables
/// such as a test harness's `SHOAL_REDIS_URL` never break the CLI.
pub(super) fn check_env_names(env: &[(String, String)]) -> Result<(), ConfigError> {
    let known = known_keys();
    for (k, _) in env {
        let Some(rest) = k.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let lower = rest.to_ascii_lowercase();
        for section in SECTIONS.iter().filter(|s| **s != "store") {
            if let Some(key) = lower.strip_prefix(&format!("{section}_"))
                && !key.starts_with('_')
                && known.iter().any(|(s, k)| s == section && k.as_str() == key)
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

/// `(section, key)` of every key of every section (from the defaults), plus aliases and
/// optional keys.
fn known_keys() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = ENV_ALIASES
        .iter()
        .filter_map(|(from, _)| match from {
            [section, key] => Some(((*section).to_owned(), (*key).to_owned())),
            _ => None,
        })
        .collect();
    if let Ok(serde_json::Value::Object(top)) = serde_json::to_value(Config::default()) {
        for (section, value) in top {
            if let serde_json::Value::Object(keys) = value {
                out.extend(keys.keys().map(|k| (section.clone(), k.clone())));
            }
        }
    }
    out.extend(
        OPTIONAL_KEYS
            .iter()
            .map(|(s, k)| ((*s).to_owned(), (*k).to_owned())),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quoted_value_with_a_backslash_after_non_ascii_text_does_not_panic() {
        // figment 0.10's unescaping panics on this (found by the config property test).
        for raw in [
            "\"é\\n\"",
            "\"\u{1e2ff}C?\\?{\u{1f574}<F\u{11744}\"",
            "x\\é",
        ] {
            assert_eq!(parse_value(raw), Value::from(raw.to_owned()), "{raw}");
        }
        assert_eq!(parse_value("5"), Value::from(5u8));
        assert_eq!(parse_value("\"a\\nb\""), Value::from("a\nb".to_owned()));
    }
}
