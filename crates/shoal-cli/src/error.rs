//! The error classes the binary maps to exit codes, and how an error is shown.
//!
//! Commands return `anyhow::Result`; `main` looks for these marker types in the error chain to
//! choose the exit code (see [`exit_code_for`]) and prints [`error_text`].

use std::fmt;

/// Exit code: success.
pub(crate) const EXIT_OK: u8 = 0;
/// Exit code: the command ran but failed (store error, not found, bad import lines, unhealthy).
pub(crate) const EXIT_FAILURE: u8 = 1;
/// Exit code: usage error (bad flag or argument, malformed session id, invalid configuration).
pub(crate) const EXIT_USAGE: u8 = 2;
/// Exit code: interrupted by Ctrl-C (128 + SIGINT).
pub(crate) const EXIT_INTERRUPTED: u8 = 130;

/// A usage-class error: the command line, configuration file, environment or store URL is
/// invalid. Exit code 2.
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The command was interrupted by Ctrl-C. Exit code 130.
#[derive(Debug)]
pub(crate) struct Interrupted;

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// What a command that did not error reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Everything worked: exit 0.
    Success,
    /// The command ran to the end but reported problems (already printed): exit 1.
    Failure,
}

impl Outcome {
    /// `Success` when `ok`, else `Failure`.
    pub(crate) fn from_ok(ok: bool) -> Self {
        if ok {
            Outcome::Success
        } else {
            Outcome::Failure
        }
    }
}

/// The error's causes, each once (a wrapped error often repeats its source's text), without
/// credentials (a backend's message may carry a URL): what `shoal` prints for an error, on
/// stderr or in a report.
pub(crate) fn error_text(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    shoal_core::redact::redact_text(&parts.join(": "))
}

/// How `main` should end for `err`: its exit code, and whether to print it.
pub(crate) fn exit_code_for(err: &anyhow::Error) -> (u8, bool) {
    if err.downcast_ref::<Interrupted>().is_some() {
        return (EXIT_INTERRUPTED, true);
    }
    if err.downcast_ref::<UsageError>().is_some() {
        return (EXIT_USAGE, true);
    }
    // A closed stdout (`shoal sessions list | head`) is not an error worth a message.
    let broken_pipe = err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    });
    if broken_pipe {
        return (EXIT_OK, false);
    }
    (EXIT_FAILURE, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_error_class() {
        assert_eq!(exit_code_for(&anyhow::Error::new(Interrupted)), (130, true));
        assert_eq!(
            exit_code_for(&anyhow::Error::new(UsageError("bad".into()))),
            (2, true)
        );
        assert_eq!(exit_code_for(&anyhow::anyhow!("store down")), (1, true));
        let pipe = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
            .context("writing output");
        assert_eq!(exit_code_for(&pipe), (0, false));
        let usage = anyhow::Error::new(UsageError("x".into())).context("loading config");
        assert_eq!(exit_code_for(&usage).0, 2);
    }

    #[test]
    fn error_text_says_each_cause_once_without_credentials() {
        let inner = "cannot connect to redis at redis://:pw@h:1/0: authentication failed";
        let e = anyhow::anyhow!(inner).context(format!("backend error: {inner}"));
        assert_eq!(
            error_text(&e),
            "backend error: cannot connect to redis at redis://:***@h:1/0: authentication failed"
        );
    }
}
