//! Where everything lives: pinned versions, the binary cache, the per-run work dir, the node
//! network namespace and the fixed addresses of the one-node test cluster.

use std::path::{Path, PathBuf};

/// Versions of everything built from the Go module proxy (see docs/k8s-harness.md).
pub const KUBE_VERSION: &str = "v1.37.2";
pub const ETCD_VERSION: &str = "v3.7.3";
pub const COREDNS_VERSION: &str = "v1.15.0";
pub const HELM_VERSION: &str = "v3.22.0";
pub const CRANE_VERSION: &str = "v0.22.1";

/// The network namespace that holds the whole node (control plane, containerd, pods).
pub const NETNS: &str = "apiary-k8s";
pub const NETNS_DIR: &str = "/run/netns";
pub const NODE_NAME: &str = "apiary-node";
pub const NODE_IP: &str = "10.250.0.10";
pub const POD_CIDR: &str = "10.244.0.0/16";
pub const SERVICE_CIDR: &str = "10.96.0.0/16";
pub const DNS_IP: &str = "10.96.0.10";
/// The local registry, on the namespace's loopback (the host cannot see it).
pub const REGISTRY: &str = "127.0.0.1:5000";
/// Upstream registries that containerd resolves through the local registry.
pub const MIRRORED: &[&str] = &["docker.io", "ghcr.io", "registry.k8s.io", "quay.io"];
pub const PAUSE_IMAGE: &str = "registry.k8s.io/pause:3.10";

/// The OIDC issuer the apiserver trusts (seed 004 use case 2): a Keycloak that tests start on
/// the host's 127.0.0.1:8443 with its hostname pinned to this URL. The apiserver reaches it
/// through the `keycloak-forward` pair, so the same URL works inside the node namespace.
pub const OIDC_ISSUER: &str = "https://127.0.0.1:8443/realms/mcp";
/// The host port of that Keycloak (fixed: it is part of the issuer).
pub const OIDC_PORT: u16 = 8443;
/// The audience the apiserver accepts: the seed's exchanged tokens are for this client.
pub const OIDC_AUDIENCE: &str = "mcp-test/kubernetes-mcp";
/// Prefix of the groups from the token's `groups` claim.
pub const OIDC_GROUPS_PREFIX: &str = "oidc:";

/// State outside the work dir. The kubelet and the CNI plugins insist on some fixed paths
/// (pitfall 9); the rest are ours, named `apiary-*` so nothing of a system containerd is touched.
pub const CONTAINERD_ROOT: &str = "/var/lib/apiary-containerd";
pub const CONTAINERD_STATE: &str = "/run/apiary-containerd";
pub const CONTAINERD_SOCK: &str = "/run/apiary-containerd/containerd.sock";
pub const KUBELET_ROOT: &str = "/var/lib/apiary-kubelet";
pub const KUBELET_LOGS: &str = "/var/lib/apiary-kubelet-logs";
pub const FOREIGN_STATE: &[&str] = &["/var/lib/kubelet", "/var/lib/cni", "/var/log/containers"];

/// Global sysctls the kubelet changes (pitfall 8); saved by `up`, restored by `down`.
pub const GLOBAL_SYSCTLS: &[&str] = &["vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops"];

/// Default lifetime of every daemon, in minutes, unless `APIARY_CLUSTER_TTL_MIN` says otherwise.
const DEFAULT_TTL_MIN: u64 = 120;
/// Default host port of the apiserver forwarder, unless `APIARY_CLUSTER_API_PORT` says otherwise.
const DEFAULT_API_PORT: u16 = 16443;

/// Paths and settings resolved from the environment once per command.
#[derive(Debug, Clone)]
pub struct Layout {
    /// `$APIARY_CACHE/k8s/<kube version>/`: the binaries, cached by version.
    pub bin: PathBuf,
    /// The per-run work dir: PKI, configs, etcd data, registry data, logs, pid files.
    pub work: PathBuf,
    pub ttl_min: u64,
    pub api_port: u16,
}

impl Layout {
    pub fn from_env() -> anyhow::Result<Self> {
        let cache = match std::env::var_os("APIARY_CACHE") {
            Some(c) if !c.is_empty() => PathBuf::from(c),
            _ => {
                let home =
                    std::env::var_os("HOME").ok_or_else(|| anyhow::anyhow!("neither APIARY_CACHE nor HOME is set"))?;
                PathBuf::from(home).join(".cache/apiary")
            }
        };
        let work = match std::env::var_os("APIARY_CLUSTER_DIR") {
            Some(w) if !w.is_empty() => PathBuf::from(w),
            _ => PathBuf::from("/tmp/apiary-cluster"),
        };
        let ttl_min = env_number("APIARY_CLUSTER_TTL_MIN", DEFAULT_TTL_MIN)?;
        let api_port = env_number("APIARY_CLUSTER_API_PORT", DEFAULT_API_PORT)?;
        Ok(Self { bin: cache.join("k8s").join(KUBE_VERSION), work, ttl_min, api_port })
    }

    pub fn tool(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }
    pub fn w(&self, rel: &str) -> PathBuf {
        self.work.join(rel)
    }
    /// The kubeconfig for the host: the apiserver through the forwarder on 127.0.0.1.
    pub fn kubeconfig(&self) -> PathBuf {
        self.w("kubeconfig")
    }
    /// The kubeconfig the daemons use inside the namespace (apiserver on 127.0.0.1:6443).
    pub fn node_kubeconfig(&self) -> PathBuf {
        self.w("node.kubeconfig")
    }
    /// The apiserver's `--authentication-config` (one JWT authenticator for [`OIDC_ISSUER`]).
    pub fn authn_config(&self) -> PathBuf {
        self.w("authentication.yaml")
    }
    /// The CA that signs the Keycloak certificate (the cluster CA).
    pub fn oidc_ca(&self) -> PathBuf {
        self.w("pki/ca.crt")
    }
    pub fn keycloak_cert(&self) -> PathBuf {
        self.w("pki/keycloak.crt")
    }
    pub fn keycloak_key(&self) -> PathBuf {
        self.w("pki/keycloak.key")
    }
    pub fn netns_path() -> PathBuf {
        Path::new(NETNS_DIR).join(NETNS)
    }
}

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v.parse().map_err(|_| anyhow::anyhow!("{name}={v:?} is not a valid number")),
        _ => Ok(default),
    }
}
