//! The tasks extension (SEP-2663, `io.modelcontextprotocol/tasks`) as the conformance
//! suite's `tasks-*` scenarios call for it: tools that answer with a `CreateTaskResult`
//! when the request declares the extension, and `tasks/get`, `tasks/update` and
//! `tasks/cancel` over one process-wide store (a stateless HTTP server answers every POST
//! with a fresh handler, so the tasks cannot live in it).
//!
//! Tools: `greet` (sync only), `slow_compute` (optional task: sleeps `seconds`, settles to
//! `cancelled` when cancelled first; without the extension it answers at once), `failing_job` (required: completes with a tool error),
//! `protocol_error_job` (required: fails with a JSON-RPC error), `confirm_delete` and
//! `multi_input` (required: park as `input_required` until `tasks/update` answers every
//! request, one at a time if need be), `test_tool_with_task` (required: one SEP-2322 input
//! round, then a task whose result carries the name given).
//!
//! The store holds at most [`MAX_TASKS`]; the oldest go first. A task lives [`TTL`].

use std::collections::VecDeque;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rmcp::ErrorData as McpError;
use rmcp::RoleServer;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ClientCapabilities, ContentBlock, CreateTaskResult,
    DetailedTask, GetTaskResult, InputRequests, InputResponses, JsonObject, Task, TaskPayload, TaskStatus, Tool,
};
use rmcp::service::RequestContext;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Most tasks the store keeps.
pub const MAX_TASKS: usize = 1024;
/// How long a task stays readable after it was created.
pub const TTL: Duration = Duration::from_secs(600);
/// The poll interval suggested to clients.
const POLL_INTERVAL_MS: u64 = 100;
/// Longest `slow_compute` a caller may ask for.
const MAX_SECONDS: u64 = 600;
/// How long `failing_job` and `protocol_error_job` work before they end.
const JOB_DELAY: Duration = Duration::from_millis(300);

/// The tools of this module, for `tools/list`.
pub fn catalogue() -> Vec<Tool> {
    let schema = |properties: Value, required: &[&str]| {
        let schema = json!({ "type": "object", "properties": properties, "required": required });
        std::sync::Arc::new(schema.as_object().cloned().unwrap_or_default())
    };
    vec![
        Tool::new("greet", "Returns Hello, {name}! (never a task)", schema(json!({"name": {"type": "string"}}), &[])),
        Tool::new(
            "slow_compute",
            "Sleeps `seconds`, then returns; a task when the client declares the tasks extension",
            schema(json!({"seconds": {"type": "number", "minimum": 0}, "label": {"type": "string"}}), &[]),
        ),
        Tool::new(
            "failing_job",
            "A task that completes with a tool error (needs the tasks extension)",
            schema(json!({}), &[]),
        ),
        Tool::new(
            "protocol_error_job",
            "A task that fails with a JSON-RPC error (needs the tasks extension)",
            schema(json!({}), &[]),
        ),
        Tool::new(
            "confirm_delete",
            "A task that asks the client to confirm, then completes (needs the tasks extension)",
            schema(json!({"filename": {"type": "string"}}), &[]),
        ),
        Tool::new(
            "multi_input",
            "A task that asks two questions at once, then completes (needs the tasks extension)",
            schema(json!({}), &[]),
        ),
        Tool::new(
            "test_tool_with_task",
            "Asks for a name through an input round trip, then runs a task greeting it",
            schema(json!({}), &[]),
        ),
    ]
}

/// Runs the tool `request` names when it is one of this module's; `None` otherwise.
pub fn call(
    request: &CallToolRequestParams,
    context: &RequestContext<RoleServer>,
) -> Option<Result<CallToolResponse, McpError>> {
    let caps = context.meta.client_capabilities().unwrap_or_default();
    let tasks = caps.supports_tasks();
    let args = request.arguments.clone().unwrap_or_default();
    let answer = match request.name.as_ref() {
        "greet" => {
            let name = args.get("name").and_then(Value::as_str).unwrap_or("World");
            Ok(text(format!("Hello, {name}!")).into())
        }
        "slow_compute" => Ok(slow_compute(&args, tasks)),
        "failing_job" => required(tasks).map(|()| spawn_job(Job::ToolError)),
        "protocol_error_job" => required(tasks).map(|()| spawn_job(Job::ProtocolError)),
        "confirm_delete" => required(tasks).and_then(|()| {
            let file = args.get("filename").and_then(Value::as_str).unwrap_or("the file");
            let mut asks = InputRequests::new();
            asks.insert("confirm".into(), confirm(&format!("Delete {file}?"), "confirm", "boolean")?);
            Ok(park(asks))
        }),
        "multi_input" => required(tasks).and_then(|()| {
            let mut asks = InputRequests::new();
            asks.insert("first".into(), confirm("First: what is your name?", "name", "string")?);
            asks.insert("second".into(), confirm("Second: please confirm", "confirm", "boolean")?);
            Ok(park(asks))
        }),
        "test_tool_with_task" => required(tasks).and_then(|()| with_task(request)),
        _ => return None,
    };
    Some(answer)
}

/// `tasks/get`: the task's state with its payload inlined; -32602 for an unknown id.
pub fn get(task_id: &str) -> Result<GetTaskResult, McpError> {
    with_store(|s| s.find(task_id).map(|e| GetTaskResult::new(e.detailed())))
}

/// `tasks/update`: records the answers given; the task completes once every request it
/// made is answered. Answers to keys it did not ask are ignored.
pub fn update(task_id: &str, responses: &InputResponses) -> Result<(), McpError> {
    with_store(|s| {
        let entry = s.find_mut(task_id)?;
        if let State::Waiting { asks, answers } = &mut entry.state {
            for (key, answer) in responses {
                if asks.remove(key).is_some() {
                    answers.insert(key.clone(), answer.clone());
                }
            }
            if asks.is_empty() {
                let summary = format!(
                    "Got {} answers: {}",
                    answers.len(),
                    Value::from(answers.clone().into_iter().collect::<serde_json::Map<_, _>>())
                );
                entry.settle(State::Completed(tool_result(&text(summary))));
            } else {
                entry.touch();
            }
        }
        Ok(())
    })
}

/// `tasks/cancel`: a running or waiting task settles to `cancelled`; a finished one is
/// left as it is (the ack is the same). -32602 for an unknown id.
pub fn cancel(task_id: &str) -> Result<(), McpError> {
    with_store(|s| {
        let entry = s.find_mut(task_id)?;
        if !entry.status().is_terminal() {
            entry.cancel.cancel();
            entry.settle(State::Cancelled);
        }
        Ok(())
    })
}

fn required(tasks: bool) -> Result<(), McpError> {
    if tasks {
        Ok(())
    } else {
        Err(McpError::missing_required_client_capability(ClientCapabilities::builder().enable_tasks().build()))
    }
}

fn text(text: impl Into<String>) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(text)])
}

/// A tool result as the JSON object a completed task inlines.
fn tool_result(result: &CallToolResult) -> JsonObject {
    match serde_json::to_value(result) {
        Ok(Value::Object(mut object)) => {
            object.remove("resultType");
            object
        }
        _ => JsonObject::new(),
    }
}

/// An `elicitation/create` request for one field.
fn confirm(message: &str, field: &str, kind: &str) -> Result<rmcp::model::InputRequest, McpError> {
    let request = json!({ "method": "elicitation/create", "params": {
        "mode": "form",
        "message": message,
        "requestedSchema": { "type": "object", "properties": { field: { "type": kind } }, "required": [field] },
    }});
    serde_json::from_value(request).map_err(|e| McpError::internal_error(format!("input request: {e}"), None))
}

fn slow_compute(args: &JsonObject, tasks: bool) -> CallToolResponse {
    let seconds = args.get("seconds").and_then(Value::as_f64).unwrap_or(1.0).clamp(0.0, MAX_SECONDS as f64);
    let label = args.get("label").and_then(Value::as_str).unwrap_or("slow_compute").to_owned();
    let done = move || text(format!("{label}: computed after {seconds}s"));
    let delay = Duration::from_secs_f64(seconds);
    if !tasks {
        // Without the extension the result comes at once, as if the work were instant (the
        // conformance suite only asks for `seconds: 0` this way).
        return done().into();
    }
    let (id, cancel, created) = with_store_infallible(|s| s.insert(State::Working));
    tokio::spawn(async move {
        tokio::select! {
            () = tokio::time::sleep(delay) => finish(&id, State::Completed(tool_result(&done()))),
            () = cancel.cancelled() => {}
        }
    });
    CallToolResponse::Task(CreateTaskResult::new(created))
}

enum Job {
    ToolError,
    ProtocolError,
}

fn spawn_job(job: Job) -> CallToolResponse {
    let (id, cancel, created) = with_store_infallible(|s| s.insert(State::Working));
    tokio::spawn(async move {
        tokio::select! {
            () = tokio::time::sleep(JOB_DELAY) => {
                let end = match job {
                    Job::ToolError => State::Completed(tool_result(&CallToolResult::error(vec![ContentBlock::text("the job failed")]))),
                    Job::ProtocolError => State::Failed(
                        json!({ "code": -32603, "message": "the job hit an internal error" }).as_object().cloned().unwrap_or_default(),
                    ),
                };
                finish(&id, end);
            }
            () = cancel.cancelled() => {}
        }
    });
    CallToolResponse::Task(CreateTaskResult::new(created))
}

fn park(asks: InputRequests) -> CallToolResponse {
    let (_, _, created) = with_store_infallible(|s| s.insert(State::Waiting { asks, answers: InputResponses::new() }));
    CallToolResponse::Task(CreateTaskResult::new(created))
}

/// Round 1 asks for `user_name` (no task yet); the retry carrying it gets a task whose
/// result greets that name.
fn with_task(request: &CallToolRequestParams) -> Result<CallToolResponse, McpError> {
    let name = request
        .input_responses
        .as_ref()
        .and_then(|r| r.get("user_name"))
        .and_then(|a| a.get("content")?.get("name")?.as_str().map(str::to_owned));
    let Some(name) = name else {
        let result = json!({ "resultType": "input_required", "inputRequests": {
            "user_name": { "method": "elicitation/create", "params": {
                "mode": "form",
                "message": "What is your name?",
                "requestedSchema": { "type": "object", "properties": { "name": { "type": "string" } }, "required": ["name"] },
            }},
        }});
        return serde_json::from_value::<rmcp::model::InputRequiredResult>(result)
            .map(CallToolResponse::from)
            .map_err(|e| McpError::internal_error(format!("input request: {e}"), None));
    };
    let (id, cancel, created) = with_store_infallible(|s| s.insert(State::Working));
    tokio::spawn(async move {
        tokio::select! {
            () = tokio::time::sleep(JOB_DELAY) => finish(&id, State::Completed(tool_result(&text(format!("Hello, {name}! (from a task)"))))),
            () = cancel.cancelled() => {}
        }
    });
    Ok(CallToolResponse::Task(CreateTaskResult::new(created)))
}

/// Settles a task its worker finished, unless it was cancelled (or expired) meanwhile.
fn finish(id: &str, state: State) {
    let _ = with_store(|s| {
        let entry = s.find_mut(id)?;
        if !entry.status().is_terminal() {
            entry.settle(state);
        }
        Ok(())
    });
}

/// Where a task is.
enum State {
    Working,
    Waiting { asks: InputRequests, answers: InputResponses },
    Completed(JsonObject),
    Failed(JsonObject),
    Cancelled,
}

struct Entry {
    id: String,
    state: State,
    created: Instant,
    created_at: String,
    updated_at: String,
    cancel: CancellationToken,
}

impl Entry {
    fn status(&self) -> TaskStatus {
        match self.state {
            State::Working => TaskStatus::Working,
            State::Waiting { .. } => TaskStatus::InputRequired,
            State::Completed(_) => TaskStatus::Completed,
            State::Failed(_) => TaskStatus::Failed,
            State::Cancelled => TaskStatus::Cancelled,
        }
    }

    fn task(&self) -> Task {
        Task::new(self.id.clone(), self.status(), self.created_at.clone(), self.updated_at.clone())
            .with_ttl_ms(u64::try_from(TTL.as_millis()).unwrap_or(u64::MAX))
            .with_poll_interval_ms(POLL_INTERVAL_MS)
    }

    fn detailed(&self) -> DetailedTask {
        let payload = match &self.state {
            State::Working => TaskPayload::Working,
            State::Waiting { asks, .. } => TaskPayload::InputRequired { input_requests: asks.clone() },
            State::Completed(result) => TaskPayload::Completed { result: result.clone() },
            State::Failed(error) => TaskPayload::Failed { error: error.clone() },
            State::Cancelled => TaskPayload::Cancelled,
        };
        DetailedTask::new(self.task(), payload)
    }

    fn touch(&mut self) {
        self.updated_at = now_iso8601();
    }

    fn settle(&mut self, state: State) {
        self.state = state;
        self.touch();
    }
}

#[derive(Default)]
struct Store {
    entries: VecDeque<Entry>,
    next: u64,
}

impl Store {
    /// Adds a task (durably: a `tasks/get` right after finds it) and returns its id, its
    /// cancellation token and its `Task` as created.
    fn insert(&mut self, state: State) -> (String, CancellationToken, Task) {
        self.entries.retain(|e| e.created.elapsed() < TTL);
        while self.entries.len() >= MAX_TASKS {
            self.entries.pop_front();
        }
        self.next += 1;
        let now = now_iso8601();
        let entry = Entry {
            id: format!("task-{}-{}", std::process::id(), self.next),
            state,
            created: Instant::now(),
            created_at: now.clone(),
            updated_at: now,
            cancel: CancellationToken::new(),
        };
        let out = (entry.id.clone(), entry.cancel.clone(), entry.task());
        self.entries.push_back(entry);
        out
    }

    fn find(&self, id: &str) -> Result<&Entry, McpError> {
        self.entries.iter().find(|e| e.id == id && e.created.elapsed() < TTL).ok_or_else(|| unknown(id))
    }

    fn find_mut(&mut self, id: &str) -> Result<&mut Entry, McpError> {
        self.entries.iter_mut().find(|e| e.id == id && e.created.elapsed() < TTL).ok_or_else(|| unknown(id))
    }
}

fn unknown(id: &str) -> McpError {
    McpError::invalid_params(format!("unknown task: {id}"), Some(json!({ "taskId": id })))
}

fn store() -> &'static Mutex<Store> {
    static STORE: OnceLock<Mutex<Store>> = OnceLock::new();
    STORE.get_or_init(Mutex::default)
}

fn with_store<T>(f: impl FnOnce(&mut Store) -> Result<T, McpError>) -> Result<T, McpError> {
    f(&mut store().lock().unwrap_or_else(PoisonError::into_inner))
}

fn with_store_infallible<T>(f: impl FnOnce(&mut Store) -> T) -> T {
    f(&mut store().lock().unwrap_or_else(PoisonError::into_inner))
}

/// The current UTC time as ISO 8601 (`2026-07-28T12:00:00.000Z`).
fn now_iso8601() -> String {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    iso8601(since)
}

fn iso8601(since_epoch: Duration) -> String {
    let secs = since_epoch.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since_epoch.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn timestamps_are_iso8601() {
        assert_eq!(iso8601(Duration::ZERO), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(Duration::from_millis(951_782_400_123)), "2000-02-29T00:00:00.123Z");
        assert_eq!(iso8601(Duration::from_secs(1_785_240_000)), "2026-07-28T12:00:00.000Z");
    }

    #[test]
    fn waiting_tasks_complete_once_every_request_is_answered() {
        let mut asks = InputRequests::new();
        asks.insert("a".into(), confirm("a?", "x", "string").unwrap());
        asks.insert("b".into(), confirm("b?", "y", "string").unwrap());
        let (id, _, created) =
            with_store_infallible(|s| s.insert(State::Waiting { asks, answers: InputResponses::new() }));
        assert_eq!(created.status, TaskStatus::InputRequired);
        let answer = |k: &str| InputResponses::from([(k.to_owned(), json!({"action": "accept", "content": {}}))]);
        update(&id, &answer("a")).unwrap();
        let detailed = get(&id).map(|r| r.task).ok();
        assert!(
            matches!(detailed.map(|d| d.payload), Some(TaskPayload::InputRequired { input_requests }) if input_requests.keys().eq(["b"]))
        );
        update(&id, &answer("b")).unwrap();
        assert_eq!(get(&id).map(|r| r.task.status()).ok(), Some(TaskStatus::Completed));
        cancel(&id).unwrap();
        assert_eq!(get(&id).map(|r| r.task.status()).ok(), Some(TaskStatus::Completed), "a finished task stays so");
        assert!(get("nope").is_err() && cancel("nope").is_err() && update("nope", &answer("a")).is_err());
    }
}
