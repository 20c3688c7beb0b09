//! The MCPServer reconciler: recompute the children from the normalised spec, apply them with
//! server-side apply, and report `status` (phase, url, message, observedGeneration, `Ready`,
//! `FeaturesApplied`), writing nothing when nothing changed. Also home of the pieces the
//! MCPRemoteProxy reconciler shares with it (controller plumbing, workload builders, which
//! fields are enforced, apply, observation, outcome and reporting).

pub mod apply;
pub mod check;
pub mod controller;
pub mod desired;
pub mod features;
pub mod labels;
pub mod metrics;
pub mod observe;
pub mod outcome;
pub mod policy;
pub mod proxy_outcome;
pub mod report;
pub mod status;
pub mod workload;

use std::sync::Arc;

use kube::runtime::controller::Action;

pub use apply::owned_by;
pub use controller::{Context, Error, WatchScope};
pub use desired::{DesiredError, Settings};
pub use labels::FIELD_MANAGER;
pub use metrics::Metrics;

use crate::crd::mcpserver::MCPServer;
use crate::normalize::Normalize;
use outcome::Outcome;
use policy::Referencing;
use proxy_outcome::apply_proxy;

/// Runs the MCPServer controller(s) for `scope` until `shutdown` resolves, then lets the
/// reconciles in flight finish.
pub async fn run(
    ctx: Arc<Context>,
    scope: WatchScope,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let children = format!("{}=true", labels::TOOLHIVE_LABEL);
    controller::run::<MCPServer, _, _>(ctx, scope, children, reconcile, shutdown).await;
}

/// One reconcile of one MCPServer.
pub async fn reconcile(server: Arc<MCPServer>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some(server) = report::fresh(&ctx, &*server).await? else {
        return Ok(Action::await_change());
    };
    let observed = server.status.as_ref().and_then(|s| s.observed_generation);
    let Some(run) = report::begin(&ctx, &server, observed, || server.spec.normalize().conflicts).await? else {
        return Ok(Action::await_change());
    };
    let found = policy::fetch(&ctx.client, &run.namespace, &server.policy_refs()).await?;
    let mut hashes = None;
    let outcome = match desired::desired(&server, &ctx.settings, &found) {
        Err(e) => Outcome::Invalid(e.to_string()),
        Ok(want) => {
            let url = labels::proxy_url(&run.name, &run.namespace, want.proxy_port);
            let outcome = apply_proxy(&ctx, &run, want.children(), want.refused.as_ref(), &want.unapplied, url).await?;
            hashes = matches!(outcome, Outcome::Applied { .. }).then(|| want.hashes.clone());
            outcome
        }
    };
    let mut next = status::compute(&server, &outcome, outcome::now_seconds());
    if let Some(h) = hashes {
        (next.oidc_config_hash, next.authz_config_hash, next.tool_config_hash) = (h.oidc, h.authz, h.tools);
        (next.external_auth_config_hash, next.telemetry_config_hash) = (h.external_auth, h.telemetry);
    }
    run.finish(&ctx, server.status.as_ref(), &next, status::ready_condition).await?;
    Ok(controller::requeue(outcome.waiting_for_proxy()))
}
