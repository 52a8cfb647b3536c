//! `shoal sweep`: one expiry pass.

use serde_json::json;

use super::{Ctx, note_ephemeral};
use crate::{
    error::Outcome,
    output::{count_of, print_json, print_text},
};

/// `sweep`.
pub(crate) async fn run(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let mut opened = ctx.open().await?;
    // The explicit pass should account for everything it removes.
    opened.stop_sweeper().await;
    let report = opened.store().sweep_expired().await?;
    let changed = report.removed > 0 || report.repaired > 0;
    if changed {
        opened.save().await?;
    }
    note_ephemeral(&opened, changed);
    opened.close().await?;
    if ctx.json {
        print_json(&json!({ "removed": report.removed, "repaired": report.repaired }))?;
    } else {
        print_text(&format!(
            "removed {}, repaired {}\n",
            count_of(report.removed, "expired session", "expired sessions"),
            count_of(report.repaired, "index entry", "index entries"),
        ))?;
    }
    Ok(Outcome::Success)
}
