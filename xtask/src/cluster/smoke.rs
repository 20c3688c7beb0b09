//! `cluster smoke`: the end-to-end proof of the harness. Brings the cluster up (twice, to
//! show `up` is idempotent), builds a busybox-based web server image locally and pushes it
//! under a seed name (`ghcr.io/stackloklabs/gofetch/server:latest`), runs it behind a
//! Service with the default pull policy (so the mirror must serve it), runs a client pod
//! that resolves `kubernetes.default.svc.cluster.local` and fetches the page through the
//! Service's DNS name, then takes the cluster down and checks that nothing is left.
//! Every kubectl call goes through the host kubeconfig, the way tests will use it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::layout::Layout;
use super::{cmd, down, images, procs, up};

const NS: &str = "apiary-smoke";
const SERVER_IMAGE: &str = "ghcr.io/stackloklabs/gofetch/server:latest";
const LIMIT: Duration = Duration::from_secs(60);

/// `keep_up`: leave the cluster running afterwards (skips the `down` and leak check).
pub fn run(layout: &Layout, keep_up: bool) -> Result<()> {
    let t = Instant::now();
    up::run(layout)?;
    let first_up = t.elapsed();
    let t = Instant::now();
    up::run(layout)?;
    let second_up = t.elapsed();
    eprintln!("smoke: up took {:.1} s, a second up {:.1} s", first_up.as_secs_f64(), second_up.as_secs_f64());

    let t = Instant::now();
    let checked = exercise(layout);
    let exercised = t.elapsed();
    if let Err(e) = &checked {
        eprintln!("smoke: FAILED: {e:#}");
        let _ = cmd::run_visible(kubectl(layout).args(["get", "pods", "-A", "-o", "wide"]), "list pods");
        let _ =
            cmd::run_visible(kubectl(layout).args(["-n", NS, "describe", "pod", "client"]), "describe the client pod");
    } else {
        eprintln!("smoke: image push, server, DNS and Service checks passed in {:.1} s", exercised.as_secs_f64());
    }
    if keep_up {
        return checked;
    }
    let t = Instant::now();
    let downed = down::run(layout, false);
    eprintln!("smoke: down took {:.1} s", t.elapsed().as_secs_f64());
    checked?;
    downed?;
    let left = down::leftovers(layout, false);
    if !left.is_empty() {
        bail!("left behind after down:\n  {}", left.join("\n  "));
    }
    eprintln!("smoke: nothing left behind (processes, mounts, namespaces, cgroups, iptables, state dirs)");
    Ok(())
}

fn kubectl(layout: &Layout) -> Command {
    let mut c = Command::new(layout.tool("kubectl"));
    c.arg("--kubeconfig").arg(layout.kubeconfig());
    c
}

fn kubectl_apply(layout: &Layout, manifest: &str) -> Result<()> {
    let mut child = kubectl(layout)
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("start kubectl apply")?;
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().context("kubectl apply has no stdin")?;
        stdin.write_all(manifest.as_bytes()).context("write the manifest to kubectl")?;
    }
    let out = child.wait_with_output().context("wait for kubectl apply")?;
    if !out.status.success() {
        bail!("kubectl apply failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn exercise(layout: &Layout) -> Result<()> {
    // A page with a token unique to this run, so a stale image could not pass the check.
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let token = format!("apiary-smoke-{}-{nanos}", std::process::id());
    let root = layout.w("images/smoke-rootfs");
    cmd::remove(&root)?;
    images::busybox_rootfs(&root)?;
    cmd::write(&root.join("www/index.html"), format!("{token}\n"))?;
    let spec = images::Spec {
        entrypoint: Some(["/bin/httpd", "-f", "-p", "8080", "-h", "/www"].map(String::from).to_vec()),
        ..images::Spec::default()
    };
    images::push(layout, &root, SERVER_IMAGE, &spec, None)?;
    cmd::remove(&root)?;

    let _ = cmd::succeeds(kubectl(layout).args(["delete", "namespace", NS, "--wait=true", "--timeout=60s"]));
    // No imagePullPolicy: `:latest` means Always, so the image must come from the mirror.
    kubectl_apply(
        layout,
        &format!(
            r#"
apiVersion: v1
kind: Namespace
metadata: {{name: {NS}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {NS}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: {SERVER_IMAGE}
        ports: [{{containerPort: 8080}}]
        readinessProbe:
          tcpSocket: {{port: 8080}}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {NS}}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
"#
        ),
    )?;
    cmd::run(
        kubectl(layout).args(["-n", NS, "rollout", "status", "deploy/web", "--timeout=60s"]),
        "wait for the web Deployment",
    )?;
    // busybox from the mirror too (docker.io/library/busybox:latest, pushed by `up`).
    // The fetch is retried for a few seconds: kube-proxy programs a new Service's rules about
    // a second after its endpoints appear, and until then connections are refused.
    let script = format!(
        "nslookup kubernetes.default.svc.cluster.local || exit 1; \
         for i in 1 2 3 4 5 6 7 8 9 10; do \
           printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 web.{NS}.svc.cluster.local 80 | grep -q . && break; \
           echo \"attempt $i: no answer from web.{NS}\"; sleep 0.5; \
         done; \
         printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 web.{NS}.svc.cluster.local 80"
    );
    cmd::run(
        kubectl(layout).args([
            "-n",
            NS,
            "run",
            "client",
            "--image=busybox",
            "--restart=Never",
            "--command",
            "--",
            "sh",
            "-c",
            &script,
        ]),
        "start the client pod",
    )?;
    let mut phase = String::new();
    procs::wait_until(LIMIT, || {
        phase = cmd::stdout(
            kubectl(layout).args(["-n", NS, "get", "pod", "client", "-o", "jsonpath={.status.phase}"]),
            "pod phase",
        )
        .unwrap_or_default();
        phase == "Succeeded" || phase == "Failed"
    });
    let logs = cmd::stdout(kubectl(layout).args(["-n", NS, "logs", "client"]), "read the client's logs")
        .unwrap_or_else(|e| format!("(no logs: {e:#})"));
    if phase != "Succeeded" {
        bail!("client pod ended in phase {phase:?}; its output:\n{logs}");
    }
    if !logs.contains("10.96.0.1") {
        bail!("kubernetes.default.svc.cluster.local did not resolve to 10.96.0.1:\n{logs}");
    }
    if !logs.contains(&token) {
        bail!("the Service did not return the page with this run's token {token}:\n{logs}");
    }
    let registry_log = std::fs::read_to_string(layout.w("logs/registry.log")).unwrap_or_default();
    if !registry_log.contains("/v2/stackloklabs/gofetch/server/manifests/latest?ns=ghcr.io") {
        bail!("the registry log shows no pull of {SERVER_IMAGE} through the ghcr.io mirror");
    }
    eprintln!("smoke: client output:\n{}", logs.trim());
    Ok(())
}
