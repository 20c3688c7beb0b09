//! `apiary-bench-keycloak`: the testkit's Keycloak (realm `mcp` of ../shared/fixtures/keycloak)
//! for `crates/bench/gateway-bench.sh`, which cannot start it from bash the way the tests do
//! (a primed copy, its own process group, a parent-death signal). Prints one JSON line — the
//! issuer, the token endpoint, the port and the throw-away master-realm admin the testkit
//! creates (a test constant, needed to add the bench's client role) — then keeps Keycloak
//! running until SIGTERM, SIGINT or stdin closing, and stops it.

use std::process::ExitCode;

use apiary_testkit::keycloak::{ADMIN_PASSWORD, ADMIN_USERNAME, Keycloak};
use tokio::io::AsyncReadExt as _;
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    if std::env::args().len() > 1 {
        eprintln!("usage: apiary-bench-keycloak  (no arguments; see crates/bench/README.md)");
        return ExitCode::from(2);
    }
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        eprintln!("apiary-bench-keycloak: cannot install the signal handlers");
        return ExitCode::from(2);
    };
    let keycloak = match Keycloak::start().await {
        Ok(keycloak) => keycloak,
        Err(error) => {
            eprintln!("apiary-bench-keycloak: {error}");
            return ExitCode::from(1);
        }
    };
    let line = serde_json::json!({
        "issuer": keycloak.issuer(),
        "token_endpoint": keycloak.token_endpoint(),
        "port": keycloak.port(),
        "admin_username": ADMIN_USERNAME,
        "admin_password": ADMIN_PASSWORD,
        "log": keycloak.log_path(),
    });
    println!("{line}");
    let mut stdin = tokio::io::stdin();
    let mut byte = [0u8; 1];
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
        // EOF or an error: whoever started us is gone.
        _ = async { while matches!(stdin.read(&mut byte).await, Ok(n) if n > 0) {} } => {}
    }
    drop(keycloak);
    ExitCode::SUCCESS
}
