//! A `redis-server` of a test's own, and Rookery nodes sharing rooms through it
//! (`--engine redis`). `scripts/test.sh` installs Debian's `redis-server` when missing.
//!
//! The server listens on a free loopback port, keeps nothing on disk (`--save ""`,
//! `--appendonly no`, a temporary `--dir`) and is killed when dropped; it can be stopped and
//! started again on the same port to test outages.

use crate::{eventually, until};
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
        let (within, every) = (Duration::from_secs(10), Duration::from_millis(20));
        until(within, every, "redis-server did not start", || {
            self.answers()
        });
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

    /// Waits until the inline command `line` answers `reply` (raw, e.g. `":3\r\n"`),
    /// failing after 10 s with `what`.
    pub fn wait_for(&self, line: &str, reply: &str, what: &str) {
        let (within, every) = (Duration::from_secs(10), Duration::from_millis(10));
        until(within, every, what, || self.command(line) == reply);
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
    eventually(Duration::from_secs(10), Duration::from_millis(10), || {
        let (status, _) = crate::http_get(addr, "/readyz");
        match (status == 200) == ready {
            true => Ok(start.elapsed()),
            false => Err(format!("/readyz stayed {status}")),
        }
    })
}

/// A Redis Cluster of three masters (no replicas) on loopback ports, each in a temporary
/// directory with no persistence, killed when dropped. A cluster node also listens on its
/// port + 10000 (the cluster bus), so port 0 cannot be used: free pairs are probed.
pub struct TestCluster {
    children: Vec<Option<Child>>,
    pub ports: Vec<u16>,
    dir: tempfile::TempDir,
}

/// A loopback port free now whose cluster bus port (+10000) is free too.
fn free_cluster_port(taken: &[u16]) -> u16 {
    for _ in 0..200 {
        let Ok(listener) = TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let port = listener.local_addr().unwrap().port();
        if port > 55_000 || taken.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
    panic!("no free pair of loopback ports for a cluster node");
}

impl TestCluster {
    pub fn start() -> TestCluster {
        TestCluster::start_with(0)
    }

    /// Three masters with `replicas` replicas each (`ports[0..3]` are the masters).
    pub fn start_with(replicas: usize) -> TestCluster {
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut ports = Vec::new();
        for _ in 0..3 * (1 + replicas) {
            ports.push(free_cluster_port(&ports));
        }
        let mut cluster = TestCluster {
            children: ports.iter().map(|_| None).collect(),
            ports,
            dir,
        };
        for i in 0..cluster.ports.len() {
            cluster.run(i);
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for port in &cluster.ports {
            create.arg(format!("127.0.0.1:{port}"));
        }
        let out = create
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli runs");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        // Every master knows every slot's owner.
        for &port in &cluster.ports {
            eventually(Duration::from_secs(20), Duration::from_millis(50), || {
                let info = cluster.cli(port, &["CLUSTER", "INFO"]);
                match info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384") {
                    true => Ok(()),
                    false => Err(format!("the cluster did not settle: {info}")),
                }
            });
        }
        cluster
    }

    /// The replica of master `master` (an index into `ports`), once it is in sync.
    pub fn replica_of(&self, master: usize) -> usize {
        let port = self.ports[master];
        let id = self.cli(port, &["CLUSTER", "MYID"]);
        eventually(Duration::from_secs(20), Duration::from_millis(50), || {
            let replicas = self.cli(port, &["CLUSTER", "REPLICAS", &id]);
            // `<id> <ip>:<port>@<bus> slave <master id> …`
            let found = replicas.lines().find_map(|line| {
                let addr = line.split_whitespace().nth(1)?;
                let port: u16 = addr.split(['@', ':']).nth(1)?.parse().ok()?;
                self.ports.iter().position(|&p| p == port)
            });
            if let Some(replica) = found {
                let info = self.cli(self.ports[replica], &["INFO", "replication"]);
                if info.contains("master_link_status:up") {
                    return Ok(replica);
                }
            }
            Err(format!(
                "master {master} has no replica in sync: {replicas}"
            ))
        })
    }

    /// Makes replica `replica` take over its master (`CLUSTER FAILOVER`: the master stops
    /// writes, the replica catches up, then takes the slots); waits until every node sees
    /// it.
    pub fn fail_over(&self, replica: usize) {
        let port = self.ports[replica];
        assert_eq!(self.cli(port, &["CLUSTER", "FAILOVER"]), "OK");
        let id = self.cli(port, &["CLUSTER", "MYID"]);
        let (within, every) = (Duration::from_secs(20), Duration::from_millis(50));
        until(within, every, "the failover did not happen", || {
            self.ports.iter().all(|&p| {
                self.cli(p, &["CLUSTER", "NODES"])
                    .lines()
                    .any(|l| l.starts_with(&id) && l.contains("master"))
            })
        });
    }

    /// Starts master `i` (again, after [`TestCluster::stop`]: on the same port, with the
    /// same cluster configuration file, so that it takes its slots back; its keys are
    /// gone, nothing is persisted).
    pub fn run(&mut self, i: usize) {
        let port = self.ports[i];
        let node_dir = self.dir.path().join(i.to_string());
        std::fs::create_dir_all(&node_dir).unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "5000"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(&node_dir)
            .stdout(Stdio::null())
            .spawn()
            .expect(
                "redis-server runs (scripts/test.sh installs it: apt-get install redis-server)",
            );
        self.children[i] = Some(child);
        let (within, every) = (Duration::from_secs(10), Duration::from_millis(20));
        let what = format!("redis-server on {port} did not start");
        until(within, every, &what, || self.cli(port, &["PING"]) == "PONG");
    }

    /// Kills master `i`.
    pub fn stop(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs `redis-cli -p PORT ARGS…`; its output, trimmed.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The `--redis-url` of the cluster (its first node: the others are discovered).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.ports[0])
    }

    /// Which of the three masters serves `slot` (an index into `ports`).
    pub fn master_of(&self, slot: u16) -> usize {
        self.master_seen_by(self.ports[0], slot)
    }

    /// Which master serves `slot`, as the node on `port` sees it.
    fn master_seen_by(&self, port: u16, slot: u16) -> usize {
        let owner = self.cli(port, &["CLUSTER", "SLOTS"]);
        // redis-cli prints each range as: start, end, ip, port, id (one per line).
        let lines: Vec<&str> = owner.lines().map(str::trim).collect();
        let mut i = 0;
        while i + 3 < lines.len() {
            if let (Ok(start), Ok(end)) = (lines[i].parse::<u16>(), lines[i + 1].parse::<u16>()) {
                if (start..=end).contains(&slot) {
                    let port: u16 = lines[i + 3].parse().unwrap();
                    return self.ports.iter().position(|&p| p == port).unwrap();
                }
                i += 2;
            } else {
                i += 1;
            }
        }
        panic!("no master serves slot {slot}: {owner}");
    }

    /// Moves `slot` (and its keys) from its master to master `to` with `CLUSTER SETSLOT`
    /// and `MIGRATE`, as `redis-cli --cluster reshard` does.
    pub fn move_slot(&self, slot: u16, to: usize) {
        let from = self.begin_move(slot, to);
        self.finish_move(slot, from, to);
    }

    /// The first half of [`TestCluster::move_slot`]: the slot is migrating and its keys are
    /// at master `to` already, but its old master still owns it (it answers `ASK` for
    /// them). Answers the old master.
    pub fn begin_move(&self, slot: u16, to: usize) -> usize {
        let from = self.master_of(slot);
        assert_ne!(from, to, "slot {slot} is already there");
        let (src, dst) = (self.ports[from], self.ports[to]);
        let src_id = self.cli(src, &["CLUSTER", "MYID"]);
        let dst_id = self.cli(dst, &["CLUSTER", "MYID"]);
        let s = slot.to_string();
        assert_eq!(
            self.cli(dst, &["CLUSTER", "SETSLOT", &s, "IMPORTING", &src_id]),
            "OK"
        );
        assert_eq!(
            self.cli(src, &["CLUSTER", "SETSLOT", &s, "MIGRATING", &dst_id]),
            "OK"
        );
        loop {
            let keys = self.cli(src, &["CLUSTER", "GETKEYSINSLOT", &s, "100"]);
            let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
            if keys.is_empty() {
                break;
            }
            let port = dst.to_string();
            let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "10000", "KEYS"];
            args.extend(keys);
            assert_eq!(self.cli(src, &args), "OK");
        }
        from
    }

    /// The second half of [`TestCluster::move_slot`]: master `to` owns the slot, and every
    /// master knows it.
    pub fn finish_move(&self, slot: u16, from: usize, to: usize) {
        let (src, dst) = (self.ports[from], self.ports[to]);
        let dst_id = self.cli(dst, &["CLUSTER", "MYID"]);
        let s = slot.to_string();
        for port in [dst, src] {
            assert_eq!(
                self.cli(port, &["CLUSTER", "SETSLOT", &s, "NODE", &dst_id]),
                "OK"
            );
        }
        let other = self.ports[3 - from - to];
        self.cli(other, &["CLUSTER", "SETSLOT", &s, "NODE", &dst_id]);
        let (within, every) = (Duration::from_secs(10), Duration::from_millis(20));
        until(within, every, "slot not moved", || {
            self.ports
                .iter()
                .all(|&p| self.master_seen_by(p, slot) == to)
        });
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.stop(i);
        }
    }
}

/// Starts a node (`--cores 1`) on the Redis Cluster `cluster` (`--redis-cluster`); waits
/// until it is ready (every master's link verified both ways).
pub fn cluster_node(cluster: &TestCluster, tweak: impl FnOnce(&mut Config)) -> SocketAddr {
    let url = cluster.url();
    let addr = crate::server_with(1, |c| {
        c.engine = EngineChoice::Redis;
        c.redis_url = Some(url);
        c.redis_cluster = true;
        tweak(c);
    });
    wait_ready(addr, true);
    addr
}
