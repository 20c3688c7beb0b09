//! The MCPRemoteProxy reconciler against a REAL one-node cluster (`cargo xtask cluster up`):
//! children with their contract names, labels and owner references, status, drift repair, no
//! writes on an unchanged spec, a proxyPort change converging, unsupported restrictive fields
//! keeping the proxy at zero replicas, no adoption, and garbage collection. Runs only with
//! `APIARY_CLUSTER_TESTS` set.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use apiary_config::{RunConfig, Source, Transport};
use apiary_operator::crd::mcpremoteproxy::{MCPRemoteProxy, MCPRemoteProxyPhase};
use apiary_operator::reconcile::{self, Context, Metrics, Settings, WatchScope};
use apiary_operator::remoteproxy;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, Resource, ResourceExt};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(90);
const CHECKSUM: &str = "toolhive.stacklok.dev/content-checksum";
const NAME: &str = "remote";
const RUNNER: &str = "remote-remote-proxy-runner";
const SERVICE: &str = "mcp-remote-remote-proxy";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The cluster's kubeconfig: `KUBECONFIG` when it names a file, else `cargo xtask cluster up`.
fn kubeconfig() -> PathBuf {
    if let Some(p) = std::env::var_os("KUBECONFIG").map(PathBuf::from).filter(|p| p.is_file()) {
        return p;
    }
    // Its own target dir: the one running this test may be locked by cargo.
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(|t| format!("{t}-xtask"))
        .unwrap_or_else(|_| workspace().join("target/xtask-cluster").display().to_string());
    let out = std::process::Command::new(env!("CARGO"))
        .args(["xtask", "cluster", "up"])
        .current_dir(workspace())
        .env("CARGO_TARGET_DIR", target)
        .output()
        .unwrap();
    assert!(out.status.success(), "cargo xtask cluster up failed: {}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

async fn client(path: &Path) -> Client {
    let kc = Kubeconfig::read_from(path).unwrap();
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.unwrap();
    Client::try_from(config).unwrap()
}

/// Polls `probe` until it returns `Some`, failing after [`WAIT`] with `what`.
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn apply_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let dir = workspace().join("deploy/crds");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let crd: CustomResourceDefinition =
                serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let name = crd.name_any();
            api.patch(&name, &PatchParams::apply("apiary-cluster-test").force(), &Patch::Apply(&crd)).await.unwrap();
            names.push(name);
        }
    }
    for name in names {
        eventually(&format!("CRD {name} established"), || async {
            let crd = api.get(&name).await.ok()?;
            let established = crd.status?.conditions?.iter().any(|c| c.type_ == "Established" && c.status == "True");
            established.then_some(())
        })
        .await;
    }
}

fn labels_of<K: Resource>(o: &K) -> BTreeMap<String, String> {
    o.meta().labels.clone().unwrap_or_default()
}

fn owned_by_proxy<K: Resource>(o: &K, uid: &str) -> bool {
    o.meta()
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.uid == uid && r.controller == Some(true) && r.kind == "MCPRemoteProxy")
}

fn template_checksum(d: &Deployment) -> String {
    d.spec.as_ref().unwrap().template.metadata.as_ref().unwrap().annotations.as_ref().unwrap()[CHECKSUM].clone()
}

/// resourceVersion of every child except the Deployment, whose status the Deployment
/// controller keeps writing; for it the generation and the checksum on its template count.
async fn versions(client: &Client, ns: &str) -> Vec<(String, String)> {
    let rv = |o: Option<String>| o.unwrap();
    let dep = Api::<Deployment>::namespaced(client.clone(), ns).get(NAME).await.unwrap();
    vec![
        (
            "configmap".into(),
            rv(Api::<ConfigMap>::namespaced(client.clone(), ns)
                .get("remote-runconfig")
                .await
                .unwrap()
                .resource_version()),
        ),
        (
            "service".into(),
            rv(Api::<Service>::namespaced(client.clone(), ns).get(SERVICE).await.unwrap().resource_version()),
        ),
        (
            "serviceaccount".into(),
            rv(Api::<ServiceAccount>::namespaced(client.clone(), ns).get(RUNNER).await.unwrap().resource_version()),
        ),
        ("role".into(), rv(Api::<Role>::namespaced(client.clone(), ns).get(RUNNER).await.unwrap().resource_version())),
        (
            "rolebinding".into(),
            rv(Api::<RoleBinding>::namespaced(client.clone(), ns).get(RUNNER).await.unwrap().resource_version()),
        ),
        ("deployment generation".into(), dep.metadata.generation.unwrap().to_string()),
        ("deployment checksum".into(), template_checksum(&dep)),
    ]
}

/// Makes the controller reconcile `name` (a label change: no new generation) and waits for it.
async fn poke(proxies: &Api<MCPRemoteProxy>, name: &str, metrics: &Metrics, round: usize) {
    let before = metrics.reconciles();
    let patch = json!({"metadata": {"labels": {"apiary-test-poke": round.to_string()}}});
    proxies.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    eventually("a reconcile after the poke", || async { (metrics.reconciles() > before).then_some(()) }).await;
    // Let that reconcile finish its writes, if it made any.
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcpremoteproxy_reconciles_on_a_real_cluster() {
    if std::env::var_os("APIARY_CLUSTER_TESTS").is_none() {
        eprintln!(
            "SKIPPED: set APIARY_CLUSTER_TESTS=1 to run the operator against a real cluster (cargo xtask cluster up)"
        );
        return;
    }
    tokio::time::timeout(Duration::from_secs(600), scenario())
        .await
        .expect("the cluster scenario took over 10 minutes");
}

async fn scenario() {
    let path = kubeconfig();
    let client = client(&path).await;
    apply_crds(&client).await;

    let ns = format!("apiary-rp-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns_obj: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
    namespaces.create(&PostParams::default(), &ns_obj).await.unwrap();

    // Both controllers, as `apiary operator` runs them: the MCPServer one must leave these
    // children alone.
    let metrics = Arc::new(Metrics::default());
    let settings = Settings { runner_image: "apiary.invalid/apiary:never".into(), proxy_host: "0.0.0.0".into() };
    let ctx = Arc::new(Context::new(client.clone(), settings, Some("cluster-test".into()), Arc::clone(&metrics)));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let stop = futures::FutureExt::shared(async move {
        let _ = stop_rx.await;
    });
    let scope = WatchScope::Namespaces(vec![ns.clone()]);
    let operator = tokio::spawn({
        let (ctx, scope, stop) = (Arc::clone(&ctx), scope.clone(), stop.clone());
        async move {
            tokio::join!(
                reconcile::run(Arc::clone(&ctx), scope.clone(), stop.clone()),
                remoteproxy::run(ctx, scope, stop)
            );
        }
    });

    let result = tokio::spawn(checks(client.clone(), ns.clone(), Arc::clone(&metrics))).await;

    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(30), operator).await;
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
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
    let children: Vec<(String, BTreeMap<String, String>, bool, &str)> = vec![
        ("Deployment remote".into(), labels_of(&dep), owned_by_proxy(&dep, &uid), "toolhive-proxy"),
        {
            let o = svcs.get(SERVICE).await.unwrap();
            (format!("Service {SERVICE}"), labels_of(&o), owned_by_proxy(&o, &uid), "toolhive-proxy")
        },
        {
            let o = cms.get("remote-runconfig").await.unwrap();
            ("ConfigMap remote-runconfig".into(), labels_of(&o), owned_by_proxy(&o, &uid), "mcpremoteproxy")
        },
        {
            let o = Api::<ServiceAccount>::namespaced(client.clone(), &ns).get(RUNNER).await.unwrap();
            (format!("ServiceAccount {RUNNER}"), labels_of(&o), owned_by_proxy(&o, &uid), "mcpremoteproxy")
        },
        {
            let o = Api::<Role>::namespaced(client.clone(), &ns).get(RUNNER).await.unwrap();
            (format!("Role {RUNNER}"), labels_of(&o), owned_by_proxy(&o, &uid), "mcpremoteproxy")
        },
        {
            let o = Api::<RoleBinding>::namespaced(client.clone(), &ns).get(RUNNER).await.unwrap();
            (format!("RoleBinding {RUNNER}"), labels_of(&o), owned_by_proxy(&o, &uid), "mcpremoteproxy")
        },
    ];
    for (what, labels, owned, app_name) in &children {
        assert!(owned, "{what} lacks the controller owner reference");
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
    let before = versions(&client, &ns).await;
    let status_before = proxies.get(NAME).await.unwrap().status;
    for round in 0..4 {
        poke(&proxies, NAME, &metrics, round).await;
    }
    assert_eq!(versions(&client, &ns).await, before, "an unchanged spec changed a child");
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
    let patch = json!({"spec": {
        "oidcConfigRef": {"name": "keycloak", "audience": "remote"},
        "audit": {"enabled": true}
    }});
    proxies.patch(NAME, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    let s = eventually("Failed with UnsupportedFeature", || async {
        let s = proxies.get(NAME).await.ok()?.status?;
        let ready = s.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")?.clone();
        (s.phase == Some(MCPRemoteProxyPhase::Failed) && ready.reason == "UnsupportedFeature").then_some(s)
    })
    .await;
    assert!(s.message.as_deref().unwrap().contains("spec.oidcConfigRef"), "{:?}", s.message);
    let features = s.conditions.as_ref().unwrap().iter().find(|c| c.type_ == "FeaturesApplied").unwrap();
    assert_eq!((features.status.as_str(), features.reason.as_str()), ("False", "NotImplemented"));
    assert!(features.message.contains("spec.oidcConfigRef") && features.message.contains("spec.audit"));
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
    let patch = json!({"spec": {"oidcConfigRef": null, "audit": null}});
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
