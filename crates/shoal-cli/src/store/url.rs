//! [`StoreUrl`]: which store a URL names.

use std::path::PathBuf;

use shoal_redis::{RedisConfig, redact_url, stack::REDIS_SCHEMES};

/// The supported URL forms, for error messages.
const SUPPORTED: &str = "memory://, file://PATH, redis://, rediss://, redis+cluster://, \
                         redis+sentinel://";

/// A parsed store URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum StoreUrl {
    /// `memory://`.
    Memory,
    /// `file://PATH`.
    File(PathBuf),
    /// One of the Redis schemes (the URL kept whole for the Redis backend).
    Redis {
        /// `redis`, `rediss`, `redis+cluster` or `redis+sentinel`.
        scheme: String,
        /// The whole URL.
        url: String,
    },
}

impl StoreUrl {
    /// Parses a store URL; the error says what is wrong and lists the supported forms.
    pub(crate) fn parse(url: &str) -> Result<StoreUrl, String> {
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(format!(
                "{:?} is not a store URL (supported: {SUPPORTED})",
                redact_url(url)
            ));
        };
        let scheme_lc = scheme.to_ascii_lowercase();
        match scheme_lc.as_str() {
            "memory" if rest.is_empty() => Ok(StoreUrl::Memory),
            "memory" => Err(format!(
                "memory:// takes no host or path (got {url:?}); to keep sessions in a file use \
                 file://PATH"
            )),
            "file" if rest.is_empty() => {
                Err("file:// needs a path, e.g. file:///var/lib/shoal/sessions.jsonl".to_owned())
            }
            "file" => Ok(StoreUrl::File(PathBuf::from(rest))),
            s if REDIS_SCHEMES.contains(&s) => {
                if rest.is_empty() {
                    return Err(format!("{s}:// needs a host, e.g. {s}://127.0.0.1:6379"));
                }
                // The backend's own parser: topology, sentinel master, database number.
                // Its messages redact passwords.
                let lower = format!("{scheme_lc}://{rest}");
                if let Err(e) = RedisConfig::new(lower.clone()).validate() {
                    return Err(match e {
                        shoal_core::Error::InvalidInput { reason } => reason,
                        other => other.to_string(),
                    });
                }
                Ok(StoreUrl::Redis {
                    scheme: scheme_lc,
                    url: lower,
                })
            }
            _ => Err(format!(
                "unsupported store URL scheme {scheme:?} (supported: {SUPPORTED})"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_supported_urls() {
        assert_eq!(StoreUrl::parse("memory://"), Ok(StoreUrl::Memory));
        assert_eq!(StoreUrl::parse("MEMORY://"), Ok(StoreUrl::Memory));
        assert_eq!(
            StoreUrl::parse("file:///var/lib/shoal/s.jsonl"),
            Ok(StoreUrl::File("/var/lib/shoal/s.jsonl".into()))
        );
        assert_eq!(
            StoreUrl::parse("file://rel/s.jsonl"),
            Ok(StoreUrl::File("rel/s.jsonl".into()))
        );
        for url in [
            "redis://127.0.0.1:6379",
            "rediss://user:pw@h:6380/0",
            "redis+cluster://a:1,b:2",
            "redis+sentinel://s1:26379/mymaster",
        ] {
            assert!(
                matches!(StoreUrl::parse(url), Ok(StoreUrl::Redis { .. })),
                "{url}"
            );
        }
    }

    #[test]
    fn refuses_bad_urls_clearly() {
        let e = StoreUrl::parse("postgres://x").expect_err("scheme");
        assert!(
            e.contains("\"postgres\"") && e.contains("file://PATH"),
            "{e}"
        );
        let e = StoreUrl::parse("memory").expect_err("no scheme");
        assert!(e.contains("not a store URL"), "{e}");
        let e = StoreUrl::parse("memory://x").expect_err("memory path");
        assert!(e.contains("no host or path"), "{e}");
        let e = StoreUrl::parse("file://").expect_err("empty path");
        assert!(e.contains("needs a path"), "{e}");
        let e = StoreUrl::parse("redis://").expect_err("no host");
        assert!(e.contains("needs a host"), "{e}");
    }

    #[test]
    fn redacts_passwords() {
        let e = StoreUrl::parse("foo://u:secret@h").expect_err("scheme");
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn redis_urls_are_checked_by_the_backend() {
        let e = StoreUrl::parse("redis+sentinel://u:secret@s1:26379").expect_err("no master");
        assert!(e.contains("master"), "{e}");
        assert!(!e.contains("secret"), "{e}");
        let e = StoreUrl::parse("redis+cluster://a:1/0").expect_err("cluster db");
        assert!(e.contains("database"), "{e}");
        assert_eq!(
            StoreUrl::parse("REDIS://h:1/2"),
            Ok(StoreUrl::Redis {
                scheme: "redis".into(),
                url: "redis://h:1/2".into()
            })
        );
    }
}
