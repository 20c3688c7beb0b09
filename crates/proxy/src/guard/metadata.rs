//! RFC 9728 protected-resource metadata: where a client learns which authorization server
//! issues tokens for this proxy. Served without authentication, at the bare path and at the
//! path of the resource (`/.well-known/oauth-protected-resource/mcp`); 404 when no resource
//! URL is configured.

use std::sync::Arc;

use apiary_policy::authn::Authenticator;
use axum::body::Body;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::Guard;

/// The well-known path of the metadata document.
pub(crate) const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// `GET /.well-known/oauth-protected-resource[/<path>]`.
pub(crate) async fn protected_resource(guard: Arc<Guard>, method: Method) -> Response {
    let doc = guard.authn.as_ref().and_then(Authenticator::resource_metadata);
    let mut res = match (method, doc) {
        (Method::OPTIONS, _) => StatusCode::NO_CONTENT.into_response(),
        (Method::GET | Method::HEAD, Some(doc)) => {
            let mut r = Response::new(Body::from(doc.to_string()));
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
        (Method::GET | Method::HEAD, None) => StatusCode::NOT_FOUND.into_response(),
        _ => {
            let mut r = StatusCode::METHOD_NOT_ALLOWED.into_response();
            r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, OPTIONS"));
            r
        }
    };
    // Browser-based clients read it from another origin.
    let h = res.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, OPTIONS"));
    res
}

/// The metadata URL a 401 points at: the configured resource's origin, the well-known path,
/// then the resource's own path. None when no resource URL is set (there is no document).
pub(crate) fn resource_metadata_url(authn: &Authenticator) -> Option<String> {
    let doc = authn.resource_metadata()?;
    let resource = doc.get("resource")?.as_str()?;
    let url = url::Url::parse(resource).ok()?;
    let path = url.path().trim_end_matches('/');
    Some(format!("{}{WELL_KNOWN}{path}", url.origin().ascii_serialization()))
}
