//! A token issuer for benchmarks and manual runs: serves OIDC discovery and a JWKS on
//! 127.0.0.1 (see `apiary_testkit::issuer`), prints one JSON line with its issuer URL and a
//! token for `--sub`/`--audience` valid for `--ttl` seconds, then serves until killed.

use apiary_testkit::issuer::{TestIssuer, now};
use clap::Parser;

#[derive(Parser)]
#[command(about = "A test token issuer on 127.0.0.1 (discovery, JWKS, one printed token)")]
struct Args {
    /// `sub` of the printed token
    #[arg(long, default_value = "bench-user")]
    sub: String,
    /// `aud` of the printed token
    #[arg(long, default_value = "apiary-bench")]
    audience: String,
    /// Lifetime of the printed token, in seconds
    #[arg(long, default_value_t = 3600)]
    ttl: i64,
    /// Groups claim of the printed token (comma-separated)
    #[arg(long, value_delimiter = ',')]
    groups: Vec<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    let issuer = TestIssuer::start().await;
    let mut claims = issuer.claims(&args.sub, &args.audience);
    claims["exp"] = serde_json::json!(now() + args.ttl);
    if !args.groups.is_empty() {
        claims["groups"] = serde_json::json!(args.groups);
    }
    let line =
        serde_json::json!({ "issuer": issuer.issuer(), "jwks_uri": issuer.jwks_url(), "token": issuer.mint(&claims) });
    println!("{line}");
    let _ = tokio::signal::ctrl_c().await;
}
