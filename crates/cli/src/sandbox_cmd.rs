//! `apiary __sandbox-exec --spec JSON -- PROGRAM ARGS`: the hidden re-exec entry of the process
//! sandbox. A subcommand of the one binary rather than argv0 dispatch, so there is nothing extra to
//! install or symlink; it is dispatched before the async runtime starts, because creating a user
//! namespace needs a single-threaded process.

use std::ffi::OsString;
use std::process::ExitCode;

use apiary_runtime::sandbox::{SandboxSpec, exec};

/// Arguments of the helper (written by the process launcher, not by people).
#[derive(Debug, clap::Args)]
pub struct SandboxExecArgs {
    /// The sandbox to build, as JSON
    #[arg(long, value_name = "JSON")]
    spec: String,

    /// The server program (an absolute path) and its arguments
    #[arg(last = true, required = true, value_name = "PROGRAM")]
    command: Vec<OsString>,
}

/// Builds the sandbox and runs the server in it; exits with the server's code.
pub fn run(args: &SandboxExecArgs) -> ExitCode {
    let spec: SandboxSpec = match serde_json::from_str(&args.spec) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("apiary sandbox: invalid --spec: {e}");
            return ExitCode::from(exec::SETUP_FAILED as u8);
        }
    };
    let Some((program, rest)) = args.command.split_first() else {
        eprintln!("apiary sandbox: no program given after --");
        return ExitCode::from(exec::SETUP_FAILED as u8);
    };
    let code = exec::run(&spec, program, rest);
    ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX))
}
