//! The `rookery` binary: parse the configuration, set up logging, run every core.

use clap::Parser;
use rookery::config::{Config, LogFormat};
use std::io::IsTerminal;

fn main() {
    let config = Config::parse();
    init_logging(config.log_format);
    match rookery::start(config) {
        Ok(server) => {
            // A line machines can read: scripts and tests wait for it to learn the port.
            println!("rookery listening on {} ({})", server.addr, server.driver);
            server.join();
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("rookery: cannot start: {e}");
            std::process::exit(1);
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ROOKERY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
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
