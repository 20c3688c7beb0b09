//! The MCPServerEntry reconciler: validation only, it creates nothing. Each reconcile reads what
//! the entry references (its MCPGroup, MCPExternalAuthConfig, CA bundle ConfigMap, header
//! Secrets), runs the checks of [`validate`] and writes the status of [`status`] when it
//! changed. Watches on the referenced kinds re-validate an entry when one of them appears,
//! changes or goes.

pub mod status;
pub mod validate;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, Resource};

use crate::crd::externalauth::MCPExternalAuthConfig;
use crate::crd::mcpgroup::MCPGroup;
use crate::crd::mcpserverentry::{MCPServerEntry, MCPServerEntrySpec};
use crate::normalize::Normalize;
use crate::reconcile::policy::fetch::get;
use crate::reconcile::{Context, Error, WatchScope, controller, outcome, report};
use validate::Found;

/// Safety-net resync; the watches catch real changes.
const RESYNC: Duration = Duration::from_secs(300);

/// Runs the MCPServerEntry controller(s) for `scope` until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    scope: WatchScope,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let shutdown = futures::FutureExt::shared(Box::pin(shutdown));
    let controllers = controller::namespaces(scope).into_iter().map(|ns| {
        let (ctx, ns) = (Arc::clone(&ctx), ns.as_deref().map(str::to_string));
        let client = &ctx.client;
        let c = Controller::new(controller::api::<MCPServerEntry>(client, ns.as_deref()), watcher::Config::default());
        let entries = c.store();
        let c = c
            .watches(
                controller::api::<MCPGroup>(client, ns.as_deref()),
                watcher::Config::default(),
                controller::same_namespace(&entries, |e: &MCPServerEntry, name| e.spec.group_ref.name() == Ok(name)),
            )
            .watches(
                controller::api::<MCPExternalAuthConfig>(client, ns.as_deref()),
                watcher::Config::default(),
                controller::same_namespace(&entries, |e: &MCPServerEntry, name| {
                    e.spec.external_auth_config_ref.as_ref().is_some_and(|r| r.name == name)
                }),
            )
            .watches(
                controller::api::<ConfigMap>(client, ns.as_deref()),
                watcher::Config::default(),
                controller::same_namespace(&entries, |e: &MCPServerEntry, name| ca_bundle_name(&e.spec) == Some(name)),
            )
            .watches(
                controller::api::<Secret>(client, ns.as_deref()),
                watcher::Config::default(),
                controller::same_namespace(&entries, |e: &MCPServerEntry, name| {
                    header_secret_names(&e.spec).contains(name)
                }),
            );
        controller::drive(c, reconcile, Arc::clone(&ctx), shutdown.clone())
    });
    futures::future::join_all(controllers).await;
}

/// One reconcile of one MCPServerEntry.
pub async fn reconcile(entry: Arc<MCPServerEntry>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some(entry) = report::fresh(&ctx, &*entry).await? else {
        return Ok(Action::await_change());
    };
    let normalized = entry.spec.normalize();
    let observed = entry.status.as_ref().and_then(|s| s.observed_generation);
    let Some(run) = report::begin(&ctx, &entry, observed, || normalized.conflicts.clone()).await? else {
        return Ok(Action::await_change());
    };
    let found = fetch(&ctx.client, &run.namespace, &normalized.spec).await?;
    let checks = validate::checks(&normalized.spec, &found);
    let next = status::compute(&checks, entry.status.as_ref(), entry.meta().generation, outcome::now_seconds());
    run.finish(&ctx, entry.status.as_ref(), &next, status::valid_condition).await?;
    Ok(Action::requeue(RESYNC))
}

/// Name of the CA bundle ConfigMap, when one is referenced.
fn ca_bundle_name(spec: &MCPServerEntrySpec) -> Option<&str> {
    spec.ca_bundle_ref.as_ref()?.config_map_ref.as_ref().map(|c| c.name.as_str())
}

/// Names of the Secrets `headerForward.addHeadersFromSecret` reads.
fn header_secret_names(spec: &MCPServerEntrySpec) -> BTreeSet<&str> {
    let h = spec.header_forward.as_ref().and_then(|h| h.add_headers_from_secret.as_ref());
    h.into_iter().flatten().map(|s| s.value_secret_ref.name.as_str()).collect()
}

/// Reads what `spec` references in `namespace`. Of a Secret only its key names are kept.
async fn fetch(client: &Client, namespace: &str, spec: &MCPServerEntrySpec) -> Result<Found, kube::Error> {
    let mut found = Found {
        group: get::<MCPGroup>(client, namespace, spec.group_ref.name().ok()).await?,
        external_auth: get::<MCPExternalAuthConfig>(
            client,
            namespace,
            spec.external_auth_config_ref.as_ref().map(|r| r.name.as_str()),
        )
        .await?,
        ca_bundle: get::<ConfigMap>(client, namespace, ca_bundle_name(spec)).await?,
        ..Found::default()
    };
    for name in header_secret_names(spec) {
        if let Some(secret) = get::<Secret>(client, namespace, Some(name)).await? {
            let keys = secret.data.unwrap_or_default().into_keys().collect();
            found.secret_keys.insert(name.to_string(), keys);
        }
    }
    Ok(found)
}
