//! The MCPRemoteProxy reconciler: a proxy Deployment in front of a remote MCP server. Like the
//! MCPServer reconciler it recomputes the children from the normalised spec, applies them with
//! server-side apply, repairs drift through watches on the children, and reports `status`
//! (phase, url, message, observedGeneration, `Ready`), writing nothing when nothing changed.

pub mod desired;
pub mod names;
pub mod status;

use std::sync::Arc;

use kube::runtime::controller::Action;

use crate::crd::mcpremoteproxy::MCPRemoteProxy;
use crate::normalize::Normalize;
pub use crate::reconcile::Error;
use crate::reconcile::outcome::{self, Outcome};
use crate::reconcile::policy::{self, Referencing};
use crate::reconcile::proxy_outcome::apply_proxy;
use crate::reconcile::{Context, WatchScope, controller, report};

/// Runs the MCPRemoteProxy controller(s) for `scope` until `shutdown` resolves, then lets the
/// reconciles in flight finish. Shares [`Context`] (client, settings, events, metrics) with
/// the MCPServer controller.
pub async fn run(
    ctx: Arc<Context>,
    scope: WatchScope,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    controller::run::<MCPRemoteProxy, _, _>(ctx, scope, names::children_selector(), reconcile, shutdown).await;
}

/// One reconcile of one MCPRemoteProxy.
pub async fn reconcile(proxy: Arc<MCPRemoteProxy>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some(proxy) = report::fresh(&ctx, &*proxy).await? else {
        return Ok(Action::await_change());
    };
    let observed = proxy.status.as_ref().and_then(|s| s.observed_generation);
    let Some(run) = report::begin(&ctx, &proxy, observed, || proxy.spec.normalize().conflicts).await? else {
        return Ok(Action::await_change());
    };
    let found = policy::fetch(&ctx.client, &run.namespace, &proxy.policy_refs()).await?;
    let mut hashes = None;
    let outcome = match desired::desired(&proxy, &ctx.settings, &found) {
        Err(e) => Outcome::Invalid(e.to_string()),
        Ok(want) => {
            let url = names::proxy_url(&run.name, &run.namespace, want.proxy_port);
            let outcome = apply_proxy(&ctx, &run, want.children(), want.refused.as_ref(), &want.unapplied, url).await?;
            hashes = matches!(outcome, Outcome::Applied { .. }).then(|| want.hashes.clone());
            outcome
        }
    };
    let mut next = status::compute(&proxy, &outcome, outcome::now_seconds());
    if let Some(h) = hashes {
        (next.oidc_config_hash, next.authz_config_hash, next.tool_config_hash) = (h.oidc, h.authz, h.tools);
        (next.external_auth_config_hash, next.telemetry_config_hash) = (h.external_auth, h.telemetry);
    }
    run.finish(&ctx, proxy.status.as_ref(), &next, status::ready_condition).await?;
    Ok(controller::requeue(outcome.waiting_for_proxy()))
}
