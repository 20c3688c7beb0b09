//! Live reload for `apiary vmcp serve --config`: the file is read again every poll interval
//! (through its path each time, so Kubernetes' swap of a mounted ConfigMap's symlink is seen),
//! and when its content changed and validates, the vMCP's backends are swapped
//! ([`VmcpLaunch::reload`]). A file that does not validate is logged and the running config
//! kept; a file that cannot be read (mid-swap) is tried again at the next poll.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{VmcpConfig, read_bounded};
use crate::launch::VmcpLaunch;

/// How often `serve --config` looks at its file.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// A hash of a config's text: a change of content, not of modification time, triggers a reload.
pub fn content_hash(text: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// Watches `path` until `stop`; `baseline` is the hash of the text the vMCP started with.
pub fn spawn_config_watch(
    launch: Arc<VmcpLaunch>,
    path: PathBuf,
    baseline: u64,
    interval: Duration,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut seen = baseline;
        loop {
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = stop.cancelled() => return,
            }
            let p = path.clone();
            let text = match tokio::task::spawn_blocking(move || read_bounded(&p)).await {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot read the vMCP config now; trying again");
                    continue;
                }
                Err(_) => continue,
            };
            let hash = content_hash(&text);
            if hash == seen {
                continue;
            }
            // Remembered even when refused: an invalid file is reported once, not every poll.
            seen = hash;
            let outcome = VmcpConfig::parse(&text).and_then(|c| {
                let warnings = c.validate()?;
                launch.reload(&c)?;
                Ok((c.backends.len(), warnings))
            });
            match outcome {
                Ok((backends, warnings)) => {
                    for w in warnings {
                        tracing::warn!("{w}");
                    }
                    tracing::info!(path = %path.display(), backends, "vMCP config reloaded");
                }
                Err(e) => tracing::error!(
                    path = %path.display(),
                    error = %e,
                    "the changed vMCP config is refused; the running config is kept"
                ),
            }
        }
    })
}
