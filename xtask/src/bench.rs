//! `cargo xtask bench`: the benchmark matrix of issue Foundation 4 in one run. Builds release
//! binaries of Apiary, the fixture server and `apiary-bench`, installs the pinned peers into the
//! cache, then for every cell starts the target's processes, checks them ready with a
//! `tools/list`, loads them with `apiary-bench` (load tool on CPU 0, target on CPU 1), stops
//! them, and finally prints one Markdown table with ratios and the issue's targets checked.
//! A target that fails to start or errors becomes a row saying so.

mod matrix;
mod opts;
mod peers;
mod probe;
mod procs;
mod report;

use crate::run_cmd;
use crate::test_env::pins;
use anyhow::{Context, Result, anyhow, bail};
use matrix::{Bins, Cell};
use report::{Measured, Row};
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::Duration;

/// Time `apiary-bench` may take beyond its warm-up and window (handshakes, a slow target).
const BENCH_SLACK: Duration = Duration::from_secs(120);
const BUILD_LIMIT: Duration = Duration::from_secs(60 * 60);
/// Pause between a target's readiness check and its load.
const SETTLE: Duration = Duration::from_millis(500);

pub fn run(args: &[String]) -> Result<()> {
    let opts = match opts::parse(args)? {
        opts::Parsed::Help => {
            print!("{}", opts::HELP);
            return Ok(());
        }
        opts::Parsed::Run(o) => o,
    };
    let cells = matrix::cells(&opts.grid, &opts.only);
    if cells.is_empty() {
        bail!("--only {:?} matches no target; see `cargo xtask bench --help`", opts.only);
    }
    let workspace = workspace_root()?;
    let target_dir = target_dir(&workspace);
    if opts.build {
        build_release(&workspace, &target_dir)?;
    }
    let release = target_dir.join("release");
    let peers = if cells.iter().any(|c| c.target.is_peer()) { Some(peers::ensure()?) } else { None };
    let missing = |what: &str| Err(format!("{what} not installed (no peer selected)"));
    let bins = Bins {
        apiary: existing(release.join("apiary"))?,
        fixture: existing(release.join("apiary-testkit-server"))?,
        node: peers.as_ref().map_or_else(|| missing("Node 22"), |p| p.node.clone()),
        supergateway: peers.as_ref().map_or_else(|| missing("supergateway"), |p| p.supergateway.clone()),
        npm_mcp_proxy: peers.as_ref().map_or_else(|| missing("mcp-proxy (npm)"), |p| p.npm_mcp_proxy.clone()),
        py_mcp_proxy: peers.as_ref().map_or_else(|| missing("mcp-proxy (PyPI)"), |p| p.py_mcp_proxy.clone()),
        thv: peers.as_ref().map_or_else(|| missing("thv"), |p| p.thv.clone()),
    };
    let load_tool = existing(release.join("apiary-bench"))?;

    let work = std::env::temp_dir().join(format!("apiary-xtask-bench-{}", std::process::id()));
    fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let mut load = LoadRange::default();
    let mut rows = Vec::with_capacity(cells.len());
    eprintln!(
        "bench: {} cells, {} s warm-up + {} s each; logs in {}",
        cells.len(),
        opts.warmup,
        opts.duration,
        work.display()
    );
    for (i, cell) in cells.iter().enumerate() {
        load.sample();
        let dir = work.join(format!("{i:03}-{}-{}s-{}B", cell.target.key(), cell.sessions, cell.payload));
        let row = match measure(cell, &bins, &load_tool, &opts, &dir) {
            Ok((m, raw)) => Row { cell: *cell, outcome: Ok(m), raw: Some(raw) },
            Err(err) => Row { cell: *cell, outcome: Err(format!("{err:#}")), raw: None },
        };
        load.sample();
        match &row.outcome {
            Ok(m) => eprintln!(
                "bench: [{}/{}] {} @{} {} B: {:.0} calls/s, p50 {:.0} µs, {} errors",
                i + 1,
                cells.len(),
                cell.target.label(),
                cell.sessions,
                cell.payload,
                m.calls_per_s,
                m.p50_us,
                m.errors
            ),
            Err(why) => eprintln!(
                "bench: [{}/{}] {} @{} {} B FAILED: {why}",
                i + 1,
                cells.len(),
                cell.target.label(),
                cell.sessions,
                cell.payload
            ),
        }
        rows.push(row);
    }

    let text = document(args, &opts, &rows, &load);
    println!("{text}");
    if let Some(out) = &opts.out {
        let json = serde_json::to_string_pretty(&report::rows_json(&rows))?;
        fs::write(out, format!("{text}\n```json\n{json}\n```\n"))
            .with_context(|| format!("cannot write {}", out.display()))?;
        eprintln!("bench: wrote {}", out.display());
    }
    if rows.iter().all(|r| r.outcome.is_ok()) {
        let _ = fs::remove_dir_all(&work);
    } else {
        eprintln!("bench: logs of the failed cells kept in {}", work.display());
    }
    Ok(())
}

/// One cell: the target's processes started and checked ready, loaded, stopped (by the drops,
/// also on every error path: the proxy first, then the fixture behind it).
fn measure(cell: &Cell, bins: &Bins, load_tool: &Path, opts: &opts::Options, dir: &Path) -> Result<(Measured, Value)> {
    fs::create_dir_all(dir.join("state")).with_context(|| format!("cannot create {}", dir.display()))?;
    let fixture = if cell.target.needs_http_fixture() {
        Some(procs::start(&matrix::fixture_http(bins), dir, "fixture").context("the fixture over HTTP")?)
    } else {
        None
    };
    let port = procs::free_port()?;
    let upstream = fixture.as_ref().map(|f| f.url.as_str());
    let spec = matrix::main_spec(cell.target, bins, port, upstream, &dir.join("state")).map_err(|why| anyhow!(why))?;
    let target = procs::start(&spec, dir, "target")?;
    let mut pids = vec![target.pid()];
    pids.extend(fixture.as_ref().map(procs::Started::pid));
    let json = dir.join("bench.json");
    let limit = Duration::from_secs(opts.warmup + opts.duration) + BENCH_SLACK;
    // The readiness check's DELETE ends a per-session child; let it exit before apiary-bench
    // walks the target's process tree to pin it.
    thread::sleep(SETTLE);
    let mut attempt = 0;
    let out = loop {
        let mut cmd = Command::new(load_tool);
        cmd.args(matrix::bench_args(cell, &target.url, &pids, opts.warmup, opts.duration, &json));
        let out = run_cmd::capture(&mut cmd, limit)?;
        attempt += 1;
        // apiary-bench gives up when a process of the tree exits while it pins them (before
        // any load): that is worth one more try.
        if out.status.success() || attempt > 1 || !out.stderr.contains("cannot pin the target") {
            break out;
        }
        eprintln!("bench: {}: {}; trying again", cell.target.label(), out.stderr.trim());
        thread::sleep(SETTLE);
    };
    if !out.status.success() {
        bail!("apiary-bench failed ({}): {}", out.status, out.stderr.trim());
    }
    let raw: Value =
        serde_json::from_slice(&fs::read(&json).with_context(|| format!("cannot read {}", json.display()))?)
            .context("apiary-bench's JSON")?;
    let measured = report::parse_bench_json(&raw)?;
    drop(target);
    drop(fixture);
    Ok((measured, raw))
}

/// The lowest and highest 1-minute load average seen between cells.
#[derive(Default)]
struct LoadRange {
    seen: Vec<f64>,
}

impl LoadRange {
    fn sample(&mut self) {
        let text = fs::read_to_string("/proc/loadavg").unwrap_or_default();
        if let Some(one) = text.split_whitespace().next().and_then(|v| v.parse().ok()) {
            self.seen.push(one);
        }
    }

    fn describe(&self) -> String {
        let min = self.seen.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self.seen.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if self.seen.is_empty() { "not read".to_owned() } else { format!("{min:.2}–{max:.2}") }
    }
}

/// The table with what a reader needs to redo it: the command, versions, machine load.
fn document(args: &[String], opts: &opts::Options, rows: &[Row], load: &LoadRange) -> String {
    let mut text = String::new();
    let mut command = String::from("cargo xtask bench");
    for a in args {
        command.push(' ');
        command.push_str(a);
    }
    text.push_str(&format!("Command: `{command}`  \n"));
    text.push_str(&format!("Run: {} UTC, commit {}  \n", capture_line("date", &["-u", "+%F %T"]), commit()));
    text.push_str(&format!(
        "Peers: supergateway {}, mcp-proxy (npm) {}, mcp-proxy (PyPI) {}, thv v{}  \n",
        pins::BENCH_SUPERGATEWAY.version,
        pins::BENCH_NPM_MCP_PROXY.version,
        pins::BENCH_PY_MCP_PROXY_VERSION,
        pins::BENCH_THV_VERSION
    ));
    text.push_str(&format!(
        "Windows: {} s warm-up, {} s measured per cell; load average (1 min) during the run: {}; {} CPUs\n\n",
        opts.warmup,
        opts.duration,
        load.describe(),
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    ));
    text.push_str(&report::markdown(rows));
    text.push('\n');
    text.push_str(&report::checks_markdown(&report::checks(rows)));
    text
}

fn commit() -> String {
    capture_line("git", &["rev-parse", "--short", "HEAD"])
}

fn capture_line(program: &str, args: &[&str]) -> String {
    let mut cmd = Command::new(program);
    cmd.args(args);
    match run_cmd::capture(&mut cmd, Duration::from_secs(10)) {
        Ok(out) if out.status.success() => out.stdout.trim().to_owned(),
        _ => "unknown".to_owned(),
    }
}

fn existing(path: PathBuf) -> Result<PathBuf> {
    if !path.is_file() {
        bail!("{} is missing; build it (or drop --no-build)", path.display());
    }
    Ok(path)
}

fn workspace_root() -> Result<PathBuf> {
    // xtask's manifest dir is <workspace>/xtask.
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).context("xtask has no parent directory")
}

/// `CARGO_TARGET_DIR` if set, else `<workspace>/target`.
fn target_dir(workspace: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
        Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    }
}

fn build_release(workspace: &Path, target: &Path) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .env("CARGO_TARGET_DIR", target)
        .args(["build", "--release", "-p", "apiary", "--bin", "apiary"])
        .args(["-p", "apiary-testkit", "--bin", "apiary-testkit-server"])
        .args(["-p", "apiary-bench", "--bin", "apiary-bench"]);
    run_cmd::run_ok(&mut cmd, BUILD_LIMIT).context("release build of apiary, apiary-testkit-server and apiary-bench")
}
