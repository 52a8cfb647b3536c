//! The secret that makes event ids tamper-evident, and how a fleet agrees on one.

use std::{fmt, path::Path};

/// Why an event id key cannot be used.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key is shorter than [`EventIdKey::MIN_LEN`] bytes.
    #[error("event id key is {0} bytes; at least 16 are needed")]
    Short(usize),
    /// The key file cannot be used.
    #[error("event id key file {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What is wrong with it (unreadable, too short).
        reason: String,
    },
}

impl fmt::Debug for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("KeyError").field(&self.to_string()).finish()
    }
}

impl KeyError {
    fn file(path: &Path, reason: impl fmt::Display) -> Self {
        KeyError::File {
            path: path.display().to_string(),
            reason: reason.to_string(),
        }
    }
}

/// The secret that makes event ids tamper-evident. Every instance serving the same sessions
/// must use the same key, or resumption across instances is refused. `Debug` shows its length
/// only.
#[derive(Clone, PartialEq, Eq)]
pub struct EventIdKey(Vec<u8>);

impl EventIdKey {
    /// The shortest key accepted, in bytes.
    pub const MIN_LEN: usize = 16;

    /// A key from raw bytes (at least [`EventIdKey::MIN_LEN`]).
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, KeyError> {
        let bytes = bytes.into();
        if bytes.len() < Self::MIN_LEN {
            return Err(KeyError::Short(bytes.len()));
        }
        Ok(EventIdKey(bytes))
    }

    /// A fresh random key (32 bytes from the OS CSPRNG). Only good for a single instance, or
    /// as the candidate of [`EventIdKey::shared`].
    pub fn random() -> Self {
        let mut k = vec![0u8; 32];
        // Without an OS random source no key could be made safely; `SessionId::generate`
        // panics likewise.
        #[allow(clippy::expect_used)]
        getrandom::fill(&mut k).expect("the OS random source is unavailable");
        EventIdKey(k)
    }

    /// Reads a key from a file. A file of text (e.g. `openssl rand -hex 32 > key`) is used
    /// trimmed of surrounding whitespace, so a trailing newline does not change the key; any
    /// other file (e.g. `head -c 32 /dev/urandom > key`) is used byte for byte.
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let bytes = std::fs::read(path).map_err(|e| KeyError::file(path, e))?;
        let key = match std::str::from_utf8(&bytes) {
            Ok(text) => text.trim().as_bytes().to_vec(),
            Err(_) => bytes,
        };
        Self::new(key).map_err(|e| KeyError::file(path, e))
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The key every instance using `store` agrees on under `name`: created once, atomically,
    /// by the first instance that asks (from a fresh random key), read by every later one
    /// ([`SessionStore::shared_secret`](crate::SessionStore::shared_secret)). For fleets
    /// started without a configured key; an explicit key (a file) should win over it.
    pub async fn shared(store: &dyn crate::SessionStore, name: &str) -> crate::Result<Self> {
        let candidate = Self::random();
        let agreed = store.shared_secret(name, &candidate.0).await?;
        Self::new(agreed)
            .map_err(|e| crate::Error::corrupt(format!("shared secret {name:?}"), e.to_string()))
    }
}

impl fmt::Debug for EventIdKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventIdKey(<{} bytes>)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_keys_are_refused() {
        assert!(EventIdKey::new(b"short".to_vec()).is_err());
        assert!(EventIdKey::new(vec![1u8; 16]).is_ok());
        assert_eq!(
            format!("{:?}", EventIdKey::new(vec![1u8; 16]).unwrap()),
            "EventIdKey(<16 bytes>)"
        );
    }

    #[test]
    fn key_files_hold_text_or_raw_bytes() {
        let dir = tempfile::tempdir().unwrap();
        // Text (what `openssl rand -hex 32` writes): trimmed, so the newline is not key.
        let text = dir.path().join("text");
        std::fs::write(&text, "00112233445566778899aabbccddeeff\n").unwrap();
        assert_eq!(
            EventIdKey::from_file(&text).unwrap().as_bytes(),
            b"00112233445566778899aabbccddeeff"
        );
        // Raw bytes (what `head -c 32 /dev/urandom` writes): used as they are, whitespace too.
        let raw = dir.path().join("raw");
        let mut bytes = vec![0xffu8, b' ', 0x80, b'\n'];
        bytes.extend(0u8..28);
        std::fs::write(&raw, &bytes).unwrap();
        assert_eq!(EventIdKey::from_file(&raw).unwrap().as_bytes(), &bytes[..]);
        // Too short, and missing: clear errors naming the file.
        let short = dir.path().join("short");
        std::fs::write(&short, "abc\n").unwrap();
        let e = EventIdKey::from_file(&short).unwrap_err().to_string();
        assert!(e.contains("short") && e.contains("at least 16"), "{e}");
        let e = EventIdKey::from_file(&dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing"), "{e}");
    }
}
