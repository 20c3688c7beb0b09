//! Fixtures and harness helpers for Apiary's tests: fixture MCP servers written in Rust,
//! and the locations of the real tools (Node, the conformance suite, Python clients) that
//! `cargo xtask test-env` installs, including a real Keycloak (`keycloak`), and the test cluster's OIDC issuer with
//! kubernetes-mcp-server passing tokens through to it (`kube_oidc`, `kubernetes_mcp`).

pub mod binaries;
pub mod conformance;
mod daemon;
pub mod env;
pub mod http_fixture;
pub mod issuer;
pub mod jaeger;
pub mod keycloak;
pub mod kube_oidc;
pub mod kubernetes_mcp;
pub mod server;
