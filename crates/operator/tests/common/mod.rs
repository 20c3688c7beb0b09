//! Helpers shared by the operator's integration tests: the reconstructed seed manifests, the
//! seed texts they come from, and the generated schemas; [`cluster`] holds those of the tests
//! that run the reconcilers against a real cluster.

#![allow(clippy::unwrap_used)] // tests may unwrap
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::Value;

pub mod cluster;
pub mod node_tls;

/// Directory of the hand-reconstructed seed manifests.
pub fn seeds_manifest_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/seeds")
}

/// Directory of the seed texts: the copies kept with the tests (`tests/seeds/texts/`, so a
/// clean checkout checks its reconstructions), or `APIARY_SEEDS_DIR` to check against others.
pub fn seed_text_dir() -> PathBuf {
    match std::env::var_os("APIARY_SEEDS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => seeds_manifest_dir().join("texts"),
    }
}

/// One YAML document of a reconstructed seed file.
pub struct SeedDoc {
    /// File name, e.g. `002-auth-entry.yaml`.
    pub file: String,
    /// Seed number from the file name, e.g. `002`.
    pub seed: String,
    /// The document as JSON.
    pub value: Value,
}

impl SeedDoc {
    pub fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or("")
    }
    pub fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or("")
    }
}

/// Every document of every reconstructed seed file, in file order.
pub fn seed_docs() -> Vec<SeedDoc> {
    let mut files: Vec<_> = std::fs::read_dir(seeds_manifest_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(seeds_manifest_dir().join(&file)).unwrap();
        let values: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        for value in values.into_iter().filter(|v| !v.is_null()) {
            docs.push(SeedDoc { seed: file[..3].to_string(), file: file.clone(), value });
        }
    }
    docs
}
