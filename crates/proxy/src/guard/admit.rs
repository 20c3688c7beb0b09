//! The message half of the policy: one parsed client message checked against the tool filter
//! and the authorization policy, and, for a list, the reshape its answer will get.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use apiary_policy::Identity;
use apiary_policy::authz::{Feature, Target};
use apiary_policy::tools::{ItemFate, ListItem, ListKind, shape_list, with_call_name};
use apiary_protocol::{Message, methods};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{Guard, Reshape};
use crate::answer::{self, Refusal, Unfilterable};

/// What a client message becomes once admitted.
pub(crate) struct Admitted {
    /// The message to forward (rewritten when a renamed tool was called).
    pub message: Message,
    /// How its answer is reshaped (a list the policy filters).
    pub reshape: Option<Reshape>,
}

/// What the policy needs of a call's params; everything else stays raw. The arguments are
/// parsed only when a policy reads them ([`policy_arguments`]).
#[derive(Deserialize)]
struct NamedParams<'a> {
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    uri: Option<Cow<'a, str>>,
    #[serde(borrow)]
    arguments: Option<&'a RawValue>,
}

impl NamedParams<'_> {
    fn policy_arguments(&self) -> Option<Map<String, Value>> {
        self.arguments.and_then(policy_arguments)
    }
}

/// A call's arguments as the policy reads them. `serde_json::Value` cannot hold a number past
/// f64 (`1e400`), which is valid JSON a server may accept: such a number is read as ±f64::MAX,
/// which no Cedar decimal holds either, so its attribute is left out like any other
/// out-of-range number and a policy that reads it denies (never a bypass). A list or object
/// holding one is read as empty (the policy only sees that it is present). Arguments that are
/// not an object give none. The bytes forwarded are never these values.
fn policy_arguments(raw: &RawValue) -> Option<Map<String, Value>> {
    if let Ok(map) = serde_json::from_str::<Map<String, Value>>(raw.get()) {
        return Some(map);
    }
    let members: BTreeMap<String, &RawValue> = serde_json::from_str(raw.get()).ok()?;
    Some(members.into_iter().map(|(k, v)| (k, lossy_value(v))).collect())
}

fn lossy_value(raw: &RawValue) -> Value {
    serde_json::from_str(raw.get()).unwrap_or_else(|_| match raw.get().trim_start().as_bytes().first() {
        Some(b'{') => Value::Object(Map::new()),
        Some(b'[') => Value::Array(Vec::new()),
        Some(b'-') => Value::from(-f64::MAX),
        _ => Value::from(f64::MAX),
    })
}

impl Guard {
    /// Checks one client message. Requests the policy does not concern pass as they are.
    pub(crate) fn admit(self: &Arc<Self>, who: &Arc<Identity>, m: Message) -> Result<Admitted, Refusal> {
        if !self.checks_messages() || !m.is_request() {
            return Ok(Admitted { message: m, reshape: None });
        }
        let id = m.id_raw().map(str::to_owned);
        let method = m.method().unwrap_or_default();
        match method {
            methods::TOOLS_CALL => self.admit_call(who, m, id),
            methods::PROMPTS_GET | methods::RESOURCES_READ => {
                let (feature, action) = if method == methods::PROMPTS_GET {
                    (Feature::Prompt, "get_prompt")
                } else {
                    (Feature::Resource, "read_resource")
                };
                if let Some(authz) = &self.authz {
                    let params: Option<NamedParams<'_>> = m.params_as();
                    let name = params.as_ref().and_then(|p| {
                        if method == methods::PROMPTS_GET { p.name.as_deref() } else { p.uri.as_deref() }
                    });
                    let Some(name) = name else {
                        return Err(Refusal::invalid_with_id("params.name (or uri) missing", id.as_deref()));
                    };
                    let arguments = params.as_ref().and_then(NamedParams::policy_arguments);
                    let target = Target { feature, name, arguments: arguments.as_ref(), annotations: None };
                    deny_unless(authz.authorize_shared(who, &target).allowed, action, id)?;
                }
                Ok(Admitted { message: m, reshape: None })
            }
            methods::TOOLS_LIST => Ok(self.admit_list(who, m, ListKind::Tools, id)),
            methods::PROMPTS_LIST if self.authz.is_some() => Ok(self.admit_list(who, m, ListKind::Prompts, id)),
            methods::RESOURCES_LIST if self.authz.is_some() => Ok(self.admit_list(who, m, ListKind::Resources, id)),
            _ => Ok(Admitted { message: m, reshape: None }),
        }
    }

    /// `tools/call`: a hidden tool does not exist; a renamed one is called by its server name;
    /// then the policy decides on the server's name, the arguments and the server's annotations.
    fn admit_call(self: &Arc<Self>, who: &Arc<Identity>, m: Message, id: Option<String>) -> Result<Admitted, Refusal> {
        let params: Option<NamedParams<'_>> = m.params_as();
        let Some(name) = params.as_ref().and_then(|p| p.name.as_deref()) else {
            return Err(Refusal::invalid_with_id("params.name missing", id.as_deref()));
        };
        let mut server_name = Cow::Borrowed(name);
        let mut renamed = false;
        if let Some(tools) = &self.tools {
            match tools.resolve_call(name) {
                Err(_) => return Err(Refusal::UnknownTool { name: name.to_owned(), id }),
                Ok(Some(orig)) => {
                    server_name = Cow::Owned(orig.to_owned());
                    renamed = true;
                }
                Ok(None) => {}
            }
        }
        if let Some(authz) = &self.authz {
            let annotations = self.annotations_of(&server_name);
            let arguments = params.as_ref().and_then(NamedParams::policy_arguments);
            let target = Target {
                feature: Feature::Tool,
                name: &server_name,
                arguments: arguments.as_ref(),
                annotations: annotations.as_ref(),
            };
            deny_unless(authz.authorize_shared(who, &target).allowed, "call_tool", id.clone())?;
        }
        let message = if renamed {
            let bytes = with_call_name(m.bytes(), &server_name)
                .map_err(|e| Refusal::invalid_with_id(format!("cannot rename the tool: {e}"), id.as_deref()))?;
            Message::parse(bytes).map_err(Refusal::Parse)?
        } else {
            drop(params);
            m
        };
        Ok(Admitted { message, reshape: None })
    }

    /// A list: forwarded as it is; its answer keeps only what this caller may use, under the
    /// names the tool filter gives.
    fn admit_list(self: &Arc<Self>, who: &Arc<Identity>, m: Message, kind: ListKind, id: Option<String>) -> Admitted {
        let guard = Arc::clone(self);
        let who = Arc::clone(who);
        let reshape: Reshape = Box::new(move |frame: Bytes| {
            match shape_list(&frame, kind, |item| guard.fate(&who, kind, item)) {
                Ok(Some(shaped)) => shaped,
                Ok(None) => frame,
                Err(e) => {
                    // A list that cannot be filtered is not passed on unfiltered.
                    tracing::warn!(error = %e, "a list answer could not be filtered; answering with an error");
                    answer::unfilterable(id.as_deref(), Unfilterable::Malformed)
                }
            }
        });
        Admitted { message: m, reshape: Some(reshape) }
    }

    /// What one listed item becomes for this caller.
    fn fate(&self, who: &Arc<Identity>, kind: ListKind, item: &ListItem<'_>) -> ItemFate {
        let (feature, name) = match kind {
            ListKind::Tools => (Feature::Tool, item.name),
            ListKind::Prompts => (Feature::Prompt, item.name),
            ListKind::Resources => (Feature::Resource, item.uri),
        };
        // An item the policy cannot name cannot be judged: it is not shown.
        let Some(name) = name else { return ItemFate::Drop };
        if kind == ListKind::Tools {
            self.remember_annotations(name, item.annotations);
        }
        if let Some(authz) = &self.authz {
            let target = Target { feature, name, arguments: None, annotations: item.annotations };
            if !authz.authorize_shared(who, &target).allowed {
                return ItemFate::Drop;
            }
        }
        match (&self.tools, kind) {
            (Some(tools), ListKind::Tools) => tools.fate(name),
            _ => ItemFate::Keep,
        }
    }
}

fn deny_unless(allowed: bool, action: &'static str, id: Option<String>) -> Result<(), Refusal> {
    if allowed { Ok(()) } else { Err(Refusal::Forbidden { action, reason: "the policy does not permit it", id }) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Option<Map<String, Value>> {
        let raw: Box<RawValue> = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
        policy_arguments(&raw)
    }

    #[test]
    fn ordinary_arguments_are_read_as_they_are() {
        let map = args(r#"{"b":1.5,"a":"x","n":null}"#).unwrap_or_default();
        assert_eq!(Value::Object(map), serde_json::json!({"b": 1.5, "a": "x", "n": null}));
    }

    #[test]
    fn numbers_past_f64_are_read_as_out_of_range_not_dropped() {
        let map = args(r#"{"up":1e400,"down":-1e400,"list":[1e400],"obj":{"x":1e400},"ok":"y"}"#).unwrap_or_default();
        assert_eq!(map.get("up"), Some(&Value::from(f64::MAX)));
        assert_eq!(map.get("down"), Some(&Value::from(-f64::MAX)));
        assert_eq!(map.get("list"), Some(&Value::Array(Vec::new())));
        assert_eq!(map.get("obj"), Some(&Value::Object(Map::new())));
        assert_eq!(map.get("ok"), Some(&Value::from("y")));
    }

    #[test]
    fn arguments_that_are_not_an_object_give_none() {
        assert_eq!(args("[1,2]"), None);
        assert_eq!(args("\"text\""), None);
    }

    #[test]
    fn a_name_is_found_whatever_the_arguments_hold() {
        let text = r#"{"name":"echo","arguments":{"huge":1e400}}"#;
        let params: NamedParams<'_> = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(params.name.as_deref(), Some("echo"));
        assert_eq!(params.policy_arguments().and_then(|m| m.get("huge").cloned()), Some(Value::from(f64::MAX)));
    }
}
