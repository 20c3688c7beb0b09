//! The custom resource types Apiary serves, one module per kind, and the CRDs built from them.

pub mod authzconfig;
pub mod catalog;
pub mod common;
pub mod externalauth;
pub mod mcpgroup;
pub mod mcpremoteproxy;
pub mod mcpserver;
pub mod mcpserverentry;
pub mod oidcconfig;
pub mod registration;
pub mod render;
pub mod telemetryconfig;
pub mod toolconfig;
pub mod versions;
pub mod virtualmcpserver;
