//! What the proxy runner puts into the MCP server's StatefulSet pod beyond image and args: the
//! `--k8s-pod-patch` arguments (ServiceAccount, `resources`, `secrets`, `volumes`, then the
//! user's `podTemplateSpec`, which wins field by field) and the `--k8s-owner-ref` that lets
//! deleting the MCPServer remove the StatefulSet and Services the runner created.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::{Value, json};

use crate::crd::mcpserver::MCPServerSpec;

use super::super::labels::mcp_service_account_name;

/// Container of the MCP server inside the StatefulSet pod (names.md §3).
pub const MCP_CONTAINER: &str = "mcp";

/// The runner's arguments after `proxyrunner run --config …`, in the order they apply.
pub fn runner_args(name: &str, spec: &MCPServerSpec, owner: &OwnerReference) -> Vec<String> {
    let mut args = vec![format!("--k8s-pod-patch={}", operator_patch(name, spec))];
    if let Some(user) = spec.pod_template_spec.as_ref().filter(|v| v.as_object().is_some_and(|m| !m.is_empty())) {
        args.push(format!("--k8s-pod-patch={user}"));
    }
    // Without blockOwnerDeletion: the runner's Role may not set it, and nothing needs to wait.
    let owner = json!({
        "apiVersion": owner.api_version,
        "kind": owner.kind,
        "name": owner.name,
        "uid": owner.uid,
        "controller": true,
    });
    args.push(format!("--k8s-owner-ref={owner}"));
    args
}

/// The operator's own part of the pod: the pod's ServiceAccount, and on container `mcp` the
/// resources, the Secret-backed variables (references only, never values) and host volumes.
pub fn operator_patch(name: &str, spec: &MCPServerSpec) -> Value {
    let account = spec
        .service_account
        .as_deref()
        .filter(|s| !s.is_empty())
        .map_or_else(|| mcp_service_account_name(name), str::to_string);
    let mut container = json!({"name": MCP_CONTAINER});
    if let Some(resources) = &spec.resources {
        container["resources"] = json!(resources);
    }
    let env: Vec<Value> = spec
        .secrets
        .iter()
        .flatten()
        .map(|s| {
            let var = s.target_env_name.as_deref().filter(|t| !t.is_empty()).unwrap_or(&s.key);
            json!({"name": var, "valueFrom": {"secretKeyRef": {"name": s.name, "key": s.key}}})
        })
        .collect();
    if !env.is_empty() {
        container["env"] = Value::Array(env);
    }
    let mut patch = json!({"spec": {"serviceAccountName": account, "containers": [container]}});
    let volumes = spec.volumes.as_deref().unwrap_or_default();
    if !volumes.is_empty() {
        patch["spec"]["volumes"] = volumes
            .iter()
            .map(|v| json!({"name": v.name, "hostPath": {"path": v.host_path}}))
            .collect::<Vec<_>>()
            .into();
        patch["spec"]["containers"][0]["volumeMounts"] = volumes
            .iter()
            .map(|v| json!({"name": v.name, "mountPath": v.mount_path, "readOnly": v.read_only.unwrap_or(false)}))
            .collect::<Vec<_>>()
            .into();
    }
    patch
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::crd::common::{ResourceList, ResourceRequirements};
    use crate::crd::mcpserver::SecretEnv;

    fn owner() -> OwnerReference {
        OwnerReference {
            api_version: "toolhive.stacklok.dev/v1beta1".into(),
            kind: "MCPServer".into(),
            name: "github".into(),
            uid: "u-1".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    #[test]
    fn secrets_become_secret_key_refs_and_resources_land_on_mcp() {
        let spec = MCPServerSpec {
            image: "ghcr.io/github/github-mcp-server".into(),
            secrets: Some(vec![
                SecretEnv { name: "github-token".into(), key: "token".into(), target_env_name: None },
                SecretEnv {
                    name: "github-token".into(),
                    key: "token".into(),
                    target_env_name: Some("GITHUB_PERSONAL_ACCESS_TOKEN".into()),
                },
            ]),
            resources: Some(ResourceRequirements {
                limits: Some(ResourceList { cpu: Some("100m".into()), memory: Some("128Mi".into()) }),
                requests: None,
            }),
            ..Default::default()
        };
        let patch = operator_patch("github", &spec);
        assert_eq!(patch["spec"]["serviceAccountName"], "github-sa");
        let mcp = &patch["spec"]["containers"][0];
        assert_eq!(mcp["name"], "mcp");
        assert_eq!(mcp["resources"]["limits"]["memory"], "128Mi");
        assert_eq!(mcp["env"][0]["name"], "token");
        assert_eq!(mcp["env"][1]["name"], "GITHUB_PERSONAL_ACCESS_TOKEN");
        assert_eq!(mcp["env"][1]["valueFrom"]["secretKeyRef"], json!({"name": "github-token", "key": "token"}));
        assert!(!patch.to_string().contains("value\""), "no secret value is ever written: {patch}");
    }

    #[test]
    fn the_user_template_comes_after_the_operator_patch_and_the_owner_last() {
        let spec = MCPServerSpec {
            image: "img".into(),
            service_account: Some("custom".into()),
            pod_template_spec: Some(json!({"spec": {"containers": [{"name": "mcp", "resources": {}}]}})),
            ..Default::default()
        };
        let args = runner_args("github", &spec, &owner());
        assert_eq!(args.len(), 3);
        assert!(args[0].starts_with("--k8s-pod-patch=") && args[0].contains(r#""serviceAccountName":"custom""#));
        assert_eq!(args[1], r#"--k8s-pod-patch={"spec":{"containers":[{"name":"mcp","resources":{}}]}}"#);
        let given: Value = serde_json::from_str(args[2].strip_prefix("--k8s-owner-ref=").unwrap()).unwrap();
        assert_eq!(given["uid"], "u-1");
        assert!(given.get("blockOwnerDeletion").is_none());
        let plain = MCPServerSpec { image: "img".into(), ..Default::default() };
        assert_eq!(runner_args("github", &plain, &owner()).len(), 2, "no empty user patch");
    }
}
