//! `apiary run --runtime kubernetes IMAGE` driven from this machine against the REAL test
//! cluster (the same path seed 003 takes from inside a pod): the server runs as StatefulSet
//! `<name>`, `apiary mcp` reaches its tools through the local proxy, `apiary stop` scales the
//! StatefulSet to zero, `apiary start` brings it back in the same namespace, and `apiary rm`
//! deletes it. Runs only with `APIARY_CLUSTER_TESTS` set (and `KUBECONFIG`, the images pushed).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::cluster::kubectl_bin;
use support::{Apiary, Out, finish};

const LIMIT: Duration = Duration::from_secs(120);
const NAME: &str = "kfetch";

/// kubectl on the test cluster (`KUBECONFIG` from the environment): whether it succeeded, and
/// its stdout (its stderr when it failed).
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

/// `apiary ARGS` in namespace `ns` with `input` on stdin.
fn apiary_in_with(apiary: &Apiary, ns: &str, args: &[&str], input: &str) -> Out {
    use std::io::Write;
    let mut child = apiary
        .command(args)
        .env("POD_NAMESPACE", ns)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    finish(child, LIMIT, &format!("apiary {}", args.join(" ")))
}

#[test]
fn a_secret_reaches_the_pod_through_a_secret_ref_and_rm_deletes_its_secret() {
    if std::env::var_os("APIARY_CLUSTER_TESTS").is_none() {
        eprintln!(
            "SKIPPED: set APIARY_CLUSTER_TESTS=1 with KUBECONFIG and the images pushed (cargo xtask image --push)"
        );
        return;
    }
    const SNAME: &str = "ksecret";
    let value = "k8s-secret-3b1d77-only-in-the-pod";
    let ns = format!("apiary-cli-secret-{}", std::process::id());
    let (ok, err) = kubectl(&["create", "namespace", &ns]);
    assert!(ok, "{err}");
    let apiary = Apiary::new();
    apiary_in_with(&apiary, &ns, &["secret", "setup"], "").ok();
    apiary_in_with(&apiary, &ns, &["secret", "set", "api-token"], value).ok();
    let args = ["--debug", "run", "--runtime", "kubernetes", "--name", SNAME, "--secret", "api-token,target=MY_TOKEN"];
    apiary_in(&apiary, &ns, &[&args[..], &["docker.io/mcp/fetch:latest"]].concat()).ok();

    // The server in the pod sees the value.
    let seen = eventually("the secret in the pod", || {
        let out =
            apiary_in(&apiary, &ns, &["mcp", "call", "env", "--server", SNAME, "--args", r#"{"name":"MY_TOKEN"}"#]);
        if out.code == Some(0) { Ok(out.stdout.trim().to_owned()) } else { Err(out.stderr) }
    });
    assert_eq!(seen, value);
    // The StatefulSet references it; it holds no value.
    let (ok, set) = kubectl(&["get", "statefulset", SNAME, "-n", &ns, "-o", "yaml"]);
    assert!(ok, "{set}");
    assert!(!set.contains(value), "the StatefulSet holds the value");
    assert!(set.contains("secretKeyRef") && set.contains("ksecret-apiary-secrets"), "{set}");
    let (ok, labels) =
        kubectl(&["get", "secret", "ksecret-apiary-secrets", "-n", &ns, "-o", "jsonpath={.metadata.labels}"]);
    assert!(ok && labels.contains("apiary"), "{labels}");
    // Nothing of Apiary's on this machine holds it: state, logs, list, export.
    let mut files = Vec::new();
    let mut dirs = vec![apiary.state_dir()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if std::fs::read(&path).is_ok_and(|b| b.windows(value.len()).any(|w| w == value.as_bytes())) {
                files.push(path);
            }
        }
    }
    assert!(files.is_empty(), "files holding the secret: {files:?}");
    for args in [&["list"][..], &["export", SNAME], &["export", SNAME, "--format", "k8s"]] {
        let out = apiary_in(&apiary, &ns, args);
        assert!(!out.stdout.contains(value) && !out.stderr.contains(value), "apiary {args:?} shows the secret");
    }

    apiary_in(&apiary, &ns, &["rm", SNAME]).ok();
    let (exists, _) = kubectl(&["get", "secret", "ksecret-apiary-secrets", "-n", &ns]);
    assert!(!exists, "apiary rm left the Secret");
    let (exists, _) = kubectl(&["get", "statefulset", SNAME, "-n", &ns]);
    assert!(!exists, "apiary rm left the StatefulSet");
    assert!(apiary.wait_no_processes().is_empty(), "a process of the workload is left");
    let _ = kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}
