//! The flags of `cargo xtask bench` and their bounds.

use super::matrix::Grid;
use anyhow::{Context, Result, bail};
use std::path::PathBuf;

pub const HELP: &str = "\
cargo xtask bench [--quick] [--duration SECS] [--warmup SECS] [--only SUBSTR]... [--out FILE] [--no-build]

Measures, in one run, the fixture server directly over HTTP, Apiary's proxy (stdio upstream in
--stdio-mode auto, shared and per-session; HTTP upstream), supergateway, mcp-proxy (npm),
mcp-proxy (PyPI) and `thv proxy` in front of the same fixture, at 1, 8 and 64 sessions and
64 B, 1 KiB and 64 KiB payloads, with release builds and apiary-bench (load tool on CPU 0,
targets on CPU 1). Installs the pinned peers into ${APIARY_CACHE:-$HOME/.cache/apiary}/ first.
Prints one Markdown table with ratios against the direct connection and against Apiary, and
the issue's targets met and missed.

  --quick           a few cells (1 and 8 sessions, 64 B) and short windows (2 s, 1 s warm-up)
  --duration SECS   measured window of each cell (default 8; 2 with --quick)
  --warmup SECS     load before each window (default 2; 1 with --quick)
  --only SUBSTR     only targets whose key contains SUBSTR (repeatable): direct,
                    apiary-stdio-auto, apiary-stdio-shared, apiary-stdio-per-session,
                    apiary-http, supergateway, mcp-proxy-npm, mcp-proxy-pypi, thv-proxy
  --out FILE        also write the table, the checks and the JSON of every row to FILE
  --no-build        use the release binaries already built
";

/// Parsed flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub grid: Grid,
    pub duration: u64,
    pub warmup: u64,
    pub only: Vec<String>,
    pub out: Option<PathBuf>,
    pub build: bool,
}

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Run(Options),
    Help,
}

const MAX_SECS: u64 = 600;

pub fn parse(args: &[String]) -> Result<Parsed> {
    let mut quick = false;
    let mut duration = None;
    let mut warmup = None;
    let mut only = Vec::new();
    let mut out = None;
    let mut build = true;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut value = |name: &str| -> Result<String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => it.next().cloned().with_context(|| format!("{name} needs a value")),
            }
        };
        match flag {
            "--quick" => quick = true,
            "--duration" => duration = Some(secs(&value("--duration")?, 1)?),
            "--warmup" => warmup = Some(secs(&value("--warmup")?, 0)?),
            "--only" => {
                let v = value("--only")?;
                if v.is_empty() {
                    bail!("--only needs a non-empty substring");
                }
                only.push(v);
            }
            "--out" => out = Some(PathBuf::from(value("--out")?)),
            "--no-build" => build = false,
            "-h" | "--help" | "help" => return Ok(Parsed::Help),
            other => bail!("unknown argument {other:?} for bench; see `cargo xtask bench --help`"),
        }
    }
    Ok(Parsed::Run(Options {
        grid: if quick { Grid::quick() } else { Grid::full() },
        duration: duration.unwrap_or(if quick { 2 } else { 8 }),
        warmup: warmup.unwrap_or(if quick { 1 } else { 2 }),
        only,
        out,
        build,
    }))
}

fn secs(text: &str, min: u64) -> Result<u64> {
    let n: u64 = text.parse().with_context(|| format!("{text:?} is not a number of seconds"))?;
    if !(min..=MAX_SECS).contains(&n) {
        bail!("{n} s is outside {min}..={MAX_SECS}");
    }
    Ok(n)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Options> {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        match parse(&args)? {
            Parsed::Run(o) => Ok(o),
            Parsed::Help => bail!("help"),
        }
    }

    #[test]
    fn defaults_are_the_full_matrix_with_8_second_windows() {
        let o = run(&[]).unwrap();
        assert_eq!(o, Options { grid: Grid::full(), duration: 8, warmup: 2, only: vec![], out: None, build: true });
    }

    #[test]
    fn quick_shrinks_the_grid_and_windows_unless_told_otherwise() {
        let o = run(&["--quick"]).unwrap();
        assert_eq!((o.grid, o.duration, o.warmup), (Grid::quick(), 2, 1));
        let o = run(&["--quick", "--duration=5", "--warmup", "0"]).unwrap();
        assert_eq!((o.duration, o.warmup), (5, 0));
    }

    #[test]
    fn only_out_and_no_build() {
        let o = run(&["--only", "thv", "--only=apiary", "--out", "/tmp/x.md", "--no-build"]).unwrap();
        assert_eq!(o.only, ["thv", "apiary"]);
        assert_eq!(o.out, Some(PathBuf::from("/tmp/x.md")));
        assert!(!o.build);
    }

    #[test]
    fn bad_input_is_refused() {
        assert!(run(&["--duration", "0"]).is_err());
        assert!(run(&["--duration", "601"]).is_err());
        assert!(run(&["--warmup", "x"]).is_err());
        assert!(run(&["--only"]).is_err());
        assert!(run(&["--only="]).is_err());
        assert!(run(&["--sessions", "3"]).is_err());
        assert_eq!(parse(&["--help".to_owned()]).unwrap(), Parsed::Help);
    }
}
