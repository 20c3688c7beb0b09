//! Which MCP clients Apiary can configure: each client's config file (under `$HOME`) and its
//! format (JSON, YAML or TOML), the member that holds its servers, and the shape of one server
//! entry (ToolHive's `pkg/client/config.go`, docs/toolhive-reference.md §2.5).

use std::path::{Path, PathBuf};

/// Where a client's config path starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    /// `$HOME`.
    Home,
    /// The platform's application-config directory: `~/.config` on Linux,
    /// `~/Library/Application Support` on macOS.
    Platform,
}

/// How one server entry looks in a client's file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `{"url": U}`.
    Url,
    /// `{"type": "http"|"sse", "url": U}` (VS Code, Claude Code, Copilot CLI, Factory).
    TypedUrl,
    /// `{"serverUrl": U}` (Windsurf, Antigravity).
    ServerUrl,
    /// `{"type": "streamableHttp"|"sse", "url": U}` (Cline, Roo Code).
    Cline,
    /// `{"type": "remote", "url": U, "enabled": true}` (opencode).
    OpenCode,
    /// `{"httpUrl": U}` for streamable HTTP, `{"url": U}` for SSE (Gemini CLI).
    Gemini,
    /// `{name, type: "streamable_http"|"sse", uri, enabled: true, timeout: 60, description: ""}`
    /// (goose's `extensions`, ToolHive's defaults).
    Goose,
    /// `{name, type: "streamable-http"|"sse", url}` (Continue's `mcpServers` list).
    Continue,
    /// `{name, transport: "streamable-http"|"http", url}` (Mistral Vibe's `[[mcp_servers]]`).
    Vibe,
}

/// How a client's file is written, and how its servers are kept in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// A JSON object whose `key` member is an object of entries by name.
    Json,
    /// YAML whose top-level `key` is a map of entries by name (goose).
    YamlMap,
    /// YAML whose top-level `key` is a list of entries, each with its `name` (Continue).
    YamlList,
    /// TOML with one `[key.NAME]` table per entry (Codex).
    TomlTables,
    /// TOML with one `[[key]]` table per entry, each with its `name` (Mistral Vibe).
    TomlArray,
}

/// One configurable client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSpec {
    /// ToolHive's client id (`claude-code`).
    pub id: &'static str,
    /// Where `file` starts.
    pub base: Base,
    /// The config file, relative to `base`.
    pub file: &'static str,
    /// The top-level member holding the servers (a literal key; `amp.mcpServers` is one key).
    pub key: &'static str,
    /// The shape of one entry.
    pub shape: Shape,
    /// A directory (relative to `$HOME`) whose presence says the client is installed, when the
    /// config file's own directory does not (`~/.claude.json` lives in `$HOME` itself).
    pub marker: Option<&'static str>,
    /// The file's format.
    pub format: FileFormat,
}

const fn spec(id: &'static str, base: Base, file: &'static str, key: &'static str, shape: Shape) -> ClientSpec {
    ClientSpec { id, base, file, key, shape, marker: None, format: FileFormat::Json }
}

const fn spec_in(
    format: FileFormat,
    id: &'static str,
    file: &'static str,
    key: &'static str,
    shape: Shape,
) -> ClientSpec {
    ClientSpec { id, base: Base::Home, file, key, shape, marker: None, format }
}

/// Every client Apiary can configure.
pub const CLIENTS: &[ClientSpec] = &[
    spec("vscode", Base::Platform, "Code/User/mcp.json", "servers", Shape::TypedUrl),
    spec("vscode-insider", Base::Platform, "Code - Insiders/User/mcp.json", "servers", Shape::TypedUrl),
    spec("vscode-server", Base::Home, ".vscode-server/data/User/mcp.json", "servers", Shape::TypedUrl),
    spec("cursor", Base::Home, ".cursor/mcp.json", "mcpServers", Shape::Url),
    ClientSpec {
        id: "claude-code",
        base: Base::Home,
        file: ".claude.json",
        key: "mcpServers",
        shape: Shape::TypedUrl,
        marker: Some(".claude"),
        format: FileFormat::Json,
    },
    spec(
        "cline",
        Base::Platform,
        "Code/User/globalStorage/saoudrizwan.claude-dev/settings/cline_mcp_settings.json",
        "mcpServers",
        Shape::Cline,
    ),
    spec(
        "roo-code",
        Base::Platform,
        "Code/User/globalStorage/rooveterinaryinc.roo-cline/settings/mcp_settings.json",
        "mcpServers",
        Shape::Cline,
    ),
    spec("windsurf", Base::Home, ".codeium/windsurf/mcp_config.json", "mcpServers", Shape::ServerUrl),
    spec("windsurf-jetbrains", Base::Home, ".codeium/mcp_config.json", "mcpServers", Shape::ServerUrl),
    spec("amp-cli", Base::Home, ".config/amp/settings.json", "amp.mcpServers", Shape::Url),
    spec("lm-studio", Base::Home, ".lmstudio/mcp.json", "mcpServers", Shape::Url),
    spec("trae", Base::Platform, "Trae/User/mcp.json", "mcpServers", Shape::Url),
    spec("opencode", Base::Home, ".config/opencode/opencode.json", "mcp", Shape::OpenCode),
    spec("kiro", Base::Home, ".kiro/settings/mcp.json", "mcpServers", Shape::Url),
    spec("antigravity", Base::Home, ".gemini/antigravity/mcp_config.json", "mcpServers", Shape::ServerUrl),
    spec("zed", Base::Home, ".config/zed/settings.json", "context_servers", Shape::Url),
    spec("gemini-cli", Base::Home, ".gemini/settings.json", "mcpServers", Shape::Gemini),
    spec("kimi-cli", Base::Home, ".kimi/mcp.json", "mcpServers", Shape::Url),
    spec("factory", Base::Home, ".factory/mcp.json", "mcpServers", Shape::TypedUrl),
    spec("copilot-cli", Base::Home, ".copilot/mcp-config.json", "mcpServers", Shape::TypedUrl),
    spec("qoder", Base::Home, ".qoder/mcp.json", "mcpServers", Shape::Url),
    // goose keeps `~/.config` on macOS too (ToolHive's table).
    spec_in(FileFormat::YamlMap, "goose", ".config/goose/config.yaml", "extensions", Shape::Goose),
    spec_in(FileFormat::YamlList, "continue", ".continue/config.yaml", "mcpServers", Shape::Continue),
    spec_in(FileFormat::TomlTables, "codex", ".codex/config.toml", "mcp_servers", Shape::Url),
    spec_in(FileFormat::TomlArray, "mistral-vibe", ".vibe/config.toml", "mcp_servers", Shape::Vibe),
];

/// The client with this id.
pub fn find(id: &str) -> Option<&'static ClientSpec> {
    CLIENTS.iter().find(|c| c.id == id)
}

impl ClientSpec {
    fn base_dir(&self, home: &Path) -> PathBuf {
        match self.base {
            Base::Home => home.to_path_buf(),
            Base::Platform if cfg!(target_os = "macos") => home.join("Library/Application Support"),
            Base::Platform => home.join(".config"),
        }
    }

    /// The client's config file for this home directory.
    pub fn config_path(&self, home: &Path) -> PathBuf {
        self.base_dir(home).join(self.file)
    }

    /// Whether the client looks installed: its config file or the directory it lives in (or its
    /// marker directory) exists.
    pub fn installed(&self, home: &Path) -> bool {
        let path = self.config_path(home);
        if path.exists() {
            return true;
        }
        if let Some(marker) = self.marker {
            return home.join(marker).is_dir();
        }
        path.parent().is_some_and(|p| p != home && p.is_dir())
    }

    /// The JSON text of one entry pointing at `url`. Only the URL goes in, never a secret.
    pub fn entry(&self, url: &str) -> String {
        self.entry_value("", url).to_string()
    }

    /// One entry pointing at `url`, its members in the order they are written; entries of
    /// list-shaped clients carry their `name`. Only the URL goes in, never a secret.
    pub fn entry_value(&self, name: &str, url: &str) -> serde_json::Value {
        let sse = is_sse_url(url);
        match self.shape {
            Shape::Url => serde_json::json!({ "url": url }),
            Shape::TypedUrl => serde_json::json!({ "type": if sse { "sse" } else { "http" }, "url": url }),
            Shape::ServerUrl => serde_json::json!({ "serverUrl": url }),
            Shape::Cline => serde_json::json!({ "type": if sse { "sse" } else { "streamableHttp" }, "url": url }),
            Shape::OpenCode => serde_json::json!({ "type": "remote", "url": url, "enabled": true }),
            Shape::Gemini if sse => serde_json::json!({ "url": url }),
            Shape::Gemini => serde_json::json!({ "httpUrl": url }),
            Shape::Goose => serde_json::json!({
                "name": name,
                "type": if sse { "sse" } else { "streamable_http" },
                "uri": url,
                "enabled": true,
                "timeout": 60,
                "description": "",
            }),
            Shape::Continue => {
                serde_json::json!({ "name": name, "type": if sse { "sse" } else { "streamable-http" }, "url": url })
            }
            Shape::Vibe => {
                serde_json::json!({ "name": name, "transport": if sse { "http" } else { "streamable-http" }, "url": url })
            }
        }
    }
}

/// Whether the URL is an SSE endpoint (`…/sse`, optionally with a `#fragment`), as the proxy
/// prints for SSE-mode workloads.
fn is_sse_url(url: &str) -> bool {
    let path = url.split(['#', '?']).next().unwrap_or(url);
    path.trim_end_matches('/').ends_with("/sse")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ids_are_unique_and_found() {
        for (i, c) in CLIENTS.iter().enumerate() {
            assert!(CLIENTS[i + 1..].iter().all(|o| o.id != c.id), "{}", c.id);
            assert_eq!(find(c.id), Some(c));
        }
        assert!(find("nope").is_none());
    }

    #[test]
    fn paths_follow_the_reference() {
        let home = Path::new("/h");
        assert_eq!(find("claude-code").unwrap().config_path(home), Path::new("/h/.claude.json"));
        assert_eq!(find("cursor").unwrap().config_path(home), Path::new("/h/.cursor/mcp.json"));
        if !cfg!(target_os = "macos") {
            assert_eq!(find("vscode").unwrap().config_path(home), Path::new("/h/.config/Code/User/mcp.json"));
        }
    }

    #[test]
    fn entries_have_each_clients_shape() {
        let u = "http://127.0.0.1:9/mcp";
        let s = "http://127.0.0.1:9/sse#w";
        let e = |id: &str, url: &str| serde_json::from_str::<serde_json::Value>(&find(id).unwrap().entry(url)).unwrap();
        assert_eq!(e("cursor", u), serde_json::json!({"url": u}));
        assert_eq!(e("vscode", u), serde_json::json!({"type": "http", "url": u}));
        assert_eq!(e("claude-code", s), serde_json::json!({"type": "sse", "url": s}));
        assert_eq!(e("windsurf", u), serde_json::json!({"serverUrl": u}));
        assert_eq!(e("cline", u), serde_json::json!({"type": "streamableHttp", "url": u}));
        assert_eq!(e("gemini-cli", u), serde_json::json!({"httpUrl": u}));
        assert_eq!(e("gemini-cli", s), serde_json::json!({"url": s}));
        assert_eq!(e("opencode", u), serde_json::json!({"type": "remote", "url": u, "enabled": true}));
    }

    #[test]
    fn installed_means_the_config_or_its_directory_exists() {
        let home = tempfile::tempdir().unwrap();
        let cursor = find("cursor").unwrap();
        let claude = find("claude-code").unwrap();
        assert!(!cursor.installed(home.path()));
        assert!(!claude.installed(home.path()), "$HOME itself does not count");
        std::fs::create_dir(home.path().join(".cursor")).unwrap();
        std::fs::create_dir(home.path().join(".claude")).unwrap();
        assert!(cursor.installed(home.path()));
        assert!(claude.installed(home.path()));
    }
}
