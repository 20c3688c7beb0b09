//! Turns the single-version CRD that kube's derive produces into the served CRD: the storage
//! version plus an older served version with an identical schema and no conversion.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceConversion, CustomResourceDefinition,
};

/// Served name of the older version of a CRD.
pub const SEED_VERSION: &str = "v1alpha1";

/// Why a derived CRD cannot be turned into the served one.
#[derive(Debug, thiserror::Error)]
pub enum VersionsError {
    /// The derived CRD has no version or more than one.
    #[error("CRD {name} should have exactly one derived version, has {count}")]
    NotSingleVersion {
        /// CRD name.
        name: String,
        /// Versions found.
        count: usize,
    },
}

/// Adds [`SEED_VERSION`] (served, not storage, not deprecated) next to the derived storage
/// version, with the same schema, printer columns and subresources, and sets conversion `None`
/// and `listKind` (which the apiserver would default, so applying the file changes nothing).
pub fn with_seed_version(mut crd: CustomResourceDefinition) -> Result<CustomResourceDefinition, VersionsError> {
    let name = crd.metadata.name.clone().unwrap_or_default();
    if crd.spec.versions.len() != 1 {
        return Err(VersionsError::NotSingleVersion { name, count: crd.spec.versions.len() });
    }
    let storage = &mut crd.spec.versions[0];
    storage.served = true;
    storage.storage = true;
    let mut seed = storage.clone();
    seed.name = SEED_VERSION.to_string();
    seed.storage = false;
    seed.deprecated = None;
    seed.deprecation_warning = None;
    crd.spec.versions.push(seed);
    crd.spec.names.list_kind = Some(format!("{}List", crd.spec.names.kind));
    crd.spec.conversion = Some(CustomResourceConversion { strategy: "None".to_string(), webhook: None });
    Ok(crd)
}
