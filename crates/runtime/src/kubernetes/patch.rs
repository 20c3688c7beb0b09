//! Merging a pod-template patch (the operator's `--k8s-pod-patch`: an MCPServer's
//! `podTemplateSpec`, its `resources`, `secrets` and ServiceAccount) into the StatefulSet's
//! pod template, the way a user reading names.md §2 expects.
//!
//! Objects merge key by key, the patch winning on scalars. Lists of named things merge by
//! `name` (`containers`, `initContainers`, `volumes`, a container's `env`, `volumeMounts` and
//! `ports`): an entry naming an existing one merges into it, a new name is appended. Other lists
//! are replaced. `null` in the patch removes a key. Three things stay Apiary's because the
//! server would stop working without them: the labels the StatefulSet selects on, and container
//! `mcp`'s `stdin`/`tty` settings and `image`.

use serde_json::{Map, Value};

use super::manifest::{CONTAINER, selector};

/// Keys of the lists whose entries are matched by `name`.
const NAMED_LISTS: &[&str] = &["containers", "initContainers", "volumes", "env", "volumeMounts", "ports"];

/// Why a patch cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatchError {
    /// The patch is not a JSON object.
    #[error("the pod template patch must be a JSON object, got {0}")]
    NotAnObject(&'static str),
    /// A named list holds an entry without a string `name`.
    #[error("the pod template patch has an entry of `{0}` without a name")]
    Unnamed(String),
}

/// Checks a patch's shape before anything is applied, so a bad flag fails at start-up.
pub fn validate(patch: &Value) -> Result<(), PatchError> {
    if !patch.is_object() {
        return Err(PatchError::NotAnObject(kind(patch)));
    }
    check_named(patch)
}

fn check_named(value: &Value) -> Result<(), PatchError> {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                if let (true, Value::Array(items)) = (NAMED_LISTS.contains(&key.as_str()), v)
                    && items.iter().any(|i| i.get("name").and_then(Value::as_str).is_none())
                {
                    return Err(PatchError::Unnamed(key.clone()));
                }
                check_named(v)?;
            }
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(check_named),
        _ => Ok(()),
    }
}

/// `template` (a PodTemplateSpec as JSON) with `patch` merged in, for StatefulSet `name`.
pub fn merge_pod_template(template: &Value, patch: &Value, name: &str) -> Result<Value, PatchError> {
    validate(patch)?;
    let mut merged = template.clone();
    merge(&mut merged, patch, None);
    restore_invariants(&mut merged, template, name);
    Ok(merged)
}

fn merge(target: &mut Value, patch: &Value, key: Option<&str>) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else if let Some(existing) = t.get_mut(k) {
                    merge(existing, v, Some(k));
                } else {
                    t.insert(k.clone(), v.clone());
                }
            }
        }
        (Value::Array(t), Value::Array(p)) if key.is_some_and(|k| NAMED_LISTS.contains(&k)) => {
            for item in p {
                let name = item.get("name").and_then(Value::as_str);
                match t.iter_mut().find(|e| name.is_some() && e.get("name").and_then(Value::as_str) == name) {
                    Some(existing) => merge(existing, item, None),
                    None => t.push(item.clone()),
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// Puts back what the patch must not change (module docs).
fn restore_invariants(merged: &mut Value, original: &Value, name: &str) {
    if let Some(labels) = object_at(merged, &["metadata", "labels"])
        && let Value::Object(sel) = selector(name)
    {
        labels.extend(sel);
    }
    let original_mcp = original
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c.get("name").and_then(Value::as_str) == Some(CONTAINER)))
        .cloned();
    let Some(Value::Object(original_mcp)) = original_mcp else { return };
    let Some(containers) = merged.pointer_mut("/spec/containers").and_then(Value::as_array_mut) else { return };
    if let Some(Value::Object(mcp)) =
        containers.iter_mut().find(|c| c.get("name").and_then(Value::as_str) == Some(CONTAINER))
    {
        for key in ["image", "stdin", "stdinOnce", "tty"] {
            match original_mcp.get(key) {
                Some(v) => mcp.insert(key.to_string(), v.clone()),
                None => mcp.remove(key),
            };
        }
    }
}

fn object_at<'a>(value: &'a mut Value, path: &[&str]) -> Option<&'a mut Map<String, Value>> {
    let mut cur = value;
    for key in path {
        let map = cur.as_object_mut()?;
        cur = map.entry((*key).to_string()).or_insert_with(|| Value::Object(Map::new()));
    }
    cur.as_object_mut()
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use serde_json::json;

    fn template() -> Value {
        json!({
            "metadata": {"labels": {"app.kubernetes.io/name": "mcpserver", "app.kubernetes.io/instance": "fetch"}},
            "spec": {
                "containers": [{
                    "name": "mcp", "image": "img", "stdin": true, "stdinOnce": false, "tty": false,
                    "env": [{"name": "MCP_TRANSPORT", "value": "stdio"}],
                }],
            },
        })
    }

    #[test]
    fn the_seed_podtemplatespec_merges_into_container_mcp_and_adds_volumes() {
        // Seed 001's example: resources and a mount on `mcp`, a PVC volume.
        let patch = json!({"spec": {
            "containers": [{
                "name": "mcp",
                "resources": {"limits": {"cpu": "500m", "memory": "512Mi"}},
                "volumeMounts": [{"mountPath": "/data", "name": "my-mcp-data", "readOnly": true}],
            }],
            "volumes": [{"name": "my-mcp-data", "persistentVolumeClaim": {"claimName": "my-mcp-data-claim"}}],
        }});
        let merged = merge_pod_template(&template(), &patch, "fetch").unwrap();
        let mcp = &merged["spec"]["containers"][0];
        assert_eq!(merged["spec"]["containers"].as_array().unwrap().len(), 1);
        assert_eq!(mcp["resources"]["limits"]["memory"], "512Mi");
        assert_eq!(mcp["volumeMounts"][0]["mountPath"], "/data");
        assert_eq!(mcp["env"][0]["name"], "MCP_TRANSPORT");
        assert_eq!(merged["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"], "my-mcp-data-claim");
    }

    #[test]
    fn env_merges_by_name_sidecars_append_and_invariants_hold() {
        let patch = json!({
            "metadata": {"labels": {"team": "a", "app.kubernetes.io/instance": "other"}},
            "spec": {
                "serviceAccountName": "fetch-sa",
                "containers": [
                    {"name": "mcp", "image": "evil", "tty": true,
                     "env": [{"name": "GITHUB_TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                             {"name": "MCP_TRANSPORT", "value": "x"}]},
                    {"name": "sidecar", "image": "busybox"},
                ],
            },
        });
        let merged = merge_pod_template(&template(), &patch, "fetch").unwrap();
        assert_eq!(merged["metadata"]["labels"]["team"], "a");
        assert_eq!(merged["metadata"]["labels"]["app.kubernetes.io/instance"], "fetch");
        assert_eq!(merged["spec"]["serviceAccountName"], "fetch-sa");
        let cs = merged["spec"]["containers"].as_array().unwrap();
        assert_eq!(cs.len(), 2);
        assert_eq!(cs[0]["image"], "img");
        assert_eq!(cs[0]["tty"], false);
        let env = cs[0]["env"].as_array().unwrap();
        assert_eq!(env.len(), 2);
        assert_eq!(env[0]["value"], "x");
        assert_eq!(env[1]["valueFrom"]["secretKeyRef"]["key"], "k");
        assert_eq!(cs[1]["name"], "sidecar");
    }

    #[test]
    fn bad_patches_are_refused_with_the_reason() {
        assert_eq!(validate(&json!([1])), Err(PatchError::NotAnObject("an array")));
        assert_eq!(
            validate(&json!({"spec": {"containers": [{"image": "x"}]}})),
            Err(PatchError::Unnamed("containers".into()))
        );
        let removed = merge_pod_template(&template(), &json!({"spec": {"containers": null}}), "fetch").unwrap();
        assert!(removed["spec"].get("containers").is_none());
    }
}
