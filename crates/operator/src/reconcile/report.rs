//! The steps every reconcile of a proxy-running kind takes around its own work: count it, skip
//! a deleted object, warn about spec conflicts once per generation; then write the status only
//! when it changed and publish an event when `Ready` changed (a warning also when what it
//! names changed, e.g. the unsupported fields).

use std::fmt::{Debug, Display};
use std::marker::PhantomData;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
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

/// `object` as the apiserver has it now, `None` once it is gone. The controller's cache can lag
/// behind the reconcile's own status write: a reconcile woken by its own child's change would
/// then compare against the old status and publish the same event twice.
pub async fn fresh<K>(ctx: &Context, object: &K) -> Result<Option<K>, Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
{
    let missing = |field| Error::MissingMeta { kind: K::kind(&()).into_owned(), field };
    let namespace = object.namespace().ok_or_else(|| missing("namespace"))?;
    Ok(Api::<K>::namespaced(ctx.client.clone(), &namespace).get_opt(&object.name_any()).await?)
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
    /// Writes `next` when it differs from `before`, then, when the `Ready` condition changed
    /// in a way worth telling (see [`Notice`]), publishes an event with its reason and message.
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
        let was = ready_condition(before).map(Notice::of);
        if before != Some(next) {
            let api: Api<K> = Api::namespaced(ctx.client.clone(), &self.namespace);
            let body = json!({"apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": next});
            api.patch_status(&self.name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body)).await?;
        }
        if let Some(now) = ready_condition(Some(next))
            && was.as_ref() != Some(&Notice::of(now))
        {
            let notice = Notice::of(now);
            publish(ctx, &self.reference, notice.type_, &now.reason, "Reconcile", now.message.clone()).await;
        }
        Ok(())
    }
}

/// What about a `Ready` condition an event reports, so one is published per change and never
/// per resync. Progress (ready, or waiting for the Deployment) is a Normal event keyed on status
/// and reason: its message follows pod states and replica counts. Anything else is a Warning
/// keyed on its message too, which names what is wrong (the unsupported fields, the object in
/// the way) and changes only when that does.
#[derive(Debug, PartialEq)]
struct Notice<'a> {
    type_: EventType,
    status: &'a str,
    reason: &'a str,
    message: Option<&'a str>,
}

impl<'a> Notice<'a> {
    fn of(c: &'a Condition) -> Self {
        let progress = c.status == "True" || c.reason == "DeploymentUnavailable";
        Notice {
            type_: if progress { EventType::Normal } else { EventType::Warning },
            status: &c.status,
            reason: &c.reason,
            message: (!progress).then_some(c.message.as_str()),
        }
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
    // A recorder per event: kube's Recorder folds every event with the same type, reason and
    // action into one series that keeps the FIRST note, so "spec.audit not supported" would be
    // shown as the earlier "spec.oidcConfigRef not supported". Callers publish once per change
    // already, so nothing needs folding.
    let recorder = Recorder::new(ctx.client.clone(), ctx.reporter.clone());
    // An event that cannot be written must not fail the reconcile.
    if let Err(e) = recorder.publish(&event, reference).await {
        tracing::warn!(error = %e, reason, "could not publish event");
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn ready(status: &str, reason: &str, message: &str) -> Condition {
        Condition {
            type_: "Ready".into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            observed_generation: Some(1),
            last_transition_time: Time(Timestamp::UNIX_EPOCH),
        }
    }

    #[test]
    fn warnings_change_with_their_message_and_progress_only_with_its_reason() {
        let oidc = ready("False", "UnsupportedFeature", "spec.oidcConfigRef not supported");
        let both = ready("False", "UnsupportedFeature", "spec.oidcConfigRef, spec.audit not supported");
        assert_eq!(Notice::of(&oidc).type_, EventType::Warning);
        assert_eq!(Notice::of(&oidc), Notice::of(&oidc.clone()), "a resync publishes nothing");
        assert_ne!(Notice::of(&oidc), Notice::of(&both), "another field set is a new warning");

        let pulling = ready("False", "DeploymentUnavailable", "waiting: no proxy pod yet");
        let backoff = ready("False", "DeploymentUnavailable", "waiting: image x cannot be pulled");
        assert_eq!(Notice::of(&pulling).type_, EventType::Normal);
        assert_eq!(Notice::of(&pulling), Notice::of(&backoff), "pod states do not flood events");
        let one = ready("True", "DeploymentAvailable", "proxy running, 1 ready replica(s)");
        let two = ready("True", "DeploymentAvailable", "proxy running, 2 ready replica(s)");
        assert_eq!(Notice::of(&one), Notice::of(&two));
        assert_ne!(Notice::of(&one), Notice::of(&pulling));
    }
}
