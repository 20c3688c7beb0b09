//! `cargo xtask test`: the one command that checks everything, as CI runs it: the test tools
//! (`test-env`), formatting, clippy with warnings denied, the test cluster (`cluster up` and
//! `image --push`), rootful Podman's API service (`podman up`), then every test with the tools
//! bin, the cluster and the Podman socket exported; Podman is stopped and cleaned after, and the
//! cluster taken down again if this run brought it up. Times each phase, keeps going after a
//! failure so one run shows every problem, and ends with the test counts.

use crate::{run_cmd, test_env};
use anyhow::{Result, bail};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const FMT_LIMIT: Duration = Duration::from_secs(5 * 60);
const CLIPPY_LIMIT: Duration = Duration::from_secs(40 * 60);
/// The release build of the images (cold on a fresh machine) and their push.
const IMAGE_LIMIT: Duration = Duration::from_secs(30 * 60);
/// Default bound for building and running every test; CI allows 90 minutes in all.
const TEST_LIMIT_DEFAULT: Duration = Duration::from_secs(60 * 60);

struct Options {
    lint: bool,
    /// Start the test cluster and run the tests that need it.
    cluster: bool,
    /// Arguments for `cargo test` instead of `--workspace`.
    test_args: Vec<String>,
}

struct Phase {
    name: &'static str,
    took: Duration,
    outcome: String,
    ok: bool,
}

pub fn run(args: &[String]) -> Result<()> {
    let Some(options) = parse(args)? else {
        return Ok(());
    };
    let started = Instant::now();
    let mut phases = Vec::new();
    raise_open_files_limit();

    let phase = Instant::now();
    let ready = match test_env::ensure(test_env::Check::Auto) {
        Ok(ready) => ready,
        Err(err) => {
            phases.push(Phase { name: "test-env", took: phase.elapsed(), outcome: "FAILED".into(), ok: false });
            eprintln!("Error: {err:#}");
            print_summary(&phases, started, None);
            exit_failed();
        }
    };
    phases.push(done("test-env", phase, true, "tools ready".into()));
    let env = cargo_env(&ready)?;
    let root = workspace_root();

    if options.lint {
        let phase = Instant::now();
        println!("\n== cargo fmt --all -- --check");
        let ok = cargo(&root, &env, &["fmt", "--all", "--", "--check"], FMT_LIMIT)?;
        phases.push(done("fmt", phase, ok, verdict(ok)));

        let phase = Instant::now();
        println!("\n== cargo clippy --workspace --all-targets -- -D warnings");
        let clippy = ["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"];
        let ok = cargo(&root, &env, &clippy, CLIPPY_LIMIT)?;
        phases.push(done("clippy", phase, ok, verdict(ok)));
    }

    let mut test_env = env.clone();
    let mut brought_up = false;
    if options.cluster {
        let phase = Instant::now();
        println!("\n== cargo xtask cluster up; cargo xtask image --push");
        brought_up = !crate::cluster::is_up();
        match start_cluster(&root, &env) {
            Ok(kubeconfig) => {
                test_env.push(("KUBECONFIG", kubeconfig.into_os_string()));
                test_env.push(("APIARY_CLUSTER_TESTS", "1".into()));
                test_env.push(("APIARY_REQUIRE_HELM", "1".into()));
                phases.push(done("cluster", phase, true, "up, images pushed".into()));
            }
            Err(err) => {
                eprintln!("Error: {err:#}");
                phases.push(done("cluster", phase, false, "FAILED (the cluster tests are skipped)".into()));
            }
        }
    }

    // Rootful Podman's Docker-API service for the container tests (they fail without it).
    let phase = Instant::now();
    println!("\n== cargo xtask podman up");
    match crate::podman::up() {
        Ok(vars) => {
            test_env.extend(vars.into_iter().map(|(k, v)| (k, OsString::from(v))));
            phases.push(done("podman", phase, true, "API service up".into()));
        }
        Err(err) => {
            eprintln!("Error: {err:#}");
            phases.push(done("podman", phase, false, "FAILED (the container tests fail)".into()));
        }
    }

    let phase = Instant::now();
    let mut test_args = vec!["test".to_owned(), "--no-fail-fast".to_owned()];
    if options.test_args.is_empty() {
        test_args.push("--workspace".to_owned());
    } else {
        test_args.extend(options.test_args.iter().cloned());
    }
    println!("\n== cargo {}", test_args.join(" "));
    let limit = test_limit()?;
    let mut cmd = cargo_command(&root, &test_env);
    cmd.args(&test_args);
    let (status, results) =
        run_cmd::stream_within(&mut cmd, limit, |line| line.trim_start().starts_with("test result:"))?;
    let counts = Counts::sum(&results);
    let (ok, outcome) = match status {
        None => (false, format!("TIMED OUT after {}s (APIARY_TEST_TIMEOUT_SECS)", limit.as_secs())),
        Some(status) => {
            let ok = status.success();
            let binaries = results.len();
            (ok, format!("{} ({binaries} test binaries)", verdict(ok)))
        }
    };
    phases.push(done("test", phase, ok, outcome));

    let phase = Instant::now();
    println!("\n== cargo xtask podman down");
    let result = crate::podman::down();
    if let Err(err) = &result {
        eprintln!("Error: {err:#}");
    }
    phases.push(done("podman-off", phase, result.is_ok(), verdict(result.is_ok())));

    if brought_up {
        let phase = Instant::now();
        println!("\n== cargo xtask cluster down");
        let result = crate::cluster::run(&["down".to_owned()]);
        if let Err(err) = &result {
            eprintln!("Error: {err:#}");
        }
        phases.push(done("down", phase, result.is_ok(), verdict(result.is_ok())));
    }

    print_summary(&phases, started, Some(&counts));
    if phases.iter().any(|p| !p.ok) {
        exit_failed();
    }
    Ok(())
}

/// Ends with status 1 without printing more: the test counts must stay the last line, and
/// returning an error from main would append a backtrace when RUST_BACKTRACE is set.
fn exit_failed() -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    std::process::exit(1)
}

fn parse(args: &[String]) -> Result<Option<Options>> {
    let no_cluster = std::env::var_os("APIARY_NO_CLUSTER").is_some_and(|v| !v.is_empty() && v != "0");
    let mut options = Options { lint: true, cluster: !no_cluster, test_args: Vec::new() };
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--no-lint" => options.lint = false,
            "--no-cluster" => options.cluster = false,
            "--" => {
                options.test_args = rest.cloned().collect();
                break;
            }
            "-h" | "--help" => {
                println!(
                    "cargo xtask test [--no-lint] [--no-cluster] [-- <cargo test arguments>]\n\n\
                     Runs test-env, cargo fmt --check, cargo clippy -D warnings, starts the test\n\
                     cluster and pushes the images (cargo xtask cluster up, image --push), starts\n\
                     Podman's API service (cargo xtask podman up; stopped after), then\n\
                     cargo test --workspace with APIARY_TOOLS_BIN, APIARY_PODMAN_SOCKET, KUBECONFIG and\n\
                     APIARY_CLUSTER_TESTS exported and CARGO_TARGET_DIR defaulting to\n\
                     $APIARY_CACHE/target; takes the cluster down if it started it.\n  \
                     --no-lint    skip fmt and clippy\n  \
                     --no-cluster skip the cluster (its tests then skip; also APIARY_NO_CLUSTER=1)\n  \
                     -- ARGS      pass ARGS to cargo test instead of --workspace (e.g. -p apiary-proxy)\n\
                     Environment: APIARY_TEST_TIMEOUT_SECS bounds the test phase (default 3600)."
                );
                return Ok(None);
            }
            other => bail!("unknown argument `{other}` for test; see --help"),
        }
    }
    Ok(Some(options))
}

/// Environment for every cargo run: the tools and a target directory outside the clone
/// that survives between runs (an existing CARGO_TARGET_DIR wins).
fn cargo_env(ready: &test_env::Ready) -> Result<Vec<(&'static str, OsString)>> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| ready.cache_root.join("target").into_os_string());
    println!("CARGO_TARGET_DIR={}", Path::new(&target).display());
    println!("APIARY_TOOLS_BIN={}", ready.bin.display());
    Ok(vec![
        ("CARGO_TARGET_DIR", target),
        ("APIARY_TOOLS_BIN", ready.bin.clone().into_os_string()),
        ("APIARY_CACHE", ready.cache_root.clone().into_os_string()),
    ])
}

/// Brings the test cluster up (building its binaries on a cold machine) and pushes Apiary's
/// images and the seeds' stand-ins into it; returns the kubeconfig path.
fn start_cluster(root: &Path, env: &[(&'static str, OsString)]) -> Result<PathBuf> {
    crate::cluster::run(&["up".to_owned()])?;
    let mut cmd = cargo_command(root, env);
    cmd.args(["xtask", "image", "--push"]);
    if !run_cmd::status_within(&mut cmd, IMAGE_LIMIT)?.success() {
        bail!("cargo xtask image --push failed");
    }
    crate::cluster::kubeconfig_path()
}

/// The workspace this xtask was built from.
fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_owned()
}

fn cargo_command(root: &Path, env: &[(&'static str, OsString)]) -> Command {
    // `cargo xtask` runs under cargo, which says which cargo it is.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root).envs(env.iter().map(|(k, v)| (k, v)));
    cmd
}

fn cargo(root: &Path, env: &[(&'static str, OsString)], args: &[&str], limit: Duration) -> Result<bool> {
    let mut cmd = cargo_command(root, env);
    cmd.args(args);
    match run_cmd::status_within(&mut cmd, limit) {
        Ok(status) => Ok(status.success()),
        Err(err) => {
            eprintln!("{err:#}");
            Ok(false)
        }
    }
}

fn test_limit() -> Result<Duration> {
    match std::env::var("APIARY_TEST_TIMEOUT_SECS") {
        Ok(text) => match text.trim().parse::<u64>() {
            Ok(secs) if secs > 0 => Ok(Duration::from_secs(secs)),
            _ => {
                bail!("APIARY_TEST_TIMEOUT_SECS must be a positive number of seconds, got {text:?}")
            }
        },
        Err(_) => Ok(TEST_LIMIT_DEFAULT),
    }
}

fn done(name: &'static str, since: Instant, ok: bool, outcome: String) -> Phase {
    Phase { name, took: since.elapsed(), outcome, ok }
}

fn verdict(ok: bool) -> String {
    if ok { "ok" } else { "FAILED" }.to_owned()
}

/// Test counts summed over every `test result:` line of cargo test.
#[derive(Debug, Default, PartialEq)]
struct Counts {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl Counts {
    fn sum(lines: &[String]) -> Self {
        let mut total = Self::default();
        for line in lines {
            for part in line.split([';', '.']) {
                let mut words = part.split_whitespace().rev();
                let (Some(label), Some(number)) = (words.next(), words.next()) else {
                    continue;
                };
                let Ok(n) = number.parse::<u64>() else {
                    continue;
                };
                match label {
                    "passed" => total.passed += n,
                    "failed" => total.failed += n,
                    "ignored" => total.ignored += n,
                    _ => {}
                }
            }
        }
        total
    }
}

fn print_summary(phases: &[Phase], started: Instant, counts: Option<&Counts>) {
    println!("\n== summary");
    for phase in phases {
        println!("{:<9} {:>8.1}s  {}", phase.name, phase.took.as_secs_f64(), phase.outcome);
    }
    println!("{:<9} {:>8.1}s", "total", started.elapsed().as_secs_f64());
    let failed: Vec<&str> = phases.iter().filter(|p| !p.ok).map(|p| p.name).collect();
    if failed.is_empty() {
        println!("result: every phase passed");
    } else {
        println!("result: FAILED in {}", failed.join(", "));
    }
    if let Some(c) = counts {
        // The plain closing line CI reads, summed over all test binaries.
        println!("tests: {} passed, {} failed, {} skipped", c.passed, c.failed, c.ignored);
    }
}

/// The proxy tests open thousands of connections and children in one process; raise the
/// soft limit on open files to the hard limit (a common soft default is 1024) so a busy test
/// does not starve the others. Tests inherit it.
fn raise_open_files_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            eprintln!("note: could not raise the open-files limit: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_cargo_test_result_lines() {
        let lines = vec![
            "test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.31s".to_owned(),
            "test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 4 filtered out; finished in 1.02s"
                .to_owned(),
        ];
        assert_eq!(Counts::sum(&lines), Counts { passed: 15, failed: 2, ignored: 1 });
    }

    #[test]
    fn passes_arguments_after_double_dash_to_cargo_test() {
        let args: Vec<String> =
            ["--no-lint", "--", "-p", "apiary-proxy", "--", "--nocapture"].map(String::from).to_vec();
        let options = parse(&args).ok().flatten().map(|o| (o.lint, o.test_args));
        assert_eq!(
            options,
            Some((false, vec!["-p", "apiary-proxy", "--", "--nocapture"].into_iter().map(String::from).collect()))
        );
    }
}
