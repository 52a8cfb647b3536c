//! Redaction: the one way every Shoal crate makes a URL, or a message that may contain URLs,
//! safe for logs, errors and stdout. A URL's password becomes `***` (its user name stays, so
//! a Redis ACL user is still named); a userinfo without a password is often a token
//! (`https://ghp_…@host`, `redis://PASSWORD@host`) and is hidden whole; the value of every
//! query parameter whose name looks like a credential (`password`, `token`, `key`, `secret`,
//! `auth`, `sig`, `session`, `cookie`, `credential`, …) becomes `***`. Fragments are dropped.
//! Only the authority is searched for userinfo, so an `@` in a path is kept.

/// Parts of query parameter names that mark a credential (matched case-insensitively).
const SENSITIVE: &[&str] = &[
    "pass",
    "pwd",
    "secret",
    "token",
    "key",
    "auth",
    "credential",
    "sig",
    "session",
    "cookie",
];

/// What replaces a secret.
pub const HIDDEN: &str = "***";

/// `url` with its credentials replaced by `***`.
///
/// ```
/// use shoal_core::redact::redact_url;
/// assert_eq!(redact_url("rediss://app:pw@h:6380/0"), "rediss://app:***@h:6380/0");
/// assert_eq!(
///     redact_url("redis+sentinel://pw@s1,s2/mymaster"),
///     "redis+sentinel://***@s1,s2/mymaster"
/// );
/// assert_eq!(
///     redact_url("https://api.example/mcp?token=abc&x=1#frag"),
///     "https://api.example/mcp?token=***&x=1"
/// );
/// assert_eq!(redact_url("file:///a/b@c"), "file:///a/b@c");
/// ```
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // Not a URL: a bare `user:password@host` is still hidden.
        return match url.rsplit_once('@') {
            Some((_, host)) if !url.contains('/') => format!("{HIDDEN}@{host}"),
            _ => url.to_owned(),
        };
    };
    let rest = rest.split_once('#').map_or(rest, |(r, _)| r);
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:{HIDDEN}@{host}"),
            None => format!("{HIDDEN}@{host}"),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => format!("{path}?{}", redact_query(query)),
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_sensitive(name) => format!("{name}={HIDDEN}"),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn is_sensitive(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SENSITIVE.iter().any(|s| name.contains(s))
}

/// `text` with every URL in it (`scheme://…` up to whitespace or a closing quote or bracket)
/// passed through [`redact_url`], e.g. an HTTP client's "error sending request for url (…)".
///
/// ```
/// use shoal_core::redact::redact_text;
/// assert_eq!(
///     redact_text("error sending request for url (http://u:pw@h/mcp?token=t1): refused"),
///     "error sending request for url (http://u:***@h/mcp?token=***): refused"
/// );
/// ```
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        // The scheme: letters, digits, `+`, `-`, `.` before `://`.
        let start = rest[..at]
            .char_indices()
            .rev()
            .take_while(|(_, c)| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
            .last()
            .map_or(at, |(i, _)| i);
        let end = rest[at..]
            .find(|c: char| c.is_whitespace() || matches!(c, ')' | '"' | '\'' | '>' | ']' | '`'))
            .map_or(rest.len(), |i| at + i);
        out.push_str(&rest[..start]);
        out.push_str(&redact_url(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_every_credential() {
        for (input, expected) in [
            ("redis://user:pw@h:1/0", "redis://user:***@h:1/0"),
            ("redis://pw@h:1", "redis://***@h:1"),
            ("redis://:pw@h:1", "redis://:***@h:1"),
            (
                "https://ghp_token@github.example/x",
                "https://***@github.example/x",
            ),
            (
                "redis+cluster://u:p%40w@a:1,b:2/",
                "redis+cluster://u:***@a:1,b:2/",
            ),
            (
                "http://h/mcp?password=p&api_key=k&AccessToken=t&x=1",
                "http://h/mcp?password=***&api_key=***&AccessToken=***&x=1",
            ),
            ("http://h?sig=s", "http://h?sig=***"),
            ("http://h/p#secret-fragment", "http://h/p"),
            ("http://h/a@b", "http://h/a@b"),
            ("user:pw@host", "***@host"),
            ("plain text", "plain text"),
        ] {
            assert_eq!(redact_url(input), expected, "{input}");
        }
    }

    #[test]
    fn urls_inside_text_are_redacted_and_the_rest_kept() {
        let text = "upstream: error sending request for url \
                    (http://planted:PW1@127.0.0.1:9/mcp?token=T2) and \"redis://PW3@h:1\" done";
        let out = redact_text(text);
        for secret in ["PW1", "T2", "PW3"] {
            assert!(!out.contains(secret), "{out}");
        }
        assert!(out.starts_with("upstream: error sending request for url (http://planted:***@"));
        assert!(out.ends_with("\"redis://***@h:1\" done"), "{out}");
        assert_eq!(redact_text("no urls"), "no urls");
        assert_eq!(redact_text("://"), "://");
    }
}
