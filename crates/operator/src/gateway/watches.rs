//! The loop both of the gateway's watches share (the registrations' in `follow`, the
//! AuthPolicies' in `policies`): reflector streams turned into signals, and a wait for the next
//! moment to resolve everything again — once every stream has listed its objects, after a change
//! (or a resync tick, or an extra wake-up) and a quiet [`SETTLE`], so a burst of changes
//! (`kubectl apply` of several objects) is one pass.

use std::time::Duration;

use futures::stream::{BoxStream, SelectAll};
use futures::{Stream, StreamExt};
use kube::runtime::watcher;
use tokio::sync::mpsc;
use tokio::time::Interval;

/// Quiet time after a change before resolving.
const SETTLE: Duration = Duration::from_millis(200);

/// What one watch stream said.
enum Signal {
    /// Stream `n` has listed everything once.
    Listed(usize),
    /// Something changed.
    Changed,
    /// Listing stream `n` answered 404: the cluster does not serve its API.
    Missing(usize),
    /// Stream `n` failed (it retries with backoff).
    Failed(usize, String),
}

fn not_served(e: &watcher::Error) -> bool {
    matches!(e, watcher::Error::InitialListFailed(kube::Error::Api(status)) if status.code == 404)
}

/// The watch streams of one loop, named for the log, and which have listed once.
pub(super) struct Watches {
    streams: SelectAll<BoxStream<'static, Signal>>,
    names: Vec<&'static str>,
    listed: Vec<bool>,
    /// An API the cluster does not serve counts as listed and empty (instead of a failure
    /// retried before anything is resolved).
    absent_is_empty: bool,
}

impl Watches {
    pub(super) fn new(absent_is_empty: bool) -> Watches {
        Watches { streams: SelectAll::new(), names: Vec::new(), listed: Vec::new(), absent_is_empty }
    }

    /// Adds the reflector stream of API `name`.
    pub(super) fn add<K: 'static>(
        &mut self,
        name: &'static str,
        stream: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    ) {
        let index = self.names.len();
        self.names.push(name);
        self.listed.push(false);
        self.streams.push(
            stream
                .map(move |e| match e {
                    Ok(watcher::Event::InitDone) => Signal::Listed(index),
                    Ok(_) => Signal::Changed,
                    Err(e) if not_served(&e) => Signal::Missing(index),
                    Err(e) => Signal::Failed(index, e.to_string()),
                })
                .boxed(),
        );
    }

    /// Waits until it is time for a pass: every stream listed once, then a change, a `resync`
    /// tick or a message on `wake`, then [`SETTLE`] of quiet. `false` when the streams ended.
    pub(super) async fn next_pass(&mut self, resync: &mut Interval, mut wake: Option<&mut mpsc::Receiver<()>>) -> bool {
        loop {
            let woken = async {
                match wake.as_deref_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = resync.tick() => {}
                Some(()) = woken => {}
                signal = self.streams.next() => match signal {
                    None => return false,
                    Some(Signal::Listed(i)) => self.listed[i] = true,
                    Some(Signal::Changed) => {}
                    Some(Signal::Missing(i)) if self.absent_is_empty => {
                        tracing::warn!(api = self.names[i],
                            "the cluster does not serve this API (CRD not installed?): none of its objects apply until it does; retrying");
                        self.listed[i] = true;
                    }
                    Some(Signal::Missing(i)) => {
                        tracing::warn!(api = self.names[i], "the cluster does not serve this API (CRD not installed?); retrying");
                        continue;
                    }
                    Some(Signal::Failed(i, e)) => {
                        tracing::warn!(api = self.names[i], error = %e, "a gateway watch failed; retrying");
                        continue;
                    }
                },
            }
            if !self.listed.iter().all(|l| *l) {
                continue;
            }
            // Let a burst of changes land (the watches keep filling the caches meanwhile).
            let settle = tokio::time::sleep(SETTLE);
            tokio::pin!(settle);
            loop {
                tokio::select! {
                    () = &mut settle => return true,
                    s = self.streams.next() => if s.is_none() { return false },
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_a_404_on_listing_counts_as_an_api_not_served() {
        use kube::core::Status;
        use kube::runtime::watcher::Error;
        let status = |code| Box::new(Status { code, ..Status::default() });
        assert!(super::not_served(&Error::InitialListFailed(kube::Error::Api(status(404)))));
        assert!(!super::not_served(&Error::InitialListFailed(kube::Error::Api(status(403)))));
        assert!(!super::not_served(&Error::WatchFailed(kube::Error::Api(status(404)))));
        assert!(!super::not_served(&Error::NoResourceVersion));
    }
}
