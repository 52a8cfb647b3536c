//! `shoal bench`: load generator and verifier for any store. (Stub: being written.)

use std::sync::Arc;

/// Arguments of `shoal bench`.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct BenchArgs {}

/// Runs the benchmark against `store`. `Ok(false)` means verification found problems.
pub(crate) async fn run(
    args: &BenchArgs,
    store: Arc<dyn shoal_core::SessionStore>,
    json: bool,
) -> anyhow::Result<bool> {
    let _ = (args, store, json);
    anyhow::bail!("bench not built yet")
}
