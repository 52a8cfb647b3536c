//! How a run ends: [`Interrupted`], and the exit code of each error.

use shoal_redis::stack::StackError;

/// Exit code of a run that completed (and, with `--verify`, found nothing wrong).
pub(crate) const EXIT_OK: u8 = 0;
/// Exit code of a failed run: a store or I/O error, or `--verify` found a problem.
pub(crate) const EXIT_FAILURE: u8 = 1;
/// Exit code of a usage error: a bad flag, store URL or setting.
pub(crate) const EXIT_USAGE: u8 = 2;
/// Exit code after Ctrl-C.
pub(crate) const EXIT_INTERRUPTED: u8 = 130;

/// The run was stopped by Ctrl-C (its sessions were still deleted).
#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
pub(crate) struct Interrupted;

/// A usage error: the message says what to change.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct UsageError(pub(crate) String);

/// The exit code for `err`.
pub(crate) fn exit_code_for(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<Interrupted>().is_some() {
        EXIT_INTERRUPTED
    } else if err.downcast_ref::<UsageError>().is_some()
        || err
            .downcast_ref::<StackError>()
            .is_some_and(StackError::is_invalid_configuration)
    {
        EXIT_USAGE
    } else {
        EXIT_FAILURE
    }
}
