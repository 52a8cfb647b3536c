//! The configuration as a TOML document (`config show`, `config check`).

use super::model::{Config, SECTIONS};

/// The configuration as a TOML document (the format of the config file): `store`, then the
/// sections in the order of [`SECTIONS`], each table's scalar keys before its sub-tables.
pub(crate) fn to_toml(config: &Config) -> anyhow::Result<String> {
    let serde_json::Value::Object(top) = serde_json::to_value(config)? else {
        anyhow::bail!("the configuration did not serialize to a table");
    };
    let mut out = String::new();
    for name in SECTIONS {
        let Some(value) = top.get(*name) else {
            anyhow::bail!("the configuration has no `{name}`");
        };
        if value.is_object() {
            write_table(&mut out, name, value)?;
        } else {
            out.push_str(&format!("{name} = {}\n", toml_scalar(value)?));
        }
    }
    Ok(out)
}

/// Writes `[name]` with its scalar keys, then its sub-tables as `[name.sub]`.
fn write_table(out: &mut String, name: &str, value: &serde_json::Value) -> anyhow::Result<()> {
    let serde_json::Value::Object(table) = value else {
        anyhow::bail!("[{name}] did not serialize to a table");
    };
    out.push_str(&format!("\n[{name}]\n"));
    for (k, v) in table.iter().filter(|(_, v)| !v.is_null() && !v.is_object()) {
        out.push_str(&format!("{k} = {}\n", toml_scalar(v)?));
    }
    for (k, v) in table.iter().filter(|(_, v)| v.is_object()) {
        write_table(out, &format!("{name}.{k}"), v)?;
    }
    Ok(())
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
