//! Property test of the configuration loader: any value for any key, from the environment, a
//! config file or the command line (all three at once too), loads or is refused with an error
//! that names where it came from — never a panic. The keys are every key of the default
//! configuration (nested ones included). Three properties of [`CASES`] cases each: about 3 s,
//! 3 s and 6 s in a debug build.

use std::io::Write as _;

use clap::{CommandFactory as _, FromArgMatches as _, parser::ValueSource};
use proptest::prelude::*;

use super::{Config, Overrides, Sources, load};
use crate::cli::Cli;

/// Cases per property (each loads the configuration once: well under a millisecond).
const CASES: u32 = 3_000;

/// Every key path of the default configuration, e.g. `["proxy", "quota", "sessions_per_address"]`.
fn key_paths() -> Vec<Vec<String>> {
    fn walk(v: &serde_json::Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, child) in map {
                    path.push(k.clone());
                    walk(child, path, out);
                    path.pop();
                }
            }
            _ => out.push(path.clone()),
        }
    }
    let mut out = Vec::new();
    let defaults = serde_json::to_value(Config::default()).unwrap_or_default();
    walk(&defaults, &mut Vec::new(), &mut out);
    // Optional keys absent from the defaults.
    for extra in [
        "proxy.principal_header",
        "proxy.quota.client_address_header",
        "proxy.event_id_key_file",
        "redis.tls_ca_file",
        "resilience.fallback",
    ] {
        out.push(extra.split('.').map(str::to_owned).collect());
    }
    out
}

/// Values as people (and attackers) write them.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_owned()),
        Just("0s".to_owned()),
        Just("-1".to_owned()),
        Just("-1s".to_owned()),
        Just("1000000y".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just("99999999999999999999999999".to_owned()),
        Just("1e309".to_owned()),
        Just("NaN".to_owned()),
        Just("true".to_owned()),
        Just("".to_owned()),
        Just("1ms".to_owned()),
        Just("24h".to_owned()),
        Just("redis://u:p@127.0.0.1:1/99".to_owned()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        "[0-9]{1,6}(ns|us|ms|s|m|h|d|w|y)".prop_map(|s| s),
        "\\PC{0,12}",
    ]
}

fn env_name(path: &[String]) -> String {
    let mut name = "SHOAL_".to_owned();
    name.push_str(
        &path
            .iter()
            .map(|p| p.to_ascii_uppercase())
            .collect::<Vec<_>>()
            .join("__"),
    );
    name
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Up to four variables with any values: the load succeeds, or its error names one of
    /// them.
    #[test]
    fn any_environment_loads_or_names_the_variable(
        picks in prop::collection::vec((any::<prop::sample::Index>(), value()), 1..4)
    ) {
        let keys = key_paths();
        let env: Vec<(String, String)> = picks
            .iter()
            .map(|(i, v)| (env_name(&keys[i.index(keys.len())]), v.clone()))
            .collect();
        let sources = Sources { env: env.clone(), ..Sources::default() };
        match load(&sources) {
            Ok(config) => prop_assert!(durations_bounded(&config), "{env:?} loaded past the bound"),
            Err(e) => {
                let text = e.to_string();
                prop_assert!(
                    env.iter().any(|(k, _)| text.contains(k.as_str())),
                    "the error names none of {env:?}: {text}"
                );
            }
        }
    }

    /// One key in a config file with any value: the load succeeds, or its error names the
    /// file.
    #[test]
    fn any_config_file_loads_or_names_the_file(
        pick in any::<prop::sample::Index>(),
        raw in value(),
        quoted in any::<bool>(),
    ) {
        let keys = key_paths();
        let path = &keys[pick.index(keys.len())];
        let (table, key) = path.split_at(path.len() - 1);
        let literal = if quoted {
            format!("{:?}", raw)
        } else {
            raw.clone()
        };
        let text = if table.is_empty() {
            format!("{} = {literal}\n", key[0])
        } else {
            format!("[{}]\n{} = {literal}\n", table.join("."), key[0])
        };
        let mut f = tempfile::Builder::new().suffix(".toml").tempfile().map_err(|e| TestCaseError::fail(e.to_string()))?;
        f.write_all(text.as_bytes()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let sources = Sources { file: Some(f.path().to_owned()), ..Sources::default() };
        let loaded = load(&sources);
        if let Ok(config) = &loaded {
            prop_assert!(durations_bounded(config), "{text} loaded past the bound");
        }
        if let Err(e) = loaded {
            let msg = e.to_string();
            prop_assert!(
                msg.contains(&f.path().display().to_string()),
                "{text}: the error does not name the file: {msg}"
            );
            // Located in the file too: the key, or the line TOML could not read.
            let last = &path[path.len() - 1];
            prop_assert!(
                msg.contains(last.as_str()) || msg.contains("line "),
                "{text}: the error names neither the key nor a line: {msg}"
            );
        }
    }

    /// A file of several keys (sometimes a line of anything), up to three variables and any
    /// global flags, together: the command line parses or clap refuses it, and the load
    /// succeeds or its error names the file, a variable or a flag.
    #[test]
    fn files_variables_and_flags_together_load_or_say_where(
        lines in prop::collection::vec((any::<prop::sample::Index>(), value(), any::<bool>()), 0..6),
        garbage in prop::option::of("\\PC{0,24}"),
        picks in prop::collection::vec((any::<prop::sample::Index>(), value()), 0..3),
        flags in prop::collection::vec(flag(), 0..6),
    ) {
        let keys = key_paths();
        let mut text = String::new();
        for (i, raw, quoted) in &lines {
            let path = &keys[i.index(keys.len())];
            let literal = if *quoted { format!("{raw:?}") } else { raw.clone() };
            text.push_str(&format!("{} = {literal}\n", path.join(".")));
        }
        if let Some(g) = &garbage {
            text.push_str(g);
            text.push('\n');
        }
        let mut f = tempfile::Builder::new().suffix(".toml").tempfile().map_err(|e| TestCaseError::fail(e.to_string()))?;
        f.write_all(text.as_bytes()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let env: Vec<(String, String)> = picks
            .iter()
            .map(|(i, v)| (env_name(&keys[i.index(keys.len())]), v.clone()))
            .collect();
        let mut argv = vec!["shoal".to_owned()];
        argv.extend(flags.into_iter().flatten());
        argv.extend(["config".to_owned(), "show".to_owned()]);
        let Some(flags) = command_line(&argv) else {
            return Ok(());
        };
        let sources = Sources { file: Some(f.path().to_owned()), env: env.clone(), flags };
        let loaded = load(&sources);
        if let Ok(config) = &loaded {
            prop_assert!(durations_bounded(config), "{text} {env:?} {argv:?} loaded past the bound");
        }
        if let Err(e) = loaded {
            let msg = e.to_string();
            prop_assert!(
                msg.contains(&f.path().display().to_string())
                    || env.iter().any(|(k, _)| msg.contains(k.as_str()))
                    || msg.contains("command-line flag"),
                "{text} {env:?} {argv:?}: the error says not where: {msg}"
            );
        }
    }
}

/// Whether every duration of a loaded configuration is within the bound timers take
/// ([`MAX_DURATION`](shoal_core::setting::MAX_DURATION)). The duration keys are those whose
/// default serializes as a duration.
fn durations_bounded(config: &Config) -> bool {
    fn at<'a>(v: &'a serde_json::Value, path: &[String]) -> Option<&'a serde_json::Value> {
        path.iter().try_fold(v, |v, k| v.get(k))
    }
    let as_duration =
        |v: Option<&serde_json::Value>| v?.as_str().and_then(|s| humantime::parse_duration(s).ok());
    let (Ok(defaults), Ok(loaded)) = (
        serde_json::to_value(Config::default()),
        serde_json::to_value(config),
    ) else {
        return false;
    };
    key_paths()
        .iter()
        .filter(|path| as_duration(at(&defaults, path)).is_some())
        .all(|path| {
            as_duration(at(&loaded, path)).is_some_and(|d| d <= shoal_core::setting::MAX_DURATION)
        })
}

/// One global flag with a value as people (and attackers) write it.
fn flag() -> impl Strategy<Value = Vec<String>> {
    let pair = |name: &'static str, v: BoxedStrategy<String>| {
        v.prop_map(move |v| vec![name.to_owned(), v])
    };
    let choice = |known: &'static [&'static str]| {
        prop_oneof![
            prop::sample::select(known).prop_map(str::to_owned),
            "\\PC{0,8}"
        ]
        .boxed()
    };
    prop_oneof![
        pair(
            "--store",
            prop_oneof![value(), Just("memory://".to_owned())].boxed()
        ),
        pair("--log-format", choice(&["text", "json"])),
        pair("--fallback", choice(&["none", "memory", "read-only"])),
        pair(
            "--cache-consistency",
            choice(&["local", "invalidate", "strict"])
        ),
        pair(
            "--cache-write-mode",
            choice(&["write-through", "write-behind", "read-through"])
        ),
        Just(vec!["--cache".to_owned()]),
        Just(vec!["-v".to_owned()]),
        Just(vec!["-vvv".to_owned()]),
        Just(vec!["--json".to_owned()]),
    ]
}

/// The flags layer of `argv` as `shoal` builds it, or `None` when clap refuses the line.
fn command_line(argv: &[String]) -> Option<Overrides> {
    let matches = Cli::command().try_get_matches_from(argv).ok()?;
    let store_is_flag = matches.value_source("store") == Some(ValueSource::CommandLine);
    let cli = Cli::from_arg_matches(&matches).ok()?;
    Some(crate::overrides(&cli.global, store_is_flag))
}
