//! Kuadrant AuthPolicy (`kuadrant.io/v1`) evaluated as Authorino evaluates it: load a policy into a
//! [`CompiledPolicy`] (or get a [`LoadError`] naming the field Apiary cannot evaluate), then
//! [`CompiledPolicy::evaluate`] each request into a [`Decision`]. JWT verification and HTTP are
//! seams ([`JwtVerifier`], [`MetadataFetcher`]); CEL and Rego stay inside this crate.
mod cel_expr;
mod compile;
mod error;
mod eval;
mod fetch;
mod identity;
pub mod model;
mod rego;
mod request;

pub use compile::{CompiledPolicy, SecretSource};
pub use error::LoadError;
pub use eval::Decision;
pub use fetch::{FetchError, HttpCall, MetadataFetcher, ReqwestFetcher};
pub use identity::{JwtVerifier, VerifyError};
pub use model::{AuthPolicy, AuthPolicySpec, TargetRef};
pub use request::RequestInfo;
