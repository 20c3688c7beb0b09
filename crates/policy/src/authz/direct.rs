//! Evaluates the per-request policies (those reading arguments or the context) of the common
//! shape — conditions that compare the resource's or the context's attributes with literals —
//! without Cedar, because Cedar needs an entity store for the resource, and building one costs a
//! transitive closure (an SCC pass over SipHash maps) on every request, more than the policies.
//!
//! It is a partial evaluator, never a second authority: a policy set compiles only if every
//! policy is in the subset below, and an evaluation answers only when every policy evaluates
//! without an error and reads only booleans, integers and strings. Anything else (an unknown
//! construct at load, a missing attribute, a type error, a decimal, set or record) gives `None`,
//! and the caller asks Cedar, which then also words the error. Where it answers, it answers as
//! Cedar's evaluator does (checked against Cedar by the property test in `equivalence`):
//! - scope: `principal` (any, `== uid`, `is T`), `action` (any, `== uid`), `resource` (any,
//!   `== uid`, `is T`), checked first, then the conditions in order (`when` must be true,
//!   `unless` false), stopping at the first false, as Cedar's `&&` does;
//! - literals `true`, `false`, integers, strings; `resource.a`, `resource["a"]`, `context.a`
//!   (an absent attribute is an error), `resource has a`, `context has a`;
//! - `!`, `&&`, `||` (short-circuit; a non-boolean operand is an error); `==`, `!=` (values of
//!   different types are unequal, never an error); `<`, `<=`, `>`, `>=` on integers only.
//!
//! The resource's attributes are exactly the request's own when it is evaluated this way: the
//! caller uses it only for a resource that shares its uid with no static entity
//! (`StaticEntities::resource_alone`), so no attribute comes from `entities_json`. Its values come
//! from the same builder as Cedar's (`attributes`), each with its simple form (`Simple`); a later
//! attribute of the same name replaces an earlier one, as in Cedar's entity and context maps.

use cedar_policy::{
    ActionConstraint, EntityTypeName, EntityUid, Policy, PolicySet, PrincipalConstraint, ResourceConstraint,
};
use serde_json::Value;

use super::attributes::Attr;
use super::outcome::Outcome;
use super::values::Simple;

/// Deepest expression compiled: deeper ones are left to Cedar (and recursion stays bounded).
const MAX_EXPR_DEPTH: usize = 32;

/// A policy set every policy of which is in the subset.
pub(crate) struct Direct {
    policies: Vec<Compiled>,
}

/// What one evaluation sees.
pub(crate) struct Request<'a> {
    pub principal: &'a EntityUid,
    pub action: &'a EntityUid,
    pub resource: &'a EntityUid,
    /// The resource's attributes, as built for Cedar.
    pub resource_attrs: &'a [Attr],
    /// The context's attributes: the claims', then the arguments' (ToolHive's merge order).
    pub context: [&'a [Attr]; 2],
}

struct Compiled {
    id: String,
    forbid: bool,
    principal: Scope,
    action: Option<EntityUid>,
    resource: Scope,
    /// `(when, body)`: a `when` body must be true, an `unless` one false.
    conditions: Vec<(bool, Expr)>,
}

enum Scope {
    Any,
    Eq(EntityUid),
    Is(EntityTypeName),
}

#[derive(Clone, Copy)]
enum Var {
    Resource,
    Context,
}

#[derive(Clone, Copy)]
enum Cmp {
    Less,
    LessEq,
    Greater,
    GreaterEq,
}

enum Expr {
    Lit(Simple),
    Attr(Var, String),
    Has(Var, String),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Eq(Box<Expr>, Box<Expr>),
    Ne(Box<Expr>, Box<Expr>),
    Cmp(Cmp, Box<Expr>, Box<Expr>),
}

/// A value during evaluation (borrowed from the request or the policy).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Val<'a> {
    Bool(bool),
    Long(i64),
    Str(&'a str),
}

impl Direct {
    /// The set compiled, or `None` when some policy is outside the subset.
    pub(crate) fn compile(set: &PolicySet) -> Option<Direct> {
        let policies = set.policies().map(compile_policy).collect::<Option<Vec<_>>>()?;
        Some(Direct { policies })
    }

    /// The outcome Cedar would give, or `None` when some policy errs or reads a value outside
    /// the subset (then Cedar must decide, and word the error).
    pub(crate) fn evaluate(&self, request: &Request<'_>) -> Option<Outcome> {
        let mut forbids = Vec::new();
        let mut permits = Vec::new();
        for policy in &self.policies {
            if policy.satisfied(request)? {
                if policy.forbid {
                    forbids.push(policy.id.clone());
                } else {
                    permits.push(policy.id.clone());
                }
            }
        }
        Some(Outcome::satisfied(forbids, permits))
    }
}

impl Compiled {
    fn satisfied(&self, r: &Request<'_>) -> Option<bool> {
        let scope = matches(&self.principal, r.principal)
            && self.action.as_ref().is_none_or(|a| a == r.action)
            && matches(&self.resource, r.resource);
        if !scope {
            return Some(false);
        }
        for (when, body) in &self.conditions {
            let Val::Bool(b) = eval(body, r)? else { return None };
            if b != *when {
                return Some(false);
            }
        }
        Some(true)
    }
}

fn matches(scope: &Scope, uid: &EntityUid) -> bool {
    match scope {
        Scope::Any => true,
        Scope::Eq(want) => want == uid,
        Scope::Is(t) => uid.type_name() == t,
    }
}

fn eval<'a>(e: &'a Expr, r: &Request<'a>) -> Option<Val<'a>> {
    let bool_of = |e: &'a Expr| match eval(e, r)? {
        Val::Bool(b) => Some(b),
        _ => None,
    };
    Some(match e {
        Expr::Lit(v) => simple(v)?,
        Expr::Attr(var, name) => simple(lookup(*var, name, r)?)?,
        Expr::Has(var, name) => Val::Bool(lookup(*var, name, r).is_some()),
        Expr::Not(a) => Val::Bool(!bool_of(a)?),
        Expr::And(a, b) => Val::Bool(bool_of(a)? && bool_of(b)?),
        Expr::Or(a, b) => Val::Bool(bool_of(a)? || bool_of(b)?),
        Expr::Eq(a, b) => Val::Bool(eval(a, r)? == eval(b, r)?),
        Expr::Ne(a, b) => Val::Bool(eval(a, r)? != eval(b, r)?),
        Expr::Cmp(op, a, b) => {
            let (Val::Long(x), Val::Long(y)) = (eval(a, r)?, eval(b, r)?) else { return None };
            Val::Bool(match op {
                Cmp::Less => x < y,
                Cmp::LessEq => x <= y,
                Cmp::Greater => x > y,
                Cmp::GreaterEq => x >= y,
            })
        }
    })
}

fn simple(v: &Simple) -> Option<Val<'_>> {
    match v {
        Simple::Bool(b) => Some(Val::Bool(*b)),
        Simple::Long(n) => Some(Val::Long(*n)),
        Simple::Str(s) => Some(Val::Str(s)),
        Simple::Other => None,
    }
}

/// The attribute's value; the last one of that name wins.
fn lookup<'a>(var: Var, name: &str, r: &Request<'a>) -> Option<&'a Simple> {
    let find = |attrs: &'a [Attr]| attrs.iter().rev().find(|(n, ..)| n == name).map(|(_, _, v)| v);
    match var {
        Var::Resource => find(r.resource_attrs),
        Var::Context => find(r.context[1]).or_else(|| find(r.context[0])),
    }
}

fn compile_policy(policy: &Policy) -> Option<Compiled> {
    let principal = match policy.principal_constraint() {
        PrincipalConstraint::Any => Scope::Any,
        PrincipalConstraint::Eq(uid) => Scope::Eq(uid),
        PrincipalConstraint::Is(t) => Scope::Is(t),
        PrincipalConstraint::In(_) | PrincipalConstraint::IsIn(..) => return None,
    };
    let action = match policy.action_constraint() {
        ActionConstraint::Any => None,
        ActionConstraint::Eq(uid) => Some(uid),
        ActionConstraint::In(_) => return None,
    };
    let resource = match policy.resource_constraint() {
        ResourceConstraint::Any => Scope::Any,
        ResourceConstraint::Eq(uid) => Scope::Eq(uid),
        ResourceConstraint::Is(t) => Scope::Is(t),
        ResourceConstraint::In(_) | ResourceConstraint::IsIn(..) => return None,
    };
    let est = policy.to_json().ok()?;
    let forbid = match est.get("effect")?.as_str()? {
        "permit" => false,
        "forbid" => true,
        _ => return None,
    };
    let mut conditions = Vec::new();
    for condition in est.get("conditions").and_then(Value::as_array).map_or(&[][..], Vec::as_slice) {
        let when = match condition.get("kind")?.as_str()? {
            "when" => true,
            "unless" => false,
            _ => return None,
        };
        conditions.push((when, expr(condition.get("body")?, 0)?));
    }
    Some(Compiled { id: policy.id().to_string(), forbid, principal, action, resource, conditions })
}

/// One EST expression node (`{"<op>": ..}`), when it is in the subset.
fn expr(v: &Value, depth: usize) -> Option<Expr> {
    if depth > MAX_EXPR_DEPTH {
        return None;
    }
    let map = v.as_object()?;
    if map.len() != 1 {
        return None;
    }
    let (op, node) = map.iter().next()?;
    let sub = |key: &str| expr(node.get(key)?, depth + 1).map(Box::new);
    Some(match op.as_str() {
        "Value" => Expr::Lit(match node {
            Value::Bool(b) => Simple::Bool(*b),
            Value::Number(n) => Simple::Long(n.as_i64()?),
            Value::String(s) => Simple::Str(s.clone()),
            _ => return None,
        }),
        "." => Expr::Attr(var(node.get("left")?)?, node.get("attr")?.as_str()?.to_owned()),
        "has" => Expr::Has(var(node.get("left")?)?, node.get("attr")?.as_str()?.to_owned()),
        "!" => Expr::Not(sub("arg")?),
        "&&" => Expr::And(sub("left")?, sub("right")?),
        "||" => Expr::Or(sub("left")?, sub("right")?),
        "==" => Expr::Eq(sub("left")?, sub("right")?),
        "!=" => Expr::Ne(sub("left")?, sub("right")?),
        "<" => Expr::Cmp(Cmp::Less, sub("left")?, sub("right")?),
        "<=" => Expr::Cmp(Cmp::LessEq, sub("left")?, sub("right")?),
        ">" => Expr::Cmp(Cmp::Greater, sub("left")?, sub("right")?),
        ">=" => Expr::Cmp(Cmp::GreaterEq, sub("left")?, sub("right")?),
        _ => return None,
    })
}

/// `resource` or `context`, the only variables whose attributes the subset reads.
fn var(v: &Value) -> Option<Var> {
    match v.get("Var")?.as_str()? {
        "resource" => Some(Var::Resource),
        "context" => Some(Var::Context),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use cedar_policy::RestrictedExpression;

    fn set(texts: &[&str]) -> PolicySet {
        let mut set = PolicySet::new();
        for (i, t) in texts.iter().enumerate() {
            set.add(Policy::parse(Some(cedar_policy::PolicyId::new(format!("policy{i}"))), *t).unwrap()).unwrap();
        }
        set
    }

    #[test]
    fn only_the_subset_compiles() {
        let compiles = |text: &str| Direct::compile(&set(&[text])).is_some();
        assert!(compiles(
            r#"forbid(principal, action == Action::"call_tool", resource == Tool::"echo") when { resource has arg_text && resource.arg_text == "forbidden" };"#
        ));
        assert!(compiles(r#"permit(principal is Client, action, resource is Tool) when { context.arg_n > 3 };"#));
        assert!(compiles(r#"permit(principal, action, resource) unless { !(resource["arg_a"] != 1) || true };"#));
        assert!(compiles(r#"permit(principal == Client::"a", action, resource);"#));
        for outside in [
            r#"permit(principal in G::"g", action, resource) when { resource.arg_x == 1 };"#,
            r#"permit(principal, action in [Action::"c"], resource);"#,
            r#"permit(principal, action, resource in MCP::"s");"#,
            r#"permit(principal, action, resource) when { resource.arg_x like "a*" };"#,
            r#"permit(principal, action, resource) when { principal.claim_a == "x" };"#,
            r#"permit(principal, action, resource) when { context == {} };"#,
            r#"permit(principal, action, resource) when { context.claim_r.inner == 1 };"#,
            r#"permit(principal, action, resource) when { resource has arg_r.inner };"#,
            r#"permit(principal, action, resource) when { resource.arg_x == Tool::"a" };"#,
            r#"permit(principal, action, resource) when { resource.arg_x == decimal("1.5") };"#,
            r#"permit(principal, action, resource) when { resource.arg_x + 1 == 2 };"#,
        ] {
            assert!(!compiles(outside), "{outside}");
        }
        // One policy outside the subset keeps the whole set with Cedar.
        assert!(
            Direct::compile(&set(&[
                r#"permit(principal, action, resource);"#,
                r#"forbid(principal, action, resource in MCP::"s");"#
            ]))
            .is_none()
        );
    }

    fn attr(name: &str, v: Simple) -> Attr {
        (name.to_owned(), RestrictedExpression::new_bool(true), v)
    }

    #[test]
    fn answers_only_without_errors() {
        let direct = Direct::compile(&set(&[
            r#"forbid(principal, action, resource) when { resource has arg_t && resource.arg_t == "no" };"#,
            r#"permit(principal, action, resource) when { context.arg_n > 3 };"#,
        ]))
        .unwrap();
        let (p, a, t): (EntityUid, EntityUid, EntityUid) =
            (r#"Client::"u""#.parse().unwrap(), r#"Action::"a""#.parse().unwrap(), r#"Tool::"t""#.parse().unwrap());
        let run = |resource: &[Attr], args: &[Attr]| {
            let r = Request { principal: &p, action: &a, resource: &t, resource_attrs: resource, context: [&[], args] };
            direct.evaluate(&r).map(|o| o.decision())
        };
        let n = |v| [attr("arg_n", Simple::Long(v))];
        assert_eq!(run(&[], &n(4)).unwrap().policies, ["policy1"]);
        assert!(run(&[], &n(4)).unwrap().allowed);
        assert!(!run(&[], &n(3)).unwrap().allowed);
        let no = [attr("arg_t", Simple::Str("no".to_owned()))];
        let denied = run(&no, &n(4)).unwrap();
        assert!(!denied.allowed);
        assert_eq!(denied.policies, ["policy0"]);
        // A missing context attribute, a string compared with `>`, a set read: Cedar decides.
        assert!(run(&[], &[]).is_none());
        assert!(run(&[], &[attr("arg_n", Simple::Str("4".to_owned()))]).is_none());
        assert!(run(&[attr("arg_t", Simple::Other)], &n(4)).is_none());
        // The later of two attributes of one name wins, as in Cedar's maps.
        let twice = [attr("arg_t", Simple::Str("no".to_owned())), attr("arg_t", Simple::Long(1))];
        assert!(run(&twice, &n(4)).unwrap().allowed);
    }

    /// A small deterministic generator (xorshift), so a failing case can be replayed.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }

        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len())]
        }
    }

    const NAMES: [&str; 3] = ["arg_a", "arg_b", "arg_c"];

    /// An operand: an attribute read or a literal (some outside the subset).
    fn operand(rng: &mut Rng) -> String {
        match rng.below(4) {
            0 | 1 => format!("{}.{}", rng.pick(&["resource", "context"]), rng.pick(&NAMES)),
            2 => format!("resource[\"{}\"]", rng.pick(&NAMES)),
            _ => rng.pick(&["1", "2", "\"x\"", "\"y\"", "true", "false", "(-1)", "decimal(\"1.5\")"]).to_owned(),
        }
    }

    /// A condition in the subset, mostly, with now and then a construct outside it.
    fn condition(rng: &mut Rng, depth: usize) -> String {
        let leaf = depth == 0 || rng.below(3) == 0;
        if leaf {
            return match rng.below(5) {
                0 | 1 => format!("{} has {}", rng.pick(&["resource", "context"]), rng.pick(&NAMES)),
                2 => operand(rng),
                3 => format!("({}) {} ({})", operand(rng), rng.pick(&["==", "!=", "<", "<=", ">", ">="]), operand(rng)),
                _ => rng
                    .pick(&["resource.arg_a like \"x*\"", "context.arg_b.contains(1)", "resource.arg_c + 1 == 2"])
                    .to_owned(),
            };
        }
        match rng.below(4) {
            0 => format!("!({})", condition(rng, depth - 1)),
            1 => format!("({}) && ({})", condition(rng, depth - 1), condition(rng, depth - 1)),
            2 => format!("({}) || ({})", condition(rng, depth - 1), condition(rng, depth - 1)),
            _ => format!("({}) == ({})", condition(rng, depth - 1), condition(rng, depth - 1)),
        }
    }

    fn policy(rng: &mut Rng) -> String {
        let mut text = format!(
            "{}({}, {}, {})",
            rng.pick(&["permit", "forbid"]),
            rng.pick(&[
                "principal",
                "principal == Client::\"u\"",
                "principal == Client::\"v\"",
                "principal is Client",
                "principal is Other"
            ]),
            rng.pick(&["action", "action == Action::\"call_tool\"", "action == Action::\"get_prompt\""]),
            rng.pick(&[
                "resource",
                "resource == Tool::\"t\"",
                "resource == Tool::\"x\"",
                "resource is Tool",
                "resource is Prompt"
            ]),
        );
        for _ in 0..rng.below(3) {
            text += &format!(" {} {{ {} }}", rng.pick(&["when", "unless"]), condition(rng, 3));
        }
        text + ";"
    }

    /// Some of the three names, each a boolean, an integer, a string or a set.
    fn attributes(rng: &mut Rng) -> Vec<Attr> {
        let mut out = Vec::new();
        for name in NAMES {
            let (expr, simple) = match rng.below(6) {
                0 => continue,
                1 => {
                    let b = rng.below(2) == 0;
                    (RestrictedExpression::new_bool(b), Simple::Bool(b))
                }
                2 => {
                    let n = rng.below(4) as i64 - 1;
                    (RestrictedExpression::new_long(n), Simple::Long(n))
                }
                3 => (RestrictedExpression::new_set([RestrictedExpression::new_long(1)]), Simple::Other),
                _ => {
                    let s = rng.pick(&["x", "y"]);
                    (RestrictedExpression::new_string(s.to_owned()), Simple::Str(s.to_owned()))
                }
            };
            out.push((name.to_owned(), expr, simple));
        }
        out
    }

    #[test]
    fn generated_policies_and_requests_decide_as_cedar_does() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let (mut answered, mut compiled, cases) = (0, 0, 6000);
        let principal: EntityUid = r#"Client::"u""#.parse().unwrap();
        let action: EntityUid = r#"Action::"call_tool""#.parse().unwrap();
        let resource: EntityUid = r#"Tool::"t""#.parse().unwrap();
        for case in 0..cases {
            let texts: Vec<String> = (0..1 + rng.below(3)).map(|_| policy(&mut rng)).collect();
            let mut policies = PolicySet::new();
            for (i, text) in texts.iter().enumerate() {
                let parsed = Policy::parse(Some(cedar_policy::PolicyId::new(format!("policy{i}"))), text);
                policies.add(parsed.unwrap_or_else(|e| panic!("{text}: {e}"))).unwrap();
            }
            let Some(direct) = Direct::compile(&policies) else { continue };
            compiled += 1;
            let (attrs, context) = (attributes(&mut rng), attributes(&mut rng));
            let entity = cedar_policy::Entity::new(
                resource.clone(),
                attrs.iter().map(|(n, e, _)| (n.clone(), e.clone())).collect(),
                Default::default(),
            )
            .unwrap();
            let entities = cedar_policy::Entities::from_entities([entity], None).unwrap();
            let pairs = context.iter().map(|(n, e, _)| (n.clone(), e.clone()));
            let cedar_context = cedar_policy::Context::from_pairs(pairs).unwrap();
            let request =
                cedar_policy::Request::new(principal.clone(), action.clone(), resource.clone(), cedar_context, None)
                    .unwrap();
            let cedar = Outcome::of(&cedar_policy::Authorizer::new().is_authorized(&request, &policies, &entities));
            let r = Request {
                principal: &principal,
                action: &action,
                resource: &resource,
                resource_attrs: &attrs,
                context: [&[], &context],
            };
            let cedar = cedar.decision();
            // Declining (`None`) is always safe: Cedar then decides. An answer must be Cedar's.
            if let Some(outcome) = direct.evaluate(&r) {
                answered += 1;
                assert_eq!(outcome.decision(), cedar, "case {case}: {texts:?}\n{attrs:?}\n{context:?}");
            }
        }
        // Guards against a generator that never reaches the evaluator.
        assert!(compiled > cases / 4 && answered > compiled / 4, "compiled {compiled}, answered {answered}");
    }
}
