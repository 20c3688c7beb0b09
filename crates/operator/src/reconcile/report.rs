//! The steps every reconcile of a proxy-running kind takes around its own work: count it, skip
//! a deleted object, warn about spec conflicts once per generation; then write the status only
//! when it changed and publish an event when `Ready` changed.

use std::fmt::{Debug, Display};
use std::marker::PhantomData;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::controller::{Context, Error};
use super::labels::FIELD_MANAGER;

/// A reconcile under way of one object of kind `K`.
#[derive(Debug)]
pub struct Started<K> {
    /// The object's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Its uid, which the children's owner references carry.
    pub uid: String,
    reference: ObjectReference,
    kind: PhantomData<fn() -> K>,
}

/// Starts the reconcile of `object`: `None` when it is being deleted (owner references let the
/// garbage collector remove the children). On a generation not yet observed, each of
/// `conflicts()` becomes a `SpecConflict` warning event.
pub async fn begin<K, C>(
    ctx: &Context,
    object: &K,
    observed_generation: Option<i64>,
    conflicts: impl FnOnce() -> Vec<C>,
) -> Result<Option<Started<K>>, Error>
where
    K: Resource<DynamicType = ()>,
    C: Display,
{
    ctx.metrics.reconcile();
    if object.meta().deletion_timestamp.is_some() {
        return Ok(None);
    }
    let missing = |field| Error::MissingMeta { kind: K::kind(&()).into_owned(), field };
    let namespace = object.namespace().ok_or_else(|| missing("namespace"))?;
    let uid = object.uid().ok_or_else(|| missing("uid"))?;
    let started =
        Started { name: object.name_any(), namespace, uid, reference: object.object_ref(&()), kind: PhantomData };
    if observed_generation != object.meta().generation {
        for conflict in conflicts() {
            publish(ctx, &started.reference, EventType::Warning, "SpecConflict", "Normalize", conflict.to_string())
                .await;
        }
    }
    Ok(Some(started))
}

impl<K> Started<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
{
    /// Writes `next` when it differs from `before`, then, when the `Ready` condition's status
    /// or reason changed, publishes an event with its reason and message: Normal when ready
    /// or merely waiting for the Deployment, Warning otherwise.
    pub async fn finish<S>(
        &self,
        ctx: &Context,
        before: Option<&S>,
        next: &S,
        ready_condition: fn(Option<&S>) -> Option<&Condition>,
    ) -> Result<(), Error>
    where
        S: Serialize + PartialEq,
    {
        let was = ready_condition(before).map(|c| (c.status.clone(), c.reason.clone()));
        if before != Some(next) {
            let api: Api<K> = Api::namespaced(ctx.client.clone(), &self.namespace);
            let body = json!({"apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": next});
            api.patch_status(&self.name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body)).await?;
        }
        if let Some(now) = ready_condition(Some(next))
            && was.as_ref().map(|(s, r)| (s, r)) != Some((&now.status, &now.reason))
        {
            let type_ = if now.status == "True" || now.reason == "DeploymentUnavailable" {
                EventType::Normal
            } else {
                EventType::Warning
            };
            publish(ctx, &self.reference, type_, &now.reason, "Reconcile", now.message.clone()).await;
        }
        Ok(())
    }
}

async fn publish(
    ctx: &Context,
    reference: &ObjectReference,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let event =
        Event { type_, reason: reason.to_string(), note: Some(note), action: action.to_string(), secondary: None };
    // An event that cannot be written must not fail the reconcile.
    if let Err(e) = ctx.recorder.publish(&event, reference).await {
        tracing::warn!(error = %e, reason, "could not publish event");
    }
}
