//! systemd's readiness protocol (`sd_notify`), so the unit can be `Type=notify`:
//! `systemctl start rookery` then returns once every core listens — or fails when the
//! server cannot start (a bad data directory, a port in use) instead of reporting a start
//! that dies a moment later. Ten lines of a Unix datagram: no crate for it.
//!
//! Without `NOTIFY_SOCKET` (not started by systemd) every call does nothing.

use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Sends `state` (newline-separated `KEY=value` pairs, e.g. `READY=1`) to the service
/// manager, if there is one. Failures are logged, never fatal: the server serves anyway.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = (|| {
        let address = match path.as_encoded_bytes().strip_prefix(b"@") {
            // An abstract socket (Linux): the name after the `@`.
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name)?
            }
            None => SocketAddr::from_pathname(&path)?,
        };
        UnixDatagram::unbound()?.send_to_addr(state.as_bytes(), &address)
    })();
    if let Err(error) = sent {
        tracing::warn!(%error, "could not notify systemd");
    }
}

/// `RELOADING=1` with the monotonic time systemd (253 and later) asks to come with it.
pub fn reloading() {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    let usec = now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1_000;
    notify(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
}
