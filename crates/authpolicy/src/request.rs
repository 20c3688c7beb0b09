//! The request being authorized, and the authorization JSON built from it: the data CEL sees as
//! variables and Rego sees as `input`, in Authorino's shape (`request.*` well-known attributes,
//! `auth.identity`, `auth.metadata`, `auth.authorization`).
use bytes::Bytes;
use http::{HeaderMap, Method};
use serde_json::{Map, Value, json};

/// The request as the gateway received it (with the `x-mcp-*` headers it set).
#[derive(Debug, Clone)]
pub struct RequestInfo {
    pub method: Method,
    /// `http` or `https`.
    pub scheme: String,
    /// The Host (`:authority`), as sent.
    pub host: String,
    /// Path and query, as sent (`/mcp?x=1`).
    pub path: String,
    pub headers: HeaderMap,
    /// The body, when the caller buffered it; exposed as `request.body` (lossy UTF-8).
    pub body: Option<Bytes>,
}

impl RequestInfo {
    /// The value of `name` (lower-case), several values joined by `,` as Envoy does.
    pub fn header(&self, name: &str) -> Option<String> {
        let values: Vec<&str> = self.headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect();
        (!values.is_empty()).then(|| values.join(","))
    }

    /// `request.*`: Authorino's well-known request attributes.
    pub(crate) fn attributes(&self) -> Value {
        let mut headers = Map::new();
        for name in self.headers.keys() {
            if let Some(value) = self.header(name.as_str()) {
                headers.insert(name.as_str().to_owned(), Value::String(value));
            }
        }
        let (url_path, query) = match self.path.split_once('?') {
            Some((p, q)) => (p, q),
            None => (self.path.as_str(), ""),
        };
        let mut attrs = json!({
            "method": self.method.as_str(),
            "scheme": self.scheme,
            "host": self.host,
            "path": self.path,
            "url_path": url_path,
            "query": query,
            "headers": headers,
            "size": self.body.as_ref().map_or(0, |b| b.len()),
        });
        if let Value::Object(map) = &mut attrs {
            for (attr, header) in [("useragent", "user-agent"), ("referer", "referer")] {
                if let Some(v) = self.header(header) {
                    map.insert(attr.to_owned(), Value::String(v));
                }
            }
            if let Some(body) = &self.body {
                let text = String::from_utf8_lossy(body).into_owned();
                map.insert("body".to_owned(), Value::String(text));
            }
        }
        attrs
    }
}

/// What the phases have produced so far (`auth.*`).
#[derive(Debug, Default)]
pub(crate) struct AuthData {
    pub identity: Value,
    pub metadata: Map<String, Value>,
    pub authorization: Map<String, Value>,
    pub response: Map<String, Value>,
}

/// The authorization JSON of one evaluation step.
pub(crate) fn authorization_json(request: &Value, auth: &AuthData) -> Value {
    json!({
        "request": request,
        "source": {},
        "destination": {},
        "metadata": {},
        "auth": {
            "identity": auth.identity,
            "metadata": auth.metadata,
            "authorization": auth.authorization,
            "response": auth.response,
        },
    })
}
