//! The VirtualMCPServer reconciler against a REAL one-node cluster (`cargo xtask cluster up`):
//! seed 002's group and entry (`tests/seeds/002-*.yaml`, moved to a scratch namespace), an
//! MCPServer of the group and a VirtualMCPServer in discovered mode over it. Checks the children,
//! the backends the operator writes into the ConfigMap, `status.discoveredBackends`, the
//! `kubectl get vmcp` columns, and that a member joining and leaving the group rewrites the
//! ConfigMap and the status WITHOUT changing the Deployment's pod template. The vMCP pod itself
//! cannot start here (its image is `apiary.invalid/apiary:never`): the status must say Pending,
//! with why, never Ready. Runs only with `APIARY_CLUSTER_TESTS` set.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::sync::Arc;

use apiary_operator::crd::mcpserverentry::MCPServerEntry;
use apiary_operator::crd::virtualmcpserver::{VirtualMCPServer, VirtualMCPServerPhase};
use apiary_operator::reconcile::{Context, Metrics, WatchScope};
use apiary_operator::{entry, extauth, group, vmcp};
use common::cluster::{
    Child, Stop, controlled_by, eventually, gated, in_scratch_namespace, kubeconfig, kubectl, meta_of,
    template_checksum,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::Role;
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use kube::{Api, Client};
use serde_json::{Value, json};

const VMCP: &str = "my-vmcp";

async fn controllers(ctx: Arc<Context>, scope: WatchScope, stop: Stop) {
    tokio::join!(
        entry::run(Arc::clone(&ctx), scope.clone(), stop.clone()),
        group::run(Arc::clone(&ctx), scope.clone(), stop.clone()),
        extauth::run(Arc::clone(&ctx), scope.clone(), stop.clone()),
        vmcp::run(ctx, scope, stop),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_virtual_mcp_server_follows_its_group_live_on_a_real_cluster() {
    gated(in_scratch_namespace("apiary-vmcp", controllers, checks)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_virtual_mcp_server_fails_closed_and_recovers_on_a_real_cluster() {
    gated(in_scratch_namespace("apiary-vmcp-fc", controllers, fail_closed)).await;
}

/// The documents of seed file `file`, moved to `ns`.
fn seed_file(file: &str, ns: &str) -> Vec<Value> {
    let docs: Vec<Value> = common::seed_docs().into_iter().filter(|d| d.file == file).map(|d| d.value).collect();
    assert!(!docs.is_empty(), "no documents in {file}");
    docs.into_iter()
        .map(|mut v| {
            v["metadata"]["namespace"] = json!(ns);
            v
        })
        .collect()
}

/// Server-side applies `doc`, a `toolhive.stacklok.dev` object.
async fn apply(client: &Client, ns: &str, doc: &Value) {
    let (group, version) = doc["apiVersion"].as_str().unwrap().split_once('/').unwrap();
    let kind = doc["kind"].as_str().unwrap();
    let plural = match kind {
        "MCPServerEntry" => "mcpserverentries".to_string(),
        other => format!("{}s", other.to_lowercase()),
    };
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), &plural);
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    let name = doc["metadata"]["name"].as_str().unwrap();
    api.patch(name, &PatchParams::apply("apiary-vmcp-test").force(), &Patch::Apply(doc))
        .await
        .unwrap_or_else(|e| panic!("apply {kind} {name}: {e}"));
}

fn doc(ns: &str, kind: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "toolhive.stacklok.dev/v1alpha1", "kind": kind,
        "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

/// The backends of the config file in ConfigMap `my-vmcp-vmcp-config`, by name.
async fn config_backends(cms: &Api<ConfigMap>) -> Option<(Value, Vec<String>)> {
    let cm = cms.get_opt(&format!("{VMCP}-vmcp-config")).await.ok()??;
    let text = cm.data?.get("config.yaml")?.clone();
    let config: Value = serde_saphyr::from_str(&text).unwrap();
    let names = config["backends"].as_array()?.iter().map(|b| b["name"].as_str().unwrap().to_string()).collect();
    Some((config, names))
}

/// Waits until the ConfigMap serves exactly `names` and the status lists them; returns both.
async fn serves(cms: &Api<ConfigMap>, vmcps: &Api<VirtualMCPServer>, names: &[&str]) -> (Value, VirtualMCPServer) {
    eventually(&format!("the vMCP serves {names:?}"), || async {
        let (config, got) = config_backends(cms).await?;
        let v = vmcps.get(VMCP).await.ok()?;
        let s = v.status.as_ref()?;
        let listed: Vec<&str> = s.discovered_backends.as_ref()?.iter().map(|b| b.name.as_str()).collect();
        (got == names && listed == names && s.backend_count == Some(names.len() as i32)).then_some((config, v.clone()))
    })
    .await
}

async fn checks(client: Client, ns: String, _metrics: Arc<Metrics>) {
    let vmcps: Api<VirtualMCPServer> = Api::namespaced(client.clone(), &ns);
    let entries: Api<MCPServerEntry> = Api::namespaced(client.clone(), &ns);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);

    // Seed 002's group and entry, an MCPServer of the group, and the VirtualMCPServer.
    for file in ["002-my-group.yaml", "002-my-entry.yaml"] {
        for d in seed_file(file, &ns) {
            apply(&client, &ns, &d).await;
        }
    }
    let server = json!({"image": "ghcr.io/stackloklabs/gofetch/server:latest", "transport": "streamable-http",
        "proxyPort": 8080, "mcpPort": 8080, "groupRef": "my-group"});
    apply(&client, &ns, &doc(&ns, "MCPServer", "fetch", server)).await;
    let spec = json!({"config": {"groupRef": "my-group"}, "incomingAuth": {"type": "anonymous"}});
    apply(&client, &ns, &doc(&ns, "VirtualMCPServer", VMCP, spec)).await;

    // The children, each owned by the VirtualMCPServer.
    let (config, v) = serves(&cms, &vmcps, &["fetch", "my-remote-tool"]).await;
    let uid = v.metadata.uid.clone().unwrap();
    let deployment = format!("vmcp-{VMCP}");
    let account = format!("{VMCP}-vmcp");
    let config_map = format!("{VMCP}-vmcp-config");
    for child in [
        Child::Deployment(&deployment),
        Child::Service(&deployment),
        Child::ConfigMap(&config_map),
        Child::ServiceAccount(&account),
        Child::Role(&account),
        Child::RoleBinding(&account),
    ] {
        let meta = meta_of(&client, &ns, child).await;
        assert!(controlled_by(&meta, &uid, "VirtualMCPServer"), "{child} is owned");
        assert_eq!(meta.labels.unwrap()["app.kubernetes.io/name"], "virtualmcpserver", "{child}");
    }
    let svc = Api::<Service>::namespaced(client.clone(), &ns).get(&deployment).await.unwrap();
    assert_eq!(svc.spec.unwrap().ports.unwrap()[0].port, 4483);
    let role = Api::<Role>::namespaced(client.clone(), &ns).get(&account).await.unwrap();
    assert!(role.rules.unwrap()[0].resources.as_ref().unwrap().contains(&"mcpserverentries".to_string()));
    let d = deployments.get(&deployment).await.unwrap();
    assert_eq!(d.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0].name, "vmcp");

    // The backends the operator resolved.
    assert_eq!(config["groupRef"], "my-group");
    let b = |n: &str| config["backends"].as_array().unwrap().iter().find(|b| b["name"] == n).unwrap().clone();
    assert_eq!(b("fetch")["url"], format!("http://mcp-fetch-proxy.{ns}.svc.cluster.local:8080/mcp"));
    assert_eq!(
        (b("my-remote-tool")["url"].as_str(), b("my-remote-tool")["type"].as_str()),
        (Some("https://mcp.example.com/mcp"), Some("entry"))
    );

    // The pod cannot start here: Pending with the reason, never Ready.
    let v = eventually("the vMCP says why it is pending", || async {
        let v = vmcps.get(VMCP).await.ok()?;
        let s = v.status.as_ref()?;
        (s.phase == Some(VirtualMCPServerPhase::Pending) && s.message.as_deref()?.contains("cannot be pulled"))
            .then_some(v.clone())
    })
    .await;
    let s = v.status.as_ref().unwrap();
    assert_eq!(s.url.as_deref(), Some(format!("http://vmcp-{VMCP}.{ns}.svc.cluster.local:4483").as_str()));
    let conditions = s.conditions.as_ref().unwrap();
    let ready = conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.status, "False");
    for t in ["GroupRefValidated", "BackendsDiscovered"] {
        assert!(conditions.iter().any(|c| c.type_ == t && c.status == "True"), "{t} in {conditions:#?}");
    }
    let by_name = |n: &str| s.discovered_backends.as_ref().unwrap().iter().find(|b| b.name == n).unwrap().clone();
    assert_eq!(by_name("my-remote-tool").status.as_deref(), Some("ready"), "the entry is Valid");
    assert_eq!(by_name("fetch").status.as_deref(), Some("unknown"), "no MCPServer controller runs here");

    // `kubectl get vmcp` shows the columns of names.md.
    let out = std::process::Command::new(kubectl())
        .args(["--kubeconfig", kubeconfig().to_str().unwrap(), "-n", &ns, "get", "vmcp", VMCP])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let header: Vec<&str> = text.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "PHASE", "URL", "BACKENDS", "AGE", "READY"]);
    let row: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!((row[0], row[1], row[3], row[5]), (VMCP, "Pending", "2", "False"), "{text}");
    assert!(row[2].starts_with("http://vmcp-my-vmcp."), "{text}");

    // A member joins: the ConfigMap and the status follow, the pod template does not change.
    let before = deployments.get(&deployment).await.unwrap();
    let joiner = json!({"groupRef": "my-group", "remoteURL": "https://joiner.example.com/mcp",
        "transport": "streamable-http", "headerForward": {"addPlaintextHeaders": {"X-Tenant-ID": "eng"}}});
    apply(&client, &ns, &doc(&ns, "MCPServerEntry", "joiner", joiner)).await;
    let (config, _) = serves(&cms, &vmcps, &["fetch", "joiner", "my-remote-tool"]).await;
    let j = config["backends"].as_array().unwrap().iter().find(|b| b["name"] == "joiner").unwrap().clone();
    assert_eq!(j["headers"], json!({"X-Tenant-ID": "eng"}));
    let after = deployments.get(&deployment).await.unwrap();
    assert_eq!(after.metadata.generation, before.metadata.generation, "the Deployment was not changed");
    assert_eq!(template_checksum(&after), template_checksum(&before));
    assert_eq!(after.spec.unwrap().template, before.spec.unwrap().template);

    // ... and leaves again.
    entries.delete("joiner", &DeleteParams::default()).await.unwrap();
    serves(&cms, &vmcps, &["fetch", "my-remote-tool"]).await;
    assert_eq!(deployments.get(&deployment).await.unwrap().metadata.generation, before.metadata.generation);
}

/// Waits for `vmcp` to be `phase` with `Ready` reason `reason` and `condition` at `status`.
async fn reaches(vmcps: &Api<VirtualMCPServer>, phase: VirtualMCPServerPhase, reason: &str, condition: (&str, &str)) {
    eventually(&format!("{phase:?} ({reason}), {condition:?}"), || async {
        let s = vmcps.get("guarded").await.ok()?.status?;
        let cs = s.conditions.as_ref()?;
        let ready = cs.iter().any(|c| c.type_ == "Ready" && c.reason == reason);
        let other = cs.iter().any(|c| c.type_ == condition.0 && c.status == condition.1);
        (s.phase == Some(phase) && ready && other).then_some(())
    })
    .await;
}

/// Waits for a Warning event `reason` about `guarded` whose note names `field`.
async fn warned(events: &Api<Event>, reason: &str, field: &str) {
    eventually(&format!("a {reason} warning naming {field}"), || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| {
                e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("guarded")
                    && e.reason.as_deref() == Some(reason)
                    && e.type_.as_deref() == Some("Warning")
                    && e.note.as_deref().is_some_and(|n| n.contains(field))
            })
            .then_some(())
    })
    .await;
}

async fn replicas(deployments: &Api<Deployment>) -> Option<i32> {
    deployments.get("vmcp-guarded").await.ok()?.spec?.replicas
}

async fn fail_closed(client: Client, ns: String, _metrics: Arc<Metrics>) {
    let vmcps: Api<VirtualMCPServer> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);

    // A group that does not exist yet: Failed, held at zero, a warning naming the field.
    let mut spec = json!({"config": {"groupRef": "late-group"}, "incomingAuth": {"type": "anonymous"}});
    apply(&client, &ns, &doc(&ns, "VirtualMCPServer", "guarded", spec.clone())).await;
    reaches(&vmcps, VirtualMCPServerPhase::Failed, "InvalidReference", ("GroupRefValidated", "False")).await;
    assert_eq!(replicas(&deployments).await, Some(0));
    warned(&events, "InvalidReference", "spec.config.groupRef").await;

    // The group appears: the watch on MCPGroup brings the vMCP back without touching it.
    apply(&client, &ns, &doc(&ns, "MCPGroup", "late-group", json!({}))).await;
    reaches(&vmcps, VirtualMCPServerPhase::Pending, "DeploymentUnavailable", ("GroupRefValidated", "True")).await;
    assert_ne!(replicas(&deployments).await, Some(0));

    // Rate limits Apiary cannot enforce: Failed, held at zero, named.
    spec["config"]["rateLimiting"] = json!({"shared": {"requestsPerMinute": 10}});
    apply(&client, &ns, &doc(&ns, "VirtualMCPServer", "guarded", spec)).await;
    reaches(&vmcps, VirtualMCPServerPhase::Failed, "UnsupportedFeature", ("FeaturesApplied", "False")).await;
    assert_eq!(replicas(&deployments).await, Some(0));
    warned(&events, "UnsupportedFeature", "spec.config.rateLimiting").await;

    // Drift: a deleted child comes back.
    let old = cms.get("guarded-vmcp-config").await.unwrap().metadata.uid;
    cms.delete("guarded-vmcp-config", &DeleteParams::default()).await.unwrap();
    eventually("the ConfigMap comes back", || async {
        let cm = cms.get_opt("guarded-vmcp-config").await.ok()??;
        (cm.metadata.uid != old && cm.data?.contains_key("config.yaml")).then_some(())
    })
    .await;
}
