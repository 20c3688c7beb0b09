//! The seed manifests (seeds 000–004, reconstructed by hand in `tests/seeds/` where the seed
//! text lost its indentation) deserialize into the CRD types and serialize back with no
//! field lost or changed, and the reconstructions match the seed texts line for line.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use common::{SeedDoc, seed_docs, seed_text_dir};
use serde_json::Value;

use apiary_operator::crd::{
    externalauth::MCPExternalAuthConfig, mcpgroup::MCPGroup, mcpremoteproxy::MCPRemoteProxy, mcpserver::MCPServer,
    mcpserverentry::MCPServerEntry, registration::MCPServerRegistration, virtualmcpserver::VirtualMCPServer,
};

/// Kinds whose seed manifests must round-trip.
const KINDS: [&str; 7] = [
    "MCPServer",
    "MCPRemoteProxy",
    "MCPServerEntry",
    "MCPGroup",
    "MCPExternalAuthConfig",
    "VirtualMCPServer",
    "MCPServerRegistration",
];

fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(value: &Value) -> Value {
    let typed: T =
        serde_path_to_error::deserialize(value.clone()).unwrap_or_else(|e| panic!("does not deserialize: {e}"));
    serde_json::to_value(&typed).unwrap()
}

fn round_trip_doc(doc: &SeedDoc) -> Value {
    match doc.kind() {
        "MCPServer" => round_trip::<MCPServer>(&doc.value),
        "MCPRemoteProxy" => round_trip::<MCPRemoteProxy>(&doc.value),
        "MCPServerEntry" => round_trip::<MCPServerEntry>(&doc.value),
        "MCPGroup" => round_trip::<MCPGroup>(&doc.value),
        "MCPExternalAuthConfig" => round_trip::<MCPExternalAuthConfig>(&doc.value),
        "VirtualMCPServer" => round_trip::<VirtualMCPServer>(&doc.value),
        "MCPServerRegistration" => round_trip::<MCPServerRegistration>(&doc.value),
        other => panic!("{}: unexpected kind {other}", doc.file),
    }
}

/// Every path of `input` must hold the same value in `output`. `output` may carry extra
/// fields only where `allowed_extra` says so (none of the types add any today).
fn lost_or_changed(input: &Value, output: &Value, path: &str, out: &mut Vec<String>) {
    match (input, output) {
        (Value::Object(i), Value::Object(o)) => {
            for (k, v) in i {
                let p = format!("{path}.{k}");
                match o.get(k) {
                    Some(ov) => lost_or_changed(v, ov, &p, out),
                    None => out.push(format!("{p} lost")),
                }
            }
            for k in o.keys().filter(|k| !i.contains_key(*k)) {
                out.push(format!("{path}.{k} added"));
            }
        }
        (Value::Array(i), Value::Array(o)) if i.len() == o.len() => {
            for (n, (iv, ov)) in i.iter().zip(o).enumerate() {
                lost_or_changed(iv, ov, &format!("{path}[{n}]"), out);
            }
        }
        (i, o) if i == o => {}
        (i, o) => out.push(format!("{path}: {i} became {o}")),
    }
}

fn diff_after_round_trip(doc: &SeedDoc) -> Vec<String> {
    let mut input = doc.value.clone();
    let mut output = round_trip_doc(doc);
    // The types serialize their storage version; the seeds apply v1alpha1 (same schema).
    input.as_object_mut().unwrap().remove("apiVersion");
    output.as_object_mut().unwrap().remove("apiVersion");
    let mut diff = Vec::new();
    lost_or_changed(&input, &output, "", &mut diff);
    diff
}

#[test]
fn every_seed_manifest_round_trips_without_losing_a_field() {
    let docs = seed_docs();
    let mut failures = Vec::new();
    let mut checked = 0;
    for doc in docs.iter().filter(|d| KINDS.contains(&d.kind())) {
        checked += 1;
        for d in diff_after_round_trip(doc) {
            failures.push(format!("{} {} {}: {d}", doc.file, doc.kind(), doc.name()));
        }
    }
    assert!(failures.is_empty(), "fields lost or changed:\n{}", failures.join("\n"));
    assert_eq!(checked, 15, "seed manifests of the CRD kinds");
}

#[test]
fn the_comparison_notices_a_dropped_field() {
    let docs = seed_docs();
    let mut doc = docs.into_iter().find(|d| d.file == "001-my-mcpserver.yaml").unwrap();
    doc.value["spec"]["notAField"] = Value::from("x");
    doc.value["spec"]["permissionProfile"]["alsoNot"] = Value::from(1);
    let mut diff = diff_after_round_trip(&doc);
    diff.sort();
    assert_eq!(diff, vec![".spec.notAField lost", ".spec.permissionProfile.alsoNot lost"]);
}

#[test]
fn seed_manifests_carry_the_seeds_spellings() {
    // The spellings "accept both" exists for, as the seeds write them.
    let docs = seed_docs();
    let find = |file: &str, kind: &str| {
        docs.iter().find(|d| d.file == file && d.kind() == kind).unwrap_or_else(|| panic!("{file} {kind}"))
    };
    let osv: MCPServer = serde_json::from_value(find("001-my-mcpserver.yaml", "MCPServer").value.clone()).unwrap();
    assert_eq!((osv.spec.port, osv.spec.proxy_port), (Some(8080), None));
    let fetch: MCPServer = serde_json::from_value(find("000-fetch.yaml", "MCPServer").value.clone()).unwrap();
    assert_eq!((fetch.spec.proxy_port, fetch.spec.mcp_port), (Some(8080), Some(8080)));
    let entry: MCPServerEntry =
        serde_json::from_value(find("002-my-entry.yaml", "MCPServerEntry").value.clone()).unwrap();
    assert_eq!(entry.spec.remote_url.as_deref(), Some("https://mcp.example.com/mcp"));
    assert_eq!(entry.spec.group_ref.name(), Ok("my-group"));
    assert!(entry.spec.group_ref.is_canonical());
    let reg: MCPServerRegistration =
        serde_json::from_value(find("004-kubernetes-mcp-server.yaml", "MCPServerRegistration").value.clone()).unwrap();
    assert_eq!(reg.spec.prefix.as_deref(), Some("kube_"));
}

fn significant_lines(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect()
}

fn seed_text(seed: &str) -> Option<String> {
    let dir = seed_text_dir();
    let entries = std::fs::read_dir(&dir).ok()?;
    for entry in entries {
        let name = entry.ok()?.file_name().to_string_lossy().into_owned();
        if name.starts_with(&format!("{seed}_")) && name.ends_with(".txt") {
            return std::fs::read_to_string(dir.join(name)).ok();
        }
    }
    None
}

/// Manifests of the CRD kinds in a seed text: a `kind:` line right after an `apiVersion:` line
/// of one of the two groups.
fn manifests_in_text(text: &str) -> usize {
    let lines = significant_lines(text);
    lines
        .windows(2)
        .filter(|w| {
            (w[0].starts_with("apiVersion: toolhive.stacklok.dev/") || w[0].starts_with("apiVersion: mcp.kuadrant.io/"))
                && KINDS.iter().any(|k| w[1] == format!("kind: {k}"))
        })
        .count()
}

#[test]
fn reconstructions_match_the_seed_texts() {
    let dir = seed_text_dir();
    assert!(dir.is_dir(), "no seed texts at {}", dir.display());
    let mut files: Vec<_> = std::fs::read_dir(common::seeds_manifest_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    files.sort();
    let mut failures = Vec::new();
    for file in &files {
        let text = seed_text(&file[..3]).unwrap_or_else(|| panic!("no seed text for {file}"));
        let seed = significant_lines(&text);
        let manifest = significant_lines(&std::fs::read_to_string(common::seeds_manifest_dir().join(file)).unwrap());
        let found = seed.windows(manifest.len()).any(|w| w == manifest.as_slice());
        if !found {
            failures.push(format!("{file}: its lines do not appear, in order, in seed {}", &file[..3]));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Every manifest of these kinds in the seed texts has been reconstructed.
    let docs = seed_docs();
    for seed in ["000", "001", "002", "003", "004"] {
        let text = seed_text(seed).unwrap_or_else(|| panic!("no seed text {seed}"));
        let reconstructed = docs.iter().filter(|d| d.seed == seed && KINDS.contains(&d.kind())).count();
        assert_eq!(manifests_in_text(&text), reconstructed, "seed {seed}");
    }
}
