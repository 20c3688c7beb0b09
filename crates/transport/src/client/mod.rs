//! MCP client over Streamable HTTP and HTTP+SSE (placeholder).
