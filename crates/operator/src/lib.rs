//! Apiary's Kubernetes operator library: the custom resource types it serves (ToolHive's
//! `toolhive.stacklok.dev` kinds and Kuadrant's `MCPServerRegistration`), the CRDs generated
//! from them, the canonical view of each spec, and the reconcilers that turn specs into objects.

// kube's derive takes one `printcolumn(...)`/`shortname` attribute per column or name; clippy
// mistakes the repeats for duplicates.
#[allow(clippy::duplicated_attributes)]
pub mod crd;
pub mod entry;
pub mod export;
pub mod extauth;
pub mod gateway;
pub mod group;
pub mod manager;
pub mod normalize;
pub mod reconcile;
pub mod registration;
pub mod remoteproxy;
pub mod vmcp;
