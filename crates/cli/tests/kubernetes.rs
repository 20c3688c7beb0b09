//! `apiary run --runtime kubernetes IMAGE` driven from this machine against the REAL test
//! cluster (the same path seed 003 takes from inside a pod): the server runs as StatefulSet
//! `<name>`, `apiary mcp` reaches its tools through the local proxy, `apiary stop` scales the
//! StatefulSet to zero, `apiary start` brings it back in the same namespace, and `apiary rm`
//! deletes it. Runs only with `APIARY_CLUSTER_TESTS` set (and `KUBECONFIG`, the images pushed).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{Apiary, Out, finish};

const LIMIT: Duration = Duration::from_secs(120);
const NAME: &str = "kfetch";

/// The cached kubectl of the test cluster (`$APIARY_CACHE/k8s/<version>/kubectl`).
fn kubectl_bin() -> PathBuf {
    let cache = match std::env::var_os("APIARY_CACHE") {
        Some(c) if !c.is_empty() => PathBuf::from(c),
        _ => PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/apiary"),
    };
    let mut found: Vec<PathBuf> = std::fs::read_dir(cache.join("k8s"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path().join("kubectl"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop().expect("kubectl in $APIARY_CACHE/k8s: run `cargo xtask cluster build`")
}

fn kubectl(args: &[&str]) -> (bool, String) {
    let out = Command::new("timeout")
        .args(["--kill-after=5", "60"])
        .arg(kubectl_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(if out.status.success() { &out.stdout } else { &out.stderr }).into_owned();
    (out.status.success(), text)
}

/// `apiary ARGS` in namespace `ns` (the Kubernetes runtime reads `POD_NAMESPACE` outside a pod).
fn apiary_in(apiary: &Apiary, ns: &str, args: &[&str]) -> Out {
    let child =
        apiary.command(args).env("POD_NAMESPACE", ns).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    finish(child, LIMIT, &format!("apiary {}", args.join(" ")))
}

fn eventually<T>(what: &str, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + LIMIT;
    loop {
        match probe() {
            Ok(v) => return v,
            Err(last) => {
                assert!(Instant::now() < deadline, "timed out waiting for {what}; last: {last}");
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

fn replicas(ns: &str) -> Result<String, String> {
    match kubectl(&["get", "statefulset", NAME, "-n", ns, "-o", "jsonpath={.spec.replicas}/{.status.readyReplicas}"]) {
        (true, text) => Ok(text),
        (false, err) => Err(err),
    }
}

fn tools_listed(apiary: &Apiary, ns: &str) -> Result<String, String> {
    let out = apiary_in(apiary, ns, &["mcp", "list", "tools", "--server", NAME]);
    if out.code == Some(0) && out.stdout.contains("echo") { Ok(out.stdout) } else { Err(out.stderr) }
}

#[test]
fn stop_scales_the_statefulset_down_start_brings_it_back_and_rm_deletes_it() {
    if std::env::var_os("APIARY_CLUSTER_TESTS").is_none() {
        eprintln!(
            "SKIPPED: set APIARY_CLUSTER_TESTS=1 with KUBECONFIG and the images pushed (cargo xtask image --push)"
        );
        return;
    }
    let ns = format!("apiary-cli-{}", std::process::id());
    let (ok, err) = kubectl(&["create", "namespace", &ns]);
    assert!(ok, "{err}");
    let apiary = Apiary::new();

    apiary_in(&apiary, &ns, &["run", "--runtime", "kubernetes", "--name", NAME, "docker.io/mcp/fetch:latest"]).ok();
    eventually("the tools through the local proxy", || tools_listed(&apiary, &ns));
    assert_eq!(replicas(&ns).unwrap(), "1/1");

    apiary_in(&apiary, &ns, &["stop", NAME]).ok();
    eventually("the StatefulSet scaled to zero", || {
        let r = replicas(&ns)?;
        if r.starts_with("0/") { Ok(()) } else { Err(r) }
    });

    // From a shell without POD_NAMESPACE: the workload remembers its namespace and runtime.
    let child = apiary.command(&["start", NAME]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    finish(child, LIMIT, "apiary start").ok();
    eventually("the tools again after start", || tools_listed(&apiary, &ns));
    assert_eq!(replicas(&ns).unwrap(), "1/1");

    apiary_in(&apiary, &ns, &["rm", NAME]).ok();
    let (exists, _) = kubectl(&["get", "statefulset", NAME, "-n", &ns]);
    assert!(!exists, "apiary rm left StatefulSet {ns}/{NAME}");
    assert!(apiary.wait_no_processes().is_empty(), "a process of the workload is left");
    let _ = kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}
