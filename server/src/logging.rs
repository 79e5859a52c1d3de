//! Logging to stderr: JSON or text, filtered by `--log`, with a filter that SIGHUP can
//! replace while the server runs (the one setting a reload changes; see `docs/DEPLOY.md`).

use crate::config::LogFormat;
use std::io::IsTerminal;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, EnvFilter, Registry};

/// Replaces the live log filter.
pub struct LogReload(reload::Handle<EnvFilter, Registry>);

impl LogReload {
    /// Puts `filter` in force (it was checked when the configuration was parsed).
    pub fn set(&self, filter: &str) -> Result<(), String> {
        let filter = EnvFilter::builder()
            .parse(filter)
            .map_err(|e| e.to_string())?;
        self.0.reload(filter).map_err(|e| e.to_string())
    }
}

/// Installs the global subscriber. Text goes without colour codes unless stderr is a
/// terminal (journald and `docker logs` would otherwise store the escape codes).
pub fn init(format: LogFormat, filter: &str) -> LogReload {
    let filter = EnvFilter::builder()
        .parse(filter)
        .unwrap_or_else(|_| EnvFilter::new(crate::config::DEFAULT_LOG));
    let (filter, handle) = reload::Layer::new(filter);
    let terminal = std::io::stderr().is_terminal();
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !terminal,
    };
    let json_layer = json.then(|| fmt::layer().json().with_writer(std::io::stderr));
    let text_layer = (!json).then(|| {
        fmt::layer()
            .with_ansi(terminal)
            .with_writer(std::io::stderr)
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(json_layer)
        .with(text_layer)
        .init();
    LogReload(handle)
}
