//! `apiary logs NAME [-f] [--proxy]`: prints a workload's server log (its stderr) or, with
//! `--proxy`, the proxy's own log; `-f` keeps printing what is appended, across rotations.
//! `apiary logs prune` (ToolHive's `thv logs prune`) deletes the logs of workloads that no
//! longer exist.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use apiary_runtime::state::{StateDir, StateError};

use crate::serve::StopSignals;

/// How often `-f` looks for new lines.
const POLL: Duration = Duration::from_millis(200);
/// Bytes copied per read.
const CHUNK: usize = 64 * 1024;

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// Workload name, or `prune` to delete the logs of workloads that no longer exist (a
    /// workload named `prune` keeps its logs: ask for them with `--proxy` or `-f`, or remove it)
    pub name: String,
    /// Keep printing new lines until Ctrl-C
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Show the proxy's log instead of the server's
    #[arg(short = 'p', long)]
    pub proxy: bool,
}

/// `apiary logs`.
pub async fn logs(args: LogsArgs) -> anyhow::Result<()> {
    let state = StateDir::from_env()?;
    let exists =
        |name: &str| -> anyhow::Result<bool> { Ok(state.has_config(name)? || state.load_record(name)?.is_some()) };
    if args.name == "prune" && !args.follow && !args.proxy {
        if exists("prune")? {
            anyhow::bail!(
                "a workload is named `prune`, so `apiary logs prune` would be ambiguous; rename or remove it \
                 to prune logs (its own logs: `apiary logs prune -f`, or `--proxy`)"
            );
        }
        let removed = state.prune_logs()?;
        for path in &removed {
            crate::output::emit_line(&format!("removed {}", path.display()));
        }
        crate::output::emit_line(&format!("{} log file(s) of removed workloads deleted", removed.len()));
        return Ok(());
    }
    if !exists(&args.name)? {
        return Err(StateError::NotFound(args.name).into());
    }
    let path = if args.proxy { state.proxy_log_path(&args.name)? } else { state.log_path(&args.name)? };
    let Some(mut offset) = copy_from(&path, 0)? else {
        return Ok(());
    };
    if !args.follow {
        return Ok(());
    }
    let mut signals = StopSignals::install()?;
    loop {
        tokio::select! {
            _ = signals.recv() => return Ok(()),
            () = tokio::time::sleep(POLL) => {
                let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                // Shorter than what was printed: the file was rotated; start the new one.
                if len < offset {
                    offset = 0;
                }
                if len > offset {
                    match copy_from(&path, offset)? {
                        Some(reached) => offset = reached,
                        None => return Ok(()),
                    }
                }
            }
        }
    }
}

/// Copies `path` from `offset` to stdout; returns the offset reached, or `None` once stdout's
/// reader has gone away (`apiary logs NAME | head`). A missing file is empty.
fn copy_from(path: &Path, offset: u64) -> anyhow::Result<Option<u64>> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Some(offset)),
        Err(e) => return Err(e).with_context(|| path.display().to_string()),
    };
    file.seek(SeekFrom::Start(offset)).with_context(|| path.display().to_string())?;
    let mut out = std::io::stdout().lock();
    let mut buf = vec![0u8; CHUNK];
    let mut pos = offset;
    loop {
        let n = file.read(&mut buf).with_context(|| path.display().to_string())?;
        if n == 0 {
            break;
        }
        match out.write_all(&buf[..n]) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        pos += n as u64;
    }
    let _ = out.flush();
    Ok(Some(pos))
}
