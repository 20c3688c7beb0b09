//! The decisions of the AuthPolicy watch, free of the cluster: the route each policy targets,
//! which policy holds a route when several target it (the oldest), the Secrets a policy reads,
//! and the `Accepted` / `Enforced` conditions (Kuadrant's types and reasons) each policy gets.

use std::collections::{BTreeMap, BTreeSet};

use apiary_authpolicy::{AuthPolicy, LoadError, target_route};
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

use crate::registration::route::{GATEWAY_GROUP, HTTPROUTE_KIND, Key};

/// Condition types (Gateway API's `Accepted`, Kuadrant's `Enforced`).
pub const ACCEPTED: &str = "Accepted";
pub const ENFORCED: &str = "Enforced";

/// One AuthPolicy as read from the cluster.
#[derive(Debug)]
pub struct Seen {
    pub key: Key,
    pub generation: Option<i64>,
    pub created: Option<Timestamp>,
    /// The route key (`<ns>/<HTTPRoute>`) it targets, or why it has none.
    pub target: Result<String, LoadError>,
    /// The parsed policy, or the first field that does not parse.
    pub policy: Result<AuthPolicy, LoadError>,
}

impl Seen {
    /// Reads policy `key` from its object JSON (`apiVersion`, `kind`, `metadata`, `spec`).
    pub fn read(key: Key, generation: Option<i64>, created: Option<Timestamp>, object: Value) -> Self {
        let raw_target = raw_target(&key.namespace, &object);
        let policy = AuthPolicy::from_value(object);
        // A policy that does not parse still holds its route when its targetRef is readable, so
        // the route refuses traffic instead of passing unprotected.
        let target = match &policy {
            Ok(p) => target_route(p),
            Err(_) => raw_target,
        };
        Seen { key, generation, created, target, policy }
    }
}

/// The route of `object`'s `spec.targetRef`, read without the rest of the policy (the same rules
/// as [`target_route`]).
fn raw_target(namespace: &str, object: &Value) -> Result<String, LoadError> {
    let target = &object["spec"]["targetRef"];
    let field = |name: &str| target.get(name).and_then(Value::as_str).unwrap_or_default();
    if field("group") != GATEWAY_GROUP || field("kind") != HTTPROUTE_KIND {
        return Err(LoadError::Unsupported { path: "spec.targetRef.kind".to_owned() });
    }
    if target.get("sectionName").is_some() {
        return Err(LoadError::Unsupported { path: "spec.targetRef.sectionName".to_owned() });
    }
    match field("name") {
        "" => Err(LoadError::Invalid { path: "spec.targetRef.name".to_owned(), message: "empty".to_owned() }),
        name => Ok(format!("{namespace}/{name}")),
    }
}

/// For each targeted route, the index in `seen` of the policy that holds it: the oldest
/// (`creationTimestamp`), then the first by `<namespace>/<name>` (Gateway API's rule).
pub fn holders(seen: &[Seen]) -> BTreeMap<String, usize> {
    let mut out: BTreeMap<String, usize> = BTreeMap::new();
    let rank = |s: &Seen| (s.created.is_none(), s.created, s.key.clone());
    for (i, s) in seen.iter().enumerate() {
        let Ok(route) = &s.target else { continue };
        match out.get(route) {
            Some(&held) if rank(&seen[held]) <= rank(s) => {}
            _ => {
                out.insert(route.clone(), i);
            }
        }
    }
    out
}

/// The names of the Secrets `policy`'s `sharedSecretRef`s read (in its namespace).
pub fn secret_names(policy: &AuthPolicy) -> BTreeSet<String> {
    let spec = &policy.spec;
    let sections = [
        spec.rules.as_ref(),
        spec.defaults.as_ref().and_then(|s| s.rules.as_ref()),
        spec.overrides.as_ref().and_then(|s| s.rules.as_ref()),
    ];
    sections
        .into_iter()
        .flatten()
        .flat_map(|rules| rules.metadata.values())
        .filter_map(|rule| rule.http.as_ref()?.shared_secret_ref.as_ref())
        .map(|r| r.name.clone())
        .collect()
}

/// What became of one policy.
#[derive(Debug)]
pub enum Fate<'a> {
    /// No route: its targetRef (or the object) cannot be read.
    NoTarget(&'a LoadError),
    /// An older policy holds its route.
    Overridden { route: &'a str, holder: &'a Key },
    /// It holds `route`: loaded, or refusing the route's traffic with `Err`.
    Holds { route: &'a str, loaded: &'a Result<(), LoadError>, route_exists: bool },
}

/// One condition's `(status, reason, message)`.
pub type Cond = (&'static str, &'static str, String);

/// The `Accepted` and `Enforced` conditions of a policy whose fate is `fate`.
pub fn conditions(fate: &Fate<'_>) -> [(&'static str, Cond); 2] {
    let (accepted, enforced) = match fate {
        Fate::NoTarget(e) => (
            ("False", "Invalid", format!("AuthPolicy target is invalid: {e}")),
            ("False", "Unknown", format!("AuthPolicy is not loaded: {e}")),
        ),
        Fate::Overridden { route, holder } => (
            ("False", "Conflicted", format!("HTTPRoute {route} is already targeted by the older AuthPolicy {holder}")),
            ("False", "Overridden", format!("AuthPolicy is overridden by [{holder}]")),
        ),
        Fate::Holds { route, loaded, route_exists } => {
            let accepted = match loaded {
                Err(e @ (LoadError::Unsupported { .. } | LoadError::Invalid { .. })) => {
                    ("False", "Invalid", format!("AuthPolicy cannot be evaluated by Apiary: {e}"))
                }
                _ if !route_exists => ("False", "TargetNotFound", format!("HTTPRoute {route} not found")),
                _ => ("True", "Accepted", "AuthPolicy has been accepted".to_owned()),
            };
            let enforced = match loaded {
                Err(e) => ("False", "Unknown", format!("HTTPRoute {route} refuses all traffic: {e}")),
                Ok(()) if !route_exists => (
                    "False",
                    "Unknown",
                    format!("HTTPRoute {route} not found; the policy applies to it once it exists"),
                ),
                Ok(()) => ("True", "Enforced", "AuthPolicy has been successfully enforced".to_owned()),
            };
            (accepted, enforced)
        }
    };
    [(ACCEPTED, accepted), (ENFORCED, enforced)]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn key(ns: &str, name: &str) -> Key {
        Key { namespace: ns.into(), name: name.into() }
    }

    fn object(ns: &str, name: &str, target: Value, rules: Value) -> Value {
        json!({"apiVersion": "kuadrant.io/v1", "kind": "AuthPolicy",
               "metadata": {"name": name, "namespace": ns},
               "spec": {"targetRef": target, "rules": rules}})
    }

    fn route_ref(name: &str) -> Value {
        json!({"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": name})
    }

    fn seen(ns: &str, name: &str, at: i64, target: Value) -> Seen {
        let created = Some(Timestamp::from_second(at).unwrap());
        Seen::read(key(ns, name), Some(1), created, object(ns, name, target, json!({})))
    }

    #[test]
    fn the_target_is_the_routes_namespace_and_name() {
        let s = seen("mcp-test", "p", 1, route_ref("kubernetes-mcp"));
        assert_eq!(s.target.unwrap(), "mcp-test/kubernetes-mcp");
        let gateway = json!({"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "mcp-gateway"});
        assert_eq!(seen("ns", "p", 1, gateway).target.unwrap_err().path(), "spec.targetRef.kind");
        let section =
            json!({"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "r", "sectionName": "a"});
        assert_eq!(seen("ns", "p", 1, section).target.unwrap_err().path(), "spec.targetRef.sectionName");
    }

    #[test]
    fn a_policy_that_does_not_parse_still_holds_its_route() {
        // `rules.metadata` must be a map: the policy is unreadable, its target is not.
        let o = object("ns", "p", route_ref("r"), json!({"metadata": ["not", "a", "map"]}));
        let s = Seen::read(key("ns", "p"), Some(1), None, o);
        assert!(s.policy.is_err());
        assert_eq!(s.target.unwrap(), "ns/r");
        let o = json!({"apiVersion": "kuadrant.io/v1", "kind": "AuthPolicy", "spec": {"targetRef": 3}});
        assert_eq!(Seen::read(key("ns", "p"), None, None, o).target.unwrap_err().path(), "spec.targetRef.kind");
    }

    #[test]
    fn the_oldest_policy_holds_a_route_then_the_first_by_name() {
        let all = vec![
            seen("ns", "young", 20, route_ref("r")),
            seen("ns", "old", 10, route_ref("r")),
            seen("ns", "other", 30, route_ref("s")),
            seen("ns", "b-same-age", 5, route_ref("t")),
            seen("ns", "a-same-age", 5, route_ref("t")),
            seen("ns", "no-target", 1, json!({"kind": "Gateway"})),
        ];
        let held: Vec<(String, &str)> = holders(&all).into_iter().map(|(r, i)| (r, all[i].key.name.as_str())).collect();
        assert_eq!(held, [("ns/r".to_owned(), "old"), ("ns/s".to_owned(), "other"), ("ns/t".to_owned(), "a-same-age")]);
    }

    #[test]
    fn the_secrets_of_every_rules_section_are_read() {
        let rules = json!({"metadata": {
            "a": {"http": {"url": "https://x/", "sharedSecretRef": {"name": "token-exchange", "key": "k"}}},
            "b": {"http": {"url": "https://y/"}}}});
        let mut o = object("ns", "p", route_ref("r"), rules);
        o["spec"]["defaults"] = json!({"rules": {"metadata": {"c": {"http": {"url": "https://z/",
            "sharedSecretRef": {"name": "other", "key": "k"}}}}}});
        let s = Seen::read(key("ns", "p"), None, None, o);
        let names: Vec<String> = secret_names(s.policy.as_ref().unwrap()).into_iter().collect();
        assert_eq!(names, ["other", "token-exchange"]);
    }

    fn cond(fate: Fate<'_>) -> Vec<(&'static str, &'static str, &'static str, String)> {
        conditions(&fate).into_iter().map(|(t, (s, r, m))| (t, s, r, m)).collect()
    }

    #[test]
    fn a_loaded_policy_on_an_existing_route_is_accepted_and_enforced() {
        let c = cond(Fate::Holds { route: "ns/r", loaded: &Ok(()), route_exists: true });
        assert_eq!((c[0].0, c[0].1, c[0].2), (ACCEPTED, "True", "Accepted"));
        assert_eq!((c[1].0, c[1].1, c[1].2), (ENFORCED, "True", "Enforced"));
    }

    #[test]
    fn a_field_apiary_cannot_evaluate_is_invalid_and_named() {
        let e = Err(LoadError::Unsupported { path: "spec.rules.authorization.x.kubernetesSubjectAccessReview".into() });
        let c = cond(Fate::Holds { route: "ns/r", loaded: &e, route_exists: true });
        assert_eq!((c[0].1, c[0].2), ("False", "Invalid"));
        assert_eq!((c[1].1, c[1].2), ("False", "Unknown"));
        for (_, _, _, message) in &c {
            assert!(message.contains("spec.rules.authorization.x.kubernetesSubjectAccessReview"), "{message}");
        }
    }

    #[test]
    fn a_missing_secret_leaves_the_policy_accepted_but_not_enforced() {
        let path = "spec.rules.metadata.oauth-token-exchange.http.sharedSecretRef";
        let e = Err(LoadError::MissingSecret { path: path.into(), name: "token-exchange".into(), key: "k".into() });
        let c = cond(Fate::Holds { route: "ns/r", loaded: &e, route_exists: true });
        assert_eq!((c[0].1, c[0].2), ("True", "Accepted"));
        assert_eq!((c[1].1, c[1].2), ("False", "Unknown"));
        assert!(c[1].3.contains(path) && c[1].3.contains("refuses"), "{}", c[1].3);
    }

    #[test]
    fn a_missing_route_and_a_conflict_and_a_bad_target_have_their_reasons() {
        let c = cond(Fate::Holds { route: "ns/r", loaded: &Ok(()), route_exists: false });
        assert_eq!((c[0].1, c[0].2, c[1].1), ("False", "TargetNotFound", "False"));
        assert!(c[0].3.contains("ns/r"));
        let holder = key("ns", "old");
        let c = cond(Fate::Overridden { route: "ns/r", holder: &holder });
        assert_eq!((c[0].1, c[0].2, c[1].1, c[1].2), ("False", "Conflicted", "False", "Overridden"));
        assert!(c[0].3.contains("ns/old") && c[1].3.contains("ns/old"));
        let e = LoadError::Unsupported { path: "spec.targetRef.kind".into() };
        let c = cond(Fate::NoTarget(&e));
        assert_eq!((c[0].1, c[0].2), ("False", "Invalid"));
        assert!(c[0].3.contains("spec.targetRef.kind"));
    }
}
