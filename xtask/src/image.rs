//! `cargo xtask image [--push]`: Apiary's own container images, built from this checkout with no
//! registry pull. Builds `apiary` and the fixture server `apiary-testkit-server` (release),
//! assembles a minimal root filesystem for each (the binary, the shared libraries `ldd` lists,
//! an `/etc/passwd` with the non-root user 65532, a world-writable `/tmp`), and with `--push`
//! hands them to `cargo xtask cluster push-image` under the names the seeds and ToolHive's
//! manifests pull: Apiary as the operator, the proxy runner and `apiary:dev`; the fixture as
//! the gofetch server (HTTP) and `docker.io/mcp/fetch` (stdio).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The non-root user every image names (distroless' `nonroot`).
const NONROOT_UID: u32 = 65532;

/// Names Apiary's image is pushed under; all run `apiary` as the entrypoint.
const APIARY_NAMES: &[&str] = &[
    "ghcr.io/apiary/apiary:latest",
    "ghcr.io/stacklok/toolhive/operator:latest",
    "ghcr.io/stacklok/toolhive/proxyrunner:latest",
    "apiary:dev",
];

/// The fixture server as the seeds' HTTP images (gofetch, osv). A shell wrapper reads
/// `MCP_TRANSPORT` and `MCP_PORT` (the proxy runner sets both, as ToolHive's does) because an
/// image entrypoint cannot expand variables: `stdio` serves stdin/stdout, anything else Streamable
/// HTTP on the port. Arguments given to the container are passed on through `"$@"`.
const FETCH_HTTP_NAMES: &[&str] =
    &["ghcr.io/stackloklabs/gofetch/server:latest", "ghcr.io/stackloklabs/osv-mcp/server:latest"];
const FETCH_HTTP_SCRIPT: &str = "if [ \"${MCP_TRANSPORT:-}\" = stdio ]; then exec apiary-testkit-server --stdio \"$@\"; fi; \
     exec apiary-testkit-server --http \"0.0.0.0:${MCP_PORT:-8080}\" --allow-any-host \"$@\"";

/// The fixture server over stdio, as the seeds' stdio images (seed 003's `docker.io/mcp/fetch`,
/// seed 001's GitHub and filesystem servers).
const FETCH_STDIO_NAMES: &[&str] =
    &["docker.io/mcp/fetch:latest", "ghcr.io/github/github-mcp-server:latest", "docker.io/mcp/filesystem:latest"];

/// Seed 000's `kubectl run --image=curlimages/curl -- curl …`: Debian's curl with its libraries,
/// behind an entrypoint that behaves like the real image's (arguments starting with `-` go to
/// curl, anything else runs as a command).
const CURL_NAME: &str = "docker.io/curlimages/curl:latest";
const CURL_SCRIPT: &str = "case \"$1\" in -*|'') set -- curl \"$@\";; esac; exec \"$@\"";

/// Debian's curl (package curl), copied into the curl stand-in.
const CURL_BINARY: &str = "/usr/bin/curl";

const HELP: &str = "\
cargo xtask image [--push] [--out DIR]

Builds `apiary` and `apiary-testkit-server` (release) and a minimal root filesystem for each
under DIR (default <target>/images): the binary in /usr/local/bin, the shared libraries ldd
lists, /etc/passwd with user 65532, /tmp, CA certificates.

--push  push them into the test cluster's registry (needs `cargo xtask cluster up`, root):
          apiary (entrypoint `apiary`) as
            ghcr.io/stacklok/toolhive/operator:latest
            ghcr.io/stacklok/toolhive/proxyrunner:latest
            apiary:dev
          the fixture server as
            ghcr.io/stackloklabs/gofetch/server:latest, ghcr.io/stackloklabs/osv-mcp/server:latest
              (`apiary-testkit-server --http 0.0.0.0:${MCP_PORT:-8080} --allow-any-host`)
            docker.io/mcp/fetch:latest, ghcr.io/github/github-mcp-server:latest,
            docker.io/mcp/filesystem:latest (`apiary-testkit-server --stdio`)
          this machine's curl as docker.io/curlimages/curl:latest
";

pub fn run(args: &[String]) -> Result<()> {
    let mut push = false;
    let mut out: Option<PathBuf> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--push" => push = true,
            "--out" => out = Some(PathBuf::from(it.next().context("--out needs a directory")?)),
            "help" | "--help" | "-h" => {
                print!("{HELP}");
                return Ok(());
            }
            other => bail!("image: unknown argument {other:?}; run `cargo xtask image --help`"),
        }
    }
    let workspace = workspace_root()?;
    let target = target_dir(&workspace);
    let out = out.unwrap_or_else(|| target.join("images"));
    build_release(&workspace, &target)?;
    let release = target.join("release");

    let apiary_root = out.join("rootfs-apiary");
    assemble(&apiary_root, &[release.join("apiary")], false)?;
    let fixture_root = out.join("rootfs-testkit-server");
    // The HTTP wrapper needs a shell; static busybox brings one without any library.
    assemble(&fixture_root, &[release.join("apiary-testkit-server")], true)?;
    let curl_root = out.join("rootfs-curl");
    assemble(&curl_root, &[PathBuf::from(CURL_BINARY)], true)?;
    eprintln!(
        "image: root filesystems in {}, {} and {}",
        apiary_root.display(),
        fixture_root.display(),
        curl_root.display()
    );

    if !push {
        return Ok(());
    }
    for name in APIARY_NAMES {
        push_image(&apiary_root, name, &json_argv(&["apiary"]))?;
    }
    for name in FETCH_HTTP_NAMES {
        push_image(&fixture_root, name, &json_argv(&["/bin/sh", "-c", FETCH_HTTP_SCRIPT, "apiary-testkit-server"]))?;
    }
    for name in FETCH_STDIO_NAMES {
        push_image(&fixture_root, name, &json_argv(&["apiary-testkit-server", "--stdio"]))?;
    }
    push_image(&curl_root, CURL_NAME, &json_argv(&["/bin/sh", "-c", CURL_SCRIPT, "entrypoint"]))?;
    Ok(())
}

fn workspace_root() -> Result<PathBuf> {
    // xtask's manifest dir is <workspace>/xtask.
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).context("xtask has no parent directory")
}

/// Cargo's target directory as this build sees it: `CARGO_TARGET_DIR` if set, else
/// `<workspace>/target`.
fn target_dir(workspace: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    }
}

fn build_release(workspace: &Path, target: &Path) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace)
        .env("CARGO_TARGET_DIR", target)
        .args(["build", "--release", "-p", "apiary", "--bin", "apiary"])
        .args(["-p", "apiary-testkit", "--bin", "apiary-testkit-server"])
        .status()
        .context("run cargo build --release")?;
    if !status.success() {
        bail!("cargo build --release of apiary and apiary-testkit-server failed ({status})");
    }
    Ok(())
}

/// Lays out a fresh root filesystem at `root` holding `binaries` in /usr/local/bin and every
/// library they load.
fn assemble(root: &Path, binaries: &[PathBuf], with_shell: bool) -> Result<()> {
    if root.exists() {
        std::fs::remove_dir_all(root).with_context(|| format!("remove the old {}", root.display()))?;
    }
    for dir in ["usr/local/bin", "etc", "tmp", "home/nonroot", "bin"] {
        mkdir(&root.join(dir))?;
    }
    set_mode(&root.join("tmp"), 0o1777)?;
    let mut libraries = Vec::new();
    for binary in binaries {
        let name = binary.file_name().with_context(|| format!("{} has no file name", binary.display()))?;
        let inside = root.join("usr/local/bin").join(name);
        copy(binary, &inside)?;
        strip(&inside)?;
        for lib in shared_libraries(binary)? {
            if !libraries.contains(&lib) {
                libraries.push(lib);
            }
        }
    }
    for lib in &libraries {
        // Same path inside as outside: that is where the loader and RUNPATHs look.
        let inside = root.join(lib.strip_prefix("/").unwrap_or(lib));
        if let Some(parent) = inside.parent() {
            mkdir(parent)?;
        }
        copy(lib, &inside)?;
    }
    // /lib64 → usr/lib64 and friends are symlinks on merged-/usr hosts; ldd names the path
    // the loader uses, which we copied verbatim, so no links are needed.
    if with_shell {
        copy(Path::new(busybox()?), &root.join("bin/busybox"))?;
        std::os::unix::fs::symlink("busybox", root.join("bin/sh")).context("link /bin/sh to busybox")?;
    }
    let ca = Path::new("/etc/ssl/certs/ca-certificates.crt");
    if ca.is_file() {
        mkdir(&root.join("etc/ssl/certs"))?;
        copy(ca, &root.join("etc/ssl/certs/ca-certificates.crt"))?;
    }
    write(
        &root.join("etc/passwd"),
        &format!(
            "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:{NONROOT_UID}:{NONROOT_UID}:nonroot:/home/nonroot:/sbin/nologin\n"
        ),
    )?;
    write(&root.join("etc/group"), &format!("root:x:0:\nnonroot:x:{NONROOT_UID}:\n"))?;
    // The image builder packs every file as root (reproducible layers), so ownership would be
    // lost; a sticky world-writable home lets 65532 (or any uid a pod picks) keep its state here.
    set_mode(&root.join("home/nonroot"), 0o1777)?;
    Ok(())
}

/// Drops debug info (the release profile keeps it): a quarter of the size, same code.
fn strip(binary: &Path) -> Result<()> {
    let status = Command::new("strip").arg("--strip-debug").arg(binary).status().context("run strip (binutils)")?;
    if !status.success() {
        bail!("strip {} failed ({status})", binary.display());
    }
    Ok(())
}

fn busybox() -> Result<&'static str> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .context("no static busybox (Debian package busybox-static) for the fixture image's shell")
}

/// The files `ldd` says `binary` loads: `libx.so => /path (0x…)` and the loader's own
/// `/lib64/ld-linux-x86-64.so.2 (0x…)`; the kernel's vDSO has no file and is skipped.
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd").arg(binary).output().context("run ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // A static binary: ldd says so and exits 1.
        if text.contains("not a dynamic executable") || String::from_utf8_lossy(&out.stderr).contains("not a dynamic") {
            return Ok(Vec::new());
        }
        bail!("ldd {} failed: {}", binary.display(), String::from_utf8_lossy(&out.stderr));
    }
    parse_ldd(&text)
}

fn parse_ldd(text: &str) -> Result<Vec<PathBuf>> {
    let mut libs = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.contains("not found") {
            bail!("ldd: a library is missing: {line}");
        }
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
        }
    }
    Ok(libs)
}

fn push_image(root: &Path, name: &str, entrypoint: &str) -> Result<()> {
    let args: Vec<String> = vec![
        "push-image".into(),
        root.display().to_string(),
        name.into(),
        "--entrypoint".into(),
        entrypoint.into(),
        "--env".into(),
        "HOME=/home/nonroot".into(),
    ];
    crate::cluster::run(&args).with_context(|| format!("push {name}"))
}

fn json_argv(argv: &[&str]) -> String {
    serde_json::to_string(argv).unwrap_or_default()
}

fn mkdir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).with_context(|| format!("create {}", path.display()))
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    // fs::copy follows symlinks, so a linked library lands as the real file under its name.
    std::fs::copy(from, to).with_context(|| format!("copy {} to {}", from.display(), to.display()))?;
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {:o} {}", mode, path.display()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::parse_ldd;
    use std::path::PathBuf;

    #[test]
    fn ldd_output_names_libraries_and_the_loader_but_not_the_vdso() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x1)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x2)\n\t/lib64/ld-linux-x86-64.so.2 (0x3)\n";
        assert_eq!(
            parse_ldd(text).unwrap(),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
        assert!(parse_ldd("\tlibfoo.so => not found\n").is_err());
    }
}
