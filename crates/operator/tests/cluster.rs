//! The MCPServer reconciler against a REAL one-node cluster (`cargo xtask cluster up`): children,
//! drift repair, no writes on an unchanged spec, one rollout per config change, port changes,
//! no adoption, and garbage collection. Runs only with `APIARY_CLUSTER_TESTS` set.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use apiary_operator::crd::mcpserver::{MCPServer, MCPServerPhase};
use apiary_operator::reconcile::{self, Context, Metrics, Settings, WatchScope};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, Resource, ResourceExt};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(90);
const CHECKSUM: &str = "toolhive.stacklok.dev/content-checksum";

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

fn owned_by_server<K: Resource>(o: &K, uid: &str) -> bool {
    o.meta()
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.uid == uid && r.controller == Some(true) && r.kind == "MCPServer")
}

/// resourceVersion of every child except the Deployment, whose status the Deployment
/// controller keeps writing; for it the generation and the checksum on its template count.
async fn versions(client: &Client, ns: &str, name: &str) -> Vec<(String, String)> {
    let cm: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let svc: Api<Service> = Api::namespaced(client.clone(), ns);
    let sa: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let role: Api<Role> = Api::namespaced(client.clone(), ns);
    let rb: Api<RoleBinding> = Api::namespaced(client.clone(), ns);
    let dep: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let d = dep.get(name).await.unwrap();
    vec![
        ("configmap".into(), cm.get(&format!("{name}-runconfig")).await.unwrap().resource_version().unwrap()),
        ("svc proxy".into(), svc.get(&format!("mcp-{name}-proxy")).await.unwrap().resource_version().unwrap()),
        ("svc alias".into(), svc.get(name).await.unwrap().resource_version().unwrap()),
        ("sa runner".into(), sa.get(&format!("{name}-proxy-runner")).await.unwrap().resource_version().unwrap()),
        ("sa mcp".into(), sa.get(&format!("{name}-sa")).await.unwrap().resource_version().unwrap()),
        ("role".into(), role.get(&format!("{name}-proxy-runner")).await.unwrap().resource_version().unwrap()),
        ("rolebinding".into(), rb.get(&format!("{name}-proxy-runner")).await.unwrap().resource_version().unwrap()),
        ("deployment generation".into(), d.metadata.generation.unwrap().to_string()),
        ("deployment checksum".into(), template_checksum(&d)),
    ]
}

fn template_checksum(d: &Deployment) -> String {
    d.spec.as_ref().unwrap().template.metadata.as_ref().unwrap().annotations.as_ref().unwrap()[CHECKSUM].clone()
}

/// Makes the controller reconcile `name` (a label change: no new generation) and waits for it.
async fn poke(servers: &Api<MCPServer>, name: &str, metrics: &Metrics, round: usize) {
    let before = metrics.reconciles();
    let patch = json!({"metadata": {"labels": {"apiary-test-poke": round.to_string()}}});
    servers.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    eventually("a reconcile after the poke", || async { (metrics.reconciles() > before).then_some(()) }).await;
    // Let that reconcile finish its writes, if it made any.
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcpserver_reconciles_on_a_real_cluster() {
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

    let ns = format!("apiary-op-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns_obj: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
    namespaces.create(&PostParams::default(), &ns_obj).await.unwrap();

    let metrics = Arc::new(Metrics::default());
    let settings = Settings { runner_image: "apiary.invalid/apiary:never".into(), proxy_host: "0.0.0.0".into() };
    let ctx = Arc::new(Context::new(client.clone(), settings, Some("cluster-test".into()), Arc::clone(&metrics)));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let operator = tokio::spawn(reconcile::run(ctx, WatchScope::Namespaces(vec![ns.clone()]), async move {
        let _ = stop_rx.await;
    }));

    let result = tokio::spawn(checks(client.clone(), ns.clone(), Arc::clone(&metrics))).await;

    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(30), operator).await;
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
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
    let children: Vec<(String, BTreeMap<String, String>, bool)> = vec![
        ("Deployment fetch".into(), labels_of(&dep), owned_by_server(&dep, &uid)),
        {
            let o = cms.get("fetch-runconfig").await.unwrap();
            ("ConfigMap fetch-runconfig".into(), labels_of(&o), owned_by_server(&o, &uid))
        },
        {
            let o = svcs.get("mcp-fetch-proxy").await.unwrap();
            ("Service mcp-fetch-proxy".into(), labels_of(&o), owned_by_server(&o, &uid))
        },
        {
            let o = svcs.get("fetch").await.unwrap();
            ("Service fetch".into(), labels_of(&o), owned_by_server(&o, &uid))
        },
        {
            let o = Api::<ServiceAccount>::namespaced(client.clone(), &ns).get("fetch-proxy-runner").await.unwrap();
            ("ServiceAccount fetch-proxy-runner".into(), labels_of(&o), owned_by_server(&o, &uid))
        },
        {
            let o = Api::<ServiceAccount>::namespaced(client.clone(), &ns).get("fetch-sa").await.unwrap();
            ("ServiceAccount fetch-sa".into(), labels_of(&o), owned_by_server(&o, &uid))
        },
        {
            let o = Api::<Role>::namespaced(client.clone(), &ns).get("fetch-proxy-runner").await.unwrap();
            ("Role fetch-proxy-runner".into(), labels_of(&o), owned_by_server(&o, &uid))
        },
        {
            let o = Api::<RoleBinding>::namespaced(client.clone(), &ns).get("fetch-proxy-runner").await.unwrap();
            ("RoleBinding fetch-proxy-runner".into(), labels_of(&o), owned_by_server(&o, &uid))
        },
    ];
    for (what, labels, owned) in &children {
        assert!(owned, "{what} lacks the controller owner reference");
        for (k, v) in [
            ("app.kubernetes.io/instance", "fetch"),
            ("toolhive", "true"),
            ("toolhive-name", "fetch"),
            ("app", "mcpserver"),
        ] {
            assert_eq!(labels.get(k).map(String::as_str), Some(v), "{what} label {k}");
        }
    }
    for (what, labels, _) in &children[..4] {
        assert_eq!(
            labels.get("app.kubernetes.io/name").map(String::as_str),
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
    let before = versions(&client, &ns, name).await;
    let status_before = servers.get(name).await.unwrap().status;
    for round in 0..4 {
        poke(&servers, name, &metrics, round).await;
    }
    assert_eq!(versions(&client, &ns, name).await, before, "an unchanged spec changed a child");
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
