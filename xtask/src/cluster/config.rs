//! Renders the config templates kept in `xtask/cluster/` (containerd, CNI, kubelet,
//! kube-proxy, registry, mirror hosts, kubeconfigs, CoreDNS manifests, the apiserver's
//! authentication config) into the work dir.

use anyhow::{Context, Result, bail};

use super::cmd;
use super::layout::{
    CONTAINERD_ROOT, CONTAINERD_SOCK, CONTAINERD_STATE, COREDNS_VERSION, DNS_IP, KUBELET_LOGS, Layout, MIRRORED,
    NODE_IP, NODE_NAME, OIDC_AUDIENCE, OIDC_GROUPS_PREFIX, OIDC_ISSUER, PAUSE_IMAGE, POD_CIDR, REGISTRY,
};

const CONTAINERD: &str = include_str!("../../cluster/containerd.toml");
const CNI: &str = include_str!("../../cluster/cni.conflist");
const HOSTS: &str = include_str!("../../cluster/hosts.toml");
const REGISTRY_YML: &str = include_str!("../../cluster/registry.yml");
const KUBELET: &str = include_str!("../../cluster/kubelet.yaml");
const KUBE_PROXY: &str = include_str!("../../cluster/kube-proxy.yaml");
const KUBECONFIG: &str = include_str!("../../cluster/kubeconfig");
const COREDNS: &str = include_str!("../../cluster/coredns.yaml");
const AUTHN: &str = include_str!("../../cluster/authentication.yaml");

/// This node's slice of the pod CIDR (the CNI allocates pod IPs from it).
const NODE_POD_CIDR: &str = "10.244.0.0/24";

pub fn coredns_image() -> String {
    format!("registry.k8s.io/coredns/coredns:{COREDNS_VERSION}")
}

/// Replaces every `{{KEY}}`; fails if a placeholder is left (a typo in a template).
fn render(template: &str, vars: &[(&str, &str)]) -> Result<String> {
    let mut out = template.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("{{{{{k}}}}}"), v);
    }
    if let Some(i) = out.find("{{") {
        let end = out[i..].find("}}").map_or(out.len(), |e| i + e + 2);
        bail!("config template has an unknown placeholder {}", &out[i..end]);
    }
    Ok(out)
}

/// `pem` as a YAML block scalar's lines, indented under `certificateAuthority: |`.
fn indent_pem(pem: &str) -> String {
    pem.lines().filter(|l| !l.trim().is_empty()).map(|l| format!("      {l}")).collect::<Vec<_>>().join("\n")
}

/// Writes every config file `up` needs (after the PKI: the CA goes inline).
pub fn write_all(layout: &Layout) -> Result<()> {
    let w = layout.work.display().to_string();
    let coredns = coredns_image();
    let vars: &[(&str, &str)] = &[
        ("W", &w),
        ("CONTAINERD_ROOT", CONTAINERD_ROOT),
        ("CONTAINERD_STATE", CONTAINERD_STATE),
        ("CONTAINERD_SOCK", CONTAINERD_SOCK),
        ("KUBELET_LOGS", KUBELET_LOGS),
        ("PAUSE_IMAGE", PAUSE_IMAGE),
        ("COREDNS_IMAGE", &coredns),
        ("REGISTRY", REGISTRY),
        ("NODE_IP", NODE_IP),
        ("NODE_NAME", NODE_NAME),
        ("POD_CIDR", POD_CIDR),
        ("NODE_POD_CIDR", NODE_POD_CIDR),
        ("DNS_IP", DNS_IP),
    ];
    let put = |rel: &str, template: &str, extra: &[(&str, &str)]| -> Result<()> {
        let mut all = extra.to_vec();
        all.extend_from_slice(vars);
        let text = render(template, &all).with_context(|| format!("render {rel}"))?;
        cmd::write(&layout.w(rel), text)
    };
    put("containerd.toml", CONTAINERD, &[])?;
    put("cni/10-apiary.conflist", CNI, &[])?;
    put("registry.yml", REGISTRY_YML, &[])?;
    put("kubelet.yaml", KUBELET, &[])?;
    put("kube-proxy.yaml", KUBE_PROXY, &[])?;
    put("coredns.yaml", COREDNS, &[])?;
    for upstream in MIRRORED {
        put(&format!("certs.d/{upstream}/hosts.toml"), HOSTS, &[("UPSTREAM", upstream)])?;
    }
    put("node.kubeconfig", KUBECONFIG, &[("PURPOSE", "inside the node namespace"), ("PORT", "6443")])?;
    let port = layout.api_port.to_string();
    put("kubeconfig", KUBECONFIG, &[("PURPOSE", "for the host, through the forwarder"), ("PORT", &port)])?;
    let ca = std::fs::read_to_string(layout.oidc_ca())
        .with_context(|| format!("read {} for the authentication config", layout.oidc_ca().display()))?;
    let ca = indent_pem(&ca);
    put(
        "authentication.yaml",
        AUTHN,
        &[("ISSUER", OIDC_ISSUER), ("AUDIENCE", OIDC_AUDIENCE), ("GROUPS_PREFIX", OIDC_GROUPS_PREFIX), ("CA_PEM", &ca)],
    )?;
    // crane reads ~/.docker/config.json; an empty HOME of our own keeps it from the user's.
    cmd::mkdir(layout.w("home"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::{AUTHN, indent_pem, render};

    #[test]
    fn render_fills_placeholders_and_rejects_unknown_ones() {
        assert_eq!(render("a {{X}} b {{X}}", &[("X", "1")]).unwrap(), "a 1 b 1");
        let err = render("a {{Y}}", &[("X", "1")]).unwrap_err().to_string();
        assert!(err.contains("{{Y}}"), "{err}");
    }

    #[test]
    fn the_authentication_config_names_the_issuer_and_inlines_the_ca() {
        let ca = indent_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        let vars =
            [("ISSUER", "https://i/realms/mcp"), ("AUDIENCE", "a/b"), ("GROUPS_PREFIX", "oidc:"), ("CA_PEM", &ca)];
        let text = render(AUTHN, &vars).unwrap();
        assert!(text.contains("    url: \"https://i/realms/mcp\"\n"), "{text}");
        assert!(
            text.contains("    certificateAuthority: |\n      -----BEGIN CERTIFICATE-----\n      AAAA\n"),
            "{text}"
        );
        assert!(text.contains("prefix: \"https://i/realms/mcp#\""), "{text}");
        assert!(text.contains("prefix: \"oidc:\""), "{text}");
    }
}
