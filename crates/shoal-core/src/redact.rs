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
/// Conservative where the input is odd: a password holding an unencoded `/`, `?` or `#`
/// (which ends the authority early) hides everything up to the last `@`; so does any `@`
/// before the query of a Redis URL (whose path is only a database number or a master name);
/// text without `://` hides everything up to its last `@`. Query parameter names are
/// percent-decoded before they are matched, and `;` separates parameters as `&` does.
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
/// assert_eq!(redact_url("redis://u:p/w#d@h:1/0"), "redis://u:***@h:1/0");
/// assert_eq!(redact_url("file:///a/b@c"), "file:///a/b@c");
/// ```
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // Not a URL: whatever stands before an `@` may be a credential.
        return match url.rsplit_once('@') {
            Some((_, host)) => format!("{HIDDEN}@{host}"),
            None => url.to_owned(),
        };
    };
    let (userinfo, authority, tail) = split_authority(scheme, rest);
    let authority = match userinfo {
        Some(userinfo) => match userinfo.split_once(':') {
            Some((user, _)) if !user.contains(['/', '?', '#']) => {
                format!("{user}:{HIDDEN}@{authority}")
            }
            _ => format!("{HIDDEN}@{authority}"),
        },
        None => authority.to_owned(),
    };
    let tail = tail.split_once('#').map_or(tail, |(t, _)| t);
    let tail = match tail.split_once('?') {
        Some((path, query)) => format!("{path}?{}", redact_query(query)),
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// `rest` (what follows `://`) as userinfo, authority and the path, query and fragment.
fn split_authority<'a>(scheme: &str, rest: &'a str) -> (Option<&'a str>, &'a str, &'a str) {
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if let Some((userinfo, host)) = authority.rsplit_once('@') {
        return (Some(userinfo), host, tail);
    }
    // No `@` in the authority: either there is no userinfo, or a delimiter inside it ended the
    // authority early. Before the query of a Redis URL an `@` never belongs to the path.
    let before_query = rest.find('?').unwrap_or(rest.len());
    let redis_path_at =
        scheme.to_ascii_lowercase().starts_with("redis") && rest[..before_query].contains('@');
    if !redis_path_at && is_host_list(authority) {
        return (None, authority, tail);
    }
    match rest.rfind('@') {
        Some(at) => {
            let after = &rest[at + 1..];
            let end = after.find(['/', '?', '#']).unwrap_or(after.len());
            (Some(&rest[..at]), &after[..end], &after[end..])
        }
        None => (None, authority, tail),
    }
}

/// Whether `authority` is hosts only (`host`, `host:port`, `[v6]:port`, comma-separated), so
/// that no credential can hide in it.
fn is_host_list(authority: &str) -> bool {
    let name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '%' | '~');
    let port = |p: &str| p.chars().all(|c| c.is_ascii_digit());
    authority
        .split(',')
        .all(|host| match host.strip_prefix('[') {
            Some(v6) => v6.split_once(']').is_some_and(|(addr, after)| {
                addr.chars().all(|c| name_char(c) || c == ':')
                    && (after.is_empty() || after.strip_prefix(':').is_some_and(port))
            }),
            None => {
                let (name, p) = host.rsplit_once(':').unwrap_or((host, ""));
                name.chars().all(name_char) && port(p)
            }
        })
}

fn redact_query(query: &str) -> String {
    let mut out = String::with_capacity(query.len());
    let mut rest = query;
    loop {
        let end = rest.find(['&', ';']).unwrap_or(rest.len());
        let (pair, after) = rest.split_at(end);
        match pair.split_once('=') {
            Some((name, _)) if is_sensitive(name) => {
                out.push_str(name);
                out.push('=');
                out.push_str(HIDDEN);
            }
            _ => out.push_str(pair),
        }
        let mut chars = after.chars();
        match chars.next() {
            Some(separator) => {
                out.push(separator);
                rest = chars.as_str();
            }
            None => break,
        }
    }
    out
}

/// Whether a query parameter's name (percent-decoded, any case) names a credential.
fn is_sensitive(name: &str) -> bool {
    let name = percent_decode(name).to_ascii_lowercase();
    SENSITIVE.iter().any(|s| name.contains(s))
}

/// `%XX` escapes and `+` decoded; anything that is not a valid escape is kept as it is.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let hex = |j: usize| bytes.get(j).and_then(|&c| char::from(c).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'%'));
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `text` with every URL in it (`scheme://…` up to whitespace or a closing quote or bracket,
/// without trailing punctuation) passed through [`redact_url`], e.g. an HTTP client's "error sending request for url (…)".
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
        // Punctuation closing a sentence or a clause (`…?password=pw: refused`) is the
        // text's, not the URL's.
        let url = rest[start..end].trim_end_matches(['.', ',', ':', ';', '!', '?']);
        let url = if url.len() >= at - start + 3 {
            url
        } else {
            &rest[start..end]
        };
        out.push_str(&rest[..start]);
        out.push_str(&redact_url(url));
        rest = &rest[start + url.len()..];
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
    fn delimiters_inside_a_password_never_let_it_through() {
        for (input, expected) in [
            ("redis://u:pa/ss@h:1/0", "redis://u:***@h:1/0"),
            ("redis://u:pa#ss@h:1", "redis://u:***@h:1"),
            ("redis://u:pa?ss@h:1", "redis://u:***@h:1"),
            ("redis://u:1234/ss@h:1/0", "redis://u:***@h:1/0"),
            ("rediss://to/ken@h:6380", "rediss://***@h:6380"),
            ("https://u:pa/ss@h/mcp", "https://u:***@h/mcp"),
            ("https://u:p@ss@h/mcp", "https://u:***@h/mcp"),
            (
                "redis+sentinel://u:pa/ss@s1:1,s2:2/m",
                "redis+sentinel://u:***@s1:1,s2:2/m",
            ),
        ] {
            let out = redact_url(input);
            assert_eq!(out, expected, "{input}");
            assert!(
                !out.contains("pa") && !out.contains("ss@") && !out.contains("1234"),
                "{out}"
            );
        }
    }

    #[test]
    fn hosts_paths_and_harmless_parameters_are_kept() {
        for url in [
            "redis://127.0.0.1:6379/0",
            "redis://[::1]:6379/2",
            "redis+cluster://a:1,b:2,[fe80::1%eth0]:3/",
            "https://registry.example/@scope/pkg?version=1&sort=asc",
            "http://h:8080/mcp?x=1;y=2",
            "memory://",
            "file:///tmp/store.jsonl",
        ] {
            assert_eq!(redact_url(url), url);
        }
    }

    #[test]
    fn every_credential_like_parameter_is_hidden() {
        for name in [
            "password",
            "PASS",
            "pwd",
            "client_secret",
            "access_token",
            "apiKey",
            "X-Amz-Signature",
            "sig",
            "auth",
            "credentials",
            "sessionid",
            "cookie",
            "%70assword",
            "api%5Fkey",
        ] {
            let url = format!("https://h/p?a=1&{name}=PLANTED&b=2");
            let out = redact_url(&url);
            assert_eq!(out, format!("https://h/p?a=1&{name}=***&b=2"), "{name}");
        }
        assert_eq!(
            redact_url("redis://h/0?db=1;password=pw"),
            "redis://h/0?db=1;password=***"
        );
        assert_eq!(redact_url("http://h?token"), "http://h?token");
        assert_eq!(redact_url("http://h?token=a=b"), "http://h?token=***");
    }

    #[test]
    fn fragments_are_dropped() {
        assert_eq!(
            redact_url("http://h/p?x=1#access_token=t"),
            "http://h/p?x=1"
        );
        assert_eq!(redact_url("http://h#t@x"), "http://h");
    }

    #[test]
    fn text_that_is_not_a_url_hides_what_stands_before_an_at() {
        assert_eq!(redact_url("redis:/u:pw@h:1"), "***@h:1");
        assert_eq!(redact_url("a/b:pw@c"), "***@c");
        assert_eq!(redact_url(""), "");
        assert_eq!(redact_url("127.0.0.1:6379"), "127.0.0.1:6379");
    }

    #[test]
    fn odd_input_never_panics() {
        for input in [
            "://",
            "://@",
            "x://@@@",
            "x://[",
            "x://[::1",
            "é://ü:ö@ß/?ä=%",
            "%",
            "?&;=#",
        ] {
            let _ = redact_url(input);
            let _ = redact_text(input);
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
        assert_eq!(
            redact_text("at redis://h/0?password=pw: refused. See https://t@h/?key=k."),
            "at redis://h/0?password=***: refused. See https://***@h/?key=***."
        );
        assert_eq!(
            redact_text(&redact_text("redis://u:pw@h:1/0?password=pw: refused")),
            "redis://u:***@h:1/0?password=***: refused",
            "redacting twice changes nothing"
        );
        assert_eq!(redact_text("memory://, x://:"), "memory://, x://:");
        assert_eq!(redact_text("://"), "://");
    }
}
