//! What the policies can observe, worked out once at load so each decision builds only that:
//! the attribute names they read, whether they use `context` as a whole value, and which policies
//! can apply to each action at all.
//!
//! An entity attribute is visible to a policy only through `e.name`, `e["name"]` or `e has name`
//! (entities compare by uid, never by attributes), so an attribute no policy names cannot change a
//! decision and need not be built. `context` is a record, and a record can be compared whole
//! (`context == {..}`): a policy that uses `context` other than through `.`/`has` gets all of it.
//! The names come from each policy's JSON form (Cedar's EST), where string escapes are already
//! resolved, so `principal["cl\u{61}im_x"]` counts as `claim_x`. If a policy has no JSON form,
//! every attribute counts as read.

use std::collections::{HashMap, HashSet};

use cedar_policy::{
    ActionConstraint, EntityTypeName, EntityUid, Policy, PolicySet, PrincipalConstraint, ResourceConstraint,
};
use serde_json::Value;

use super::direct::Direct;

/// The attribute names the policies read, over all entities and the context.
#[derive(Debug, Default)]
pub(crate) struct Usage {
    names: HashSet<String>,
    /// The names read from `context` (`context.x`, `context has x`): a subset of `names`.
    context_names: HashSet<String>,
    /// Some policy could not be analysed: treat every attribute as read.
    all: bool,
    /// Some policy uses `context` as a value (not only `context.x` / `context has x`).
    context_whole: bool,
}

impl Usage {
    /// Scans every policy of the set.
    pub(crate) fn of(policies: &PolicySet) -> Usage {
        let mut usage = Usage::default();
        for policy in policies.policies() {
            match policy.to_json() {
                Ok(est) => {
                    let mut context = ContextUse::default();
                    walk(&est, &mut usage.names, &mut usage.context_names, &mut context);
                    usage.context_whole |= context.total > context.through_attribute;
                }
                Err(_) => usage.all = true,
            }
        }
        usage
    }

    /// Builds every attribute, as the authorizer did before it looked (the names found stay, for
    /// [`Usage::names`]): for tests that compare decisions with and without the analysis.
    #[cfg(test)]
    pub(crate) fn build_everything(&mut self) {
        self.all = true;
        self.context_whole = true;
    }

    /// Whether some policy names this attribute (found in its JSON form; unlike [`Usage::reads`],
    /// never true merely because a policy could not be analysed).
    pub(crate) fn names(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// Whether some policy may read an attribute (of any entity, or of the context) by this name.
    pub(crate) fn reads(&self, name: &str) -> bool {
        self.all || self.names.contains(name)
    }

    /// Whether the context attribute `name` must be built: some policy reads it from `context`
    /// (reading `principal.claim_x` does not need `context.claim_x`).
    pub(crate) fn context_reads(&self, name: &str) -> bool {
        self.all || self.context_whole || self.context_names.contains(name)
    }

    /// Whether a claim or argument named so must be built, for an entity or the context.
    pub(crate) fn reads_anywhere(&self, name: &str) -> bool {
        self.reads(name) || self.context_reads(name)
    }
}

/// How often `context` appears, and how often as the left side of `.`/`has`.
#[derive(Default)]
struct ContextUse {
    total: usize,
    through_attribute: usize,
}

fn is_context(v: &Value) -> bool {
    v.get("Var").and_then(Value::as_str) == Some("context")
}

/// Collects the `attr` of every `.` and `has` node (a string, or a list for `has a.b.c`), and
/// apart those whose left side is `context`.
fn walk(v: &Value, names: &mut HashSet<String>, context_names: &mut HashSet<String>, context: &mut ContextUse) {
    match v {
        Value::Object(map) => {
            if is_context(v) {
                context.total += 1;
            }
            for key in [".", "has"] {
                let Some(node) = map.get(key) else { continue };
                let of_context = node.get("left").is_some_and(is_context);
                if of_context {
                    context.through_attribute += 1;
                }
                let found: Vec<&str> = match node.get("attr") {
                    Some(Value::String(s)) => vec![s.as_str()],
                    Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
                    _ => Vec::new(),
                };
                // `context has a.b`: only `a` is a context attribute (the rest are its fields),
                // but counting them all only builds more, never less.
                for name in found {
                    names.insert(name.to_owned());
                    if of_context {
                        context_names.insert(name.to_owned());
                    }
                }
            }
            map.values().for_each(|child| walk(child, names, context_names, context));
        }
        Value::Array(items) => items.iter().for_each(|child| walk(child, names, context_names, context)),
        _ => {}
    }
}

/// Most policy entries all per-resource sets of one feature may hold together; past it, every
/// request of the feature evaluates all its applicable policies (correct, only slower).
const MAX_INDEXED_ENTRIES: usize = 100_000;

/// The policies that can apply to one feature's requests (principal type, action, resource
/// type): a policy whose scope cannot match is false before its conditions run (the scope is
/// checked first and `&&` stops there), so leaving it out changes no decision, reason or error.
/// Policies naming one resource (`resource == Tool::"x"`) are further kept only for that resource.
/// Every set keeps the document's order, so errors come out in the same order.
pub(crate) struct Applicable {
    /// For a resource no `resource ==` names.
    general: Split,
    /// For each resource some `resource ==` names: the general policies plus those.
    by_resource: HashMap<EntityUid, Split>,
}

/// One resource's policies, split by what their conditions can see.
pub(crate) struct Split {
    /// Every applicable policy, in order: for a decision whose caller is not seen again.
    pub all: PolicySet,
    /// Conditions that may read the request's arguments or the context: evaluated per request.
    pub per_request: PolicySet,
    /// Conditions that may read the resource's attributes, but none of its `arg_*` ones, nor the
    /// context: for one caller, one resource and one set of tool annotations (the only attributes
    /// that are neither fixed by the resource's uid nor arguments), their outcome never changes.
    pub per_tool: PolicySet,
    /// Conditions that read only the principal, the action, literals and static entities: for one
    /// caller and one resource, their outcome never changes (see `outcome`).
    pub per_caller: PolicySet,
    pub has_per_request: bool,
    pub has_per_tool: bool,
    pub has_per_caller: bool,
    /// Every per-request policy looks at no entity but the resource (see
    /// [`sees_only_the_resource`]): they may be evaluated against a store holding it alone.
    pub per_request_sees_only_the_resource: bool,
    /// The per-request policies compiled for evaluation without Cedar, when they look at the
    /// resource alone and are all in `direct`'s subset.
    pub direct: Option<Direct>,
}

impl Applicable {
    /// `resource_types`: every resource type (`Tool`, `Prompt`, `Resource`), whose literals in a
    /// condition may name the request's own resource and read its attributes.
    pub(crate) fn build(
        policies: &PolicySet,
        principal_type: &EntityTypeName,
        action: &EntityUid,
        resource_type: &EntityTypeName,
        resource_types: &[String],
    ) -> Applicable {
        let candidates: Vec<&Policy> =
            policies.policies().filter(|p| can_apply(p, principal_type, action, resource_type)).collect();
        let named = |p: &Policy| match p.resource_constraint() {
            ResourceConstraint::Eq(uid) => Some(uid),
            _ => None,
        };
        let general_count = candidates.iter().filter(|p| named(p).is_none()).count();
        let mut names: Vec<EntityUid> = Vec::new();
        for uid in candidates.iter().filter_map(|p| named(p)) {
            if !names.contains(&uid) {
                names.push(uid);
            }
        }
        let entries = names.len().saturating_mul(general_count).saturating_add(candidates.len());
        if entries > MAX_INDEXED_ENTRIES {
            return Applicable { general: split(&candidates, |_| true, resource_types), by_resource: HashMap::new() };
        }
        let general = split(&candidates, |p| named(p).is_none(), resource_types);
        let by_resource = names
            .into_iter()
            .map(|uid| {
                let set = split(&candidates, |p| named(p).is_none_or(|n| n == uid), resource_types);
                (uid, set)
            })
            .collect();
        Applicable { general, by_resource }
    }

    /// The policies to evaluate for this resource.
    pub(crate) fn for_resource(&self, resource: &EntityUid) -> &Split {
        self.by_resource.get(resource).unwrap_or(&self.general)
    }
}

/// The candidates `keep` accepts, in order, split by [`reads_only_the_caller`] and
/// [`reads_request_data`]. Ids are unique in the document, so `add` cannot fail.
fn split(candidates: &[&Policy], keep: impl Fn(&Policy) -> bool, resource_types: &[String]) -> Split {
    let mut all = PolicySet::new();
    let mut per_request = PolicySet::new();
    let mut per_tool = PolicySet::new();
    let mut per_caller = PolicySet::new();
    let (mut has_per_request, mut has_per_tool, mut has_per_caller) = (false, false, false);
    let mut only_the_resource = true;
    for policy in candidates.iter().filter(|p| keep(p)) {
        let _ = all.add((*policy).clone());
        if reads_only_the_caller(policy, resource_types) {
            has_per_caller = true;
            let _ = per_caller.add((*policy).clone());
        } else if reads_request_data(policy) {
            has_per_request = true;
            only_the_resource &= sees_only_the_resource(policy);
            let _ = per_request.add((*policy).clone());
        } else {
            has_per_tool = true;
            let _ = per_tool.add((*policy).clone());
        }
    }
    let direct = if has_per_request && only_the_resource { Direct::compile(&per_request) } else { None };
    Split {
        direct,
        all,
        per_request,
        per_tool,
        per_caller,
        has_per_request,
        has_per_tool,
        has_per_caller,
        per_request_sees_only_the_resource: only_the_resource,
    }
}

/// Whether a policy's evaluation looks up no entity in the store but the request's resource:
/// its scope compares the principal and action by uid or type only (no `in`), and so the
/// resource (no `in`: its ancestors are not needed); its conditions name neither `principal`
/// nor `action`, no entity literal and no `in`, so the only entity they can reach is `resource`
/// (a request's attributes and context hold no entity references; a resource that shares its
/// uid with a static entity, whose attributes might, is never evaluated alone). A policy with
/// no JSON form is taken to look everywhere.
pub(crate) fn sees_only_the_resource(policy: &Policy) -> bool {
    fn reaches_further(v: &Value) -> bool {
        match v {
            Value::Object(map) => {
                let var = map.get("Var").and_then(Value::as_str);
                if var.is_some_and(|var| var == "principal" || var == "action")
                    || map.contains_key("__entity")
                    || map.contains_key("in")
                {
                    return true;
                }
                map.values().any(reaches_further)
            }
            Value::Array(items) => items.iter().any(reaches_further),
            _ => false,
        }
    }
    let scope = matches!(
        policy.principal_constraint(),
        PrincipalConstraint::Any | PrincipalConstraint::Eq(_) | PrincipalConstraint::Is(_)
    ) && matches!(policy.action_constraint(), ActionConstraint::Any | ActionConstraint::Eq(_))
        && matches!(
            policy.resource_constraint(),
            ResourceConstraint::Any | ResourceConstraint::Eq(_) | ResourceConstraint::Is(_)
        );
    scope && policy.to_json().is_ok_and(|est| est.get("conditions").is_none_or(|c| !reaches_further(c)))
}

/// Whether a policy may see what changes from one request to the next of the same caller on the
/// same resource with the same annotations: an `arg_*` attribute (of any entity, as a literal of
/// the request's resource's uid reads the request's own), or the context (which holds only
/// claims and arguments, but may be used whole). Attribute names are always literal in Cedar
/// (`.x`, `["x"]`, `has x`), so the JSON form shows every name a policy can read; request entities
/// carry no tags. A policy with no JSON form is taken to see everything.
pub(crate) fn reads_request_data(policy: &Policy) -> bool {
    fn sees(v: &Value) -> bool {
        match v {
            Value::Object(map) => {
                if is_context(v) {
                    return true;
                }
                for key in [".", "has"] {
                    let names = map.get(key).and_then(|node| node.get("attr"));
                    let arg = |name: &Value| name.as_str().is_some_and(|n| n.starts_with("arg_"));
                    let found = match names {
                        Some(Value::Array(items)) => items.iter().any(arg),
                        Some(name) => arg(name),
                        None => false,
                    };
                    if found {
                        return true;
                    }
                }
                map.values().any(sees)
            }
            Value::Array(items) => items.iter().any(sees),
            _ => false,
        }
    }
    policy.to_json().map_or(true, |est| sees(&est))
}

/// Whether a policy's outcome is fixed by the caller and the resource's uid: its conditions
/// never use `resource` or `context` and name no entity of a resource type (which could be the
/// request's own resource, read through the literal). The scope may name anything: the
/// resource's uid and ancestors (static parents, the server) do not change between requests.
/// A policy with no JSON form is taken to read everything.
pub(crate) fn reads_only_the_caller(policy: &Policy, resource_types: &[String]) -> bool {
    fn sees_the_request(v: &Value, resource_types: &[String]) -> bool {
        match v {
            Value::Object(map) => {
                if map.get("Var").and_then(Value::as_str).is_some_and(|var| var == "resource" || var == "context") {
                    return true;
                }
                let entity_type = map.get("__entity").and_then(|e| e.get("type")).and_then(Value::as_str);
                if entity_type.is_some_and(|t| resource_types.iter().any(|r| r == t)) {
                    return true;
                }
                map.values().any(|child| sees_the_request(child, resource_types))
            }
            Value::Array(items) => items.iter().any(|child| sees_the_request(child, resource_types)),
            _ => false,
        }
    }
    match policy.to_json() {
        Ok(est) => est.get("conditions").is_none_or(|c| !sees_the_request(c, resource_types)),
        Err(_) => false,
    }
}

fn can_apply(
    policy: &Policy,
    principal_type: &EntityTypeName,
    action: &EntityUid,
    resource_type: &EntityTypeName,
) -> bool {
    let principal = match policy.principal_constraint() {
        PrincipalConstraint::Any | PrincipalConstraint::In(_) => true,
        PrincipalConstraint::Eq(uid) => uid.type_name() == principal_type,
        PrincipalConstraint::Is(t) | PrincipalConstraint::IsIn(t, _) => &t == principal_type,
    };
    let action = match policy.action_constraint() {
        // `action in [..]` may hold through a hierarchy from `entities_json`: kept.
        ActionConstraint::Any | ActionConstraint::In(_) => true,
        ActionConstraint::Eq(uid) => &uid == action,
    };
    let resource = match policy.resource_constraint() {
        ResourceConstraint::Any | ResourceConstraint::In(_) => true,
        ResourceConstraint::Eq(uid) => uid.type_name() == resource_type,
        ResourceConstraint::Is(t) | ResourceConstraint::IsIn(t, _) => &t == resource_type,
    };
    principal && action && resource
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn set(texts: &[&str]) -> PolicySet {
        let mut set = PolicySet::new();
        for (i, t) in texts.iter().enumerate() {
            set.add(Policy::parse(Some(cedar_policy::PolicyId::new(format!("policy{i}"))), *t).unwrap()).unwrap();
        }
        set
    }

    #[test]
    fn finds_attribute_names_in_every_form() {
        let usage = Usage::of(&set(&[
            r#"permit(principal, action, resource) when { principal.claim_a == "x" && resource has arg_b };"#,
            r#"permit(principal, action, resource) when { principal["cl\u{61}im_c"] == 1 };"#,
            r#"permit(principal, action, resource) when { context has claim_d.inner && context.arg_e };"#,
        ]));
        for name in ["claim_a", "arg_b", "claim_c", "claim_d", "inner", "arg_e"] {
            assert!(usage.reads(name), "{name}");
        }
        assert!(!usage.reads("claim_z"));
        assert!(!usage.context_whole);
        assert!(!usage.context_reads("claim_z"));
    }

    #[test]
    fn context_used_whole_reads_every_context_name() {
        let usage = Usage::of(&set(&[r#"forbid(principal, action, resource) when { context == {} };"#]));
        assert!(usage.context_whole);
        assert!(usage.context_reads("claim_anything"));
        assert!(!usage.reads("claim_anything"));
    }

    #[test]
    fn subsets_keep_only_policies_whose_scope_can_match() {
        let policies = set(&[
            r#"permit(principal, action == Action::"call_tool", resource == Tool::"a");"#,
            r#"permit(principal, action == Action::"get_prompt", resource);"#,
            r#"permit(principal, action in [Action::"get_prompt"], resource);"#,
            r#"permit(principal, action, resource is Prompt);"#,
            r#"permit(principal == User::"x", action, resource);"#,
            r#"forbid(principal, action, resource in MCP::"s");"#,
            r#"forbid(principal, action, resource == Tool::"b");"#,
            r#"forbid(principal, action, resource == Prompt::"a");"#,
        ]);
        let client: EntityTypeName = "Client".parse().unwrap();
        let tool: EntityTypeName = "Tool".parse().unwrap();
        let call: EntityUid = r#"Action::"call_tool""#.parse().unwrap();
        let applicable = Applicable::build(&policies, &client, &call, &tool, &["Tool".to_owned()]);
        let ids = |uid: &str| {
            let split = applicable.for_resource(&uid.parse().unwrap());
            assert!(!split.has_per_request && !split.has_per_tool, "no conditions: every outcome is the caller's");
            let all: Vec<String> = split.all.policies().map(|p| p.id().to_string()).collect();
            let per_caller: Vec<String> = split.per_caller.policies().map(|p| p.id().to_string()).collect();
            assert_eq!(all, per_caller);
            all
        };
        // Document order kept: the same order of errors as with the whole set.
        assert_eq!(ids(r#"Tool::"a""#), ["policy0", "policy2", "policy5"]);
        assert_eq!(ids(r#"Tool::"b""#), ["policy2", "policy5", "policy6"]);
        assert_eq!(ids(r#"Tool::"other""#), ["policy2", "policy5"]);
    }

    #[test]
    fn only_conditions_blind_to_the_request_are_per_caller() {
        let types = ["Tool".to_owned(), "Prompt".to_owned(), "Resource".to_owned()];
        let per_caller = |text: &str| {
            let policy = Policy::parse(None, text).unwrap();
            reads_only_the_caller(&policy, &types)
        };
        assert!(per_caller(r#"permit(principal in G::"a", action, resource == Tool::"x");"#));
        assert!(per_caller(r#"permit(principal, action, resource in MCP::"s") when { principal.claim_r == "x" };"#));
        assert!(per_caller(
            r#"forbid(principal, action, resource) when { principal in G::"b" && action == Action::"c" };"#
        ));
        assert!(per_caller(r#"permit(principal, action, resource) when { G::"a".level > 3 };"#));
        assert!(!per_caller(r#"permit(principal, action, resource) when { resource.arg_x == 1 };"#));
        assert!(!per_caller(r#"permit(principal, action, resource) when { resource is Tool };"#));
        assert!(!per_caller(r#"permit(principal, action, resource) when { context.claim_r == "x" };"#));
        assert!(!per_caller(r#"permit(principal, action, resource) unless { context == {} };"#));
        // The request's resource read through a literal of its uid.
        assert!(!per_caller(r#"permit(principal, action, resource) when { Tool::"echo".arg_x == 1 };"#));
        assert!(!per_caller(r#"permit(principal, action, resource) when { [Prompt::"p"].contains(principal.x) };"#));
    }

    #[test]
    fn policies_that_look_at_the_resource_alone() {
        let alone = |text: &str| sees_only_the_resource(&Policy::parse(None, text).unwrap());
        assert!(alone(
            r#"forbid(principal, action == Action::"c", resource == Tool::"e") when { resource has arg_t && resource.arg_t == "x" };"#
        ));
        assert!(alone(r#"permit(principal is Client, action, resource is Tool) when { context.arg_n > 3 };"#));
        assert!(alone(r#"permit(principal == Client::"a", action, resource) unless { resource.arg_x like "*a*" };"#));
        assert!(!alone(r#"permit(principal in G::"g", action, resource) when { resource.arg_x == 1 };"#));
        assert!(!alone(r#"permit(principal, action in [Action::"c"], resource) when { resource.arg_x == 1 };"#));
        assert!(!alone(r#"permit(principal, action, resource in MCP::"s") when { resource.arg_x == 1 };"#));
        assert!(!alone(r#"permit(principal, action, resource) when { principal.claim_a == resource.arg_x };"#));
        assert!(!alone(r#"permit(principal, action, resource) when { action.operation == resource.arg_x };"#));
        assert!(!alone(r#"permit(principal, action, resource) when { Tool::"o".owner == resource.arg_x };"#));
        assert!(!alone(r#"permit(principal, action, resource) when { resource in context.arg_x };"#));
        assert!(!alone(r#"permit(principal, action, resource) when { resource is Tool in context.arg_x };"#));
    }

    #[test]
    fn only_arguments_and_the_context_are_request_data() {
        let per_request = |text: &str| reads_request_data(&Policy::parse(None, text).unwrap());
        assert!(!per_request(
            r#"permit(principal, action, resource) when { resource has readOnlyHint && resource.readOnlyHint };"#
        ));
        assert!(!per_request(
            r#"permit(principal, action, resource) when { resource.name == "x" && resource.uri like "f*" };"#
        ));
        assert!(!per_request(
            r#"permit(principal, action, resource == Tool::"o") when { resource.owner == principal.claim_e };"#
        ));
        assert!(!per_request(r#"permit(principal, action, resource) when { principal.claim_arg_x == 1 };"#));
        assert!(per_request(r#"permit(principal, action, resource) when { resource.arg_x == 1 };"#));
        assert!(per_request(r#"permit(principal, action, resource) when { resource["arg_x"] == 1 };"#));
        assert!(per_request(r#"permit(principal, action, resource) when { resource has arg_list_present };"#));
        assert!(per_request(r#"permit(principal, action, resource) when { resource has arg_r.inner };"#));
        assert!(per_request(r#"permit(principal, action, resource) when { Tool::"echo".arg_x == 1 };"#));
        assert!(per_request(r#"permit(principal, action, resource) when { principal.arg_x == 1 };"#));
        assert!(per_request(r#"permit(principal, action, resource) when { context.claim_r == "x" };"#));
        assert!(per_request(r#"permit(principal, action, resource) unless { context == {} };"#));
    }
}
