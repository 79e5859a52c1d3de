//! Shared pieces of the load generator and the soak test: starting the real server, reading
//! its metrics and memory, and small HTTP calls.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A `rookery` process started for a measurement.
pub struct ServerProcess {
    pub child: Child,
    pub addr: String,
}

impl ServerProcess {
    /// Starts `binary` with `args` on `127.0.0.1:0` and waits for its address.
    pub fn start(binary: &str, args: &[String]) -> ServerProcess {
        Self::start_on(None, binary, args)
    }

    /// The same, pinned to CPU `cpu` (`taskset`) when given.
    pub fn start_on(cpu: Option<&str>, binary: &str, args: &[String]) -> ServerProcess {
        let mut command = match cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.args(["-c", cpu, binary]);
                c
            }
            None => Command::new(binary),
        };
        let mut child = command
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("ROOKERY_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .strip_prefix("rookery listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .split(' ')
            .next()
            .unwrap()
            .to_owned();
        ServerProcess { child, addr }
    }

    /// Resident memory of the process, in bytes.
    pub fn rss(&self) -> u64 {
        rss_of(self.child.id())
    }

    /// User + system CPU time of the process so far, in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds_of(self.child.id())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident memory of process `pid`, in bytes (from /proc).
pub fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// User + system CPU seconds of process `pid` (from /proc).
pub fn cpu_seconds_of(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat; here 11 and 12 of the rest.
    (ticks(11) + ticks(12)) / 100.0
}

/// `method path` with `body`; returns status and body text.
pub fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("server reachable");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: b\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

/// One value of the server's `/metrics`.
pub fn metric(addr: &str, name: &str) -> Option<f64> {
    let (_, text) = http(addr, "GET", "/metrics", "");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

pub mod load;
pub mod report;
