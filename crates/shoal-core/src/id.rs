//! Session identifiers: validated once, cheap to clone, safe inside Redis key names.

use std::{fmt, str::FromStr, sync::Arc};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Error, Result};

/// The longest id accepted, in bytes.
pub const MAX_SESSION_ID_LEN: usize = 128;

/// Characters that are visible ASCII but still refused: they break Redis hash tags (`{}`),
/// key separators (`:`) and glob patterns (`* ? [ ] \`).
const FORBIDDEN: &[u8] = b"{}:*?[]\\";

/// A validated session id: 1–128 characters of visible ASCII (0x21–0x7E) except `{ } : * ? [ ] \`.
///
/// Validation happens once, at construction, so every id that reaches a backend is safe to put
/// into a key name. Cloning is an `Arc` bump.
///
/// ```
/// use shoal_core::SessionId;
///
/// let id: SessionId = "client-42".parse().unwrap();
/// assert_eq!(id.as_str(), "client-42");
/// assert!("has space".parse::<SessionId>().is_err());
/// assert!("{tag}".parse::<SessionId>().is_err());
///
/// let fresh = SessionId::generate();
/// assert_eq!(fresh.as_str().len(), 32); // 128 random bits, hex
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(Arc<str>);

impl SessionId {
    /// Validates `s` and wraps it. Errors with [`Error::InvalidInput`] naming the problem.
    pub fn new(s: impl AsRef<str>) -> Result<Self> {
        let s = s.as_ref();
        validate(s)?;
        Ok(SessionId(Arc::from(s)))
    }

    /// A new id of 128 bits from the operating system's CSPRNG, as 32 lowercase hex digits.
    ///
    /// # Panics
    /// Only if the operating system has no usable random source, which is not a state a session
    /// store can run in.
    #[allow(clippy::expect_used)]
    pub fn generate() -> Self {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).expect("the OS random source is unavailable");
        let mut s = String::with_capacity(32);
        for b in bytes {
            use fmt::Write;
            let _ = write!(s, "{b:02x}");
        }
        SessionId(Arc::from(s))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn validate(s: &str) -> Result<()> {
    if s.is_empty() {
        return Err(Error::invalid("session id is empty"));
    }
    if s.len() > MAX_SESSION_ID_LEN {
        return Err(Error::invalid(format!(
            "session id is {} bytes long; the limit is {MAX_SESSION_ID_LEN}",
            s.len()
        )));
    }
    for (i, b) in s.bytes().enumerate() {
        if !(0x21..=0x7e).contains(&b) {
            return Err(Error::invalid(format!(
                "session id has a non-visible or non-ASCII byte 0x{b:02x} at position {i}"
            )));
        }
        if FORBIDDEN.contains(&b) {
            return Err(Error::invalid(format!(
                "session id has the reserved character {:?} at position {i}",
                b as char
            )));
        }
    }
    Ok(())
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl FromStr for SessionId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        SessionId::new(s)
    }
}

impl TryFrom<String> for SessionId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        validate(&s)?;
        Ok(SessionId(Arc::from(s)))
    }
}

impl TryFrom<&str> for SessionId {
    type Error = Error;
    fn try_from(s: &str) -> Result<Self> {
        SessionId::new(s)
    }
}

impl AsRef<str> for SessionId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for SessionId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl Serialize for SessionId {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SessionId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        SessionId::new(&*s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_whole_visible_range_except_reserved() {
        for b in 0x21u8..=0x7e {
            let s = (b as char).to_string();
            let ok = SessionId::new(&s).is_ok();
            assert_eq!(ok, !FORBIDDEN.contains(&b), "byte {b:#x}");
        }
    }

    #[test]
    fn rejects_bad_ids_with_a_reason() {
        for bad in [
            "", " ", "a b", "tab\t", "é", "a{b", "a}b", "a:b", "a*", "a?", "[", "]", "\\",
        ] {
            let err = SessionId::new(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidInput { .. }), "{bad:?}: {err}");
        }
        let long = "a".repeat(MAX_SESSION_ID_LEN + 1);
        assert!(SessionId::new(&long).is_err());
        assert!(SessionId::new("a".repeat(MAX_SESSION_ID_LEN)).is_ok());
    }

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let id = SessionId::generate();
            assert!(SessionId::new(id.as_str()).is_ok());
            assert_eq!(id.as_str().len(), 32);
            assert!(seen.insert(id));
        }
    }

    #[test]
    fn deserializing_validates() {
        let ok: SessionId = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!(ok.as_str(), "abc");
        assert!(serde_json::from_str::<SessionId>("\"a:b\"").is_err());
    }
}
