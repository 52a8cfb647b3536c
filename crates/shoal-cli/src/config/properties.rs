//! Property test of the configuration loader: any value for any key, from the environment or
//! a config file, loads or is refused with an error that names where it came from — never a
//! panic. The keys are every key of the default configuration (nested ones included).

use std::io::Write as _;

use proptest::prelude::*;

use super::{Config, Sources, load};

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
        if let Err(e) = load(&sources) {
            let text = e.to_string();
            prop_assert!(
                env.iter().any(|(k, _)| text.contains(k.as_str())),
                "the error names none of {env:?}: {text}"
            );
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
        if let Err(e) = load(&sources) {
            let msg = e.to_string();
            prop_assert!(
                msg.contains(&f.path().display().to_string()),
                "{text}: the error does not name the file: {msg}"
            );
        }
    }
}
