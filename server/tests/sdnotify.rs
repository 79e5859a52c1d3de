//! The binary speaks systemd's readiness protocol (the unit is `Type=notify`): `READY=1`
//! once it listens, `RELOADING=1` then `READY=1` around a SIGHUP, `STOPPING=1` on SIGTERM.
//! The test plays systemd's part: a datagram socket named by `NOTIFY_SOCKET`.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
mod common;

use common::{signal, Running};
use std::process::{Command, Stdio};
use std::time::Duration;

fn next(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).expect("a notification in time");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn run(socket: &UnixDatagram, notify_socket: &str) {
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let server = Running(
        Command::new(env!("CARGO_BIN_EXE_rookery"))
            .env_clear()
            .env("NOTIFY_SOCKET", notify_socket)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--cores",
                "1",
                "--store",
                "memory",
            ])
            .args(["--log", "warn", "--shutdown-jitter-ms", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let ready = next(socket);
    assert!(
        ready.starts_with("READY=1\nSTATUS=listening on 127.0.0.1:"),
        "{ready}"
    );
    signal(&server.0, "HUP");
    let reloading = next(socket);
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading}"
    );
    assert!(next(socket).starts_with("READY=1\n"));
    signal(&server.0, "TERM");
    assert_eq!(next(socket), "STOPPING=1\nSTATUS=draining");
}

#[test]
fn tells_a_path_socket_when_ready_reloading_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&path).unwrap();
    run(&socket, path.to_str().unwrap());
}

#[test]
fn tells_an_abstract_socket_too() {
    let name = format!("rookery-test-notify-{}", std::process::id());
    let address = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let socket = UnixDatagram::bind_addr(&address).unwrap();
    run(&socket, &format!("@{name}"));
}
