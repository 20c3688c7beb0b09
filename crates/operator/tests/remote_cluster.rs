//! The MCPRemoteProxy reconciler against a REAL one-node cluster (`cargo xtask cluster up`):
//! children with their contract names, labels and owner references, status, drift repair, no
//! writes on an unchanged spec, a proxyPort change converging, unsupported restrictive fields
//! keeping the proxy at zero replicas, no adoption, and garbage collection. Runs only with
//! `APIARY_CLUSTER_TESTS` set.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::sync::Arc;

use apiary_config::{RunConfig, Source, Transport};
use apiary_operator::crd::mcpremoteproxy::{MCPRemoteProxy, MCPRemoteProxyPhase};
use apiary_operator::reconcile::{self, Context, Metrics, WatchScope};
use apiary_operator::remoteproxy;
use common::cluster::{
    CHECKSUM, Child, Stop, controlled_by, eventually, gated, in_scratch_namespace, labels_of, meta_of, poke,
    template_checksum, versions,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;

const NAME: &str = "remote";
const RUNNER: &str = "remote-remote-proxy-runner";
const SERVICE: &str = "mcp-remote-remote-proxy";

/// Every child of MCPRemoteProxy `remote` but its Deployment.
const CHILDREN: [Child<'static>; 5] = [
    Child::ConfigMap("remote-runconfig"),
    Child::Service(SERVICE),
    Child::ServiceAccount(RUNNER),
    Child::Role(RUNNER),
    Child::RoleBinding(RUNNER),
];

fn owned_by_proxy<K: Resource>(o: &K, uid: &str) -> bool {
    controlled_by(o.meta(), uid, "MCPRemoteProxy")
}

/// Both controllers, as `apiary operator` runs them: the MCPServer one must leave these
/// children alone.
async fn both_controllers(ctx: Arc<Context>, scope: WatchScope, stop: Stop) {
    tokio::join!(reconcile::run(Arc::clone(&ctx), scope.clone(), stop.clone()), remoteproxy::run(ctx, scope, stop));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcpremoteproxy_reconciles_on_a_real_cluster() {
    gated(in_scratch_namespace("apiary-rp", both_controllers, checks)).await;
}

async fn checks(client: Client, ns: String, metrics: Arc<Metrics>) {
    let proxies: Api<MCPRemoteProxy> = Api::namespaced(client.clone(), &ns);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let svcs: Api<Service> = Api::namespaced(client.clone(), &ns);
    let deps: Api<Deployment> = Api::namespaced(client.clone(), &ns);

    let proxy: MCPRemoteProxy = serde_json::from_value(json!({
        "apiVersion": "toolhive.stacklok.dev/v1beta1",
        "kind": "MCPRemoteProxy",
        "metadata": {"name": NAME, "namespace": ns},
        "spec": {"remoteURL": "https://mcp.example.com/mcp", "transport": "streamable-http", "proxyPort": 8080}
    }))
    .unwrap();
    let proxy = proxies.create(&PostParams::default(), &proxy).await.unwrap();
    let uid = proxy.uid().unwrap();

    // 1. Every child, with its name, labels and owner reference.
    let dep = eventually("Deployment remote", || async { deps.get_opt(NAME).await.unwrap() }).await;
    let mut children = vec![(Child::Deployment(NAME), dep.metadata.clone())];
    for child in CHILDREN {
        children.push((child, meta_of(&client, &ns, child).await));
    }
    for (child, meta) in &children {
        let what = child.to_string();
        let app_name = match child {
            Child::Deployment(_) | Child::Service(_) => "toolhive-proxy",
            _ => "mcpremoteproxy",
        };
        assert!(controlled_by(meta, &uid, "MCPRemoteProxy"), "{what} lacks the controller owner reference");
        let labels = labels_of(meta);
        for (k, v) in [
            ("app.kubernetes.io/instance", NAME),
            ("app.kubernetes.io/name", app_name),
            ("app", "mcpremoteproxy"),
            ("toolhive", "true"),
            ("toolhive-name", NAME),
        ] {
            assert_eq!(labels.get(k).map(String::as_str), Some(v), "{what} label {k}");
        }
    }
    let pod_labels = dep.spec.as_ref().unwrap().template.metadata.as_ref().unwrap().labels.clone().unwrap();
    assert_eq!(pod_labels.get("app.kubernetes.io/name").map(String::as_str), Some("toolhive-proxy"));
    let pod = dep.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some(RUNNER));
    assert_eq!(pod.containers[0].name, "toolhive");
    let role = Api::<Role>::namespaced(client.clone(), &ns).get(RUNNER).await.unwrap();
    let rules = role.rules.unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].resources.as_deref().unwrap(), ["configmaps", "secrets"].map(String::from));
    assert_eq!(rules[0].verbs, ["get", "list", "watch"].map(String::from));
    let svc_spec = svcs.get(SERVICE).await.unwrap().spec.unwrap();
    let ports = svc_spec.ports.unwrap();
    assert_eq!((ports.len(), ports[0].port, ports[0].name.as_deref()), (1, 8080, Some("http")));
    assert_eq!(svc_spec.session_affinity.as_deref(), Some("ClientIP"));
    let cm = cms.get("remote-runconfig").await.unwrap();
    assert_eq!(cm.annotations()[CHECKSUM], template_checksum(&dep));
    let rc = RunConfig::from_json_str(&cm.data.as_ref().unwrap()["runconfig.json"]).unwrap();
    assert_eq!(rc.source, Source::remote("https://mcp.example.com/mcp"));
    assert_eq!(
        (rc.transport, rc.proxy.port, rc.proxy.host.as_str()),
        (Some(Transport::StreamableHttp), 8080, "0.0.0.0")
    );

    // Status: Pending (the runner image does not exist), says why, reports the URL.
    let status = eventually("status Pending with an image-pull reason", || async {
        let s = proxies.get(NAME).await.ok()?.status?;
        (s.phase == Some(MCPRemoteProxyPhase::Pending) && s.message.as_deref()?.contains("cannot be pulled"))
            .then_some(s)
    })
    .await;
    assert_eq!(status.url.as_deref(), Some(format!("http://{SERVICE}.{ns}.svc.cluster.local:8080").as_str()));
    assert_eq!(status.observed_generation, Some(1));
    let conditions = status.conditions.clone().unwrap();
    let ready = conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "DeploymentUnavailable"));
    let features = conditions.iter().find(|c| c.type_ == "FeaturesApplied").unwrap();
    assert_eq!(features.status, "True");

    // 2. An unchanged spec writes nothing: every child's resourceVersion stays across resyncs,
    // and so does the status.
    let before = versions(&client, &ns, NAME, &CHILDREN).await;
    let status_before = proxies.get(NAME).await.unwrap().status;
    for round in 0..4 {
        poke(&proxies, NAME, &metrics, round).await;
    }
    assert_eq!(versions(&client, &ns, NAME, &CHILDREN).await, before, "an unchanged spec changed a child");
    assert_eq!(proxies.get(NAME).await.unwrap().status, status_before, "an unchanged spec changed the status");

    // 3. Deleted children come back.
    let old = deps.get(NAME).await.unwrap().uid();
    deps.delete(NAME, &DeleteParams::background()).await.unwrap();
    eventually("Deployment remote recreated", || async {
        deps.get_opt(NAME).await.unwrap().filter(|d| d.uid() != old && owned_by_proxy(d, &uid))
    })
    .await;
    let old = svcs.get(SERVICE).await.unwrap().uid();
    svcs.delete(SERVICE, &DeleteParams::default()).await.unwrap();
    eventually("Service recreated", || async {
        svcs.get_opt(SERVICE).await.unwrap().filter(|s| s.uid() != old && owned_by_proxy(s, &uid))
    })
    .await;

    // 4. A new proxyPort converges the Service, the container, the RunConfig and the URL, and
    // rolls the Deployment through a new checksum.
    let old_sum = cms.get("remote-runconfig").await.unwrap().annotations()[CHECKSUM].clone();
    proxies.patch(NAME, &PatchParams::default(), &Patch::Merge(&json!({"spec": {"proxyPort": 9090}}))).await.unwrap();
    eventually("Service on 9090", || async {
        let ports = svcs.get(SERVICE).await.ok()?.spec?.ports?;
        (ports.len() == 1 && ports[0].port == 9090).then_some(())
    })
    .await;
    let d = eventually("Deployment on 9090 with a new checksum", || async {
        let d = deps.get(NAME).await.ok()?;
        let port = d.spec.as_ref()?.template.spec.as_ref()?.containers[0].ports.as_ref()?[0].container_port;
        (port == 9090 && template_checksum(&d) != old_sum).then_some(d)
    })
    .await;
    let cm = cms.get("remote-runconfig").await.unwrap();
    assert_eq!(cm.annotations()[CHECKSUM], template_checksum(&d));
    assert_eq!(RunConfig::from_json_str(&cm.data.unwrap()["runconfig.json"]).unwrap().proxy.port, 9090);
    eventually("status.url on 9090", || async {
        let s = proxies.get(NAME).await.ok()?.status?;
        (s.url.as_deref()? == format!("http://{SERVICE}.{ns}.svc.cluster.local:9090")
            && s.observed_generation == Some(2))
        .then_some(())
    })
    .await;

    // 5. A restrictive field Apiary does not apply yet keeps the proxy at zero replicas and says
    // so; an ignored one is named; removing them brings the proxy back.
    let patch = json!({"spec": {"authServerRef": {"name": "embedded"}}});
    proxies.patch(NAME, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    let s = eventually("Failed with UnsupportedFeature", || async {
        let s = proxies.get(NAME).await.ok()?.status?;
        let ready = s.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")?.clone();
        (s.phase == Some(MCPRemoteProxyPhase::Failed) && ready.reason == "UnsupportedFeature").then_some(s)
    })
    .await;
    assert!(s.message.as_deref().unwrap().contains("spec.authServerRef"), "{:?}", s.message);
    let features = s.conditions.as_ref().unwrap().iter().find(|c| c.type_ == "FeaturesApplied").unwrap();
    assert_eq!((features.status.as_str(), features.reason.as_str()), ("False", "NotImplemented"));
    assert!(features.message.contains("spec.authServerRef"), "{}", features.message);
    eventually("Deployment at 0 replicas", || async {
        (deps.get(NAME).await.ok()?.spec?.replicas == Some(0)).then_some(())
    })
    .await;
    // Drift repair comes from the watches: in this state the next requeue is minutes away, so
    // once the scale-down has settled (no more Deployment or pod events) only the Service
    // watch can bring the Service back within WAIT.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    eventually("the scale-down settled", || async {
        let d = deps.get(NAME).await.ok()?;
        let settled = d.status.as_ref()?.observed_generation == d.metadata.generation
            && d.status.as_ref()?.replicas.unwrap_or(0) == 0
            && d.status.as_ref()?.terminating_replicas.unwrap_or(0) == 0
            && pods
                .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={NAME}")))
                .await
                .ok()?
                .items
                .is_empty();
        settled.then_some(())
    })
    .await;
    poke(&proxies, NAME, &metrics, 100).await;
    let old = svcs.get(SERVICE).await.unwrap().uid();
    svcs.delete(SERVICE, &DeleteParams::default()).await.unwrap();
    eventually("Service recreated while the proxy is held at 0", || async {
        svcs.get_opt(SERVICE).await.unwrap().filter(|s| s.uid() != old && owned_by_proxy(s, &uid))
    })
    .await;
    let patch = json!({"spec": {"authServerRef": null}});
    proxies.patch(NAME, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    eventually("Deployment back at the default replica count", || async {
        (deps.get(NAME).await.ok()?.spec?.replicas == Some(1)).then_some(())
    })
    .await;
    eventually("Pending again with every feature applied", || async {
        let s = proxies.get(NAME).await.ok()?.status?;
        let features = s.conditions.as_ref()?.iter().find(|c| c.type_ == "FeaturesApplied")?.clone();
        (s.phase == Some(MCPRemoteProxyPhase::Pending) && features.status == "True").then_some(())
    })
    .await;

    // 6. A name already taken by an object Apiary does not own is not adopted.
    let foreign: Service = serde_json::from_value(json!({
        "metadata": {"name": "mcp-taken-remote-proxy"},
        "spec": {"ports": [{"port": 1234}]}
    }))
    .unwrap();
    svcs.create(&PostParams::default(), &foreign).await.unwrap();
    let taken: MCPRemoteProxy = serde_json::from_value(json!({
        "apiVersion": "toolhive.stacklok.dev/v1beta1",
        "kind": "MCPRemoteProxy",
        "metadata": {"name": "taken", "namespace": ns},
        "spec": {"remoteURL": "https://mcp.example.com/mcp"}
    }))
    .unwrap();
    proxies.create(&PostParams::default(), &taken).await.unwrap();
    eventually("Ready=False NameConflict on taken", || async {
        let s = proxies.get("taken").await.ok()?.status?;
        let c = s.conditions?.into_iter().find(|c| c.type_ == "Ready")?;
        (c.status == "False" && c.reason == "NameConflict" && s.phase == Some(MCPRemoteProxyPhase::Failed))
            .then_some(())
    })
    .await;
    let still_foreign = svcs.get("mcp-taken-remote-proxy").await.unwrap();
    assert!(still_foreign.owner_references().is_empty(), "the foreign Service was adopted");
    assert_eq!(still_foreign.spec.unwrap().ports.unwrap()[0].port, 1234);
    assert!(deps.get_opt("taken").await.unwrap().is_none(), "children were created despite the conflict");

    // 7. Deleting the MCPRemoteProxy removes its children (garbage collection via owner refs).
    proxies.delete(NAME, &DeleteParams::background()).await.unwrap();
    eventually("children of remote removed", || async {
        let gone = deps.get_opt(NAME).await.unwrap().is_none()
            && cms.get_opt("remote-runconfig").await.unwrap().is_none()
            && svcs.get_opt(SERVICE).await.unwrap().is_none()
            && Api::<ServiceAccount>::namespaced(client.clone(), &ns).get_opt(RUNNER).await.unwrap().is_none()
            && Api::<Role>::namespaced(client.clone(), &ns).get_opt(RUNNER).await.unwrap().is_none()
            && Api::<RoleBinding>::namespaced(client.clone(), &ns).get_opt(RUNNER).await.unwrap().is_none();
        gone.then_some(())
    })
    .await;
}
