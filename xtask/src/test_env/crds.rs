//! `cargo xtask crds`: the CustomResourceDefinitions seed 004 applies that Apiary does not own
//! (Gateway API `Gateway`/`HTTPRoute`/`GatewayClass`, Istio `ServiceEntry`, Kuadrant
//! `AuthPolicy`), taken from their projects' own Go modules through the Go module proxy and
//! cached by version under `$APIARY_CACHE/crds/<key>/`. Prints that directory; the operator's
//! cluster tests apply every `*.yaml` in it next to Apiary's own CRDs (`deploy/crds`).
//!
//! The Kuadrant operator's module is refused by the proxy (403, "not available"), so its
//! AuthPolicy CRD cannot be fetched; a stand-in written here (same group, kind, version, an
//! open schema) lets the seed's AuthPolicy be applied verbatim. Swap it for the real file once
//! the module can be downloaded.

use super::cache::{self, Cache};
use super::pins;
use crate::run_cmd;
use anyhow::{Context, Result, bail};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Downloading one module from the proxy.
const DOWNLOAD_LIMIT: Duration = Duration::from_secs(10 * 60);

/// The Gateway API CRDs seed 004 uses, from the module's `config/crd/standard/`.
const GATEWAY_API_FILES: &[&str] = &[
    "gateway.networking.k8s.io_gatewayclasses.yaml",
    "gateway.networking.k8s.io_gateways.yaml",
    "gateway.networking.k8s.io_httproutes.yaml",
];

/// The CRD picked out of Istio's multi-document `kubernetes/customresourcedefinitions.gen.yaml`.
const ISTIO_CRD: &str = "serviceentries.networking.istio.io";

/// Kuadrant's AuthPolicy, as a stand-in (see the module doc).
const AUTHPOLICY_STAND_IN: &str = "\
# Stand-in for Kuadrant's kuadrant.io_authpolicies.yaml, whose Go module the module proxy
# refuses. Same group, kind and version; the schema keeps every field as written.
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: authpolicies.kuadrant.io
  labels:
    apiary.dev/stand-in: \"true\"
spec:
  group: kuadrant.io
  names:
    kind: AuthPolicy
    listKind: AuthPolicyList
    plural: authpolicies
    singular: authpolicy
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            x-kubernetes-preserve-unknown-fields: true
          status:
            type: object
            x-kubernetes-preserve-unknown-fields: true
";

pub fn run(args: &[String]) -> Result<()> {
    if let Some(arg) = args.first() {
        if arg == "-h" || arg == "--help" {
            println!(
                "cargo xtask crds\n\n\
                 Fetches the third-party CRDs seed 004 applies (Gateway API {}, Istio API {}, a\n\
                 Kuadrant AuthPolicy stand-in) into the cache, once per version, and prints the\n\
                 directory holding their YAML files.",
                pins::GATEWAY_API_VERSION,
                pins::ISTIO_API_VERSION
            );
            return Ok(());
        }
        bail!("unknown argument `{arg}` for crds; see --help");
    }
    let dir = ensure(&Cache::from_env()?)?;
    println!("{}", dir.display());
    Ok(())
}

/// Fills the CRD directory unless these versions are already there; returns it.
pub fn ensure(cache: &Cache) -> Result<PathBuf> {
    let key = cache::stable_hash(&[pins::GATEWAY_API_VERSION, pins::ISTIO_API_VERSION, AUTHPOLICY_STAND_IN]);
    let dir = cache.root().join("crds").join(key);
    let _lock = cache::RunLock::acquire(&cache.root().join(".crds.lock"))?;
    cache::install_once(&dir, |dir| {
        eprintln!("crds: fetching the third-party CRDs from the Go module proxy (once)");
        let gateway = download("sigs.k8s.io/gateway-api", pins::GATEWAY_API_VERSION)?;
        for file in GATEWAY_API_FILES {
            let from = gateway.join("config/crd/standard").join(file);
            fs::copy(&from, dir.join(file)).with_context(|| format!("copy {}", from.display()))?;
        }
        let istio = download("istio.io/api", pins::ISTIO_API_VERSION)?;
        let all = istio.join("kubernetes/customresourcedefinitions.gen.yaml");
        let text = fs::read_to_string(&all).with_context(|| format!("read {}", all.display()))?;
        let doc = pick_crd(&text, ISTIO_CRD).with_context(|| format!("no CRD {ISTIO_CRD} in {}", all.display()))?;
        fs::write(dir.join(format!("{ISTIO_CRD}.yaml")), doc)?;
        fs::write(dir.join("kuadrant.io_authpolicies.yaml"), AUTHPOLICY_STAND_IN)?;
        Ok(())
    })?;
    Ok(dir)
}

/// `go mod download -json module@version`: the extracted module directory.
fn download(module: &str, version: &str) -> Result<PathBuf> {
    let tmp = std::env::temp_dir();
    let mut go = Command::new("go");
    // No go.mod is needed to download; GOTOOLCHAIN=local keeps Go from fetching a toolchain.
    go.args(["mod", "download", "-json", &format!("{module}@{version}")])
        .current_dir(&tmp)
        .env("GOFLAGS", "-mod=mod")
        .env("GOTOOLCHAIN", "local");
    let out = run_cmd::capture(&mut go, DOWNLOAD_LIMIT)?;
    let info: serde_json::Value = serde_json::from_str(&out.stdout).with_context(|| {
        format!("`go mod download -json {module}@{version}` printed no JSON: {}", out.stderr.trim())
    })?;
    if let Some(err) = info["Error"].as_str() {
        bail!("go mod download {module}@{version}: {err}");
    }
    let dir = info["Dir"].as_str().context("`go mod download -json` printed no Dir")?;
    Ok(Path::new(dir).to_path_buf())
}

/// The document of a multi-document YAML text whose `metadata.name` is `name` (a line
/// `  name: <name>` at the metadata's indentation).
fn pick_crd<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let wanted = format!("  name: {name}");
    text.split("\n---\n").find(|doc| doc.lines().any(|l| l == wanted) && doc.contains("kind: CustomResourceDefinition"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_one_document_by_name() {
        let text = "a: 1\n---\nkind: CustomResourceDefinition\nmetadata:\n  name: x.io\n---\nkind: CustomResourceDefinition\nmetadata:\n  name: y.io\nspec: {}\n";
        assert_eq!(pick_crd(text, "y.io"), Some("kind: CustomResourceDefinition\nmetadata:\n  name: y.io\nspec: {}\n"));
        assert_eq!(pick_crd(text, "z.io"), None);
    }
}
