//! `shoal config check FILE` and `shoal config show`.

use std::path::Path;

use crate::{
    config::{self, Config, Sources},
    error::{Outcome, UsageError},
    output::{print_json, print_text},
};

/// Prints `config` as TOML, or JSON with `--json`; a password in the store URL is printed as
/// `***`.
fn print_config(config: &Config, json: bool) -> anyhow::Result<()> {
    let config = config.redacted();
    if json {
        print_json(&config)
    } else {
        print_text(&config::to_toml(&config)?)
    }
}

/// `config check FILE`: loads `file` with the environment and flags of `sources`; prints the
/// effective configuration, or fails with exit code 2 and the located error.
pub(crate) fn check(file: &Path, mut sources: Sources, json: bool) -> anyhow::Result<Outcome> {
    sources.file = Some(file.to_owned());
    let config = config::load(&sources).map_err(UsageError::from)?;
    if !json {
        eprintln!("{}: ok", file.display());
    }
    print_config(&config, json)?;
    Ok(Outcome::Success)
}

/// `config show`: the effective configuration of this run.
pub(crate) fn show(ctx: &super::Ctx) -> anyhow::Result<Outcome> {
    print_config(&ctx.config, ctx.json)?;
    Ok(Outcome::Success)
}
