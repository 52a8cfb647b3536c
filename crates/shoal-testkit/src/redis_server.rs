//! Spawns real `redis-server` processes on free loopback ports for tests: a standalone server
//! ([`RedisServer`], optionally with TLS via [`TlsCerts`]) and a 6-node cluster
//! ([`RedisCluster`]).
//!
//! Every server runs in its own temporary directory with persistence off
//! (`--save "" --appendonly no`), binds 127.0.0.1 only, allows `DEBUG` from loopback
//! (`--enable-debug-command local`), and is killed (and reaped) when its handle is dropped.
//! Nothing here depends on a server started by hand.
//!
//! ```no_run
//! use shoal_testkit::redis_server::RedisServer;
//!
//! let server = RedisServer::start();
//! println!("connect to {}", server.url());
//! assert_eq!(server.cli(&["PING"]).trim(), "PONG");
//! ```
//!
//! All waits are bounded; a server that does not answer in time fails the test with its log.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// How long a server may take to answer its first `PING`.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a cluster may take to report `cluster_state:ok` on every node.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts to find a free port (another process may take it between probe and bind).
const PORT_ATTEMPTS: usize = 20;

fn missing_binary(name: &str) -> ! {
    panic!(
        "`{name}` is not installed or not on PATH. The Redis tests start their own servers: \
         install them with `apt-get install -y redis-server redis-tools openssl` (Debian), or \
         run ./scripts/test.sh, which installs what is missing."
    )
}

fn check_binary(name: &str) {
    let found = Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        missing_binary(name);
    }
}

/// A port nobody listens on right now (and, with `with_bus`, whose cluster bus port
/// `port + 10000` is free too).
fn free_port(with_bus: bool) -> u16 {
    for _ in 0..1000 {
        let Ok(l) = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)) else {
            continue;
        };
        let Ok(addr) = l.local_addr() else { continue };
        let port = addr.port();
        if !with_bus {
            return port;
        }
        if port > 55_000 {
            continue;
        }
        if TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port + 10_000)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port found")
}

/// A `sh` that kills `pid` once its stdin reaches end-of-file, which happens when this
/// process exits in any way (its end of the pipe closes). A server kept in a `static` — never
/// dropped — therefore still dies with the test binary, even after a panic or abort.
fn watchdog(pid: u32) -> Option<Child> {
    Command::new("sh")
        .arg("-c")
        .arg(format!("read _ignored; kill -9 {pid} 2>/dev/null"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

/// Sends one inline command over plain TCP and returns the raw first reply line, or `None`
/// if nothing answered.
fn raw_command(port: u16, line: &str, timeout: Duration) -> Option<String> {
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    let mut s = TcpStream::connect_timeout(&addr.into(), timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    s.write_all(format!("{line}\r\n").as_bytes()).ok()?;
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).ok()?;
    (n > 0).then(|| String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// TLS material made by the `openssl` command line for one test: a CA and a server
/// certificate for `127.0.0.1`/`localhost` signed by it. Files live in a temporary directory
/// that is removed on drop.
#[derive(Debug)]
pub struct TlsCerts {
    dir: tempfile::TempDir,
}

impl TlsCerts {
    /// Generates a fresh CA and server certificate (RSA 2048, valid one day).
    ///
    /// # Panics
    /// If `openssl` is missing or fails.
    pub fn generate() -> Self {
        check_binary("openssl");
        let dir = tempfile::Builder::new()
            .prefix("shoal-tls-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        let d = dir.path();
        let ext = d.join("san.ext");
        std::fs::write(
            &ext,
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n",
        )
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", ext.display()));
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(d)
                .output()
                .unwrap_or_else(|_| missing_binary("openssl"));
            assert!(
                out.status.success(),
                "openssl {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&["genrsa", "-out", "ca.key", "2048"]);
        run(&[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca.key",
            "-sha256",
            "-days",
            "1",
            "-subj",
            "/CN=shoal-test-ca",
            "-out",
            "ca.crt",
        ]);
        run(&["genrsa", "-out", "server.key", "2048"]);
        run(&[
            "req",
            "-new",
            "-key",
            "server.key",
            "-subj",
            "/CN=localhost",
            "-out",
            "server.csr",
        ]);
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-sha256",
            "-extfile",
            "san.ext",
            "-out",
            "server.crt",
        ]);
        TlsCerts { dir }
    }

    /// The CA certificate (PEM) clients must trust.
    pub fn ca_cert_path(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// The server certificate (PEM).
    pub fn server_cert_path(&self) -> PathBuf {
        self.dir.path().join("server.crt")
    }

    /// The server's private key (PEM).
    pub fn server_key_path(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }

    /// The CA certificate's PEM bytes.
    pub fn ca_cert_pem(&self) -> Vec<u8> {
        std::fs::read(self.ca_cert_path())
            .unwrap_or_else(|e| panic!("cannot read the CA certificate: {e}"))
    }
}

/// Options for [`RedisServer`]: extra `redis-server` arguments and TLS.
#[derive(Debug, Default)]
pub struct RedisServerBuilder {
    args: Vec<String>,
    tls: bool,
    cluster: bool,
    sentinel_conf: Option<String>,
}

impl RedisServerBuilder {
    /// Adds one `redis-server` command-line argument (e.g. `--requirepass`, then the password).
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds several arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Also serves TLS on a second port, with certificates generated for this server
    /// (see [`RedisServer::tls_url`] and [`RedisServer::tls_certs`]). The plain port stays
    /// open for set-up and inspection.
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Runs the server in cluster mode (used by [`RedisCluster`]); the bus port is
    /// `port + 10000`.
    pub fn cluster_node(mut self) -> Self {
        self.cluster = true;
        self
    }

    /// Runs a Sentinel (`redis-server sentinel.conf --sentinel`) with `conf` as the initial
    /// content of its (rewritable) configuration file. Used by [`RedisSentinel`].
    pub fn sentinel(mut self, conf: impl Into<String>) -> Self {
        self.sentinel_conf = Some(conf.into());
        self
    }

    /// Starts the server and waits until it answers `PING`.
    ///
    /// # Panics
    /// If `redis-server` is not installed, or the server does not come up in time.
    pub fn start(self) -> RedisServer {
        check_binary("redis-server");
        let tls = self.tls.then(TlsCerts::generate);
        let dir = tempfile::Builder::new()
            .prefix("shoal-redis-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        self.start_in(dir, tls)
    }

    fn start_in(self, dir: tempfile::TempDir, tls: Option<TlsCerts>) -> RedisServer {
        let mut server = RedisServer {
            child: None,
            watchdog: None,
            port: 0,
            tls_port: None,
            tls,
            dir,
            args: self.args,
            cluster: self.cluster,
            sentinel: false,
        };
        if let Some(conf) = &self.sentinel_conf {
            let path = server.dir.path().join("sentinel.conf");
            std::fs::write(&path, conf)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
            server.sentinel = true;
        }
        let mut last_log = String::new();
        for _ in 0..PORT_ATTEMPTS {
            server.port = free_port(server.cluster);
            server.tls_port = server.tls.as_ref().map(|_| free_port(false));
            match server.spawn() {
                Ok(()) => return server,
                Err(log) => last_log = log,
            }
        }
        panic!("redis-server did not start after {PORT_ATTEMPTS} attempts; last log:\n{last_log}")
    }
}

/// A `redis-server` child process on a free 127.0.0.1 port, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    /// Kills `child` if this process dies without dropping the handle.
    watchdog: Option<Child>,
    port: u16,
    tls_port: Option<u16>,
    tls: Option<TlsCerts>,
    dir: tempfile::TempDir,
    args: Vec<String>,
    cluster: bool,
    sentinel: bool,
}

impl RedisServer {
    /// Starts a plain standalone server and waits until it answers `PING`.
    ///
    /// # Panics
    /// If `redis-server` is not installed, or the server does not come up in time.
    pub fn start() -> Self {
        RedisServer::builder().start()
    }

    /// Options: extra arguments, TLS.
    pub fn builder() -> RedisServerBuilder {
        RedisServerBuilder::default()
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `redis://<user>:<password>@127.0.0.1:<port>`.
    pub fn url_with_user(&self, user: &str, password: &str) -> String {
        format!("redis://{user}:{password}@127.0.0.1:{}", self.port)
    }

    /// The plain TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TLS port, if the server was built with [`RedisServerBuilder::tls`].
    pub fn tls_port(&self) -> Option<u16> {
        self.tls_port
    }

    /// `rediss://127.0.0.1:<tls port>` (the certificate names `127.0.0.1` and `localhost`),
    /// if the server serves TLS.
    pub fn tls_url(&self) -> Option<String> {
        self.tls_port.map(|p| format!("rediss://127.0.0.1:{p}"))
    }

    /// The generated certificates, if the server serves TLS.
    pub fn tls_certs(&self) -> Option<&TlsCerts> {
        self.tls.as_ref()
    }

    /// The process id (for `SIGSTOP`/`SIGCONT` fault tests), while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The server's working directory (holds its log and, for cluster nodes, `nodes.conf`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kills the server (SIGKILL) and waits for it to exit. Data is lost (no persistence).
    pub fn stop(&mut self) {
        // The watchdog first, so it can never signal a reused pid.
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server and starts it again on the same port(s) with the same arguments.
    ///
    /// # Panics
    /// If the server does not come back in time (e.g. the port was taken meanwhile).
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(log) if Instant::now() >= deadline => {
                    panic!("redis-server did not restart on port {}: {log}", self.port)
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Runs `redis-cli -p <port> <args…>` against the plain port and returns its stdout
    /// (`redis-cli` prints errors on stdout too).
    ///
    /// # Panics
    /// If `redis-cli` is not installed.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .arg("-h")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(self.port.to_string())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|_| missing_binary("redis-cli"));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Spawns the process and waits for `PING`; on failure returns the log tail.
    fn spawn(&mut self) -> Result<(), String> {
        let mut cmd = Command::new("redis-server");
        if self.sentinel {
            cmd.arg(self.dir.path().join("sentinel.conf"))
                .arg("--sentinel");
        }
        cmd.arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--protected-mode", "no"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--enable-debug-command", "local"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.log_path());
        if let (Some(tls), Some(tls_port)) = (&self.tls, self.tls_port) {
            cmd.arg("--tls-port")
                .arg(tls_port.to_string())
                .arg("--tls-cert-file")
                .arg(tls.server_cert_path())
                .arg("--tls-key-file")
                .arg(tls.server_key_path())
                .arg("--tls-ca-cert-file")
                .arg(tls.ca_cert_path())
                .args(["--tls-auth-clients", "no"]);
        }
        if self.cluster {
            cmd.args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "1000",
                "--repl-diskless-sync-delay",
                "0",
            ]);
        }
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                missing_binary("redis-server")
            }
            format!("cannot spawn redis-server: {e}")
        })?;
        self.watchdog = watchdog(child.id());
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if !self.is_running() {
                self.stop();
                return Err(format!(
                    "redis-server on port {} exited early:\n{}",
                    self.port,
                    self.log_tail()
                ));
            }
            // Any RESP reply (PONG, or NOAUTH when a password is required) means it is up.
            if let Some(reply) = raw_command(self.port, "PING", Duration::from_millis(500))
                && (reply.starts_with('+') || reply.starts_with('-'))
                && !reply.starts_with("-LOADING")
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let log = self.log_tail();
                self.stop();
                return Err(format!(
                    "redis-server on port {} did not answer PING within {START_TIMEOUT:?}:\n{log}",
                    self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A 6-node Redis Cluster (3 masters, 3 replicas) on free loopback ports, created with
/// `redis-cli --cluster create … --cluster-replicas 1 --cluster-yes`, node timeout 1000 ms.
/// Every node is killed on drop.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts six nodes, creates the cluster and waits (bounded) until every node reports
    /// `cluster_state:ok` and knows all three masters.
    ///
    /// # Panics
    /// If `redis-server`/`redis-cli` are missing or the cluster does not form in time.
    pub fn start() -> Self {
        check_binary("redis-cli");
        let nodes: Vec<RedisServer> = (0..6)
            .map(|_| RedisServer::builder().cluster_node().start())
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|_| missing_binary("redis-cli"));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("[OK] All 16384 slots covered"),
            "redis-cli --cluster create failed:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = RedisCluster { nodes };
        cluster.wait_ok();
        cluster
    }

    fn wait_ok(&self) {
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        loop {
            let ready = self.nodes.iter().all(|n| {
                let info = n.cli(&["CLUSTER", "INFO"]);
                info.contains("cluster_state:ok") && info.contains("cluster_size:3")
            });
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not reach cluster_state:ok within {CLUSTER_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The nodes (masters and replicas, in creation order).
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// Mutable access to the nodes (to stop or restart one).
    pub fn nodes_mut(&mut self) -> &mut [RedisServer] {
        &mut self.nodes
    }

    /// `redis+cluster://127.0.0.1:p1,127.0.0.1:p2,…` listing every node.
    pub fn url(&self) -> String {
        let list: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        format!("redis+cluster://{}", list.join(","))
    }

    /// `redis://127.0.0.1:<port>` of every node.
    pub fn node_urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// Runs `redis-cli -c` (cluster mode, follows redirects) against the first node.
    pub fn cli(&self, args: &[&str]) -> String {
        let Some(first) = self.nodes.first() else {
            return String::new();
        };
        let out = Command::new("redis-cli")
            .arg("-c")
            .arg("-h")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(first.port().to_string())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|_| missing_binary("redis-cli"));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// A master, one replica and three Sentinels (quorum 2, `down-after-milliseconds` 1000,
/// `failover-timeout` 5000) watching it under the name [`RedisSentinel::MASTER_NAME`]. Every
/// process is killed on drop.
#[derive(Debug)]
pub struct RedisSentinel {
    master: RedisServer,
    replica: RedisServer,
    sentinels: Vec<RedisServer>,
}

impl RedisSentinel {
    /// The master name the Sentinels monitor.
    pub const MASTER_NAME: &'static str = "mymaster";

    /// Starts everything and waits (bounded) until the replica is in sync and every Sentinel
    /// knows the master, the replica and the other Sentinels.
    ///
    /// # Panics
    /// If the servers are missing or the set-up does not settle in time.
    pub fn start() -> Self {
        let master = RedisServer::start();
        let replica = RedisServer::builder()
            .args(["--replicaof", "127.0.0.1"])
            .arg(master.port().to_string())
            .start();
        let conf = format!(
            "sentinel monitor {name} 127.0.0.1 {port} 2\n\
             sentinel down-after-milliseconds {name} 1000\n\
             sentinel failover-timeout {name} 5000\n\
             sentinel parallel-syncs {name} 1\n",
            name = Self::MASTER_NAME,
            port = master.port()
        );
        let sentinels = (0..3)
            .map(|_| RedisServer::builder().sentinel(conf.clone()).start())
            .collect();
        let s = RedisSentinel {
            master,
            replica,
            sentinels,
        };
        s.wait_ready();
        s
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        loop {
            let synced = self
                .replica
                .cli(&["INFO", "replication"])
                .contains("master_link_status:up");
            let known = self.sentinels.iter().all(|s| {
                let info = s.cli(&["INFO", "sentinel"]);
                info.contains("status=ok")
                    && info.contains("slaves=1")
                    && info.contains("sentinels=3")
            });
            if synced && known {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the sentinels did not settle within {CLUSTER_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `redis+sentinel://127.0.0.1:s1,127.0.0.1:s2,127.0.0.1:s3/mymaster`.
    pub fn url(&self) -> String {
        let list: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port()))
            .collect();
        format!("redis+sentinel://{}/{}", list.join(","), Self::MASTER_NAME)
    }

    /// The server that was master at start.
    pub fn master(&self) -> &RedisServer {
        &self.master
    }

    /// Mutable access to the first master (to stop it and force a failover).
    pub fn master_mut(&mut self) -> &mut RedisServer {
        &mut self.master
    }

    /// The server that was the replica at start.
    pub fn replica(&self) -> &RedisServer {
        &self.replica
    }

    /// The Sentinels.
    pub fn sentinels(&self) -> &[RedisServer] {
        &self.sentinels
    }

    /// The master port the first answering Sentinel reports now.
    pub fn current_master_port(&self) -> Option<u16> {
        self.sentinels.iter().find_map(|s| {
            let out = s.cli(&["SENTINEL", "get-master-addr-by-name", Self::MASTER_NAME]);
            out.lines().nth(1)?.trim().parse().ok()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_answers_restarts_and_stops() {
        let mut server = RedisServer::start();
        assert_eq!(server.cli(&["PING"]).trim(), "PONG");
        assert_eq!(server.url(), format!("redis://127.0.0.1:{}", server.port()));
        server.cli(&["SET", "k", "v"]);
        let port = server.port();
        server.restart();
        assert_eq!(server.port(), port);
        assert_eq!(server.cli(&["PING"]).trim(), "PONG");
        // No persistence: the restart lost the key.
        assert_eq!(server.cli(&["EXISTS", "k"]).trim(), "0");
        let pid = server.pid();
        assert!(pid.is_some());
        drop(server);
        assert!(raw_command(port, "PING", Duration::from_millis(200)).is_none());
    }

    #[test]
    fn extra_args_reach_the_server() {
        let server = RedisServer::builder()
            .args(["--requirepass", "sekrit"])
            .start();
        assert!(server.cli(&["PING"]).contains("NOAUTH"));
        assert_eq!(
            server
                .cli(&["-a", "sekrit", "--no-auth-warning", "PING"])
                .trim(),
            "PONG"
        );
    }

    #[test]
    fn tls_port_serves_with_the_generated_ca() {
        let server = RedisServer::builder().tls().start();
        let certs = server.tls_certs().expect("tls certs");
        let tls_port = server.tls_port().expect("tls port");
        let out = Command::new("redis-cli")
            .args(["--tls", "--cacert"])
            .arg(certs.ca_cert_path())
            .args(["-h", "127.0.0.1", "-p", &tls_port.to_string(), "PING"])
            .output()
            .expect("redis-cli");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "PONG");
        assert!(
            server
                .tls_url()
                .expect("url")
                .starts_with("rediss://127.0.0.1:")
        );
    }

    #[test]
    fn sentinels_watch_the_master() {
        let s = RedisSentinel::start();
        assert_eq!(s.current_master_port(), Some(s.master().port()));
        assert!(s.url().ends_with("/mymaster"));
    }

    #[test]
    fn cluster_forms_with_three_masters() {
        let cluster = RedisCluster::start();
        assert_eq!(cluster.nodes().len(), 6);
        let info = cluster.nodes()[0].cli(&["CLUSTER", "INFO"]);
        assert!(info.contains("cluster_state:ok"), "{info}");
        cluster.cli(&["SET", "{x}a", "1"]);
        assert_eq!(cluster.cli(&["GET", "{x}a"]).trim(), "1");
        assert!(cluster.url().starts_with("redis+cluster://127.0.0.1:"));
    }
}
