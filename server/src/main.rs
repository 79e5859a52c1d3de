//! The `rookery` binary: read the configuration (flags, `ROOKERY_*`, `--config` file), set
//! up logging, run every core, tell systemd when it is ready, reload what can be reloaded
//! on SIGHUP, and shut down gracefully on SIGTERM/SIGINT (a second signal exits at once).

use rookery::config_file::{self, Loaded, Subcommands};
use rookery::sdnotify;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::ffi::OsString;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<OsString> = std::env::args_os().collect();
    let loaded = config_file::load(&args).unwrap_or_else(|e| e.exit());
    if loaded.cli.command == Some(Subcommands::CheckConfig) {
        print!("{}", config_file::report(&loaded));
        std::process::exit(0);
    }
    let config = loaded.cli.config.clone();
    let logs = rookery::logging::init(config.log_format, &config.log);
    if let Some(path) = &loaded.cli.config_file {
        tracing::info!(file = %path.display(), "configuration read");
    }
    let mut signals = match Signals::new([SIGTERM, SIGINT, SIGHUP]) {
        Ok(signals) => signals,
        Err(e) => fail(&format!("cannot handle signals: {e}")),
    };
    let server = match rookery::start(config) {
        Ok(server) => server,
        Err(e) => fail(&format!("cannot start: {e}")),
    };
    // A line machines can read: scripts and tests wait for it to learn the port.
    println!("rookery listening on {} ({})", server.addr, server.driver);
    if let Some(admin) = server.admin_addr {
        println!("rookery admin listening on {admin}");
    }
    let status = format!("listening on {} ({})", server.addr, server.driver);
    sdnotify::notify(&format!("READY=1\nSTATUS={status}"));

    let mut current = loaded;
    let first = loop {
        match signals.forever().next() {
            Some(SIGHUP) => {
                sdnotify::reloading();
                current = reload(&args, current, &logs, &server);
                sdnotify::notify(&format!("READY=1\nSTATUS={status}"));
            }
            other => break other,
        }
    };
    tracing::info!(signal = ?first, "draining: closing every connection");
    sdnotify::notify("STOPPING=1\nSTATUS=draining");
    server.shutdown();
    std::thread::spawn(move || {
        for signal in signals.forever() {
            if signal != SIGHUP {
                tracing::warn!(signal, "second signal: exiting now");
                std::process::exit(1);
            }
        }
    });
    let deadline = Instant::now() + Duration::from_millis(server.config().shutdown_timeout_ms);
    while server.open_connections() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left = server.open_connections();
    if left > 0 {
        tracing::warn!(
            left,
            "shutdown timeout: exiting with connections still open"
        );
    } else {
        tracing::info!("every connection closed: exiting");
    }
    if let Err(error) = server.sync_store() {
        tracing::error!(%error, "the store's last fsync failed");
    }
    std::process::exit(0);
}

/// SIGHUP: reads the configuration again (the same flags, the environment the process
/// started with, the file as it is now). The log filter takes effect at once, and so do
/// the TLS certificate and key (read again even when their paths did not change: a renewed
/// certificate is the usual reason for a reload); any other changed setting is logged as
/// needing a restart. A configuration that no longer parses, or whose TLS files are bad,
/// changes nothing (the certificate in force stays) and is logged as an error. Returns the
/// configuration now in force.
fn reload(
    args: &[OsString],
    current: Loaded,
    logs: &rookery::logging::LogReload,
    server: &rookery::ServerHandle,
) -> Loaded {
    let next = match config_file::load(args) {
        Ok(next) => next,
        Err(error) => {
            tracing::error!(%error, "reload: the configuration is invalid; nothing changed");
            return current;
        }
    };
    let mut applied = current.clone();
    for (old, new) in current.settings.iter().zip(&next.settings) {
        if old.value == new.value {
            continue;
        }
        if new.key == "log" {
            match logs.set(&next.cli.config.log) {
                Ok(()) => {
                    applied.cli.config.log = next.cli.config.log.clone();
                    applied
                        .settings
                        .iter_mut()
                        .find(|s| s.key == "log")
                        .expect("log")
                        .value = new.value.clone();
                    tracing::info!(log = %next.cli.config.log, "reload: new log filter");
                }
                Err(error) => tracing::error!(%error, "reload: the log filter was refused"),
            }
        } else if server.tls() && (new.key == "tls_cert" || new.key == "tls_key") {
            // Read below, with the files.
        } else {
            let key = &new.key;
            tracing::warn!(%key, "reload: this setting changed; it takes effect on restart");
        }
    }
    if server.tls() {
        reload_tls(&next, &mut applied, server);
    }
    tracing::info!("reload done");
    applied
}

/// Reads the TLS certificate and key of `next` again (new handshakes get them).
fn reload_tls(next: &Loaded, applied: &mut Loaded, server: &rookery::ServerHandle) {
    let files = match next.cli.config.tls_files() {
        Ok(Some(files)) => files,
        _ => {
            tracing::warn!("reload: TLS stays on until a restart (--tls-cert and --tls-key unset)");
            return;
        }
    };
    match server.reload_tls(&files) {
        Ok(sha256) => {
            let cert = files.cert.display();
            tracing::info!(%cert, %sha256, "reload: TLS certificate read again");
            applied.cli.config.tls_cert = Some(files.cert.clone());
            applied.cli.config.tls_key = Some(files.key.clone());
            for setting in &mut applied.settings {
                if let Some(new) = next.settings.iter().find(|s| s.key == setting.key) {
                    if setting.key == "tls_cert" || setting.key == "tls_key" {
                        *setting = new.clone();
                    }
                }
            }
        }
        Err(error) => {
            tracing::error!(%error, "reload: TLS certificate refused; the one in force stays")
        }
    }
}

fn fail(message: &str) -> ! {
    tracing::error!("{message}");
    eprintln!("rookery: {message}");
    std::process::exit(1);
}
