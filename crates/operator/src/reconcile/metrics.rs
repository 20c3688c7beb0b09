//! Counters of the operator, rendered as Prometheus text on `/metrics` (names.md §5).

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Process-wide counters, shared by the MCPServer and MCPRemoteProxy controllers; cheap to bump
/// from every reconcile.
#[derive(Debug, Default)]
pub struct Metrics {
    reconciles: AtomicU64,
    failures: AtomicU64,
    leader: AtomicBool,
}

impl Metrics {
    /// One reconcile started.
    pub fn reconcile(&self) {
        self.reconciles.fetch_add(1, Ordering::Relaxed);
    }

    /// One reconcile failed.
    pub fn failure(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether this process holds the leader lease.
    pub fn set_leader(&self, leader: bool) {
        self.leader.store(leader, Ordering::Relaxed);
    }

    /// Whether this process holds the leader lease.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Relaxed)
    }

    /// Reconciles started so far.
    pub fn reconciles(&self) -> u64 {
        self.reconciles.load(Ordering::Relaxed)
    }

    /// Prometheus text exposition (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        };
        metric(
            "apiary_operator_reconciles_total",
            "counter",
            "Reconciles started (MCPServer and MCPRemoteProxy).",
            self.reconciles.load(Ordering::Relaxed),
        );
        metric(
            "apiary_operator_reconcile_errors_total",
            "counter",
            "Reconciles that failed and were retried (MCPServer and MCPRemoteProxy).",
            self.failures.load(Ordering::Relaxed),
        );
        metric(
            "apiary_operator_leader",
            "gauge",
            "1 while this process holds the leader lease.",
            u64::from(self.is_leader()),
        );
        out
    }
}
