//! `apiary-testkit-server`: the fixture MCP server as a process, for tests that need a real
//! server over stdio or Streamable HTTP (conformance runs, proxy tests, crash recovery).
//!
//! `--stdio` speaks newline-delimited JSON-RPC on stdin/stdout. `--http 127.0.0.1:PORT` serves
//! `/mcp` and prints the bound URL (`http://127.0.0.1:<port>/mcp`) as the first stdout line.
//! `--oidc ADDR` serves instead an OIDC issuer's discovery and JWKS (no MCP): the issuer URL comes
//! from `APIARY_TESTKIT_ISSUER` and the JWK Set (`{"keys": [...]}`, public keys only) from
//! `APIARY_TESTKIT_JWKS`, so a test can run it as a pod and mint tokens with the private key.
//! `--raw-echo` serves instead, on stdio, a hand-rolled server whose one tool answers with the
//! exact bytes it received (for byte-exactness tests of a proxy).
//! `--modern-only` serves only 2026-07-28 (`initialize` is refused with -32022);
//! `--protocol-version REV` behaves as a server of that one legacy revision.
//! Logs go to stderr (filter with `RUST_LOG`).

use std::io::Write as _;
use std::net::SocketAddr;

use anyhow::Context as _;
use apiary_testkit::server::{LEGACY_REVISIONS, ServerOptions, serve_http, serve_raw_echo_stdio, serve_stdio};
use clap::{ArgGroup, Parser};

/// Apiary's fixture MCP server.
#[derive(Debug, Parser)]
#[command(name = "apiary-testkit-server", version, about)]
#[command(group(ArgGroup::new("mode").required(true).args(["stdio", "http", "oidc", "raw_echo"])))]
struct Args {
    /// Serve one MCP connection on stdin/stdout.
    #[arg(long)]
    stdio: bool,
    /// Serve Streamable HTTP at /mcp on this address (port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// Serve OIDC discovery and a JWKS on this address (see the module docs).
    #[arg(long, value_name = "ADDR")]
    oidc: Option<SocketAddr>,
    /// Serve the byte-recording echo server on stdin/stdout instead of the fixture server
    /// (its `raw_echo` tool answers with the exact line it received).
    #[arg(long)]
    raw_echo: bool,
    /// Answer only protocol revisions 2024-11-05..2025-11-25 (via initialize); refuse server/discover.
    #[arg(long, conflicts_with_all = ["modern_only", "protocol_version"])]
    legacy_only: bool,
    /// Answer only 2026-07-28: `initialize` is refused with -32022 (a modern-only server).
    #[arg(long, conflicts_with = "protocol_version")]
    modern_only: bool,
    /// Behave as a server of this one legacy revision: answer `initialize` with it whatever
    /// the client asked, refuse server/discover (2024-11-05, 2025-03-26, 2025-06-18, 2025-11-25).
    #[arg(long, value_name = "REVISION", value_parser = parse_revision)]
    protocol_version: Option<&'static str>,
    /// With --http, accept any Host header (default: loopback names only, against DNS
    /// rebinding). No effect with --stdio.
    #[arg(long)]
    allow_any_host: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,apiary_testkit=info")),
        )
        .init();
    let options = ServerOptions {
        legacy_only: args.legacy_only,
        modern_only: args.modern_only,
        protocol_version: args.protocol_version,
        allow_any_host: args.allow_any_host,
    };
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the tokio runtime")?;
    runtime.block_on(async move {
        match (args.http, args.oidc) {
            (Some(addr), _) => run_http(addr, options).await,
            (None, Some(addr)) => run_oidc(addr).await,
            (None, None) if args.raw_echo => serve_raw_echo_stdio().await.context("serving the raw echo on stdio"),
            (None, None) => serve_stdio(options).await.context("serving stdio"),
        }
    })
}

fn parse_revision(s: &str) -> Result<&'static str, String> {
    apiary_testkit::server::legacy_revision(s)
        .ok_or_else(|| format!("not a legacy revision: {s} (one of {})", LEGACY_REVISIONS.join(", ")))
}

async fn run_http(addr: SocketAddr, options: ServerOptions) -> anyhow::Result<()> {
    let server = serve_http(addr, options).await.with_context(|| format!("serving HTTP on {addr}"))?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{}", server.url()).context("printing the URL")?;
        stdout.flush().context("printing the URL")?;
    }
    tracing::info!(url = server.url(), "listening");
    let stop = server.shutdown_token();
    tokio::spawn(async move {
        shutdown_signal().await;
        stop.cancel();
    });
    server.wait().await.context("serving HTTP")
}

async fn run_oidc(addr: SocketAddr) -> anyhow::Result<()> {
    let issuer = std::env::var("APIARY_TESTKIT_ISSUER").context("APIARY_TESTKIT_ISSUER is not set")?;
    let jwks: serde_json::Value =
        serde_json::from_str(&std::env::var("APIARY_TESTKIT_JWKS").context("APIARY_TESTKIT_JWKS is not set")?)
            .context("APIARY_TESTKIT_JWKS is not JSON")?;
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
    tracing::info!(%issuer, %addr, "serving OIDC discovery and JWKS");
    let app = apiary_testkit::issuer::static_issuer_router(issuer, jwks);
    axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await.context("serving OIDC")
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the server");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
