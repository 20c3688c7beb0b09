//! The StatefulSet that runs one MCP server in a cluster, as names.md §3/§4 spell it: name
//! `<name>`, one replica, pod `<name>-0`, container `mcp` with stdin held open and no TTY, and
//! the MCP pod's labels (never `toolhive-proxy`, which seed 000's NetworkPolicy selects).

use serde_json::{Value, json};

/// The container the MCP server runs in, on every path (operator and `apiary run`).
pub const CONTAINER: &str = "mcp";

/// What goes into the StatefulSet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    pub name: String,
    pub image: String,
    /// Appended to the image's entrypoint (`args`, never `command`).
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
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
pub fn statefulset(spec: &ServerSpec) -> Value {
    let env: Vec<Value> = spec.env.iter().map(|(k, v)| json!({"name": k, "value": v})).collect();
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": spec.name, "labels": labels(&spec.name)},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": selector(&spec.name)},
            "template": {
                "metadata": {"labels": labels(&spec.name)},
                "spec": {
                    // A stdio server is stopped by closing its stdin; it has nothing to flush.
                    "terminationGracePeriodSeconds": 10,
                    "containers": [{
                        "name": CONTAINER,
                        "image": spec.image,
                        "args": spec.args,
                        "env": env,
                        // Attach writes the proxy's requests here. Open for the container's
                        // life (stdinOnce false), so a detach does not end the server.
                        "stdin": true,
                        "stdinOnce": false,
                        "tty": false,
                    }],
                },
            },
        },
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn the_statefulset_names_labels_and_stdin_follow_the_contract() {
        let spec = ServerSpec {
            name: "mcp-fetch".into(),
            image: "docker.io/mcp/fetch:latest".into(),
            args: vec!["--x".into()],
            env: vec![("MCP_TRANSPORT".into(), "stdio".into())],
        };
        let sts = statefulset(&spec);
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
}
