//! Container images without any registry pull: builds a one-layer docker-archive from a root
//! filesystem (a directory or a tar of one) plus an entrypoint/cmd, and pushes it with crane
//! into the node's local registry, which containerd uses as the mirror of docker.io, ghcr.io,
//! registry.k8s.io and quay.io. So `ghcr.io/stackloklabs/gofetch/server:latest` pushed here is
//! what a Pod naming that image gets.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::cmd;
use super::layout::{Layout, MIRRORED, REGISTRY};

/// Runtime settings baked into an image's config.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
}

/// The repository path and tag of `name` inside the local registry: `ghcr.io/a/b:t` →
/// `a/b:t`, `busybox` → `library/busybox:latest` (docker.io's implicit `library/`).
pub fn mirror_path(name: &str) -> Result<String> {
    if name.contains('@') {
        bail!("image {name:?}: digest references cannot be pushed; use a tag");
    }
    let (host, rest) = match name.split_once('/') {
        Some((first, rest)) if first.contains('.') || first.contains(':') || first == "localhost" => (first, rest),
        _ => ("docker.io", name),
    };
    let host = if host == "index.docker.io" { "docker.io" } else { host };
    if !MIRRORED.contains(&host) {
        bail!(
            "image {name:?}: registry {host} is not mirrored by the test cluster (mirrored: {})",
            MIRRORED.join(", ")
        );
    }
    let (repo, tag) = match rest.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, t),
        _ => (rest, "latest"),
    };
    if repo.is_empty() || tag.is_empty() {
        bail!("image {name:?} has an empty repository or tag");
    }
    let repo = if host == "docker.io" && !repo.contains('/') { format!("library/{repo}") } else { repo.to_string() };
    if !repo.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c)) {
        bail!("image {name:?}: repository {repo:?} must be lowercase letters, digits, . _ - /");
    }
    Ok(format!("{repo}:{tag}"))
}

fn sha256_file(path: &Path) -> Result<String> {
    let out = cmd::stdout(Command::new("sha256sum").arg(path), &format!("hash {}", path.display()))?;
    out.split_whitespace()
        .next()
        .map(str::to_string)
        .with_context(|| format!("sha256sum printed nothing for {}", path.display()))
}

/// True if `path` is a docker-archive (a tar with a top-level manifest.json).
fn is_docker_archive(path: &Path) -> Result<bool> {
    let list = cmd::stdout(Command::new("tar").arg("-tf").arg(path), &format!("list {}", path.display()))?;
    Ok(list.lines().any(|l| l == "manifest.json" || l == "./manifest.json"))
}

/// Builds a docker-archive at `out` holding one gzipped layer made from `source` (a rootfs
/// directory, or a tar of a rootfs), tagged `name`.
pub fn build_archive(source: &Path, name: &str, spec: &Spec, out: &Path) -> Result<()> {
    if spec.entrypoint.is_none() && spec.cmd.is_none() {
        bail!("image {name}: give an entrypoint or a cmd, or the container has nothing to run");
    }
    let tmp = out.with_extension("build");
    cmd::remove(&tmp)?;
    cmd::mkdir(&tmp)?;
    let layer = tmp.join("layer.tar");
    if source.is_dir() {
        // Reproducible: numeric root ownership, sorted names, epoch mtimes.
        cmd::run(
            Command::new("tar")
                .args(["--numeric-owner", "--owner=0", "--group=0", "--sort=name", "--mtime=@0", "-C"])
                .arg(source)
                .arg("-cf")
                .arg(&layer)
                .arg("."),
            &format!("pack the root filesystem {}", source.display()),
        )?;
    } else if source.is_file() {
        std::fs::copy(source, &layer).with_context(|| format!("copy {} to {}", source.display(), layer.display()))?;
    } else {
        bail!("image source {} is neither a directory nor a file", source.display());
    }
    let diff_id = sha256_file(&layer)?;
    // gzip here, once: crane would otherwise gzip on every push.
    cmd::run(Command::new("gzip").args(["-n", "-1", "-f"]).arg(&layer), "compress the layer")?;
    let mut config = serde_json::Map::new();
    if let Some(e) = &spec.entrypoint {
        config.insert("Entrypoint".into(), json!(e));
    }
    if let Some(c) = &spec.cmd {
        config.insert("Cmd".into(), json!(c));
    }
    let mut env = spec.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }
    config.insert("Env".into(), json!(env));
    config.insert("WorkingDir".into(), json!(spec.workdir.clone().unwrap_or_else(|| "/".into())));
    let image_config = json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff_id}")]},
    });
    let cfg_tmp = tmp.join("config.json");
    cmd::write(&cfg_tmp, serde_json::to_vec(&image_config)?)?;
    let cfg_name = format!("{}.json", sha256_file(&cfg_tmp)?);
    std::fs::rename(&cfg_tmp, tmp.join(&cfg_name)).context("name the image config by digest")?;
    let manifest = json!([{"Config": cfg_name, "RepoTags": [name], "Layers": ["layer.tar.gz"]}]);
    cmd::write(&tmp.join("manifest.json"), serde_json::to_vec(&manifest)?)?;
    let partial = out.with_extension("partial");
    cmd::run(
        Command::new("tar").arg("-C").arg(&tmp).arg("-cf").arg(&partial).args([
            "manifest.json",
            &cfg_name,
            "layer.tar.gz",
        ]),
        &format!("write the image archive {}", out.display()),
    )?;
    std::fs::rename(&partial, out).with_context(|| format!("move the archive to {}", out.display()))?;
    cmd::remove(&tmp)
}

/// Pushes a docker-archive into the local registry under the mirror path of `name`.
pub fn push_archive(layout: &Layout, archive: &Path, name: &str) -> Result<()> {
    let target = format!("{REGISTRY}/{}", mirror_path(name)?);
    cmd::run(
        super::cmd::in_ns(layout.tool("crane")).arg("push").arg(archive).arg(&target).env("HOME", layout.w("home")),
        &format!("push {name} (as {target}) into the cluster's registry"),
    )
}

/// Builds (if needed) and pushes `source` as `name`: a docker-archive is pushed as it is, a
/// directory or rootfs tar becomes a one-layer image with `spec`. Keeps the archive at
/// `keep` if given.
pub fn push(layout: &Layout, source: &Path, name: &str, spec: &Spec, keep: Option<&Path>) -> Result<()> {
    mirror_path(name)?;
    if source.is_file() && is_docker_archive(source)? {
        if spec.entrypoint.is_some() || spec.cmd.is_some() || !spec.env.is_empty() {
            bail!(
                "{} is already an image archive; --entrypoint/--cmd/--env apply only to a root filesystem",
                source.display()
            );
        }
        return push_archive(layout, source, name);
    }
    let scratch = layout.w("images/push");
    cmd::mkdir(&scratch)?;
    let out = match keep {
        Some(k) => k.to_path_buf(),
        None => scratch.join(format!("{}.tar", std::process::id())),
    };
    build_archive(source, name, spec, &out)?;
    let pushed = push_archive(layout, &out, name);
    if keep.is_none() {
        cmd::remove(&out)?;
    }
    pushed
}

/// The images every cluster needs, cached in `$APIARY_CACHE/k8s/<version>/images/`.
pub struct SystemImage {
    pub name: String,
    pub archive: PathBuf,
}

/// Builds (when missing) the pause, CoreDNS and busybox images; returns them for pushing.
pub fn system_images(layout: &Layout) -> Result<Vec<SystemImage>> {
    let dir = layout.bin.join("images");
    cmd::mkdir(&dir)?;
    let pause_name = super::layout::PAUSE_IMAGE.to_string();
    let coredns_name = super::config::coredns_image();
    let busybox_name = "docker.io/library/busybox:latest".to_string();
    let pause = dir.join("pause.tar");
    let coredns = dir.join(format!("coredns-{}.tar", super::layout::COREDNS_VERSION));
    let busybox = dir.join("busybox.tar");
    if !pause.is_file() {
        let root = dir.join("rootfs-pause");
        cmd::remove(&root)?;
        cmd::mkdir(&root)?;
        let src = dir.join("pause.c");
        cmd::write(&src, include_str!("../../cluster/pause.c"))?;
        cmd::run(
            Command::new("gcc").args(["-Os", "-static", "-s", "-o"]).arg(root.join("pause")).arg(&src),
            "compile the pause binary (needs gcc and libc6-dev)",
        )?;
        build_archive(&root, &pause_name, &entry(&["/pause"]), &pause)?;
        cmd::remove(&root)?;
        cmd::remove(&src)?;
    }
    if !coredns.is_file() {
        let root = dir.join("rootfs-coredns");
        cmd::remove(&root)?;
        cmd::mkdir(&root)?;
        std::fs::copy(layout.tool("coredns"), root.join("coredns")).context("copy coredns into its image")?;
        build_archive(&root, &coredns_name, &entry(&["/coredns"]), &coredns)?;
        cmd::remove(&root)?;
    }
    if !busybox.is_file() {
        let root = dir.join("rootfs-busybox");
        cmd::remove(&root)?;
        busybox_rootfs(&root)?;
        // Like the real busybox image: a Cmd, no Entrypoint, so `kubectl run -- CMD` runs CMD.
        let spec = Spec { cmd: Some(vec!["sh".into()]), ..Spec::default() };
        build_archive(&root, &busybox_name, &spec, &busybox)?;
        cmd::remove(&root)?;
    }
    Ok(vec![
        SystemImage { name: pause_name, archive: pause },
        SystemImage { name: coredns_name, archive: coredns },
        SystemImage { name: busybox_name, archive: busybox },
    ])
}

fn entry(argv: &[&str]) -> Spec {
    Spec { entrypoint: Some(argv.iter().map(|s| s.to_string()).collect()), ..Spec::default() }
}

/// A root filesystem of Debian's static busybox with a symlink per applet.
pub fn busybox_rootfs(root: &Path) -> Result<()> {
    for d in ["bin", "tmp", "etc", "root"] {
        cmd::mkdir(root.join(d))?;
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).context("copy /bin/busybox (package busybox-static)")?;
    let list = cmd::stdout(Command::new("/bin/busybox").arg("--list"), "list busybox applets")?;
    for applet in list.lines().map(str::trim).filter(|a| !a.is_empty() && *a != "busybox") {
        let link = root.join("bin").join(applet);
        std::os::unix::fs::symlink("busybox", &link).with_context(|| format!("link {}", link.display()))?;
    }
    cmd::write(&root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")?;
    cmd::write(&root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::mirror_path;

    #[test]
    fn mirror_paths_follow_docker_reference_rules() {
        assert_eq!(
            mirror_path("ghcr.io/stackloklabs/gofetch/server:latest").unwrap(),
            "stackloklabs/gofetch/server:latest"
        );
        assert_eq!(mirror_path("mcp/fetch").unwrap(), "mcp/fetch:latest");
        assert_eq!(mirror_path("busybox").unwrap(), "library/busybox:latest");
        assert_eq!(mirror_path("docker.io/library/busybox:1.36").unwrap(), "library/busybox:1.36");
        assert_eq!(mirror_path("registry.k8s.io/pause:3.10").unwrap(), "pause:3.10");
        assert!(mirror_path("example.com/a/b:1").is_err());
        assert!(mirror_path("ghcr.io/a/b@sha256:00").is_err());
        assert!(mirror_path("ghcr.io/A/b").is_err());
    }
}
