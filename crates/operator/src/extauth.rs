//! MCPExternalAuthConfig status: the `Valid` condition (printer column Valid), the
//! observedGeneration and the config hash. The verdict comes from the proxy's own resolution
//! (`reconcile::policy::outgoing`), so the config, its users' conditions and the proxy agree.
//! Whether the referenced Secrets exist is for each consumer to report, not this kind.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

use crate::crd::common::ConfigStatus;
use crate::crd::externalauth::MCPExternalAuthConfig;
use crate::reconcile::check::{self, Check};
use crate::reconcile::policy::{PolicyError, hash_spec, outgoing};
use crate::reconcile::{Context, Error, WatchScope, controller, outcome, report};

/// The condition type.
pub const VALID: &str = "Valid";
/// Reason of a type Apiary cannot carry out.
pub const UNSUPPORTED: &str = "Unsupported";
/// Reason of a supported type whose settings cannot be used.
pub const INVALID: &str = "Invalid";
/// Safety-net resync; the watch catches real changes.
const RESYNC: Duration = Duration::from_secs(300);

/// Why a config cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// [`UNSUPPORTED`] or [`INVALID`].
    pub reason: &'static str,
    /// What is wrong.
    pub message: String,
}

/// `Ok` when Apiary can carry out `config` as the proxy would resolve it.
pub fn validity(config: &MCPExternalAuthConfig) -> Result<(), Invalid> {
    if let Some(message) = outgoing::unsupported(config.spec.type_) {
        return Err(Invalid { reason: UNSUPPORTED, message });
    }
    match outgoing::outgoing(&config.name_any(), Some(config)) {
        Ok(_) => Ok(()),
        Err(PolicyError::Invalid { reason, .. }) => Err(Invalid { reason: INVALID, message: reason }),
        Err(other) => Err(Invalid { reason: INVALID, message: other.to_string() }),
    }
}

/// The status `config` should have, from its current status; `now` only stamps a flip.
pub fn compute(config: &MCPExternalAuthConfig, now: Timestamp) -> ConfigStatus {
    let check = match validity(config) {
        Ok(()) => Check::pass(VALID, "Valid", "Apiary can carry out this configuration"),
        Err(Invalid { reason, message }) => Check::fail(VALID, reason, message),
    };
    let before = config.status.clone().unwrap_or_default();
    let generation = config.meta().generation;
    ConfigStatus {
        conditions: Some(check::apply(before.conditions.unwrap_or_default(), &[check], generation, now)),
        observed_generation: generation,
        config_hash: Some(hash_spec(&config.spec)),
    }
}

/// The `Valid` condition of a status.
pub fn valid_condition(status: Option<&ConfigStatus>) -> Option<&Condition> {
    outcome::find(status?.conditions.as_ref(), VALID)
}

/// Runs the MCPExternalAuthConfig status controller(s) for `scope` until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    scope: WatchScope,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let shutdown = futures::FutureExt::shared(Box::pin(shutdown));
    let controllers = controller::namespaces(scope).into_iter().map(|ns| {
        let ctx = Arc::clone(&ctx);
        let c = Controller::new(
            controller::api::<MCPExternalAuthConfig>(&ctx.client, ns.as_deref()),
            watcher::Config::default(),
        );
        controller::drive(c, reconcile, Arc::clone(&ctx), shutdown.clone())
    });
    futures::future::join_all(controllers).await;
}

/// One reconcile of one MCPExternalAuthConfig: write the status when it changed.
pub async fn reconcile(config: Arc<MCPExternalAuthConfig>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some(config) = report::fresh(&ctx, &*config).await? else {
        return Ok(Action::await_change());
    };
    let observed = config.status.as_ref().and_then(|s| s.observed_generation);
    let Some(run) = report::begin(&ctx, &config, observed, Vec::<String>::new).await? else {
        return Ok(Action::await_change());
    };
    let next = compute(&config, outcome::now_seconds());
    run.finish(&ctx, config.status.as_ref(), &next, valid_condition).await?;
    Ok(Action::requeue(RESYNC))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use serde_json::json;

    use super::*;

    fn config(spec: serde_json::Value) -> MCPExternalAuthConfig {
        serde_json::from_value(json!({
            "apiVersion": "toolhive.stacklok.dev/v1alpha1", "kind": "MCPExternalAuthConfig",
            "metadata": {"name": "auth", "namespace": "ns", "generation": 3}, "spec": spec,
        }))
        .unwrap()
    }

    fn valid(c: &MCPExternalAuthConfig) -> Condition {
        valid_condition(Some(&compute(c, Timestamp::UNIX_EPOCH))).unwrap().clone()
    }

    #[test]
    fn the_seed_token_exchange_and_the_other_carried_out_types_are_valid() {
        let specs = [
            json!({"type": "tokenExchange", "tokenExchange": {
                "tokenUrl": "https://auth.company.com/protocol/openid-connect/token", "clientId": "remote-mcp-client",
                "clientSecretRef": {"name": "remote-mcp-secret", "key": "client-secret"},
                "audience": "https://mcp.example.com"}}),
            json!({"type": "headerInjection", "headerInjection": {"headerName": "X-API-Key",
                "valueSecretRef": {"name": "s", "key": "k"}}}),
            json!({"type": "bearerToken", "bearerToken": {"tokenSecretRef": {"name": "s", "key": "k"}}}),
            json!({"type": "unauthenticated"}),
        ];
        for spec in specs {
            let c = valid(&config(spec.clone()));
            assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "Valid"), "{spec}");
            assert_eq!(c.observed_generation, Some(3));
        }
    }

    #[test]
    fn other_types_are_unsupported_and_named() {
        let c = valid(&config(json!({"type": "awsSts", "awsSts": {"region": "eu-west-1"}})));
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", UNSUPPORTED));
        assert!(c.message.contains("awsSts"), "{}", c.message);
        let c = valid(&config(json!({"type": "obo", "obo": {}})));
        assert_eq!(c.reason, UNSUPPORTED);
    }

    #[test]
    fn a_missing_block_or_unusable_settings_are_invalid() {
        let c = valid(&config(json!({"type": "bearerToken"})));
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", INVALID));
        assert!(c.message.contains("bearerToken"), "{}", c.message);
        let c = valid(&config(json!({"type": "headerInjection", "headerInjection": {"headerName": "Host",
            "valueSecretRef": {"name": "s", "key": "k"}}})));
        assert_eq!(c.reason, INVALID);
        assert!(c.message.contains("Host"), "{}", c.message);
    }

    #[test]
    fn the_status_carries_the_generation_and_a_hash_that_follows_the_spec() {
        let a = compute(&config(json!({"type": "unauthenticated"})), Timestamp::UNIX_EPOCH);
        let b = compute(&config(json!({"type": "bearerToken"})), Timestamp::UNIX_EPOCH);
        assert_eq!(a.observed_generation, Some(3));
        assert_ne!(a.config_hash, b.config_hash);
        assert!(a.config_hash.is_some());
    }
}
