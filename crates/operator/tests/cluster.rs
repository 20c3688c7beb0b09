//! The MCPServer reconciler against a REAL one-node cluster (`cargo xtask cluster up`): children,
//! drift repair, no writes on an unchanged spec, one rollout per config change, port changes,
//! no adoption, garbage collection, and failing closed on each protection Apiary does not
//! enforce yet. Runs only with `APIARY_CLUSTER_TESTS` set.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::path::Path;
use std::sync::Arc;

use apiary_operator::crd::externalauth::MCPExternalAuthConfig;
use apiary_operator::crd::mcpserver::{MCPServer, MCPServerPhase};
use apiary_operator::reconcile::{self, Metrics};
use common::cluster::{
    CHECKSUM, Child, controlled_by, eventually, gated, in_scratch_namespace, labels_of, meta_of, poke,
    template_checksum, versions,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::Role;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;

fn owned_by_server<K: Resource>(o: &K, uid: &str) -> bool {
    controlled_by(o.meta(), uid, "MCPServer")
}

/// Every child of MCPServer `fetch` but its Deployment.
const CHILDREN: [Child<'static>; 7] = [
    Child::ConfigMap("fetch-runconfig"),
    Child::Service("mcp-fetch-proxy"),
    Child::Service("fetch"),
    Child::ServiceAccount("fetch-proxy-runner"),
    Child::ServiceAccount("fetch-sa"),
    Child::Role("fetch-proxy-runner"),
    Child::RoleBinding("fetch-proxy-runner"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcpserver_reconciles_on_a_real_cluster() {
    gated(in_scratch_namespace("apiary-op", reconcile::run, checks)).await;
}

async fn checks(client: Client, ns: String, metrics: Arc<Metrics>) {
    let servers: Api<MCPServer> = Api::namespaced(client.clone(), &ns);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let svcs: Api<Service> = Api::namespaced(client.clone(), &ns);
    let deps: Api<Deployment> = Api::namespaced(client.clone(), &ns);

    // Seed 000's fetch server, in this test's namespace.
    let seed =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/seeds/000-fetch.yaml")).unwrap();
    let mut server: MCPServer = serde_saphyr::from_str(&seed).unwrap();
    server.metadata.namespace = Some(ns.clone());
    let server = servers.create(&PostParams::default(), &server).await.unwrap();
    let uid = server.uid().unwrap();
    let name = "fetch";

    // 1. Every child, with its name, labels and owner reference.
    let dep = eventually("Deployment fetch", || async { deps.get_opt(name).await.unwrap() }).await;
    let mut children = vec![(Child::Deployment(name).to_string(), dep.metadata.clone())];
    for child in CHILDREN {
        children.push((child.to_string(), meta_of(&client, &ns, child).await));
    }
    for (what, meta) in &children {
        assert!(controlled_by(meta, &uid, "MCPServer"), "{what} lacks the controller owner reference");
        let labels = labels_of(meta);
        for (k, v) in [
            ("app.kubernetes.io/instance", "fetch"),
            ("toolhive", "true"),
            ("toolhive-name", "fetch"),
            ("app", "mcpserver"),
        ] {
            assert_eq!(labels.get(k).map(String::as_str), Some(v), "{what} label {k}");
        }
    }
    for (what, meta) in &children[..4] {
        assert_eq!(
            labels_of(meta).get("app.kubernetes.io/name").map(String::as_str),
            Some(if what.starts_with("ConfigMap") { "mcpserver" } else { "toolhive-proxy" }),
            "{what}"
        );
    }
    let proxy_svc = svcs.get("mcp-fetch-proxy").await.unwrap();
    let spec = proxy_svc.spec.unwrap();
    assert_eq!(spec.session_affinity.as_deref(), Some("ClientIP"));
    assert_eq!(spec.ports.as_ref().unwrap()[0].port, 8080);
    assert_eq!(spec.ports.as_ref().unwrap()[0].name.as_deref(), Some("http"));
    let cm = cms.get("fetch-runconfig").await.unwrap();
    assert_eq!(cm.annotations()[CHECKSUM], template_checksum(&dep));

    // Status: Pending (the runner image does not exist), says why, reports the URL.
    let status = eventually("status Pending with an image-pull reason", || async {
        let s = servers.get(name).await.ok()?.status?;
        (s.phase == Some(MCPServerPhase::Pending) && s.message.as_deref()?.contains("cannot be pulled")).then_some(s)
    })
    .await;
    assert_eq!(status.url.as_deref(), Some(format!("http://mcp-fetch-proxy.{ns}.svc.cluster.local:8080").as_str()));
    assert_eq!(status.observed_generation, Some(1));
    let ready = status.conditions.as_ref().unwrap().iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "DeploymentUnavailable"));

    // 2. An unchanged spec writes nothing: every child's resourceVersion stays across resyncs,
    // and so does the MCPServer's status.
    let before = versions(&client, &ns, name, &CHILDREN).await;
    let status_before = servers.get(name).await.unwrap().status;
    for round in 0..4 {
        poke(&servers, name, &metrics, round).await;
    }
    assert_eq!(versions(&client, &ns, name, &CHILDREN).await, before, "an unchanged spec changed a child");
    assert_eq!(servers.get(name).await.unwrap().status, status_before, "an unchanged spec changed the status");

    // 3. Deleted children come back.
    let old_svc_uid = svcs.get("mcp-fetch-proxy").await.unwrap().uid();
    svcs.delete("mcp-fetch-proxy", &DeleteParams::default()).await.unwrap();
    eventually("Service mcp-fetch-proxy recreated", || async {
        svcs.get_opt("mcp-fetch-proxy").await.unwrap().filter(|s| s.uid() != old_svc_uid && owned_by_server(s, &uid))
    })
    .await;
    let old_cm_uid = cms.get("fetch-runconfig").await.unwrap().uid();
    cms.delete("fetch-runconfig", &DeleteParams::default()).await.unwrap();
    let cm2 = eventually("ConfigMap fetch-runconfig recreated", || async {
        cms.get_opt("fetch-runconfig").await.unwrap().filter(|c| c.uid() != old_cm_uid)
    })
    .await;
    assert_eq!(cm2.annotations()[CHECKSUM], cm.annotations()[CHECKSUM], "same spec, same checksum");

    // 4. New args: new checksum, and the Deployment's template changes exactly once.
    let gen_before = deps.get(name).await.unwrap().metadata.generation.unwrap();
    let old_sum = cm.annotations()[CHECKSUM].clone();
    servers
        .patch(name, &PatchParams::default(), &Patch::Merge(&json!({"spec": {"args": ["--user-agent", "apiary"]}})))
        .await
        .unwrap();
    let new_sum = eventually("a new checksum on the ConfigMap", || async {
        let c = cms.get("fetch-runconfig").await.ok()?;
        let sum = c.annotations().get(CHECKSUM)?.clone();
        (sum != old_sum).then_some(sum)
    })
    .await;
    assert!(cms.get("fetch-runconfig").await.unwrap().data.unwrap()["runconfig.json"].contains("--user-agent"));
    let d = eventually("the Deployment template carries the new checksum", || async {
        let d = deps.get(name).await.ok()?;
        (template_checksum(&d) == new_sum).then_some(d)
    })
    .await;
    assert_eq!(d.metadata.generation.unwrap(), gen_before + 1, "one config change, one template change");
    for round in 10..13 {
        poke(&servers, name, &metrics, round).await;
    }
    assert_eq!(deps.get(name).await.unwrap().metadata.generation.unwrap(), gen_before + 1, "rolled more than once");

    // 5. A new proxyPort converges both Services and the URL.
    servers.patch(name, &PatchParams::default(), &Patch::Merge(&json!({"spec": {"proxyPort": 9090}}))).await.unwrap();
    for svc_name in ["mcp-fetch-proxy", "fetch"] {
        eventually(&format!("Service {svc_name} on 9090"), || async {
            let s = svcs.get(svc_name).await.ok()?;
            let ports = s.spec?.ports?;
            (ports.len() == 1 && ports[0].port == 9090).then_some(())
        })
        .await;
    }
    eventually("status.url on 9090", || async {
        let s = servers.get(name).await.ok()?.status?;
        (s.url.as_deref()? == format!("http://mcp-fetch-proxy.{ns}.svc.cluster.local:9090")).then_some(())
    })
    .await;

    // 6. A name already taken by an object Apiary does not own is not adopted.
    let foreign: Service = serde_json::from_value(json!({
        "metadata": {"name": "mcp-taken-proxy"},
        "spec": {"ports": [{"port": 1234}]}
    }))
    .unwrap();
    svcs.create(&PostParams::default(), &foreign).await.unwrap();
    let mut taken = server.clone();
    taken.metadata =
        kube::api::ObjectMeta { name: Some("taken".into()), namespace: Some(ns.clone()), ..Default::default() };
    taken.status = None;
    servers.create(&PostParams::default(), &taken).await.unwrap();
    eventually("Ready=False NameConflict on taken", || async {
        let s = servers.get("taken").await.ok()?.status?;
        let c = s.conditions?.into_iter().find(|c| c.type_ == "Ready")?;
        (c.status == "False" && c.reason == "NameConflict" && s.phase == Some(MCPServerPhase::Failed)).then_some(())
    })
    .await;
    let still_foreign = svcs.get("mcp-taken-proxy").await.unwrap();
    assert!(still_foreign.owner_references().is_empty(), "the foreign Service was adopted");
    assert_eq!(still_foreign.spec.unwrap().ports.unwrap()[0].port, 1234);
    assert!(deps.get_opt("taken").await.unwrap().is_none(), "children were created despite the conflict");

    // 7. Deleting the MCPServer removes its children (garbage collection via owner refs).
    servers.delete(name, &DeleteParams::background()).await.unwrap();
    eventually("children of fetch removed", || async {
        let gone = deps.get_opt(name).await.unwrap().is_none()
            && cms.get_opt("fetch-runconfig").await.unwrap().is_none()
            && svcs.get_opt("mcp-fetch-proxy").await.unwrap().is_none()
            && svcs.get_opt("fetch").await.unwrap().is_none()
            && Api::<Role>::namespaced(client.clone(), &ns).get_opt("fetch-proxy-runner").await.unwrap().is_none();
        gone.then_some(())
    })
    .await;
}

/// Each protection field of an MCPServer as a manifest sets it, with the `Ready` reason that
/// holds the proxy at zero and what its message says besides the field: the fields Apiary does
/// not enforce yet, the enforced ones whose referenced object does not exist, and an
/// MCPExternalAuthConfig (`aws`, made by the test) of a type Apiary does not support.
fn protection_fields() -> Vec<(&'static str, serde_json::Value, &'static str, &'static str)> {
    const UNSUPPORTED: &str = "UnsupportedFeature";
    const MISSING: &str = "InvalidReference";
    vec![
        ("oidcConfigRef", json!({"name": "keycloak", "audience": "guarded"}), MISSING, "not found"),
        ("authzConfig", json!({"type": "configMap", "configMap": {"name": "no-such-policy"}}), MISSING, "not found"),
        ("authzConfigRef", json!({"name": "policy"}), MISSING, "not found"),
        ("toolConfigRef", json!({"name": "tools"}), MISSING, "not found"),
        ("telemetryConfigRef", json!({"name": "otel"}), MISSING, "MCPTelemetryConfig otel not found"),
        ("externalAuthConfigRef", json!({"name": "exchange"}), MISSING, "MCPExternalAuthConfig exchange not found"),
        ("externalAuthConfigRef", json!({"name": "aws"}), MISSING, "type awsSts is not supported"),
        ("authServerRef", json!({"name": "embedded"}), UNSUPPORTED, ""),
        ("webhookConfigRef", json!({"name": "hooks"}), UNSUPPORTED, ""),
        ("rateLimiting", json!({"shared": {"requestsPerMinute": 10}}), UNSUPPORTED, ""),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcpserver_fails_closed_on_each_unenforced_protection() {
    gated(in_scratch_namespace("apiary-failclosed", reconcile::run, fail_closed)).await;
}

/// Warning events `reason` about MCPServer `name` whose note names `field` and says `says`.
async fn warning_events(events: &Api<Event>, name: &str, reason: &str, field: &str, says: &str) -> Vec<Event> {
    let list = events.list(&ListParams::default()).await.unwrap();
    list.items
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                && e.reason.as_deref() == Some(reason)
                && e.type_.as_deref() == Some("Warning")
                && e.note.as_deref().is_some_and(|n| n.contains(field) && n.contains(says))
        })
        .collect()
}

async fn fail_closed(client: Client, ns: String, metrics: Arc<Metrics>) {
    let servers: Api<MCPServer> = Api::namespaced(client.clone(), &ns);
    let deps: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let name = "guarded";
    let server: MCPServer = serde_json::from_value(json!({
        "apiVersion": "toolhive.stacklok.dev/v1beta1",
        "kind": "MCPServer",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"image": "ghcr.io/stackloklabs/gofetch/server:latest", "transport": "streamable-http"}
    }))
    .unwrap();
    servers.create(&PostParams::default(), &server).await.unwrap();
    let aws: MCPExternalAuthConfig = serde_json::from_value(json!({
        "apiVersion": "toolhive.stacklok.dev/v1beta1",
        "kind": "MCPExternalAuthConfig",
        "metadata": {"name": "aws", "namespace": ns},
        "spec": {"type": "awsSts", "awsSts": {"region": "eu-west-1"}}
    }))
    .unwrap();
    Api::<MCPExternalAuthConfig>::namespaced(client.clone(), &ns).create(&PostParams::default(), &aws).await.unwrap();
    let replicas = |want: i32| {
        let deps = deps.clone();
        async move { (deps.get_opt(name).await.unwrap()?.spec?.replicas == Some(want)).then_some(()) }
    };
    eventually("Deployment guarded at 1 replica", || replicas(1)).await;

    for (round, (field, value, reason, says)) in protection_fields().into_iter().enumerate() {
        let spec_name = format!("spec.{field}");
        servers.patch(name, &PatchParams::default(), &Patch::Merge(&json!({"spec": {field: value}}))).await.unwrap();
        eventually(&format!("{field}: Deployment at 0 replicas"), || replicas(0)).await;
        let status = eventually(&format!("{field}: Failed, {reason}"), || async {
            let s = servers.get(name).await.ok()?.status?;
            let ready = s.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")?;
            (s.phase == Some(MCPServerPhase::Failed)
                && ready.status == "False"
                && ready.reason == reason
                && ready.message.contains(&spec_name)
                && ready.message.contains(says))
            .then_some(s)
        })
        .await;
        assert!(status.message.as_deref().unwrap().contains(&spec_name), "{field}: {:?}", status.message);
        if reason == "UnsupportedFeature" {
            let features = status.conditions.as_ref().unwrap().iter().find(|c| c.type_ == "FeaturesApplied").unwrap();
            assert_eq!((features.status.as_str(), features.reason.as_str()), ("False", "NotImplemented"), "{field}");
            assert!(features.message.contains(&spec_name), "{field}: {}", features.message);
        }
        eventually(&format!("{field}: a Warning event {reason} naming it"), || async {
            (!warning_events(&events, name, reason, &spec_name, says).await.is_empty()).then_some(())
        })
        .await;

        // Resyncs in this state publish nothing more: one event, never repeated as a series.
        poke(&servers, name, &metrics, round).await;
        let seen = warning_events(&events, name, reason, &spec_name, says).await;
        assert_eq!(seen.len(), 1, "{field}: {seen:?}");
        assert!(seen[0].series.is_none(), "{field}: the event was published again: {:?}", seen[0].series);

        // Without the field the server comes back: its replicas, Pending (the runner image does
        // not exist here), every field applied.
        servers.patch(name, &PatchParams::default(), &Patch::Merge(&json!({"spec": {field: null}}))).await.unwrap();
        eventually(&format!("{field} removed: Deployment back at 1 replica"), || replicas(1)).await;
        eventually(&format!("{field} removed: Pending with every feature applied"), || async {
            let s = servers.get(name).await.ok()?.status?;
            let features = s.conditions.as_ref()?.iter().find(|c| c.type_ == "FeaturesApplied")?;
            (s.phase == Some(MCPServerPhase::Pending) && features.status == "True").then_some(())
        })
        .await;
    }
}
