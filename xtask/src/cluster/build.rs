//! Builds the cluster's Go binaries from the Go module proxy into the versioned cache
//! (`$APIARY_CACHE/k8s/<kube version>/`). Each binary has a `<name>.version` stamp beside it and
//! is rebuilt only when it is missing or its stamp names another version.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::cmd;
use super::layout::{COREDNS_VERSION, CRANE_VERSION, ETCD_VERSION, HELM_VERSION, KUBE_VERSION, Layout};

const KUBE_BINS: &[&str] =
    &["kube-apiserver", "kubectl", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"];

/// `go install`-able tools: (binary, module path of the main package, version, extra ldflags).
const INSTALLABLE: &[(&str, &str, &str, &str)] = &[
    ("coredns", "github.com/coredns/coredns", COREDNS_VERSION, ""),
    ("helm", "helm.sh/helm/v3/cmd/helm", HELM_VERSION, "-X helm.sh/helm/v3/internal/version.version="),
    ("crane", "github.com/google/go-containerregistry/cmd/crane", CRANE_VERSION, ""),
];

/// Every binary `up` needs, to check the cache without building.
pub fn all_binaries() -> Vec<(&'static str, &'static str)> {
    let mut v: Vec<_> = KUBE_BINS.iter().map(|b| (*b, KUBE_VERSION)).collect();
    v.push(("etcd", ETCD_VERSION));
    v.push(("etcdctl", ETCD_VERSION));
    v.extend(INSTALLABLE.iter().map(|(b, _, ver, _)| (*b, *ver)));
    v
}

/// Builds whatever is missing from the cache. Returns true if anything was built.
pub fn ensure(layout: &Layout) -> Result<bool> {
    let missing: Vec<_> = all_binaries().into_iter().filter(|(b, v)| !is_cached(layout, b, v)).collect();
    if missing.is_empty() {
        return Ok(false);
    }
    let go = find_go()?;
    cmd::mkdir(&layout.bin)?;
    eprintln!(
        "cluster: building {} into {} (about 11 min on 2 cores when nothing is cached)",
        missing.iter().map(|(b, _)| *b).collect::<Vec<_>>().join(", "),
        layout.bin.display()
    );
    let started = Instant::now();
    let wanted = |b: &str| missing.iter().any(|(m, _)| *m == b);
    let kube: Vec<&str> = KUBE_BINS.iter().copied().filter(|b| wanted(b)).collect();
    if !kube.is_empty() {
        build_kubernetes(layout, &go, &kube)?;
    }
    let etcd: Vec<&str> = ["etcd", "etcdctl"].into_iter().filter(|b| wanted(b)).collect();
    if !etcd.is_empty() {
        build_etcd(layout, &go, &etcd)?;
    }
    for (bin, pkg, ver, ld) in INSTALLABLE {
        if wanted(bin) {
            go_install(layout, &go, bin, pkg, ver, ld)?;
        }
    }
    eprintln!("cluster: binaries built in {:.0} s", started.elapsed().as_secs_f64());
    Ok(true)
}

fn is_cached(layout: &Layout, bin: &str, version: &str) -> bool {
    layout.tool(bin).is_file() && std::fs::read_to_string(stamp(layout, bin)).is_ok_and(|s| s.trim() == version)
}

fn stamp(layout: &Layout, bin: &str) -> PathBuf {
    layout.bin.join(format!("{bin}.version"))
}

fn find_go() -> Result<PathBuf> {
    if cmd::succeeds(Command::new("go").arg("version")) {
        return Ok(PathBuf::from("go"));
    }
    let local = PathBuf::from("/usr/local/go/bin/go");
    if local.is_file() {
        return Ok(local);
    }
    bail!("building the cluster binaries needs Go ≥ 1.26 (`go` is not on PATH nor in /usr/local/go/bin)")
}

/// A `go` command with the settings every build here shares: static binaries, no VCS stamping.
fn go(go: &Path, dir: &Path) -> Command {
    let mut c = Command::new(go);
    c.current_dir(dir).env("CGO_ENABLED", "0").env("GOFLAGS", "-buildvcs=false").env("GOTOOLCHAIN", "local");
    c
}

/// A fresh throwaway module dir under the cache (removed again after a successful build).
fn scratch_module(layout: &Layout, go_bin: &Path, name: &str) -> Result<PathBuf> {
    let dir = layout.bin.join(format!(".build-{name}"));
    cmd::remove(&dir)?;
    cmd::mkdir(&dir)?;
    cmd::run(go(go_bin, &dir).args(["mod", "init", &format!("apiary-{name}-build")]), "go mod init")?;
    cmd::run(go(go_bin, &dir).args(["mod", "edit", "-go=1.26.0"]), "go mod edit -go")?;
    Ok(dir)
}

/// Builds into `<bin>.tmp` and renames, so an interrupted build never leaves a broken binary.
fn build_one(layout: &Layout, go_bin: &Path, dir: &Path, bin: &str, pkg: &str, ld: &str, version: &str) -> Result<()> {
    let t = Instant::now();
    let tmp = layout.bin.join(format!("{bin}.tmp"));
    cmd::run_visible(
        go(go_bin, dir).args(["build", "-trimpath", &format!("-ldflags={ld}"), "-o"]).arg(&tmp).arg(pkg),
        &format!("build {bin} {version}"),
    )?;
    install(layout, &tmp, bin, version)?;
    eprintln!("cluster:   {bin} {version} built in {:.0} s", t.elapsed().as_secs_f64());
    Ok(())
}

fn install(layout: &Layout, tmp: &Path, bin: &str, version: &str) -> Result<()> {
    let dest = layout.tool(bin);
    std::fs::rename(tmp, &dest).with_context(|| format!("move {} to {}", tmp.display(), dest.display()))?;
    cmd::write(&stamp(layout, bin), format!("{version}\n"))
}

/// `k8s.io/kubernetes` replaces every staging module with `./staging/...`, so it cannot be
/// `go install`ed: pin each staging module to the matching `v0.X.Y` in a throwaway module.
fn build_kubernetes(layout: &Layout, go_bin: &Path, bins: &[&str]) -> Result<()> {
    let minor = KUBE_VERSION
        .strip_prefix("v1.")
        .and_then(|r| r.split('.').next())
        .with_context(|| format!("KUBE_VERSION {KUBE_VERSION} is not v1.X.Y"))?;
    let staging = format!("v0.{}", &KUBE_VERSION[3..]);
    let dir = scratch_module(layout, go_bin, "kubernetes")?;
    let module = format!("k8s.io/kubernetes@{KUBE_VERSION}");
    let info = cmd::stdout(
        go(go_bin, &dir).args(["mod", "download", "-json", &module]),
        &format!("download {module} from the Go module proxy"),
    )?;
    let info: serde_json::Value = serde_json::from_str(&info).context("parse `go mod download -json` output")?;
    let gomod = info["GoMod"].as_str().context("`go mod download -json` printed no GoMod path")?;
    let gomod_text = std::fs::read_to_string(gomod).with_context(|| format!("read {gomod}"))?;
    let pins = staging_modules(&gomod_text);
    if pins.is_empty() {
        bail!("found no ./staging replace directives in {gomod}; the build recipe no longer fits {KUBE_VERSION}");
    }
    let mut edit = go(go_bin, &dir);
    edit.args(["mod", "edit"]);
    for m in &pins {
        edit.arg(format!("-replace={m}={m}@{staging}"));
    }
    edit.arg(format!("-require={module}"));
    cmd::run(&mut edit, "pin the Kubernetes staging modules")?;
    let mut get = go(go_bin, &dir);
    get.args(["get", "-tool"]);
    for b in bins {
        get.arg(format!("k8s.io/kubernetes/cmd/{b}"));
    }
    let t = Instant::now();
    cmd::run_visible(&mut get, "fetch the Kubernetes modules")?;
    eprintln!("cluster:   Kubernetes modules fetched in {:.0} s", t.elapsed().as_secs_f64());
    // Without these, every component reports `v0.0.0-master+$Format...`.
    let mut ld = String::from("-s -w");
    for p in ["k8s.io/component-base/version", "k8s.io/client-go/pkg/version"] {
        ld.push_str(&format!(
            " -X {p}.gitVersion={KUBE_VERSION} -X {p}.gitMajor=1 -X {p}.gitMinor={minor} \
             -X {p}.gitTreeState=clean -X {p}.buildDate=2026-01-01T00:00:00Z"
        ));
    }
    for b in bins {
        build_one(layout, go_bin, &dir, b, &format!("k8s.io/kubernetes/cmd/{b}"), &ld, KUBE_VERSION)?;
    }
    cmd::remove(&dir)
}

/// The modules that Kubernetes' go.mod replaces with `./staging/...` directories.
fn staging_modules(gomod: &str) -> Vec<String> {
    gomod
        .lines()
        .filter_map(|line| {
            let mut t: Vec<&str> = line.split_whitespace().collect();
            if t.first() == Some(&"replace") {
                t.remove(0);
            }
            match t.as_slice() {
                [m, "=>", target, ..] if target.starts_with("./staging/") => Some(m.to_string()),
                _ => None,
            }
        })
        .collect()
}

/// etcd's replace directives point at sibling modules that `go get` resolves by itself.
fn build_etcd(layout: &Layout, go_bin: &Path, bins: &[&str]) -> Result<()> {
    let dir = scratch_module(layout, go_bin, "etcd")?;
    let server = format!("go.etcd.io/etcd/server/v3@{ETCD_VERSION}");
    let ctl = format!("go.etcd.io/etcd/etcdctl/v3@{ETCD_VERSION}");
    cmd::run_visible(go(go_bin, &dir).args(["get", "-tool", &server, &ctl]), "fetch the etcd modules")?;
    for b in bins {
        let pkg = match *b {
            "etcd" => "go.etcd.io/etcd/server/v3", // server/v3 is itself package main
            _ => "go.etcd.io/etcd/etcdctl/v3",
        };
        build_one(layout, go_bin, &dir, b, pkg, "-s -w", ETCD_VERSION)?;
    }
    cmd::remove(&dir)
}

fn go_install(layout: &Layout, go_bin: &Path, bin: &str, pkg: &str, version: &str, ld: &str) -> Result<()> {
    let t = Instant::now();
    let gobin = layout.bin.join(format!(".gobin-{bin}"));
    cmd::remove(&gobin)?;
    cmd::mkdir(&gobin)?;
    let ldflags = if ld.is_empty() { "-s -w".to_string() } else { format!("-s -w {ld}{version}") };
    cmd::run_visible(
        go(go_bin, &layout.bin)
            .env("GOBIN", &gobin)
            .args(["install", "-trimpath", &format!("-ldflags={ldflags}")])
            .arg(format!("{pkg}@{version}")),
        &format!("go install {pkg}@{version}"),
    )?;
    install(layout, &gobin.join(bin), bin, version)?;
    cmd::remove(&gobin)?;
    eprintln!("cluster:   {bin} {version} built in {:.0} s", t.elapsed().as_secs_f64());
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::staging_modules;

    #[test]
    fn finds_staging_replaces_in_block_and_single_line_form() {
        let gomod = "module k8s.io/kubernetes\n\
                     replace k8s.io/api => ./staging/src/k8s.io/api\n\
                     replace (\n\
                     \tk8s.io/apimachinery => ./staging/src/k8s.io/apimachinery\n\
                     \tgithub.com/x/y => github.com/x/y v1.0.0\n\
                     )\n";
        assert_eq!(staging_modules(gomod), ["k8s.io/api", "k8s.io/apimachinery"]);
    }
}
