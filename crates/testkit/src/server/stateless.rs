//! The 2026-07-28 stateless-server diagnostics the conformance suite's `server-stateless`
//! scenario calls for (SEP-2575), and `subscriptions/listen`.
//!
//! Tools: `test_missing_capability` (needs the client's `sampling`: without it, -32021
//! naming it), `test_streaming_elicitation` (asks for input through an
//! `InputRequiredResult`, never a server→client request on the stream),
//! `test_logging_tool` (logs only when the request's `_meta` sets a log level), and
//! `test_trigger_tool_change` (tells every open listen stream that the tool list changed).
//! A listen stream gets the notifications its filter asked for, tagged with its
//! subscription id by the SDK; tool-list changes reach every stream of the process, and a
//! resource `touch_resource` touched reaches the streams whose filter names its URI.
//! In `--legacy-only` the same tools behave as a legacy server would: the capabilities are
//! the ones the peer declared in `initialize`, `test_streaming_elicitation` asks with a
//! server→client request, and `test_trigger_tool_change` also notifies its peer.
#![allow(deprecated)] // Logging is a deprecated feature (SEP-2577) that one diagnostic exercises.

use std::sync::OnceLock;

use rmcp::ErrorData as McpError;
use rmcp::RoleServer;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ClientCapabilities, ContentBlock, InputRequiredResult,
    LoggingMessageNotificationParam, Tool,
};
use rmcp::service::{RequestContext, SubscriptionContext};
use serde_json::json;
use tokio::sync::broadcast;

/// Pending list-change events one listen stream may fall behind by before it skips some.
const EVENTS: usize = 16;

/// The tools of this module, for `tools/list`.
pub fn catalogue() -> Vec<Tool> {
    let none = super::tools::no_arguments;
    vec![
        Tool::new("test_missing_capability", "Needs the client's sampling capability (-32021 without it)", none()),
        Tool::new("test_streaming_elicitation", "Asks for input through an InputRequiredResult", none()),
        Tool::new("test_logging_tool", "Logs only when the request's _meta sets a log level", none()),
        Tool::new("test_trigger_tool_change", "Tells open subscriptions/listen streams the tool list changed", none()),
    ]
}

/// Runs the tool `request` names when it is one of this module's; `None` otherwise.
pub async fn call(
    request: &CallToolRequestParams,
    context: &RequestContext<RoleServer>,
    legacy: bool,
) -> Option<Result<CallToolResponse, McpError>> {
    let caps = if legacy {
        context.peer.peer_info().map(|info| info.capabilities.clone()).unwrap_or_default()
    } else {
        context.meta.client_capabilities().unwrap_or_default()
    };
    let answer = match request.name.as_ref() {
        "test_missing_capability" => {
            if caps.sampling.is_none() {
                let mut required = ClientCapabilities::default();
                required.sampling = Some(Default::default());
                Err(McpError::missing_required_client_capability(required))
            } else {
                Ok(text("the client declared sampling"))
            }
        }
        "test_streaming_elicitation" if legacy => streaming_elicitation_legacy(&caps, context).await,
        "test_streaming_elicitation" => streaming_elicitation(&caps),
        "test_logging_tool" => logging(context).await,
        "test_trigger_tool_change" => {
            // No listener is not an error: the change simply reaches nobody.
            let _ = events().send(());
            if legacy {
                let _ = context.peer.notify_tool_list_changed().await;
            }
            Ok(text("the tool list changed"))
        }
        _ => return None,
    };
    Some(answer)
}

/// Serves one listen stream until the client closes it: each tool-list change is sent
/// when its filter accepted them (the SDK checks the filter and tags the subscription id).
pub async fn listen(context: SubscriptionContext) -> Result<(), McpError> {
    let mut changes = events().subscribe();
    let mut touched = touched().subscribe();
    loop {
        tokio::select! {
            () = context.cancelled() => return Ok(()),
            uri = touched.recv() => match uri {
                Ok(uri) => {
                    let wanted = context.accepted().resource_subscriptions.as_ref().is_some_and(|u| u.contains(&uri));
                    if wanted {
                        let _ = context.sink().notify_resource_updated(uri).await;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
            event = changes.recv() => match event {
                Ok(()) | Err(broadcast::error::RecvError::Lagged(_)) => {
                    if context.accepted().tools_list_changed == Some(true) {
                        let _ = context.sink().notify_tool_list_changed().await;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
        }
    }
}

/// Tells every listen stream that the resource `uri` changed (those subscribed to it pass
/// it on).
pub fn resource_touched(uri: &str) {
    let _ = touched().send(uri.to_owned());
}

fn touched() -> &'static broadcast::Sender<String> {
    static TOUCHED_TX: OnceLock<broadcast::Sender<String>> = OnceLock::new();
    TOUCHED_TX.get_or_init(|| broadcast::channel(EVENTS).0)
}

fn events() -> &'static broadcast::Sender<()> {
    static EVENTS_TX: OnceLock<broadcast::Sender<()>> = OnceLock::new();
    EVENTS_TX.get_or_init(|| broadcast::channel(EVENTS).0)
}

fn text(text: &str) -> CallToolResponse {
    CallToolResult::success(vec![ContentBlock::text(text)]).into()
}

fn streaming_elicitation(caps: &ClientCapabilities) -> Result<CallToolResponse, McpError> {
    if caps.elicitation.is_none() {
        let mut required = ClientCapabilities::default();
        required.elicitation = Some(Default::default());
        return Err(McpError::missing_required_client_capability(required));
    }
    let result = json!({ "resultType": "input_required", "inputRequests": {
        "answer": { "method": "elicitation/create", "params": {
            "mode": "form",
            "message": "Anything to add?",
            "requestedSchema": { "type": "object", "properties": { "text": { "type": "string" } } },
        }},
    }});
    serde_json::from_value::<InputRequiredResult>(result)
        .map(CallToolResponse::from)
        .map_err(|e| McpError::internal_error(format!("input request: {e}"), None))
}

/// The legacy way: the same question as a server→client request, answered before the
/// call completes.
async fn streaming_elicitation_legacy(
    caps: &ClientCapabilities,
    context: &RequestContext<RoleServer>,
) -> Result<CallToolResponse, McpError> {
    if caps.elicitation.is_none() {
        let mut required = ClientCapabilities::default();
        required.elicitation = Some(Default::default());
        return Err(McpError::missing_required_client_capability(required));
    }
    let request: rmcp::model::ServerRequest = serde_json::from_value(json!({
        "method": "elicitation/create",
        "params": {
            "mode": "form",
            "message": "Anything to add?",
            "requestedSchema": { "type": "object", "properties": { "text": { "type": "string" } } },
        },
    }))
    .map_err(|e| McpError::internal_error(format!("input request: {e}"), None))?;
    super::tools::ask_client(context.peer.send_request(request), &context.ct).await?;
    Ok(text("the client answered"))
}

/// One log message, sent only when the request asked for logs by setting a level.
async fn logging(context: &RequestContext<RoleServer>) -> Result<CallToolResponse, McpError> {
    if let Some(level) = context.meta.log_level() {
        let param = LoggingMessageNotificationParam::new(level, json!("test_logging_tool ran"))
            .with_logger("test_logging_tool");
        let sent = context.peer.notify_logging_message(param).await;
        sent.map_err(|e| McpError::internal_error(format!("log: {e}"), None))?;
    }
    Ok(text("test_logging_tool ran"))
}
