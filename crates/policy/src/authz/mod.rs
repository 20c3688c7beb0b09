//! What a caller may do: Cedar policies in ToolHive's `cedarv1` document, evaluated per request
//! with ToolHive's entity model, so a ToolHive user's authz file works unchanged.
//!
//! Document (JSON or YAML): `{"version":"1.0","type":"cedarv1","cedar":{"policies":[..],
//! "entities_json":"[..]","group_claim_name":..,"role_claim_name":..,"group_entity_type":..,
//! "multi_valued_claims":[..],"primary_upstream_provider":..}}`. `httpv1` and other types are
//! refused; an empty policy list is refused (as ToolHive does); unknown keys are ignored with a
//! warning (logged once at load and kept in [`Authorizer::warnings`]); `primary_upstream_provider`
//! is accepted and ignored, as Apiary has no upstream tokens to read claims from.
//!
//! Entity model, per decision:
//! - principal `Client::"<subject>"`, attributes `claim_<name>` for each claim (and
//!   `claimset_<name>` for `multi_valued_claims`), parents `<group_entity_type>::"<g>"` for each
//!   group (group claim, else `groups`/`roles`/`cognito:groups`; plus the role claim);
//! - action `Action::"call_tool" | "get_prompt" | "read_resource"` (attribute `operation`);
//! - resource `Tool::"<name>"`, `Prompt::"<name>"` or `Resource::"<exact uri>"`, attributes
//!   `name`, `operation`, `feature` (and `uri` for resources), `arg_<name>` per argument, the
//!   tool's boolean annotations, parent `MCP::"<server>"` when a server name is set;
//! - context: the `claim_*`, `claimset_*` and `arg_*` values again (those some policy reads from
//!   `context`).
//!
//! Values: strings, booleans and 64-bit integers as themselves; other numbers as Cedar decimals
//! (four places; ToolHive makes every number a decimal, Apiary keeps integers as `Long` so
//! `resource.arg_count < 10` works); lists as sets; objects as records (claims only, nested at
//! most [`MAX_DEPTH`]); null is left out. An argument that is null, a list or an object becomes `arg_<name>_present`
//! (true), as in ToolHive. Bounds ([`MAX_ATTRIBUTES`], [`MAX_STRING_BYTES`], ..) keep one
//! decision's cost fixed; a value over a bound is left out whole, and when any policy's text
//! names a left-out attribute the request is denied rather than evaluated without it. A token
//! with more than [`MAX_GROUPS`] groups and roles is denied outright.
//!
//! Cost: at load, the policies are scanned (`analysis`) for the attribute names they read and
//! split by the action and resource their scope can match; per decision only read attributes are
//! built (the others are still measured against the bounds) and only matching policies run.
//! Neither changes a decision: an unread attribute is invisible and an unmatched scope is false
//! before any condition runs. [`Authorizer::authorize_shared`] also keeps, per identity, the
//! caller's part (claims, groups, the store with the principal) and the outcome of the policies
//! whose conditions see only the caller, per resource, and of those that also see the resource's
//! attributes but no argument nor the context, per resource and tool annotations
//! (`analysis::Split`): only the policies that can read arguments or the context are evaluated
//! per request, and when those look at the resource alone and compare its (or the context's)
//! attributes with literals, `direct` evaluates them without Cedar's per-request entity store
//! (falling back to Cedar on any error or construct outside its subset).
//!
//! Decision: any `forbid` → deny; else any `permit` → allow; else deny. Cedar skips a policy whose
//! evaluation errors (a missing attribute, a type mismatch); here any such error denies the
//! request (as in ToolHive), and is reported in [`Decision::errors`]. Write `has` guards
//! (`principal has claim_roles && ..`) for claims some callers lack.

mod analysis;
mod attributes;
mod config;
mod direct;
mod entities;
#[cfg(test)]
mod equivalence;
mod error;
mod outcome;
mod policies;
mod principal;
mod values;

use std::collections::HashMap;
use std::sync::Arc;

use cedar_policy::{Context, Entities, EntityTypeName, EntityUid, PolicySet, Request, RestrictedExpression};
use serde_json::{Map, Value};

use crate::Identity;
use analysis::{Applicable, Usage};
use attributes::{Attr, Attributes, ClaimRules};
use entities::{RequestEntity, StaticEntities, uid};
use outcome::Outcome;
use principal::PrincipalCache;
use values::Simple;

pub use attributes::MAX_GROUPS;
pub use config::{DEFAULT_GROUP_ENTITY_TYPE, MAX_DOCUMENT_BYTES};
pub use error::AuthzConfigError;
pub use policies::policy_id;
pub use values::{MAX_ATTRIBUTES, MAX_DEPTH, MAX_ELEMENTS, MAX_NODES, MAX_STRING_BYTES, MAX_TOTAL_BYTES};

#[cfg(test)]
thread_local! {
    /// Decisions made on this thread without Cedar (`Authorizer::decide_kept`): lets tests check
    /// that the way they mean to exercise is taken.
    static DIRECT_DECISIONS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The kind of MCP capability a request touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Feature {
    Tool,
    Prompt,
    Resource,
}

impl Feature {
    /// ToolHive's action, resource type, operation and feature names.
    fn names(self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            Feature::Tool => ("call_tool", "Tool", "call", "tool"),
            Feature::Prompt => ("get_prompt", "Prompt", "get", "prompt"),
            Feature::Resource => ("read_resource", "Resource", "read", "resource"),
        }
    }

    const ALL: [Feature; 3] = [Feature::Tool, Feature::Prompt, Feature::Resource];
}

/// What a request wants to use.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub feature: Feature,
    /// Tool or prompt name, or the resource's exact URI.
    pub name: &'a str,
    /// `params.arguments` of a tools/call or prompts/get (an object), if any.
    pub arguments: Option<&'a Map<String, Value>>,
    /// The tool's `annotations` from the server's own tools/list (never from the client), if known.
    pub annotations: Option<&'a Map<String, Value>>,
}

impl<'a> Target<'a> {
    /// A target with no arguments or annotations.
    pub fn new(feature: Feature, name: &'a str) -> Target<'a> {
        Target { feature, name, arguments: None, annotations: None }
    }
}

/// The answer for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Ids of the policies that decided (`policy<index>`): the permits that allowed, the forbids
    /// that denied, or the policies whose errors denied. Empty for a default deny.
    pub policies: Vec<String>,
    /// Evaluation errors (an error denies).
    pub errors: Vec<String>,
}

impl Decision {
    fn deny_with(error: String) -> Decision {
        Decision { allowed: false, policies: Vec::new(), errors: vec![error] }
    }
}

/// Parsed policies and static entities, built once and shared (e.g. in an `Arc`).
pub struct Authorizer {
    policies: PolicySet,
    /// Per feature (and resource), the policies whose scope can match.
    applicable: HashMap<Feature, Applicable>,
    /// The attribute names the policies read: only those are built per decision.
    usage: Usage,
    entities: StaticEntities,
    /// Every policy's text, to tell whether a left-out attribute is named by some policy.
    policy_text: String,
    rules: ClaimRules,
    group_type: EntityTypeName,
    client_type: EntityTypeName,
    mcp_type: EntityTypeName,
    resource_types: HashMap<Feature, EntityTypeName>,
    actions: HashMap<Feature, EntityUid>,
    server: Option<EntityUid>,
    warnings: Vec<String>,
    cedar: cedar_policy::Authorizer,
    /// The caller's part of a decision, per identity (for [`Authorizer::authorize_shared`]).
    principals: PrincipalCache,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer")
            .field("policies", &self.policies.policies().count())
            .field("group_type", &self.group_type.to_string())
            .field("server", &self.server.as_ref().map(ToString::to_string))
            .finish_non_exhaustive()
    }
}

impl Authorizer {
    /// Parses and validates a document (JSON when it starts with `{`, else YAML); `origin` names
    /// it in errors (a file path or "authzConfig"). Errors point at the policy and the line inside
    /// it: `<origin>: policy 2, line 3, column 14: <cedar's reason>`; a JSON/YAML syntax error
    /// gives the document line.
    pub fn from_text(text: &str, origin: &str) -> Result<Authorizer, AuthzConfigError> {
        Self::from_value(&config::parse_text(text, origin)?, origin)
    }

    /// Like [`Authorizer::from_text`], for a document already parsed (e.g. RunConfig's `authz`).
    pub fn from_value(doc: &Value, origin: &str) -> Result<Authorizer, AuthzConfigError> {
        let options = config::read_document(doc, origin)?;
        let policies = policies::parse(&options.policies, origin)?;
        let type_name = |name: &str| {
            name.parse::<EntityTypeName>().map_err(|e| AuthzConfigError::Field {
                origin: origin.to_owned(),
                field: "cedar".to_owned(),
                message: format!("entity type {name:?}: {e}"),
            })
        };
        let action_type = type_name("Action")?;
        let mut resource_types = HashMap::new();
        let mut actions = HashMap::new();
        let mut action_entities = Vec::new();
        for feature in Feature::ALL {
            let (action, resource_type, ..) = feature.names();
            resource_types.insert(feature, type_name(resource_type)?);
            let action_uid = uid(&action_type, action);
            actions.insert(feature, action_uid.clone());
            action_entities.push(RequestEntity {
                uid: action_uid,
                attrs: vec![("operation".to_owned(), RestrictedExpression::new_string(action.to_owned()))],
                parents: Vec::new(),
            });
        }
        let entities = StaticEntities::build(&options.entities, action_entities, origin)?;
        let client_type = type_name("Client")?;
        let resource_type_names: Vec<String> = Feature::ALL.iter().map(|f| f.names().1.to_owned()).collect();
        let applicable = Feature::ALL
            .into_iter()
            .filter_map(|f| {
                let action = actions.get(&f)?;
                let applicable =
                    Applicable::build(&policies, &client_type, action, resource_types.get(&f)?, &resource_type_names);
                Some((f, applicable))
            })
            .collect();
        let usage = Usage::of(&policies);
        for warning in &options.warnings {
            tracing::warn!(origin, "{warning}");
        }
        let principals = PrincipalCache::for_store(entities.base().len());
        Ok(Authorizer {
            policies,
            applicable,
            usage,
            entities,
            policy_text: options.policies.join("\n"),
            rules: ClaimRules {
                group_claim_name: options.group_claim_name,
                role_claim_name: options.role_claim_name,
                multi_valued_claims: options.multi_valued_claims,
            },
            group_type: type_name(&options.group_entity_type)?,
            client_type,
            mcp_type: type_name("MCP")?,
            resource_types,
            actions,
            server: None,
            warnings: options.warnings,
            cedar: cedar_policy::Authorizer::new(),
            principals,
        })
    }

    /// Sets the server name: resources get parent `MCP::"<server>"`.
    pub fn with_server(mut self, name: &str) -> Authorizer {
        self.server = Some(uid(&self.mcp_type, name));
        self
    }

    /// What the document contained that is accepted but not acted on, for the caller to log.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Whether `who` may list the feature: always, as in ToolHive; the proxy filters the list
    /// item by item with [`Authorizer::authorize`].
    pub fn list_allowed(&self, _who: &Identity, _feature: Feature) -> bool {
        true
    }

    /// Decides one request. Never panics; anything that prevents a clean evaluation denies.
    pub fn authorize(&self, who: &Identity, what: &Target<'_>) -> Decision {
        self.decide(&self.principal(who), what, false)
    }

    /// Like [`Authorizer::authorize`], the caller's part (claims, groups, its entity) built once
    /// per identity and reused for its later requests (see `principal`): for a proxy, whose
    /// authenticator hands out one shared identity per verified token.
    pub fn authorize_shared(&self, who: &Arc<Identity>, what: &Target<'_>) -> Decision {
        let principal = self.principals.get_or_build(who, |who| self.principal(who));
        self.decide(&principal, what, true)
    }

    /// The caller's part of every decision, or why every request of this caller is denied.
    fn principal(&self, who: &Identity) -> principal::Built {
        if who.subject.is_empty() {
            return Err("the caller has no subject".to_owned());
        }
        // Only what some policy reads is built (see `analysis`); the rest is still measured
        // against the bounds, so budgets and left-out attributes are as if all were built.
        let reads = |name: &str| self.usage.reads(name);
        let context_reads = |name: &str| self.usage.context_reads(name);
        let anywhere = |name: &str| self.usage.reads_anywhere(name);
        let mut budget = values::Budget::new();
        let claims = attributes::claims(&who.claims, &self.rules, &mut budget, &anywhere);
        let groups = attributes::groups(&who.claims, &self.rules)?;
        let principal_uid = uid(&self.client_type, &who.subject);
        let attrs =
            claims.values.iter().filter(|(name, ..)| reads(name)).map(|(n, e, _)| (n.clone(), e.clone())).collect();
        let context = claims.values.into_iter().filter(|(name, ..)| context_reads(name)).collect();
        let parents = groups.iter().map(|g| uid(&self.group_type, g)).collect();
        let store = self
            .entities
            .entity(RequestEntity { uid: principal_uid.clone(), attrs, parents })
            .and_then(|entity| entities::with_entity(self.entities.base(), entity));
        Ok(principal::Principal {
            dropped: claims.dropped,
            context,
            budget,
            uid: principal_uid,
            store,
            outcomes: principal::Outcomes::default(),
        })
    }

    /// Decides one request of a caller whose part is built. `again`: the principal is kept for
    /// later requests, so the caller-only policies' outcome is worth keeping too; otherwise all
    /// applicable policies are evaluated in one pass.
    fn decide(&self, principal: &principal::Built, what: &Target<'_>, again: bool) -> Decision {
        let principal = match principal {
            Ok(p) => p,
            Err(e) => return Decision::deny_with(e.clone()),
        };
        let reads = |name: &str| self.usage.reads(name);
        let context_reads = |name: &str| self.usage.context_reads(name);
        let anywhere = |name: &str| self.usage.reads_anywhere(name);
        let mut budget = principal.budget.clone();

        let (_, _, operation, feature) = what.feature.names();
        let mut resource = Attributes::default();
        if what.feature == Feature::Tool {
            attributes::annotations(what.annotations, &reads, &mut resource);
        }
        let args_start = resource.values.len();
        attributes::arguments(what.arguments, &mut budget, &anywhere, &mut resource);
        let args: Vec<Attr> =
            resource.values[args_start..].iter().filter(|(name, ..)| context_reads(name)).cloned().collect();
        // Some may be built for the context only; the resource keeps the ones policies read.
        let mut index = 0;
        resource.values.retain(|(name, ..)| {
            index += 1;
            index <= args_start || reads(name)
        });
        let mut fixed = vec![("name", what.name), ("operation", operation), ("feature", feature)];
        if what.feature == Feature::Resource {
            fixed.push(("uri", what.name));
        }
        resource.values.extend(
            fixed.into_iter().filter(|(k, _)| reads(k)).map(|(k, v)| {
                (k.to_owned(), RestrictedExpression::new_string(v.to_owned()), Simple::Str(v.to_owned()))
            }),
        );

        // A left-out attribute a policy names could flip a `has` guard or skip a forbid: refuse.
        // The text check also catches a name only a string literal mentions; `usage` one a policy
        // spells with escapes (`["cl\u{61}im_x"]`).
        let named = |d: &&attributes::Dropped| self.policy_text.contains(&d.name) || self.usage.names(&d.name);
        if let Some(d) = principal.dropped.iter().chain(&resource.dropped).find(named) {
            return Decision::deny_with(format!(
                "attribute {} was left out ({}) and a policy names it",
                d.name, d.reason
            ));
        }

        let Some(resource_type) = self.resource_types.get(&what.feature) else {
            return Decision::deny_with("unknown feature".to_owned());
        };
        let Some(action) = self.actions.get(&what.feature) else {
            return Decision::deny_with("unknown feature".to_owned());
        };
        let resource_uid = uid(resource_type, what.name);
        let split = self.applicable.get(&what.feature).map(|a| a.for_resource(&resource_uid));
        if again
            && let Some(split) = split
            && let Some(decision) = self.decide_kept(principal, what, split, &resource.values, &args, &resource_uid)
        {
            #[cfg(test)]
            DIRECT_DECISIONS.with(|n| n.set(n.get() + 1));
            return decision;
        }

        // Context: claims, then arguments (ToolHive's merge order; the prefixes never clash).
        let context = if principal.context.is_empty() && args.is_empty() {
            Context::empty()
        } else {
            let pairs: HashMap<String, RestrictedExpression> =
                principal.context.iter().chain(&args).map(|(n, e, _)| (n.clone(), e.clone())).collect();
            match Context::from_pairs(pairs) {
                Ok(c) => c,
                Err(e) => return Decision::deny_with(format!("context: {e}")),
            }
        };
        let store = match &principal.store {
            Ok(store) => store,
            Err(e) => return Decision::deny_with(format!("entities: {e}")),
        };
        let resource_entity = RequestEntity {
            uid: resource_uid.clone(),
            attrs: resource.values.into_iter().map(|(n, e, _)| (n, e)).collect(),
            parents: self.server.iter().cloned().collect(),
        };
        let entity = match self.entities.entity(resource_entity) {
            Ok(e) => e,
            Err(e) => return Decision::deny_with(format!("entities: {e}")),
        };
        // The per-request policies may run against the resource alone (no copy of the caller's
        // store, no closure over it): see `Split::per_request_sees_only_the_resource`.
        let alone = again
            && split.is_some_and(|s| s.per_request_sees_only_the_resource)
            && self.entities.resource_alone(store, &resource_uid, self.server.as_ref());
        let mut full = None;
        if !alone {
            match entities::with_entity(store, entity.clone()) {
                Ok(e) => full = Some(e),
                Err(e) => return Decision::deny_with(format!("entities: {e}")),
            }
        }
        let request = match Request::new(principal.uid.clone(), action.clone(), resource_uid, context, None) {
            Ok(r) => r,
            Err(e) => return Decision::deny_with(format!("request: {e}")),
        };
        match (split, &full) {
            (None, Some(entities)) => {
                return Outcome::of(&self.cedar.is_authorized(&request, &self.policies, entities)).decision();
            }
            (Some(split), Some(entities)) if !again => {
                return Outcome::of(&self.cedar.is_authorized(&request, &split.all, entities)).decision();
            }
            _ => {}
        }
        let Some(split) = split else { return Decision::deny_with("entities: not built".to_owned()) };
        let mut outcome = if !split.has_per_request {
            Outcome::default()
        } else if let Some(entities) = &full {
            Outcome::of(&self.cedar.is_authorized(&request, &split.per_request, entities))
        } else {
            match Entities::from_entities([entity.clone()], None) {
                Ok(alone) => Outcome::of(&self.cedar.is_authorized(&request, &split.per_request, &alone)),
                Err(e) => return Decision::deny_with(format!("entities: {e}")),
            }
        };
        // The kept outcomes need the whole store only when one is evaluated for the first time.
        let whole = |full: &mut Option<Entities>| -> Result<Entities, String> {
            match full {
                Some(e) => Ok(e.clone()),
                None => {
                    let built = entities::with_entity(store, entity.clone())?;
                    *full = Some(built.clone());
                    Ok(built)
                }
            }
        };
        if split.has_per_tool {
            // The same for every request of this caller on this resource with these annotations.
            let annotations = if what.feature == Feature::Tool { what.annotations } else { None };
            let part = principal::Part::PerTool(attributes::annotation_key(annotations, &reads));
            let kept = match principal.outcomes.get(what.feature, part, what.name) {
                Some(kept) => kept,
                None => match whole(&mut full) {
                    Ok(entities) => principal.outcomes.put(what.feature, part, what.name, || {
                        Outcome::of(&self.cedar.is_authorized(&request, &split.per_tool, &entities))
                    }),
                    Err(e) => return Decision::deny_with(format!("entities: {e}")),
                },
            };
            outcome.join(&kept);
        }
        if split.has_per_caller {
            // Their outcome is the same for every request of this caller on this resource.
            let part = principal::Part::PerCaller;
            let kept = match principal.outcomes.get(what.feature, part, what.name) {
                Some(kept) => kept,
                None => match whole(&mut full) {
                    Ok(entities) => principal.outcomes.put(what.feature, part, what.name, || {
                        Outcome::of(&self.cedar.is_authorized(&request, &split.per_caller, &entities))
                    }),
                    Err(e) => return Decision::deny_with(format!("entities: {e}")),
                },
            };
            outcome.join(&kept);
        }
        outcome.decision()
    }

    /// The decision without Cedar, when it can be made so: the per-request policies (if any) are
    /// evaluated by `direct` against the resource alone, and the other policies' outcomes for
    /// this caller and resource are already kept. `None`: decide the whole way (the kept outcomes
    /// are then evaluated, or a policy erred and Cedar must word the error).
    fn decide_kept(
        &self,
        principal: &principal::Principal,
        what: &Target<'_>,
        split: &analysis::Split,
        resource: &[Attr],
        args: &[Attr],
        resource_uid: &EntityUid,
    ) -> Option<Decision> {
        // A store that failed to build denies; a resource that shares its uid with a static
        // entity (attributes from the file) or closes a cycle is left to Cedar.
        let store = principal.store.as_ref().ok()?;
        if !self.entities.resource_alone(store, resource_uid, self.server.as_ref()) {
            return None;
        }
        let mut outcome = if split.has_per_request {
            let direct = split.direct.as_ref()?;
            direct.evaluate(&direct::Request {
                principal: &principal.uid,
                action: self.actions.get(&what.feature)?,
                resource: resource_uid,
                resource_attrs: resource,
                context: [&principal.context, args],
            })?
        } else {
            Outcome::default()
        };
        if split.has_per_tool {
            let reads = |name: &str| self.usage.reads(name);
            let annotations = if what.feature == Feature::Tool { what.annotations } else { None };
            let part = principal::Part::PerTool(attributes::annotation_key(annotations, &reads));
            let kept = principal.outcomes.get(what.feature, part, what.name)?;
            outcome.join(&kept);
        }
        if split.has_per_caller {
            let kept = principal.outcomes.get(what.feature, principal::Part::PerCaller, what.name)?;
            outcome.join(&kept);
        }
        Some(outcome.decision())
    }
}
