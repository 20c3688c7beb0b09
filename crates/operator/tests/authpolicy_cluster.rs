//! Seed 004's AuthPolicy read live from a REAL cluster by the gateway's policy watch
//! (`apiary_operator::gateway::policies`): the seed's `kubectl create secret generic
//! token-exchange …` run as written (its placeholder filled in) and its AuthPolicy and HTTPRoute
//! applied verbatim (moved to a scratch namespace) → the sink holds a compiled policy for the
//! route, whose token exchange carries one `Basic`, and the policy is `Accepted`/`Enforced`; a
//! field Apiary cannot evaluate, a younger policy on the same route, the Secret deleted and the
//! policies deleted each give their sink state and conditions. Runs only with
//! `APIARY_CLUSTER_TESTS` set.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use apiary_authpolicy::{
    CompiledPolicy, FetchError, HttpCall, JwtVerifier, LoadError, MetadataFetcher, RequestInfo, VerifyError,
};
use apiary_operator::gateway::policies::{self, PolicySink, authpolicy_resource};
use apiary_operator::reconcile::{Context, Metrics, WatchScope};
use common::cluster::{Stop, apply, apply_foreign_crds, eventually, gated, in_scratch_namespace, kubeconfig, kubectl};
use kube::api::{DeleteParams, DynamicObject};
use kube::{Api, Client};
use serde_json::{Value, json};

/// base64("mcp-gateway:secret"), for the seed's `<base64-encoded-client-id:client-secret>`.
const B64: &str = "bWNwLWdhdGV3YXk6c2VjcmV0";
const SEED_POLICY: &str = "kubernetes-mcp-auth-policy";
const SECRET_FIELD: &str = "spec.rules.metadata.oauth-token-exchange.http.sharedSecretRef";
const UNSUPPORTED_FIELD: &str = "spec.rules.authorization.sar.kubernetesSubjectAccessReview";

/// What the watch handed over, per route: the compiled policy or the load error.
#[derive(Default)]
struct Recorder {
    routes: Mutex<BTreeMap<String, Result<Arc<CompiledPolicy>, LoadError>>>,
}

impl PolicySink for Recorder {
    fn set(&self, route: &str, policy: Result<CompiledPolicy, LoadError>) {
        self.routes.lock().unwrap().insert(route.to_owned(), policy.map(Arc::new));
    }
    fn remove(&self, route: &str) {
        self.routes.lock().unwrap().remove(route);
    }
}

impl Recorder {
    /// `None`: no policy; `Some(Ok(policy))`; `Some(Err(field path))`.
    fn get(&self, route: &str) -> Option<Result<Arc<CompiledPolicy>, String>> {
        let routes = self.routes.lock().unwrap();
        routes.get(route).map(|r| r.clone().map_err(|e| e.path().to_owned()))
    }
}

/// The text of seed 004.
fn seed_text() -> String {
    let dir = common::seed_text_dir();
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("004_"))
        .unwrap_or_else(|| panic!("no seed 004 in {}", dir.display()));
    std::fs::read_to_string(file).unwrap()
}

/// The seed's here-document manifest of `kind`, moved to `ns`, `$EXTERNAL_HOSTNAME` set to the
/// seed's host name.
fn seed_manifest(kind: &str, ns: &str) -> Value {
    let text = seed_text();
    let mut bodies = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in text.lines() {
        match &mut current {
            None if line.trim_end().ends_with("<<EOF") => current = Some(Vec::new()),
            None => {}
            Some(_) if line.trim_end() == "EOF" => bodies.push(current.take().unwrap().join("\n")),
            Some(body) => body.push(line),
        }
    }
    let mut doc = bodies
        .iter()
        .flat_map(|b| {
            serde_saphyr::from_multiple::<Value>(&b.replace("$EXTERNAL_HOSTNAME", "kubernetes-mcp.example.com"))
                .unwrap()
        })
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in seed 004"));
    doc["metadata"]["namespace"] = json!(ns);
    doc
}

/// The seed's `kubectl create secret generic token-exchange …` command, run as written in `ns`
/// with its placeholder filled in.
fn create_seed_secret(ns: &str) {
    let text = seed_text();
    let start = text.find("kubectl create secret generic token-exchange").unwrap();
    let mut command = String::new();
    for line in text[start..].lines() {
        let line = line.trim_end();
        match line.strip_suffix('\\') {
            Some(head) => command.push_str(head),
            None => {
                command.push_str(line);
                break;
            }
        }
    }
    assert!(command.contains("-n mcp-test") && command.contains("\"Basic <base64-encoded-client-id:client-secret>\""));
    let command = command
        .replacen("kubectl", &format!("{} --kubeconfig {}", kubectl().display(), kubeconfig().display()), 1)
        .replace("-n mcp-test", &format!("-n {ns}"))
        .replace("<base64-encoded-client-id:client-secret>", B64);
    let out = std::process::Command::new("sh").arg("-c").arg(&command).output().unwrap();
    assert!(out.status.success(), "{command}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The `(status, reason, message)` of condition `type_` of policy `name`.
async fn condition(api: &Api<DynamicObject>, name: &str, type_: &str) -> Option<(String, String, String)> {
    let policy = api.get(name).await.ok()?;
    let status = policy.data.get("status")?;
    let c = status["conditions"].as_array()?.iter().find(|c| c["type"] == type_)?;
    let s = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
    Some((s("status"), s("reason"), s("message")))
}

/// Waits until condition `type_` of `name` has `status` and `reason`; returns its message.
async fn wait_condition(api: &Api<DynamicObject>, name: &str, type_: &str, status: &str, reason: &str) -> String {
    eventually(&format!("{name} {type_}={status} {reason}"), || async {
        let (s, r, m) = condition(api, name, type_).await?;
        (s == status && r == reason).then_some(m)
    })
    .await
}

/// Accepts any token as the caller's (audience: the gateway client, so the exchange runs).
struct AnyToken;

impl JwtVerifier for AnyToken {
    async fn verify(&self, issuer_url: &str, _token: &str) -> Result<Value, VerifyError> {
        Ok(json!({"iss": issuer_url, "sub": "u", "aud": "mcp-gateway"}))
    }
}

/// Records the token exchange; answers as Keycloak does a refused client.
#[derive(Default)]
struct Exchanges(Mutex<Vec<HttpCall>>);

impl MetadataFetcher for Exchanges {
    async fn fetch(&self, call: &HttpCall) -> Result<Value, FetchError> {
        self.0.lock().unwrap().push(call.clone());
        Ok(json!({"error": "unauthorized_client"}))
    }
}

/// The `Authorization` the policy's token exchange sends for a `tools/call` on `route`.
async fn exchange_authorization(policy: &CompiledPolicy, route: &str) -> String {
    let mut headers = http::HeaderMap::new();
    headers.insert("authorization", "Bearer a.b.c".parse().unwrap());
    headers.insert("x-mcp-servername", route.parse().unwrap());
    headers.insert("x-mcp-toolname", "namespaces_list".parse().unwrap());
    headers.insert("x-mcp-method", "tools/call".parse().unwrap());
    let request = RequestInfo {
        method: http::Method::POST,
        scheme: "http".into(),
        host: "kubernetes-mcp.example.com".into(),
        path: "/mcp".into(),
        headers,
        body: None,
    };
    let exchanges = Exchanges::default();
    policy.evaluate(&request, &AnyToken, &exchanges).await;
    let calls = exchanges.0.lock().unwrap();
    assert_eq!(calls.len(), 1, "one token exchange");
    calls[0].header("authorization").unwrap().to_owned()
}

async fn no_controllers(_ctx: Arc<Context>, _scope: WatchScope, stop: Stop) {
    stop.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_004_authpolicy_is_loaded_from_a_real_cluster_with_its_conditions() {
    gated(in_scratch_namespace("apiary-authpol", no_controllers, loads)).await;
}

async fn loads(client: Client, ns: String, _metrics: Arc<Metrics>) {
    apply_foreign_crds(&client).await;
    let recorder = Arc::new(Recorder::default());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let sink: Arc<dyn PolicySink> = recorder.clone();
    let watch = tokio::spawn(policies::run_in(client.clone(), Some(ns.clone()), sink, async move {
        let _ = stop_rx.await;
    }));
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &authpolicy_resource());
    let route = format!("{ns}/kubernetes-mcp");

    // The seed's Secret and AuthPolicy; its HTTPRoute not there yet.
    create_seed_secret(&ns);
    let policy = seed_manifest("AuthPolicy", &ns);
    assert_eq!(policy["metadata"]["name"], SEED_POLICY);
    apply(&client, &ns, &policy).await;
    let message = wait_condition(&api, SEED_POLICY, "Accepted", "False", "TargetNotFound").await;
    assert!(message.contains(&route), "{message}");

    // The route comes: accepted and enforced, the compiled policy in the sink.
    apply(&client, &ns, &seed_manifest("HTTPRoute", &ns)).await;
    wait_condition(&api, SEED_POLICY, "Accepted", "True", "Accepted").await;
    wait_condition(&api, SEED_POLICY, "Enforced", "True", "Enforced").await;
    let compiled =
        eventually("the sink holds the seed's policy", || async { recorder.get(&route).and_then(Result::ok) }).await;
    // The Secret holds `Basic <b64>` and the policy adds `Basic`: sent once (names.md §6).
    assert_eq!(exchange_authorization(&compiled, &route).await, format!("Basic {B64}"));
    let stored = api.get(SEED_POLICY).await.unwrap();
    assert_eq!(stored.data["status"]["observedGeneration"], json!(stored.metadata.generation.unwrap()));

    // A field Apiary cannot evaluate, on another route: that route refuses, the field is named.
    let mut unsupported = seed_manifest("HTTPRoute", &ns);
    unsupported["metadata"]["name"] = json!("other");
    apply(&client, &ns, &unsupported).await;
    let bad = json!({"apiVersion": "kuadrant.io/v1", "kind": "AuthPolicy",
        "metadata": {"name": "needs-sar", "namespace": ns},
        "spec": {"targetRef": {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "other"},
            "rules": {"authorization": {"sar": {"kubernetesSubjectAccessReview": {"user": {"expression": "auth.identity.sub"}}}}}}});
    apply(&client, &ns, &bad).await;
    let message = wait_condition(&api, "needs-sar", "Enforced", "False", "Unknown").await;
    assert!(message.contains(UNSUPPORTED_FIELD), "{message}");
    let message = wait_condition(&api, "needs-sar", "Accepted", "False", "Invalid").await;
    assert!(message.contains(UNSUPPORTED_FIELD), "{message}");
    let other = format!("{ns}/other");
    let refused = eventually("the sink refuses the other route", || async { recorder.get(&other)?.err() }).await;
    assert_eq!(refused, UNSUPPORTED_FIELD);

    // A younger policy on the seed's route: Conflicted, the seed's policy still holds it.
    let late = json!({"apiVersion": "kuadrant.io/v1", "kind": "AuthPolicy",
        "metadata": {"name": "late", "namespace": ns},
        "spec": {"targetRef": {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "kubernetes-mcp"},
            "rules": {"authentication": {"k": {"jwt": {"issuerUrl": "https://keycloak.example.com/realms/mcp"}}}}}});
    apply(&client, &ns, &late).await;
    let message = wait_condition(&api, "late", "Accepted", "False", "Conflicted").await;
    assert!(message.contains(SEED_POLICY), "{message}");
    wait_condition(&api, "late", "Enforced", "False", "Overridden").await;
    assert!(matches!(recorder.get(&route), Some(Ok(_))));
    assert_eq!(condition(&api, SEED_POLICY, "Enforced").await.unwrap().0, "True");

    // The Secret deleted: the route refuses, naming the sharedSecretRef.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), &ns);
    secrets.delete("token-exchange", &DeleteParams::default()).await.unwrap();
    let refused = eventually("the sink refuses the seed's route", || async { recorder.get(&route)?.err() }).await;
    assert_eq!(refused, SECRET_FIELD);
    let message = wait_condition(&api, SEED_POLICY, "Enforced", "False", "Unknown").await;
    assert!(message.contains(SECRET_FIELD) && message.contains("token-exchange"), "{message}");

    // The seed's policy deleted: the younger one takes the route; deleted too: no policy.
    api.delete(SEED_POLICY, &DeleteParams::default()).await.unwrap();
    wait_condition(&api, "late", "Enforced", "True", "Enforced").await;
    assert!(matches!(recorder.get(&route), Some(Ok(_))));
    api.delete("late", &DeleteParams::default()).await.unwrap();
    eventually("the seed's route has no policy", || async { recorder.get(&route).is_none().then_some(()) }).await;
    api.delete("needs-sar", &DeleteParams::default()).await.unwrap();
    eventually("the other route has no policy", || async { recorder.get(&other).is_none().then_some(()) }).await;

    let _ = stop_tx.send(());
    watch.await.unwrap();
}
