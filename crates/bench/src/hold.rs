//! `--hold N`: what an idle session costs a server. Opens N sessions (handshake and one
//! `tools/list` each) over a small pool of keep-alive connections, holds them idle, closes them
//! with `DELETE`, and samples the RSS of the `--pid` processes before, while held and after.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::task::JoinSet;

use crate::cli::Args;
use crate::procfs;
use crate::run::RunError;
use crate::session::{Session, Target};

const PROC: &str = "/proc";
/// Most connections open at once: sessions are a header, not a socket, so 10,000 sessions need
/// neither 10,000 sockets here nor on the server.
pub const MAX_CONNECTIONS: u32 = 64;
/// Pause after the last `DELETE` before the last RSS sample, so a server freeing a session in
/// a task of its own has done it.
const SETTLE: Duration = Duration::from_secs(2);

/// What a hold run found.
#[derive(Debug, Serialize)]
pub struct HoldReport {
    pub command_line: Vec<String>,
    pub label: String,
    pub url: String,
    pub sessions_asked: u32,
    /// Sessions whose handshake and `tools/list` both succeeded.
    pub sessions_held: u32,
    pub sessions_closed: u32,
    /// `open:<kind>` and `close:<kind>` counts.
    pub errors_by_kind: BTreeMap<String, u64>,
    pub connections: u32,
    pub hold_s: u64,
    pub pids: Vec<u32>,
    /// Summed VmRSS of the `--pid` processes themselves (not their children), in KiB.
    pub rss_before_kib: u64,
    /// After every session is open and `hold_s` seconds idle.
    pub rss_held_kib: u64,
    pub rss_after_close_kib: u64,
    pub kib_per_session: Option<f64>,
    /// The soft file limit of the load tool after raising it to the hard limit.
    pub nofile_limit: Option<u64>,
}

/// The growth of RSS per held session, in KiB (None without sessions).
pub fn kib_per_session(before_kib: u64, held_kib: u64, sessions: u32) -> Option<f64> {
    (sessions > 0).then(|| (held_kib as f64 - before_kib as f64) / f64::from(sessions))
}

/// How many connections `sessions` sessions share.
pub fn connections_for(sessions: u32) -> u32 {
    sessions.min(MAX_CONNECTIONS)
}

/// The sessions (by index) that connection `k` of `connections` opens: `k`, `k + connections`, …
pub fn share(sessions: u32, connections: u32, k: u32) -> impl Iterator<Item = u32> {
    (k..sessions).step_by(connections.max(1) as usize)
}

/// Raises this process's soft limit of open files to its hard limit; returns the new limit.
pub fn raise_nofile_limit() -> std::io::Result<Option<u64>> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        setrlimit(Resource::Nofile, Rlimit { current: limit.maximum, maximum: limit.maximum })?;
    }
    Ok(getrlimit(Resource::Nofile).current)
}

pub fn markdown_header() -> String {
    "| run | sessions held | errors | RSS idle MiB | RSS at N MiB | RSS after close MiB | KiB per idle session |\n\
     |---|---:|---|---:|---:|---:|---:|"
        .to_owned()
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

pub fn markdown_row(r: &HoldReport) -> String {
    let errors = if r.errors_by_kind.is_empty() {
        "0".to_owned()
    } else {
        r.errors_by_kind.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
    };
    let per = r.kib_per_session.map_or("—".to_owned(), |v| format!("{v:.1}"));
    format!(
        "| {} | {} of {} | {} | {} | {} | {} | {} |",
        r.label,
        r.sessions_held,
        r.sessions_asked,
        errors,
        mib(r.rss_before_kib),
        mib(r.rss_held_kib),
        mib(r.rss_after_close_kib),
        per
    )
}

fn count(errors: &mut BTreeMap<String, u64>, phase: &str, kind: &str) {
    *errors.entry(format!("{phase}:{kind}")).or_insert(0) += 1;
}

/// Opens this connection's share of sessions one after another on one connection; the
/// connection is dropped at the end, so the sessions are held with no socket open.
async fn open_share(
    target: Arc<Target>,
    timeout: Duration,
    indices: Vec<u32>,
) -> (Vec<Session>, BTreeMap<String, u64>) {
    let payload: Arc<str> = Arc::from("");
    let mut connection = None;
    let mut held = Vec::with_capacity(indices.len());
    let mut errors = BTreeMap::new();
    for _ in indices {
        let mut s = Session::new(target.clone(), timeout, false, payload.clone());
        s.use_connection(connection.take());
        let opened = match s.handshake().await {
            Ok(()) => s.list_tools().await,
            Err(e) => Err(e),
        };
        connection = s.take_connection();
        match opened {
            Ok(()) => held.push(s),
            Err(e) => {
                count(&mut errors, "open", e.kind());
                // Close what the server may hold; its own error is already counted.
                if s.is_ready() {
                    s.use_connection(connection.take());
                    let _ = s.close().await;
                    connection = s.take_connection();
                }
            }
        }
    }
    (held, errors)
}

/// Closes these sessions one after another on one fresh connection.
async fn close_share(mut sessions: Vec<Session>) -> (u32, BTreeMap<String, u64>) {
    let mut connection = None;
    let mut closed = 0;
    let mut errors = BTreeMap::new();
    for s in &mut sessions {
        s.use_connection(connection.take());
        match s.close().await {
            Ok(()) => closed += 1,
            Err(e) => count(&mut errors, "close", e.kind()),
        }
        connection = s.take_connection();
    }
    (closed, errors)
}

fn merge(into: &mut BTreeMap<String, u64>, from: BTreeMap<String, u64>) {
    for (k, v) in from {
        *into.entry(k).or_insert(0) += v;
    }
}

/// Runs `--hold N` as `args` describe.
pub async fn hold(args: &Args, sessions: u32, command_line: Vec<String>) -> Result<HoldReport, RunError> {
    let root = Path::new(PROC);
    let nofile_limit = raise_nofile_limit().ok().flatten();
    let target = Arc::new(Target::resolve(&args.url).await?.with_headers(crate::run::request_headers(args)?));
    for &pid in &args.pids {
        procfs::read_stat(root, pid)?;
    }
    let rss = || procfs::rss_kib(root, args.pids.iter().copied());
    let timeout = Duration::from_millis(args.request_timeout_ms);
    let rss_before_kib = rss();

    let connections = connections_for(sessions);
    let mut errors = BTreeMap::new();
    let mut opening = JoinSet::new();
    for k in 0..connections {
        opening.spawn(open_share(target.clone(), timeout, share(sessions, connections, k).collect()));
    }
    let mut shares = Vec::with_capacity(connections as usize);
    while let Some(done) = opening.join_next().await {
        // A share whose task panicked is lost; its sessions count as not held.
        if let Ok((held, errs)) = done {
            merge(&mut errors, errs);
            shares.push(held);
        }
    }
    let sessions_held = u32::try_from(shares.iter().map(Vec::len).sum::<usize>()).unwrap_or(u32::MAX);

    tokio::time::sleep(Duration::from_secs(args.hold_secs)).await;
    let rss_held_kib = rss();

    let mut closing = JoinSet::new();
    for share in shares {
        closing.spawn(close_share(share));
    }
    let mut sessions_closed = 0;
    while let Some(done) = closing.join_next().await {
        if let Ok((closed, errs)) = done {
            sessions_closed += closed;
            merge(&mut errors, errs);
        }
    }
    tokio::time::sleep(SETTLE).await;
    let rss_after_close_kib = rss();

    Ok(HoldReport {
        command_line,
        label: args.label.clone().unwrap_or_else(|| args.url.clone()),
        url: args.url.clone(),
        sessions_asked: sessions,
        sessions_held,
        sessions_closed,
        errors_by_kind: errors,
        connections,
        hold_s: args.hold_secs,
        pids: args.pids.clone(),
        rss_before_kib,
        rss_held_kib,
        rss_after_close_kib,
        kib_per_session: kib_per_session(rss_before_kib, rss_held_kib, sessions_held),
        nofile_limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kib_per_session_is_growth_over_sessions() {
        assert_eq!(kib_per_session(10_240, 20_480, 1_000), Some(10.24));
        assert_eq!(kib_per_session(10_240, 10_240, 5), Some(0.0));
        // RSS may shrink (the allocator gave pages back): a negative figure, not a wrap.
        assert_eq!(kib_per_session(2_000, 1_000, 100), Some(-10.0));
        assert_eq!(kib_per_session(1, 2, 0), None);
    }

    #[test]
    fn sessions_are_shared_evenly_over_at_most_64_connections() {
        assert_eq!(connections_for(0), 0);
        assert_eq!(connections_for(10), 10);
        assert_eq!(connections_for(10_000), 64);
        let shares: Vec<Vec<u32>> = (0..3).map(|k| share(7, 3, k).collect()).collect();
        assert_eq!(shares, vec![vec![0, 3, 6], vec![1, 4], vec![2, 5]]);
        let total: usize = (0..64).map(|k| share(10_000, 64, k).count()).sum();
        assert_eq!(total, 10_000);
        assert_eq!(share(5, 0, 0).count(), 5);
    }

    #[test]
    fn the_row_names_errors_by_kind_and_dashes_a_missing_figure() {
        let mut r = HoldReport {
            command_line: vec![],
            label: "apiary shared".into(),
            url: "http://127.0.0.1:1/mcp".into(),
            sessions_asked: 0,
            sessions_held: 0,
            sessions_closed: 0,
            errors_by_kind: BTreeMap::new(),
            connections: 0,
            hold_s: 1,
            pids: vec![1],
            rss_before_kib: 10_240,
            rss_held_kib: 10_240,
            rss_after_close_kib: 10_752,
            kib_per_session: None,
            nofile_limit: None,
        };
        assert_eq!(markdown_row(&r), "| apiary shared | 0 of 0 | 0 | 10.0 | 10.0 | 10.5 | — |");
        r.sessions_asked = 3;
        r.sessions_held = 2;
        r.errors_by_kind.insert("open:http_status".into(), 1);
        r.kib_per_session = Some(12.26);
        assert!(markdown_row(&r).starts_with("| apiary shared | 2 of 3 | open:http_status 1 | "));
        assert!(markdown_row(&r).ends_with("| 12.3 |"));
        assert_eq!(markdown_header().lines().count(), 2);
    }

    #[test]
    fn the_file_limit_is_raised_to_the_hard_limit() {
        let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum;
        assert_eq!(raise_nofile_limit().unwrap(), hard);
    }
}
