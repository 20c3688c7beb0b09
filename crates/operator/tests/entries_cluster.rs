//! The MCPServerEntry, MCPGroup and MCPExternalAuthConfig reconcilers against a REAL one-node
//! cluster (`cargo xtask cluster up`), fed seed 002's manifests as the seed prints them
//! (`tests/seeds/002-*.yaml`, which `tests/seeds.rs` checks line by line against the seed text;
//! only `metadata.namespace` is moved to the scratch namespace). Runs only with
//! `APIARY_CLUSTER_TESTS` set.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::sync::Arc;

use apiary_operator::crd::externalauth::MCPExternalAuthConfig;
use apiary_operator::crd::mcpgroup::{MCPGroup, MCPGroupPhase};
use apiary_operator::crd::mcpserverentry::{MCPServerEntry, MCPServerEntryPhase};
use apiary_operator::reconcile::{Context, Metrics, WatchScope};
use apiary_operator::{entry, extauth, group};
use common::cluster::{Stop, apply, eventually, gated, in_scratch_namespace, kubeconfig, kubectl, seed_file};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::DeleteParams;
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n";

async fn controllers(ctx: Arc<Context>, scope: WatchScope, stop: Stop) {
    tokio::join!(
        entry::run(Arc::clone(&ctx), scope.clone(), stop.clone()),
        group::run(Arc::clone(&ctx), scope.clone(), stop.clone()),
        extauth::run(ctx, scope, stop),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_groups_and_auth_configs_report_status_on_a_real_cluster() {
    gated(in_scratch_namespace("apiary-entries", controllers, checks)).await;
}

fn entry_doc(ns: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "toolhive.stacklok.dev/v1alpha1", "kind": "MCPServerEntry",
        "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

/// Waits until entry `name` has `phase` with condition `type_` at `(status, reason)`; returns it.
async fn entry_reaches(
    entries: &Api<MCPServerEntry>,
    name: &str,
    phase: MCPServerEntryPhase,
    type_: &str,
    status: &str,
    reason: &str,
) -> MCPServerEntry {
    eventually(&format!("entry {name}: {phase:?}, {type_}={status} ({reason})"), || async {
        let e = entries.get(name).await.ok()?;
        let s = e.status.as_ref()?;
        let c = s.conditions.as_ref()?.iter().find(|c| c.type_ == type_)?;
        (s.phase == Some(phase) && c.status == status && c.reason == reason).then_some(e.clone())
    })
    .await
}

async fn valid(entries: &Api<MCPServerEntry>, name: &str) -> MCPServerEntry {
    entry_reaches(entries, name, MCPServerEntryPhase::Valid, "Valid", "True", "Validated").await
}

/// Waits until group `name` is Ready and lists exactly `servers`, `proxies`, `members`.
async fn group_lists(groups: &Api<MCPGroup>, name: &str, servers: &[&str], proxies: &[&str], members: &[&str]) {
    eventually(&format!("group {name} lists {servers:?} {proxies:?} {members:?}"), || async {
        let s = groups.get(name).await.ok()?.status?;
        let same = |got: &Option<Vec<String>>, want: &[&str]| {
            got.as_deref().unwrap_or_default().iter().map(String::as_str).eq(want.iter().copied())
        };
        let counts = (s.server_count, s.remote_proxy_count, s.entry_count);
        let want = (Some(servers.len() as i32), Some(proxies.len() as i32), Some(members.len() as i32));
        let checked = s.conditions.as_ref()?.iter().any(|c| c.type_ == "MCPServersChecked" && c.status == "True");
        (s.phase == Some(MCPGroupPhase::Ready)
            && checked
            && counts == want
            && same(&s.servers, servers)
            && same(&s.remote_proxies, proxies)
            && same(&s.entries, members))
        .then_some(())
    })
    .await;
}

async fn checks(client: Client, ns: String, _metrics: Arc<Metrics>) {
    let entries: Api<MCPServerEntry> = Api::namespaced(client.clone(), &ns);
    let groups: Api<MCPGroup> = Api::namespaced(client.clone(), &ns);
    let auths: Api<MCPExternalAuthConfig> = Api::namespaced(client.clone(), &ns);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);

    // Seed 002 in the order it is written: the group, the basic entry, the entry with auth.
    for file in ["002-my-group.yaml", "002-my-entry.yaml", "002-auth-entry.yaml"] {
        for doc in seed_file(file, &ns) {
            apply(&client, &ns, &doc).await;
        }
    }
    let basic = valid(&entries, "my-remote-tool").await;
    assert_eq!(basic.status.as_ref().unwrap().observed_generation, basic.metadata.generation);
    let c = valid(&entries, "internal-tool").await;
    let conds = c.status.unwrap().conditions.unwrap();
    for t in ["GroupRefValidated", "ExternalAuthConfigValidated", "CABundleRefValidated", "RemoteURLValidated", "Valid"]
    {
        assert!(conds.iter().any(|c| c.type_ == t && c.status == "True"), "{t} in {conds:#?}");
    }
    eventually("MCPExternalAuthConfig my-auth-config Valid=True", || async {
        let s = auths.get("my-auth-config").await.ok()?.status?;
        s.conditions?.iter().any(|c| c.type_ == "Valid" && c.status == "True").then_some(())
    })
    .await;

    // The complete example without its CA ConfigMap ("must already exist or be created
    // separately"): Failed on the CA bundle; a ConfigMap without the key is still Failed; the
    // key with a certificate makes it Valid, with no change to the entry.
    for doc in seed_file("002-complete-entry.yaml", &ns) {
        apply(&client, &ns, &doc).await;
    }
    let failed = entry_reaches(
        &entries,
        "partner-tools",
        MCPServerEntryPhase::Failed,
        "CABundleRefValidated",
        "False",
        "CABundleNotFound",
    )
    .await;
    let generation = failed.metadata.generation;
    let cm = |key: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "partner-ca-bundle", "namespace": ns},
            "data": {key: PEM}})
    };
    apply(&client, &ns, &cm("other.crt")).await;
    let e = entry_reaches(
        &entries,
        "partner-tools",
        MCPServerEntryPhase::Failed,
        "CABundleRefValidated",
        "False",
        "CABundleKeyNotFound",
    )
    .await;
    let valid_cond = e.status.unwrap().conditions.unwrap().into_iter().find(|c| c.type_ == "Valid").unwrap();
    assert_eq!(valid_cond.reason, "CABundleKeyNotFound");
    assert!(valid_cond.message.contains("partner-ca-bundle has no key ca.crt"), "{}", valid_cond.message);
    cms.delete("partner-ca-bundle", &DeleteParams::default()).await.unwrap();
    apply(&client, &ns, &cm("ca.crt")).await;
    let e = valid(&entries, "partner-tools").await;
    assert_eq!(e.metadata.generation, generation, "the entry itself was not touched");

    // A missing group, then the group appears: the entry flips to Valid untouched.
    let spec = |extra: Value| {
        let mut s = json!({"groupRef": "later-group", "remoteURL": "https://mcp.example.com/mcp",
            "transport": "streamable-http"});
        s.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        s
    };
    apply(&client, &ns, &entry_doc(&ns, "orphan", spec(json!({})))).await;
    let e =
        entry_reaches(&entries, "orphan", MCPServerEntryPhase::Failed, "GroupRefValidated", "False", "GroupNotFound")
            .await;
    let generation = e.metadata.generation;
    apply(
        &client,
        &ns,
        &json!({"apiVersion": "toolhive.stacklok.dev/v1alpha1", "kind": "MCPGroup",
            "metadata": {"name": "later-group", "namespace": ns}, "spec": {}}),
    )
    .await;
    let e = valid(&entries, "orphan").await;
    assert_eq!(e.metadata.generation, generation);

    // A missing auth config, and SSRF literal hosts.
    apply(&client, &ns, &entry_doc(&ns, "no-auth", spec(json!({"externalAuthConfigRef": {"name": "absent"}})))).await;
    entry_reaches(
        &entries,
        "no-auth",
        MCPServerEntryPhase::Failed,
        "ExternalAuthConfigValidated",
        "False",
        "ExternalAuthConfigNotFound",
    )
    .await;
    let blocked = [
        ("loopback", json!({"remoteURL": "http://127.0.0.1:8080/mcp"}), "loopback"),
        ("loopback-hex", json!({"remoteURL": "http://0x7f.1/mcp", "allowPrivateEndpoint": true}), "loopback"),
        ("metadata", json!({"remoteURL": "http://169.254.169.254/latest", "allowPrivateEndpoint": true}), "metadata"),
        ("private", json!({"remoteURL": "http://10.0.0.5/mcp"}), "private"),
    ];
    for (name, extra, _) in &blocked {
        apply(&client, &ns, &entry_doc(&ns, name, spec(extra.clone()))).await;
    }
    apply(
        &client,
        &ns,
        &entry_doc(
            &ns,
            "private-allowed",
            spec(json!({"remoteURL": "http://10.0.0.5/mcp", "allowPrivateEndpoint": true})),
        ),
    )
    .await;
    for (name, _, word) in &blocked {
        let e = entry_reaches(
            &entries,
            name,
            MCPServerEntryPhase::Failed,
            "RemoteURLValidated",
            "False",
            "BlockedEndpoint",
        )
        .await;
        let c = e.status.unwrap().conditions.unwrap().into_iter().find(|c| c.type_ == "RemoteURLValidated").unwrap();
        assert!(c.message.contains(word), "{name}: {}", c.message);
    }
    valid(&entries, "private-allowed").await;

    // The group lists its members of every kind and follows one that is deleted.
    apply(
        &client,
        &ns,
        &json!({"apiVersion": "toolhive.stacklok.dev/v1alpha1", "kind": "MCPServer",
            "metadata": {"name": "local", "namespace": ns},
            "spec": {"image": "ghcr.io/example/fetch:latest", "groupRef": {"name": "my-group"}}}),
    )
    .await;
    apply(
        &client,
        &ns,
        &json!({"apiVersion": "toolhive.stacklok.dev/v1alpha1", "kind": "MCPRemoteProxy",
            "metadata": {"name": "proxied", "namespace": ns},
            "spec": {"remoteURL": "https://mcp.example.com/mcp", "groupRef": "my-group"}}),
    )
    .await;
    group_lists(&groups, "my-group", &["local"], &["proxied"], &["internal-tool", "my-remote-tool"]).await;
    group_lists(&groups, "engineering-tools", &[], &[], &["partner-tools"]).await;
    entries.delete("my-remote-tool", &DeleteParams::default()).await.unwrap();
    group_lists(&groups, "my-group", &["local"], &["proxied"], &["internal-tool"]).await;
    // A member moving to another group leaves the first.
    apply(
        &client,
        &ns,
        &entry_doc(
            &ns,
            "internal-tool",
            json!({"groupRef": "later-group",
        "remoteURL": "https://internal-mcp.corp.example.com/mcp", "transport": "streamable-http"}),
        ),
    )
    .await;
    group_lists(&groups, "my-group", &["local"], &["proxied"], &[]).await;

    // `kubectl get mcpserverentries` shows the phase column.
    let out = std::process::Command::new(kubectl())
        .env("KUBECONFIG", kubeconfig())
        .args(["get", "mcpserverentries", "-n", &ns])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8(out.stdout).unwrap();
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "PHASE", "TRANSPORT", "REMOTE", "URL", "GROUP", "AGE"], "{table}");
    let row = |name: &str| table.lines().find(|l| l.split_whitespace().next() == Some(name)).unwrap().to_string();
    assert_eq!(row("partner-tools").split_whitespace().nth(1), Some("Valid"), "{table}");
    assert_eq!(row("loopback").split_whitespace().nth(1), Some("Failed"), "{table}");
    assert!(row("partner-tools").contains("engineering-tools"), "{table}");
    let e = entries.get("partner-tools").await.unwrap();
    assert_eq!(e.name_any(), "partner-tools");
}
