//! The attributes a decision hands to Cedar: `claim_*`/`claimset_*` from the caller's claims,
//! `arg_*` from the request's arguments, tool annotations, and the group names that become the
//! principal's parents. Anything over a bound is left out whole and recorded, so the authorizer
//! can refuse when a policy depends on it.

use std::collections::HashSet;

use cedar_policy::RestrictedExpression;
use serde_json::{Map, Value};

use super::values::{Budget, MAX_ATTRIBUTES, MAX_ELEMENTS, MAX_STRING_BYTES, Simple, account, to_cedar};

/// Most groups (group claim plus role claim) that become parents of the principal.
pub const MAX_GROUPS: usize = 1024;

/// The claims ToolHive reads groups from when `group_claim_name` is unset or absent, in order.
const DEFAULT_GROUP_CLAIMS: [&str; 3] = ["groups", "roles", "cognito:groups"];

/// Tool annotations that become resource attributes (booleans only, as in ToolHive).
const ANNOTATIONS: [&str; 4] = ["readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint"];

/// How claims are read, from the `cedar` section.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClaimRules {
    pub group_claim_name: Option<String>,
    pub role_claim_name: Option<String>,
    pub multi_valued_claims: Vec<String>,
}

/// An attribute left out of the request, and why.
#[derive(Debug, Clone)]
pub(crate) struct Dropped {
    pub name: String,
    pub reason: String,
}

/// Which attribute names to build; the others are only accounted for (see [`account`]).
pub(crate) type Wanted<'a> = &'a dyn Fn(&str) -> bool;

/// One built attribute: its name, its Cedar value, and the same value as the direct evaluator
/// reads it (`direct`).
pub(crate) type Attr = (String, RestrictedExpression, Simple);

/// Attributes gathered for one decision: the wanted ones built, every left-out one recorded.
#[derive(Default)]
pub(crate) struct Attributes {
    pub values: Vec<Attr>,
    pub dropped: Vec<Dropped>,
}

impl Attributes {
    /// A wanted attribute is converted; any other is checked against the same bounds and budget
    /// without being built, so the budget and the left-out list come out as if it were.
    fn put(&mut self, name: String, value: &Value, budget: &mut Budget, wanted: Wanted<'_>) {
        let result = if wanted(&name) {
            to_cedar(value, budget).map(|v| self.values.push((name.clone(), v, Simple::of(value))))
        } else {
            account(value, budget)
        };
        if let Err(reason) = result {
            self.dropped.push(Dropped { name, reason: reason.to_owned() });
        }
    }

    fn drop_one(&mut self, name: String, reason: &str) {
        self.dropped.push(Dropped { name, reason: reason.to_owned() });
    }
}

/// `claim_<name>` for every claim (the first [`MAX_ATTRIBUTES`]), and `claimset_<name>` for each
/// claim listed in `multi_valued_claims` (ToolHive's two normalized forms).
pub(crate) fn claims(
    claims: &Map<String, Value>,
    rules: &ClaimRules,
    budget: &mut Budget,
    wanted: Wanted<'_>,
) -> Attributes {
    let mut out = Attributes::default();
    for (i, (key, value)) in claims.iter().enumerate() {
        let name = format!("claim_{key}");
        if i >= MAX_ATTRIBUTES {
            out.drop_one(name, "the token has more claims than the limit");
        } else if key.len() > MAX_STRING_BYTES {
            out.drop_one(name, "the claim name is longer than the limit");
        } else if rules.multi_valued_claims.contains(key) {
            match value {
                Value::Array(items) => {
                    let joined = string_elements(items).collect::<Vec<_>>().join(" ");
                    out.put(name, &Value::String(joined), budget, wanted);
                }
                other => out.put(name, other, budget, wanted),
            }
        } else {
            out.put(name, value, budget, wanted);
        }
    }
    for key in &rules.multi_valued_claims {
        let tokens: Vec<&str> = match claims.get(key) {
            Some(Value::String(s)) => s.split_whitespace().collect(),
            Some(Value::Array(items)) => string_elements(items).collect(),
            _ => continue,
        };
        let name = format!("claimset_{key}");
        if tokens.len() > MAX_ELEMENTS {
            out.drop_one(name, "the list has more elements than the limit");
            continue;
        }
        let set = Value::Array(tokens.into_iter().map(|t| Value::String(t.to_owned())).collect());
        out.put(name, &set, budget, wanted);
    }
    out
}

fn string_elements(items: &[Value]) -> impl Iterator<Item = &str> {
    items.iter().filter_map(Value::as_str)
}

/// `arg_<name>` for each argument that is a string, boolean or integer; `arg_<name>_present`
/// (true) for one that is null, a list or an object, as ToolHive does.
pub(crate) fn arguments(
    args: Option<&Map<String, Value>>,
    budget: &mut Budget,
    wanted: Wanted<'_>,
    out: &mut Attributes,
) {
    let Some(args) = args else { return };
    for (i, (key, value)) in args.iter().enumerate() {
        let name = format!("arg_{key}");
        if i >= MAX_ATTRIBUTES {
            out.drop_one(name, "the request has more arguments than the limit");
        } else if key.len() > MAX_STRING_BYTES {
            out.drop_one(name, "the argument name is longer than the limit");
        } else {
            match value {
                Value::String(_) | Value::Bool(_) | Value::Number(_) => out.put(name, value, budget, wanted),
                Value::Null | Value::Array(_) | Value::Object(_) => {
                    let present = format!("{name}_present");
                    if wanted(&present) {
                        out.values.push((present, RestrictedExpression::new_bool(true), Simple::Bool(true)));
                    }
                }
            }
        }
    }
}

/// The four boolean hints of a tool's annotations, when present and boolean.
pub(crate) fn annotations(annotations: Option<&Map<String, Value>>, wanted: Wanted<'_>, out: &mut Attributes) {
    let Some(annotations) = annotations else { return };
    for key in ANNOTATIONS.into_iter().filter(|k| wanted(k)) {
        if let Some(Value::Bool(b)) = annotations.get(key) {
            out.values.push((key.to_owned(), RestrictedExpression::new_bool(*b), Simple::Bool(*b)));
        }
    }
}

/// The tool annotations [`annotations`] builds, as a key: two bits per hint (absent or not a
/// boolean, false, true). Two targets with the same key get the same annotation attributes.
pub(crate) fn annotation_key(annotations: Option<&Map<String, Value>>, wanted: Wanted<'_>) -> u8 {
    let Some(annotations) = annotations else { return 0 };
    let mut key = 0u8;
    for (i, name) in ANNOTATIONS.into_iter().enumerate() {
        let bits = match annotations.get(name) {
            Some(Value::Bool(b)) if wanted(name) => 1 + u8::from(*b),
            _ => 0,
        };
        key |= bits << (2 * i);
    }
    key
}

/// Group names from the group claim (configured name first, else ToolHive's defaults) and the
/// role claim, without duplicates. `Err` when there are more than [`MAX_GROUPS`] or one is too long.
pub(crate) fn groups(claims: &Map<String, Value>, rules: &ClaimRules) -> Result<Vec<String>, String> {
    let mut found = rules.group_claim_name.as_deref().and_then(|name| string_list(claims, name));
    if found.is_none() {
        found = DEFAULT_GROUP_CLAIMS.iter().find_map(|name| string_list(claims, name));
    }
    let mut all = found.unwrap_or_default();
    if let Some(roles) = rules.role_claim_name.as_deref().and_then(|name| string_list(claims, name)) {
        all.extend(roles);
    }
    if all.len() > MAX_GROUPS {
        return Err(format!("the token names {} groups and roles, more than the limit of {MAX_GROUPS}", all.len()));
    }
    if all.iter().any(|g| g.len() > MAX_STRING_BYTES) {
        return Err(format!("a group name is longer than {MAX_STRING_BYTES} bytes"));
    }
    let mut seen = HashSet::with_capacity(all.len());
    all.retain(|g| seen.insert(g.clone()));
    Ok(all)
}

/// A claim that is a list, as its string elements (others skipped). `None` when the claim is
/// absent or not a list. The name is tried whole first (`https://example.com/groups`), then as a
/// dotted path (`realm_access.roles`).
fn string_list(claims: &Map<String, Value>, name: &str) -> Option<Vec<String>> {
    let value = claims.get(name).or_else(|| {
        let mut parts = name.split('.');
        let first = claims.get(parts.next()?)?;
        if !name.contains('.') {
            return None;
        }
        parts.try_fold(first, |v, part| v.as_object()?.get(part))
    })?;
    let items = value.as_array()?;
    Some(items.iter().filter_map(Value::as_str).map(str::to_owned).collect())
}
