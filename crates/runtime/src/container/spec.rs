//! What one container of a workload looks like: its image, arguments, environment, published
//! port, mounts and hardening, derived from the RunConfig and turned into the Engine API's
//! create body. Pure data, so every rule is tested without an engine.

use std::collections::HashMap;

use apiary_config::{NetworkAccess, RunConfig, Source};
use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};

use super::ContainerError;
use super::egress::{NO_PROXY, PROXY_URL};
use crate::sandbox::egress::AllowList;

/// Label every Apiary container carries, with the workload's name as its value; `apiary stop`
/// and `rm` find leftovers by it.
pub const WORKLOAD_LABEL: &str = "dev.apiary.workload";

/// Resource limits of one container (cgroup v1 and v2 both honour these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Memory in bytes; swap is set to the same value, so none is added.
    pub memory_bytes: i64,
    /// Most processes and threads.
    pub pids: i64,
    /// CPU time in billionths of a CPU (1_000_000_000 = one CPU).
    pub nano_cpus: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { memory_bytes: 512 * 1024 * 1024, pids: 256, nano_cpus: 1_000_000_000 }
    }
}

/// The network a container gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    /// Loopback only (profile `none`).
    None,
    /// The engine's default network (a bridge with outbound NAT; profile `network`).
    Default,
    /// Loopback only, in a namespace where the egress proxy enforcing this allow-list listens
    /// (profile `allow_host`/`allow_port`; see [`super::egress`]). The launcher makes the
    /// namespace for each container; [`ContainerSpec::create_body`] alone says `none`.
    AllowList(AllowList),
}

/// Size of the private, writable /tmp (the root filesystem is read-only).
const TMP_MOUNT_OPTIONS: &str = "rw,nosuid,nodev,size=64m";

/// One container of a workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    /// The workload the container belongs to (its label and name prefix).
    pub workload: String,
    /// The image reference.
    pub image: String,
    /// Arguments appended to the image's entrypoint.
    pub args: Vec<String>,
    /// Environment, in order (a later value for the same name wins).
    pub env: Vec<(String, String)>,
    /// For an HTTP server, the port it listens on inside the container: on the default network
    /// published on the same port of 127.0.0.1; otherwise (profile `none` or an allow-list) not
    /// published at all, reached through the workload's Unix socket (`super::inbound`). `None`
    /// for a stdio server.
    pub http_port: Option<u16>,
    /// Network.
    pub network: Network,
    /// Bind mounts in the Engine API's `host:inside:ro|rw` form.
    pub binds: Vec<String>,
    /// Resource limits.
    pub limits: Limits,
}

impl ContainerSpec {
    /// The container for an image RunConfig: network and mounts from its permission profile,
    /// `MCP_TRANSPORT` (and `MCP_HOST`/`MCP_PORT` for HTTP) then the user's `env`.
    pub fn for_run_config(config: &RunConfig) -> Result<Self, ContainerError> {
        let Source::Image(image) = &config.source else {
            return Err(ContainerError::NotAnImage(config.source.kind()));
        };
        let profile = &config.permission_profile;
        let outbound = profile.network.as_ref().and_then(|n| n.outbound.as_ref());
        let network = match (profile.network_access(), outbound) {
            (NetworkAccess::All, _) => Network::Default,
            (NetworkAccess::AllowList, Some(out)) => Network::AllowList(AllowList::from_outbound(out)),
            (NetworkAccess::None | NetworkAccess::AllowList, _) => Network::None,
        };
        let transport = config.effective_transport();
        let http_port = transport.is_http().then_some(config.target_port);
        if http_port == Some(0) {
            return Err(ContainerError::Invalid("an HTTP server needs a target port".into()));
        }
        let mut binds = Vec::new();
        for (grants, mode) in [(profile.read_grants(), "ro"), (profile.write_grants(), "rw")] {
            for g in grants {
                let (host, inside) = (g.host.to_string_lossy(), g.inside.to_string_lossy());
                if !g.host.is_absolute() || !g.inside.is_absolute() {
                    return Err(ContainerError::Invalid(format!("mount {host}:{inside}: both paths must be absolute")));
                }
                if host.contains([':', ',']) || inside.contains([':', ',']) {
                    return Err(ContainerError::Invalid(format!(
                        "mount {host}:{inside}: a path with ':' or ',' cannot be mounted into a container"
                    )));
                }
                binds.push(format!("{host}:{inside}:{mode}"));
            }
        }
        let mut spec = ContainerSpec {
            workload: config.name.clone(),
            image: image.reference.clone(),
            args: config.args.clone(),
            env: Vec::new(),
            http_port,
            network,
            binds,
            limits: Limits::default(),
        };
        spec.set_env("MCP_TRANSPORT", transport.as_str());
        if let Some(port) = http_port {
            // Servers built for ToolHive read these; inside the container the server must listen
            // on every interface for the published port to reach it.
            spec.set_env("MCP_HOST", "0.0.0.0");
            spec.set_env("MCP_PORT", &port.to_string());
        }
        for (k, v) in &config.env {
            spec.set_env(k, v);
        }
        spec.set_proxy_env();
        Ok(spec)
    }

    /// The port of an HTTP server that runs in a namespace of Apiary's (no network, or an
    /// allow-list): reached through a Unix socket, never published.
    pub fn private_http_port(&self) -> Option<u16> {
        self.http_port.filter(|_| self.network != Network::Default)
    }

    /// Under an allow-list, points the server's HTTP clients at the egress proxy, overriding
    /// whatever the user's `env` said (a direct connection could not go anywhere anyway).
    pub fn set_proxy_env(&mut self) {
        if !matches!(self.network, Network::AllowList(_)) {
            return;
        }
        for name in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
            self.set_env(name, PROXY_URL);
        }
        for name in ["NO_PROXY", "no_proxy"] {
            self.set_env(name, NO_PROXY);
        }
    }

    /// Sets an environment variable (replacing an earlier value).
    pub fn set_env(&mut self, name: &str, value: &str) {
        self.env.retain(|(k, _)| k != name);
        self.env.push((name.to_owned(), value.to_owned()));
    }

    /// The Engine API create body: stdin kept open for attach, no TTY (it would turn `\n` into
    /// `\r\n`), every capability dropped, no new privileges, read-only root with a private /tmp,
    /// the limits, an init process as PID 1 (so SIGTERM ends the server), the mounts and network.
    pub fn create_body(&self) -> ContainerCreateBody {
        // Published only on the default network: elsewhere there is nothing to publish on.
        let published = self.http_port.filter(|_| self.network == Network::Default);
        let port_key = published.map(|p| format!("{p}/tcp"));
        let port_bindings = port_key.as_ref().zip(published).map(|(key, port)| {
            HashMap::from([(
                key.clone(),
                Some(vec![PortBinding { host_ip: Some("127.0.0.1".into()), host_port: Some(port.to_string()) }]),
            )])
        });
        let host_config = HostConfig {
            network_mode: Some(match self.network {
                // Fails closed: without the launcher's namespace an allow-list means no network.
                Network::None | Network::AllowList(_) => "none".into(),
                Network::Default => "bridge".into(),
            }),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges".into()]),
            readonly_rootfs: Some(true),
            tmpfs: Some(HashMap::from([("/tmp".to_owned(), TMP_MOUNT_OPTIONS.to_owned())])),
            memory: Some(self.limits.memory_bytes),
            memory_swap: Some(self.limits.memory_bytes),
            pids_limit: Some(self.limits.pids),
            nano_cpus: Some(self.limits.nano_cpus),
            init: Some(true),
            binds: (!self.binds.is_empty()).then(|| self.binds.clone()),
            port_bindings,
            ..HostConfig::default()
        };
        ContainerCreateBody {
            image: Some(self.image.clone()),
            cmd: (!self.args.is_empty()).then(|| self.args.clone()),
            env: Some(self.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            labels: Some(HashMap::from([(WORKLOAD_LABEL.to_owned(), self.workload.clone())])),
            open_stdin: Some(self.http_port.is_none()),
            attach_stdin: Some(self.http_port.is_none()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            stdin_once: Some(false),
            tty: Some(false),
            exposed_ports: port_key.map(|k| vec![k]),
            host_config: Some(host_config),
            ..ContainerCreateBody::default()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use apiary_config::{PermissionProfile, Transport};

    fn image_config(profile: PermissionProfile) -> RunConfig {
        let mut c = RunConfig::new("fetch", Source::image("localhost/fetch:1"));
        c.permission_profile = profile;
        c.args = vec!["--flag".into()];
        c.env.insert("TOKEN_NAME".into(), "x".into());
        c
    }

    #[test]
    fn a_stdio_container_is_hardened_and_keeps_stdin_open() {
        let spec = ContainerSpec::for_run_config(&image_config(PermissionProfile::none())).unwrap();
        assert_eq!(spec.network, Network::None);
        let body = serde_json::to_value(spec.create_body()).unwrap();
        assert_eq!(body["Image"], "localhost/fetch:1");
        assert_eq!(body["Cmd"], serde_json::json!(["--flag"]));
        assert_eq!(
            (body["OpenStdin"].clone(), body["StdinOnce"].clone(), body["Tty"].clone()),
            (true.into(), false.into(), false.into())
        );
        assert_eq!(body["Labels"][WORKLOAD_LABEL], "fetch");
        let env = body["Env"].as_array().unwrap();
        assert!(env.contains(&"MCP_TRANSPORT=stdio".into()) && env.contains(&"TOKEN_NAME=x".into()), "{env:?}");
        let h = &body["HostConfig"];
        assert_eq!(h["NetworkMode"], "none");
        assert_eq!(h["CapDrop"], serde_json::json!(["ALL"]));
        assert_eq!(h["SecurityOpt"], serde_json::json!(["no-new-privileges"]));
        assert_eq!(h["ReadonlyRootfs"], true);
        assert_eq!(h["Tmpfs"]["/tmp"], TMP_MOUNT_OPTIONS);
        assert_eq!(h["Memory"], h["MemorySwap"]);
        assert_eq!(h["PidsLimit"], 256);
        assert_eq!(h["Init"], true);
        assert!(h.get("PortBindings").is_none_or(serde_json::Value::is_null));
        // Never a negative OomScoreAdj (runc refuses it without CAP_SYS_RESOURCE) nor Ulimits
        // (they replace the engine's defaults wholesale).
        assert!(h.get("OomScoreAdj").is_none_or(serde_json::Value::is_null));
        assert!(h.get("Ulimits").is_none_or(serde_json::Value::is_null));
    }

    #[test]
    fn an_http_container_publishes_its_port_on_loopback_only() {
        let mut c = image_config(PermissionProfile::network());
        c.transport = Some(Transport::StreamableHttp);
        c.target_port = 18080;
        let spec = ContainerSpec::for_run_config(&c).unwrap();
        let body = serde_json::to_value(spec.create_body()).unwrap();
        assert_eq!(body["ExposedPorts"], serde_json::json!({"18080/tcp": {}}));
        assert_eq!(
            body["HostConfig"]["PortBindings"],
            serde_json::json!({"18080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18080"}]})
        );
        assert_eq!(body["HostConfig"]["NetworkMode"], "bridge");
        assert_eq!(body["OpenStdin"], false);
        let env = body["Env"].as_array().unwrap();
        assert!(env.contains(&"MCP_PORT=18080".into()) && env.contains(&"MCP_HOST=0.0.0.0".into()), "{env:?}");
        // A user's MCP_PORT wins (it comes last).
        c.env.insert("MCP_PORT".into(), "9".into());
        let spec = ContainerSpec::for_run_config(&c).unwrap();
        assert_eq!(spec.env.iter().filter(|(k, _)| k == "MCP_PORT").count(), 1);
        assert!(spec.env.contains(&("MCP_PORT".into(), "9".into())));
    }

    #[test]
    fn profile_paths_become_read_only_and_writable_binds() {
        let profile = PermissionProfile {
            read: vec!["/srv/data:/data".into()],
            write: vec!["/srv/out".into()],
            ..PermissionProfile::none()
        };
        let spec = ContainerSpec::for_run_config(&image_config(profile)).unwrap();
        assert_eq!(spec.binds, ["/srv/data:/data:ro", "/srv/out:/srv/out:rw"]);
    }

    fn allow_list() -> PermissionProfile {
        serde_json::from_value(serde_json::json!({
            "network": {"outbound": {"allow_host": ["api.example.com"], "allow_port": [443]}}
        }))
        .unwrap()
    }

    #[test]
    fn an_allow_list_points_the_server_at_the_egress_proxy() {
        let mut c = image_config(allow_list());
        c.env.insert("HTTPS_PROXY".into(), "http://elsewhere:8080".into());
        let spec = ContainerSpec::for_run_config(&c).unwrap();
        let Network::AllowList(allow) = &spec.network else { panic!("{:?}", spec.network) };
        assert!(allow.check("api.example.com", 443).is_ok());
        assert!(allow.check("api.example.com", 80).is_err() && allow.check("evil.test", 443).is_err());
        for name in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
            assert!(spec.env.contains(&(name.into(), PROXY_URL.into())), "{name}: {:?}", spec.env);
        }
        assert!(spec.env.contains(&("NO_PROXY".into(), NO_PROXY.into())));
        assert_eq!(spec.env.iter().filter(|(k, _)| k == "HTTPS_PROXY").count(), 1);
        // Alone (without the launcher's namespace) the body has no network at all.
        let body = serde_json::to_value(spec.create_body()).unwrap();
        assert_eq!(body["HostConfig"]["NetworkMode"], "none");
        // Other profiles get no proxy variables.
        let spec = ContainerSpec::for_run_config(&image_config(PermissionProfile::network())).unwrap();
        assert!(!spec.env.iter().any(|(k, _)| k.ends_with("_PROXY")), "{:?}", spec.env);
    }

    #[test]
    fn an_http_server_without_network_is_never_published() {
        for (profile, transport) in
            [(allow_list(), Transport::StreamableHttp), (PermissionProfile::none(), Transport::Sse)]
        {
            let mut c = image_config(profile);
            c.transport = Some(transport);
            c.target_port = 8080;
            let spec = ContainerSpec::for_run_config(&c).unwrap();
            assert_eq!(spec.private_http_port(), Some(8080));
            let body = serde_json::to_value(spec.create_body()).unwrap();
            assert!(body["HostConfig"].get("PortBindings").is_none_or(serde_json::Value::is_null), "{body}");
            assert!(body.get("ExposedPorts").is_none_or(serde_json::Value::is_null), "{body}");
            assert_eq!(body["HostConfig"]["NetworkMode"], "none");
        }
        let mut c = image_config(PermissionProfile::network());
        c.transport = Some(Transport::StreamableHttp);
        c.target_port = 8080;
        assert_eq!(ContainerSpec::for_run_config(&c).unwrap().private_http_port(), None);
    }

    #[test]
    fn refuses_what_it_cannot_enforce() {
        let err = ContainerSpec::for_run_config(&RunConfig::new("x", Source::command("srv", Vec::<String>::new())))
            .unwrap_err()
            .to_string();
        assert!(err.contains("image"), "{err}");
    }
}
