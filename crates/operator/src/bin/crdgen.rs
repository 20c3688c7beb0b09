//! `crdgen`: writes the CRDs generated from the Rust types into `deploy/crds/` (or checks them
//! with `--check`), so the YAML that users and the chart apply never drifts from the types.

use std::path::PathBuf;
use std::process::ExitCode;

use apiary_operator::crd::render::{self, Drift};

const USAGE: &str = "usage: crdgen [--check] [--out DIR]\n\
  Writes one <plural>.<group>.yaml per CRD into DIR (default: deploy/crds/ in the workspace).\n\
  --check  change nothing; exit 1 if DIR is not up to date";

fn main() -> ExitCode {
    let mut check = false;
    let mut dir: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--check" => check = true,
            "--out" => match args.next() {
                Some(d) => dir = Some(PathBuf::from(d)),
                None => {
                    eprintln!("crdgen: --out needs a directory\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("crdgen: unknown argument {other:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let dir = dir.unwrap_or_else(render::default_dir);
    let result = if check { render::check_dir(&dir) } else { render::write_dir(&dir) };
    match result {
        Ok(drift) if drift.is_empty() => {
            if !check {
                println!("crdgen: {} is up to date", dir.display());
            }
            ExitCode::SUCCESS
        }
        Ok(drift) => {
            for d in &drift {
                match (check, d) {
                    (true, _) => println!("crdgen: {d}"),
                    (false, Drift::Extra(name)) => println!("crdgen: removed {name}"),
                    (false, Drift::Missing(name) | Drift::Stale(name)) => {
                        println!("crdgen: wrote {name}")
                    }
                }
            }
            if check {
                eprintln!("crdgen: run `cargo run -p apiary-operator --bin crdgen` to regenerate");
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("crdgen: {e}");
            ExitCode::FAILURE
        }
    }
}
