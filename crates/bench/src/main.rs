//! `apiary-bench`: a closed-loop load generator for MCP servers and proxies over Streamable
//! HTTP. It prints one Markdown table row (and optionally a JSON file) with calls/s, latency
//! percentiles, errors, and the CPU per call and RSS of the processes given with `--pid`.

mod affinity;
mod answer;
mod cli;
mod hold;
mod procfs;
mod quickack;
mod run;
mod session;
mod stats;

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    let command_line = redacted(std::env::args().collect());
    // Before the runtime starts, so every thread it creates inherits the mask.
    if let Some(cpus) = &args.pin_self
        && let Err(error) = affinity::pin_current_thread(cpus)
    {
        eprintln!("apiary-bench: cannot pin to CPUs {cpus}: {error}");
        return ExitCode::from(2);
    }
    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(args.threads as usize);
        builder.enable_all().build()
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("apiary-bench: cannot start the runtime: {error}");
            return ExitCode::from(2);
        }
    };
    if let Some(sessions) = args.hold {
        let report = runtime.block_on(hold::hold(&args, sessions, command_line));
        drop(runtime);
        return print_hold(&args, report);
    }
    let report = match runtime.block_on(run::run(&args, command_line)) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("apiary-bench: {error}");
            return ExitCode::from(2);
        }
    };
    drop(runtime);

    let mut out = std::io::stdout().lock();
    if args.header {
        let _ = writeln!(out, "{}", stats::markdown_header());
    }
    let _ = writeln!(out, "{}", stats::markdown_row(&report));
    if let Some(path) = &args.json
        && let Err(error) = write_json(path, &report)
    {
        eprintln!("apiary-bench: cannot write {}: {error}", path.display());
        return ExitCode::from(2);
    }
    if report.errors > 0 {
        eprintln!("apiary-bench: {} errors: {:?}", report.errors, report.errors_by_kind);
    }
    ExitCode::SUCCESS
}

/// Prints the `--hold` row (and JSON); errors of single sessions are in the row, not the exit code.
fn print_hold(args: &cli::Args, report: Result<hold::HoldReport, run::RunError>) -> ExitCode {
    let report = match report {
        Ok(report) => report,
        Err(error) => {
            eprintln!("apiary-bench: {error}");
            return ExitCode::from(2);
        }
    };
    let mut out = std::io::stdout().lock();
    if args.header {
        let _ = writeln!(out, "{}", hold::markdown_header());
    }
    let _ = writeln!(out, "{}", hold::markdown_row(&report));
    if let Some(path) = &args.json
        && let Err(error) = write_json(path, &report)
    {
        eprintln!("apiary-bench: cannot write {}: {error}", path.display());
        return ExitCode::from(2);
    }
    if !report.errors_by_kind.is_empty() {
        eprintln!("apiary-bench: errors: {:?}", report.errors_by_kind);
    }
    ExitCode::SUCCESS
}

fn write_json(path: &std::path::Path, report: &impl serde::Serialize) -> std::io::Result<()> {
    let mut json = serde_json::to_vec_pretty(report).map_err(std::io::Error::other)?;
    json.push(b'\n');
    std::fs::write(path, json)
}

/// The command line as the report records it: request header values (tokens) left out.
fn redacted(args: Vec<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut hide_next = false;
    for a in args {
        if hide_next {
            out.push(a.split_once(':').map_or("<redacted>".to_owned(), |(n, _)| format!("{n}: <redacted>")));
            hide_next = false;
        } else if let Some(v) = a.strip_prefix("--request-header=") {
            out.push(format!("--request-header={}", v.split_once(':').map_or("<redacted>", |(n, _)| n)));
        } else {
            hide_next = a == "--request-header";
            out.push(a);
        }
    }
    out
}
