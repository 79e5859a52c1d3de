//! A `redis-server` of a test's own, and Rookery nodes sharing rooms through it
//! (`--engine redis`). `scripts/test.sh` installs Debian's `redis-server` when missing.
//!
//! The server listens on a free loopback port, keeps nothing on disk (`--save ""`,
//! `--appendonly no`, a temporary `--dir`) and is killed when dropped; it can be stopped and
//! started again on the same port to test outages.

use rookery::config::EngineChoice;
use rookery::Config;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct TestRedis {
    child: Option<Child>,
    pub addr: SocketAddr,
    dir: std::path::PathBuf,
    /// Keeps an append-only file in its directory (what it had survives a restart).
    persistent: bool,
    /// More arguments for `redis-server` (a password, TLS).
    extra: Vec<String>,
    /// Speaks TLS only (`--port 0 --tls-port`): what `redis-cli` needs to reach it (the CA
    /// of the server's certificate, a client certificate and key).
    tls: Option<(std::path::PathBuf, Option<[std::path::PathBuf; 2]>)>,
    /// The password `redis-cli` gives (`-a`).
    password: Option<String>,
}

impl TestRedis {
    pub fn start() -> TestRedis {
        TestRedis::start_with(false)
    }

    /// A server that keeps its data across [`TestRedis::stop`] and [`TestRedis::run`]
    /// (`--appendonly yes --appendfsync always` in its temporary directory).
    pub fn start_persistent() -> TestRedis {
        TestRedis::start_with(true)
    }

    fn start_with(persistent: bool) -> TestRedis {
        TestRedis::start_full(persistent, &[], None, None)
    }

    /// A server that wants a password (`requirepass`) for the `default` user.
    pub fn start_with_password(password: &str) -> TestRedis {
        TestRedis::start_full(false, &["--requirepass", password], None, Some(password))
    }

    /// A server that speaks TLS only (`--port 0 --tls-port P`), with the certificate and
    /// key in `cert_pem`/`key_pem` (files), asking clients for no certificate.
    pub fn start_tls(cert_pem: &std::path::Path, key_pem: &std::path::Path) -> TestRedis {
        let (cert, key) = (cert_pem.to_str().unwrap(), key_pem.to_str().unwrap());
        let args = [
            "--tls-cert-file",
            cert,
            "--tls-key-file",
            key,
            "--tls-ca-cert-file",
            cert,
            "--tls-auth-clients",
            "no",
        ];
        TestRedis::start_full(false, &args, Some((cert_pem.to_owned(), None)), None)
    }

    /// As [`TestRedis::start_tls`], but Redis asks every client for a certificate that
    /// chains to `client_ca` (`tls-auth-clients yes`); `redis-cli` shows `client` (cert,
    /// key).
    pub fn start_mutual_tls(
        cert_pem: &std::path::Path,
        key_pem: &std::path::Path,
        client_ca: &std::path::Path,
        client: [std::path::PathBuf; 2],
    ) -> TestRedis {
        let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
        let args = [
            "--tls-cert-file".to_owned(),
            path(cert_pem),
            "--tls-key-file".to_owned(),
            path(key_pem),
            "--tls-ca-cert-file".to_owned(),
            path(client_ca),
            "--tls-auth-clients".to_owned(),
            "yes".to_owned(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let tls = Some((cert_pem.to_owned(), Some(client)));
        TestRedis::start_full(false, &args, tls, None)
    }

    fn start_full(
        persistent: bool,
        extra: &[&str],
        tls: Option<(std::path::PathBuf, Option<[std::path::PathBuf; 2]>)>,
        password: Option<&str>,
    ) -> TestRedis {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = std::env::temp_dir().join(format!("rookery-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let mut redis = TestRedis {
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
            persistent,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            tls,
            password: password.map(str::to_owned),
        };
        redis.run();
        redis
    }

    /// Starts (again) on the same port.
    pub fn run(&mut self) {
        let port = self.addr.port().to_string();
        let ports: Vec<&str> = match self.tls {
            None => vec!["--port", &port],
            Some(_) => vec!["--port", "0", "--tls-port", &port],
        };
        let child = Command::new("redis-server")
            .args(ports)
            .args(["--bind", "127.0.0.1"])
            .args(&self.extra)
            .args(["--save", "", "--appendfsync", "always", "--appendonly"])
            .arg(if self.persistent { "yes" } else { "no" })
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .spawn()
            .expect(
                "redis-server runs (scripts/test.sh installs it: apt-get install redis-server)",
            );
        self.child = Some(child);
        let start = Instant::now();
        while !self.answers() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the server is up: it answers `PING` (or says it wants a password); a TLS
    /// server accepts connections.
    fn answers(&self) -> bool {
        if self.tls.is_some() {
            return TcpStream::connect(self.addr).is_ok();
        }
        let reply = self.command("PING");
        reply == "+PONG\r\n" || reply.starts_with("-NOAUTH")
    }

    /// Runs `redis-cli` against this server (TLS, password as needed); its output,
    /// failing the test if it fails.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut cli = Command::new("redis-cli");
        cli.args(["-h", "127.0.0.1", "-p", &self.addr.port().to_string()]);
        if let Some((ca, client)) = &self.tls {
            cli.arg("--tls").arg("--cacert").arg(ca);
            if let Some([cert, key]) = client {
                cli.arg("--cert").arg(cert).arg("--key").arg(key);
            }
        }
        if let Some(password) = &self.password {
            cli.args(["--no-auth-warning", "-a", password]);
        }
        let out = cli.args(args).output().expect("redis-cli runs");
        assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    /// Kills the server (its data goes with it: nothing is persisted).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): it keeps its connections but answers nothing.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, which: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill").args([which, &pid]).status().unwrap();
        assert!(status.success(), "kill {which} {pid}");
    }

    /// Sends an inline command; returns the raw reply's first read ("" if unreachable).
    pub fn command(&self, line: &str) -> String {
        let Ok(mut s) = TcpStream::connect(self.addr) else {
            return String::new();
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        if s.write_all(format!("{line}\r\n").as_bytes()).is_err() {
            return String::new();
        }
        let mut buf = [0u8; 4096];
        match s.read(&mut buf) {
            Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
            Err(_) => String::new(),
        }
    }

    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts a node on `cores` cores sharing rooms through `redis`; waits until it is ready
/// (its pub/sub link verified), so that a test starts from a working cluster.
pub fn node_with(redis: &TestRedis, cores: usize, tweak: impl FnOnce(&mut Config)) -> SocketAddr {
    let url = redis.url();
    let addr = crate::server_with(cores, |c| {
        c.engine = EngineChoice::Redis;
        c.redis_url = Some(url);
        tweak(c);
    });
    wait_ready(addr, true);
    addr
}

pub fn node(redis: &TestRedis) -> SocketAddr {
    node_with(redis, 1, |_| {})
}

/// Waits until `/readyz` answers 200 (`ready`) or 503 (not), failing after 10 s.
pub fn wait_ready(addr: SocketAddr, ready: bool) -> Duration {
    let start = Instant::now();
    loop {
        let (status, _) = crate::http_get(addr, "/readyz");
        if (status == 200) == ready {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "/readyz stayed {status}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
