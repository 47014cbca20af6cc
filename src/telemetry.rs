//! Logging: tracing with `RUST_LOG` filtering, text or JSON lines.

use crate::config::LogFormat;
use crate::log_writer::{self, FlushGuard};
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Installs the subscriber once, at start (main only), logging to stdout through
/// the log thread (see [`log_writer`]). Keep the guard until exit: dropping it
/// writes out the lines still queued.
pub fn init(format: LogFormat) -> std::io::Result<FlushGuard> {
    let (writer, guard) = log_writer::spawn(std::io::stdout(), log_writer::QUEUE_LINES, format)?;
    install(format, writer, std::io::stdout().is_terminal());
    Ok(guard)
}

/// Logs to stderr, line by line (commands whose stdout is their output).
pub fn init_stderr(format: LogFormat) {
    install(format, std::io::stderr, std::io::stderr().is_terminal());
}

/// Colours only for a terminal: `docker logs` and files get plain text.
fn install<W>(format: LogFormat, writer: W, ansi: bool)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,fred=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(writer);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
        LogFormat::Text => builder.init(),
    }
}
