//! Logging for every role of the binary: quiet (warnings only) for plain CLI commands, info for
//! the proxy in the foreground and detached, debug with `--debug`; `RUST_LOG` overrides the level.
//! `UNSTRUCTURED_LOGS=false` switches to JSON lines (as ToolHive), for log collectors.

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use apiary_runtime::log::LogFile;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

/// The engine client (bollard) logs at info at most, whatever `--debug` or `RUST_LOG` say.
const QUIET_BOLLARD: &str = "bollard=info";

/// Who is logging, which sets the default level and destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogRole {
    /// A short command for people: warnings and errors only, on stderr.
    Cli,
    /// A proxy in this terminal: info on stderr.
    Foreground,
    /// A detached proxy: info into its log file.
    Detached,
}

/// Installs the global subscriber; `file` receives the lines instead of stderr when given.
pub fn init(role: LogRole, debug: bool, file: Option<Arc<LogFile>>) -> anyhow::Result<()> {
    let level = match (debug, role) {
        (true, _) => "debug",
        (false, LogRole::Cli) => "warn",
        (false, _) => "info",
    };
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => {
            EnvFilter::try_new(v.trim()).map_err(|e| anyhow::anyhow!("RUST_LOG={v:?} is not a log filter: {e}"))?
        }
        _ => EnvFilter::new(level),
    };
    // The engine client's debug lines hold whole request and answer bodies, and a container's
    // create body and inspect answer carry its environment, secrets included: never below info.
    let filter = filter.add_directive(QUIET_BOLLARD.parse()?);
    let to_file = file.is_some();
    let writer = match file {
        Some(log) => BoxMakeWriter::new(move || LogWriter(Arc::clone(&log))),
        None => BoxMakeWriter::new(std::io::stderr),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_target(debug);
    let result = if structured_logs() {
        builder.json().try_init()
    } else {
        builder.with_ansi(!to_file && std::io::stderr().is_terminal()).try_init()
    };
    // A second init (tests calling in twice) keeps the first subscriber; nothing to report.
    let _ = result;
    Ok(())
}

/// True when `UNSTRUCTURED_LOGS` is `false` (or `0`): JSON lines instead of text.
pub fn structured_logs() -> bool {
    std::env::var("UNSTRUCTURED_LOGS")
        .map(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "false" | "0" | "no"))
        .unwrap_or(false)
}

/// One formatted event per write, appended to the capped log file.
struct LogWriter(Arc<LogFile>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.append(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
