//! Named leases within a session: which owner (e.g. which proxy instance) does something for
//! the session right now, such as reading one of its upstream streams.
//!
//! A lease is held by one owner until it runs out. Taking it is "set if absent or run out"
//! (`SET NX PX`); renewing and releasing compare the owner first (compare-and-renew,
//! compare-and-delete), so an owner that was held up and lost its lease learns it instead of
//! overwriting the new holder. A lease that ran out is gone: its last owner cannot renew it
//! (another owner may have taken it and released it meanwhile); it must acquire it again, and
//! should first ask itself whether its work is still its own. Leases live beside the session,
//! never in its metadata; they end with it (on Redis, at the latest when they run out).
//!
use std::time::Duration;

use crate::{Error, Result, Timestamp};

/// The longest lease name, in bytes.
pub const MAX_LEASE_NAME: usize = 64;
/// The longest owner token, in bytes.
pub const MAX_LEASE_OWNER: usize = 128;
/// The longest lease time.
pub const MAX_LEASE_TTL: Duration = Duration::from_secs(24 * 3600);

/// A live lease: its owner and when it runs out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The owner token that holds it.
    pub owner: String,
    /// When it runs out (store clock).
    pub expires_at: Timestamp,
}

/// What to do with a named lease of a session ([`SessionStore::lease`](crate::SessionStore::lease)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseRequest<'a> {
    /// Takes the lease for `ttl` unless another owner holds a live one; extends it when
    /// `owner` holds it already.
    Acquire {
        /// The lease's name within the session.
        name: &'a str,
        /// The caller's owner token.
        owner: &'a str,
        /// How long it is held from now.
        ttl: Duration,
    },
    /// Extends the lease by `ttl` from now only if `owner` holds it and it has not run out.
    Renew {
        /// The lease's name within the session.
        name: &'a str,
        /// The caller's owner token.
        owner: &'a str,
        /// How long it is held from now.
        ttl: Duration,
    },
    /// Gives the lease up if `owner` holds it.
    Release {
        /// The lease's name within the session.
        name: &'a str,
        /// The caller's owner token.
        owner: &'a str,
    },
    /// Reads the live holder.
    Read {
        /// The lease's name within the session.
        name: &'a str,
    },
}

impl<'a> LeaseRequest<'a> {
    /// The lease's name.
    pub fn name(&self) -> &'a str {
        match *self {
            LeaseRequest::Acquire { name, .. }
            | LeaseRequest::Renew { name, .. }
            | LeaseRequest::Release { name, .. }
            | LeaseRequest::Read { name } => name,
        }
    }

    /// Checks the name (1–64 bytes of `[A-Za-z0-9._-]`), the owner (1–128 bytes, no control
    /// characters) and the ttl (1 ms to 24 h).
    pub fn validate(&self) -> Result<()> {
        let name = self.name();
        if name.is_empty()
            || name.len() > MAX_LEASE_NAME
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(Error::invalid(format!(
                "lease name must be 1-{MAX_LEASE_NAME} of [A-Za-z0-9._-]"
            )));
        }
        let (owner, ttl) = match *self {
            LeaseRequest::Acquire { owner, ttl, .. } | LeaseRequest::Renew { owner, ttl, .. } => {
                (Some(owner), Some(ttl))
            }
            LeaseRequest::Release { owner, .. } => (Some(owner), None),
            LeaseRequest::Read { .. } => (None, None),
        };
        if let Some(owner) = owner
            && (owner.is_empty()
                || owner.len() > MAX_LEASE_OWNER
                || owner.chars().any(char::is_control))
        {
            return Err(Error::invalid(format!(
                "lease owner must be 1-{MAX_LEASE_OWNER} bytes without control characters"
            )));
        }
        if let Some(ttl) = ttl
            && (ttl < Duration::from_millis(1) || ttl > MAX_LEASE_TTL)
        {
            return Err(Error::invalid("lease ttl must be between 1 ms and 24 h"));
        }
        Ok(())
    }
}

/// The answer to a [`LeaseRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseReply {
    /// Acquire, Renew: the caller holds the lease now. Release: the caller gave it up.
    /// Read: a live holder exists.
    pub granted: bool,
    /// The live holder after the call.
    pub holder: Option<Lease>,
}

/// A lease as a store keeps it: its owner and expiry. A record whose expiry has passed is
/// the same as none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRecord {
    /// The owner that took or renewed it last.
    pub owner: String,
    /// When it runs or ran out.
    pub expires_at: Timestamp,
}

/// Applies `request` at `now` to the lease record `current`: the reply and the record to keep
/// (`None`: unchanged; a record that has run out at `now` may be dropped). The rules every store follows; stores that keep leases themselves
/// (memory) call it, the others (Redis) run the same rules in their own language.
pub fn apply(
    current: Option<&LeaseRecord>,
    request: &LeaseRequest<'_>,
    now: Timestamp,
) -> (LeaseReply, Option<LeaseRecord>) {
    let live = current.filter(|r| r.expires_at > now);
    let holder = |r: Option<&LeaseRecord>| {
        r.map(|r| Lease {
            owner: r.owner.clone(),
            expires_at: r.expires_at,
        })
    };
    let take = |owner: &str, ttl: Duration| {
        let rec = LeaseRecord {
            owner: owner.to_owned(),
            expires_at: now.saturating_add(ttl),
        };
        let reply = LeaseReply {
            granted: true,
            holder: holder(Some(&rec)),
        };
        (reply, Some(rec))
    };
    let refuse = || {
        (
            LeaseReply {
                granted: false,
                holder: holder(live),
            },
            None,
        )
    };
    match *request {
        LeaseRequest::Acquire { owner, ttl, .. } => match live {
            Some(r) if r.owner != owner => refuse(),
            _ => take(owner, ttl),
        },
        LeaseRequest::Renew { owner, ttl, .. } => match live {
            Some(r) if r.owner == owner => take(owner, ttl),
            _ => refuse(),
        },
        LeaseRequest::Release { owner, .. } => match live {
            Some(r) if r.owner == owner => (
                LeaseReply {
                    granted: true,
                    holder: None,
                },
                Some(LeaseRecord {
                    owner: owner.to_owned(),
                    expires_at: Timestamp(0),
                }),
            ),
            _ => refuse(),
        },
        LeaseRequest::Read { .. } => (
            LeaseReply {
                granted: live.is_some(),
                holder: holder(live),
            },
            None,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_millis(100);

    fn acquire(owner: &str) -> LeaseRequest<'_> {
        LeaseRequest::Acquire {
            name: "g0",
            owner,
            ttl: TTL,
        }
    }

    #[test]
    fn the_rules() {
        let t = Timestamp(1_000);
        let (r, rec) = apply(None, &acquire("a"), t);
        assert!(r.granted);
        let rec = rec.unwrap();
        assert_eq!(rec.expires_at, Timestamp(1_100));
        // Another owner is refused while it lives, and told who holds it.
        let (r, none) = apply(Some(&rec), &acquire("b"), t);
        assert!(!r.granted && none.is_none());
        assert_eq!(r.holder.unwrap().owner, "a");
        // ... and takes it once it ran out.
        let (r, b) = apply(Some(&rec), &acquire("b"), Timestamp(1_100));
        assert!(r.granted);
        let b = b.unwrap();
        // The old owner cannot renew or release it.
        let renew_a = LeaseRequest::Renew {
            name: "g0",
            owner: "a",
            ttl: TTL,
        };
        assert!(!apply(Some(&b), &renew_a, Timestamp(1_150)).0.granted);
        let release_a = LeaseRequest::Release {
            name: "g0",
            owner: "a",
        };
        assert!(!apply(Some(&b), &release_a, Timestamp(1_150)).0.granted);
        // B releases; A cannot renew what it no longer holds.
        let release_b = LeaseRequest::Release {
            name: "g0",
            owner: "b",
        };
        let (r, gone) = apply(Some(&b), &release_b, Timestamp(1_150));
        assert!(r.granted && r.holder.is_none());
        let gone = gone.unwrap();
        assert!(!apply(Some(&gone), &renew_a, Timestamp(1_160)).0.granted);
        // An owner whose lease ran out cannot renew it, even if nobody took it.
        assert!(!apply(Some(&rec), &renew_a, Timestamp(5_000)).0.granted);
        // ... but renews while it lives.
        let (r, renewed) = apply(Some(&rec), &renew_a, Timestamp(1_050));
        assert!(r.granted);
        assert_eq!(renewed.unwrap().expires_at, Timestamp(1_150));
        let read = LeaseRequest::Read { name: "g0" };
        assert!(!apply(Some(&gone), &read, Timestamp(1_160)).0.granted);
        assert!(apply(Some(&rec), &read, Timestamp(1_050)).0.granted);
    }

    #[test]
    fn validation() {
        assert!(acquire("a").validate().is_ok());
        assert!(acquire("").validate().is_err());
        assert!(acquire("a\nb").validate().is_err());
        let bad_name = LeaseRequest::Read { name: "a:b" };
        assert!(bad_name.validate().is_err());
        let zero = LeaseRequest::Acquire {
            name: "x",
            owner: "a",
            ttl: Duration::ZERO,
        };
        assert!(zero.validate().is_err());
    }
}
