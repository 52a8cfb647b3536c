//! Custom headers from tool parameters (2026-07-28): a tool whose `inputSchema` property says
//! `"x-mcp-header": "<Name>"` has that argument of every `tools/call` mirrored in an
//! `Mcp-Param-<Name>` header, so intermediaries can route on it without reading the body. A
//! value that is not plain printable ASCII (or has leading or trailing whitespace) is sent as
//! `=?base64?<standard base64 of its UTF-8>?=`; a null or absent argument has no header.
//!
//! The bridges play the part the other era lacks:
//! - 2025 clients → 2026 upstream: the proxy is the 2026 client and adds the headers
//!   ([`add`]);
//! - 2026 clients → 2025 upstream: the proxy is the 2026 server and checks them ([`check`]):
//!   a missing, unexpected, undecodable or different header is HTTP 400 with JSON-RPC -32020
//!   (`HeaderMismatch`), as a 2026 server answers.
//!
//! Both need the tool's declarations, read from the upstream's `tools/list` and kept per
//! scope (the upstream session a client is served in) for [`LISTING_TTL`]; a tool missing
//! from a kept listing has it read again (at most every two seconds). When the listing cannot be read the call goes on
//! without headers or checks (the upstream still validates its arguments).

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use base64::Engine as _;
use serde_json::Value;

/// How long a tool listing is used before it is read again.
pub(crate) const LISTING_TTL: Duration = Duration::from_secs(30);
/// A kept listing that lacks a called tool is read again only when at least this old.
const REREAD_AFTER: Duration = Duration::from_secs(2);
/// Most `tools/list` pages read for one listing.
const MAX_PAGES: usize = 20;
/// Most scopes kept (past it, every listing is dropped and read again when needed).
const MAX_SCOPES: usize = 1_024;
/// The name of the schema keyword.
const KEYWORD: &str = "x-mcp-header";
/// The header name prefix.
const PREFIX: &str = "mcp-param-";

/// A tool's mirrored arguments: (argument name, header name).
pub(crate) type Declarations = Vec<(String, HeaderName)>;

/// The declarations of `tool` (one entry of a `tools/list` result). A declaration whose name
/// is not an HTTP token is left out (a 2026 client refuses such a tool).
pub(crate) fn declared(tool: &Value) -> Declarations {
    let Some(props) = tool
        .get("inputSchema")
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
    else {
        return Vec::new();
    };
    props
        .iter()
        .filter_map(|(arg, schema)| {
            let name = schema.get(KEYWORD)?.as_str()?;
            if name.is_empty() {
                return None;
            }
            let header = HeaderName::from_bytes(format!("{PREFIX}{name}").as_bytes()).ok()?;
            Some((arg.clone(), header))
        })
        .collect()
}

/// The header text of an argument's value: strings as they are, numbers and booleans in
/// their JSON form; `None` for null, objects and arrays (not mirrored).
fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `text` as a header value: plain when it is printable ASCII without surrounding
/// whitespace and cannot be taken for an encoded value, else base64 in the sentinel.
fn encode(text: &str) -> Option<HeaderValue> {
    let plain = text.bytes().all(|b| (0x20..0x7f).contains(&b))
        && !text.starts_with([' ', '\t'])
        && !text.ends_with([' ', '\t'])
        && !text.starts_with("=?base64?");
    if plain {
        HeaderValue::from_str(text).ok()
    } else {
        let b64 = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
        HeaderValue::from_str(&format!("=?base64?{b64}?=")).ok()
    }
}

/// A received header value's text: surrounding whitespace dropped; a value in the sentinel
/// decoded (strict standard base64 with padding, then UTF-8); anything else literal.
fn decode(v: &HeaderValue) -> Result<String, String> {
    let raw = std::str::from_utf8(v.as_bytes())
        .map_err(|_| "is not visible ASCII".to_owned())?
        .trim_matches([' ', '\t']);
    match raw
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    {
        Some(b64) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| format!("is not valid base64 ({e})"))?;
            String::from_utf8(bytes).map_err(|_| "is not UTF-8 once decoded".to_owned())
        }
        None => Ok(raw.to_owned()),
    }
}

/// Adds the headers of `arguments` under `decls` to `hm` (and takes off any the client sent
/// for arguments it did not pass, so a header never stands in for a missing argument).
pub(crate) fn add(hm: &mut HeaderMap, decls: &Declarations, arguments: Option<&Value>) {
    for (arg, header) in decls {
        hm.remove(header);
        if let Some(v) = arguments
            .and_then(|a| a.get(arg))
            .and_then(text_of)
            .and_then(|t| encode(&t))
        {
            hm.insert(header.clone(), v);
        }
    }
}

/// Checks the client's headers against `arguments` under `decls`; the error says which
/// header and why.
pub(crate) fn check(
    headers: &HeaderMap,
    decls: &Declarations,
    arguments: Option<&Value>,
) -> Result<(), String> {
    for (arg, header) in decls {
        let value = arguments.and_then(|a| a.get(arg)).filter(|v| !v.is_null());
        let expected = value.and_then(text_of);
        match (headers.get(header), value, expected) {
            // Absent, null, or an object or array (never mirrored): no header.
            (None, None, _) | (None, Some(_), None) => {}
            (None, Some(_), Some(_)) => {
                return Err(format!(
                    "header {header} is missing for argument {arg:?}, which the tool mirrors"
                ));
            }
            (Some(_), None, _) => {
                return Err(format!("header {header} was sent without argument {arg:?}"));
            }
            (Some(_), Some(_), None) => {
                // An object or array argument is not mirrored: a header for it is wrong.
                return Err(format!(
                    "header {header} was sent for argument {arg:?}, which is not a string, number or boolean"
                ));
            }
            (Some(h), Some(_), Some(want)) => {
                let got = decode(h).map_err(|why| format!("header {header} {why}"))?;
                if got != want {
                    return Err(format!(
                        "header {header} does not match argument {arg:?} of the body"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// A kept tool listing.
#[derive(Debug)]
struct Listing {
    read_at: Instant,
    tools: Arc<HashMap<String, Declarations>>,
}

/// The tools' declarations per scope, read from the upstream when missing or old.
#[derive(Debug, Default)]
pub(crate) struct ToolHeaders {
    listings: Mutex<HashMap<String, Listing>>,
}

impl ToolHeaders {
    /// The declarations of tool `name` in `scope`: from a listing younger than
    /// [`LISTING_TTL`] that has the tool, else from a new listing read with `page` (one
    /// `tools/list` page per call, given the cursor; `None` when it could not be read).
    /// Empty when the tool mirrors nothing, is unknown, or the listing cannot be read.
    pub(crate) async fn of<F, Fut>(&self, scope: &str, name: &str, mut page: F) -> Declarations
    where
        F: FnMut(Option<Value>) -> Fut,
        Fut: Future<Output = Option<Value>>,
    {
        if let Some((tools, age)) = self.kept(scope) {
            match tools.get(name) {
                Some(d) => return d.clone(),
                // An unknown tool re-reads the listing at most every REREAD_AFTER, so calls of
                // tools that do not exist cannot make the proxy list the upstream's tools on
                // each call.
                None if age < REREAD_AFTER => return Vec::new(),
                None => {}
            }
        }
        let mut tools = HashMap::new();
        let mut cursor = None;
        for _ in 0..MAX_PAGES {
            let Some(result) = page(cursor.take()).await else {
                return Vec::new();
            };
            for t in result
                .get("tools")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(n) = t.get("name").and_then(Value::as_str) {
                    tools.insert(n.to_owned(), declared(t));
                }
            }
            cursor = result.get("nextCursor").filter(|c| !c.is_null()).cloned();
            if cursor.is_none() {
                break;
            }
        }
        let found = tools.get(name).cloned().unwrap_or_default();
        if let Ok(mut m) = self.listings.lock() {
            if m.len() >= MAX_SCOPES && !m.contains_key(scope) {
                m.clear();
            }
            m.insert(
                scope.to_owned(),
                Listing {
                    read_at: Instant::now(),
                    tools: Arc::new(tools),
                },
            );
        }
        found
    }

    /// A kept listing younger than [`LISTING_TTL`], and its age.
    fn kept(&self, scope: &str) -> Option<(Arc<HashMap<String, Declarations>>, Duration)> {
        let m = self.listings.lock().ok()?;
        let l = m.get(scope)?;
        let age = l.read_at.elapsed();
        (age < LISTING_TTL).then(|| (Arc::clone(&l.tools), age))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn tool() -> Value {
        json!({"name": "deploy", "inputSchema": {"type": "object", "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "count": {"type": "integer", "x-mcp-header": "Count"},
            "bad": {"type": "string", "x-mcp-header": "Not A Token"},
            "body": {"type": "string"}
        }}})
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap_or_else(|e| panic!("{e}")),
                HeaderValue::from_str(v).unwrap_or_else(|e| panic!("{e}")),
            );
        }
        h
    }

    #[test]
    fn declarations_come_from_the_schema_and_skip_bad_names() {
        let mut d: Vec<_> = declared(&tool())
            .into_iter()
            .map(|(a, h)| (a, h.as_str().to_owned()))
            .collect();
        d.sort();
        assert_eq!(
            d,
            vec![
                ("count".to_owned(), "mcp-param-count".to_owned()),
                ("region".to_owned(), "mcp-param-region".to_owned())
            ]
        );
        assert!(declared(&json!({"name": "x"})).is_empty());
    }

    #[test]
    fn added_headers_are_plain_or_base64_and_none_for_absent_arguments() {
        let d = declared(&tool());
        let mut hm = headers(&[("mcp-param-count", "stale")]);
        add(&mut hm, &d, Some(&json!({"region": "Zürich", "body": "x"})));
        assert_eq!(
            hm.get("mcp-param-region").map(HeaderValue::as_bytes),
            Some(&b"=?base64?WsO8cmljaA==?="[..])
        );
        assert!(
            hm.get("mcp-param-count").is_none(),
            "a header for an absent argument stayed"
        );
        let mut hm = HeaderMap::new();
        add(
            &mut hm,
            &d,
            Some(&json!({"region": "us-west1", "count": 3})),
        );
        assert_eq!(
            hm.get("mcp-param-region").map(HeaderValue::as_bytes),
            Some(&b"us-west1"[..])
        );
        assert_eq!(
            hm.get("mcp-param-count").map(HeaderValue::as_bytes),
            Some(&b"3"[..])
        );
        let mut hm = HeaderMap::new();
        add(&mut hm, &d, Some(&json!({"region": " padded"})));
        assert_eq!(
            hm.get("mcp-param-region").map(HeaderValue::as_bytes),
            Some(&b"=?base64?IHBhZGRlZA==?="[..])
        );
    }

    #[test]
    fn checks_follow_the_2026_rules() {
        let d = declared(&tool());
        let args = json!({"region": "Hello", "count": 0});
        let ok = |h: &[(&str, &str)]| check(&headers(h), &d, Some(&args));
        assert_eq!(
            ok(&[("Mcp-Param-Region", "Hello"), ("mcp-param-count", "0")]),
            Ok(())
        );
        // Whitespace around a value is not part of it; names are case-insensitive.
        assert_eq!(
            ok(&[("MCP-PARAM-REGION", "  Hello "), ("mcp-param-count", "0")]),
            Ok(())
        );
        assert_eq!(
            ok(&[
                ("mcp-param-region", "=?base64?SGVsbG8=?="),
                ("mcp-param-count", "0")
            ]),
            Ok(())
        );
        // Bad padding, bad characters, a different value, a missing header.
        assert!(
            ok(&[
                ("mcp-param-region", "=?base64?SGVsbG8?="),
                ("mcp-param-count", "0")
            ])
            .is_err()
        );
        assert!(
            ok(&[
                ("mcp-param-region", "=?base64?SGVs!!!bG8=?="),
                ("mcp-param-count", "0")
            ])
            .is_err()
        );
        assert!(ok(&[("mcp-param-region", "Bye"), ("mcp-param-count", "0")]).is_err());
        assert!(ok(&[("mcp-param-count", "0")]).is_err());
        // Without the sentinel's both ends a value is literal.
        let b64 = json!({"region": "SGVsbG8=", "count": 0});
        assert_eq!(
            check(
                &headers(&[("mcp-param-region", "SGVsbG8="), ("mcp-param-count", "0")]),
                &d,
                Some(&b64)
            ),
            Ok(())
        );
        let half = json!({"region": "=?base64?SGVsbG8=", "count": 0});
        assert_eq!(
            check(
                &headers(&[
                    ("mcp-param-region", "=?base64?SGVsbG8="),
                    ("mcp-param-count", "0")
                ]),
                &d,
                Some(&half)
            ),
            Ok(())
        );
        // An object argument is not mirrored: no header is right, one is wrong.
        let obj = json!({"region": {"a": 1}});
        assert_eq!(check(&HeaderMap::new(), &d, Some(&obj)), Ok(()));
        assert!(check(&headers(&[("mcp-param-region", "x")]), &d, Some(&obj)).is_err());
        // A header for an argument that is not there.
        assert!(check(&headers(&[("mcp-param-region", "x")]), &d, Some(&json!({}))).is_err());
        // Nothing declared, nothing checked.
        assert_eq!(
            check(&headers(&[("mcp-param-region", "x")]), &Vec::new(), None),
            Ok(())
        );
    }

    #[tokio::test]
    async fn listings_are_kept_and_read_again_for_an_unknown_tool() {
        let th = ToolHeaders::default();
        let reads = std::sync::atomic::AtomicU32::new(0);
        let page = |cursor: Option<Value>| {
            reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            async move {
                Some(match cursor {
                    None => json!({"tools": [tool()], "nextCursor": "2"}),
                    Some(_) => json!({"tools": [{"name": "plain", "inputSchema": {}}]}),
                })
            }
        };
        assert_eq!(th.of("s", "deploy", page).await.len(), 2);
        assert_eq!(
            reads.load(std::sync::atomic::Ordering::Relaxed),
            2,
            "both pages read"
        );
        assert!(th.of("s", "plain", page).await.is_empty());
        assert_eq!(
            reads.load(std::sync::atomic::Ordering::Relaxed),
            2,
            "kept listing used"
        );
        assert!(th.of("s", "new-tool", page).await.is_empty());
        assert_eq!(
            reads.load(std::sync::atomic::Ordering::Relaxed),
            2,
            "an unknown tool right after a listing: not read again"
        );
        // An older listing is read again for an unknown tool.
        if let Ok(mut m) = th.listings.lock()
            && let Some(l) = m.get_mut("s")
            && let Some(earlier) = l.read_at.checked_sub(REREAD_AFTER)
        {
            l.read_at = earlier;
        }
        assert!(th.of("s", "new-tool", page).await.is_empty());
        assert_eq!(
            reads.load(std::sync::atomic::Ordering::Relaxed),
            4,
            "unknown tool: read again"
        );
        assert!(
            th.of("other", "deploy", |_| async { None })
                .await
                .is_empty()
        );
    }
}
