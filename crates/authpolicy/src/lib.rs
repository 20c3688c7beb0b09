//! Kuadrant AuthPolicy (`kuadrant.io/v1`) evaluated as Authorino evaluates it: load a policy into a
//! [`CompiledPolicy`] (or get a [`LoadError`] naming the field Apiary cannot evaluate), then
//! [`CompiledPolicy::evaluate`] each request into a [`Decision`]. JWT verification and HTTP are
//! seams ([`JwtVerifier`], [`MetadataFetcher`]); CEL and Rego stay inside this crate.
//! [`Enforcer`] is what the gateway calls: policies per route, [`OidcVerifier`] (Apiary's OIDC
//! verification) and a [`CachingFetcher`] that reuses token exchanges.
mod cache;
mod cel_expr;
mod compile;
mod enforce;
mod error;
mod eval;
mod fetch;
mod identity;
pub mod model;
mod oidc;
mod rego;
mod request;

pub use cache::{CacheLimits, CacheStats, CachingFetcher};
pub use compile::{CompiledPolicy, SecretSource};
pub use enforce::{
    Enforcer, METHOD_HEADER, OidcEnforcer, REFUSED_STATUS, SERVER_NAME_HEADER, TOOL_NAME_HEADER, target_route,
};
pub use error::LoadError;
pub use eval::Decision;
pub use fetch::{FetchError, HttpCall, MetadataFetcher, ReqwestFetcher, RootsError, pem_roots};
pub use identity::{JwtVerifier, VerifyError};
pub use model::{AuthPolicy, AuthPolicySpec, TargetRef};
pub use oidc::{MAX_ISSUERS, OidcVerifier};
pub use request::RequestInfo;
/// A trusted CA certificate ([`pem_roots`], [`ReqwestFetcher::with_extra_roots`]).
pub use reqwest::Certificate;
