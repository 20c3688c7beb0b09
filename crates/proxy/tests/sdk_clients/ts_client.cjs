// Drives an MCP server over Streamable HTTP with the official TypeScript SDK
// (npm `@modelcontextprotocol/sdk`, found through NODE_PATH since this is CommonJS).
//
// Usage: node ts_client.cjs URL TOOL ARGS_JSON
// Connects, lists tools, calls TOOL with ARGS_JSON, and prints one JSON object on stdout:
// {"server": ..., "protocolVersion": ..., "tools": [names], "result": CallToolResult}.
// Any failure exits non-zero with the error on stderr.
'use strict';

const { Client } = require('@modelcontextprotocol/sdk/client/index.js');
const {
  StreamableHTTPClientTransport,
} = require('@modelcontextprotocol/sdk/client/streamableHttp.js');

async function main() {
  const [url, tool, argsJson] = process.argv.slice(2);
  if (!url || !tool || argsJson === undefined) {
    throw new Error('usage: node ts_client.cjs URL TOOL ARGS_JSON');
  }
  const client = new Client({ name: 'apiary-e2e-ts', version: '0.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(url));
  await client.connect(transport);
  try {
    const listed = await client.listTools();
    const result = await client.callTool({ name: tool, arguments: JSON.parse(argsJson) });
    const out = {
      server: client.getServerVersion()?.name,
      protocolVersion: transport.protocolVersion,
      tools: listed.tools.map((t) => t.name),
      result,
    };
    process.stdout.write(JSON.stringify(out) + '\n');
  } finally {
    // Ends the session with a DELETE, then closes the transport.
    await transport.terminateSession().catch(() => {});
    await client.close();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err && err.stack ? err.stack : String(err));
    process.exit(1);
  },
);
