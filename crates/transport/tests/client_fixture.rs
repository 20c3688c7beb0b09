//! The MCP client against fixture servers built on the official Rust SDK (rmcp): list
//! pagination over many pages, a server that never stops paginating, a server→client `ping`
//! in the middle of a call, tool errors, and protocol version negotiation.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::borrow::Cow;
use std::time::Duration;

use apiary_transport::client::{ClientError, ConnectOptions, McpClient, Transport};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, InitializeRequestParams, InitializeResult,
    ListPromptsResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams, PingRequest, Prompt,
    ProtocolVersion, Resource, ServerCapabilities, ServerConfig, ServerRequest, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);
const RESOURCES: usize = 25;
const TOOLS: usize = 12;
const PROMPTS: usize = 7;

#[derive(Clone, Copy)]
enum Mode {
    Normal,
    /// `tools/list` always answers with the same `nextCursor`.
    LoopingCursor,
    /// `initialize` answers with this protocol version whatever the client offered.
    Version(&'static str),
}

fn protocol_version(v: &str) -> ProtocolVersion {
    serde_json::from_value(json!(v)).expect("rmcp accepts any version string")
}

#[derive(Clone, Copy)]
struct Pager {
    mode: Mode,
}

/// One page of `total` items, `size` per page; the cursor is the next offset.
fn page<T>(
    request: Option<PaginatedRequestParams>,
    total: usize,
    size: usize,
    make: impl Fn(usize) -> T,
) -> Result<(Vec<T>, Option<String>), ErrorData> {
    let start = match request.and_then(|r| r.cursor) {
        None => 0,
        Some(c) => c
            .parse::<usize>()
            .ok()
            .filter(|&n| n < total)
            .ok_or_else(|| ErrorData::invalid_params(format!("bad cursor {c:?}"), None))?,
    };
    let end = (start + size).min(total);
    let next = (end < total).then(|| end.to_string());
    Ok(((start..end).map(make).collect(), next))
}

impl ServerHandler for Pager {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().enable_resources().enable_prompts().build())
    }

    // rmcp negotiates after the handler runs: a server that supports only `v` answers `v`
    // to our 2025-11-25 offer.
    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        match self.mode {
            Mode::Version(v) => Cow::Owned(vec![protocol_version(v)]),
            _ => Cow::Borrowed(ProtocolVersion::KNOWN_VERSIONS),
        }
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        context.peer.set_peer_info(request.clone());
        let mut result = self.get_info();
        if let Mode::Version(v) = self.mode {
            result.protocol_version = protocol_version(v);
        }
        Ok(result)
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let (items, next) =
            page(request, RESOURCES, 10, |i| Resource::new(format!("fixture://item/{i}"), format!("item-{i}")))?;
        Ok(ListResourcesResult { next_cursor: next, ..ListResourcesResult::with_all_items(items) })
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let schema = serde_json::Map::from_iter([("type".to_owned(), json!("object"))]);
        let (items, mut next) =
            page(request, TOOLS, 5, |i| Tool::new(format!("tool-{i}"), format!("Tool number {i}"), schema.clone()))?;
        if let Mode::LoopingCursor = self.mode {
            next = Some("0".into());
        }
        Ok(ListToolsResult { next_cursor: next, ..ListToolsResult::with_all_items(items) })
    }

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let (items, next) = page(request, PROMPTS, 3, |i| Prompt::new(format!("prompt-{i}"), Some("a prompt"), None))?;
        Ok(ListPromptsResult { next_cursor: next, ..ListPromptsResult::with_all_items(items) })
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        match request.name.as_ref() {
            // Asks the client for a ping before answering: the client must answer it from
            // inside the response stream it is reading.
            "ping_client" => {
                let ping = ServerRequest::PingRequest(PingRequest {
                    method: Default::default(),
                    extensions: Default::default(),
                });
                let text = match context.peer.send_request(ping).await {
                    Ok(_) => "client answered ping".to_owned(),
                    Err(e) => format!("ping failed: {e}"),
                };
                Ok(CallToolResult::success(vec![ContentBlock::text(text)]).into())
            }
            "fail" => Ok(CallToolResult::error(vec![ContentBlock::text("it broke")]).into()),
            other => Err(ErrorData::invalid_params(format!("unknown tool {other}"), None)),
        }
    }
}

/// An rmcp server on a loopback port, stopped on drop.
struct Fixture {
    url: String,
    stop: CancellationToken,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn serve(mode: Mode, config: StreamableHttpServerConfig) -> Fixture {
    let stop = CancellationToken::new();
    let service: StreamableHttpService<Pager, LocalSessionManager> = StreamableHttpService::new(
        move || Ok(Pager { mode }),
        Default::default(),
        config.with_cancellation_token(stop.child_token()),
    );
    let router = axum::Router::new().nest_service("/mcp", service);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = stop.clone();
    tokio::spawn(async move {
        let _ =
            axum::serve(listener, router).with_graceful_shutdown(async move { shutdown.cancelled_owned().await }).await;
    });
    Fixture { url: format!("http://{addr}/mcp"), stop }
}

async fn connect(url: &str) -> Result<McpClient, ClientError> {
    let opts = ConnectOptions { transport: Transport::Auto, timeout: WAIT, headers: vec![] };
    McpClient::connect(url, opts).await
}

fn names(items: &[Value], key: &str) -> Vec<String> {
    items.iter().map(|i| i[key].as_str().unwrap().to_owned()).collect()
}

fn expected(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

async fn check_lists(client: &McpClient) {
    let resources = client.list_resources().await.unwrap();
    assert_eq!(names(&resources, "uri"), expected("fixture://item/", RESOURCES));
    let tools = client.list_tools().await.unwrap();
    assert_eq!(names(&tools, "name"), expected("tool-", TOOLS));
    let prompts = client.list_prompts().await.unwrap();
    assert_eq!(names(&prompts, "name"), expected("prompt-", PROMPTS));
}

#[tokio::test]
async fn follows_cursors_across_pages() {
    let fixture = serve(Mode::Normal, StreamableHttpServerConfig::default()).await;
    let client = connect(&fixture.url).await.unwrap();
    assert_eq!(client.transport(), Transport::StreamableHttp);
    assert!(client.session_id().is_some());
    check_lists(&client).await;
    client.close().await.unwrap();
}

#[tokio::test]
async fn stateless_json_server_works_too() {
    // No session, plain application/json answers.
    let config = StreamableHttpServerConfig::default().with_legacy_session_mode(false).with_json_response(true);
    let fixture = serve(Mode::Normal, config).await;
    let client = connect(&fixture.url).await.unwrap();
    assert_eq!(client.session_id(), None);
    check_lists(&client).await;
    client.close().await.unwrap();
}

#[tokio::test]
async fn a_cursor_that_never_ends_is_refused() {
    let fixture = serve(Mode::LoopingCursor, StreamableHttpServerConfig::default()).await;
    let client = connect(&fixture.url).await.unwrap();
    let err = client.list_tools().await.unwrap_err();
    assert!(matches!(&err, ClientError::Protocol(m) if m.contains("repeated cursor")), "{err:?}");
    client.close().await.unwrap();
}

#[tokio::test]
async fn answers_server_ping_during_a_call_and_reports_tool_errors() {
    let fixture = serve(Mode::Normal, StreamableHttpServerConfig::default()).await;
    let client = connect(&fixture.url).await.unwrap();
    let r = client.call_tool("ping_client", Value::Null).await.unwrap();
    assert_eq!(r["content"][0]["text"], "client answered ping", "{r}");

    // A tool failure is a result with isError, not a client error.
    let r = client.call_tool("fail", json!({})).await.unwrap();
    assert_eq!(r["isError"], json!(true));
    assert_eq!(r["content"][0]["text"], "it broke");

    // An unknown tool: the server's JSON-RPC error and its code come through.
    let err = client.call_tool("nope", json!({})).await.unwrap_err();
    assert_eq!(err.jsonrpc_code(), Some(-32602), "{err:?}");
    client.close().await.unwrap();
}

#[tokio::test]
async fn accepts_older_versions_and_refuses_unknown_ones() {
    let older = serve(Mode::Version("2025-03-26"), StreamableHttpServerConfig::default()).await;
    let client = connect(&older.url).await.unwrap();
    assert_eq!(client.protocol_version(), "2025-03-26");
    // Later requests carry the negotiated version and still work.
    assert_eq!(client.list_tools().await.unwrap().len(), TOOLS);
    client.close().await.unwrap();

    let bogus = serve(Mode::Version("1999-01-01"), StreamableHttpServerConfig::default()).await;
    let err = connect(&bogus.url).await.unwrap_err();
    assert!(matches!(&err, ClientError::UnsupportedVersion(v) if v == "1999-01-01"), "{err:?}");
}
