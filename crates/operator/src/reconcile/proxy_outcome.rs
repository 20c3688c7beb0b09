//! Applying the children of a kind that runs a proxy Deployment (MCPServer, MCPRemoteProxy)
//! and saying what came of it: a name conflict, the proxy held back for a refused reference, or
//! the proxy as observed. One copy for both reconcilers.

use super::apply::{self, Applied, Children};
use super::controller::{Context, Error};
use super::features::Unapplied;
use super::labels::proxy_selector_string;
use super::observe;
use super::outcome::Outcome;
use super::policy::PolicyError;
use super::report::Started;

/// Applies `children` for `run` and judges the result: `refused` (why a referenced protection
/// cannot be served) wins over a proxy that applied; else the proxy Deployment is observed and
/// reported at `url`, with the fields Apiary does not apply (`unapplied`).
pub async fn apply_proxy<K>(
    ctx: &Context,
    run: &Started<K>,
    children: Children<'_>,
    refused: Option<&PolicyError>,
    unapplied: &Unapplied,
    url: String,
) -> Result<Outcome, Error> {
    Ok(match apply::apply_all(&ctx.client, &run.namespace, children, &run.uid).await? {
        Applied::Conflict { kind, name } => Outcome::NameConflict { kind, name },
        Applied::Done(_) if refused.is_some() => Outcome::Refused(refused.map(ToString::to_string).unwrap_or_default()),
        Applied::Done(deployment) => {
            // A proxy held at zero replicas has no pods to explain.
            let ask_pods = !unapplied.blocks();
            let selector = proxy_selector_string(&run.name);
            let seen = observe::proxy(&ctx.client, &run.namespace, &selector, &deployment, ask_pods).await?;
            Outcome::applied(url, seen, unapplied.clone())
        }
    })
}
