//! The audit sink: a bounded queue in front of one writer task, so recording an event never
//! blocks or slows the request path. When the queue is full the event is dropped and counted.

use std::fs::OpenOptions;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{mpsc, oneshot};

use super::config::{AuditConfig, AuditConfigError};
use super::event::{AuditEvent, EventBuilder};

/// One warn line is logged for the first dropped event and then once per this many.
pub const DROP_WARN_EVERY: u64 = 1000;

/// Mode bits an existing log file must not have: any access by others, or group write.
/// Group read stays allowed, for log shippers running in a log group.
const FORBIDDEN_MODE: u32 = 0o027;

enum Command {
    Event(Box<AuditEvent>),
    Flush(oneshot::Sender<()>),
}

/// Records audit events. Shared as `Arc<Auditor>`; the writer task stops when the last clone
/// is dropped, after writing what was queued.
#[derive(Debug)]
pub struct Auditor {
    cfg: AuditConfig,
    tx: mpsc::Sender<Command>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Event(_) => "Event",
            Command::Flush(_) => "Flush",
        })
    }
}

impl Auditor {
    /// Opens the sink and spawns the writer task (needs a tokio runtime). The log file is
    /// created with mode 0600 and appended to. An existing regular file that others may read,
    /// or its group may write, is refused rather than silently tightened (it may be shared
    /// with a log shipper on purpose; the error says how to fix it). Pipes and devices
    /// (`/dev/stdout`) are accepted as they are. No `logFile`: stdout.
    pub async fn start(cfg: AuditConfig) -> Result<Arc<Auditor>, AuditConfigError> {
        match cfg.log_file.clone() {
            Some(path) => {
                let open_err = |source| AuditConfigError::Open { path: path.clone(), source };
                let file = OpenOptions::new().create(true).append(true).mode(0o600).open(&path).map_err(open_err)?;
                // Checked on the open file, so the file judged is the file written.
                let meta = file.metadata().map_err(open_err)?;
                let mode = meta.mode() & 0o7777;
                if meta.is_file() && mode & FORBIDDEN_MODE != 0 {
                    return Err(AuditConfigError::Permissions { path, mode });
                }
                Ok(Self::start_with_writer(cfg, tokio::fs::File::from_std(file)))
            }
            None => Ok(Self::start_with_writer(cfg, tokio::io::stdout())),
        }
    }

    /// Like [`Auditor::start`], writing to `writer` (tests, or a caller-owned sink).
    pub fn start_with_writer(cfg: AuditConfig, writer: impl AsyncWrite + Send + Unpin + 'static) -> Arc<Auditor> {
        let (tx, rx) = mpsc::channel(cfg.queue_capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        tokio::spawn(write_loop(rx, BufWriter::new(writer), dropped.clone()));
        Arc::new(Auditor { cfg, tx, dropped })
    }

    pub fn config(&self) -> &AuditConfig {
        &self.cfg
    }

    /// Whether events of this type are recorded (`excludeEventTypes` wins over `eventTypes`).
    pub fn wants(&self, event_type: &str) -> bool {
        self.cfg.wants(event_type)
    }

    pub fn includes_request_data(&self) -> bool {
        self.cfg.include_request_data
    }

    pub fn includes_response_data(&self) -> bool {
        self.cfg.include_response_data
    }

    /// Starts an event carrying this auditor's component and data settings.
    pub fn event(&self, method: Option<&str>) -> EventBuilder<'_> {
        AuditEvent::builder(&self.cfg, method)
    }

    /// Queues an event without waiting. Events of unwanted types are ignored; when the queue
    /// is full the event is dropped and counted.
    pub fn record(&self, event: AuditEvent) {
        if !self.wants(&event.event_type) {
            return;
        }
        if self.tx.try_send(Command::Event(Box::new(event))).is_err() {
            count_drop(&self.dropped, "audit queue full");
        }
    }

    /// Events lost: queue full, or the sink failed to write them.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits until every event recorded before this call is written and flushed to the sink.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Command::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

fn count_drop(dropped: &AtomicU64, why: &str) {
    let n = dropped.fetch_add(1, Ordering::Relaxed) + 1;
    if n % DROP_WARN_EVERY == 1 {
        tracing::warn!(dropped_total = n, "{why}: audit events dropped");
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut rx: mpsc::Receiver<Command>,
    mut out: BufWriter<W>,
    dropped: Arc<AtomicU64>,
) {
    while let Some(cmd) = rx.recv().await {
        match cmd {
            Command::Event(event) => {
                let mut line = match serde_json::to_vec(&event) {
                    Ok(l) => l,
                    Err(_) => {
                        count_drop(&dropped, "audit event not serialisable");
                        continue;
                    }
                };
                line.push(b'\n');
                if out.write_all(&line).await.is_err() {
                    count_drop(&dropped, "audit sink write failed");
                }
                // Write through when nothing else is waiting, so a quiet proxy's events reach
                // the file promptly; a busy one batches in the buffer.
                if rx.is_empty() && out.flush().await.is_err() {
                    count_drop(&dropped, "audit sink flush failed");
                }
            }
            Command::Flush(done) => {
                if out.flush().await.is_err() {
                    tracing::warn!("audit sink flush failed");
                }
                let _ = done.send(());
            }
        }
    }
    let _ = out.flush().await;
}
