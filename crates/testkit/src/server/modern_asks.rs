//! The conformance suite's sampling and elicitation tools (`test_sampling`,
//! `test_elicitation*`) asked in the 2026-07-28 way: a server of that revision sends its
//! client no requests, so a modern call of one of them is answered with an
//! `InputRequiredResult` carrying the same `sampling/createMessage` or `elicitation/create`
//! the legacy tool sends, and completes, with the legacy tool's text, on the retry carrying
//! the client's answer (SEP-2322). A legacy session's calls are not touched (module `tools`).
#![allow(deprecated)] // Sampling is deprecated (SEP-2577); the suite still tests it.

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ClientCapabilities, ContentBlock,
    CreateMessageRequestParams, ElicitRequestParams, ElicitationSchema, InputRequiredResult, SamplingMessage,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer};
use serde_json::{Value, json};

use super::elicitation;
use super::tools::{SAMPLING_MAX_TOKENS, sampled_text};

/// The key of the one input each of these tools asks for.
const KEY: &str = "answer";

/// Answers a modern call of one of these tools; `None` for any other call.
pub fn call(
    request: &CallToolRequestParams,
    context: &RequestContext<RoleServer>,
) -> Option<Result<CallToolResponse, McpError>> {
    let modern = context.meta.protocol_version().is_some_and(|v| v.as_str() >= "2026-07-28");
    if !modern {
        return None;
    }
    let args = request.arguments.clone().unwrap_or_default();
    let caps = context.meta.client_capabilities().unwrap_or_default();
    let answer = request.input_responses.as_ref().and_then(|r| r.get(KEY));
    let string = |name: &str, default: &str| args.get(name).and_then(Value::as_str).unwrap_or(default).to_owned();
    let answer = match request.name.as_ref() {
        "test_sampling" => {
            let Some(prompt) = args.get("prompt").and_then(Value::as_str) else {
                return Some(Err(McpError::invalid_params("missing required argument: prompt", None)));
            };
            match answer {
                Some(a) => Ok(text(format!("LLM response: {}", sampled_text(&a["content"])))),
                None if caps.sampling.is_none() => Err(missing(json!({"sampling": {}}))),
                None => {
                    let params =
                        CreateMessageRequestParams::new(vec![SamplingMessage::user_text(prompt)], SAMPLING_MAX_TOKENS);
                    ask("sampling/createMessage", serde_json::to_value(params).unwrap_or(Value::Null))
                }
            }
        }
        "test_elicitation" => {
            let message = string("message", "Please provide your information");
            elicit(answer, &caps, &message, elicitation::user_info_schema(), "User response")
        }
        "test_elicitation_sep1034_defaults" => elicit(
            answer,
            &caps,
            "Test client default value handling - please accept with defaults",
            elicitation::defaults_schema(),
            "Elicitation completed",
        ),
        "test_elicitation_sep1330_enums" => elicit(
            answer,
            &caps,
            "Test enum schema variants - please choose options",
            elicitation::enums_schema(),
            "Elicitation completed",
        ),
        _ => return None,
    };
    Some(answer)
}

fn elicit(
    answer: Option<&Value>,
    caps: &ClientCapabilities,
    message: &str,
    schema: Result<ElicitationSchema, McpError>,
    label: &str,
) -> Result<CallToolResponse, McpError> {
    if let Some(a) = answer {
        let action = a.get("action").and_then(Value::as_str).unwrap_or("unknown");
        let content = a.get("content").cloned().unwrap_or(Value::Null);
        return Ok(text(format!("{label}: action={action}, content={content}")));
    }
    if caps.elicitation.is_none() {
        return Err(missing(json!({"elicitation": {}})));
    }
    let params = ElicitRequestParams::FormElicitationParams {
        meta: None,
        message: message.to_owned(),
        requested_schema: schema?,
    };
    ask("elicitation/create", serde_json::to_value(params).unwrap_or(Value::Null))
}

fn text(t: String) -> CallToolResponse {
    CallToolResult::success(vec![ContentBlock::text(t)]).into()
}

/// The spec's error for a capability the request did not declare (the server must not ask).
fn missing(required: Value) -> McpError {
    match serde_json::from_value::<ClientCapabilities>(required) {
        Ok(caps) => McpError::missing_required_client_capability(caps),
        Err(e) => McpError::internal_error(e.to_string(), None),
    }
}

fn ask(method: &str, params: Value) -> Result<CallToolResponse, McpError> {
    let result = json!({
        "resultType": "input_required",
        "inputRequests": { KEY: { "method": method, "params": params } },
    });
    serde_json::from_value::<InputRequiredResult>(result)
        .map(CallToolResponse::from)
        .map_err(|e| McpError::internal_error(format!("input request: {e}"), None))
}
