//! `cargo xtask cluster …`: a real one-node Kubernetes cluster for integration tests, built
//! from package registries only (Go module proxy + Debian), never from a container registry.
//! The recipe, its measurements and the pitfalls behind each choice are in
//! /work/shared/docs/k8s-harness.md; `cargo xtask cluster help` lists the commands.

mod build;
mod cmd;
mod config;
mod down;
mod host;
mod images;
mod layout;
mod netns;
mod pki;
mod procs;
mod smoke;
mod up;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use layout::Layout;

const HELP: &str = "\
cargo xtask cluster <command>

A one-node Kubernetes (etcd, control plane, containerd, kubelet, kube-proxy, CoreDNS, a local
registry) inside the network namespace `apiary-k8s`. Needs root. The apiserver also trusts the
OIDC issuer https://127.0.0.1:8443/realms/mcp (audience mcp-test/kubernetes-mcp, users
`<issuer>#<preferred_username>`, groups `oidc:<group>`): a Keycloak that a test starts on the
host's 127.0.0.1:8443 with the cluster's keycloak.crt; a socat pair carries it into the namespace.

commands:
  up          build/install what is missing, start the cluster (no-op if it is up), wait until
              the node and CoreDNS are Ready and Service DNS answers; prints the kubeconfig path
  down        stop everything; leaves no process, mount, namespace, iptables chain or cgroup
  clean       down, then delete the work dir
  status      which daemons run, node and pod summary
  kubeconfig  print the host kubeconfig path (apiserver at https://127.0.0.1:$APIARY_CLUSTER_API_PORT)
  env         print shell exports: KUBECONFIG, PATH with kubectl/helm/crane, and the OIDC
              issuer's APIARY_CLUSTER_OIDC_ISSUER, APIARY_CLUSTER_OIDC_CA (trust it for Keycloak),
              APIARY_CLUSTER_KEYCLOAK_CERT and APIARY_CLUSTER_KEYCLOAK_KEY (Keycloak's serving pair)
  kubectl ARGS…   run kubectl against the cluster
  smoke [--keep-up]
              end-to-end check: up (twice), push a locally built server image under a seed
              name, run it behind a Service, resolve and reach it from a client pod, down,
              and verify nothing is left behind
  build       only build the Go binaries into the cache
  push-image SOURCE NAME [--entrypoint ARGV] [--cmd ARGV] [--env K=V]… [--workdir DIR] [--output TAR]
              make SOURCE (a root filesystem directory, a tar of one, or a docker-archive tar)
              an image and push it to the cluster's registry as NAME, e.g.
              ghcr.io/stackloklabs/gofetch/server:latest. NAME may be on docker.io, ghcr.io,
              registry.k8s.io or quay.io; Pods naming it then pull it from the local registry.
              ARGV is a JSON array ('[\"/apiary\",\"serve\"]') or space-separated words.
              --output keeps the built docker-archive.

environment:
  APIARY_CACHE             binaries go to $APIARY_CACHE/k8s/<version>/ (default ~/.cache/apiary)
  APIARY_CLUSTER_DIR       work dir: PKI, configs, logs, etcd and registry data (default /tmp/apiary-cluster)
  APIARY_CLUSTER_TTL_MIN   minutes until a watchdog runs `down` (default 120)
  APIARY_CLUSTER_API_PORT  host port of the apiserver forwarder (default 16443)
";

/// True when the cluster's network namespace exists (the cluster is up or half up).
pub fn is_up() -> bool {
    netns::exists()
}

/// Where `up` writes the host kubeconfig.
pub fn kubeconfig_path() -> Result<PathBuf> {
    Ok(Layout::from_env()?.kubeconfig())
}

pub fn run(args: &[String]) -> Result<()> {
    let mut layout = Layout::from_env()?;
    let Some(command) = args.first() else {
        print!("{HELP}");
        return Ok(());
    };
    let rest = &args[1..];
    // One cluster command that changes state at a time (two test binaries may both call
    // `up`); the lock file sits beside the work dir so `clean` can delete the dir.
    let _lock = match command.as_str() {
        "up" | "down" | "clean" | "smoke" => Some(lock(&layout)?),
        _ => None,
    };
    match command.as_str() {
        "up" => up::run(&layout),
        "down" => down::run(&layout, false),
        "clean" => down::clean(&layout),
        "status" => status(&layout),
        "kubeconfig" => {
            println!("{}", layout.kubeconfig().display());
            Ok(())
        }
        "env" => {
            println!("export KUBECONFIG={}", layout.kubeconfig().display());
            println!("export PATH={}:\"$PATH\"", layout.bin.display());
            for (key, value) in oidc_env(&layout) {
                println!("export {key}={value}");
            }
            Ok(())
        }
        "kubectl" => kubectl(&layout, rest),
        "build" => build::ensure(&layout).map(drop),
        "push-image" => push_image(&layout, rest),
        "smoke" => smoke::run(&layout, rest.iter().any(|a| a == "--keep-up")),
        // Internal: started by `up`; sleeps for the TTL, then takes the cluster down.
        "watchdog" => {
            let (Some(secs), Some(work)) = (rest.first(), rest.get(1)) else {
                bail!("usage: cluster watchdog SECONDS WORK_DIR");
            };
            let secs: u64 = secs.parse().context("watchdog SECONDS")?;
            layout.work = PathBuf::from(work);
            std::thread::sleep(Duration::from_secs(secs));
            eprintln!("cluster: watchdog: TTL of {secs} s is up; taking the cluster down");
            let _lock = lock(&layout)?;
            down::run(&layout, true)
        }
        "help" | "--help" | "-h" => {
            print!("{HELP}");
            Ok(())
        }
        other => bail!("unknown cluster command `{other}`; run `cargo xtask cluster help`"),
    }
}

/// What tests need to start the Keycloak the apiserver trusts (read by
/// `apiary_testkit::kube_oidc`, which falls back to these paths beside `KUBECONFIG`).
fn oidc_env(layout: &Layout) -> Vec<(&'static str, String)> {
    vec![
        ("APIARY_CLUSTER_OIDC_ISSUER", layout::OIDC_ISSUER.to_string()),
        ("APIARY_CLUSTER_OIDC_CA", layout.oidc_ca().display().to_string()),
        ("APIARY_CLUSTER_KEYCLOAK_CERT", layout.keycloak_cert().display().to_string()),
        ("APIARY_CLUSTER_KEYCLOAK_KEY", layout.keycloak_key().display().to_string()),
    ]
}

/// Takes the exclusive cluster lock, waiting for the holder if there is one. Released when
/// the returned file is dropped (or the process exits).
fn lock(layout: &Layout) -> Result<std::fs::File> {
    let path = layout.work.with_extension("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("open the lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            eprintln!("cluster: another cluster command holds {}; waiting", path.display());
            file.lock().with_context(|| format!("lock {}", path.display()))?;
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("lock {}", path.display()));
        }
    }
    Ok(file)
}

fn status(layout: &Layout) -> Result<()> {
    println!("binaries:   {}", layout.bin.display());
    println!("work dir:   {}", layout.work.display());
    println!("kubeconfig: {}", layout.kubeconfig().display());
    println!("namespace:  {}", if netns::exists() { "present" } else { "absent" });
    println!("oidc:       {} (Keycloak on the host's 127.0.0.1:{})", layout::OIDC_ISSUER, layout::OIDC_PORT);
    let mut running = 0;
    for d in up::DAEMONS {
        match procs::running(layout, d) {
            Some(pid) => {
                running += 1;
                println!("  {d:<24} running (pid {pid})");
            }
            None => println!("  {d:<24} stopped"),
        }
    }
    if running == 0 {
        println!("cluster is down");
        return Ok(());
    }
    if up::is_up(layout) {
        println!("cluster is up");
        // Output to stdout: here the listing is the result.
        let _ = up::kubectl(layout).args(["get", "nodes,pods", "-A", "-o", "wide"]).status();
    } else {
        println!("cluster is partly up: run `cargo xtask cluster up` (restarts it) or `down`");
    }
    Ok(())
}

fn kubectl(layout: &Layout, args: &[String]) -> Result<()> {
    let status = std::process::Command::new(layout.tool("kubectl"))
        .arg("--kubeconfig")
        .arg(layout.kubeconfig())
        .args(args)
        .status()
        .with_context(|| format!("run {}", layout.tool("kubectl").display()))?;
    if !status.success() {
        bail!("kubectl {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// An argv given as a JSON array of strings or as space-separated words.
fn parse_argv(flag: &str, value: &str) -> Result<Vec<String>> {
    if value.trim_start().starts_with('[') {
        serde_json::from_str(value).with_context(|| format!("{flag} {value:?} is not a JSON array of strings"))
    } else {
        let words: Vec<String> = value.split_whitespace().map(str::to_string).collect();
        if words.is_empty() {
            bail!("{flag} is empty");
        }
        Ok(words)
    }
}

fn push_image(layout: &Layout, args: &[String]) -> Result<()> {
    let mut positional = Vec::new();
    let mut spec = images::Spec::default();
    let mut output = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |flag: &str| it.next().cloned().with_context(|| format!("{flag} needs a value"));
        match a.as_str() {
            "--entrypoint" => spec.entrypoint = Some(parse_argv(a, &value(a)?)?),
            "--cmd" => spec.cmd = Some(parse_argv(a, &value(a)?)?),
            "--env" => {
                let v = value(a)?;
                if !v.contains('=') {
                    bail!("--env {v:?} must be KEY=VALUE");
                }
                spec.env.push(v);
            }
            "--workdir" => spec.workdir = Some(value(a)?),
            "--output" => output = Some(PathBuf::from(value(a)?)),
            f if f.starts_with("--") => bail!("push-image: unknown option {f}"),
            p => positional.push(p.to_string()),
        }
    }
    let [source, name] = positional.as_slice() else {
        bail!(
            "usage: cargo xtask cluster push-image SOURCE NAME [--entrypoint ARGV] [--cmd ARGV] [--env K=V]… [--workdir DIR] [--output TAR]"
        );
    };
    host::require_root()?;
    if procs::running(layout, "registry").is_none() {
        bail!("the cluster's registry is not running; run `cargo xtask cluster up` first");
    }
    let source = Path::new(source);
    if !source.exists() {
        bail!("push-image: {} does not exist", source.display());
    }
    images::push(layout, source, name, &spec, output.as_deref())?;
    eprintln!("cluster: pushed {name}");
    Ok(())
}
