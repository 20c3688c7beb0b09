//! The Helm chart at deploy/helm/apiary-operator: `helm lint` passes, `helm template` renders
//! the names, labels, RBAC, environment and pod security that names.md §8 and §3 promise, and
//! (when the test cluster is up) the apiserver accepts it in a server-side dry run.
//!
//! helm comes from `${APIARY_CACHE:-$HOME/.cache/apiary}/k8s/*/helm` (built by
//! `cargo xtask cluster build`). Without it the tests skip, unless `APIARY_REQUIRE_HELM` is set.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use apiary_operator::crd::mcpremoteproxy::MCPRemoteProxy;
use apiary_operator::crd::mcpserver::MCPServer;
use apiary_operator::crd::virtualmcpserver::OutgoingAuthSource;
use apiary_operator::reconcile::desired::{self, Settings};
use apiary_operator::remoteproxy::desired as remote_desired;
use apiary_operator::vmcp;
use k8s_openapi::Resource;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use serde_json::{Value, json};

const RELEASE: &str = "toolhive-operator";
const NAMESPACE: &str = "toolhive-system";
const MANAGER_ROLE: &str = "toolhive-operator-manager-role";
const LEASE: &str = "toolhive-operator-leader-election";
/// Upper bound on one helm run (they take well under a second offline).
const HELM_TIMEOUT_SECS: &str = "120";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn chart_dir() -> PathBuf {
    repo_root().join("deploy/helm/apiary-operator")
}

fn crd_dir() -> PathBuf {
    repo_root().join("deploy/crds")
}

/// The cached helm binary, newest Kubernetes version directory first.
fn find_helm() -> Option<PathBuf> {
    let cache = match std::env::var_os("APIARY_CACHE") {
        Some(c) if !c.is_empty() => PathBuf::from(c),
        _ => PathBuf::from(std::env::var_os("HOME")?).join(".cache/apiary"),
    };
    let mut found: Vec<PathBuf> = std::fs::read_dir(cache.join("k8s"))
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("helm"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop()
}

/// helm with a scratch HOME (so no user repositories or caches leak in), removed on drop.
struct Helm {
    bin: PathBuf,
    home: PathBuf,
}

impl Drop for Helm {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

/// helm, or `None` after saying why the test is skipped.
fn helm() -> Option<Helm> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let Some(bin) = find_helm() else {
        let hint =
            "no helm under ${APIARY_CACHE:-$HOME/.cache/apiary}/k8s/*/helm; build it with `cargo xtask cluster build`";
        if std::env::var_os("APIARY_REQUIRE_HELM").is_some() {
            panic!("APIARY_REQUIRE_HELM is set but there is {hint}");
        }
        eprintln!("SKIPPED: {hint} (set APIARY_REQUIRE_HELM to make this a failure)");
        return None;
    };
    let home = std::env::temp_dir().join(format!(
        "apiary-helm-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&home).unwrap();
    Some(Helm { bin, home })
}

impl Helm {
    /// Runs helm, bounded by coreutils `timeout`.
    fn run(&self, args: &[&str], kubeconfig: Option<&Path>) -> Output {
        self.run_for(HELM_TIMEOUT_SECS, args, kubeconfig)
    }

    /// Runs helm for at most `secs` seconds.
    fn run_for(&self, secs: &str, args: &[&str], kubeconfig: Option<&Path>) -> Output {
        let mut cmd = Command::new("timeout");
        cmd.args(["--kill-after=5", secs]).arg(&self.bin).args(args);
        cmd.env("HOME", &self.home)
            .env("HELM_CACHE_HOME", self.home.join("cache"))
            .env("HELM_CONFIG_HOME", self.home.join("config"))
            .env("HELM_DATA_HOME", self.home.join("data"));
        match kubeconfig {
            Some(k) => cmd.env("KUBECONFIG", k),
            None => cmd.env("KUBECONFIG", self.home.join("no-kubeconfig")),
        };
        cmd.output().unwrap()
    }

    fn lint(&self, sets: &[&str]) -> Output {
        let chart = chart_dir();
        let mut args = vec!["lint", "--strict", chart.to_str().unwrap()];
        for s in sets {
            args.extend(["--set", s]);
        }
        self.run(&args, None)
    }

    /// `helm template toolhive-operator <chart> -n toolhive-system --set …`, raw.
    fn template_output(&self, sets: &[&str]) -> Output {
        let chart = chart_dir();
        let mut args = vec!["template", RELEASE, chart.to_str().unwrap(), "-n", NAMESPACE];
        for s in sets {
            args.extend(["--set", s]);
        }
        self.run(&args, None)
    }

    /// The rendered objects.
    fn template(&self, sets: &[&str]) -> Vec<Value> {
        let out = self.template_output(sets);
        assert!(out.status.success(), "helm template {sets:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
        parse_docs(&String::from_utf8(out.stdout).unwrap())
    }
}

fn parse_docs(text: &str) -> Vec<Value> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).unwrap();
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

fn kind_name(v: &Value) -> (&str, &str) {
    (v["kind"].as_str().unwrap_or(""), v["metadata"]["name"].as_str().unwrap_or(""))
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn one<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| kind_name(d) == (kind, name)).collect();
    assert_eq!(found.len(), 1, "expected exactly one {kind} {name}, found {}", found.len());
    found[0]
}

fn manager_container(docs: &[Value]) -> &Value {
    let dep = one(docs, "Deployment", RELEASE);
    let containers = dep["spec"]["template"]["spec"]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1, "one container");
    &containers[0]
}

fn env_of(container: &Value) -> Vec<(String, Value)> {
    container["env"].as_array().unwrap().iter().map(|e| (e["name"].as_str().unwrap().to_string(), e.clone())).collect()
}

fn env_value(container: &Value, name: &str) -> Option<String> {
    // The last entry of a name wins in Kubernetes.
    env_of(container).into_iter().rev().find(|(n, _)| n == name).map(|(_, e)| e["value"].as_str().unwrap().to_string())
}

/// Helm's `toYaml` writes `900.0` as `900`; the apiserver reads both as the same float
/// (`minimum`, `maximum` are float64), so compare numbers by value.
fn numbers_as_floats(v: &mut Value) {
    match v {
        Value::Number(n) => *v = json!(n.as_f64().unwrap()),
        Value::Array(items) => items.iter_mut().for_each(numbers_as_floats),
        Value::Object(map) => map.values_mut().for_each(numbers_as_floats),
        _ => {}
    }
}

type Grant = (String, String, String);

/// Every (apiGroup, resource, verb) a role grants; fails on resourceNames or nonResourceURLs.
fn grants(role: &Value) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_array().unwrap() {
        assert!(rule.get("resourceNames").is_none(), "manager rule limited by name: {rule}");
        assert!(rule.get("nonResourceURLs").is_none(), "manager rule on URLs: {rule}");
        for g in rule["apiGroups"].as_array().unwrap() {
            for r in rule["resources"].as_array().unwrap() {
                for v in rule["verbs"].as_array().unwrap() {
                    out.insert((g.as_str().unwrap().into(), r.as_str().unwrap().into(), v.as_str().unwrap().into()));
                }
            }
        }
    }
    out
}

fn grant(group: &str, resource: &str, verbs: &[&str]) -> Vec<Grant> {
    verbs.iter().map(|v| (group.to_string(), resource.to_string(), v.to_string())).collect()
}

const CRUD: &[&str] = &["get", "list", "watch", "create", "update", "patch", "delete"];

/// (group, plural, file name) of every CRD file in deploy/crds.
fn crd_files() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(crd_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let crd: Value = serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        out.push((
            crd["spec"]["group"].as_str().unwrap().to_string(),
            crd["spec"]["names"]["plural"].as_str().unwrap().to_string(),
            path.file_name().unwrap().to_str().unwrap().to_string(),
        ));
    }
    out.sort();
    assert!(out.len() >= 11, "deploy/crds holds {} CRDs", out.len());
    out
}

/// What the manager ClusterRole must grant, exactly (names.md §3, rust-stack.md §3).
fn expected_manager_grants() -> BTreeSet<Grant> {
    let mut want = Vec::new();
    for (group, plural, _) in crd_files() {
        want.extend(grant(&group, &plural, &["get", "list", "watch"]));
        want.extend(grant(&group, &format!("{plural}/status"), &["patch", "update"]));
        want.extend(grant(&group, &format!("{plural}/finalizers"), &["patch", "update"]));
    }
    want.extend(grant("events.k8s.io", "events", &["create", "patch"]));
    want.extend(grant("", "events", &["create", "patch"]));
    for (group, resource) in [
        ("apps", "deployments"),
        ("apps", "statefulsets"),
        ("", "services"),
        ("", "configmaps"),
        ("", "serviceaccounts"),
        ("rbac.authorization.k8s.io", "roles"),
        ("rbac.authorization.k8s.io", "rolebindings"),
    ] {
        want.extend(grant(group, resource, CRUD));
    }
    want.extend(grant("", "pods", &["get", "list", "watch"]));
    want.extend(grant("", "pods/log", &["get"]));
    want.extend(grant("", "pods/attach", &["create", "get"]));
    // Held only so that it can grant it to the MCPRemoteProxy runner's Role.
    want.extend(grant("", "secrets", &["get", "list", "watch"]));
    // The route an MCPServerRegistration targets.
    want.extend(grant("gateway.networking.k8s.io", "httproutes", &["get", "list", "watch"]));
    want.into_iter().collect()
}

/// The children the reconciler really builds for a seed-like MCPServer.
fn desired_children() -> desired::Desired {
    let server: MCPServer = serde_json::from_value(json!({
        "apiVersion": "toolhive.stacklok.dev/v1alpha1",
        "kind": "MCPServer",
        "metadata": {"name": "fetch", "namespace": NAMESPACE, "uid": "uid-1"},
        "spec": {
            "image": "ghcr.io/stackloklabs/gofetch/server:latest",
            "transport": "streamable-http",
            "proxyPort": 8080,
            "mcpPort": 8080
        }
    }))
    .unwrap();
    let settings = Settings {
        runner_image: "ghcr.io/apiary/apiary:latest".into(),
        proxy_host: "0.0.0.0".into(),
        vmcp_image: None,
    };
    desired::desired(&server, &settings, &Default::default()).unwrap()
}

/// The children the MCPRemoteProxy reconciler really builds.
fn desired_remote_children() -> remote_desired::Desired {
    let proxy: MCPRemoteProxy = serde_json::from_value(json!({
        "apiVersion": "toolhive.stacklok.dev/v1beta1",
        "kind": "MCPRemoteProxy",
        "metadata": {"name": "remote", "namespace": NAMESPACE, "uid": "uid-2"},
        "spec": {"remoteURL": "https://mcp.example.com/mcp"}
    }))
    .unwrap();
    let settings = Settings {
        runner_image: "ghcr.io/apiary/apiary:latest".into(),
        proxy_host: "0.0.0.0".into(),
        vmcp_image: None,
    };
    remote_desired::desired(&proxy, &settings, &Default::default()).unwrap()
}

fn resource_of<K: Resource>() -> (String, String) {
    (K::GROUP.to_string(), K::URL_PATH_SEGMENT.to_string())
}

fn every_role(docs: &[Value]) -> Vec<&Value> {
    docs.iter().filter(|d| d["kind"] == "Role" || d["kind"] == "ClusterRole").collect()
}

fn namespace_scope_sets() -> Vec<&'static str> {
    vec!["operator.rbac.scope=namespace", "operator.rbac.allowedNamespaces={a,b}"]
}

// ---------------------------------------------------------------------------------------------

#[test]
fn lint_passes_in_both_scopes() {
    let Some(helm) = helm() else { return };
    for sets in [vec![], namespace_scope_sets()] {
        let out = helm.lint(&sets);
        assert!(
            out.status.success(),
            "helm lint {sets:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("0 chart(s) failed"));
    }
}

#[test]
fn names_and_labels_are_toolhives() {
    let Some(helm) = helm() else { return };
    let docs = helm.template(&[]);

    let dep = one(&docs, "Deployment", RELEASE);
    assert_eq!(dep["metadata"]["namespace"], NAMESPACE);
    let pod_labels = &dep["spec"]["template"]["metadata"]["labels"];
    assert_eq!(pod_labels["app.kubernetes.io/name"], "toolhive-operator");
    assert_eq!(pod_labels["app.kubernetes.io/instance"], "toolhive-operator");
    // `kubectl logs -l app.kubernetes.io/name=toolhive-operator` must select these pods.
    let selector = &dep["spec"]["selector"]["matchLabels"];
    assert_eq!(selector["app.kubernetes.io/name"], "toolhive-operator");
    assert_eq!(selector["app.kubernetes.io/instance"], "toolhive-operator");
    for (k, v) in selector.as_object().unwrap() {
        assert_eq!(&pod_labels[k], v, "selector label {k} not on the pod template");
    }

    let c = manager_container(&docs);
    assert_eq!(c["name"], "manager");
    assert_eq!(c["args"][0], "operator", "the container runs `apiary operator`");
    let pod = &dep["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "toolhive-operator");

    let sa = one(&docs, "ServiceAccount", "toolhive-operator");
    assert_eq!(sa["metadata"]["namespace"], NAMESPACE);
    one(&docs, "ClusterRole", MANAGER_ROLE);

    // Every object carries the chart's standard labels.
    for d in &docs {
        let labels = &d["metadata"]["labels"];
        for key in [
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/version",
            "app.kubernetes.io/managed-by",
            "helm.sh/chart",
        ] {
            assert!(labels.get(key).is_some(), "{:?} lacks label {key}", kind_name(d));
        }
        assert_eq!(labels["app.kubernetes.io/name"], "toolhive-operator", "{:?}", kind_name(d));
    }
    // Only the operator's own pods carry its name label (no other workload in the chart).
    assert_eq!(of_kind(&docs, "Deployment").len(), 1);
    assert!(of_kind(&docs, "StatefulSet").is_empty() && of_kind(&docs, "DaemonSet").is_empty());
}

#[test]
fn operator_environment() {
    let Some(helm) = helm() else { return };
    let docs = helm.template(&[]);
    let c = manager_container(&docs);
    let env = env_of(c);
    let pod_ns = env.iter().find(|(n, _)| n == "POD_NAMESPACE").expect("POD_NAMESPACE").1.clone();
    assert_eq!(pod_ns["valueFrom"]["fieldRef"]["fieldPath"], "metadata.namespace");
    assert_eq!(env_value(c, "TOOLHIVE_RUNNER_IMAGE").as_deref(), Some("ghcr.io/apiary/apiary:latest"));
    assert_eq!(env_value(c, "VMCP_IMAGE").as_deref(), Some("ghcr.io/apiary/apiary:latest"));
    assert_eq!(env_value(c, "TOOLHIVE_PROXY_HOST").as_deref(), Some("0.0.0.0"));
    assert_eq!(env_value(c, "UNSTRUCTURED_LOGS").as_deref(), Some("false"));
    assert!(env.iter().all(|(n, _)| n != "WATCH_NAMESPACE"), "cluster scope watches everything");

    let docs = helm.template(&[
        "operator.image=registry.example/apiary:9",
        "operator.toolhiveRunnerImage=registry.example/runner:9",
        "operator.vmcpImage=registry.example/vmcp:9",
        "operator.proxyHost=127.0.0.1",
        "operator.replicaCount=2",
        "operator.resources.limits.memory=256Mi",
        "operator.env[0].name=EXTRA",
        "operator.env[0].value=yes",
        "operator.env[1].name=TOOLHIVE_PROXY_HOST",
        "operator.env[1].value=10.0.0.1",
    ]);
    let c = manager_container(&docs);
    assert_eq!(c["image"], "registry.example/apiary:9");
    assert_eq!(env_value(c, "TOOLHIVE_RUNNER_IMAGE").as_deref(), Some("registry.example/runner:9"));
    assert_eq!(env_value(c, "VMCP_IMAGE").as_deref(), Some("registry.example/vmcp:9"));
    assert_eq!(env_value(c, "EXTRA").as_deref(), Some("yes"));
    // operator.env comes last, so it overrides the chart's own variables.
    assert_eq!(env_value(c, "TOOLHIVE_PROXY_HOST").as_deref(), Some("10.0.0.1"));
    assert_eq!(c["resources"]["limits"]["memory"], "256Mi");
    assert_eq!(one(&docs, "Deployment", RELEASE)["spec"]["replicas"], 2);

    let docs = helm.template(&["operator.proxyHost=127.0.0.1"]);
    assert_eq!(env_value(manager_container(&docs), "TOOLHIVE_PROXY_HOST").as_deref(), Some("127.0.0.1"));
}

#[test]
fn existing_service_account_is_used_not_created() {
    let Some(helm) = helm() else { return };
    let docs = helm.template(&["operator.serviceAccount.create=false", "operator.serviceAccount.name=mine"]);
    assert!(of_kind(&docs, "ServiceAccount").is_empty());
    assert_eq!(one(&docs, "Deployment", RELEASE)["spec"]["template"]["spec"]["serviceAccountName"], "mine");
    for b in of_kind(&docs, "ClusterRoleBinding").into_iter().chain(of_kind(&docs, "RoleBinding")) {
        assert_eq!(b["subjects"][0]["name"], "mine", "{:?}", kind_name(b));
    }
    // Without a name there is nothing to run as.
    let out = helm.template_output(&["operator.serviceAccount.create=false"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("operator.serviceAccount.name"));
}

#[test]
fn no_rbac_rule_has_a_wildcard() {
    let Some(helm) = helm() else { return };
    for sets in [vec![], namespace_scope_sets()] {
        let docs = helm.template(&sets);
        let roles = every_role(&docs);
        assert!(roles.len() >= 2, "manager ClusterRole and leader-election Role");
        for role in roles {
            for rule in role["rules"].as_array().unwrap() {
                for field in ["apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"] {
                    for item in rule.get(field).and_then(Value::as_array).into_iter().flatten() {
                        assert!(!item.as_str().unwrap().contains('*'), "wildcard in {:?}: {rule}", kind_name(role));
                    }
                }
            }
        }
    }
}

#[test]
fn manager_role_grants_exactly_what_the_operator_does() {
    let Some(helm) = helm() else { return };
    let docs = helm.template(&[]);
    let got = grants(one(&docs, "ClusterRole", MANAGER_ROLE));
    let want = expected_manager_grants();
    let missing: Vec<_> = want.difference(&got).collect();
    let extra: Vec<_> = got.difference(&want).collect();
    assert!(missing.is_empty() && extra.is_empty(), "manager role: missing {missing:?}, extra {extra:?}");

    // Tied to the reconciler's code: CRUD on the kind of every child it builds ...
    let d = desired_children();
    let mut kinds = vec![
        resource_of::<ConfigMap>(),
        resource_of::<Deployment>(),
        resource_of::<Service>(),
        resource_of::<ServiceAccount>(),
        resource_of::<Role>(),
        resource_of::<RoleBinding>(),
    ];
    kinds.dedup();
    for (group, plural) in kinds {
        for verb in CRUD {
            assert!(got.contains(&(group.clone(), plural.clone(), verb.to_string())), "{verb} {group}/{plural}");
        }
    }
    // ... and everything the Role it creates for the proxy runner grants (RBAC escalation
    // prevention refuses to create a Role granting more than its creator holds).
    let runner = serde_json::to_value(&d.runner_role).unwrap();
    let runner_grants = grants(&runner);
    assert!(!runner_grants.is_empty());
    let beyond: Vec<_> = runner_grants.difference(&got).collect();
    assert!(beyond.is_empty(), "the runner Role grants what the operator lacks: {beyond:?}");

    // The same for the MCPRemoteProxy runner's Role.
    let remote = serde_json::to_value(&desired_remote_children().runner_role).unwrap();
    let remote_grants = grants(&remote);
    assert!(!remote_grants.is_empty());
    let beyond: Vec<_> = remote_grants.difference(&got).collect();
    assert!(beyond.is_empty(), "the remote runner Role grants what the operator lacks: {beyond:?}");

    // And for the VirtualMCPServer's Role in discovered mode (inline mode grants nothing).
    let vmcp_role = Role { rules: Some(vmcp::desired::rules(OutgoingAuthSource::Discovered)), ..Default::default() };
    let vmcp_grants = grants(&serde_json::to_value(&vmcp_role).unwrap());
    assert!(!vmcp_grants.is_empty());
    let beyond: Vec<_> = vmcp_grants.difference(&got).collect();
    assert!(beyond.is_empty(), "the vMCP Role grants what the operator lacks: {beyond:?}");
}

#[test]
fn leader_election_is_a_role_on_one_lease_in_the_release_namespace() {
    let Some(helm) = helm() else { return };
    for sets in [vec![], namespace_scope_sets()] {
        let docs = helm.template(&sets);
        let roles = of_kind(&docs, "Role");
        assert_eq!(roles.len(), 1, "{sets:?}");
        let role = roles[0];
        assert_eq!(role["metadata"]["namespace"], NAMESPACE);
        let rules = role["rules"].as_array().unwrap();
        let mut seen = BTreeSet::new();
        for rule in rules {
            assert_eq!(rule["apiGroups"], json!(["coordination.k8s.io"]));
            assert_eq!(rule["resources"], json!(["leases"]));
            let named = rule.get("resourceNames").is_some();
            if named {
                assert_eq!(rule["resourceNames"], json!([LEASE]));
            }
            for v in rule["verbs"].as_array().unwrap() {
                let v = v.as_str().unwrap().to_string();
                // `create` cannot be limited by name; every other verb must be.
                assert_eq!(named, v != "create", "verb {v}: {rule}");
                seen.insert(v);
            }
        }
        let want: BTreeSet<String> = ["create", "get", "update", "patch"].map(String::from).into();
        assert_eq!(seen, want);

        let binding = of_kind(&docs, "RoleBinding")
            .into_iter()
            .find(|b| b["roleRef"]["name"] == role["metadata"]["name"])
            .expect("the leader-election Role is bound");
        assert_eq!(binding["metadata"]["namespace"], NAMESPACE);
        assert_eq!(binding["roleRef"]["kind"], "Role");
        assert_eq!(
            binding["subjects"],
            json!([{"kind": "ServiceAccount", "name": "toolhive-operator", "namespace": NAMESPACE}])
        );
    }
}

#[test]
fn cluster_scope_binds_the_manager_role_cluster_wide() {
    let Some(helm) = helm() else { return };
    let docs = helm.template(&[]);
    let crbs = of_kind(&docs, "ClusterRoleBinding");
    assert_eq!(crbs.len(), 1);
    assert_eq!(
        crbs[0]["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": MANAGER_ROLE})
    );
    assert_eq!(
        crbs[0]["subjects"],
        json!([{"kind": "ServiceAccount", "name": "toolhive-operator", "namespace": NAMESPACE}])
    );
    assert!(of_kind(&docs, "RoleBinding").iter().all(|b| b["roleRef"]["name"] != MANAGER_ROLE));
}

#[test]
fn namespace_scope_binds_the_manager_role_per_allowed_namespace() {
    let Some(helm) = helm() else { return };
    let docs = helm.template(&namespace_scope_sets());
    assert!(
        of_kind(&docs, "ClusterRoleBinding").iter().all(|b| b["roleRef"]["name"] != MANAGER_ROLE),
        "no ClusterRoleBinding for the manager role in namespace scope"
    );
    let bindings: Vec<&Value> =
        of_kind(&docs, "RoleBinding").into_iter().filter(|b| b["roleRef"]["name"] == MANAGER_ROLE).collect();
    let namespaces: BTreeSet<&str> = bindings.iter().map(|b| b["metadata"]["namespace"].as_str().unwrap()).collect();
    assert_eq!(namespaces, BTreeSet::from(["a", "b"]));
    assert_eq!(bindings.len(), 2);
    for b in bindings {
        assert_eq!(b["roleRef"]["kind"], "ClusterRole");
        assert_eq!(
            b["subjects"],
            json!([{"kind": "ServiceAccount", "name": "toolhive-operator", "namespace": NAMESPACE}])
        );
    }
    // The manager ClusterRole is the same in both scopes.
    let cluster = helm.template(&[]);
    assert_eq!(one(&docs, "ClusterRole", MANAGER_ROLE)["rules"], one(&cluster, "ClusterRole", MANAGER_ROLE)["rules"]);
    assert_eq!(env_value(manager_container(&docs), "WATCH_NAMESPACE").as_deref(), Some("a,b"));
}

#[test]
fn bad_scope_values_are_refused() {
    let Some(helm) = helm() else { return };
    let cases: [(&[&str], &str); 2] =
        [(&["operator.rbac.scope=namespace"], "allowedNamespaces"), (&["operator.rbac.scope=everywhere"], "scope")];
    for (sets, says) in cases {
        let out = helm.template_output(sets);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{sets:?} rendered");
        assert!(err.contains(says), "{sets:?}: {err}");
    }
}

#[test]
fn pod_security_is_restricted_and_probes_are_wired() {
    let Some(helm) = helm() else { return };
    let docs = helm.template(&[]);
    let pod = &one(&docs, "Deployment", RELEASE)["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    let c = manager_container(&docs);
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert!(sc["capabilities"].get("add").is_none());
    assert!(sc.get("privileged").is_none_or(|p| p == false));

    let port = |name: &str| {
        c["ports"].as_array().unwrap().iter().find(|p| p["name"] == name).map(|p| p["containerPort"].clone())
    };
    assert_eq!(port("metrics"), Some(json!(8080)));
    assert_eq!(port("health"), Some(json!(8081)));
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    for probe in ["livenessProbe", "readinessProbe"] {
        let p = &c[probe]["httpGet"]["port"];
        assert!(p == "health" || p == 8081, "{probe} port {p}");
    }
    let args: Vec<&str> = c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert!(args.contains(&"--metrics-bind-address=:8080"), "{args:?}");
    assert!(args.contains(&"--health-probe-bind-address=:8081"), "{args:?}");
}

#[test]
fn crds_follow_crds_install_and_keep() {
    let Some(helm) = helm() else { return };
    let files = crd_files();

    let docs = helm.template(&[]);
    let crds = of_kind(&docs, "CustomResourceDefinition");
    assert_eq!(crds.len(), files.len(), "one rendered CRD per file in deploy/crds");
    for (group, plural, file) in &files {
        let name = format!("{plural}.{group}");
        let rendered = one(&docs, "CustomResourceDefinition", &name);
        assert_eq!(rendered["metadata"]["annotations"]["helm.sh/resource-policy"], "keep", "{name}");
        // The chart ships the file unchanged apart from its labels and annotations.
        let mut source: Value =
            serde_saphyr::from_str(&std::fs::read_to_string(crd_dir().join(file)).unwrap()).unwrap();
        let mut shipped = rendered.clone();
        for v in [&mut source, &mut shipped] {
            let meta = v["metadata"].as_object_mut().unwrap();
            meta.remove("labels");
            meta.remove("annotations");
            numbers_as_floats(v);
        }
        assert_eq!(shipped, source, "{file} changed on its way through the chart");
    }

    let docs = helm.template(&["crds.keep=false"]);
    let crds = of_kind(&docs, "CustomResourceDefinition");
    assert_eq!(crds.len(), files.len());
    for crd in crds {
        assert!(
            crd["metadata"].get("annotations").and_then(|a| a.get("helm.sh/resource-policy")).is_none(),
            "{:?}",
            kind_name(crd)
        );
    }

    let docs = helm.template(&["crds.install=false"]);
    assert!(of_kind(&docs, "CustomResourceDefinition").is_empty());
    one(&docs, "Deployment", RELEASE);
}

/// With the test cluster up (`cargo xtask cluster up`), the apiserver validates every object in
/// a server-side dry run. The CRDs stay out (`crds.install=false`): other tests may have applied
/// deploy/crds without Helm's ownership marks, which Helm refuses to adopt.
#[test]
fn apiserver_accepts_the_chart_in_a_server_dry_run() {
    let Some(helm) = helm() else { return };
    let dir = match std::env::var_os("APIARY_CLUSTER_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from("/tmp/apiary-cluster"),
    };
    let kubeconfig = dir.join("kubeconfig");
    if !kubeconfig.is_file() {
        eprintln!("SKIPPED: no test cluster ({} absent; `cargo xtask cluster up`)", kubeconfig.display());
        return;
    }
    let probe = helm.run_for("20", &["list", "-n", "default"], Some(&kubeconfig));
    if !probe.status.success() {
        eprintln!("SKIPPED: test cluster not reachable: {}", String::from_utf8_lossy(&probe.stderr));
        return;
    }
    let chart = chart_dir();
    for extra in
        [vec![], vec!["--set", "operator.rbac.scope=namespace", "--set", "operator.rbac.allowedNamespaces={default}"]]
    {
        let mut args = vec![
            "install",
            RELEASE,
            chart.to_str().unwrap(),
            "-n",
            "default",
            "--dry-run=server",
            "--set",
            "crds.install=false",
        ];
        args.extend(extra.iter().copied());
        let out = helm.run(&args, Some(&kubeconfig));
        assert!(
            out.status.success(),
            "helm install --dry-run=server {extra:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let manifest = text.split_once("MANIFEST:").map(|(_, m)| m).unwrap_or("");
        let manifest = manifest.split_once("NOTES:").map(|(m, _)| m).unwrap_or(manifest);
        let docs = parse_docs(manifest);
        one(&docs, "Deployment", RELEASE);
        one(&docs, "ClusterRole", MANAGER_ROLE);
    }
}

// --- The gateway (`gateway.enabled`, seed 004) -----------------------------------------------

const GATEWAY: &str = "toolhive-operator-gateway";

fn gateway_objects(docs: &[Value]) -> Vec<&Value> {
    docs.iter().filter(|d| d["metadata"]["labels"]["app.kubernetes.io/component"] == "gateway").collect()
}

fn gateway_container(docs: &[Value]) -> &Value {
    let containers = one(docs, "Deployment", GATEWAY)["spec"]["template"]["spec"]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1, "one container");
    &containers[0]
}

fn args_of(container: &Value) -> Vec<&str> {
    container["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect()
}

#[test]
fn the_gateway_is_off_by_default() {
    let Some(helm) = helm() else { return };
    let docs = helm.template(&[]);
    assert!(
        gateway_objects(&docs).is_empty(),
        "{:?}",
        gateway_objects(&docs).iter().map(|d| kind_name(d)).collect::<Vec<_>>()
    );
    assert!(of_kind(&docs, "GatewayClass").is_empty());
    let out = helm.lint(&["gateway.enabled=true"]);
    assert!(out.status.success(), "helm lint gateway.enabled=true:\n{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn the_gateway_runs_apiary_gateway_for_its_gateway_behind_a_service() {
    let Some(helm) = helm() else { return };
    let docs = helm.template(&["gateway.enabled=true"]);
    let c = gateway_container(&docs);
    assert_eq!(c["image"], "ghcr.io/apiary/apiary:latest", "the one Apiary image");
    assert_eq!(
        args_of(c),
        ["gateway", "--listen", "0.0.0.0:8080", "--gateway", "gateway-system/mcp-gateway", "--max-sessions", "1000"]
    );
    assert_eq!(c["ports"][0], json!({"name": "http", "containerPort": 8080, "protocol": "TCP"}));
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/health");
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    let dep = one(&docs, "Deployment", GATEWAY);
    assert_eq!(dep["metadata"]["namespace"], NAMESPACE);
    assert_eq!(dep["spec"]["replicas"], 1);
    let pod = &dep["spec"]["template"];
    assert_eq!(pod["spec"]["serviceAccountName"], GATEWAY);
    one(&docs, "ServiceAccount", GATEWAY);
    // Its pods are not the operator's: the seeds' `-l app.kubernetes.io/name=toolhive-operator`
    // must still select exactly the operator pods.
    assert_eq!(pod["metadata"]["labels"]["app.kubernetes.io/name"], "apiary-gateway");
    let operator = one(&docs, "Deployment", RELEASE);
    assert_eq!(operator["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"], "toolhive-operator");

    let svc = one(&docs, "Service", GATEWAY);
    for (k, v) in svc["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&pod["metadata"]["labels"][k], v, "Service selector {k} not on the gateway pods");
    }
    assert_eq!(svc["spec"]["ports"][0]["port"], 8080);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "http");

    let class = one(&docs, "GatewayClass", "apiary");
    assert_eq!(class["spec"]["controllerName"], "apiary.dev/gateway");
    assert_eq!(
        class["spec"]["controllerName"],
        apiary_operator::gateway::status::CONTROLLER_NAME,
        "the class names the controller the gateway writes status for"
    );

    let docs = helm.template(&[
        "gateway.enabled=true",
        "gateway.gatewayRef=edge/front",
        "gateway.port=9090",
        "gateway.service.port=80",
        "gateway.maxSessions=64",
        "gateway.replicas=2",
        "gateway.image=registry.example/apiary:9",
        "gateway.resources.limits.memory=1Gi",
        "gateway.gatewayClass.create=false",
    ]);
    let c = gateway_container(&docs);
    assert_eq!(args_of(c), ["gateway", "--listen", "0.0.0.0:9090", "--gateway", "edge/front", "--max-sessions", "64"]);
    assert_eq!(c["image"], "registry.example/apiary:9");
    assert_eq!(c["resources"]["limits"]["memory"], "1Gi");
    assert_eq!(one(&docs, "Deployment", GATEWAY)["spec"]["replicas"], 2);
    assert_eq!(one(&docs, "Service", GATEWAY)["spec"]["ports"][0]["port"], 80);
    assert!(of_kind(&docs, "GatewayClass").is_empty());
}

#[test]
fn the_chart_creates_the_served_gateway_only_when_asked() {
    let Some(helm) = helm() else { return };
    let docs = helm.template(&["gateway.enabled=true"]);
    assert!(of_kind(&docs, "Gateway").is_empty() && of_kind(&docs, "Namespace").is_empty());

    let docs = helm.template(&["gateway.enabled=true", "gateway.gateway.create=true"]);
    let gw = one(&docs, "Gateway", "mcp-gateway");
    assert_eq!(gw["metadata"]["namespace"], "gateway-system", "seed 004's Gateway");
    assert_eq!(gw["spec"]["gatewayClassName"], "apiary");
    assert_eq!(
        gw["spec"]["listeners"],
        json!([{"name": "mcp", "port": 8080, "protocol": "HTTP", "allowedRoutes": {"namespaces": {"from": "All"}}}])
    );
    // Its namespace is made (no cluster to look it up in here) and kept on uninstall.
    let ns = one(&docs, "Namespace", "gateway-system");
    assert_eq!(ns["metadata"]["annotations"]["helm.sh/resource-policy"], "keep");

    // In the release's own namespace there is no namespace to make; the class follows the value.
    let docs = helm.template(&[
        "gateway.enabled=true",
        "gateway.gateway.create=true",
        "gateway.gatewayRef=toolhive-system/edge",
        "gateway.gatewayClass.name=mine",
    ]);
    assert!(of_kind(&docs, "Namespace").is_empty());
    let gw = one(&docs, "Gateway", "edge");
    assert_eq!(
        (gw["metadata"]["namespace"].as_str(), gw["spec"]["gatewayClassName"].as_str()),
        (Some(NAMESPACE), Some("mine"))
    );
    one(&docs, "GatewayClass", "mine");
}

#[test]
fn a_gateway_ref_that_is_not_namespace_slash_name_is_refused() {
    let Some(helm) = helm() else { return };
    for bad in ["mcp-gateway", "a/b/c", "/x", "Gateway-System/x"] {
        let set = format!("gateway.gatewayRef={bad}");
        let out = helm.template_output(&["gateway.enabled=true", &set]);
        assert!(!out.status.success(), "{bad} rendered");
        assert!(String::from_utf8_lossy(&out.stderr).contains("gatewayRef"), "{bad}");
    }
}

/// What `apiary gateway` does, exactly: reads registrations, routes, Gateways, Services and
/// AuthPolicies and the Secrets they name (each watched by name); gets the GatewayClass; patches the status of
/// GatewayClasses, Gateways, HTTPRoutes and AuthPolicies. Nothing else, no wildcard, no write of a spec.
#[test]
fn the_gateway_role_grants_exactly_what_the_gateway_does() {
    let Some(helm) = helm() else { return };
    let docs = helm.template(&["gateway.enabled=true"]);
    let role = one(&docs, "ClusterRole", "toolhive-operator-gateway-role");
    let got = grants(role);
    let mut want = Vec::new();
    let read = ["get", "list", "watch"];
    want.extend(grant("mcp.kuadrant.io", "mcpserverregistrations", &read));
    want.extend(grant("gateway.networking.k8s.io", "gateways", &read));
    want.extend(grant("gateway.networking.k8s.io", "httproutes", &read));
    want.extend(grant("gateway.networking.k8s.io", "gatewayclasses", &["get"]));
    want.extend(grant("gateway.networking.k8s.io", "gatewayclasses/status", &["patch"]));
    want.extend(grant("gateway.networking.k8s.io", "gateways/status", &["patch"]));
    want.extend(grant("gateway.networking.k8s.io", "httproutes/status", &["patch"]));
    want.extend(grant("", "services", &read));
    want.extend(grant("", "secrets", &read));
    want.extend(grant("kuadrant.io", "authpolicies", &read));
    want.extend(grant("kuadrant.io", "authpolicies/status", &["patch"]));
    let want: BTreeSet<Grant> = want.into_iter().collect();
    let missing: Vec<_> = want.difference(&got).collect();
    let extra: Vec<_> = got.difference(&want).collect();
    assert!(missing.is_empty() && extra.is_empty(), "gateway role: missing {missing:?}, extra {extra:?}");
    for rule in role["rules"].as_array().unwrap() {
        assert!(!rule.to_string().contains('*'), "wildcard: {rule}");
    }
    let binding = one(&docs, "ClusterRoleBinding", "toolhive-operator-gateway-rolebinding");
    assert_eq!(binding["roleRef"]["name"], "toolhive-operator-gateway-role");
    assert_eq!(binding["subjects"], json!([{"kind": "ServiceAccount", "name": GATEWAY, "namespace": NAMESPACE}]));
    // The operator's own role is unchanged by the gateway.
    assert_eq!(grants(one(&docs, "ClusterRole", MANAGER_ROLE)), expected_manager_grants());
}

/// The Gateway API CRDs ship in the chart's `crds/` (Helm installs them before the templates,
/// only when absent, and never upgrades or deletes them): the standard channel of the version
/// `cargo xtask crds` pins, unchanged but for a header comment.
#[test]
fn the_gateway_api_crds_ship_in_crds_at_the_pinned_version() {
    let Some(helm) = helm() else { return };
    let pins = std::fs::read_to_string(repo_root().join("xtask/src/test_env/pins.rs")).unwrap();
    let pinned = pins
        .lines()
        .find(|l| l.contains("GATEWAY_API_VERSION: &str"))
        .and_then(|l| l.split('"').nth(1))
        .expect("GATEWAY_API_VERSION in pins.rs");
    let dir = chart_dir().join("crds");
    let mut kinds = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let crd: Value = serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(crd["kind"], "CustomResourceDefinition", "{}", path.display());
        assert_eq!(crd["spec"]["group"], "gateway.networking.k8s.io", "{}", path.display());
        let annotations = &crd["metadata"]["annotations"];
        assert_eq!(annotations["gateway.networking.k8s.io/bundle-version"], pinned, "{}", path.display());
        assert_eq!(annotations["gateway.networking.k8s.io/channel"], "standard", "{}", path.display());
        kinds.insert(crd["spec"]["names"]["kind"].as_str().unwrap().to_string());
    }
    assert_eq!(kinds, BTreeSet::from(["Gateway".to_string(), "GatewayClass".into(), "HTTPRoute".into()]));
    // Not templates: `helm template` leaves them out unless asked.
    let docs = helm.template(&["gateway.enabled=true"]);
    assert!(
        of_kind(&docs, "CustomResourceDefinition").iter().all(|c| c["spec"]["group"] != "gateway.networking.k8s.io")
    );
    let chart = chart_dir();
    let out = helm.run(&["template", RELEASE, chart.to_str().unwrap(), "-n", NAMESPACE, "--include-crds"], None);
    assert!(out.status.success());
    let docs = parse_docs(&String::from_utf8(out.stdout).unwrap());
    one(&docs, "CustomResourceDefinition", "httproutes.gateway.networking.k8s.io");
    one(&docs, "CustomResourceDefinition", "gateways.gateway.networking.k8s.io");
    one(&docs, "CustomResourceDefinition", "gatewayclasses.gateway.networking.k8s.io");
}
