//! The `rookery` binary: parse the configuration, set up logging, run every core, and
//! shut down gracefully on SIGTERM/SIGINT (a second signal exits at once).

use clap::Parser;
use rookery::config::{Config, LogFormat};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

fn main() {
    let config = Config::parse();
    init_logging(config.log_format);
    let mut signals = match Signals::new([SIGTERM, SIGINT]) {
        Ok(signals) => signals,
        Err(e) => fail(&format!("cannot handle signals: {e}")),
    };
    let server = match rookery::start(config) {
        Ok(server) => server,
        Err(e) => fail(&format!("cannot start: {e}")),
    };
    // A line machines can read: scripts and tests wait for it to learn the port.
    println!("rookery listening on {} ({})", server.addr, server.driver);

    let first = signals.forever().next();
    tracing::info!(signal = ?first, "draining: closing every connection");
    server.shutdown();
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            tracing::warn!(signal, "second signal: exiting now");
            std::process::exit(1);
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

fn fail(message: &str) -> ! {
    tracing::error!("{message}");
    eprintln!("rookery: {message}");
    std::process::exit(1);
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ROOKERY_LOG")
        // The storage engine narrates its housekeeping at info: warnings are what matter.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,fjall=warn,lsm_tree=warn"));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
