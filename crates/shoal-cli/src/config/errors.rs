//! [`ConfigError`], and turning figment's errors into one line per problem that names the key
//! and where its value came from.

use std::{fmt, path::PathBuf};

use figment::{Figment, Metadata, Profile};

use super::env::EnvLayer;
use crate::error::UsageError;

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

/// Where each layer came from, for error messages.
pub(super) struct Layers {
    /// The config file and its layer.
    pub(super) file: Option<(PathBuf, Figment)>,
    /// The environment layer.
    pub(super) env: EnvLayer,
    /// The command-line flags.
    pub(super) flags: Figment,
}

/// Turns a figment error into one line per problem that names the key and where it came from.
pub(super) fn describe_figment_error(
    err: figment::Error,
    figment: &Figment,
    layers: &Layers,
) -> String {
    let mut out = Vec::new();
    for e in err {
        out.push(describe_one(&e, figment, layers));
    }
    out.join("\n")
}

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
            format!(
                "unknown key `{key}` in {source} (expected one of: {})",
                expected.join(", ")
            )
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
            format!("invalid value for key `{key}` in {source}: {kind}")
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
pub(super) fn origin(figment: &Figment, key: &str) -> String {
    figment.find_metadata(key).map_or_else(
        || "the configuration".into(),
        |md| describe_metadata(md, key),
    )
}
