//! The io_uring → epoll fallback, as it happens in a container: the real binary is started
//! under a seccomp filter that refuses `io_uring_setup` with EPERM, exactly what Docker's
//! and containerd's default profiles do. With `--driver auto` it must run on epoll and say
//! so (startup line, a warning in the log, `/metrics`); with `--driver uring` it must refuse
//! to start with a message that says why.

mod common;

use common::{listening, Running};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

/// `io_uring_setup`: the same number on every architecture (the unified syscall table).
const IO_URING_SETUP: u32 = 425;

/// Installs, in the child about to exec, a seccomp filter that answers `io_uring_setup`
/// with EPERM and allows everything else.
fn block_io_uring() -> std::io::Result<()> {
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const RET_ERRNO: u32 = 0x0005_0000; // SECCOMP_RET_ERRNO
    const RET_ALLOW: u32 = 0x7fff_0000; // SECCOMP_RET_ALLOW
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let mut filter = [
        op(LD_W_ABS, 0, 0, 0), // seccomp_data.nr
        op(JEQ_K, 0, 1, IO_URING_SETUP),
        op(RET_K, 0, 0, RET_ERRNO | libc::EPERM as u32),
        op(RET_K, 0, 0, RET_ALLOW),
    ];
    let program = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: plain prctl calls on this (single-threaded, about to exec) child; `program`
    // outlives the call, which copies the filter into the kernel.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
            || libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &program as *const libc::sock_fprog,
            ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn confined(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rookery"));
    cmd.env_clear()
        .args([
            "--listen",
            "127.0.0.1:0",
            "--cores",
            "2",
            "--store",
            "memory",
        ])
        .args(["--log-format", "text", "--log", "info"])
        .args(args);
    // SAFETY: block_io_uring only makes system calls, which is allowed between fork and exec.
    unsafe {
        cmd.pre_exec(block_io_uring);
    }
    cmd
}

fn get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text
}

#[test]
fn auto_falls_back_to_epoll_and_says_so() {
    let mut server = Running(
        confined(&["--driver", "auto"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (addr, driver) = listening(&mut server.0);
    assert_eq!(driver, "epoll");

    // The log says why before the server listens (every line before "listening" is here).
    let mut log = String::new();
    let mut stderr = BufReader::new(server.0.stderr.take().unwrap());
    while !log.contains("listening") {
        let mut l = String::new();
        assert!(stderr.read_line(&mut l).unwrap() > 0, "log ended: {log}");
        log.push_str(&l);
    }
    assert!(log.contains("WARN"), "{log}");
    assert!(log.contains("falling back to epoll"), "{log}");
    assert!(log.contains("seccomp"), "{log}");

    let metrics = get(&addr, "/metrics");
    assert!(
        metrics.contains("\nrookery_io_driver_info{driver=\"epoll\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\nrookery_io_uring_available 0\n"),
        "{metrics}"
    );

    // And it serves.
    let (mut ws, _) = tungstenite::connect(format!("ws://{addr}/websocket?room=fallback")).unwrap();
    let first = ws.read().unwrap();
    assert!(first.to_text().unwrap().contains("\"config\""), "{first}");
}

#[test]
fn uring_refuses_to_start_and_says_why() {
    let out = confined(&["--driver", "uring"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("io_uring was requested"), "{err}");
    assert!(err.contains("seccomp"), "{err}");
    assert!(out.stdout.is_empty());
}
