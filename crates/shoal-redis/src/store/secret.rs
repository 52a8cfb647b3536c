//! Shared secrets: `<prefix>:secret:<name>`, a string without expiry, written once with
//! `SET NX` and read back in the same pipeline, so concurrent first callers agree on one value.

use redis::Value;
use shoal_core::{Error, Result, store::check_secret};

use super::handle::StoreState;
use crate::meta::bytes_of;

impl StoreState {
    pub(super) async fn shared_secret(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>> {
        check_secret(name, candidate)?;
        let key = self.keys.secret(name);
        let mut pipe = redis::pipe();
        pipe.cmd("SET").arg(&key).arg(candidate).arg("NX").ignore();
        pipe.cmd("GET").arg(&key);
        let mut c = self.conn();
        let (stored,): (Value,) = self
            .io("shared_secret", None, pipe.query_async(&mut c))
            .await?;
        match bytes_of(&stored) {
            Some(b) if (16..=1024).contains(&b.len()) => Ok(b.to_vec()),
            _ => Err(Error::corrupt(
                format!("shared secret {name:?}"),
                "not a string of 16-1024 bytes",
            )),
        }
    }
}
