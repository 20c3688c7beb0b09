//! The piece the gateway calls: compiled AuthPolicies keyed by the route they target
//! (`<namespace>/<HTTPRoute name>`, the value of `x-mcp-servername`), one shared JWT verifier and
//! one cached metadata fetcher. It decides a routed request, refuses every request of a route
//! whose policy failed to load (fail closed), and filters a tool list by what each tool's
//! `tools/call` would meet.
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use http::HeaderValue;
use serde_json::json;

use crate::cache::{CacheLimits, CacheStats, CachingFetcher, Memo};
use crate::compile::CompiledPolicy;
use crate::error::LoadError;
use crate::eval::Decision;
use crate::fetch::{MetadataFetcher, ReqwestFetcher};
use crate::identity::JwtVerifier;
use crate::model::AuthPolicy;
use crate::oidc::OidcVerifier;
use crate::request::RequestInfo;

/// The headers the gateway sets on routed requests (names.md §5).
pub const SERVER_NAME_HEADER: &str = "x-mcp-servername";
pub const TOOL_NAME_HEADER: &str = "x-mcp-toolname";
pub const METHOD_HEADER: &str = "x-mcp-method";

/// Status of a request to a route whose policy cannot be evaluated.
pub const REFUSED_STATUS: u16 = 503;

/// The route key of the HTTPRoute `policy` targets: `<policy namespace>/<targetRef.name>`.
/// A policy targeting anything else (a Gateway, a `sectionName` of a route) or without a
/// namespace has no route key: the error names the field, for the policy's condition.
pub fn target_route(policy: &AuthPolicy) -> Result<String, LoadError> {
    let target = &policy.spec.target_ref;
    if target.group != "gateway.networking.k8s.io" || target.kind != "HTTPRoute" {
        return Err(LoadError::Unsupported { path: "spec.targetRef.kind".to_owned() });
    }
    if target.section_name.is_some() {
        return Err(LoadError::Unsupported { path: "spec.targetRef.sectionName".to_owned() });
    }
    let Some(namespace) = policy.metadata.namespace.as_deref().filter(|n| !n.is_empty()) else {
        return Err(LoadError::invalid("metadata.namespace", "missing"));
    };
    if target.name.is_empty() {
        return Err(LoadError::invalid("spec.targetRef.name", "empty"));
    }
    Ok(format!("{namespace}/{}", target.name))
}

/// What a route is protected by.
#[derive(Clone)]
enum RouteState {
    Enforced(Arc<CompiledPolicy>),
    /// The policy failed to load: every request is refused.
    Refused(LoadError),
}

/// The enforcer with the real verifier and HTTP client.
pub type OidcEnforcer = Enforcer<OidcVerifier, ReqwestFetcher>;

/// AuthPolicies enforced per route. Share it as `Arc<Enforcer<…>>`.
pub struct Enforcer<V, F> {
    routes: RwLock<HashMap<String, RouteState>>,
    verifier: V,
    fetcher: CachingFetcher<F>,
}

impl<V, F> std::fmt::Debug for Enforcer<V, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let routes: Vec<String> = self.routes.read().map(|r| r.keys().cloned().collect()).unwrap_or_default();
        f.debug_struct("Enforcer").field("routes", &routes).field("fetcher", &self.fetcher).finish()
    }
}

impl<V: JwtVerifier, F: MetadataFetcher> Enforcer<V, F> {
    pub fn new(verifier: V, fetcher: F, limits: CacheLimits) -> Self {
        Enforcer { routes: RwLock::new(HashMap::new()), verifier, fetcher: CachingFetcher::new(fetcher, limits) }
    }

    /// Protects `route` with `policy`, or — when it failed to load — refuses its traffic.
    /// Replaces what the route had.
    pub fn set_policy(&self, route: &str, policy: Result<CompiledPolicy, LoadError>) {
        let state = match policy {
            Ok(p) => RouteState::Enforced(Arc::new(p)),
            Err(e) => RouteState::Refused(e),
        };
        if let Ok(mut routes) = self.routes.write() {
            routes.insert(route.to_owned(), state);
        }
    }

    /// The route has no AuthPolicy any more: its requests pass unevaluated.
    pub fn remove_policy(&self, route: &str) {
        if let Ok(mut routes) = self.routes.write() {
            routes.remove(route);
        }
    }

    /// `None`: no policy; `Some(Ok(()))`: enforced; `Some(Err(e))`: refused, `e.path()` names
    /// the field (for the route's or the policy's status condition).
    pub fn policy_status(&self, route: &str) -> Option<Result<(), LoadError>> {
        let routes = self.routes.read().ok()?;
        routes.get(route).map(|s| match s {
            RouteState::Enforced(_) => Ok(()),
            RouteState::Refused(e) => Err(e.clone()),
        })
    }

    pub fn cache_stats(&self) -> CacheStats {
        self.fetcher.stats()
    }

    /// `Err` carries the refusal; `Ok(None)` means no policy.
    fn state(&self, route: &str) -> Result<Option<Arc<CompiledPolicy>>, Decision> {
        let Ok(routes) = self.routes.read() else {
            return Err(refused("the enforcer's state is unusable"));
        };
        match routes.get(route) {
            None => Ok(None),
            Some(RouteState::Enforced(p)) => Ok(Some(Arc::clone(p))),
            Some(RouteState::Refused(e)) => Err(refused(&e.to_string())),
        }
    }

    /// Decides one request routed to `route`. `request` carries the caller's headers (with
    /// `authorization`) and the `x-mcp-servername`, `x-mcp-toolname` and `x-mcp-method` the
    /// gateway set. A route without a policy is allowed with no headers to set.
    pub async fn enforce(&self, route: &str, request: &RequestInfo) -> Decision {
        match self.state(route) {
            Err(deny) => deny,
            Ok(None) => Decision::Allow { headers_to_set: Vec::new() },
            Ok(Some(policy)) => policy.evaluate(request, &self.verifier, &self.fetcher).await,
        }
    }

    /// The tools of `route` (unprefixed names) the caller of `request` may call: each decided as
    /// its `tools/call` would be (`x-mcp-servername` = `route`, `x-mcp-method` = `tools/call`,
    /// `x-mcp-toolname` = the tool, no body). The exchange is cached, so a list costs one
    /// exchange per caller and route. A refused route shows nothing.
    pub async fn visible_tools(&self, route: &str, request: &RequestInfo, tools: &[String]) -> Vec<String> {
        let policy = match self.state(route) {
            Err(_) => return Vec::new(),
            Ok(None) => return tools.to_vec(),
            Ok(Some(policy)) => policy,
        };
        let Ok(server) = HeaderValue::from_str(route) else { return Vec::new() };
        let mut call = request.clone();
        call.body = None;
        call.headers.insert(SERVER_NAME_HEADER, server);
        call.headers.insert(METHOD_HEADER, HeaderValue::from_static("tools/call"));
        // The list's evaluations share metadata answers, refusals included (see `Memo`).
        let fetcher = Memo::new(&self.fetcher);
        let mut visible = Vec::new();
        for tool in tools {
            // A name that cannot be a header value could not be called through the gateway either.
            let Ok(name) = HeaderValue::from_str(tool) else { continue };
            call.headers.insert(TOOL_NAME_HEADER, name);
            if let Decision::Allow { .. } = policy.evaluate(&call, &self.verifier, &fetcher).await {
                visible.push(tool.clone());
            }
        }
        visible
    }
}

/// The answer of a route whose policy cannot be evaluated.
fn refused(why: &str) -> Decision {
    let body = json!({"error": "ServiceUnavailable", "message": format!("AuthPolicy not enforced: {why}")});
    Decision::Deny {
        status: REFUSED_STATUS,
        headers: vec![("Content-Type".to_owned(), "application/json".to_owned())],
        body: Some(body.to_string()),
        reason: format!("route refused: {why}"),
    }
}
