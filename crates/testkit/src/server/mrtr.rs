//! The 2026-07-28 input round trips (SEP-2322) the conformance suite's
//! `input-required-result-*` scenarios call for: tools (and one prompt) that answer a first
//! call with an `InputRequiredResult` (the requests the client must fulfil, plus a
//! `requestState`) and complete when the client retries with `inputResponses`.
//!
//! The server keeps nothing between rounds: what a later round needs travels in
//! `requestState`, sealed with an HMAC under a key drawn once per process, so a state the
//! client altered is refused (-32602) rather than trusted. Input requests are only made for
//! capabilities the request's `_meta` declares; an answer that is missing or malformed is
//! asked for again rather than refused.
//!
//! In `--legacy-only` a server cannot answer with an `InputRequiredResult` (its peer
//! negotiated a legacy version): the same rounds run inside one call, each round's input
//! requests raised the legacy way, as server→client requests to the peer, at once, and
//! their answers gathered under the round's keys (`call_legacy`, `prompt_legacy`). What may
//! be asked then follows the capabilities the peer declared in `initialize`.

use std::sync::OnceLock;

use aws_lc_rs::hmac;
use base64::Engine as _;
use rmcp::ErrorData as McpError;
use rmcp::RoleServer;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ClientCapabilities, ContentBlock, GetPromptRequestParams,
    GetPromptResponse, GetPromptResult, InputRequests, InputRequiredResult, InputResponses, Prompt, PromptMessage,
    Role, ServerRequest, Tool,
};
use rmcp::service::RequestContext;
use serde_json::{Value, json};

/// Answers with one elicitation (`user_name`), then greets the name given.
pub const ELICITATION: &str = "test_input_required_result_elicitation";
/// Answers with one sampling request (`capital_question`), then returns the sampled text.
pub const SAMPLING: &str = "test_input_required_result_sampling";
/// Answers with one `roots/list` request (`client_roots`), then lists the roots given.
pub const LIST_ROOTS: &str = "test_input_required_result_list_roots";
/// Answers with an elicitation and a sealed `requestState`; completes with "state-ok".
pub const REQUEST_STATE: &str = "test_input_required_result_request_state";
/// Answers with an elicitation, a sampling and a `roots/list` request at once.
pub const MULTIPLE_INPUTS: &str = "test_input_required_result_multiple_inputs";
/// Two rounds of elicitation, the state changing between them, then a result.
pub const MULTI_ROUND: &str = "test_input_required_result_multi_round";
/// Refuses a retry whose `requestState` fails the integrity check.
pub const TAMPERED_STATE: &str = "test_input_required_result_tampered_state";
/// Asks only for what the request's declared client capabilities allow.
pub const CAPABILITIES: &str = "test_input_required_result_capabilities";
/// The prompt that needs an elicitation before it renders.
pub const PROMPT: &str = "test_input_required_result_prompt";

/// The names of this module's tools.
const TOOLS: [&str; 8] =
    [ELICITATION, SAMPLING, LIST_ROOTS, REQUEST_STATE, MULTIPLE_INPUTS, MULTI_ROUND, TAMPERED_STATE, CAPABILITIES];

/// The tools of this module, for `tools/list`.
pub fn catalogue() -> Vec<Tool> {
    let no_arguments = super::tools::no_arguments;
    [
        (ELICITATION, "Asks for the user's name through an input round trip, then greets them"),
        (SAMPLING, "Asks the client to sample an answer through an input round trip"),
        (LIST_ROOTS, "Asks for the client's roots through an input round trip"),
        (REQUEST_STATE, "Round trip carrying a sealed requestState; answers state-ok"),
        (MULTIPLE_INPUTS, "Asks for an elicitation, a sampling and the roots at once"),
        (MULTI_ROUND, "Two rounds of input, the requestState changing between them"),
        (TAMPERED_STATE, "Refuses a retry whose requestState was altered"),
        (CAPABILITIES, "Asks only for inputs the request's client capabilities allow"),
    ]
    .into_iter()
    .map(|(name, description)| Tool::new(name, description, no_arguments()))
    .collect()
}

/// The prompts of this module, for `prompts/list`.
pub fn prompts() -> Vec<Prompt> {
    vec![Prompt::new(PROMPT, Some("A prompt that asks for context through an input round trip"), None)]
}

/// What one request carries for this module: the retry's answers and state, and what the
/// client declared it can do.
struct Round<'a> {
    responses: &'a InputResponses,
    state: Option<&'a str>,
    caps: ClientCapabilities,
}

impl Round<'_> {
    /// The accepted elicitation's `content.<field>`, when `key` holds one as a string.
    fn elicited(&self, key: &str, field: &str) -> Option<String> {
        let answer = self.responses.get(key)?;
        if answer.get("action").and_then(Value::as_str) != Some("accept") {
            return None;
        }
        answer.get("content")?.get(field).and_then(scalar_text)
    }

    /// The sampled text under `key`.
    fn sampled(&self, key: &str) -> Option<String> {
        let content = self.responses.get(key)?.get("content")?;
        let text = match content {
            Value::Array(blocks) => blocks.iter().filter_map(|b| b.get("text")?.as_str()).collect::<Vec<_>>().join(""),
            other => other.get("text")?.as_str()?.to_owned(),
        };
        Some(text)
    }

    /// The root URIs under `key`.
    fn roots(&self, key: &str) -> Option<Vec<String>> {
        let roots = self.responses.get(key)?.get("roots")?.as_array()?;
        Some(roots.iter().filter_map(|r| r.get("uri")?.as_str().map(str::to_owned)).collect())
    }

    /// The step sealed into the retry's state; an error when a state came back altered.
    fn step(&self) -> Result<Option<String>, McpError> {
        match self.state {
            None => Ok(None),
            Some(state) => open(state)
                .map(Some)
                .ok_or_else(|| McpError::invalid_params("requestState failed its integrity check", None)),
        }
    }
}

/// An elicitation, a sampling and a `roots/list` request, each offered only when the
/// client declared the matching capability.
#[derive(Default)]
struct Asks(serde_json::Map<String, Value>);

impl Asks {
    fn elicit(mut self, caps: &ClientCapabilities, key: &str, message: &str, field: &str, kind: &str) -> Self {
        if caps.elicitation.is_some() {
            self.0.insert(
                key.to_owned(),
                json!({ "method": "elicitation/create", "params": {
                    "mode": "form",
                    "message": message,
                    "requestedSchema": { "type": "object", "properties": { field: { "type": kind } }, "required": [field] },
                }}),
            );
        }
        self
    }

    fn sample(mut self, caps: &ClientCapabilities, key: &str, text: &str, max_tokens: u32) -> Self {
        if caps.sampling.is_some() {
            self.0.insert(
                key.to_owned(),
                json!({ "method": "sampling/createMessage", "params": {
                    "messages": [{ "role": "user", "content": { "type": "text", "text": text } }],
                    "maxTokens": max_tokens,
                }}),
            );
        }
        self
    }

    fn roots(mut self, caps: &ClientCapabilities, key: &str) -> Self {
        if caps.roots.is_some() {
            self.0.insert(key.to_owned(), json!({ "method": "roots/list", "params": {} }));
        }
        self
    }

    /// The `InputRequiredResult` asking for these, with `step` sealed as its state.
    fn result(self, step: Option<&str>) -> Result<InputRequiredResult, McpError> {
        let mut result = json!({ "resultType": "input_required", "inputRequests": self.0 });
        if let Some(step) = step {
            result["requestState"] = Value::String(seal(step));
        }
        serde_json::from_value(result).map_err(|e| McpError::internal_error(format!("input request: {e}"), None))
    }
}

/// Runs the tool `request` names when it is one of this module's; `None` otherwise.
pub fn call(
    request: &CallToolRequestParams,
    context: &RequestContext<RoleServer>,
) -> Option<Result<CallToolResponse, McpError>> {
    let empty = InputResponses::new();
    let round = Round {
        responses: request.input_responses.as_ref().unwrap_or(&empty),
        state: request.request_state.as_deref(),
        caps: context.meta.client_capabilities().unwrap_or_default(),
    };
    run_tool(&request.name, &round)
}

/// One round of the tool `name`, when it is one of this module's.
fn run_tool(name: &str, round: &Round<'_>) -> Option<Result<CallToolResponse, McpError>> {
    let answer = match name {
        ELICITATION => elicitation(round),
        SAMPLING => sampling(round),
        LIST_ROOTS => list_roots(round),
        REQUEST_STATE => request_state(round, REQUEST_STATE),
        TAMPERED_STATE => request_state(round, TAMPERED_STATE),
        MULTIPLE_INPUTS => multiple_inputs(round),
        MULTI_ROUND => multi_round(round),
        CAPABILITIES => capabilities(round),
        _ => return None,
    };
    Some(answer)
}

/// The legacy way of [`call`]: every round's input requests go to the peer as
/// server→client requests, within this one call.
pub async fn call_legacy(
    request: &CallToolRequestParams,
    context: &RequestContext<RoleServer>,
) -> Option<Result<CallToolResponse, McpError>> {
    let name = request.name.as_ref();
    if !TOOLS.contains(&name) {
        return None;
    }
    let answer = legacy_rounds(
        context,
        |round| run_tool(name, round).unwrap_or_else(|| complete("")),
        |r| match r {
            CallToolResponse::InputRequired(ir) => Err(Box::new(ir)),
            other => Ok(other),
        },
    )
    .await;
    Some(answer)
}

/// The legacy way of [`prompt`].
pub async fn prompt_legacy(
    request: &GetPromptRequestParams,
    context: &RequestContext<RoleServer>,
) -> Option<Result<GetPromptResponse, McpError>> {
    if request.name != PROMPT {
        return None;
    }
    let answer = legacy_rounds(context, render_prompt, |r| match r {
        GetPromptResponse::InputRequired(ir) => Err(Box::new(ir)),
        other => Ok(other),
    })
    .await;
    Some(answer)
}

/// Most rounds one legacy call runs before giving up (the tools need at most two).
const LEGACY_ROUNDS: usize = 8;

/// The `params._meta` member of a server→client request naming the key its answer has in
/// the round (`user_name`): a bridge that turns the request into an `InputRequiredResult`
/// may key it so, as a 2026-07-28 server would.
pub const INPUT_KEY_META: &str = "apiary/inputKey";

/// Runs rounds until one completes: each `InputRequiredResult` (`split` tells it apart)
/// has its requests asked of the peer, and the next round sees the answers and its state.
async fn legacy_rounds<R>(
    context: &RequestContext<RoleServer>,
    run: impl Fn(&Round<'_>) -> Result<R, McpError>,
    split: impl Fn(R) -> Result<R, Box<InputRequiredResult>>,
) -> Result<R, McpError> {
    let caps = context.peer.peer_info().map(|info| info.capabilities.clone()).unwrap_or_default();
    let mut responses = InputResponses::new();
    let mut state: Option<String> = None;
    for _ in 0..LEGACY_ROUNDS {
        let round = Round { responses: &responses, state: state.as_deref(), caps: caps.clone() };
        let asked = match split(run(&round)?) {
            Ok(done) => return Ok(done),
            Err(asked) => asked,
        };
        let requests = asked.input_requests.unwrap_or_default();
        if requests.is_empty() {
            return Err(McpError::invalid_request("the client declared no capability this needs", None));
        }
        state = asked.request_state;
        responses = ask_peer(context, requests).await?;
    }
    Err(McpError::internal_error(format!("no answer after {LEGACY_ROUNDS} rounds of input"), None))
}

/// One input request as the server→client request a legacy server sends, its key named in
/// `params._meta` ([`INPUT_KEY_META`]).
fn as_server_request(key: &str, request: &rmcp::model::InputRequest) -> Result<ServerRequest, McpError> {
    let mut wire = serde_json::to_value(request).map_err(|e| McpError::internal_error(e.to_string(), None))?;
    if let Some(Value::Object(params)) = wire.as_object_mut().map(|w| w.entry("params").or_insert_with(|| json!({})))
        && let Value::Object(meta) = params.entry("_meta").or_insert_with(|| json!({}))
    {
        meta.insert(INPUT_KEY_META.to_owned(), Value::String(key.to_owned()));
    }
    serde_json::from_value(wire).map_err(|e| McpError::internal_error(format!("input request: {e}"), None))
}

/// Asks the peer every request of a round at once; the answers come back under their keys.
async fn ask_peer(context: &RequestContext<RoleServer>, requests: InputRequests) -> Result<InputResponses, McpError> {
    let mut asks = tokio::task::JoinSet::new();
    for (key, request) in requests {
        let request = as_server_request(&key, &request)?;
        let peer = context.peer.clone();
        let cancel = context.ct.clone();
        asks.spawn(async move {
            let answer = super::tools::ask_client(peer.send_request(request), &cancel).await;
            (key, answer)
        });
    }
    let mut responses = InputResponses::new();
    while let Some(done) = asks.join_next().await {
        let (key, answer) = done.map_err(|e| McpError::internal_error(e.to_string(), None))?;
        let value = serde_json::to_value(answer?).map_err(|e| McpError::internal_error(e.to_string(), None))?;
        responses.insert(key, value);
    }
    Ok(responses)
}

/// Renders the prompt `request` names when it is this module's; `None` otherwise.
pub fn prompt(
    request: &GetPromptRequestParams,
    context: &RequestContext<RoleServer>,
) -> Option<Result<GetPromptResponse, McpError>> {
    if request.name != PROMPT {
        return None;
    }
    let empty = InputResponses::new();
    let round = Round {
        responses: request.input_responses.as_ref().unwrap_or(&empty),
        state: request.request_state.as_deref(),
        caps: context.meta.client_capabilities().unwrap_or_default(),
    };
    Some(render_prompt(&round))
}

fn render_prompt(round: &Round<'_>) -> Result<GetPromptResponse, McpError> {
    match round.elicited("user_context", "context") {
        Some(context) => Ok(GetPromptResult::new(vec![PromptMessage::new_text(
            Role::User,
            format!("Answer with this context in mind: {context}"),
        )])
        .into()),
        None => Asks::default()
            .elicit(&round.caps, "user_context", "What context should the prompt use?", "context", "string")
            .result(None)
            .map(GetPromptResponse::from),
    }
}

fn complete(text: impl Into<String>) -> Result<CallToolResponse, McpError> {
    Ok(CallToolResult::success(vec![ContentBlock::text(text)]).into())
}

fn ask(asks: Asks, step: Option<&str>) -> Result<CallToolResponse, McpError> {
    asks.result(step).map(CallToolResponse::from)
}

fn elicitation(round: &Round<'_>) -> Result<CallToolResponse, McpError> {
    match round.elicited("user_name", "name") {
        Some(name) => complete(format!("Hello, {name}!")),
        None => ask(Asks::default().elicit(&round.caps, "user_name", "What is your name?", "name", "string"), None),
    }
}

fn sampling(round: &Round<'_>) -> Result<CallToolResponse, McpError> {
    match round.sampled("capital_question") {
        Some(text) => complete(format!("The model answered: {text}")),
        None => {
            ask(Asks::default().sample(&round.caps, "capital_question", "What is the capital of France?", 100), None)
        }
    }
}

fn list_roots(round: &Round<'_>) -> Result<CallToolResponse, McpError> {
    match round.roots("client_roots") {
        Some(roots) => complete(format!("The client's roots: {}", roots.join(", "))),
        None => ask(Asks::default().roots(&round.caps, "client_roots"), None),
    }
}

/// One confirmation whose state must come back intact (`tool` names the round's owner, so
/// one tool's state is not accepted by the other).
fn request_state(round: &Round<'_>, tool: &str) -> Result<CallToolResponse, McpError> {
    let step = round.step()?;
    let first = format!("{tool}:1");
    if step.as_deref() == Some(first.as_str()) && round.responses.contains_key("confirm") {
        return complete("state-ok: the requestState came back intact");
    }
    ask(Asks::default().elicit(&round.caps, "confirm", "Please confirm", "ok", "boolean"), Some(&first))
}

fn multiple_inputs(round: &Round<'_>) -> Result<CallToolResponse, McpError> {
    let step = round.step()?;
    let asks = Asks::default()
        .elicit(&round.caps, "user_name", "What is your name?", "name", "string")
        .sample(&round.caps, "greeting", "Generate a greeting", 50)
        .roots(&round.caps, "client_roots");
    let first = format!("{MULTIPLE_INPUTS}:1");
    let answered = asks.0.keys().all(|k| round.responses.contains_key(k));
    if step.as_deref() == Some(first.as_str()) && answered {
        return complete(format!("Got all {} inputs", asks.0.len()));
    }
    ask(asks, Some(&first))
}

/// Step 1 asks for a name; step 2 (the name sealed into the state) for a colour.
fn multi_round(round: &Round<'_>) -> Result<CallToolResponse, McpError> {
    let step = round.step()?;
    let first = format!("{MULTI_ROUND}:1");
    let second = format!("{MULTI_ROUND}:2:");
    let ask_name = || {
        ask(Asks::default().elicit(&round.caps, "step1", "Step 1: What is your name?", "name", "string"), Some(&first))
    };
    let ask_colour = |name: &str| {
        let asks =
            Asks::default().elicit(&round.caps, "step2", "Step 2: What is your favorite color?", "color", "string");
        ask(asks, Some(&format!("{second}{name}")))
    };
    match step.as_deref() {
        Some(s) if s == first => match round.elicited("step1", "name") {
            Some(name) => ask_colour(&name),
            None => ask_name(),
        },
        Some(s) if s.starts_with(&second) => {
            let name = &s[second.len()..];
            match round.elicited("step2", "color") {
                Some(colour) => complete(format!("{name} likes {colour}")),
                None => ask_colour(name),
            }
        }
        _ => ask_name(),
    }
}

fn capabilities(round: &Round<'_>) -> Result<CallToolResponse, McpError> {
    let asks = Asks::default().elicit(&round.caps, "user_name", "What is your name?", "name", "string").sample(
        &round.caps,
        "greeting",
        "Generate a greeting",
        50,
    );
    if !asks.0.is_empty() && asks.0.keys().all(|k| round.responses.contains_key(k)) {
        return complete(format!("Got {} inputs", asks.0.len()));
    }
    if asks.0.is_empty() {
        return complete("The client declared neither elicitation nor sampling: nothing to ask");
    }
    ask(asks, None)
}

/// A string, number or boolean as text (what an elicited field may hold).
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// This process's key for sealing states, drawn on first use.
fn key() -> Option<&'static hmac::Key> {
    static KEY: OnceLock<Option<hmac::Key>> = OnceLock::new();
    KEY.get_or_init(|| hmac::Key::generate(hmac::HMAC_SHA256, &aws_lc_rs::rand::SystemRandom::new()).ok()).as_ref()
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// `step` with its MAC: `<base64 step>.<base64 tag>`.
fn seal(step: &str) -> String {
    let tag = key().map(|k| hmac::sign(k, step.as_bytes())).map(|t| B64.encode(t.as_ref())).unwrap_or_default();
    format!("{}.{tag}", B64.encode(step))
}

/// The step a sealed state carries, when its MAC checks out.
fn open(state: &str) -> Option<String> {
    let (body, tag) = state.split_once('.')?;
    let step = B64.decode(body).ok()?;
    let tag = B64.decode(tag).ok()?;
    hmac::verify(key()?, &step, &tag).ok()?;
    String::from_utf8(step).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_states_open_and_altered_ones_do_not() {
        let state = seal("multi:2:Alice");
        assert_eq!(open(&state).as_deref(), Some("multi:2:Alice"));
        assert_eq!(open(&format!("{state}-TAMPERED")), None);
        let (_, tag) = state.split_once('.').unwrap_or_default();
        assert_eq!(open(&format!("{}.{tag}", B64.encode("multi:2:Mallory"))), None);
        assert_eq!(open("no-dot"), None);
    }

    #[test]
    fn input_requests_build_for_each_kind() {
        let caps: ClientCapabilities =
            serde_json::from_value(json!({"elicitation": {}, "sampling": {}, "roots": {}})).unwrap_or_default();
        let asks =
            Asks::default().elicit(&caps, "a", "m", "name", "string").sample(&caps, "b", "t", 5).roots(&caps, "c");
        let result = asks.result(Some("s"));
        assert!(result.is_ok(), "{result:?}");
        // Each becomes the server→client request a legacy server sends, its key in `_meta`.
        let asks =
            Asks::default().elicit(&caps, "a", "m", "name", "string").sample(&caps, "b", "t", 5).roots(&caps, "c");
        let requests = asks.result(None).unwrap().input_requests.unwrap();
        for (key, request) in &requests {
            let wire = serde_json::to_value(as_server_request(key, request).unwrap()).unwrap();
            assert_eq!(wire["method"], serde_json::to_value(request).unwrap()["method"], "{wire}");
            if wire["method"] != "roots/list" {
                assert_eq!(wire["params"]["_meta"][INPUT_KEY_META], key.as_str(), "{wire}");
            }
        }
        let none = Asks::default().elicit(&ClientCapabilities::default(), "a", "m", "name", "string");
        assert!(none.0.is_empty(), "no elicitation without the capability");
    }
}
