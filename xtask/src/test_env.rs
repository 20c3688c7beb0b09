//! `cargo xtask test-env`: installs every tool the tests need into the cache outside the
//! repository (`${APIARY_CACHE:-$HOME/.cache/apiary}`), keyed by version so warm runs only
//! check markers, fills the tools bin, proves the tools work, and says where they are.
//! Besides the programs on the tools bin it installs a primed Keycloak (see `keycloak`) and
//! Jaeger built from source (see `jaeger`).

mod bin;
pub(crate) mod cache;
mod check;
pub mod crds;
mod jaeger;
mod keycloak;
mod kube_mcp;
pub(crate) mod npm;
pub(crate) mod pins;
pub(crate) mod python;

use anyhow::{Result, bail};
use std::path::PathBuf;
use std::time::Instant;

/// Where the prepared tools are.
pub struct Ready {
    pub cache_root: PathBuf,
    pub bin: PathBuf,
}

/// How thoroughly to prove the tools work after installing.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Start every tool (a few seconds): after any install, on CI, or when asked.
    Full,
    /// Full if anything was installed or rewritten or CI is set, else only look that every
    /// entry of the tools bin and what it runs exist.
    Auto,
}

pub fn run(args: &[String]) -> Result<()> {
    let mut check = Check::Auto;
    for arg in args {
        match arg.as_str() {
            "--check" => check = Check::Full,
            "-h" | "--help" => {
                println!(
                    "cargo xtask test-env [--check]\n\n\
                     Installs the test tools into ${{APIARY_CACHE:-$HOME/.cache/apiary}} (skipping\n\
                     what is there) and fills its bin/ directory. After an install, or on CI, it\n\
                     starts every tool to prove it works; otherwise it checks files only.\n  \
                     --check   always start every tool"
                );
                return Ok(());
            }
            other => bail!("unknown argument `{other}` for test-env; see --help"),
        }
    }
    let ready = ensure(check)?;
    println!("tools bin: {}", ready.bin.display());
    println!("export APIARY_TOOLS_BIN={}", ready.bin.display());
    Ok(())
}

/// Installs whatever is missing, writes the tools bin and verifies the tools as `check`
/// says. Prints one timing line per phase to stderr.
pub fn ensure(check: Check) -> Result<Ready> {
    let started = Instant::now();
    let cache = cache::Cache::from_env()?;
    eprintln!("test-env: cache {}", cache.root().display());

    let phase = Instant::now();
    let _lock = cache::RunLock::acquire(&cache.lock_path())?;
    report("lock", phase, String::new());

    let phase = Instant::now();
    let mut installed = 0;
    let (node, fresh) = npm::ensure_node(&cache)?;
    installed += fresh;
    report("node + npm", phase, format!("Node {}, npm {}{}", pins::NODE.version, pins::NPM.version, fresh_note(fresh)));

    let phase = Instant::now();
    let fresh = npm::ensure_tools(&cache, &node)?;
    installed += fresh;
    report("npm tools", phase, format!("{} packages{}", pins::NPM_TOOLS.len(), fresh_note(fresh)));

    let phase = Instant::now();
    npm::warm_npx(&node)?;
    report("npx cache", phase, format!("{} packages runnable offline", npm::NPX_RUN.len()));

    let phase = Instant::now();
    let base = python::find_base()?;
    let base_version = base.version.clone();
    let (venv, fresh) = python::ensure_venv(&cache, base)?;
    installed += usize::from(fresh);
    report(
        "python venv",
        phase,
        format!("Python {base_version}, mcp {}{}", pins::PY_MCP_VERSION, fresh_note(usize::from(fresh))),
    );

    let phase = Instant::now();
    let fresh = python::warm_uvx(&cache, &venv)?;
    installed += fresh;
    report(
        "uv cache",
        phase,
        format!("uv {}, {} servers{}", pins::UV_VERSION, pins::UVX_SERVERS.len(), fresh_note(fresh)),
    );

    let phase = Instant::now();
    let (kc, fresh) = keycloak::ensure(&cache)?;
    installed += usize::from(fresh);
    report(
        "keycloak",
        phase,
        format!(
            "Keycloak {} primed, {}{}",
            pins::KEYCLOAK_VERSION,
            kc.java_home.display(),
            fresh_note(usize::from(fresh))
        ),
    );

    let phase = Instant::now();
    let (jg, fresh) = jaeger::ensure(&cache)?;
    installed += usize::from(fresh);
    report("jaeger", phase, format!("Jaeger {}{}", pins::JAEGER_VERSION, fresh_note(usize::from(fresh))));

    let phase = Instant::now();
    let (kube_mcp, fresh) = kube_mcp::ensure(&cache, &node)?;
    installed += usize::from(fresh);
    report(
        "kube mcp",
        phase,
        format!("kubernetes-mcp-server {}{}", pins::KUBERNETES_MCP_SERVER_VERSION, fresh_note(usize::from(fresh))),
    );

    let phase = Instant::now();
    let written = bin::write_all(&cache, &node, &venv, &kc, &jg.binary, &kube_mcp)?;
    let changed = if written.changed.is_empty() {
        "unchanged".to_owned()
    } else {
        format!("updated {}", written.changed.join(" "))
    };
    report("tools bin", phase, format!("{} entries, {changed}", written.total));
    remove_legacy_layout(&cache);

    let on_ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
    let full = check == Check::Full || installed > 0 || !written.changed.is_empty() || on_ci;
    let phase = Instant::now();
    if full {
        let lines = check::run_all(&cache, &kc, &jg.binary, &kube_mcp)?;
        report("checks", phase, format!("{} tools started and answered", lines.len()));
        for line in lines {
            eprintln!("  {line}");
        }
    } else {
        let count = check::files_present(&written.targets)?;
        report("checks", phase, format!("{count} files present (nothing changed; --check starts every tool)"));
    }
    eprintln!("test-env: ready in {:.1}s", started.elapsed().as_secs_f64());
    Ok(Ready { cache_root: cache.root().to_owned(), bin: cache.bin() })
}

fn fresh_note(installed: usize) -> String {
    match installed {
        0 => " (cached)".to_owned(),
        n => format!(" ({n} installed now)"),
    }
}

fn report(name: &str, since: Instant, detail: String) {
    eprintln!("test-env: {name:<12} {:>7.2}s  {detail}", since.elapsed().as_secs_f64());
}

/// A first, hand-made setup kept its packages under `tools/`; the tools bin no longer
/// points there, so it is only dead weight.
fn remove_legacy_layout(cache: &cache::Cache) {
    let legacy = cache.root().join("tools");
    if legacy.join("node22").is_dir() && legacy.join("conf").is_dir() {
        match std::fs::remove_dir_all(&legacy) {
            Ok(()) => eprintln!("test-env: removed the old layout {}", legacy.display()),
            Err(err) => eprintln!("test-env: could not remove {}: {err}", legacy.display()),
        }
    }
}
