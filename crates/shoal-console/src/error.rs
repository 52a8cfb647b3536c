//! The console's errors.

/// What can go wrong starting or running the console.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsoleError {
    /// A setting is out of range.
    #[error("console.{name}: {reason}")]
    Setting {
        /// The setting.
        name: &'static str,
        /// Why.
        reason: String,
    },
    /// The listener failed.
    #[error("console listener: {0}")]
    Io(#[from] std::io::Error),
}
