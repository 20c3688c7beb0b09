//! The message half of the policy: one parsed client message checked against the tool filter
//! and the authorization policy, and, for a list, the reshape its answer will get.

use std::borrow::Cow;
use std::sync::Arc;

use apiary_policy::Identity;
use apiary_policy::authz::{Feature, Target};
use apiary_policy::tools::{ItemFate, ListItem, ListKind, shape_list, with_call_name};
use apiary_protocol::{Message, methods};
use bytes::Bytes;
use serde::Deserialize;
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

/// What the policy needs of a call's params; everything else stays raw.
#[derive(Deserialize)]
struct NamedParams<'a> {
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    uri: Option<Cow<'a, str>>,
    arguments: Option<Map<String, Value>>,
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
                    let arguments = params.as_ref().and_then(|p| p.arguments.as_ref());
                    let target = Target { feature, name, arguments, annotations: None };
                    deny_unless(authz.authorize(who, &target).allowed, action, id)?;
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
    fn admit_call(self: &Arc<Self>, who: &Identity, m: Message, id: Option<String>) -> Result<Admitted, Refusal> {
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
            let target = Target {
                feature: Feature::Tool,
                name: &server_name,
                arguments: params.as_ref().and_then(|p| p.arguments.as_ref()),
                annotations: annotations.as_ref(),
            };
            deny_unless(authz.authorize(who, &target).allowed, "call_tool", id.clone())?;
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
    fn fate(&self, who: &Identity, kind: ListKind, item: &ListItem<'_>) -> ItemFate {
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
            if !authz.authorize(who, &target).allowed {
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
