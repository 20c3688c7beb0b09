//! Helpers of the tests that run the reconcilers against a REAL cluster (`cluster.rs`,
//! `remote_cluster.rs`): reaching the cluster, installing the CRDs, polling, a scratch namespace
//! with the controllers running in it, and reading the children back.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use apiary_operator::reconcile::{Context, Metrics, Settings, WatchScope};
use futures::FutureExt;
use futures::future::Shared;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

/// Longest wait for one expected state.
pub const WAIT: Duration = Duration::from_secs(90);
/// The RunConfig checksum annotation on the ConfigMap and the pod template.
pub const CHECKSUM: &str = "toolhive.stacklok.dev/content-checksum";

/// Resolves when the controllers of a scenario must stop.
pub type Stop = Shared<Pin<Box<dyn Future<Output = ()> + Send + Sync>>>;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `scenario` (bounded to 10 minutes) when `APIARY_CLUSTER_TESTS` is set; else says it
/// skipped.
pub async fn gated(scenario: impl Future<Output = ()>) {
    if std::env::var_os("APIARY_CLUSTER_TESTS").is_none() {
        eprintln!(
            "SKIPPED: set APIARY_CLUSTER_TESTS=1 to run the operator against a real cluster (cargo xtask cluster up)"
        );
        return;
    }
    tokio::time::timeout(Duration::from_secs(600), scenario).await.expect("the cluster scenario took over 10 minutes");
}

/// The cluster's kubeconfig: `KUBECONFIG` when it names a file, else `cargo xtask cluster up`.
pub fn kubeconfig() -> PathBuf {
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

/// A client for the kubeconfig at `path`.
pub async fn client(path: &Path) -> Client {
    let kc = Kubeconfig::read_from(path).unwrap();
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.unwrap();
    Client::try_from(config).unwrap()
}

/// Polls `probe` until it returns `Some`, failing after [`WAIT`] with `what`.
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
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

/// Installs the CRDs, creates namespace `<prefix>-<pid>`, runs the controllers `start` returns
/// (scoped to that namespace, with runner image `apiary.invalid/apiary:never`) while `checks`
/// runs, then stops them and deletes the namespace, also when the checks failed.
pub async fn in_scratch_namespace<S, SF, C, CF>(prefix: &str, start: S, checks: C)
where
    S: FnOnce(Arc<Context>, WatchScope, Stop) -> SF,
    SF: Future<Output = ()> + Send + 'static,
    C: FnOnce(Client, String, Arc<Metrics>) -> CF,
    CF: Future<Output = ()> + Send + 'static,
{
    in_scratch_namespace_with("apiary.invalid/apiary:never", prefix, start, checks).await;
}

/// [`in_scratch_namespace`] with the proxy runner image `runner_image`, for scenarios whose
/// proxies must really run.
pub async fn in_scratch_namespace_with<S, SF, C, CF>(runner_image: &str, prefix: &str, start: S, checks: C)
where
    S: FnOnce(Arc<Context>, WatchScope, Stop) -> SF,
    SF: Future<Output = ()> + Send + 'static,
    C: FnOnce(Client, String, Arc<Metrics>) -> CF,
    CF: Future<Output = ()> + Send + 'static,
{
    let client = client(&kubeconfig()).await;
    apply_crds(&client).await;

    let ns = format!("{prefix}-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns_obj: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
    namespaces.create(&PostParams::default(), &ns_obj).await.unwrap();

    let metrics = Arc::new(Metrics::default());
    let settings = Settings { runner_image: runner_image.into(), proxy_host: "0.0.0.0".into(), vmcp_image: None };
    let ctx = Arc::new(Context::new(client.clone(), settings, Some("cluster-test".into()), Arc::clone(&metrics)));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let stop: Pin<Box<dyn Future<Output = ()> + Send + Sync>> = Box::pin(async move {
        let _ = stop_rx.await;
    });
    let operator = tokio::spawn(start(ctx, WatchScope::Namespaces(vec![ns.clone()]), stop.shared()));

    let result = tokio::spawn(checks(client.clone(), ns.clone(), Arc::clone(&metrics))).await;

    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(30), operator).await;
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// A child object, by kind and name.
#[derive(Clone, Copy, Debug)]
pub enum Child<'a> {
    /// A Deployment.
    Deployment(&'a str),
    /// A ConfigMap.
    ConfigMap(&'a str),
    /// A Service.
    Service(&'a str),
    /// A ServiceAccount.
    ServiceAccount(&'a str),
    /// A Role.
    Role(&'a str),
    /// A RoleBinding.
    RoleBinding(&'a str),
}

impl std::fmt::Display for Child<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, name) = match self {
            Child::Deployment(n) => ("Deployment", n),
            Child::ConfigMap(n) => ("ConfigMap", n),
            Child::Service(n) => ("Service", n),
            Child::ServiceAccount(n) => ("ServiceAccount", n),
            Child::Role(n) => ("Role", n),
            Child::RoleBinding(n) => ("RoleBinding", n),
        };
        write!(f, "{kind} {name}")
    }
}

async fn get<K>(client: &Client, ns: &str, name: &str) -> K
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    Api::<K>::namespaced(client.clone(), ns).get(name).await.unwrap_or_else(|e| panic!("get {name}: {e}"))
}

/// The metadata of `child` in `ns`, which must exist.
pub async fn meta_of(client: &Client, ns: &str, child: Child<'_>) -> ObjectMeta {
    match child {
        Child::Deployment(n) => get::<Deployment>(client, ns, n).await.metadata,
        Child::ConfigMap(n) => get::<ConfigMap>(client, ns, n).await.metadata,
        Child::Service(n) => get::<Service>(client, ns, n).await.metadata,
        Child::ServiceAccount(n) => get::<ServiceAccount>(client, ns, n).await.metadata,
        Child::Role(n) => get::<Role>(client, ns, n).await.metadata,
        Child::RoleBinding(n) => get::<RoleBinding>(client, ns, n).await.metadata,
    }
}

/// resourceVersion of every one of `children`, and of Deployment `deployment` (whose status
/// the Deployment controller keeps writing) the generation and the checksum on its template.
pub async fn versions(client: &Client, ns: &str, deployment: &str, children: &[Child<'_>]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for child in children {
        out.push((child.to_string(), meta_of(client, ns, *child).await.resource_version.unwrap()));
    }
    let d = get::<Deployment>(client, ns, deployment).await;
    out.push(("deployment generation".into(), d.metadata.generation.unwrap().to_string()));
    out.push(("deployment checksum".into(), template_checksum(&d)));
    out
}

/// The labels of `meta`.
pub fn labels_of(meta: &ObjectMeta) -> BTreeMap<String, String> {
    meta.labels.clone().unwrap_or_default()
}

/// True when `meta` names the `kind` object with `uid` as its controller.
pub fn controlled_by(meta: &ObjectMeta, uid: &str, kind: &str) -> bool {
    meta.owner_references.iter().flatten().any(|r| r.uid == uid && r.controller == Some(true) && r.kind == kind)
}

/// The checksum annotation on `d`'s pod template.
pub fn template_checksum(d: &Deployment) -> String {
    d.spec.as_ref().unwrap().template.metadata.as_ref().unwrap().annotations.as_ref().unwrap()[CHECKSUM].clone()
}

/// Makes the controller reconcile `name` (a label change: no new generation) and waits for it.
pub async fn poke<K>(api: &Api<K>, name: &str, metrics: &Metrics, round: usize)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let before = metrics.reconciles();
    let patch = json!({"metadata": {"labels": {"apiary-test-poke": round.to_string()}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    eventually("a reconcile after the poke", || async { (metrics.reconciles() > before).then_some(()) }).await;
    // Let that reconcile finish its writes, if it made any.
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// kubectl from the cluster tools' cache (`cargo xtask cluster build`).
pub fn kubectl() -> PathBuf {
    apiary_testkit::env::cluster_tool("kubectl")
}

/// The documents of seed file `file`, moved to `ns`.
pub fn seed_file(file: &str, ns: &str) -> Vec<serde_json::Value> {
    let docs: Vec<serde_json::Value> =
        super::seed_docs().into_iter().filter(|d| d.file == file).map(|d| d.value).collect();
    assert!(!docs.is_empty(), "no documents in {file}");
    docs.into_iter()
        .map(|mut v| {
            v["metadata"]["namespace"] = json!(ns);
            v
        })
        .collect()
}

/// Server-side applies `doc` (any kind of the `toolhive.stacklok.dev` group or core v1).
pub async fn apply(client: &Client, ns: &str, doc: &serde_json::Value) {
    use kube::api::DynamicObject;
    use kube::core::GroupVersionKind;
    use kube::discovery::ApiResource;

    let api_version = doc["apiVersion"].as_str().unwrap();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let kind = doc["kind"].as_str().unwrap();
    let plural = match kind {
        "MCPServerEntry" => "mcpserverentries".to_string(),
        "MCPRemoteProxy" => "mcpremoteproxies".to_string(),
        "ServiceEntry" => "serviceentries".to_string(),
        "AuthPolicy" => "authpolicies".to_string(),
        "GatewayClass" => "gatewayclasses".to_string(),
        other => format!("{}s", other.to_lowercase()),
    };
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), &plural);
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    let name = doc["metadata"]["name"].as_str().unwrap();
    api.patch(name, &PatchParams::apply("apiary-operator-test").force(), &Patch::Apply(doc))
        .await
        .unwrap_or_else(|e| panic!("apply {kind} {name}: {e}"));
}

/// The directory of the third-party CRDs seed 004 applies (Gateway API, Istio ServiceEntry,
/// Kuadrant AuthPolicy), fetched into the cache by `cargo xtask crds`.
pub fn foreign_crds_dir() -> PathBuf {
    // Its own target dir, as for `cluster up`: the one running this test may be locked.
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(|t| format!("{t}-xtask"))
        .unwrap_or_else(|_| workspace().join("target/xtask-cluster").display().to_string());
    let out = std::process::Command::new(env!("CARGO"))
        .args(["xtask", "crds"])
        .current_dir(workspace())
        .env("CARGO_TARGET_DIR", target)
        .output()
        .unwrap();
    assert!(out.status.success(), "cargo xtask crds failed: {}", String::from_utf8_lossy(&out.stderr));
    let dir = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    assert!(dir.is_dir(), "cargo xtask crds printed {}", dir.display());
    dir
}

/// Server-side applies every CRD of [`foreign_crds_dir`] and waits until each is established;
/// returns their names.
pub async fn apply_foreign_crds(client: &Client) -> Vec<String> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut names = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(foreign_crds_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    for path in files {
        // As JSON, not the typed CRD: nothing of the project's file is dropped on the way.
        let crd: serde_json::Value = serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let name = crd["metadata"]["name"].as_str().unwrap().to_string();
        api.patch(&name, &PatchParams::apply("apiary-cluster-test").force(), &Patch::Apply(&crd))
            .await
            .unwrap_or_else(|e| panic!("apply CRD {name} from {}: {e}", path.display()));
        names.push(name);
    }
    for name in &names {
        eventually(&format!("CRD {name} established"), || async {
            let crd = api.get(name).await.ok()?;
            let established = crd.status?.conditions?.iter().any(|c| c.type_ == "Established" && c.status == "True");
            established.then_some(())
        })
        .await;
    }
    names
}
