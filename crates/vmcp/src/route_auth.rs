//! Per-route authorization of routed requests (Apiary's gateway: the route's AuthPolicy). The
//! gateway decides each request as the caller sent it, in front of the proxy's front, and
//! names the caller — its HTTP headers, and for an allowed `tools/call` the grant — to the
//! instance by a one-shot ticket in `params._meta` ([`GATEWAY_TICKET_META`]). The instance
//! then, for backends with a `serverName` only: lists just the tools [`RouteAuth::visible_tools`]
//! keeps for that caller, sets the grant's headers (the exchanged `Authorization`) on the
//! forwarded call, and decides anything else it routes there again ([`RouteAuth::decide`]),
//! refusing on denial. No ticket means no caller: such backends are not listed and not
//! reached (fail closed). Without a [`RouteAuth`] nothing of this applies.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use apiary_transport::launch::Tickets;
use axum::http::HeaderMap;

/// The `params._meta` member naming a request's gateway caller: a one-shot ticket, never a
/// header value.
pub const GATEWAY_TICKET_META: &str = "apiary/gatewayTicket";

/// What the gateway decided for one `tools/call`: it may reach `server_name`'s `tool` with
/// `headers_to_set` set on the backend request (replacing the registration's credential).
#[derive(Clone, PartialEq, Eq)]
pub struct Grant {
    /// The backend's `serverName` (`x-mcp-servername`, the route key).
    pub server_name: String,
    /// The tool's unprefixed name (`x-mcp-toolname`).
    pub tool: String,
    /// The policy's `response.success.headers`; values are credentials.
    pub headers_to_set: Vec<(String, String)>,
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers_to_set.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Grant")
            .field("server_name", &self.server_name)
            .field("tool", &self.tool)
            .field("headers_to_set", &names)
            .finish()
    }
}

/// The caller of one request as the gateway saw it.
#[derive(Clone, Default)]
pub struct GatewayCaller {
    /// `http` or `https`.
    pub scheme: String,
    /// The request's Host.
    pub host: String,
    /// Path and query as sent (`/mcp`).
    pub path: String,
    /// The caller's HTTP headers, `authorization` included; held in memory only.
    pub headers: HeaderMap,
    /// Set for a `tools/call` the gateway allowed.
    pub grant: Option<Grant>,
}

impl fmt::Debug for GatewayCaller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.keys().map(|n| n.as_str()).collect();
        f.debug_struct("GatewayCaller")
            .field("host", &self.host)
            .field("path", &self.path)
            .field("headers", &names)
            .field("grant", &self.grant)
            .finish()
    }
}

/// Outstanding gateway tickets: one per request between the gateway's middleware and its
/// instance, so room for many sessions' requests at once.
const MAX_GATEWAY_TICKETS: usize = 16_384;

/// The gateway callers lent and not yet redeemed.
static TICKETS: std::sync::LazyLock<Tickets<Arc<GatewayCaller>>> =
    std::sync::LazyLock::new(|| Tickets::with_capacity(MAX_GATEWAY_TICKETS));

tokio::task_local! {
    /// The gateway caller of the request being served.
    static REQUEST_GATEWAY_CALLER: Arc<GatewayCaller>;
}

impl GatewayCaller {
    /// A one-shot ticket naming this caller, for [`GATEWAY_TICKET_META`].
    pub fn lend(self) -> String {
        TICKETS.lend(Arc::new(self))
    }

    /// The caller a ticket names, once.
    pub fn redeem(ticket: &str) -> Option<Arc<GatewayCaller>> {
        TICKETS.redeem(ticket)
    }

    /// Runs `f` (the serving of one request) with `caller` as its gateway caller.
    pub async fn scope<F: Future>(caller: Arc<GatewayCaller>, f: F) -> F::Output {
        REQUEST_GATEWAY_CALLER.scope(caller, f).await
    }

    /// The gateway caller of the request being served (inside [`GatewayCaller::scope`]).
    pub fn of_current_request() -> Option<Arc<GatewayCaller>> {
        REQUEST_GATEWAY_CALLER.try_with(Arc::clone).ok()
    }

    /// The grant's headers when it names `server_name`'s `tool`.
    pub fn granted(&self, server_name: &str, tool: &str) -> Option<&[(String, String)]> {
        self.grant
            .as_ref()
            .filter(|g| g.server_name == server_name && g.tool == tool)
            .map(|g| g.headers_to_set.as_slice())
    }
}

/// A routed request the route's policy refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status the policy answers with (401, 403, 503).
    pub status: u16,
    /// For the JSON-RPC error; never holds a credential.
    pub message: String,
}

pub type AuthFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The authorization of routes, keyed by a backend's `serverName`.
pub trait RouteAuth: Send + Sync + 'static {
    /// The tools of `server_name` (its own names) `caller` may call, in the order given.
    fn visible_tools<'a>(
        &'a self,
        caller: &'a GatewayCaller,
        server_name: &'a str,
        tools: &'a [String],
    ) -> AuthFuture<'a, Vec<String>>;

    /// Decides one request of `method` (`tool`: a `tools/call`'s unprefixed tool) routed to
    /// `server_name`: the headers to set on it, or the refusal.
    fn decide<'a>(
        &'a self,
        caller: &'a GatewayCaller,
        server_name: &'a str,
        method: &'a str,
        tool: Option<&'a str>,
    ) -> AuthFuture<'a, Result<Vec<(String, String)>, Refusal>>;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn caller() -> GatewayCaller {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer caller-secret".parse().unwrap());
        GatewayCaller {
            scheme: "http".into(),
            host: "h".into(),
            path: "/mcp".into(),
            headers,
            grant: Some(Grant {
                server_name: "ns/route".into(),
                tool: "pods_list".into(),
                headers_to_set: vec![("authorization".into(), "Bearer exchanged-secret".into())],
            }),
        }
    }

    #[test]
    fn a_gateway_ticket_is_redeemed_once_and_never_prints_a_credential() {
        let printed = format!("{:?}", caller());
        assert!(!printed.contains("secret"), "{printed}");
        let ticket = caller().lend();
        let got = GatewayCaller::redeem(&ticket).unwrap();
        assert!(GatewayCaller::redeem(&ticket).is_none(), "once");
        assert_eq!(got.granted("ns/route", "pods_list").unwrap()[0].1, "Bearer exchanged-secret");
        assert!(got.granted("ns/route", "pods_delete").is_none());
        assert!(got.granted("ns/other", "pods_list").is_none());
    }

    #[tokio::test]
    async fn the_gateway_caller_is_seen_only_inside_its_scope() {
        assert!(GatewayCaller::of_current_request().is_none());
        let seen = GatewayCaller::scope(Arc::new(caller()), async { GatewayCaller::of_current_request() }).await;
        assert_eq!(seen.unwrap().path, "/mcp");
        assert!(GatewayCaller::of_current_request().is_none());
    }
}
