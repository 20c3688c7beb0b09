//! Pure aggregation: from what each backend listed to what the vMCP advertises, and the
//! routing table that maps an advertised name back to its backend and the backend's own
//! name. No I/O here, so every rule (filters, overrides, the three conflict strategies,
//! resource ownership) is unit-tested on plain values.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;

use crate::config::{DEFAULT_PREFIX_FORMAT, Strategy, VmcpConfig, WorkloadTools};

/// What one backend listed, per kind. `None` for a kind the backend did not answer.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub backend: String,
    pub tools: Vec<Value>,
    pub prompts: Vec<Value>,
    pub resources: Vec<Value>,
    pub templates: Vec<Value>,
}

/// Where an advertised name goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub backend: String,
    /// The backend's own name for it.
    pub name: String,
}

/// What the vMCP advertises, and how to route it.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub tools: Vec<Value>,
    pub prompts: Vec<Value>,
    pub resources: Vec<Value>,
    pub templates: Vec<Value>,
    pub tool_routes: HashMap<String, Route>,
    pub prompt_routes: HashMap<String, Route>,
    /// Resource URI → backend.
    pub resource_routes: HashMap<String, String>,
    /// Literal prefix of a URI template (up to its first `{`) → backend, longest first.
    pub template_routes: Vec<(String, String)>,
    /// Backends that did not answer in time (named in the log and `/status`).
    pub missing: Vec<String>,
}

/// The aggregation rules of a config.
#[derive(Debug, Clone)]
pub struct Rules {
    pub strategy: Strategy,
    pub exclude_all_tools: bool,
    pub per_workload: HashMap<String, WorkloadTools>,
    /// Backend names in file order.
    pub order: Vec<String>,
    /// Backends whose tool and prompt names are shown behind a literal prefix, whatever the
    /// strategy (Apiary's gateway: the registration's `prefix`): backend → prefix.
    pub literal_prefixes: HashMap<String, String>,
    /// Backends whose routed requests carry the gateway's `x-mcp-*` headers: backend →
    /// `x-mcp-servername` value.
    pub server_names: HashMap<String, String>,
}

/// Header naming the registered server a request is routed to (names.md §5).
pub const SERVER_NAME_HEADER: &str = "x-mcp-servername";
/// Header carrying the routed tool's unprefixed name.
pub const TOOL_NAME_HEADER: &str = "x-mcp-toolname";
/// Header carrying the routed request's JSON-RPC method.
pub const METHOD_HEADER: &str = "x-mcp-method";

impl Rules {
    pub fn from_config(config: &VmcpConfig) -> Rules {
        let agg = config.aggregation.as_ref();
        Rules {
            strategy: config.strategy(),
            exclude_all_tools: agg.is_some_and(|a| a.exclude_all_tools),
            per_workload: agg
                .map(|a| a.tools.iter().map(|t| (t.workload.clone(), t.clone())).collect())
                .unwrap_or_default(),
            order: config.backends.iter().map(|b| b.name.clone()).collect(),
            literal_prefixes: config
                .backends
                .iter()
                .filter_map(|b| Some((b.name.clone(), b.tool_prefix.clone()?)))
                .collect(),
            server_names: config
                .backends
                .iter()
                .filter_map(|b| Some((b.name.clone(), b.server_name.clone()?)))
                .collect(),
        }
    }

    /// The headers a request of `method` routed to `backend` carries (names.md §5): for a
    /// backend with a server name, `x-mcp-servername`, `x-mcp-method` and, for a tool call,
    /// `x-mcp-toolname` = `tool` (the backend's own name); none for any other backend.
    pub fn routed_headers(&self, backend: &str, method: &str, tool: Option<&str>) -> Vec<(String, String)> {
        let Some(server) = self.server_names.get(backend) else { return Vec::new() };
        let mut headers =
            vec![(SERVER_NAME_HEADER.to_owned(), server.clone()), (METHOD_HEADER.to_owned(), method.to_owned())];
        if let Some(tool) = tool {
            headers.push((TOOL_NAME_HEADER.to_owned(), tool.to_owned()));
        }
        headers
    }

    /// The rank of a backend for the priority strategy: listed ones first, then file order.
    fn rank(&self, backend: &str) -> (usize, usize) {
        let file = self.order.iter().position(|b| b == backend).unwrap_or(usize::MAX);
        match &self.strategy {
            Strategy::Priority { order } => (order.iter().position(|b| b == backend).unwrap_or(usize::MAX), file),
            _ => (0, file),
        }
    }
}

fn name_of(item: &Value, key: &str) -> Option<String> {
    item.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// Applies one workload's `excludeAll`, `filter` and `overrides` to its tools; returns
/// `(name after overrides, original name, item)`.
fn shape_tools(rules: &Rules, backend: &str, tools: &[Value]) -> Vec<(String, String, Value)> {
    if rules.exclude_all_tools {
        return Vec::new();
    }
    let cfg = rules.per_workload.get(backend);
    if cfg.is_some_and(|c| c.exclude_all) {
        return Vec::new();
    }
    let mut out = Vec::new();
    for tool in tools {
        let Some(original) = name_of(tool, "name") else { continue };
        let mut item = tool.clone();
        let mut name = original.clone();
        if let Some(o) = cfg.and_then(|c| c.overrides.get(&original)) {
            if let Some(n) = &o.name {
                name.clone_from(n);
            }
            if let (Some(d), Some(obj)) = (&o.description, item.as_object_mut()) {
                obj.insert("description".into(), Value::from(d.as_str()));
            }
        }
        // A filter lists names as the backend spells them or as overridden.
        if let Some(c) = cfg
            && !c.filter.is_empty()
            && !c.filter.iter().any(|f| *f == original || *f == name)
        {
            continue;
        }
        out.push((name, original, item));
    }
    out
}

/// Settles name conflicts by the strategy and builds the advertised list and routes.
/// `candidates` is `(backend, name, original name, item)` in backend file order.
fn resolve(
    rules: &Rules,
    kind: &str,
    candidates: Vec<(String, String, String, Value)>,
) -> (Vec<Value>, HashMap<String, Route>) {
    let mut by_name: BTreeMap<String, Vec<(String, String, Value)>> = BTreeMap::new();
    let mut first_seen: Vec<String> = Vec::new();
    for (backend, name, original, item) in candidates {
        let advertised = match (rules.literal_prefixes.get(&backend), &rules.strategy) {
            (Some(literal), _) => format!("{literal}{name}"),
            (None, Strategy::Prefix { format }) => format!("{}{}", format.replace("{workload}", &backend), name),
            (None, Strategy::Priority { .. } | Strategy::Manual) => name,
        };
        if !by_name.contains_key(&advertised) {
            first_seen.push(advertised.clone());
        }
        by_name.entry(advertised).or_default().push((backend, original, item));
    }
    let mut list = Vec::new();
    let mut routes = HashMap::new();
    for advertised in first_seen {
        let Some(mut claims) = by_name.remove(&advertised) else { continue };
        if claims.len() > 1 {
            match &rules.strategy {
                Strategy::Manual => {
                    let owners: Vec<&str> = claims.iter().map(|c| c.0.as_str()).collect();
                    tracing::error!(
                        %kind, name = %advertised, backends = ?owners,
                        "name conflict not resolved by the manual overrides: the {kind} is dropped; \
                         rename it in aggregation.tools[].overrides"
                    );
                    continue;
                }
                Strategy::Priority { order } if !claims.iter().any(|c| order.contains(&c.0)) => {
                    // No claimant is ranked: every one keeps it under its prefix (ToolHive's
                    // fallback, so nothing is lost).
                    for (backend, original, mut item) in claims {
                        let prefixed =
                            format!("{}{}", DEFAULT_PREFIX_FORMAT.replace("{workload}", &backend), advertised);
                        if routes.contains_key(&prefixed) || by_name.contains_key(&prefixed) {
                            tracing::warn!(%kind, name = %prefixed, %backend, "name taken even after prefixing; dropped");
                            continue;
                        }
                        if let Some(obj) = item.as_object_mut() {
                            obj.insert("name".into(), Value::from(prefixed.as_str()));
                        }
                        list.push(item);
                        routes.insert(prefixed, Route { backend, name: original });
                    }
                    continue;
                }
                _ => {
                    claims.sort_by_key(|c| rules.rank(&c.0));
                    let losers: Vec<&str> = claims[1..].iter().map(|c| c.0.as_str()).collect();
                    tracing::info!(%kind, name = %advertised, winner = %claims[0].0, dropped = ?losers, "name conflict");
                }
            }
        }
        let (backend, original, mut item) = claims.swap_remove(0);
        if routes.contains_key(&advertised) {
            // Taken by an earlier prefix fallback: the first keeps it.
            tracing::warn!(%kind, name = %advertised, %backend, "name already taken; dropped");
            continue;
        }
        if let Some(obj) = item.as_object_mut() {
            obj.insert("name".into(), Value::from(advertised.as_str()));
        }
        list.push(item);
        routes.insert(advertised, Route { backend, name: original });
    }
    (list, routes)
}

/// Builds the catalog from every backend's listing (in any order) and the backends that
/// did not answer.
pub fn aggregate(rules: &Rules, mut listings: Vec<Listing>, missing: Vec<String>) -> Catalog {
    listings.sort_by_key(|l| rules.order.iter().position(|b| *b == l.backend).unwrap_or(usize::MAX));
    let mut tool_candidates = Vec::new();
    let mut prompt_candidates = Vec::new();
    for l in &listings {
        for (name, original, item) in shape_tools(rules, &l.backend, &l.tools) {
            tool_candidates.push((l.backend.clone(), name, original, item));
        }
        for p in &l.prompts {
            if let Some(name) = name_of(p, "name") {
                prompt_candidates.push((l.backend.clone(), name.clone(), name, p.clone()));
            }
        }
    }
    let (tools, tool_routes) = resolve(rules, "tool", tool_candidates);
    let (prompts, prompt_routes) = resolve(rules, "prompt", prompt_candidates);

    // Resource URIs are never rewritten: the first backend (file order) that lists one owns it.
    let mut resources = Vec::new();
    let mut resource_routes = HashMap::new();
    let mut templates = Vec::new();
    let mut template_routes: Vec<(String, String)> = Vec::new();
    let mut seen_templates = HashSet::new();
    for l in &listings {
        for r in &l.resources {
            let Some(uri) = name_of(r, "uri") else { continue };
            if resource_routes.contains_key(&uri) {
                tracing::info!(%uri, dropped = %l.backend, "resource listed by two backends; the first keeps it");
                continue;
            }
            resource_routes.insert(uri, l.backend.clone());
            resources.push(r.clone());
        }
        for t in &l.templates {
            let Some(tpl) = name_of(t, "uriTemplate") else { continue };
            if !seen_templates.insert(tpl.clone()) {
                continue;
            }
            let prefix = tpl.split('{').next().unwrap_or_default().to_owned();
            template_routes.push((prefix, l.backend.clone()));
            templates.push(t.clone());
        }
    }
    template_routes.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
    Catalog {
        tools,
        prompts,
        resources,
        templates,
        tool_routes,
        prompt_routes,
        resource_routes,
        template_routes,
        missing,
    }
}

impl Catalog {
    /// The backend that serves resource `uri`: its lister, else the template it fits.
    pub fn resource_owner(&self, uri: &str) -> Option<&str> {
        if let Some(b) = self.resource_routes.get(uri) {
            return Some(b);
        }
        self.template_routes.iter().find(|(prefix, _)| uri.starts_with(prefix.as_str())).map(|(_, b)| b.as_str())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;
    use crate::config::ToolOverride;

    fn rules(strategy: Strategy) -> Rules {
        Rules {
            strategy,
            exclude_all_tools: false,
            per_workload: HashMap::new(),
            order: vec!["alpha".into(), "beta".into()],
            literal_prefixes: HashMap::new(),
            server_names: HashMap::new(),
        }
    }

    fn listing(backend: &str, tools: &[&str]) -> Listing {
        Listing {
            backend: backend.into(),
            tools: tools.iter().map(|t| json!({"name": t, "description": format!("{backend} {t}")})).collect(),
            ..Listing::default()
        }
    }

    fn names(c: &Catalog) -> Vec<&str> {
        c.tools.iter().map(|t| t["name"].as_str().unwrap()).collect()
    }

    fn two() -> Vec<Listing> {
        vec![listing("beta", &["echo", "only_beta"]), listing("alpha", &["echo", "only_alpha"])]
    }

    #[test]
    fn prefix_names_every_tool_after_its_workload() {
        let c = aggregate(&rules(Strategy::Prefix { format: "{workload}_".into() }), two(), vec![]);
        assert_eq!(names(&c), ["alpha_echo", "alpha_only_alpha", "beta_echo", "beta_only_beta"]);
        assert_eq!(c.tool_routes["beta_echo"], Route { backend: "beta".into(), name: "echo".into() });
        let dotted = aggregate(&rules(Strategy::Prefix { format: "{workload}.".into() }), two(), vec![]);
        assert!(dotted.tool_routes.contains_key("alpha.echo"));
    }

    #[test]
    fn priority_keeps_the_first_listed_and_drops_the_losers() {
        let c = aggregate(&rules(Strategy::Priority { order: vec!["beta".into(), "alpha".into()] }), two(), vec![]);
        assert_eq!(names(&c), ["echo", "only_alpha", "only_beta"]);
        assert_eq!(c.tool_routes["echo"].backend, "beta");
        assert_eq!(c.tools[0]["description"], "beta echo");
    }

    #[test]
    fn priority_prefixes_a_clash_between_unranked_backends() {
        let mut three = two();
        three.push(listing("gamma", &["echo"]));
        let mut r = rules(Strategy::Priority { order: vec!["gamma".into()] });
        r.order.push("gamma".into());
        // gamma is ranked: it keeps `echo` over alpha and beta.
        assert_eq!(aggregate(&r, three.clone(), vec![]).tool_routes["echo"].backend, "gamma");
        // Nobody ranked: both keep it under their prefix.
        let c = aggregate(&rules(Strategy::Priority { order: vec!["nobody".into()] }), two(), vec![]);
        assert_eq!(names(&c), ["alpha_echo", "beta_echo", "only_alpha", "only_beta"]);
        assert_eq!(c.tool_routes["beta_echo"], Route { backend: "beta".into(), name: "echo".into() });
    }

    #[test]
    fn manual_uses_overrides_and_drops_what_still_clashes() {
        let mut r = rules(Strategy::Manual);
        let mut t = WorkloadTools { workload: "beta".into(), ..WorkloadTools::default() };
        t.overrides.insert(
            "echo".into(),
            ToolOverride { name: Some("beta_echo".into()), description: Some("renamed".into()) },
        );
        r.per_workload.insert("beta".into(), t);
        let c = aggregate(&r, two(), vec![]);
        assert_eq!(names(&c), ["echo", "only_alpha", "beta_echo", "only_beta"]);
        assert_eq!(c.tool_routes["beta_echo"], Route { backend: "beta".into(), name: "echo".into() });
        assert_eq!(c.tools[2]["description"], "renamed");
        // Without the override the clash stays and both are dropped.
        let c = aggregate(&rules(Strategy::Manual), two(), vec![]);
        assert_eq!(names(&c), ["only_alpha", "only_beta"]);
    }

    #[test]
    fn filters_and_exclusions() {
        let mut r = rules(Strategy::Priority { order: vec!["alpha".into()] });
        r.per_workload.insert(
            "alpha".into(),
            WorkloadTools { workload: "alpha".into(), filter: vec!["only_alpha".into()], ..WorkloadTools::default() },
        );
        r.per_workload.insert(
            "beta".into(),
            WorkloadTools { workload: "beta".into(), exclude_all: true, ..WorkloadTools::default() },
        );
        let c = aggregate(&r, two(), vec![]);
        assert_eq!(names(&c), ["only_alpha"]);
        assert!(!c.tool_routes.contains_key("echo"));
        r.exclude_all_tools = true;
        assert!(aggregate(&r, two(), vec![]).tools.is_empty());
    }

    #[test]
    fn resources_keep_their_uris_and_the_first_backend_owns_them() {
        let mut a = listing("alpha", &[]);
        a.resources = vec![json!({"uri": "file:///same", "name": "a"})];
        a.templates = vec![json!({"uriTemplate": "test://alpha/{id}", "name": "t"})];
        let mut b = listing("beta", &[]);
        b.resources = vec![json!({"uri": "file:///same", "name": "b"}), json!({"uri": "file:///b", "name": "b2"})];
        b.prompts = vec![json!({"name": "greet"})];
        let c = aggregate(&rules(Strategy::Prefix { format: "{workload}_".into() }), vec![b, a], vec!["gamma".into()]);
        assert_eq!(c.resources.len(), 2);
        assert_eq!(c.resource_owner("file:///same"), Some("alpha"));
        assert_eq!(c.resource_owner("file:///b"), Some("beta"));
        assert_eq!(c.resource_owner("test://alpha/42"), Some("alpha"));
        assert_eq!(c.resource_owner("nope://x"), None);
        assert_eq!(c.prompt_routes["beta_greet"], Route { backend: "beta".into(), name: "greet".into() });
        assert_eq!(c.missing, ["gamma"]);
    }

    #[test]
    fn a_literal_prefix_is_prepended_as_written_and_the_route_keeps_the_backends_name() {
        for strategy in [Strategy::Prefix { format: "{workload}_".into() }, Strategy::Priority { order: vec![] }] {
            let mut r = rules(strategy);
            r.literal_prefixes.insert("alpha".into(), "kube_".into());
            let mut l = two();
            l[0].prompts = vec![json!({"name": "greet"})];
            let c = aggregate(&r, l, vec![]);
            assert!(c.tool_routes.contains_key("kube_echo") && c.tool_routes.contains_key("kube_only_alpha"));
            assert_eq!(c.tool_routes["kube_echo"], Route { backend: "alpha".into(), name: "echo".into() });
            // beta has no literal prefix: the strategy names its tools.
            let beta_echo = if matches!(r.strategy, Strategy::Prefix { .. }) { "beta_echo" } else { "echo" };
            assert_eq!(c.tool_routes[beta_echo].backend, "beta");
            assert!(!c.tool_routes.contains_key("alpha_echo"));
            let shown = c.tools.iter().find(|t| t["name"] == "kube_echo");
            assert_eq!(shown.unwrap()["description"], "alpha echo");
        }
        // An empty literal prefix shows the backend's names unchanged.
        let mut r = rules(Strategy::Prefix { format: "{workload}_".into() });
        r.literal_prefixes.insert("beta".into(), String::new());
        let c = aggregate(&r, two(), vec![]);
        assert_eq!(c.tool_routes["only_beta"], Route { backend: "beta".into(), name: "only_beta".into() });
    }

    #[test]
    fn routed_headers_name_the_server_the_method_and_the_unprefixed_tool() {
        let mut r = rules(Strategy::Manual);
        r.server_names.insert("alpha".into(), "mcp-test/kubernetes-mcp".into());
        let h = r.routed_headers("alpha", "tools/call", Some("namespaces_list"));
        let pairs: Vec<(&str, &str)> = h.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        assert_eq!(
            pairs,
            [
                ("x-mcp-servername", "mcp-test/kubernetes-mcp"),
                ("x-mcp-method", "tools/call"),
                ("x-mcp-toolname", "namespaces_list")
            ]
        );
        assert_eq!(r.routed_headers("alpha", "resources/read", None).len(), 2);
        assert!(r.routed_headers("beta", "tools/call", Some("echo")).is_empty(), "beta is no gateway backend");
    }
}
