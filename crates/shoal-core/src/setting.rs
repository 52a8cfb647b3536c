//! The upper bound every duration setting shares, for the library configurations' `validate`
//! functions: a configuration built in code gets the same bound as one read from a file
//! (whose durations [`serde_util::duration`](crate::serde_util::duration) bounds already).
//! Longer durations would overflow the clock arithmetic of timers and deadlines.

use std::time::Duration;

use crate::{Error, Result};

/// The longest duration any setting takes: 10 years, the bound config files are read with.
pub const MAX_DURATION: Duration = crate::serde_util::duration::MAX;

/// Refuses a `value` of the setting `key` longer than [`MAX_DURATION`]; the error names the
/// key, the value and the bound.
///
/// ```
/// use std::time::Duration;
/// use shoal_core::setting::at_most_max;
/// assert!(at_most_max("cache.ttl", Duration::from_secs(60)).is_ok());
/// let e = at_most_max("cache.ttl", Duration::MAX).unwrap_err();
/// assert!(e.to_string().contains("cache.ttl must be at most 10 years"));
/// ```
pub fn at_most_max(key: &str, value: Duration) -> Result<()> {
    if value > MAX_DURATION {
        return Err(Error::invalid(format!(
            "{key} must be at most 10 years, got {}s",
            value.as_secs()
        )));
    }
    Ok(())
}

/// [`at_most_max`] for each `(key, value)`, the first failure returned.
pub fn all_at_most_max<'a>(settings: impl IntoIterator<Item = (&'a str, Duration)>) -> Result<()> {
    settings
        .into_iter()
        .try_for_each(|(key, value)| at_most_max(key, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_is_inclusive_and_the_first_offender_is_named() {
        assert!(at_most_max("a", MAX_DURATION).is_ok());
        assert!(at_most_max("a", MAX_DURATION + Duration::from_nanos(1)).is_err());
        let e = all_at_most_max([
            ("ok", Duration::ZERO),
            ("x.first", Duration::MAX),
            ("x.second", Duration::MAX),
        ])
        .expect_err("too long");
        let text = e.to_string();
        assert!(
            text.contains("x.first") && !text.contains("x.second"),
            "{text}"
        );
    }
}
