//! What the tests of the real `rookery` binary share (each test file is a crate of its own
//! and uses part of it): a started process that is killed when the test ends, passed or
//! not; the address and driver its first line announces; a signal sent to it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A started server, killed (and reaped) when the test ends.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads the server's first line on its (piped) stdout, "rookery listening on ADDR (DRIVER)",
/// and returns `ADDR` and `DRIVER` (without the parentheses).
pub fn listening(child: &mut Child) -> (String, String) {
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout is piped"))
        .read_line(&mut line)
        .unwrap();
    let rest = line
        .strip_prefix("rookery listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    let (addr, driver) = rest.trim().split_once(' ').unwrap();
    let driver = driver.trim_matches(|c| c == '(' || c == ')');
    (addr.to_owned(), driver.to_owned())
}

/// Sends signal `name` (`TERM`, `HUP`, …) to the process.
pub fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} {}", child.id());
}

/// Lines of the child's stderr, as they come.
pub fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits (generously) for a line containing `needle`.
pub fn wait_for(lines: &mpsc::Receiver<String>, needle: &str) -> String {
    loop {
        match lines.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => continue,
            Err(e) => panic!("no line with {needle:?}: {e}"),
        }
    }
}

/// Sends `request` (a whole HTTP/1.1 request, as written) to `addr` and answers the
/// response's status: 0 when the server cannot be reached or answers nothing within 10 s.
pub fn http_status(addr: &str, request: &str) -> u16 {
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = s.write_all(request.as_bytes());
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// `GET path` with `Connection: close`: the status, as [`http_status`].
pub fn get_status(addr: &str, path: &str) -> u16 {
    http_status(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
    )
}

/// Checks every 20 ms until `pending` answers `None`, failing with the last reason it gave
/// once `within` has passed since `since` (a kill, say, or now).
pub fn eventually(since: Instant, within: Duration, mut pending: impl FnMut() -> Option<String>) {
    while let Some(why) = pending() {
        assert!(since.elapsed() < within, "{why}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// [`eventually`] from now, for a condition that says no more than `what` when it fails.
pub fn until(within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    eventually(Instant::now(), within, || {
        (!done()).then(|| what.to_owned())
    });
}
