//! Telling a plain Redis server apart when the URL asks for TLS. Such a server never answers
//! the TLS handshake (it waits for the end of an inline command that never comes), so the
//! connection would only fail at the connect timeout with no hint. While a TLS connection is
//! still pending after [`PROBE_AFTER`], one plain-text `PING` on a separate connection tells
//! at once: a RESP answer (`+PONG`, `-NOAUTH …`) means the port speaks no TLS.

use std::time::Duration;

use redis::{ConnectionAddr, IntoConnectionInfo as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// How long a TLS connection may take before the probe runs; a TLS server that answers the
/// handshake in time never sees the probe.
pub(crate) const PROBE_AFTER: Duration = Duration::from_millis(250);

/// The host and port a TLS URL (`rediss://…`, a TLS cluster node) connects to; `None` for a
/// URL without TLS or one that does not parse.
pub(crate) fn tls_target(url: &str) -> Option<(String, u16)> {
    let info = url.into_connection_info().ok()?;
    match info.addr() {
        ConnectionAddr::TcpTls { host, port, .. } => Some((host.clone(), *port)),
        _ => None,
    }
}

/// Whether the server at `host:port` answers a plain-text `PING` in RESP within `wait`, i.e.
/// speaks no TLS on that port. False on any doubt: no connection, no answer in time, a closed
/// connection, or bytes that are not RESP (a TLS server sends an alert or hangs up).
pub(crate) async fn answers_plain_text(host: &str, port: u16, wait: Duration) -> bool {
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect((host, port)).await.ok()?;
        stream.write_all(b"PING\r\n").await.ok()?;
        let mut first = [0u8; 1];
        let n = stream.read(&mut first).await.ok()?;
        (n == 1 && matches!(first[0], b'+' | b'-')).then_some(())
    };
    matches!(tokio::time::timeout(wait, probe).await, Ok(Some(())))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn only_tls_urls_have_a_target() {
        assert_eq!(
            tls_target("rediss://:pw@127.0.0.1:6380/0"),
            Some(("127.0.0.1".into(), 6380))
        );
        assert_eq!(tls_target("redis://127.0.0.1:6379"), None);
        assert_eq!(tls_target("not a url"), None);
    }

    #[tokio::test]
    async fn a_plain_resp_answer_is_told_apart_from_silence_and_hang_ups() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            // First connection: a plain Redis answer. Second: hangs up. Third: stays silent.
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 6];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(b"-NOAUTH Authentication required.\r\n")
                .await
                .unwrap();
            let (s2, _) = listener.accept().await.unwrap();
            drop(s2);
            let (s3, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(s3);
        });
        let wait = Duration::from_secs(2);
        assert!(answers_plain_text("127.0.0.1", port, wait).await);
        assert!(!answers_plain_text("127.0.0.1", port, wait).await);
        let started = std::time::Instant::now();
        assert!(!answers_plain_text("127.0.0.1", port, Duration::from_millis(200)).await);
        assert!(started.elapsed() < Duration::from_secs(2));
        server.abort();
    }
}
