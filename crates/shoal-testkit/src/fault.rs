//! Fault injection for tests: a userspace TCP proxy ([`FaultProxy`]) that sits between a
//! client and a server on loopback and can add latency, black-hole traffic, reset
//! connections and cut a reply mid-way; and helpers for server-side faults on a
//! [`RedisServer`]: `SIGSTOP`/`SIGCONT` ([`freeze`]), kill and restart on the same port
//! ([`kill_and_restart_after`]), `CLIENT PAUSE` ([`client_pause`]) and `CLIENT KILL`
//! ([`client_kill_all`]).
//!
//! ```no_run
//! use std::time::Duration;
//! use shoal_testkit::{fault::{Fault, FaultProxy}, redis_server::RedisServer};
//!
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! let server = RedisServer::start();
//! let proxy = FaultProxy::start(server.port()).await;
//! // Connect the client to proxy.redis_url() instead of server.url() ...
//! proxy.set(Fault::Latency(Duration::from_millis(50)));
//! proxy.set(Fault::Blackhole);   // nothing passes; held bytes flow again on heal
//! proxy.set(Fault::CutReplies);  // every reply chunk: half of it, then a reset
//! proxy.reset_all();             // every open connection is reset now
//! proxy.heal();
//! # });
//! ```
//!
//! Everything binds 127.0.0.1 only. Every wait is bounded by the caller's workload; the
//! proxy never blocks a test on its own.

use std::{
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        TcpListener, TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::watch,
    task::JoinHandle,
};

use crate::redis_server::RedisServer;

/// What the proxy does to traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Forwards everything at once.
    None,
    /// Holds every chunk (either way) this long before forwarding it.
    Latency(Duration),
    /// Forwards nothing either way and reads nothing (bytes wait in the kernel buffers), but
    /// accepts new connections. On [`FaultProxy::heal`] the held bytes flow again in order, as
    /// after a network partition that healed before TCP gave up.
    Blackhole,
    /// Resets every open connection now and every new one as soon as it is accepted.
    Reset,
    /// Forwards half of the next server → client chunk of each connection, then resets the
    /// connection: the client sees a reply cut mid-way (the server has executed the request).
    CutReplies,
}

/// Counters of what the proxy did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProxyStats {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections reset (by [`Fault::Reset`] or [`FaultProxy::reset_all`]).
    pub resets: u64,
    /// Replies cut mid-way.
    pub cuts: u64,
    /// Bytes forwarded client → server.
    pub bytes_up: u64,
    /// Bytes forwarded server → client.
    pub bytes_down: u64,
}

#[derive(Clone, Copy, Debug)]
struct State {
    fault: Fault,
    /// Bumped by `reset_all` and when `Fault::Reset` is set: connections opened under an
    /// older generation reset themselves.
    generation: u64,
    closed: bool,
}

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    resets: AtomicU64,
    cuts: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
}

/// A fault-injecting TCP proxy on `127.0.0.1:<free port>` in front of `127.0.0.1:<upstream>`.
/// Stops (and resets its connections) when dropped. Needs a Tokio runtime.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    state: watch::Sender<State>,
    counters: Arc<Counters>,
    accept: JoinHandle<()>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exit {
    Eof,
    Reset,
    Cut,
    Closed,
}

impl FaultProxy {
    /// Starts a proxy to `127.0.0.1:upstream_port`.
    ///
    /// # Panics
    /// If no loopback port can be bound.
    pub async fn start(upstream_port: u16) -> Self {
        let upstream = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, upstream_port));
        let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap_or_else(|e| panic!("fault proxy: cannot bind a loopback port: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("fault proxy: no local address: {e}"));
        let (state, _) = watch::channel(State {
            fault: Fault::None,
            generation: 0,
            closed: false,
        });
        let counters = Arc::new(Counters::default());
        let rx = state.subscribe();
        let c = Arc::clone(&counters);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                c.accepted.fetch_add(1, Ordering::Relaxed);
                let _ = client.set_nodelay(true);
                tokio::spawn(serve(client, upstream, rx.clone(), Arc::clone(&c)));
            }
        });
        FaultProxy {
            addr,
            state,
            counters,
            accept,
        }
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `redis://127.0.0.1:<proxy port>`.
    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.addr.port())
    }

    /// Applies `fault` from now on (to open and new connections).
    pub fn set(&self, fault: Fault) {
        self.state.send_modify(|s| {
            s.fault = fault;
            if fault == Fault::Reset {
                s.generation += 1;
            }
        });
    }

    /// The fault in force.
    pub fn fault(&self) -> Fault {
        self.state.borrow().fault
    }

    /// Back to [`Fault::None`]: held bytes flow, new connections are served normally.
    pub fn heal(&self) {
        self.set(Fault::None);
    }

    /// Resets every connection open now (new ones are served as the current fault says).
    pub fn reset_all(&self) {
        self.state.send_modify(|s| s.generation += 1);
    }

    /// What the proxy has done so far.
    pub fn stats(&self) -> ProxyStats {
        let c = &self.counters;
        ProxyStats {
            accepted: c.accepted.load(Ordering::Relaxed),
            resets: c.resets.load(Ordering::Relaxed),
            cuts: c.cuts.load(Ordering::Relaxed),
            bytes_up: c.bytes_up.load(Ordering::Relaxed),
            bytes_down: c.bytes_down.load(Ordering::Relaxed),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.state.send_modify(|s| s.closed = true);
    }
}

async fn serve(
    client: TcpStream,
    upstream: SocketAddr,
    mut rx: watch::Receiver<State>,
    c: Arc<Counters>,
) {
    let start = *rx.borrow_and_update();
    if start.fault == Fault::Reset || start.closed {
        let _ = client.set_zero_linger();
        c.resets.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        let _ = client.set_zero_linger();
        return;
    };
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let generation = start.generation;
    let counted = Arc::new(AtomicBool::new(false));
    let up = pump(cr, sw, false, generation, rx.clone(), &c, &counted);
    let down = pump(sr, cw, true, generation, rx, &c, &counted);
    tokio::pin!(up, down);
    let mut up_done = false;
    let mut down_done = false;
    loop {
        tokio::select! {
            exit = &mut up, if !up_done => {
                up_done = true;
                if exit != Exit::Eof || down_done { break; }
            }
            exit = &mut down, if !down_done => {
                down_done = true;
                if exit != Exit::Eof || up_done { break; }
            }
        }
    }
    // Dropping the pumps closes both sockets; a pump that stopped for a fault has set
    // SO_LINGER 0 on both (through its two halves), so the close is a reset.
}

/// Copies `from` → `to`, applying the fault in force to each chunk, until EOF, a reset (a
/// newer generation, `Fault::Reset`), a cut, or the proxy closing. On any exit but EOF it
/// sets `SO_LINGER` 0 on both sockets it touches (they are the two sockets of the
/// connection), so that closing them sends RST.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    down: bool,
    generation: u64,
    mut rx: watch::Receiver<State>,
    c: &Counters,
    counted: &AtomicBool,
) -> Exit {
    let mut buf = vec![0u8; 16 * 1024];
    let exit = loop {
        // Black hole: stop reading, so bytes wait in the kernel buffers, in order.
        if let Some(e) = wait_flowing(&mut rx, generation).await {
            break e;
        }
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => break Exit::Eof,
                Ok(n) => n,
            },
            e = killed(&mut rx, generation) => break e,
        };
        // A chunk read just before a black hole waits for the heal too.
        if let Some(e) = wait_flowing(&mut rx, generation).await {
            break e;
        }
        let fault = rx.borrow().fault;
        match fault {
            Fault::Latency(d) => tokio::time::sleep(d).await,
            Fault::CutReplies if down => {
                let half = n / 2;
                if half > 0 && to.write_all(&buf[..half]).await.is_ok() {
                    let _ = to.flush().await;
                    c.bytes_down.fetch_add(half as u64, Ordering::Relaxed);
                }
                // Let the half reply leave before the reset discards the send buffer.
                tokio::time::sleep(Duration::from_millis(5)).await;
                break Exit::Cut;
            }
            Fault::Reset => break Exit::Reset,
            _ => {}
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break Exit::Eof;
        }
        let counter = if down { &c.bytes_down } else { &c.bytes_up };
        counter.fetch_add(n as u64, Ordering::Relaxed);
    };
    if exit != Exit::Eof && !counted.swap(true, Ordering::Relaxed) {
        // Counted before the close, so a test that saw the reset sees the count.
        let counter = if exit == Exit::Cut {
            &c.cuts
        } else {
            &c.resets
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
    if exit == Exit::Eof {
        let _ = to.shutdown().await;
    } else {
        let _ = to.as_ref().set_zero_linger();
        let _ = from.as_ref().set_zero_linger();
    }
    exit
}

/// The reason to stop, if the state says so now.
fn stop_reason(s: &State, generation: u64) -> Option<Exit> {
    if s.closed {
        Some(Exit::Closed)
    } else if s.generation != generation {
        Some(Exit::Reset)
    } else {
        None
    }
}

/// Resolves when the connection must be reset or the proxy closes.
async fn killed(rx: &mut watch::Receiver<State>, generation: u64) -> Exit {
    loop {
        if let Some(e) = stop_reason(&rx.borrow_and_update(), generation) {
            return e;
        }
        if rx.changed().await.is_err() {
            return Exit::Closed;
        }
    }
}

/// Waits while the fault is a black hole. `Some` when the connection must stop instead.
async fn wait_flowing(rx: &mut watch::Receiver<State>, generation: u64) -> Option<Exit> {
    loop {
        let s = *rx.borrow_and_update();
        if let Some(e) = stop_reason(&s, generation) {
            return Some(e);
        }
        if s.fault != Fault::Blackhole {
            return None;
        }
        if rx.changed().await.is_err() {
            return Some(Exit::Closed);
        }
    }
}

// ----------------------------------------------------------------------------------------
// Process and server faults
// ----------------------------------------------------------------------------------------

fn signal(pid: u32, sig: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Sends `SIGSTOP` to `pid` (via `kill -STOP`). Returns whether the signal was delivered.
pub fn sigstop(pid: u32) -> bool {
    signal(pid, "STOP")
}

/// Sends `SIGCONT` to `pid`. Returns whether the signal was delivered.
pub fn sigcont(pid: u32) -> bool {
    signal(pid, "CONT")
}

/// A server stopped with `SIGSTOP`; it continues (`SIGCONT`) when this is dropped or
/// [`Frozen::thaw`] is called, also when a test panics.
#[derive(Debug)]
pub struct Frozen {
    pid: Option<u32>,
}

impl Frozen {
    /// Continues the server now.
    pub fn thaw(mut self) {
        self.cont();
    }

    fn cont(&mut self) {
        if let Some(pid) = self.pid.take() {
            sigcont(pid);
        }
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        self.cont();
    }
}

/// Stops `server` with `SIGSTOP`: it keeps its connections but answers nothing, like a
/// process stuck in a long pause.
///
/// # Panics
/// If the server is not running or the signal cannot be sent.
pub fn freeze(server: &RedisServer) -> Frozen {
    let pid = server
        .pid()
        .unwrap_or_else(|| panic!("freeze: the server is not running"));
    assert!(sigstop(pid), "freeze: kill -STOP {pid} failed");
    Frozen { pid: Some(pid) }
}

/// Kills `server` with `SIGKILL`, waits `downtime`, and starts it again on the same port with
/// the same arguments and directory (start it with `--appendonly yes` to keep its data).
/// Blocks the calling thread; from async code run it with `spawn_blocking`.
///
/// # Panics
/// If the server does not come back in time.
pub fn kill_and_restart_after(server: &mut RedisServer, downtime: Duration) {
    server.stop();
    std::thread::sleep(downtime);
    server.restart();
}

/// `CLIENT PAUSE <ms> [WRITE]`: the server holds every client's commands (with `write_only`,
/// only writes — and any command queued behind a held one on the same connection) for
/// `duration`. Returns the server's reply (`OK`).
pub fn client_pause(server: &RedisServer, duration: Duration, write_only: bool) -> String {
    let ms = duration.as_millis().to_string();
    let mut args = vec!["CLIENT", "PAUSE", ms.as_str()];
    if write_only {
        args.push("WRITE");
    }
    server.cli(&args).trim().to_owned()
}

/// `CLIENT UNPAUSE`.
pub fn client_unpause(server: &RedisServer) -> String {
    server.cli(&["CLIENT", "UNPAUSE"]).trim().to_owned()
}

/// `CLIENT KILL TYPE normal`: closes every normal client connection (not the one asking).
/// Returns how many were closed.
pub fn client_kill_all(server: &RedisServer) -> u64 {
    server
        .cli(&["CLIENT", "KILL", "TYPE", "normal"])
        .trim()
        .parse()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// An echo server on loopback; returns its port.
    async fn echo() -> u16 {
        let l = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        let port = l.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        port
    }

    async fn roundtrip(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
        s.write_all(msg).await?;
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while got.len() < msg.len() {
            let n = s.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        Ok(got)
    }

    const BOUND: Duration = Duration::from_secs(10);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn forwards_delays_and_holds_then_releases_in_order() {
        let proxy = FaultProxy::start(echo().await).await;
        let mut s = TcpStream::connect(proxy.addr()).await.expect("connect");
        assert_eq!(roundtrip(&mut s, b"hello").await.expect("io"), b"hello");

        proxy.set(Fault::Latency(Duration::from_millis(20)));
        let t = Instant::now();
        assert_eq!(roundtrip(&mut s, b"slow").await.expect("io"), b"slow");
        assert!(t.elapsed() >= Duration::from_millis(20), "latency applies");

        proxy.set(Fault::Blackhole);
        s.write_all(b"held").await.expect("write");
        let mut buf = [0u8; 16];
        let r = tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await;
        assert!(r.is_err(), "nothing passes a black hole");
        proxy.heal();
        let n = tokio::time::timeout(BOUND, s.read(&mut buf))
            .await
            .expect("released")
            .expect("io");
        assert_eq!(&buf[..n], b"held");
        assert!(proxy.stats().bytes_up >= 13);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn resets_and_cuts_replies() {
        let proxy = FaultProxy::start(echo().await).await;
        let mut s = TcpStream::connect(proxy.addr()).await.expect("connect");
        assert_eq!(roundtrip(&mut s, b"x").await.expect("io"), b"x");
        proxy.reset_all();
        let mut buf = [0u8; 16];
        let r = tokio::time::timeout(BOUND, s.read(&mut buf))
            .await
            .expect("bounded");
        assert!(matches!(r, Ok(0) | Err(_)), "reset: {r:?}");
        assert_eq!(proxy.stats().resets, 1, "{:?} {r:?}", proxy.stats());

        proxy.set(Fault::CutReplies);
        let mut s = TcpStream::connect(proxy.addr()).await.expect("connect");
        s.write_all(b"0123456789").await.expect("write");
        let mut got = Vec::new();
        loop {
            match tokio::time::timeout(BOUND, s.read(&mut buf))
                .await
                .expect("bounded")
            {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        assert!(got.len() < 10, "reply cut mid-way: {got:?}");
        assert!(b"0123456789".starts_with(&got));
        assert_eq!(proxy.stats().cuts, 1);

        proxy.set(Fault::Reset);
        // The reset may even reach the client before its connect returns.
        if let Ok(mut s) = TcpStream::connect(proxy.addr()).await {
            let _ = s.write_all(b"y").await;
            let r = tokio::time::timeout(BOUND, s.read(&mut buf))
                .await
                .expect("bounded");
            assert!(matches!(r, Ok(0) | Err(_)), "new connections reset: {r:?}");
        }
        proxy.heal();
        let mut s = TcpStream::connect(proxy.addr()).await.expect("connect");
        assert_eq!(roundtrip(&mut s, b"ok").await.expect("io"), b"ok");
    }

    #[test]
    fn server_faults() {
        let mut server = RedisServer::builder()
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .start();
        server.cli(&["SET", "k", "v"]);
        {
            let _frozen = freeze(&server);
            // A stopped server accepts nothing in time.
            let out = Command::new("redis-cli")
                .args(["-p", &server.port().to_string(), "-t", "1", "PING"])
                .output()
                .expect("redis-cli");
            assert!(!String::from_utf8_lossy(&out.stdout).contains("PONG"));
        }
        assert_eq!(server.cli(&["PING"]).trim(), "PONG", "thawed on drop");
        assert_eq!(client_pause(&server, Duration::from_millis(50), true), "OK");
        assert_eq!(client_unpause(&server), "OK");
        assert_eq!(client_kill_all(&server), 0, "no other clients");
        let port = server.port();
        kill_and_restart_after(&mut server, Duration::from_millis(100));
        assert_eq!(server.port(), port);
        assert_eq!(
            server.cli(&["GET", "k"]).trim(),
            "v",
            "the AOF kept the key"
        );
    }
}
