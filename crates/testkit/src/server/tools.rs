//! The fixture tools: every `test_*` tool the conformance suite's server scenarios call, and the
//! fast helpers Apiary's own tests use (`echo`, `sleep`, `pid`, `crash`, `touch_resource`,
//! `request_header`, which shows what a proxy in front added to the HTTP request, and
//! `add_tool`, which adds a tool to this connection's list and sends
//! `notifications/tools/list_changed`).
//!
//! `test_reconnection` over Streamable HTTP closes its own POST SSE stream right after the
//! priming event, waits (up to [`RESUME_TIMEOUT`]) for the client to resume it with a GET
//! carrying `Last-Event-ID`, and then answers on the resumed stream. Over stdio there is no
//! stream to close (a proxy in front owns any HTTP streams), so it simply answers.
#![allow(deprecated)] // Logging and sampling are legacy-lifecycle features the suite still tests.

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResult, ContentBlock, CreateMessageRequestParams, ElicitRequestParams,
    ElicitationSchema, JsonObject, LoggingLevel, LoggingMessageNotificationParam, ProgressNotificationParam,
    ResourceContents, ResourceUpdatedNotificationParam, SamplingMessage, Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::handler::FixtureServer;
use super::sessions::SessionIdHeader;
use super::{elicitation, fixtures, resources};

/// Longest `sleep` a caller may ask for.
pub const MAX_SLEEP_MS: u64 = 600_000;
/// How long `test_reconnection` waits for the client to resume its closed stream.
pub const RESUME_TIMEOUT: Duration = Duration::from_secs(10);
/// Reconnection delay `test_reconnection` asks for in the priming event before it closes.
pub const RESUME_RETRY: Duration = Duration::from_millis(200);
/// Pause between the steps of the logging and progress tools.
const STEP_DELAY: Duration = Duration::from_millis(50);
/// How long sampling and elicitation wait for the client's answer.
const CLIENT_ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// `maxTokens` of the sampling request.
pub(super) const SAMPLING_MAX_TOKENS: u32 = 100;
/// Exit status of the `crash` tool.
pub const CRASH_EXIT_CODE: i32 = 3;

/// Every tool, in the order `tools/list` returns them.
pub fn catalogue() -> Vec<Tool> {
    vec![
        tool("test_simple_text", "Returns a simple text response", no_arguments()),
        tool("test_image_content", "Returns a 1x1 PNG image", no_arguments()),
        tool("test_audio_content", "Returns a short WAV clip", no_arguments()),
        tool("test_embedded_resource", "Returns an embedded text resource", no_arguments()),
        tool("test_multiple_content_types", "Returns text, image and embedded resource content", no_arguments()),
        tool("test_tool_with_logging", "Sends three info log messages while running", no_arguments()),
        tool("test_error_handling", "Always returns a tool error", no_arguments()),
        tool(
            "test_tool_with_progress",
            "Reports progress 0, 50 and 100 of 100 when given a progress token",
            no_arguments(),
        ),
        tool(
            "test_sampling",
            "Asks the client to sample an LLM with the given prompt",
            object_schema(
                json!({ "prompt": { "type": "string", "description": "The prompt to send to the LLM" } }),
                &["prompt"],
            ),
        ),
        tool(
            "test_elicitation",
            "Asks the client for a username and email",
            object_schema(
                json!({ "message": { "type": "string", "description": "The message to show the user" } }),
                &["message"],
            ),
        ),
        tool(
            "test_elicitation_sep1034_defaults",
            "Elicits one field of each primitive type, each with a default (SEP-1034)",
            no_arguments(),
        ),
        tool("test_elicitation_sep1330_enums", "Elicits the five enum schema shapes of SEP-1330", no_arguments()),
        tool("json_schema_2020_12_tool", "Tool with JSON Schema 2020-12 features", json_schema_2020_12()),
        tool(
            "test_reconnection",
            "Over HTTP, closes its SSE stream mid-call and answers once the client resumes (SEP-1699)",
            no_arguments(),
        ),
        tool(
            "echo",
            "Returns its text (or message) argument unchanged",
            object_schema(
                json!({
                    "text": { "type": "string", "description": "Text to return" },
                    "message": { "type": "string", "description": "Used when text is absent" }
                }),
                &[],
            ),
        ),
        tool(
            "sleep",
            "Sleeps for ms milliseconds, then returns; stops early when cancelled",
            object_schema(
                json!({ "ms": { "type": "integer", "minimum": 0, "maximum": MAX_SLEEP_MS, "description": "Milliseconds to sleep" } }),
                &["ms"],
            ),
        ),
        // Annotated, so policies on annotations (Cedar's `resource.readOnlyHint`) have a subject.
        tool("pid", "Returns the server's process id", no_arguments()).annotate(ToolAnnotations::new().read_only(true)),
        tool("crash", "Makes the server process exit at once with status 3", no_arguments())
            .annotate(ToolAnnotations::new().read_only(false).destructive(true)),
        tool(
            "request_header",
            "Over HTTP, returns the value of the named header of the request that carried this call",
            object_schema(json!({ "name": { "type": "string", "description": "Header name (any case)" } }), &["name"]),
        ),
        tool(
            "env",
            "Returns the value of the named environment variable of the server process (a tool error when unset)",
            object_schema(json!({ "name": { "type": "string", "description": "Variable name" } }), &["name"]),
        ),
        tool(
            "touch_resource",
            "Changes a resource and notifies subscribers with notifications/resources/updated",
            object_schema(
                json!({ "uri": { "type": "string", "description": "Resource to change (default test://watched-resource)" } }),
                &[],
            ),
        ),
        tool(
            "add_tool",
            "Adds a tool of the given name to this connection's list (it returns its own name when called) \
             and sends notifications/tools/list_changed",
            object_schema(json!({ "name": { "type": "string", "description": "Name of the new tool" } }), &["name"]),
        ),
    ]
}

/// Runs the tool `request` names.
pub async fn call(
    server: &FixtureServer,
    request: CallToolRequestParams,
    context: RequestContext<RoleServer>,
) -> Result<CallToolResult, McpError> {
    let args = request.arguments.unwrap_or_default();
    match request.name.as_ref() {
        "test_simple_text" => Ok(text_result(fixtures::SIMPLE_TEXT)),
        "test_image_content" => {
            Ok(CallToolResult::success(vec![ContentBlock::image(fixtures::RED_PIXEL_PNG_BASE64, fixtures::PNG_MIME)]))
        }
        "test_audio_content" => {
            Ok(CallToolResult::success(vec![ContentBlock::audio(fixtures::silent_wav_base64(), fixtures::WAV_MIME)]))
        }
        "test_embedded_resource" => Ok(CallToolResult::success(vec![ContentBlock::resource(
            ResourceContents::text(fixtures::EMBEDDED_TEXT, "test://embedded-resource").with_mime_type("text/plain"),
        )])),
        "test_multiple_content_types" => Ok(CallToolResult::success(vec![
            ContentBlock::text("Multiple content types test:"),
            ContentBlock::image(fixtures::RED_PIXEL_PNG_BASE64, fixtures::PNG_MIME),
            ContentBlock::resource(
                ResourceContents::text(
                    json!({ "test": "data", "value": 123 }).to_string(),
                    "test://mixed-content-resource",
                )
                .with_mime_type("application/json"),
            ),
        ])),
        "test_tool_with_logging" => with_logging(server, &context).await,
        "test_error_handling" => {
            Ok(CallToolResult::error(vec![ContentBlock::text("This tool intentionally returns an error for testing")]))
        }
        "test_tool_with_progress" => with_progress(&context).await,
        "test_sampling" => sampling(&args, &context).await,
        "test_elicitation" => {
            let message = string_arg(&args, "message")?.unwrap_or("Please provide your information");
            elicit(&context, message, elicitation::user_info_schema()?, "User response").await
        }
        "test_elicitation_sep1034_defaults" => {
            let message = "Test client default value handling - please accept with defaults";
            elicit(&context, message, elicitation::defaults_schema()?, "Elicitation completed").await
        }
        "test_elicitation_sep1330_enums" => {
            let message = "Test enum schema variants - please choose options";
            elicit(&context, message, elicitation::enums_schema()?, "Elicitation completed").await
        }
        "json_schema_2020_12_tool" => Ok(text_result(format!("Received: {}", Value::Object(args)))),
        "test_reconnection" => reconnection(server, &context).await,
        "echo" => echo(&args),
        "sleep" => sleep(&args, &context.ct).await,
        "pid" => Ok(text_result(std::process::id().to_string())),
        "crash" => {
            tracing::warn!("crash tool called: exiting with status {CRASH_EXIT_CODE}");
            std::process::exit(CRASH_EXIT_CODE)
        }
        "touch_resource" => touch_resource(server, &args, &context).await,
        "request_header" => request_header(&args, &context),
        "env" => env_var(&args),
        "add_tool" => add_tool(server, &args, &context).await,
        other if server.dynamic.contains(other) => Ok(text_result(other)),
        other => Err(McpError::invalid_params(format!("Unknown tool: {other}"), Some(json!({ "name": other })))),
    }
}

async fn with_logging(
    server: &FixtureServer,
    context: &RequestContext<RoleServer>,
) -> Result<CallToolResult, McpError> {
    let steps = ["Tool execution started", "Tool processing data", "Tool execution completed"];
    for (index, step) in steps.into_iter().enumerate() {
        if index > 0 {
            pause(STEP_DELAY, &context.ct).await?;
        }
        if server.logs_at(LoggingLevel::Info) {
            let param = LoggingMessageNotificationParam::new(LoggingLevel::Info, json!(step))
                .with_logger("test_tool_with_logging");
            context.peer.notify_logging_message(param).await.map_err(service_error)?;
        }
    }
    Ok(text_result("Tool with logging executed successfully"))
}

async fn with_progress(context: &RequestContext<RoleServer>) -> Result<CallToolResult, McpError> {
    let token = context.meta.get_progress_token();
    for (index, progress) in [0.0, 50.0, 100.0].into_iter().enumerate() {
        if index > 0 {
            pause(STEP_DELAY, &context.ct).await?;
        }
        if let Some(token) = &token {
            let param = ProgressNotificationParam::new(token.clone(), progress)
                .with_total(100.0)
                .with_message(format!("{progress} of 100"));
            context.peer.notify_progress(param).await.map_err(service_error)?;
        }
    }
    Ok(text_result("Tool with progress executed successfully"))
}

async fn sampling(args: &JsonObject, context: &RequestContext<RoleServer>) -> Result<CallToolResult, McpError> {
    let prompt = string_arg(args, "prompt")?.ok_or_else(|| missing("prompt"))?;
    let supports_sampling = context.peer.peer_info().is_some_and(|info| info.capabilities.sampling.is_some());
    if !supports_sampling {
        return Ok(error_result("The client does not support sampling"));
    }
    let params = CreateMessageRequestParams::new(vec![SamplingMessage::user_text(prompt)], SAMPLING_MAX_TOKENS);
    let result = ask_client(context.peer.create_message(params), &context.ct).await?;
    let answer = serde_json::to_value(&result).unwrap_or(Value::Null);
    let text = sampled_text(&answer["content"]);
    Ok(text_result(format!("LLM response: {text}")))
}

/// The text of a sampling result's content, which may be one block or a list of blocks.
pub(super) fn sampled_text(content: &Value) -> String {
    match content {
        Value::Array(blocks) => blocks.iter().map(sampled_text).collect::<Vec<_>>().join(""),
        Value::Object(block) => block.get("text").and_then(Value::as_str).unwrap_or_default().to_owned(),
        _ => String::new(),
    }
}

async fn elicit(
    context: &RequestContext<RoleServer>,
    message: &str,
    requested_schema: ElicitationSchema,
    label: &str,
) -> Result<CallToolResult, McpError> {
    let supports_elicitation = context.peer.peer_info().is_some_and(|info| info.capabilities.elicitation.is_some());
    if !supports_elicitation {
        return Ok(error_result("The client does not support elicitation"));
    }
    let params =
        ElicitRequestParams::FormElicitationParams { meta: None, message: message.to_owned(), requested_schema };
    let result = ask_client(context.peer.create_elicitation(params), &context.ct).await?;
    let action = serde_json::to_value(&result.action).unwrap_or(Value::Null);
    let action = action.as_str().unwrap_or("unknown");
    let content = result.content.unwrap_or(Value::Null);
    Ok(text_result(format!("{label}: action={action}, content={content}")))
}

async fn reconnection(
    server: &FixtureServer,
    context: &RequestContext<RoleServer>,
) -> Result<CallToolResult, McpError> {
    let session = context.extensions.get::<http::request::Parts>().and_then(SessionIdHeader::from_parts);
    if let (Some(sessions), Some(session)) = (&server.sessions, session) {
        match sessions.close_request_stream(&session.0, &context.id, RESUME_RETRY).await {
            Ok(wait) => {
                if !wait.resumed_within(RESUME_TIMEOUT, &context.ct).await {
                    tracing::warn!("test_reconnection: client did not resume within {RESUME_TIMEOUT:?}");
                }
            }
            Err(error) => {
                tracing::info!("test_reconnection: answering on the open stream: {error}")
            }
        }
    }
    Ok(text_result(fixtures::RECONNECTION_DONE))
}

fn echo(args: &JsonObject) -> Result<CallToolResult, McpError> {
    let text = match string_arg(args, "text")? {
        Some(text) => text,
        None => string_arg(args, "message")?.ok_or_else(|| missing("text"))?,
    };
    Ok(text_result(text))
}

/// The value of one of this process's environment variables (how tests see what a launcher passed).
fn env_var(args: &JsonObject) -> Result<CallToolResult, McpError> {
    let name = string_arg(args, "name")?.ok_or_else(|| missing("name"))?;
    match std::env::var(name) {
        Ok(value) => Ok(text_result(value)),
        Err(_) => Ok(error_result(format!("no variable {name}"))),
    }
}

/// The value of one header of the HTTP request that carried the call: a tool error when it is
/// absent (or not text), or when the call did not come over HTTP.
fn request_header(args: &JsonObject, context: &RequestContext<RoleServer>) -> Result<CallToolResult, McpError> {
    let name = string_arg(args, "name")?.ok_or_else(|| missing("name"))?;
    let Some(parts) = context.extensions.get::<http::request::Parts>() else {
        return Ok(error_result("this call did not come over HTTP"));
    };
    match parts.headers.get(name).and_then(|v| v.to_str().ok()) {
        Some(value) => Ok(text_result(value)),
        None => Ok(error_result(format!("no header {name}"))),
    }
}

async fn sleep(args: &JsonObject, cancel: &CancellationToken) -> Result<CallToolResult, McpError> {
    let ms = match args.get("ms") {
        Some(value) => value
            .as_u64()
            .filter(|ms| *ms <= MAX_SLEEP_MS)
            .ok_or_else(|| McpError::invalid_params(format!("ms must be an integer from 0 to {MAX_SLEEP_MS}"), None))?,
        None => return Err(missing("ms")),
    };
    pause(Duration::from_millis(ms), cancel).await?;
    Ok(text_result(format!("slept {ms} ms")))
}

async fn touch_resource(
    server: &FixtureServer,
    args: &JsonObject,
    context: &RequestContext<RoleServer>,
) -> Result<CallToolResult, McpError> {
    let uri = string_arg(args, "uri")?.unwrap_or(resources::WATCHED_URI);
    if !resources::exists(uri) {
        return Err(resources::not_found(uri));
    }
    if uri == resources::WATCHED_URI {
        server.touch_watched();
    }
    // 2026-07-28 subscribers hear of it on their listen streams.
    super::stateless::resource_touched(uri);
    let subscribed = server.subscriptions.contains(uri);
    if subscribed {
        let param = ResourceUpdatedNotificationParam::new(uri);
        context.peer.notify_resource_updated(param).await.map_err(service_error)?;
    }
    Ok(text_result(format!("touched {uri}; subscribers notified: {subscribed}")))
}

/// Adds a tool to this connection's list, then tells the client its list changed.
async fn add_tool(
    server: &FixtureServer,
    args: &JsonObject,
    context: &RequestContext<RoleServer>,
) -> Result<CallToolResult, McpError> {
    let name = string_arg(args, "name")?.ok_or_else(|| missing("name"))?;
    server.dynamic.add(name, &catalogue()).map_err(|e| McpError::invalid_params(e.to_string(), None))?;
    context.peer.notify_tool_list_changed().await.map_err(service_error)?;
    Ok(text_result(format!("added {name}")))
}

/// Awaits the client's answer to a server-to-client request, for at most
/// [`CLIENT_ANSWER_TIMEOUT`] and only while the tool call is not cancelled.
pub(super) async fn ask_client<T>(
    request: impl std::future::Future<Output = Result<T, rmcp::ServiceError>>,
    cancel: &CancellationToken,
) -> Result<T, McpError> {
    tokio::select! {
        answer = tokio::time::timeout(CLIENT_ANSWER_TIMEOUT, request) => match answer {
            Ok(answer) => answer.map_err(service_error),
            Err(_) => Err(McpError::internal_error(
                format!("the client did not answer within {CLIENT_ANSWER_TIMEOUT:?}"),
                None,
            )),
        },
        () = cancel.cancelled() => Err(McpError::internal_error("request cancelled", None)),
    }
}

/// Sleeps for `duration` unless the request is cancelled first.
async fn pause(duration: Duration, cancel: &CancellationToken) -> Result<(), McpError> {
    tokio::select! {
        () = tokio::time::sleep(duration) => Ok(()),
        () = cancel.cancelled() => {
            tracing::info!("request cancelled: stopping early");
            Err(McpError::internal_error("request cancelled", None))
        }
    }
}

fn tool(name: &'static str, description: &'static str, input_schema: Arc<JsonObject>) -> Tool {
    Tool::new(name, description, input_schema)
}

pub(super) fn no_arguments() -> Arc<JsonObject> {
    object_schema(json!({}), &[])
}

fn object_schema(properties: Value, required: &[&str]) -> Arc<JsonObject> {
    let mut schema = JsonObject::new();
    schema.insert("type".into(), json!("object"));
    schema.insert("properties".into(), properties);
    if !required.is_empty() {
        schema.insert("required".into(), json!(required));
    }
    Arc::new(schema)
}

/// The input schema of `json_schema_2020_12_tool`, exactly as the `json-schema-2020-12`
/// scenario documents it (SEP-1613 and SEP-2106 keywords).
fn json_schema_2020_12() -> Arc<JsonObject> {
    let schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {
            "address": {
                "$anchor": "addressDef",
                "type": "object",
                "properties": { "street": { "type": "string" }, "city": { "type": "string" } }
            }
        },
        "properties": {
            "name": { "type": "string" },
            "address": { "$ref": "#/$defs/address" },
            "contactMethod": { "type": "string", "enum": ["phone", "email"] },
            "phone": { "type": "string" },
            "email": { "type": "string" }
        },
        "allOf": [{ "anyOf": [{ "required": ["phone"] }, { "required": ["email"] }] }],
        "if": { "properties": { "contactMethod": { "const": "phone" } }, "required": ["contactMethod"] },
        "then": { "required": ["phone"] },
        "else": { "required": ["email"] },
        "additionalProperties": false
    });
    match schema {
        Value::Object(object) => Arc::new(object),
        _ => no_arguments(),
    }
}

fn string_arg<'a>(args: &'a JsonObject, name: &str) -> Result<Option<&'a str>, McpError> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(value)) => Ok(Some(value)),
        Some(_) => Err(McpError::invalid_params(format!("argument {name} must be a string"), None)),
    }
}

fn missing(name: &str) -> McpError {
    McpError::invalid_params(format!("missing required argument: {name}"), None)
}

fn text_result(text: impl Into<String>) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(text)])
}

fn error_result(text: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(text)])
}

fn service_error(error: rmcp::ServiceError) -> McpError {
    McpError::internal_error(format!("request to the client failed: {error}"), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_names_follow_the_spec_rules() {
        let tools = catalogue();
        let mut names = std::collections::HashSet::new();
        for tool in &tools {
            let name = tool.name.as_ref();
            assert!((1..=128).contains(&name.len()), "{name}");
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)), "{name}");
            assert!(tool.description.is_some(), "{name}");
            assert!(names.insert(name.to_owned()), "duplicate {name}");
        }
    }

    #[test]
    fn json_schema_tool_keeps_2020_12_keywords() {
        let tools = catalogue();
        let tool = tools.iter().find(|tool| tool.name == "json_schema_2020_12_tool").unwrap();
        let wire = serde_json::to_value(tool).unwrap();
        let schema = &wire["inputSchema"];
        assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
        assert_eq!(schema["$defs"]["address"]["$anchor"], "addressDef");
        assert_eq!(schema["additionalProperties"], false);
        assert!(schema["allOf"][0]["anyOf"].is_array());
        assert!(schema.get("if").is_some() && schema.get("then").is_some() && schema.get("else").is_some());
    }

    #[test]
    fn sampled_text_reads_single_and_multiple_blocks() {
        assert_eq!(sampled_text(&json!({ "type": "text", "text": "hi" })), "hi");
        assert_eq!(sampled_text(&json!([{ "type": "text", "text": "a" }, { "type": "text", "text": "b" }])), "ab");
    }

    #[test]
    fn echo_prefers_text_then_message() {
        let args = json!({ "text": "t", "message": "m" });
        let result = echo(args.as_object().unwrap()).unwrap();
        assert_eq!(result.content[0].as_text().unwrap().text, "t");
        let args = json!({ "message": "m" });
        let result = echo(args.as_object().unwrap()).unwrap();
        assert_eq!(result.content[0].as_text().unwrap().text, "m");
        assert!(echo(&JsonObject::new()).is_err());
    }
}
