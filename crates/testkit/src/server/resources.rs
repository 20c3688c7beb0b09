//! The fixture resources: a static text, a static binary, a watched resource whose content
//! changes when the `touch_resource` tool bumps it, and the `test://template/{id}/data` template.
//! Also the per-connection subscription set behind `resources/subscribe`.

use std::collections::HashSet;
use std::sync::Mutex;

use rmcp::ErrorData as McpError;
use rmcp::model::{Resource, ResourceContents, ResourceTemplate};
use serde_json::json;

use super::fixtures;

/// URI of the static text resource.
pub const STATIC_TEXT_URI: &str = "test://static-text";
/// URI of the static binary resource.
pub const STATIC_BINARY_URI: &str = "test://static-binary";
/// URI of the resource clients subscribe to; its content carries a version number.
pub const WATCHED_URI: &str = "test://watched-resource";
/// The one resource template.
pub const TEMPLATE_URI: &str = "test://template/{id}/data";

const TEMPLATE_PREFIX: &str = "test://template/";
const TEMPLATE_SUFFIX: &str = "/data";
/// Longest `{id}` the template accepts; keeps reads bounded.
const MAX_TEMPLATE_ID_LEN: usize = 256;
/// Most URIs one connection may subscribe to at once.
const MAX_SUBSCRIPTIONS: usize = 1024;

/// The direct resources `resources/list` returns.
pub fn list() -> Vec<Resource> {
    vec![
        Resource::new(STATIC_TEXT_URI, "static-text")
            .with_description("A static text resource for testing")
            .with_mime_type("text/plain"),
        Resource::new(STATIC_BINARY_URI, "static-binary")
            .with_description("A static binary resource (a 1x1 PNG) for testing")
            .with_mime_type(fixtures::PNG_MIME),
        Resource::new(WATCHED_URI, "watched-resource")
            .with_description("A resource to subscribe to; touch_resource changes it")
            .with_mime_type("text/plain"),
    ]
}

/// The templates `resources/templates/list` returns.
pub fn templates() -> Vec<ResourceTemplate> {
    vec![
        ResourceTemplate::new(TEMPLATE_URI, "template-data")
            .with_description("JSON data for the id substituted into the URI")
            .with_mime_type("application/json"),
    ]
}

/// Reads `uri`; `watched_version` is the current version of the watched resource.
pub fn read(uri: &str, watched_version: u64) -> Result<Vec<ResourceContents>, McpError> {
    let contents = match uri {
        STATIC_TEXT_URI => ResourceContents::text(fixtures::STATIC_TEXT, uri).with_mime_type("text/plain"),
        STATIC_BINARY_URI => {
            ResourceContents::blob(fixtures::RED_PIXEL_PNG_BASE64, uri).with_mime_type(fixtures::PNG_MIME)
        }
        WATCHED_URI => ResourceContents::text(format!("Watched resource, version {watched_version}"), uri)
            .with_mime_type("text/plain"),
        _ => match template_id(uri) {
            Some(id) => {
                let body = json!({ "id": id, "templateTest": true, "data": format!("Data for ID: {id}") });
                ResourceContents::text(body.to_string(), uri).with_mime_type("application/json")
            }
            None => return Err(not_found(uri)),
        },
    };
    Ok(vec![contents])
}

/// The `{id}` of a URI matching [`TEMPLATE_URI`], if it matches.
pub fn template_id(uri: &str) -> Option<&str> {
    let id = uri.strip_prefix(TEMPLATE_PREFIX)?.strip_suffix(TEMPLATE_SUFFIX)?;
    let valid = !id.is_empty() && id.len() <= MAX_TEMPLATE_ID_LEN && !id.contains('/');
    valid.then_some(id)
}

/// Whether `uri` names a resource this server has (directly or through the template).
pub fn exists(uri: &str) -> bool {
    matches!(uri, STATIC_TEXT_URI | STATIC_BINARY_URI | WATCHED_URI) || template_id(uri).is_some()
}

/// The error for an unknown URI: `-32002` with the URI in `data`, as SEP-2164 asks.
pub fn not_found(uri: &str) -> McpError {
    McpError::resource_not_found(format!("Resource not found: {uri}"), Some(json!({ "uri": uri })))
}

/// The URIs one connection subscribed to.
#[derive(Debug, Default)]
pub struct Subscriptions {
    uris: Mutex<HashSet<String>>,
}

impl Subscriptions {
    /// Adds `uri`; fails once the connection holds [`MAX_SUBSCRIPTIONS`] subscriptions.
    pub fn subscribe(&self, uri: &str) -> Result<(), McpError> {
        let mut uris = self.lock();
        if uris.len() >= MAX_SUBSCRIPTIONS && !uris.contains(uri) {
            return Err(McpError::invalid_params(format!("too many subscriptions (limit {MAX_SUBSCRIPTIONS})"), None));
        }
        uris.insert(uri.to_owned());
        Ok(())
    }

    /// Removes `uri`; unsubscribing from something not subscribed is not an error.
    pub fn unsubscribe(&self, uri: &str) {
        self.lock().remove(uri);
    }

    /// Whether `uri` is subscribed.
    pub fn contains(&self, uri: &str) -> bool {
        self.lock().contains(uri)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        // A poisoned set is still a valid set: recover it rather than fail every later call.
        self.uris.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_ids_are_extracted_and_bounded() {
        assert_eq!(template_id("test://template/123/data"), Some("123"));
        assert_eq!(template_id("test://template//data"), None);
        assert_eq!(template_id("test://template/a/b/data"), None);
        assert_eq!(template_id("test://template/123"), None);
        let long = format!("test://template/{}/data", "x".repeat(MAX_TEMPLATE_ID_LEN + 1));
        assert_eq!(template_id(&long), None);
    }

    #[test]
    fn template_read_substitutes_the_id() {
        let contents = read("test://template/123/data", 0).unwrap();
        let text = serde_json::to_value(&contents[0]).unwrap();
        let body: serde_json::Value = serde_json::from_str(text["text"].as_str().unwrap()).unwrap();
        assert_eq!(body["id"], "123");
        assert_eq!(body["data"], "Data for ID: 123");
    }

    #[test]
    fn unknown_uri_is_not_found_with_the_uri_in_data() {
        let error = read("test://nope", 0).unwrap_err();
        assert_eq!(error.code.0, -32002);
        assert_eq!(error.data, Some(json!({ "uri": "test://nope" })));
    }

    #[test]
    fn subscriptions_are_bounded() {
        let subs = Subscriptions::default();
        for i in 0..MAX_SUBSCRIPTIONS {
            subs.subscribe(&format!("test://{i}")).unwrap();
        }
        assert!(subs.subscribe("test://one-too-many").is_err());
        subs.subscribe("test://0").unwrap();
        subs.unsubscribe("test://0");
        assert!(!subs.contains("test://0"));
        subs.subscribe("test://one-too-many").unwrap();
    }
}
