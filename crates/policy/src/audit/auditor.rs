//! The audit sink: events are serialised on the request path into one shared buffer of NDJSON
//! lines, bounded by the queue capacity (in events), and one writer task writes the buffer out in
//! batches. Recording never blocks, waits for the writer or wakes it per event: the writer is
//! woken when the buffer goes from empty to not, then waits [`FLUSH_DELAY`] (or until
//! [`BATCH_BYTES`] are waiting, a flush is asked or the auditor is dropped) and writes everything
//! with one write. When the buffer is full the event is dropped and counted.

use std::fs::OpenOptions;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, oneshot};

use super::config::{AuditConfig, AuditConfigError};
use super::event::{AuditEvent, EventBuilder};

/// One warn line is logged for the first dropped event and then once per this many.
pub const DROP_WARN_EVERY: u64 = 1000;

/// Longest an event waits in the buffer before it is written (a quiet proxy's events still reach
/// the file promptly; a busy one writes a batch per delay instead of a line per request).
pub const FLUSH_DELAY: Duration = Duration::from_millis(50);

/// Waiting bytes that make the writer write at once rather than after [`FLUSH_DELAY`].
pub const BATCH_BYTES: usize = 64 * 1024;

/// Mode bits an existing log file must not have: any access by others, or group write.
/// Group read stays allowed, for log shippers running in a log group.
const FORBIDDEN_MODE: u32 = 0o027;

/// Capacity the per-thread serialisation buffer keeps between events; a larger event's buffer
/// is let go after use.
const SCRATCH_KEEP: usize = 16 * 1024;

/// What the request path and the writer share.
#[derive(Debug)]
struct Shared {
    pending: Mutex<Pending>,
    /// Wakes the writer: first line, a full batch, a flush, the auditor gone.
    wake: Notify,
    dropped: AtomicU64,
}

/// NDJSON lines not yet handed to the sink.
#[derive(Debug, Default)]
struct Pending {
    lines: Vec<u8>,
    /// Events in `lines` (bounded by the queue capacity).
    count: usize,
    /// Callers of [`Auditor::flush`] waiting for everything before them to be written.
    flushes: Vec<oneshot::Sender<()>>,
    /// The auditor is gone: write what is left and stop.
    closed: bool,
}

impl Pending {
    /// Whether the writer should write now rather than after the delay.
    fn urgent(&self) -> bool {
        self.closed || !self.flushes.is_empty() || self.lines.len() >= BATCH_BYTES
    }
}

/// Records audit events. Shared as `Arc<Auditor>`; the writer task stops when the auditor is
/// dropped, after writing what was recorded.
#[derive(Debug)]
pub struct Auditor {
    cfg: AuditConfig,
    shared: Arc<Shared>,
}

impl Drop for Auditor {
    fn drop(&mut self) {
        if let Ok(mut p) = self.shared.pending.lock() {
            p.closed = true;
        }
        self.shared.wake.notify_one();
    }
}

thread_local! {
    /// Each thread serialises its events here, outside the shared lock.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
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
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            wake: Notify::new(),
            dropped: AtomicU64::new(0),
        });
        tokio::spawn(write_loop(shared.clone(), writer));
        Arc::new(Auditor { cfg, shared })
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
        let queued = SCRATCH.with(|scratch| {
            let Ok(mut line) = scratch.try_borrow_mut() else { return Err("audit event not serialisable") };
            line.clear();
            super::line::write(&event, &mut line);
            line.push(b'\n');
            let queued = self.queue(&line);
            if line.capacity() > SCRATCH_KEEP {
                *line = Vec::new();
            }
            queued
        });
        if let Err(why) = queued {
            count_drop(&self.shared.dropped, why);
        }
    }

    /// Appends one line to the shared buffer; wakes the writer for the first line or a full batch.
    fn queue(&self, line: &[u8]) -> Result<(), &'static str> {
        let Ok(mut p) = self.shared.pending.lock() else { return Err("audit queue broken") };
        if p.count >= self.cfg.queue_capacity.max(1) {
            return Err("audit queue full");
        }
        let was_empty = p.count == 0;
        let was_small = p.lines.len() < BATCH_BYTES;
        p.lines.extend_from_slice(line);
        p.count += 1;
        let wake = was_empty || (was_small && p.lines.len() >= BATCH_BYTES);
        drop(p);
        if wake {
            self.shared.wake.notify_one();
        }
        Ok(())
    }

    /// Events lost: queue full, or the sink failed to write them.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Waits until every event recorded before this call is written and flushed to the sink.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        match self.shared.pending.lock() {
            Ok(mut p) => p.flushes.push(done),
            Err(_) => return,
        }
        self.shared.wake.notify_one();
        let _ = wait.await;
    }
}

fn count_drop(dropped: &AtomicU64, why: &str) {
    let n = dropped.fetch_add(1, Ordering::Relaxed) + 1;
    if n % DROP_WARN_EVERY == 1 {
        tracing::warn!(dropped_total = n, "{why}: audit events dropped");
    }
}

/// Takes what is waiting, in one piece: (lines, flush waiters, closed).
fn take(shared: &Shared, spare: Vec<u8>) -> (Vec<u8>, Vec<oneshot::Sender<()>>, bool) {
    let Ok(mut p) = shared.pending.lock() else { return (spare, Vec::new(), true) };
    p.count = 0;
    (std::mem::replace(&mut p.lines, spare), std::mem::take(&mut p.flushes), p.closed)
}

async fn write_loop<W: AsyncWrite + Unpin>(shared: Arc<Shared>, mut out: W) {
    // The buffer written last, emptied, becomes the next one to fill (no allocation per batch).
    let mut spare = Vec::new();
    loop {
        shared.wake.notified().await;
        let urgent = shared.pending.lock().map_or(true, |p| p.urgent());
        if !urgent {
            // Gather more; a flush, a full batch or the auditor's drop cuts the wait short.
            tokio::select! {
                () = tokio::time::sleep(FLUSH_DELAY) => {}
                () = shared.wake.notified() => {}
            }
        }
        let (mut lines, flushes, closed) = take(&shared, spare);
        if !lines.is_empty() && (out.write_all(&lines).await.is_err() || out.flush().await.is_err()) {
            // Every line of the batch is lost (the warning counts the last one).
            let events = lines.iter().filter(|b| **b == b'\n').count() as u64;
            shared.dropped.fetch_add(events.saturating_sub(1), Ordering::Relaxed);
            count_drop(&shared.dropped, "audit sink write failed");
        }
        for done in flushes {
            let _ = done.send(());
        }
        if closed {
            return;
        }
        lines.clear();
        if lines.capacity() > 4 * BATCH_BYTES {
            lines = Vec::new();
        }
        spare = lines;
        // A wake that arrived while writing may find nothing new; the next loop waits again.
    }
}
