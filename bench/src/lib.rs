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

/// CPU seconds (user + system) of each thread of process `pid`, summed by the thread's
/// group: `core` (`rookery-core-N`, the IO cores), `store` (`rookery-store`, the store's
/// thread), `fjall` (`fjall:worker`, the disk store's flush and compaction threads) and
/// `other` (the main thread, the backend thread, anything else), from
/// `/proc/PID/task/*/stat`. A thread that ended between two samples takes its time with it.
pub fn thread_cpu_of(pid: u32) -> ThreadCpu {
    let mut cpu = ThreadCpu::default();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return cpu;
    };
    for task in tasks.flatten() {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let name = head.split_once('(').map_or("", |(_, n)| n);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let seconds = (ticks(11) + ticks(12)) / 100.0;
        if name.starts_with("rookery-core") {
            cpu.core += seconds;
        } else if name == "rookery-store" {
            cpu.store += seconds;
        } else if name.starts_with("fjall") {
            cpu.fjall += seconds;
        } else {
            cpu.other += seconds;
        }
    }
    cpu
}

/// Per-thread-group CPU seconds of a server process (see [`thread_cpu_of`]).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ThreadCpu {
    pub core: f64,
    pub store: f64,
    pub fjall: f64,
    pub other: f64,
}

impl ThreadCpu {
    /// What was used between `before` and `self`.
    pub fn since(&self, before: &ThreadCpu) -> ThreadCpu {
        ThreadCpu {
            core: (self.core - before.core).max(0.0),
            store: (self.store - before.store).max(0.0),
            fjall: (self.fjall - before.fjall).max(0.0),
            other: (self.other - before.other).max(0.0),
        }
    }

    /// Two processes' threads together.
    pub fn plus(&self, other: &ThreadCpu) -> ThreadCpu {
        ThreadCpu {
            core: self.core + other.core,
            store: self.store + other.store,
            fjall: self.fjall + other.fjall,
            other: self.other + other.other,
        }
    }
}

/// Busy and total CPU ticks of the whole machine so far (`/proc/stat`; iowait counts as
/// idle), for the load the rest of the machine put on it during a measurement.
pub fn machine_ticks() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return (0.0, 0.0);
    };
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    let at = |i: usize| v.get(i).copied().unwrap_or(0.0);
    // user nice system idle iowait irq softirq steal
    let busy = at(0) + at(1) + at(2) + at(5) + at(6) + at(7);
    (busy, busy + at(3) + at(4))
}

/// A fresh, not yet existing directory for one server's disk store (`--data-dir`), under
/// `root`; removed with everything in it when dropped. Never in the repository.
pub struct DataDir {
    pub path: std::path::PathBuf,
}

impl DataDir {
    pub fn new(root: &std::path::Path) -> DataDir {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = root.join(format!(
            "rookery-bench-data-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        DataDir { path }
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Whether `binary --help` mentions `flag` (a server built before `--store` existed has
/// only the memory store: it is started without the flag).
pub fn supports_flag(binary: &str, flag: &str) -> bool {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static SEEN: Mutex<Option<HashMap<(String, String), bool>>> = Mutex::new(None);
    let mut seen = SEEN.lock().unwrap();
    let key = (binary.to_owned(), flag.to_owned());
    if let Some(&known) = seen.get_or_insert_with(HashMap::new).get(&key) {
        return known;
    }
    let help = Command::new(binary)
        .arg("--help")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let found = help
        .split(|c: char| c.is_whitespace() || c == ',')
        .any(|w| w == flag);
    seen.as_mut().unwrap().insert(key, found);
    found
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
pub mod reader;
pub mod report;
