//! The caller's part of a decision — claims as attributes, groups as parents, the entity store
//! with the principal in it — is the same for every request of one identity, so it is built once
//! per identity and reused while that identity lives (a verified token is one shared
//! `Arc<Identity>` for up to a minute, see `authn::verified`).
//!
//! Keyed by the identity's allocation, never by its contents: an entry holds a `Weak` to the
//! identity it was built for, which keeps that allocation from being reused, so no other identity
//! can ever have the same key, and an `Identity` behind an `Arc` cannot change. When the identity
//! is dropped, its entry can no longer be found by anyone and is the first to go when the table
//! is full.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use cedar_policy::{Entities, EntityUid};

use super::Feature;
use super::attributes::{Attr, Dropped};
use super::outcome::Outcome;
use super::values::Budget;
use crate::Identity;

/// Most identities remembered by one authorizer.
pub(crate) const MAX_PRINCIPALS: usize = 1024;
/// Most entity-store entries all remembered principals hold together: each keeps its own copy of
/// the static store's map (the entities themselves are shared), so a large `entities_json`
/// means fewer identities remembered.
const MAX_STORE_ENTRIES: usize = 1 << 20;

/// What one identity brings to every decision.
pub(crate) struct Principal {
    /// Its `claim_*`/`claimset_*` attributes left out (over a bound).
    pub dropped: Vec<Dropped>,
    /// Its `claim_*`/`claimset_*` values some policy reads from the context.
    pub context: Vec<Attr>,
    /// The decision's value budget left once the claims are built; the arguments spend the rest.
    pub budget: Budget,
    pub uid: EntityUid,
    /// The static entities with the principal added (its closure computed), or why it failed.
    pub store: Result<Entities, String>,
    /// What the policies that see only the caller (and those that also see the tool's
    /// annotations) found, per resource.
    pub outcomes: Outcomes,
}

/// Most resources whose per-caller outcome one principal remembers.
pub(crate) const MAX_OUTCOMES: usize = 256;

/// Which policies an outcome is of: the per-caller ones, or the per-tool ones
/// (`analysis::Split`) under one set of tool annotations (`attributes::annotation_key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Part {
    PerCaller,
    PerTool(u8),
}

/// Outcomes of the per-caller and per-tool policies for one principal, by feature, part and
/// resource name (the uid the policies' scopes see), at most [`MAX_OUTCOMES`] in all.
#[derive(Default)]
pub(crate) struct Outcomes {
    map: Mutex<HashMap<(Feature, Part), ByName>>,
}

/// Outcomes of one part, by resource name.
type ByName = HashMap<String, Arc<Outcome>>;

impl Outcomes {
    /// The outcome kept for this resource, if any.
    pub(crate) fn get(&self, feature: Feature, part: Part, name: &str) -> Option<Arc<Outcome>> {
        self.map.lock().ok().and_then(|m| m.get(&(feature, part))?.get(name).cloned())
    }

    /// Keeps the outcome `eval` gives for this resource, and returns it.
    pub(crate) fn put(&self, feature: Feature, part: Part, name: &str, eval: impl FnOnce() -> Outcome) -> Arc<Outcome> {
        let outcome = Arc::new(eval());
        if let Ok(mut map) = self.map.lock() {
            if map.values().map(HashMap::len).sum::<usize>() >= MAX_OUTCOMES {
                map.clear();
            }
            map.entry((feature, part)).or_default().insert(name.to_owned(), Arc::clone(&outcome));
        }
        outcome
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.lock().map(|m| m.values().map(HashMap::len).sum()).unwrap_or(usize::MAX)
    }
}

/// A principal, or why every request of this identity is denied (no subject, too many groups).
pub(crate) type Built = Result<Principal, String>;

struct Entry {
    /// Keeps the key's allocation reserved; dead once the identity is dropped.
    identity: Weak<Identity>,
    principal: Arc<Built>,
}

/// Principals by identity, at most [`MAX_PRINCIPALS`] (fewer with a large static store).
pub(crate) struct PrincipalCache {
    map: Mutex<HashMap<usize, Entry>>,
    capacity: usize,
}

impl Default for PrincipalCache {
    fn default() -> Self {
        PrincipalCache::for_store(0)
    }
}

fn key(who: &Arc<Identity>) -> usize {
    Arc::as_ptr(who) as usize
}

impl PrincipalCache {
    /// A cache whose principals each hold a store of `static_entities` entities (plus their own).
    pub(crate) fn for_store(static_entities: usize) -> PrincipalCache {
        let capacity = (MAX_STORE_ENTRIES / static_entities.saturating_add(2)).clamp(1, MAX_PRINCIPALS);
        PrincipalCache { map: Mutex::new(HashMap::new()), capacity }
    }

    /// The principal of `who`, built by `build` on the first request of this identity.
    pub(crate) fn get_or_build(&self, who: &Arc<Identity>, build: impl FnOnce(&Identity) -> Built) -> Arc<Built> {
        if let Some(found) = self.get(who) {
            return found;
        }
        // Built outside the lock: two first requests of one identity may both build it; the
        // results are equal and the last one stays.
        let built = Arc::new(build(who));
        self.put(who, Arc::clone(&built));
        built
    }

    fn get(&self, who: &Arc<Identity>) -> Option<Arc<Built>> {
        let map = self.map.lock().ok()?;
        let entry = map.get(&key(who))?;
        // The entry's `Weak` has kept this allocation reserved since it was built for `who`, so
        // the same address is the same identity; checked anyway, as it costs nothing.
        std::ptr::eq(entry.identity.as_ptr(), Arc::as_ptr(who)).then(|| Arc::clone(&entry.principal))
    }

    fn put(&self, who: &Arc<Identity>, principal: Arc<Built>) {
        let Ok(mut map) = self.map.lock() else { return };
        let key = key(who);
        if map.len() >= self.capacity && !map.contains_key(&key) {
            map.retain(|_, e| e.identity.strong_count() > 0);
            if map.len() >= self.capacity {
                map.clear();
            }
        }
        map.insert(key, Entry { identity: Arc::downgrade(who), principal });
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::authz::{Authorizer, Feature, Target};
    use crate::identity::IdentityKind;
    use serde_json::{Value, json};

    fn authorizer() -> Authorizer {
        let doc = json!({"version": "1.0", "type": "cedarv1", "cedar": {"policies": [
            r#"permit(principal in THVGroup::"eng", action == Action::"call_tool", resource == Tool::"echo");"#,
            r#"forbid(principal, action, resource) when { principal has claim_suspended && principal.claim_suspended };"#,
        ], "entities_json": "[]"}});
        Authorizer::from_value(&doc, "test").unwrap()
    }

    fn identity(sub: &str, claims: Value) -> Arc<Identity> {
        let claims = claims.as_object().cloned().unwrap();
        Arc::new(Identity { subject: sub.to_owned(), claims, kind: IdentityKind::Jwt })
    }

    fn echo() -> Target<'static> {
        Target::new(Feature::Tool, "echo")
    }

    #[test]
    fn a_principal_is_built_once_per_identity_and_reused() {
        let authz = authorizer();
        let alice = identity("alice", json!({"groups": ["eng"]}));
        assert!(authz.authorize_shared(&alice, &echo()).allowed);
        let first = authz.principals.get(&alice).unwrap();
        assert!(authz.authorize_shared(&alice, &echo()).allowed);
        assert!(Arc::ptr_eq(&first, &authz.principals.get(&alice).unwrap()), "the second request reuses it");
        assert_eq!(authz.principals.len(), 1);
    }

    #[test]
    fn two_identities_never_share_an_entry() {
        let authz = authorizer();
        // Same subject, different claims: each is decided on its own claims.
        let member = identity("alice", json!({"groups": ["eng"]}));
        let suspended = identity("alice", json!({"groups": ["eng"], "suspended": true}));
        let outsider = identity("alice", json!({}));
        for _ in 0..2 {
            assert!(authz.authorize_shared(&member, &echo()).allowed);
            assert!(!authz.authorize_shared(&suspended, &echo()).allowed);
            assert!(!authz.authorize_shared(&outsider, &echo()).allowed);
        }
        // Equal contents, two allocations: two entries.
        let twin = identity("alice", json!({"groups": ["eng"]}));
        assert!(authz.authorize_shared(&twin, &echo()).allowed);
        assert_eq!(authz.principals.len(), 4);
    }

    #[test]
    fn a_new_identity_is_never_served_a_dropped_ones_principal() {
        // Identities come and go (a token expires, the next one names other groups); the
        // allocator would readily reuse a freed address, which the entry's `Weak` prevents.
        let authz = authorizer();
        for i in 0..200 {
            let groups = if i % 2 == 0 { json!(["eng"]) } else { json!(["ops"]) };
            let who = identity("alice", json!({"groups": groups}));
            let shared = authz.authorize_shared(&who, &echo());
            assert_eq!(shared, authz.authorize(&who, &echo()), "request {i}");
            assert_eq!(shared.allowed, i % 2 == 0, "request {i}");
            drop(who);
        }
    }

    #[test]
    fn the_table_stays_bounded_and_keeps_live_identities_first() {
        let authz = authorizer();
        let kept = identity("kept", json!({"groups": ["eng"]}));
        assert!(authz.authorize_shared(&kept, &echo()).allowed);
        // Dropped identities fill the table, then are forgotten before the live one.
        for i in 0..(MAX_PRINCIPALS + 10) {
            let who = identity(&format!("u{i}"), json!({}));
            assert!(!authz.authorize_shared(&who, &echo()).allowed);
            assert!(authz.principals.len() <= MAX_PRINCIPALS);
        }
        assert!(authz.principals.get(&kept).is_some(), "a live identity outlasts dead ones");
        // Live identities alone past the bound: the table is emptied rather than grown.
        let live: Vec<_> = (0..(MAX_PRINCIPALS + 10)).map(|i| identity(&format!("l{i}"), json!({}))).collect();
        for who in &live {
            assert!(!authz.authorize_shared(who, &echo()).allowed);
            assert!(authz.principals.len() <= MAX_PRINCIPALS);
        }
        assert!(authz.authorize_shared(&kept, &echo()).allowed);
    }

    #[test]
    fn a_refused_identity_stays_refused() {
        let authz = authorizer();
        let nobody = identity("", json!({"groups": ["eng"]}));
        for _ in 0..2 {
            let d = authz.authorize_shared(&nobody, &echo());
            assert!(!d.allowed);
            assert_eq!(d.errors, ["the caller has no subject"]);
        }
    }

    #[test]
    fn per_caller_outcomes_are_kept_per_resource_and_bounded() {
        let authz = authorizer();
        let alice = identity("alice", json!({"groups": ["eng"]}));
        // The group permit is per caller; `echo` allowed, `other` not, each remembered apart.
        for _ in 0..2 {
            assert!(authz.authorize_shared(&alice, &echo()).allowed);
            assert!(!authz.authorize_shared(&alice, &Target::new(Feature::Tool, "other")).allowed);
            assert!(!authz.authorize_shared(&alice, &Target::new(Feature::Prompt, "echo")).allowed);
        }
        let principal = authz.principals.get(&alice).unwrap();
        let Ok(p) = principal.as_ref() else { panic!("alice has a principal") };
        assert_eq!(p.outcomes.len(), 3);
        for i in 0..(MAX_OUTCOMES + 10) {
            let name = format!("t{i}");
            assert!(!authz.authorize_shared(&alice, &Target::new(Feature::Tool, &name)).allowed);
            assert!(p.outcomes.len() <= MAX_OUTCOMES);
        }
        assert!(authz.authorize_shared(&alice, &echo()).allowed);
    }

    #[test]
    fn a_per_request_forbid_still_overrides_a_remembered_permit() {
        let doc = json!({"version": "1.0", "type": "cedarv1", "cedar": {"policies": [
            r#"permit(principal in THVGroup::"eng", action == Action::"call_tool", resource == Tool::"echo");"#,
            r#"forbid(principal, action, resource) when { resource has arg_text && resource.arg_text == "no" };"#,
        ], "entities_json": "[]"}});
        let authz = Authorizer::from_value(&doc, "test").unwrap();
        let alice = identity("alice", json!({"groups": ["eng"]}));
        let no = json!({"text": "no"}).as_object().cloned().unwrap();
        let yes = json!({"text": "yes"}).as_object().cloned().unwrap();
        let call = |args| Target { feature: Feature::Tool, name: "echo", arguments: Some(args), annotations: None };
        for _ in 0..2 {
            assert!(authz.authorize_shared(&alice, &call(&yes)).allowed);
            let denied = authz.authorize_shared(&alice, &call(&no));
            assert!(!denied.allowed);
            assert_eq!(denied.policies, ["policy1"]);
        }
    }

    #[test]
    fn per_tool_outcomes_are_kept_per_annotations_and_caller() {
        // The readOnlyHint permit reads the resource but no argument: kept per annotations.
        let doc = json!({"version": "1.0", "type": "cedarv1", "cedar": {"policies": [
            r#"permit(principal in THVGroup::"eng", action == Action::"call_tool", resource) when { resource has readOnlyHint && resource.readOnlyHint };"#,
            r#"forbid(principal, action, resource) when { resource has arg_text && resource.arg_text == "no" };"#,
        ], "entities_json": "[]"}});
        let authz = Authorizer::from_value(&doc, "test").unwrap();
        let hints = |v: Value| v.as_object().cloned().unwrap();
        let (read_only, writes, no_hint) =
            (hints(json!({"readOnlyHint": true})), hints(json!({"readOnlyHint": false})), hints(json!({})));
        let no = hints(json!({"text": "no"}));
        let call = |annotations, arguments| Target { feature: Feature::Tool, name: "echo", arguments, annotations };
        let alice = identity("alice", json!({"groups": ["eng"]}));
        let bob = identity("bob", json!({}));
        for _ in 0..2 {
            assert!(authz.authorize_shared(&alice, &call(Some(&read_only), None)).allowed);
            assert!(!authz.authorize_shared(&alice, &call(Some(&writes), None)).allowed);
            assert!(!authz.authorize_shared(&alice, &call(Some(&no_hint), None)).allowed);
            assert!(!authz.authorize_shared(&alice, &call(None, None)).allowed);
            // A remembered permit never outlives a per-request forbid.
            assert_eq!(authz.authorize_shared(&alice, &call(Some(&read_only), Some(&no))).policies, ["policy1"]);
            // Another caller is decided on its own claims.
            assert!(!authz.authorize_shared(&bob, &call(Some(&read_only), None)).allowed);
        }
        let principal = authz.principals.get(&alice).unwrap();
        let Ok(p) = principal.as_ref() else { panic!("alice has a principal") };
        assert_eq!(p.outcomes.len(), 3, "read-only, not read-only, no hint (absent and empty are one)");
        for i in 0..(MAX_OUTCOMES + 10) {
            let name = format!("t{i}");
            let target = Target { feature: Feature::Tool, name: &name, arguments: None, annotations: Some(&read_only) };
            assert!(authz.authorize_shared(&alice, &target).allowed);
            assert!(p.outcomes.len() <= MAX_OUTCOMES);
        }
    }

    #[test]
    fn a_large_static_store_means_fewer_principals() {
        assert_eq!(PrincipalCache::default().capacity, MAX_PRINCIPALS);
        assert_eq!(PrincipalCache::for_store(100).capacity, MAX_PRINCIPALS);
        let big = PrincipalCache::for_store(20_000);
        assert!(big.capacity < MAX_PRINCIPALS && big.capacity * 20_002 <= MAX_STORE_ENTRIES);
        assert_eq!(PrincipalCache::for_store(usize::MAX).capacity, 1);
    }
}
