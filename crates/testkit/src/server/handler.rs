//! The fixture server's MCP handler: capabilities, protocol versions, logging level and resource
//! subscriptions of one connection, and the routing of each request to the tools, resources and
//! prompts modules.
//!
//! It deliberately serves the legacy (initialize-based) features that SEP-2577 deprecates
//! (logging, sampling, resource subscriptions): the conformance suite for 2025-11-25 requires
//! them, hence the `deprecated` allowances below.
#![allow(deprecated)]

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rmcp::model::SubscriptionFilter;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CancelTaskParams, GetTaskParams, GetTaskResult, UpdateTaskParams,
};
use rmcp::model::{
    CompleteRequestParams, CompleteResult, DiscoverRequestMethod, DiscoverResult, GetPromptRequestParams,
    GetPromptResponse, Implementation, ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult,
    ListToolsResult, LoggingLevel, PaginatedRequestParams, ProtocolVersion, ReadResourceRequestParams,
    ReadResourceResponse, ReadResourceResult, ServerCapabilities, ServerConfig, SetLevelRequestParams,
    SubscribeRequestParams, UnsubscribeRequestParams,
};
use rmcp::service::{RequestContext, SubscriptionContext};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};

use super::ServerOptions;
use super::dynamic::DynamicTools;
use super::resources::{self, Subscriptions};
use super::sessions::FixtureSessions;
use super::{modern_asks, mrtr, param_headers, prompts, stateless, tasks, tools};

/// Name the server reports in `serverInfo`.
pub const SERVER_NAME: &str = "apiary-testkit-server";

/// One connection's fixture server (a stdio process, or one Streamable HTTP session).
#[derive(Debug)]
pub struct FixtureServer {
    pub(super) options: ServerOptions,
    /// The HTTP session manager, when serving Streamable HTTP; `None` over stdio.
    pub(super) sessions: Option<Arc<FixtureSessions>>,
    log_level: Mutex<LoggingLevel>,
    pub(super) subscriptions: Subscriptions,
    watched_version: AtomicU64,
    /// Tools this connection added with `add_tool`.
    pub(super) dynamic: DynamicTools,
}

impl FixtureServer {
    /// A fresh connection state; `sessions` is the HTTP session manager when serving HTTP.
    pub fn new(options: ServerOptions, sessions: Option<Arc<FixtureSessions>>) -> Self {
        Self {
            options,
            sessions,
            // Until the client picks a level, send everything from `info` up.
            log_level: Mutex::new(LoggingLevel::Info),
            subscriptions: Subscriptions::default(),
            watched_version: AtomicU64::new(1),
            dynamic: DynamicTools::default(),
        }
    }

    /// Whether a log message at `level` passes the level the client set.
    pub(super) fn logs_at(&self, level: LoggingLevel) -> bool {
        let threshold = *self.log_level.lock().unwrap_or_else(PoisonError::into_inner);
        severity(level) >= severity(threshold)
    }

    /// Bumps the watched resource's version, returning the new one.
    pub(super) fn touch_watched(&self) -> u64 {
        self.watched_version.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// The SDK's constant for a version the fixture can be pinned to (one it knows), or the
/// newest with `initialize` if it ever knew none by that name.
fn known_version(v: &str) -> ProtocolVersion {
    ProtocolVersion::KNOWN_VERSIONS
        .iter()
        .find(|k| k.as_str() == v)
        .cloned()
        .unwrap_or(ProtocolVersion::LATEST_WITH_INITIALIZE)
}

/// Orders logging levels from `debug` (0) to `emergency` (7).
fn severity(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

impl ServerHandler for FixtureServer {
    fn get_info(&self) -> ServerConfig {
        let builder = ServerCapabilities::builder()
            .enable_logging()
            .enable_completions()
            .enable_prompts()
            .enable_resources()
            .enable_resources_subscribe()
            .enable_tools()
            // `add_tool` changes this connection's list and says so.
            .enable_tool_list_changed();
        // The tasks extension is a 2026-07-28 one: a legacy-only server does not offer it.
        let capabilities = if self.options.legacy() { builder.build() } else { builder.enable_tasks().build() };
        let config = ServerConfig::new(capabilities);
        // A pinned server answers `initialize` with its one version, whatever was asked.
        let config = match self.options.protocol_version {
            Some(v) => config.with_protocol_version(known_version(v)),
            None => config,
        };
        config.with_server_info(Implementation::new(SERVER_NAME, env!("CARGO_PKG_VERSION"))).with_instructions(
            "Apiary's fixture MCP server: the conformance suite's test_* tools, resources and \
                 prompts, plus echo, sleep, pid, crash and touch_resource for proxy tests.",
        )
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        if let Some(v) = self.options.protocol_version {
            return Cow::Owned(vec![known_version(v)]);
        }
        if self.options.modern_only {
            return Cow::Borrowed(&[ProtocolVersion::V_2026_07_28]);
        }
        if self.options.legacy_only {
            Cow::Borrowed(ProtocolVersion::known_up_to(&ProtocolVersion::V_2025_11_25))
        } else {
            Cow::Borrowed(ProtocolVersion::KNOWN_VERSIONS)
        }
    }

    async fn discover(&self, _context: RequestContext<RoleServer>) -> Result<DiscoverResult, McpError> {
        if self.options.legacy() {
            return Err(McpError::method_not_found::<DiscoverRequestMethod>());
        }
        Ok(DiscoverResult::from_server_info(self.supported_protocol_versions().into_owned(), self.get_info()))
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        *self.log_level.lock().unwrap_or_else(PoisonError::into_inner) = request.level;
        Ok(())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let mut all = tools::catalogue();
        all.extend(mrtr::catalogue());
        all.extend(tasks::catalogue());
        all.extend(stateless::catalogue());
        all.push(param_headers::tool());
        all.push(param_headers::nested_tool());
        all.extend(self.dynamic.tools());
        Ok(ListToolsResult::with_all_items(all))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        if self.options.legacy_only {
            if let Some(answer) = mrtr::call_legacy(&request, &context).await {
                return answer;
            }
        } else if let Some(answer) = mrtr::call(&request, &context) {
            return answer;
        }
        if let Some(answer) = modern_asks::call(&request, &context) {
            return answer;
        }
        if let Some(answer) = tasks::call(&request, &context) {
            return answer;
        }
        if let Some(answer) = stateless::call(&request, &context, self.options.legacy_only).await {
            return answer;
        }
        if let Some(result) = param_headers::call(&request) {
            return Ok(result.into());
        }
        tools::call(self, request, context).await.map(CallToolResponse::from)
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        Ok(ListResourcesResult::with_all_items(resources::list()))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        Ok(ListResourceTemplatesResult::with_all_items(resources::templates()))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let version = self.watched_version.load(Ordering::Relaxed);
        let contents = resources::read(&request.uri, version)?;
        Ok(ReadResourceResult::new(contents).into())
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.subscriptions.subscribe(&request.uri)
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.subscriptions.unsubscribe(&request.uri);
        Ok(())
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        let mut all = prompts::list();
        all.extend(mrtr::prompts());
        Ok(ListPromptsResult::with_all_items(all))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        if self.options.legacy_only {
            if let Some(answer) = mrtr::prompt_legacy(&request, &context).await {
                return answer;
            }
        } else if let Some(answer) = mrtr::prompt(&request, &context) {
            return answer;
        }
        prompts::get(&request.name, request.arguments.as_ref()).map(GetPromptResponse::from)
    }

    fn accepted_subscription_filter(&self, requested: &SubscriptionFilter) -> Option<SubscriptionFilter> {
        // Everything asked for; the SDK narrows it to what the capabilities advertise.
        Some(requested.clone())
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), McpError> {
        stateless::listen(context).await
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, McpError> {
        tasks::get(&request.task_id)
    }

    async fn update_task(
        &self,
        request: UpdateTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        tasks::update(&request.task_id, &request.input_responses)
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        tasks::cancel(&request.task_id)
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        let info = prompts::complete(&request.r#ref, &request.argument.name, &request.argument.value)?;
        Ok(CompleteResult::new(info))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_threshold_filters_lower_levels() {
        let server = FixtureServer::new(ServerOptions::default(), None);
        assert!(server.logs_at(LoggingLevel::Info));
        assert!(!server.logs_at(LoggingLevel::Debug));
        *server.log_level.lock().unwrap() = LoggingLevel::Error;
        assert!(!server.logs_at(LoggingLevel::Warning));
        assert!(server.logs_at(LoggingLevel::Emergency));
    }

    #[test]
    fn a_pinned_server_supports_its_one_version_and_says_it() {
        for v in crate::server::LEGACY_REVISIONS {
            let server =
                FixtureServer::new(ServerOptions { protocol_version: Some(v), ..ServerOptions::default() }, None);
            let versions = server.supported_protocol_versions();
            assert_eq!(versions.iter().map(ProtocolVersion::as_str).collect::<Vec<_>>(), vec![v]);
            assert_eq!(server.get_info().protocol_version.as_str(), v);
            assert!(server.get_info().capabilities.extensions.is_none(), "no tasks extension");
        }
        let modern = FixtureServer::new(ServerOptions { modern_only: true, ..ServerOptions::default() }, None);
        assert_eq!(modern.supported_protocol_versions().as_ref(), &[ProtocolVersion::V_2026_07_28]);
    }

    #[test]
    fn legacy_only_stops_at_2025_11_25() {
        let server = FixtureServer::new(ServerOptions { legacy_only: true, ..ServerOptions::default() }, None);
        let versions = server.supported_protocol_versions();
        assert!(versions.contains(&ProtocolVersion::V_2025_11_25));
        assert!(versions.contains(&ProtocolVersion::V_2024_11_05));
        assert!(!versions.contains(&ProtocolVersion::V_2026_07_28));
    }
}
