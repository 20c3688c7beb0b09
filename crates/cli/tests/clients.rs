//! `apiary client` with the real binary, a temporary `$HOME` and the fixture MCP server: each
//! client format gets the workload's entry and loses it again leaving the file byte-identical;
//! registered clients follow `run` and `rm`; invalid JSON (and TOML, and YAML in flow style) is
//! refused untouched; `setup` and `status` see installed clients.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use apiary_testkit::binaries::testkit_server;
use serde_json::Value;
use support::{Apiary, COMMAND_LIMIT, Out, finish};

fn server() -> String {
    testkit_server().to_string_lossy().into_owned()
}

struct Env {
    apiary: Apiary,
    home: PathBuf,
}

impl Env {
    fn new() -> Self {
        let apiary = Apiary::new();
        let home = apiary.scratch().join("home");
        std::fs::create_dir(&home).unwrap();
        Env { apiary, home }
    }

    fn run(&self, args: &[&str]) -> Out {
        let child = self
            .apiary
            .command(args)
            .env("HOME", &self.home)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        finish(child, COMMAND_LIMIT, &args.join(" "))
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.home.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// A config in the user's own odd formatting, with another server and other top-level keys.
fn odd_config(key: &str) -> String {
    format!(
        "{{\n\t\"theme\" :\"dark\",   \"numbers\": [1.50, 12345678901234567890],\n  \"{key}\":{{ \"mine\" : {{\"command\":\"x\", \"env\":{{\"K\":\"\\u0041\"}}}}\n\n }} ,\"tail\":null}}\n"
    )
}

#[test]
fn each_client_format_gets_the_entry_and_loses_it_byte_identically() {
    let env = Env::new();
    let url = env.run(&["run", "--name", "w", "--", &server(), "--stdio"]).ok().stdout.trim().to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let linux_or_mac = if cfg!(target_os = "macos") { "Library/Application Support" } else { ".config" };
    let cases: Vec<(&str, String, &str, Value)> = vec![
        ("cursor", ".cursor/mcp.json".into(), "mcpServers", serde_json::json!({"url": url})),
        ("claude-code", ".claude.json".into(), "mcpServers", serde_json::json!({"type": "http", "url": url})),
        (
            "vscode",
            format!("{linux_or_mac}/Code/User/mcp.json"),
            "servers",
            serde_json::json!({"type": "http", "url": url}),
        ),
        ("windsurf", ".codeium/windsurf/mcp_config.json".into(), "mcpServers", serde_json::json!({"serverUrl": url})),
        (
            "cline",
            format!("{linux_or_mac}/Code/User/globalStorage/saoudrizwan.claude-dev/settings/cline_mcp_settings.json"),
            "mcpServers",
            serde_json::json!({"type": "streamableHttp", "url": url}),
        ),
        (
            "opencode",
            ".config/opencode/opencode.json".into(),
            "mcp",
            serde_json::json!({"type": "remote", "url": url, "enabled": true}),
        ),
        ("gemini-cli", ".gemini/settings.json".into(), "mcpServers", serde_json::json!({"httpUrl": url})),
        ("amp-cli", ".config/amp/settings.json".into(), "amp.mcpServers", serde_json::json!({"url": url})),
    ];
    for (id, rel, key, want) in &cases {
        let original = odd_config(key);
        let path = env.write(rel, &original);
        env.run(&["client", "register", id]).ok();
        let v = json(&path);
        assert_eq!(v[*key]["w"], *want, "{id}");
        assert_eq!(v[*key]["mine"]["command"], "x", "{id}");
        assert_eq!(v["theme"], "dark", "{id}");
        env.run(&["client", "remove", id]).ok();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), original, "{id}: the file is back byte for byte");
    }
    let listed = env.run(&["client", "list-registered-clients", "--format", "json"]).ok().stdout.clone();
    assert_eq!(serde_json::from_str::<Value>(&listed).unwrap(), serde_json::json!([]));
    env.run(&["rm", "w"]).ok();
}

/// The YAML and TOML clients: the entry in ToolHive's shape for each, the user's comments, order
/// and other settings kept through setup, and the file byte-identical after remove.
#[test]
fn yaml_and_toml_clients_get_the_entry_keep_the_rest_and_lose_it_byte_identically() {
    let env = Env::new();
    let url = env.run(&["run", "--name", "w", "--", &server(), "--stdio"]).ok().stdout.trim().to_owned();
    let goose = "# goose settings\nGOOSE_PROVIDER: openai   # keep this comment\nextensions:\n  developer:\n    enabled: true\n    name: developer\n    type: builtin\n\nGOOSE_MODEL: gpt-4o\n";
    let cont = "name: My config\nversion: 0.0.1\nmcpServers:\n  - name: time\n    command: uvx\n    args:\n      - mcp-server-time\n# models next\nmodels: []\n";
    let codex = "# codex\nmodel = \"o3\"  # keep\n\n[mcp_servers.time]\ncommand = \"uvx\"\nargs = [\"mcp-server-time\"]\n\n[profiles.fast]\nmodel = \"o4-mini\"\n";
    let vibe = "active_model = \"devstral\"\n\n# stdio servers\n[[mcp_servers]]\nname = \"time\"\ntransport = \"stdio\"\ncommand = \"uvx\"\n";
    let cases = [
        ("goose", ".config/goose/config.yaml", goose),
        ("continue", ".continue/config.yaml", cont),
        ("codex", ".codex/config.toml", codex),
        ("mistral-vibe", ".vibe/config.toml", vibe),
    ];
    for (id, rel, original) in cases {
        let path = env.write(rel, original);
        env.run(&["client", "register", id]).ok();
        let text = std::fs::read_to_string(&path).unwrap();
        // Everything the user wrote is still there, line for line, in order.
        let kept: Vec<&str> = original.lines().collect();
        let mut lines = text.lines();
        for line in &kept {
            assert!(lines.any(|l| l == *line), "{id}: lost or moved {line:?}:\n{text}");
        }
        let want = match id {
            "goose" => format!(
                "extensions:\n  developer:\n    enabled: true\n    name: developer\n    type: builtin\n  w:\n    name: \"w\"\n    type: \"streamable_http\"\n    uri: \"{url}\"\n    enabled: true\n    timeout: 60\n    description: \"\"\n"
            ),
            "continue" => {
                format!("      - mcp-server-time\n  - name: \"w\"\n    type: \"streamable-http\"\n    url: \"{url}\"\n")
            }
            "codex" => format!("[mcp_servers.w]\nurl = \"{url}\"\n"),
            _ => format!("[[mcp_servers]]\nname = \"w\"\ntransport = \"streamable-http\"\nurl = \"{url}\"\n"),
        };
        assert!(text.contains(&want), "{id}: no {want:?} in\n{text}");
        // Removing the client restores the bytes.
        env.run(&["client", "remove", id]).ok();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), original, "{id}: the file is back byte for byte");
    }
    // A missing file is created with just the entry, and a workload's rm takes it out again.
    let codex_path = env.home.join(".codex/config.toml");
    std::fs::remove_file(&codex_path).unwrap();
    env.run(&["client", "register", "codex"]).ok();
    assert_eq!(std::fs::read_to_string(&codex_path).unwrap(), format!("[mcp_servers.w]\nurl = \"{url}\"\n"));
    // Flow style is not edited line by line: refused, file untouched, nothing registered.
    let flow = "extensions: {developer: {enabled: true}}\n";
    let path = env.write(".config/goose/config.yaml", flow);
    let err = env.run(&["client", "register", "goose"]).failed().to_owned();
    assert!(err.contains("flow style"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), flow);
    let broken = "[mcp_servers\n";
    let path = env.write(".vibe/config.toml", broken);
    let err = env.run(&["client", "register", "mistral-vibe"]).failed().to_owned();
    assert!(err.contains("not valid TOML"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), broken);
    env.run(&["rm", "w"]).ok();
    assert_eq!(std::fs::read_to_string(&codex_path).unwrap(), "");
}

#[test]
fn registered_clients_follow_run_and_rm_and_never_get_secrets() {
    let env = Env::new();
    let original = "{\"mcpServers\": {\"mine\": {\"url\": \"http://example.invalid/mcp\"}}}";
    let path = env.write(".cursor/mcp.json", original);
    // A missing file is created with just the entry.
    let claude = env.home.join(".claude.json");
    env.run(&["client", "register", "cursor"]).ok();
    env.run(&["client", "register", "claude-code"]).ok();
    let listed = env.run(&["client", "list-registered-clients"]).ok().stdout.clone();
    assert!(listed.lines().any(|l| l.starts_with("cursor ") && l.ends_with("default")), "{listed}");

    let url = env
        .run(&["run", "--name", "w", "--env", "TOKEN=s3cret-value", "--", &server(), "--stdio"])
        .ok()
        .stdout
        .trim()
        .to_owned();
    assert_eq!(json(&path)["mcpServers"]["w"], serde_json::json!({"url": url}));
    assert_eq!(json(&claude), serde_json::json!({"mcpServers": {"w": {"type": "http", "url": url}}}));
    for p in [&path, &claude] {
        assert!(!std::fs::read_to_string(p).unwrap().contains("s3cret"), "no secret in {}", p.display());
    }

    // A workload of another group is not written to clients registered for `default`.
    env.run(&["group", "create", "lab"]).ok();
    env.run(&["run", "--group", "lab", "--name", "other", "--", &server(), "--stdio"]).ok();
    assert!(json(&path)["mcpServers"].get("other").is_none());

    env.run(&["rm", "w"]).ok();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), original);
    assert_eq!(json(&claude), serde_json::json!({"mcpServers": {}}));
    // An entry the user wrote under a workload's name but for another URL is not Apiary's.
    let mine = "{\"mcpServers\": {\"other\": {\"url\": \"http://example.invalid/other\"}}}";
    std::fs::write(&path, mine).unwrap();
    env.run(&["rm", "other"]).ok();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), mine);
    assert!(env.apiary.wait_no_processes().is_empty());
}

#[test]
fn invalid_json_is_refused_and_left_untouched() {
    let env = Env::new();
    env.run(&["run", "--name", "w", "--", &server(), "--stdio"]).ok();
    let text = "{ // my servers\n  \"mcpServers\": {},\n}\n";
    let path = env.write(".cursor/mcp.json", text);
    let err = env.run(&["client", "register", "cursor"]).failed().to_owned();
    assert!(err.contains("not valid JSON"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    let listed = env.run(&["client", "list-registered-clients", "--format", "json"]).ok().stdout.clone();
    assert_eq!(serde_json::from_str::<Value>(&listed).unwrap(), serde_json::json!([]), "nothing registered");

    // Registered while the file was valid, then broken by hand: rm warns and still succeeds.
    std::fs::write(&path, "{}").unwrap();
    env.run(&["client", "register", "cursor"]).ok();
    std::fs::write(&path, text).unwrap();
    let out = env.run(&["rm", "w"]);
    assert!(out.ok().stderr.contains("warning"), "{}", out.stderr);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
}

#[test]
fn setup_registers_installed_clients_and_status_shows_them() {
    let env = Env::new();
    let out = env.run(&["client", "setup"]);
    assert!(out.ok().stdout.contains("No supported MCP client is installed"), "{}", out.stdout);
    std::fs::create_dir_all(env.home.join(".cursor")).unwrap();
    std::fs::create_dir_all(env.home.join(".gemini")).unwrap();
    let out = env.run(&["client", "setup"]);
    assert!(out.ok().stdout.contains("Non-interactive"), "{}", out.stdout);

    let v: Value = serde_json::from_str(&env.run(&["client", "status", "--format", "json"]).ok().stdout).unwrap();
    let row = |id: &str| v.as_array().unwrap().iter().find(|r| r["client"] == id).unwrap().clone();
    assert_eq!((row("cursor")["installed"].clone(), row("cursor")["registered"].clone()), (true.into(), true.into()));
    assert_eq!(row("gemini-cli")["registered"], true);
    assert_eq!(row("vscode")["registered"], false);
    assert_eq!(row("claude-code")["installed"], false);
    let text = env.run(&["client", "status"]).ok().stdout.clone();
    assert!(text.lines().any(|l| l.starts_with("goose ") && l.contains("config.yaml")), "{text}");
    let err = env.run(&["client", "register", "nope"]).failed().to_owned();
    assert!(err.contains("unknown client") && err.contains("claude-code"), "{err}");
    let err = env.run(&["client", "remove", "vscode"]).failed().to_owned();
    assert!(err.contains("not registered"), "{err}");
}

#[test]
fn a_client_registered_while_a_workload_is_stopped_gets_it_on_start() {
    let env = Env::new();
    env.run(&["run", "--name", "w", "--", &server(), "--stdio"]).ok();
    env.run(&["stop", "w"]).ok();
    std::fs::create_dir_all(env.home.join(".cursor")).unwrap();
    let out = env.run(&["client", "register", "cursor"]);
    assert!(out.ok().stdout.contains("0 running workload(s)"), "{}", out.stdout);
    let path = env.home.join(".cursor/mcp.json");
    assert!(!path.exists(), "nothing to write while stopped");
    let url = env.run(&["start", "w"]).ok().stdout.trim().to_owned();
    assert_eq!(json(&path), serde_json::json!({"mcpServers": {"w": {"url": url}}}));
    env.run(&["client", "remove", "cursor"]).ok();
    assert_eq!(json(&path), serde_json::json!({"mcpServers": {}}));
    env.run(&["rm", "w"]).ok();
}
