//! `cluster up`: brings the one-node cluster up (or confirms it is up) and prints the host
//! kubeconfig path. Order: host packages, cached binaries, namespace, PKI, configs, then
//! etcd + registry + containerd, the Keycloak forwarder, the control plane (the apiserver
//! trusting the test Keycloak as an OIDC issuer), the node daemons, CoreDNS, and readiness
//! checks that prove a pod runs and Service names resolve.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::cmd::{self, in_ns};
use super::layout::{
    CONTAINERD_SOCK, DNS_IP, KUBELET_LOGS, KUBELET_ROOT, Layout, NODE_IP, NODE_NAME, OIDC_PORT, POD_CIDR, REGISTRY,
    SERVICE_CIDR,
};
use super::{build, config, down, host, images, netns, pki, procs};

/// Daemons in start order; `down` stops them in reverse.
pub const DAEMONS: &[&str] = &[
    "etcd",
    "registry",
    "containerd",
    "keycloak-forward",
    "keycloak-forward-ns",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "api-forward-ns",
    "api-forward",
    "watchdog",
];

/// Limits for each readiness wait; failures name the daemon logs to read.
const READY_LIMIT: Duration = Duration::from_secs(90);

pub fn run(layout: &Layout) -> Result<()> {
    host::require_root()?;
    host::ensure_packages()?;
    build::ensure(layout)?;
    if is_up(layout) {
        eprintln!("cluster: already up");
        println!("{}", layout.kubeconfig().display());
        return Ok(());
    }
    if netns::exists() || DAEMONS.iter().any(|d| procs::running(layout, d).is_some()) {
        eprintln!("cluster: a partial cluster is left over; taking it down first");
        down::run(layout, false)?;
    }
    let t = Instant::now();
    let result = start(layout);
    if let Err(e) = result {
        eprintln!(
            "cluster: `up` failed after {:.1} s; taking down what started (logs stay in {})",
            t.elapsed().as_secs_f64(),
            layout.w("logs").display()
        );
        // A failed `up` must not leave daemons running until their TTL.
        if let Err(d) = down::run(layout, false) {
            eprintln!("cluster: {d:#}");
        }
        return Err(e);
    }
    eprintln!("cluster: up in {:.1} s", t.elapsed().as_secs_f64());
    println!("{}", layout.kubeconfig().display());
    Ok(())
}

/// Every daemon runs and the apiserver answers `/readyz`.
pub fn is_up(layout: &Layout) -> bool {
    netns::exists()
        && DAEMONS.iter().all(|d| procs::running(layout, d).is_some())
        && cmd::succeeds(kubectl(layout).args(["get", "--raw", "/readyz"]))
}

/// kubectl inside the node namespace, talking to the apiserver directly.
pub fn kubectl(layout: &Layout) -> std::process::Command {
    let mut c = in_ns(layout.tool("kubectl"));
    c.arg("--kubeconfig").arg(layout.node_kubeconfig());
    c
}

fn phase(t: &mut Instant, what: &str) {
    eprintln!("cluster:   {what} ({:.1} s)", t.elapsed().as_secs_f64());
    *t = Instant::now();
}

fn start(layout: &Layout) -> Result<()> {
    let mut t = Instant::now();
    check_port_free(layout.api_port)?;
    // A fresh run: old cluster state goes, PKI and logs of the last run are replaced.
    for dir in ["etcd", "registry", "logs", "run", "images/push"] {
        cmd::remove(layout.w(dir))?;
    }
    cmd::mkdir(&layout.work)?;
    host::save_sysctls(layout)?;
    let system_images = images::system_images(layout)?;
    pki::ensure(layout)?;
    config::write_all(layout)?;
    netns::create()?;
    phase(&mut t, "namespace, PKI, configs and images ready");

    start_etcd(layout)?;
    procs::start(layout, "registry", true, "docker-registry", &["serve".into(), path(&layout.w("registry.yml"))])?;
    procs::start(layout, "containerd", true, "containerd", &["--config".into(), path(&layout.w("containerd.toml"))])?;
    start_keycloak_forwarder(layout)?;
    start_apiserver(layout)?;
    wait(layout, "the local registry to answer", &["registry"], || {
        cmd::succeeds(in_ns(layout.tool("crane")).args(["catalog", REGISTRY]).env("HOME", layout.w("home")))
    })?;
    for img in &system_images {
        images::push_archive(layout, &img.archive, &img.name)?;
    }
    wait(layout, "containerd to answer", &["containerd"], || {
        cmd::succeeds(std::process::Command::new("ctr").args(["--address", CONTAINERD_SOCK, "version"]))
    })?;
    wait(layout, "the apiserver to be ready", &["kube-apiserver", "etcd"], || {
        cmd::succeeds(kubectl(layout).args(["get", "--raw", "/readyz"]))
    })?;
    phase(&mut t, "etcd, registry, containerd and apiserver up");

    start_controllers(layout)?;
    start_node(layout)?;
    start_forwarder(layout)?;
    start_watchdog(layout)?;
    cmd::run(kubectl(layout).arg("apply").arg("-f").arg(layout.w("coredns.yaml")), "apply the CoreDNS manifests")?;
    wait(layout, "the node to be Ready", &["kubelet", "containerd"], || {
        kubectl_out(
            layout,
            &["get", "node", NODE_NAME, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"],
        )
        .is_some_and(|s| s == "True")
    })?;
    phase(&mut t, "node Ready");
    wait(
        layout,
        "CoreDNS to be Ready",
        &["kubelet", "containerd", "kube-controller-manager", "kube-scheduler"],
        || {
            kubectl_out(
                layout,
                &["-n", "kube-system", "get", "deploy", "coredns", "-o", "jsonpath={.status.readyReplicas}"],
            )
            .is_some_and(|s| s == "1")
        },
    )?;
    wait(layout, "the default ServiceAccount", &["kube-controller-manager"], || {
        cmd::succeeds(kubectl(layout).args(["-n", "default", "get", "serviceaccount", "default"]))
    })?;
    // Through the kube-dns ClusterIP: proves kube-proxy's rules and CoreDNS together.
    wait(layout, "cluster DNS through the kube-dns Service", &["kube-proxy"], || {
        cmd::succeeds(in_ns("/bin/busybox").args(["nslookup", "kubernetes.default.svc.cluster.local", DNS_IP]))
    })?;
    wait(layout, "the apiserver through the host forwarder", &["api-forward", "api-forward-ns"], || {
        cmd::succeeds(
            std::process::Command::new(layout.tool("kubectl"))
                .arg("--kubeconfig")
                .arg(layout.kubeconfig())
                .args(["get", "--raw", "/readyz"]),
        )
    })?;
    phase(&mut t, "CoreDNS Ready, Service DNS answers, host kubeconfig works");
    Ok(())
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

fn kubectl_out(layout: &Layout, args: &[&str]) -> Option<String> {
    let out = kubectl(layout).args(args).stdin(std::process::Stdio::null()).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Polls `ready` until it holds; fails if it does not within the limit or if one of
/// `daemons` dies meanwhile, quoting the end of their logs.
fn wait(layout: &Layout, what: &str, daemons: &[&str], mut ready: impl FnMut() -> bool) -> Result<()> {
    let t = Instant::now();
    let mut dead = None;
    let ok = procs::wait_until(READY_LIMIT, || {
        if let Some(d) = daemons.iter().find(|d| procs::running(layout, d).is_none()) {
            dead = Some(*d);
            return true;
        }
        ready()
    });
    let mut logs = String::new();
    for d in daemons {
        logs.push_str(&format!(
            "\n--- end of {} ---\n{}",
            layout.w(&format!("logs/{d}.log")).display(),
            log_tail(layout, d)
        ));
    }
    if let Some(d) = dead {
        bail!("{d} exited while waiting for {what}{logs}");
    }
    if !ok {
        bail!("timed out after {:.0} s waiting for {what}{logs}", t.elapsed().as_secs_f64());
    }
    Ok(())
}

/// The last lines of a daemon's log, for error messages.
pub fn log_tail(layout: &Layout, daemon: &str) -> String {
    let text = std::fs::read_to_string(layout.w(&format!("logs/{daemon}.log"))).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

fn check_port_free(port: u16) -> Result<()> {
    std::net::TcpListener::bind(("127.0.0.1", port)).map(drop).with_context(|| {
        format!(
            "host port 127.0.0.1:{port} (the apiserver forwarder) is taken; set APIARY_CLUSTER_API_PORT to a free port"
        )
    })
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn start_etcd(layout: &Layout) -> Result<()> {
    let mut a = args(&[
        "--name",
        "node",
        "--listen-client-urls",
        "http://127.0.0.1:2379",
        "--advertise-client-urls",
        "http://127.0.0.1:2379",
        "--listen-peer-urls",
        "http://127.0.0.1:2380",
        "--initial-advertise-peer-urls",
        "http://127.0.0.1:2380",
        "--initial-cluster",
        "node=http://127.0.0.1:2380",
        "--listen-metrics-urls",
        "http://127.0.0.1:2381",
        "--unsafe-no-fsync", // a throwaway cluster: speed over durability
        "--log-level",
        "warn",
    ]);
    a.push("--data-dir".into());
    a.push(path(&layout.w("etcd")));
    procs::start(layout, "etcd", true, layout.tool("etcd"), &a).map(drop)
}

fn start_apiserver(layout: &Layout) -> Result<()> {
    let pki = |f: &str| path(&layout.w(&format!("pki/{f}")));
    let a = vec![
        "--etcd-servers=http://127.0.0.1:2379".into(),
        "--bind-address=0.0.0.0".into(),
        format!("--advertise-address={NODE_IP}"),
        "--secure-port=6443".into(),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        format!("--tls-cert-file={}", pki("apiserver.crt")),
        format!("--tls-private-key-file={}", pki("apiserver.key")),
        format!("--client-ca-file={}", pki("ca.crt")),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
        format!("--service-account-key-file={}", pki("sa.pub")),
        format!("--service-account-signing-key-file={}", pki("sa.key")),
        "--authorization-mode=Node,RBAC".into(),
        "--allow-privileged=true".into(),
        format!("--kubelet-client-certificate={}", pki("admin.crt")),
        format!("--kubelet-client-key={}", pki("admin.key")),
        // Dial the kubelet by IP: "apiary-node" resolves nowhere (pitfall 5).
        "--kubelet-preferred-address-types=InternalIP,Hostname".into(),
        // One JWT authenticator for the test Keycloak (OIDC_ISSUER). Structured rather than
        // --oidc-* flags: the file is re-read on change. Without Keycloak the apiserver serves
        // as ever; the authenticator retries its discovery in the background (~every 10 s).
        format!("--authentication-config={}", path(&layout.authn_config())),
    ];
    procs::start(layout, "kube-apiserver", true, layout.tool("kube-apiserver"), &a).map(drop)
}

fn start_controllers(layout: &Layout) -> Result<()> {
    let kc = path(&layout.node_kubeconfig());
    let pki = |f: &str| path(&layout.w(&format!("pki/{f}")));
    let cm = vec![
        format!("--kubeconfig={kc}"),
        format!("--authentication-kubeconfig={kc}"),
        format!("--authorization-kubeconfig={kc}"),
        "--bind-address=127.0.0.1".into(),
        format!("--service-account-private-key-file={}", pki("sa.key")),
        format!("--root-ca-file={}", pki("ca.crt")),
        format!("--cluster-signing-cert-file={}", pki("ca.crt")),
        format!("--cluster-signing-key-file={}", pki("ca.key")),
        "--allocate-node-cidrs=true".into(),
        format!("--cluster-cidr={POD_CIDR}"),
        "--node-cidr-mask-size=24".into(),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        "--use-service-account-credentials=true".into(),
        "--leader-elect=false".into(),
    ];
    procs::start(layout, "kube-controller-manager", true, layout.tool("kube-controller-manager"), &cm)?;
    let sched = vec![
        format!("--kubeconfig={kc}"),
        format!("--authentication-kubeconfig={kc}"),
        format!("--authorization-kubeconfig={kc}"),
        "--bind-address=127.0.0.1".into(),
        "--leader-elect=false".into(),
    ];
    procs::start(layout, "kube-scheduler", true, layout.tool("kube-scheduler"), &sched).map(drop)
}

fn start_node(layout: &Layout) -> Result<()> {
    cmd::mkdir(KUBELET_ROOT)?;
    cmd::mkdir(KUBELET_LOGS)?;
    let kubelet = vec![
        format!("--config={}", path(&layout.w("kubelet.yaml"))),
        format!("--kubeconfig={}", path(&layout.node_kubeconfig())),
        format!("--hostname-override={NODE_NAME}"),
        format!("--node-ip={NODE_IP}"),
        format!("--root-dir={KUBELET_ROOT}"),
    ];
    procs::start(layout, "kubelet", true, layout.tool("kubelet"), &kubelet)?;
    let proxy = vec![format!("--config={}", path(&layout.w("kube-proxy.yaml")))];
    procs::start(layout, "kube-proxy", true, layout.tool("kube-proxy"), &proxy).map(drop)
}

/// Makes the apiserver reachable from the host without any route into the namespace: a
/// socat inside it serves a unix socket (paths are not per-namespace), and a socat on the
/// host's loopback forwards TCP to that socket.
fn start_forwarder(layout: &Layout) -> Result<()> {
    let sock = layout.w("run/api.sock");
    procs::start(
        layout,
        "api-forward-ns",
        true,
        "socat",
        &[format!("UNIX-LISTEN:{},fork,unlink-early,mode=600", path(&sock)), "TCP:127.0.0.1:6443".into()],
    )?;
    procs::start(
        layout,
        "api-forward",
        false,
        "socat",
        &[
            format!("TCP-LISTEN:{},bind=127.0.0.1,reuseaddr,fork", layout.api_port),
            format!("UNIX-CONNECT:{}", path(&sock)),
        ],
    )
    .map(drop)
}

/// Makes the OIDC issuer `https://127.0.0.1:8443` (a Keycloak tests start on the host) reachable
/// from inside the namespace, where the apiserver fetches its discovery and keys: a socat in the
/// namespace listens on its 127.0.0.1:8443 and connects to a unix socket in the work dir, and a
/// socat on the host serves that socket by connecting to the host's 127.0.0.1:8443. TLS passes
/// through untouched, so the Keycloak certificate (SAN 127.0.0.1) verifies on both sides. Nothing
/// listens on the host's port: Keycloak takes it when a test starts one.
fn start_keycloak_forwarder(layout: &Layout) -> Result<()> {
    let sock = layout.w("run/keycloak.sock");
    procs::start(
        layout,
        "keycloak-forward",
        false,
        "socat",
        &[format!("UNIX-LISTEN:{},fork,unlink-early,mode=600", path(&sock)), format!("TCP:127.0.0.1:{OIDC_PORT}")],
    )?;
    procs::start(
        layout,
        "keycloak-forward-ns",
        true,
        "socat",
        &[format!("TCP-LISTEN:{OIDC_PORT},bind=127.0.0.1,reuseaddr,fork"), format!("UNIX-CONNECT:{}", path(&sock))],
    )
    .map(drop)
}

/// Runs `cluster down` when the TTL is up, so pods and shims cannot outlive the run either.
/// It runs a copy of this binary, so rebuilding xtask meanwhile does not matter.
fn start_watchdog(layout: &Layout) -> Result<()> {
    let me = std::env::current_exe().context("find the xtask binary for the watchdog")?;
    let copy = layout.w("run/xtask-watchdog");
    std::fs::copy(&me, &copy).with_context(|| format!("copy {} to {}", me.display(), copy.display()))?;
    let args = vec!["cluster".to_string(), "watchdog".into(), (layout.ttl_min * 60).to_string(), path(&layout.work)];
    procs::start(layout, "watchdog", false, &copy, &args).map(drop)
}
