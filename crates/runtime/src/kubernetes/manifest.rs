//! The StatefulSet that runs one MCP server in a cluster, as names.md §3/§4 spell it: name
//! `<name>`, one replica, pod `<name>-0`, container `mcp` with stdin held open and no TTY, and
//! the MCP pod's labels (never `toolhive-proxy`, which seed 000's NetworkPolicy selects).

use serde_json::{Value, json};

use super::patch::{PatchError, merge_pod_template};

/// The container the MCP server runs in, on every path (operator and `apiary run`).
pub const CONTAINER: &str = "mcp";

/// What goes into the StatefulSet.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServerSpec {
    pub name: String,
    pub image: String,
    /// Appended to the image's entrypoint (`args`, never `command`).
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Merged into the pod template in order (`--k8s-pod-patch`, see [`super::patch`]).
    pub pod_patches: Vec<Value>,
    /// Owner reference put on every object created, so deleting the owner (an MCPServer)
    /// garbage-collects the StatefulSet and Services.
    pub owner: Option<Value>,
    /// For an HTTP server: the port it listens on, exposed as container port `http` and by
    /// Services `mcp-<name>` and `mcp-<name>-headless`.
    pub http_port: Option<u16>,
    /// Environment variables whose values come from Secret [`secret_name`]`(name)`, under a key
    /// equal to the variable's name (`--secret`): referenced, never written into the
    /// StatefulSet.
    pub secret_env: Vec<String>,
}

/// The Secret that holds a workload's `--secret` values, one key per target variable.
pub fn secret_name(name: &str) -> String {
    format!("{name}-apiary-secrets")
}

/// Label on the Secret [`secret_name`] names: Apiary made it and `apiary rm` deletes it.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "apiary");

/// The Secret holding `values` (target variable → value) as a server-side-apply body.
pub fn secret(
    spec: &ServerSpec,
    values: &[(String, crate::secrets::Zeroizing<String>)],
) -> k8s_openapi::api::core::v1::Secret {
    use k8s_openapi::ByteString;
    let mut labels: std::collections::BTreeMap<String, String> =
        [("app.kubernetes.io/instance", spec.name.as_str()), ("toolhive-name", spec.name.as_str()), MANAGED_BY]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
    labels.insert("toolhive".into(), "true".into());
    k8s_openapi::api::core::v1::Secret {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(secret_name(&spec.name)),
            labels: Some(labels),
            owner_references: spec.owner.as_ref().and_then(|o| serde_json::from_value(o.clone()).ok()).map(|o| vec![o]),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(values.iter().map(|(k, v)| (k.clone(), ByteString(v.as_bytes().to_vec()))).collect()),
        ..Default::default()
    }
}

/// Labels on the StatefulSet and its pod.
pub fn labels(name: &str) -> Value {
    json!({
        "app.kubernetes.io/name": "mcpserver",
        "app.kubernetes.io/instance": name,
        "toolhive": "true",
        "toolhive-name": name,
        "app": name,
    })
}

/// The selector: the MCP pod selector of names.md §3. It is immutable once created, so it
/// holds only the two keys that identify the pod.
pub fn selector(name: &str) -> Value {
    json!({
        "app.kubernetes.io/name": "mcpserver",
        "app.kubernetes.io/instance": name,
    })
}

/// The pod's name under a one-replica StatefulSet.
pub fn pod_name(name: &str) -> String {
    format!("{name}-0")
}

/// The StatefulSet as a server-side-apply body (apiVersion and kind included).
pub fn statefulset(spec: &ServerSpec) -> Result<Value, PatchError> {
    let secret = secret_name(&spec.name);
    let plain = spec.env.iter().filter(|(k, _)| !spec.secret_env.contains(k));
    let env: Vec<Value> = plain
        .map(|(k, v)| json!({"name": k, "value": v}))
        .chain(
            spec.secret_env
                .iter()
                .map(|k| json!({"name": k, "valueFrom": {"secretKeyRef": {"name": secret, "key": k}}})),
        )
        .collect();
    let mut container = json!({
        "name": CONTAINER,
        "image": spec.image,
        "args": spec.args,
        "env": env,
        // Attach writes the proxy's requests here. Open for the container's life (stdinOnce
        // false), so a detach does not end the server.
        "stdin": spec.http_port.is_none(),
        "stdinOnce": false,
        "tty": false,
    });
    if let Some(port) = spec.http_port {
        container["ports"] = json!([{"name": "http", "containerPort": port, "protocol": "TCP"}]);
    }
    let mut template = json!({
        "metadata": {"labels": labels(&spec.name)},
        "spec": {
            // A stdio server is stopped by closing its stdin; it has nothing to flush.
            "terminationGracePeriodSeconds": 10,
            "containers": [container],
        },
    });
    for patch in &spec.pod_patches {
        template = merge_pod_template(&template, patch, &spec.name)?;
    }
    Ok(json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata(spec, spec.name.clone()),
        "spec": {
            "replicas": 1,
            "serviceName": headless_service_name(&spec.name),
            "selector": {"matchLabels": selector(&spec.name)},
            "template": template,
        },
    }))
}

/// Service `mcp-<name>`: the in-cluster address of an HTTP server (names.md §3).
pub fn service_name(name: &str) -> String {
    format!("mcp-{name}")
}

/// Service `mcp-<name>-headless`: the StatefulSet's governing Service.
pub fn headless_service_name(name: &str) -> String {
    format!("mcp-{name}-headless")
}

/// The two Services of an HTTP server, as server-side-apply bodies; none for stdio.
pub fn services(spec: &ServerSpec) -> Vec<Value> {
    let Some(port) = spec.http_port else { return Vec::new() };
    let ports = json!([{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}]);
    vec![
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata(spec, headless_service_name(&spec.name)),
            "spec": {"clusterIP": "None", "selector": selector(&spec.name), "ports": ports},
        }),
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata(spec, service_name(&spec.name)),
            // A session lives in one server process; keep a client on the pod it started on.
            "spec": {"selector": selector(&spec.name), "ports": ports, "sessionAffinity": "ClientIP"},
        }),
    ]
}

fn metadata(spec: &ServerSpec, name: String) -> Value {
    let mut meta = json!({"name": name, "labels": labels(&spec.name)});
    if let Some(owner) = &spec.owner {
        meta["ownerReferences"] = json!([owner]);
    }
    meta
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn secret_values_are_referenced_from_the_statefulset_and_held_by_the_labelled_secret() {
        let spec = ServerSpec {
            name: "srv".into(),
            image: "img:1".into(),
            env: vec![("PLAIN".into(), "p".into()), ("TOKEN".into(), "overridden".into())],
            secret_env: vec!["TOKEN".into()],
            ..ServerSpec::default()
        };
        let set = statefulset(&spec).unwrap();
        let env = &set["spec"]["template"]["spec"]["containers"][0]["env"];
        assert_eq!(env[0], json!({"name": "PLAIN", "value": "p"}));
        assert_eq!(
            env[1],
            json!({"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "srv-apiary-secrets", "key": "TOKEN"}}})
        );
        assert_eq!(env.as_array().unwrap().len(), 2, "{env}");
        let values = vec![("TOKEN".to_owned(), crate::secrets::Zeroizing::new("v4lue".to_owned()))];
        let body = serde_json::to_value(secret(&spec, &values)).unwrap();
        assert_eq!((body["apiVersion"].as_str(), body["kind"].as_str()), (Some("v1"), Some("Secret")));
        assert_eq!(body["metadata"]["name"], "srv-apiary-secrets");
        assert_eq!(body["metadata"]["labels"][MANAGED_BY.0], MANAGED_BY.1);
        assert_eq!(body["data"]["TOKEN"], "djRsdWU=");
        assert!(!set.to_string().contains("v4lue"));
    }

    #[test]
    fn the_statefulset_names_labels_and_stdin_follow_the_contract() {
        let spec = ServerSpec {
            name: "mcp-fetch".into(),
            image: "docker.io/mcp/fetch:latest".into(),
            args: vec!["--x".into()],
            env: vec![("MCP_TRANSPORT".into(), "stdio".into())],
            ..ServerSpec::default()
        };
        let sts = statefulset(&spec).unwrap();
        assert!(services(&spec).is_empty(), "a stdio server has no Services");
        assert_eq!(sts["metadata"]["name"], "mcp-fetch");
        assert_eq!(sts["spec"]["replicas"], 1);
        let pod_labels = &sts["spec"]["template"]["metadata"]["labels"];
        assert_eq!(pod_labels["app.kubernetes.io/name"], "mcpserver");
        assert_eq!(pod_labels["app.kubernetes.io/instance"], "mcp-fetch");
        assert_eq!(pod_labels["toolhive"], "true");
        assert_eq!(pod_labels["toolhive-name"], "mcp-fetch");
        assert_eq!(pod_labels["app"], "mcp-fetch");
        // Every selector key is on the pod, or the apiserver refuses the StatefulSet.
        for (k, v) in sts["spec"]["selector"]["matchLabels"].as_object().unwrap() {
            assert_eq!(&pod_labels[k], v, "{k}");
        }
        let c = &sts["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["name"], "mcp");
        assert_eq!(c["image"], "docker.io/mcp/fetch:latest");
        assert_eq!(c["args"][0], "--x");
        assert_eq!(c["env"][0]["name"], "MCP_TRANSPORT");
        assert_eq!(
            (c["stdin"].clone(), c["stdinOnce"].clone(), c["tty"].clone()),
            (json!(true), json!(false), json!(false))
        );
        assert!(c.get("command").is_none(), "the image's entrypoint must stay");
        assert_eq!(pod_name("mcp-fetch"), "mcp-fetch-0");
    }

    #[test]
    fn an_http_server_gets_a_port_two_services_and_the_owner_everywhere() {
        let owner =
            json!({"apiVersion": "toolhive.stacklok.dev/v1beta1", "kind": "MCPServer", "name": "f", "uid": "u"});
        let spec = ServerSpec {
            name: "f".into(),
            image: "img".into(),
            owner: Some(owner.clone()),
            http_port: Some(8080),
            ..ServerSpec::default()
        };
        let sts = statefulset(&spec).unwrap();
        let c = &sts["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["ports"][0]["containerPort"], 8080);
        assert_eq!(c["stdin"], false);
        assert_eq!(sts["metadata"]["ownerReferences"][0], owner);
        assert_eq!(sts["spec"]["serviceName"], "mcp-f-headless");
        let svcs = services(&spec);
        let names: Vec<&str> = svcs.iter().map(|s| s["metadata"]["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["mcp-f-headless", "mcp-f"]);
        for s in &svcs {
            assert_eq!(s["spec"]["selector"], selector("f"));
            assert_eq!(s["spec"]["ports"][0]["port"], 8080);
            assert_eq!(s["metadata"]["ownerReferences"][0], owner);
        }
        assert_eq!(svcs[0]["spec"]["clusterIP"], "None");
    }
}
