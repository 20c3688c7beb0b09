//! The routes' AuthPolicies as the vMCP's [`RouteAuth`]: a request routed to a backend is
//! decided by the policy of its route (the backend's `serverName`, `<namespace>/<HTTPRoute>`),
//! and a list keeps only the tools whose `tools/call` that policy would let through. The
//! request the policy sees is the caller's (its headers, `authorization` included) with the
//! gateway's `x-mcp-*` headers set as names.md §5 says.

use std::sync::Arc;

use apiary_authpolicy::{
    Decision, Enforcer, JwtVerifier, METHOD_HEADER, MetadataFetcher, RequestInfo, SERVER_NAME_HEADER, TOOL_NAME_HEADER,
};
use apiary_vmcp::route_auth::AuthFuture;
use apiary_vmcp::{GatewayCaller, Refusal, RouteAuth};
use http::{HeaderMap, HeaderValue, Method};

/// The prefix of the gateway's own headers: a caller's are dropped, so a policy only ever
/// sees the ones the gateway set.
const GATEWAY_HEADER_PREFIX: &str = "x-mcp-";

/// The caller's headers without any `x-mcp-*` it sent.
pub fn caller_headers(headers: &HeaderMap) -> HeaderMap {
    let mut own = headers.clone();
    let theirs: Vec<http::HeaderName> =
        own.keys().filter(|n| n.as_str().starts_with(GATEWAY_HEADER_PREFIX)).cloned().collect();
    for name in theirs {
        own.remove(name);
    }
    own
}

/// The request a policy decides: `caller`'s, routed to `server_name` as `method` (a
/// `tools/call` of `tool`). `None` when a name cannot be a header value (such a request could
/// not have been routed by a gateway either).
pub fn request_info(
    caller: &GatewayCaller,
    server_name: &str,
    method: &str,
    tool: Option<&str>,
) -> Option<RequestInfo> {
    let mut headers = caller.headers.clone();
    headers.insert(SERVER_NAME_HEADER, HeaderValue::from_str(server_name).ok()?);
    headers.insert(METHOD_HEADER, HeaderValue::from_str(method).ok()?);
    match tool {
        Some(t) => headers.insert(TOOL_NAME_HEADER, HeaderValue::from_str(t).ok()?),
        None => headers.remove(TOOL_NAME_HEADER),
    };
    Some(RequestInfo {
        method: Method::POST,
        scheme: caller.scheme.clone(),
        host: caller.host.clone(),
        path: caller.path.clone(),
        headers,
        body: None,
    })
}

/// The refusal of a denied request, for a JSON-RPC error (the HTTP answer is the middleware's).
fn refusal(decision: Decision) -> Result<Vec<(String, String)>, Refusal> {
    match decision {
        Decision::Allow { headers_to_set } => Ok(headers_to_set),
        Decision::Deny { status, body, .. } => {
            let message = body
                .as_deref()
                .and_then(|b| serde_json::from_str::<serde_json::Value>(b).ok())
                .and_then(|v| v.get("message").and_then(serde_json::Value::as_str).map(str::to_owned))
                .unwrap_or_else(|| format!("refused by the route's AuthPolicy (HTTP {status})"));
            Err(Refusal { status, message })
        }
    }
}

/// [`RouteAuth`] over an [`Enforcer`].
pub struct PolicyAuth<V, F> {
    enforcer: Arc<Enforcer<V, F>>,
}

impl<V, F> PolicyAuth<V, F> {
    pub fn new(enforcer: Arc<Enforcer<V, F>>) -> Self {
        PolicyAuth { enforcer }
    }
}

impl<V: JwtVerifier + 'static, F: MetadataFetcher + 'static> RouteAuth for PolicyAuth<V, F> {
    fn visible_tools<'a>(
        &'a self,
        caller: &'a GatewayCaller,
        server_name: &'a str,
        tools: &'a [String],
    ) -> AuthFuture<'a, Vec<String>> {
        Box::pin(async move {
            let Some(request) = request_info(caller, server_name, "tools/list", None) else { return Vec::new() };
            self.enforcer.visible_tools(server_name, &request, tools).await
        })
    }

    fn decide<'a>(
        &'a self,
        caller: &'a GatewayCaller,
        server_name: &'a str,
        method: &'a str,
        tool: Option<&'a str>,
    ) -> AuthFuture<'a, Result<Vec<(String, String)>, Refusal>> {
        Box::pin(async move {
            let Some(request) = request_info(caller, server_name, method, tool) else {
                return Err(Refusal { status: 400, message: "a name cannot be a header value".into() });
            };
            refusal(self.enforcer.enforce(server_name, &request).await)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_policy_sees_the_gateways_headers_never_the_callers_own() {
        let mut sent = HeaderMap::new();
        sent.insert("authorization", "Bearer t".parse().unwrap());
        sent.insert("x-mcp-servername", "forged/route".parse().unwrap());
        sent.insert("x-mcp-toolname", "forged".parse().unwrap());
        let caller = GatewayCaller { headers: caller_headers(&sent), host: "h:1".into(), ..Default::default() };
        assert!(caller.headers.get("x-mcp-toolname").is_none());
        let r = request_info(&caller, "mcp-test/kubernetes-mcp", "tools/call", Some("pods_list")).unwrap();
        assert_eq!(r.header("x-mcp-servername").unwrap(), "mcp-test/kubernetes-mcp");
        assert_eq!(r.header("x-mcp-toolname").unwrap(), "pods_list");
        assert_eq!(r.header("x-mcp-method").unwrap(), "tools/call");
        assert_eq!(r.header("authorization").unwrap(), "Bearer t");
        let r = request_info(&caller, "mcp-test/kubernetes-mcp", "prompts/get", None).unwrap();
        assert!(r.header("x-mcp-toolname").is_none());
        assert!(request_info(&caller, "bad\nname", "tools/call", None).is_none());
    }

    #[test]
    fn a_denial_becomes_a_refusal_with_the_policys_message() {
        let body =
            r#"{"error": "Forbidden", "message": "MCP Tool Access denied: Insufficient permissions for this tool."}"#;
        let d = Decision::Deny { status: 403, headers: Vec::new(), body: Some(body.into()), reason: String::new() };
        let r = refusal(d).unwrap_err();
        assert_eq!(r.status, 403);
        assert_eq!(r.message, "MCP Tool Access denied: Insufficient permissions for this tool.");
        let d = Decision::Deny { status: 503, headers: Vec::new(), body: None, reason: String::new() };
        assert_eq!(refusal(d).unwrap_err().message, "refused by the route's AuthPolicy (HTTP 503)");
        let ok = refusal(Decision::Allow { headers_to_set: vec![("a".into(), "b".into())] }).unwrap();
        assert_eq!(ok, vec![("a".to_owned(), "b".to_owned())]);
    }
}
