//! `apiary mcp list|call`: talk to one MCP server from the shell to see what it offers and
//! try its tools (the `thv mcp` debugging commands). Output is built in memory, then printed.

// main.rs does not dispatch here yet; drop this once it calls `run`.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::io::{Read, Write as _};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use apiary_transport::client::{ConnectOptions, McpClient, Transport};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Map, Value, json};

/// `apiary mcp …`
#[derive(Debug, Args)]
pub struct McpArgs {
    #[command(subcommand)]
    pub command: McpCommand,
}

#[derive(Debug, Subcommand)]
pub enum McpCommand {
    /// List tools, resources and prompts of an MCP server (all three, or one kind)
    List(ListArgs),
    /// Invoke a tool on an MCP server and print its result
    Call(CallArgs),
}

/// Flags every `apiary mcp` command shares.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// MCP server URL, or the name of a running workload
    #[arg(long)]
    pub server: String,
    /// Transport to use
    #[arg(long, value_enum, default_value_t = TransportArg::Auto)]
    pub transport: TransportArg,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Bound on connecting and on every request, e.g. 30s, 2m, 500ms
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// What to list; all three when omitted
    #[arg(value_enum)]
    pub kind: Option<ListKind>,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct CallArgs {
    /// Name of the tool to call
    pub tool: String,
    /// Tool arguments as a JSON object
    #[arg(long, conflicts_with = "args_file")]
    pub args: Option<String>,
    /// File holding the tool arguments as a JSON object ('-' reads standard input)
    #[arg(long)]
    pub args_file: Option<PathBuf>,
    /// Exit zero even when the tool reports an error (isError)
    #[arg(long)]
    pub ignore_tool_error: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TransportArg {
    Auto,
    Sse,
    StreamableHttp,
}

impl From<TransportArg> for Transport {
    fn from(t: TransportArg) -> Transport {
        match t {
            TransportArg::Auto => Transport::Auto,
            TransportArg::Sse => Transport::Sse,
            TransportArg::StreamableHttp => Transport::StreamableHttp,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListKind {
    Tools,
    Resources,
    Prompts,
}

impl ListKind {
    const ALL: [ListKind; 3] = [ListKind::Tools, ListKind::Resources, ListKind::Prompts];

    fn key(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Resources => "resources",
            ListKind::Prompts => "prompts",
        }
    }
}

/// Turns `--server` into a URL; the lead's workload lookup plugs in here.
pub type ResolveServer = fn(&str) -> anyhow::Result<String>;

/// Runs `apiary mcp …` with `--server` accepting URLs only.
pub async fn run(args: McpArgs) -> anyhow::Result<()> {
    run_with_resolver(args, |name: &str| {
        bail!("{name:?} is not a URL (http://… or https://…), and looking up workloads by name is not available yet")
    })
    .await
}

/// Runs `apiary mcp …`; a `--server` value without `://` goes through `resolver`.
pub async fn run_with_resolver(args: McpArgs, resolver: impl Fn(&str) -> anyhow::Result<String>) -> anyhow::Result<()> {
    let mut out = String::new();
    let result = execute(args, &resolver, &mut out).await;
    // Print what was rendered even when the command fails (a tool error still shows its result).
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    result
}

/// The command with its output collected in `out`.
async fn execute(
    args: McpArgs,
    resolver: &dyn Fn(&str) -> anyhow::Result<String>,
    out: &mut String,
) -> anyhow::Result<()> {
    match args.command {
        McpCommand::List(list) => {
            let client = connect(&list.server, resolver).await?;
            let result = list_cmd(&client, list.kind, list.server.format, out).await;
            close(client).await;
            result
        }
        McpCommand::Call(call) => {
            // Read the arguments before connecting, so bad input costs no round trip.
            let arguments = read_tool_args(call.args.as_deref(), call.args_file.as_deref())?;
            let client = connect(&call.server, resolver).await?;
            let result = client.call_tool(&call.tool, arguments).await;
            close(client).await;
            let result = result.with_context(|| format!("calling tool {:?}", call.tool))?;
            render_call(&result, call.server.format, out)?;
            if result.get("isError") == Some(&Value::Bool(true)) && !call.ignore_tool_error {
                bail!("tool {:?} reported an error", call.tool);
            }
            Ok(())
        }
    }
}

async fn connect(server: &ServerArgs, resolver: &dyn Fn(&str) -> anyhow::Result<String>) -> anyhow::Result<McpClient> {
    let url = if server.server.contains("://") { server.server.clone() } else { resolver(&server.server)? };
    let options = ConnectOptions { transport: server.transport.into(), timeout: server.timeout, headers: Vec::new() };
    McpClient::connect(&url, options).await.with_context(|| format!("connecting to MCP server {url}"))
}

async fn close(client: McpClient) {
    if let Err(e) = client.close().await {
        tracing::warn!(error = %e, "could not close the MCP session");
    }
}

async fn list_cmd(client: &McpClient, kind: Option<ListKind>, format: Format, out: &mut String) -> anyhow::Result<()> {
    let kinds: &[ListKind] = match &kind {
        Some(k) => std::slice::from_ref(k),
        None => &ListKind::ALL,
    };
    let mut data = Map::new();
    for &k in kinds {
        // A kind the server does not declare is empty; asking would only earn a -32601.
        let items = if client.capabilities().get(k.key()).is_none() {
            Vec::new()
        } else {
            let listed = match k {
                ListKind::Tools => client.list_tools().await,
                ListKind::Resources => client.list_resources().await,
                ListKind::Prompts => client.list_prompts().await,
            };
            match listed {
                Ok(items) => items,
                // Listing everything is best effort, as in ToolHive; one kind is not.
                Err(e) if kind.is_none() => {
                    tracing::warn!(error = %e, "failed to list {}", k.key());
                    Vec::new()
                }
                Err(e) => return Err(anyhow!(e).context(format!("listing {}", k.key()))),
            }
        };
        data.insert(k.key().to_owned(), Value::Array(items));
    }
    match format {
        Format::Json => {
            out.push_str(&serde_json::to_string_pretty(&Value::Object(data))?);
            out.push('\n');
        }
        Format::Text => render_lists(&data, kind, out),
    }
    Ok(())
}

/// Longest description shown in a table cell, in characters.
const DESCRIPTION_WIDTH: usize = 80;

fn render_lists(data: &Map<String, Value>, kind: Option<ListKind>, out: &mut String) {
    let items = |k: ListKind| data.get(k.key()).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let mut printed = false;
    for k in ListKind::ALL {
        let list = items(k);
        if list.is_empty() {
            continue;
        }
        printed = true;
        let (title, header, rows): (&str, &[&str], Vec<Vec<String>>) = match k {
            ListKind::Tools => (
                "TOOLS:",
                &["NAME", "DESCRIPTION"],
                list.iter().map(|t| vec![field(t, "name"), description(t)]).collect(),
            ),
            ListKind::Resources => (
                "RESOURCES:",
                &["NAME", "URI", "DESCRIPTION", "MIME_TYPE"],
                list.iter()
                    .map(|r| vec![field(r, "name"), field(r, "uri"), description(r), field(r, "mimeType")])
                    .collect(),
            ),
            ListKind::Prompts => (
                "PROMPTS:",
                &["NAME", "DESCRIPTION", "ARGUMENTS"],
                list.iter().map(|p| vec![field(p, "name"), description(p), prompt_arguments(p)]).collect(),
            ),
        };
        out.push_str(title);
        out.push('\n');
        write_table(header, &rows, out);
        out.push('\n');
    }
    if !printed {
        out.push_str(match kind {
            Some(ListKind::Tools) => "No tools found\n",
            Some(ListKind::Resources) => "No resources found\n",
            Some(ListKind::Prompts) => "No prompts found\n",
            None => "No tools, resources, or prompts found\n",
        });
    }
}

/// A string member, with control characters replaced so one server cannot garble the table.
fn field(item: &Value, key: &str) -> String {
    item.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The first line of `description`, cut to [`DESCRIPTION_WIDTH`] characters.
fn description(item: &Value) -> String {
    let text = item.get("description").and_then(Value::as_str).unwrap_or_default();
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    let clean: String = first.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if clean.chars().count() > DESCRIPTION_WIDTH {
        let cut: String = clean.chars().take(DESCRIPTION_WIDTH - 1).collect();
        format!("{}…", cut.trim_end())
    } else {
        clean
    }
}

fn prompt_arguments(prompt: &Value) -> String {
    let names: Vec<String> = prompt
        .get("arguments")
        .and_then(Value::as_array)
        .map(|args| args.iter().map(|a| field(a, "name")).collect())
        .unwrap_or_default();
    if names.is_empty() { "0".to_owned() } else { format!("{} ({})", names.len(), names.join(", ")) }
}

/// Left-aligned columns separated by three spaces; the last column is not padded.
fn write_table(header: &[&str], rows: &[Vec<String>], out: &mut String) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count() + 3;
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

/// The tool arguments from `--args` or `--args-file` (`-` = stdin); `{}` when neither is given.
fn read_tool_args(args: Option<&str>, file: Option<&std::path::Path>) -> anyhow::Result<Value> {
    let (text, source) = match (args, file) {
        (Some(text), _) => (text.to_owned(), "--args".to_owned()),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).context("reading tool arguments from standard input")?;
            (text, "standard input".to_owned())
        }
        (None, Some(path)) => (
            std::fs::read_to_string(path).with_context(|| format!("reading tool arguments from {}", path.display()))?,
            path.display().to_string(),
        ),
        (None, None) => return Ok(json!({})),
    };
    let value: Value =
        serde_json::from_str(&text).with_context(|| format!("tool arguments in {source} are not valid JSON"))?;
    if !value.is_object() {
        bail!("tool arguments in {source} must be a JSON object, got {}", json_kind(&value));
    }
    Ok(value)
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Base64 payloads longer than this are summarized in text output (`--format json` keeps them).
const INLINE_BASE64: usize = 120;

fn render_call(result: &Value, format: Format, out: &mut String) -> anyhow::Result<()> {
    if format == Format::Json {
        out.push_str(&serde_json::to_string_pretty(result)?);
        out.push('\n');
        return Ok(());
    }
    let blocks = result.get("content").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    for block in blocks {
        match (block.get("type").and_then(Value::as_str), block.get("text")) {
            (Some("text"), Some(Value::String(text))) => {
                out.push_str(text);
                if !text.ends_with('\n') {
                    out.push('\n');
                }
            }
            _ => {
                let _ = writeln!(out, "{}", serde_json::to_string(&summarize_base64(block))?);
            }
        }
    }
    if let Some(structured) = result.get("structuredContent") {
        out.push_str("Structured content:\n");
        out.push_str(&serde_json::to_string_pretty(structured)?);
        out.push('\n');
    }
    Ok(())
}

/// A copy of a content block with long `data`/`blob` strings replaced by their size, so an
/// image does not flood the terminal.
fn summarize_base64(block: &Value) -> Value {
    fn walk(v: &mut Value) {
        if let Value::Object(map) = v {
            for (key, value) in map.iter_mut() {
                match value {
                    Value::String(s) if (key == "data" || key == "blob") && s.len() > INLINE_BASE64 => {
                        *value = Value::String(format!("<{} bytes of base64>", s.len()));
                    }
                    other => walk(other),
                }
            }
        }
    }
    let mut copy = block.clone();
    walk(&mut copy);
    copy
}

/// Parses durations such as `30s`, `2m`, `500ms`, `1h`, `1m30s` or `1.5s` (Go/humantime style).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {text:?}: use a number with a unit, e.g. 30s, 2m, 500ms");
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        if num_len == 0 {
            return Err(bad());
        }
        let number: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" | "sec" | "secs" => 1.0,
            "m" | "min" | "mins" => 60.0,
            "h" | "hr" | "hrs" => 3600.0,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        let part = Duration::try_from_secs_f64(number * seconds_per_unit).map_err(|_| bad())?;
        total = total.checked_add(part).ok_or_else(bad)?;
    }
    if total.is_zero() {
        return Err(format!("invalid duration {text:?}: must be greater than zero"));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// Stands in for the real top level until main.rs wires `apiary mcp`.
    #[derive(Debug, Parser)]
    #[command(name = "apiary")]
    struct Cli {
        #[command(subcommand)]
        command: Top,
    }

    #[derive(Debug, Subcommand)]
    enum Top {
        Mcp(McpArgs),
    }

    fn parse(args: &[&str]) -> Result<McpArgs, clap::Error> {
        let argv = ["apiary", "mcp"].iter().chain(args);
        Cli::try_parse_from(argv).map(|c| match c.command {
            Top::Mcp(m) => m,
        })
    }

    #[test]
    fn durations() {
        let ok = |s: &str| parse_duration(s).unwrap();
        assert_eq!(ok("30s"), Duration::from_secs(30));
        assert_eq!(ok("2m"), Duration::from_secs(120));
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("1h"), Duration::from_secs(3600));
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        for bad in ["", "30", "s", "10x", "0s", "-1s", "1..5s", "ms30", "99999999999999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn parses_the_command_line() {
        let a = parse(&["list", "--server", "http://h/mcp"]).unwrap();
        let McpCommand::List(l) = a.command else { panic!("not list") };
        assert_eq!(l.kind, None);
        assert_eq!(l.server.transport, TransportArg::Auto);
        assert_eq!(l.server.format, Format::Text);
        assert_eq!(l.server.timeout, Duration::from_secs(30));

        let a = parse(&[
            "list",
            "resources",
            "--server",
            "x",
            "--transport",
            "streamable-http",
            "--format",
            "json",
            "--timeout",
            "2m",
        ])
        .unwrap();
        let McpCommand::List(l) = a.command else { panic!("not list") };
        assert_eq!(l.kind, Some(ListKind::Resources));
        assert_eq!(l.server.transport, TransportArg::StreamableHttp);
        assert_eq!(l.server.format, Format::Json);
        assert_eq!(l.server.timeout, Duration::from_secs(120));

        let a = parse(&["call", "echo", "--server", "u", "--args", "{}", "--ignore-tool-error"]).unwrap();
        let McpCommand::Call(c) = a.command else { panic!("not call") };
        assert_eq!(c.tool, "echo");
        assert!(c.ignore_tool_error);

        // Refusals: both argument sources, an unknown transport, a bad timeout, no server.
        assert!(parse(&["call", "t", "--server", "u", "--args", "{}", "--args-file", "f"]).is_err());
        assert!(parse(&["list", "--server", "u", "--transport", "stdio"]).is_err());
        assert!(parse(&["list", "--server", "u", "--timeout", "soon"]).is_err());
        assert!(parse(&["list", "tools"]).is_err());
        assert!(parse(&["list", "widgets", "--server", "u"]).is_err());
    }

    #[test]
    fn tool_arguments_must_be_a_json_object() {
        assert_eq!(read_tool_args(None, None).unwrap(), json!({}));
        assert_eq!(read_tool_args(Some(r#"{"a":1}"#), None).unwrap(), json!({"a": 1}));
        let err = read_tool_args(Some("[1]"), None).unwrap_err();
        assert!(err.to_string().contains("must be a JSON object, got an array"), "{err}");
        assert!(read_tool_args(Some("{oops"), None).is_err());

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("args.json");
        std::fs::write(&file, r#"{"message":"from file"}"#).unwrap();
        assert_eq!(read_tool_args(None, Some(&file)).unwrap(), json!({"message": "from file"}));
        assert!(read_tool_args(None, Some(&dir.path().join("missing.json"))).is_err());
    }

    #[test]
    fn renders_aligned_tables() {
        let long = "x".repeat(200);
        let data = json!({
            "tools": [
                {"name": "echo", "description": "Echoes back\nsecond line"},
                {"name": "a-much-longer-name", "description": long},
            ],
            "resources": [],
            "prompts": [{"name": "p", "arguments": [{"name": "city"}, {"name": "state"}]}],
        });
        let mut out = String::new();
        render_lists(data.as_object().unwrap(), None, &mut out);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "TOOLS:");
        assert_eq!(lines[1], "NAME                 DESCRIPTION");
        assert_eq!(lines[2], "echo                 Echoes back");
        assert!(lines[3].starts_with("a-much-longer-name   xxx"));
        assert!(lines[3].ends_with('…'));
        assert_eq!(lines[3].chars().count(), 21 + DESCRIPTION_WIDTH);
        assert!(!out.contains("RESOURCES:"), "empty sections are skipped");
        assert!(out.contains("PROMPTS:\nNAME   DESCRIPTION   ARGUMENTS\np                    2 (city, state)\n"));

        let mut out = String::new();
        render_lists(json!({"tools": []}).as_object().unwrap(), Some(ListKind::Tools), &mut out);
        assert_eq!(out, "No tools found\n");
    }

    #[test]
    fn renders_call_results() {
        let result = json!({
            "content": [
                {"type": "text", "text": "hello"},
                {"type": "image", "mimeType": "image/png", "data": "A".repeat(500)},
            ],
            "structuredContent": {"n": 1},
        });
        let mut out = String::new();
        render_call(&result, Format::Text, &mut out).unwrap();
        assert_eq!(
            out,
            "hello\n{\"type\":\"image\",\"mimeType\":\"image/png\",\"data\":\"<500 bytes of base64>\"}\nStructured content:\n{\n  \"n\": 1\n}\n"
        );
        let mut out = String::new();
        render_call(&result, Format::Json, &mut out).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), result);
    }

    /// A running `mcp-server-everything` (streamable HTTP on `/mcp`), killed on drop.
    struct Everything {
        child: std::process::Child,
        port: u16,
    }

    impl Everything {
        fn start() -> Everything {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let child = apiary_testkit::env::command("mcp-server-everything")
                .arg("streamableHttp")
                .env("PORT", port.to_string())
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let mut server = Everything { child, port };
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(server.child.try_wait().unwrap().is_none(), "server exited");
                assert!(std::time::Instant::now() < deadline, "server never listened");
                std::thread::sleep(Duration::from_millis(50));
            }
            server
        }
    }

    impl Drop for Everything {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    async fn run_cli(args: &[&str], resolver: &dyn Fn(&str) -> anyhow::Result<String>) -> (String, anyhow::Result<()>) {
        let mut out = String::new();
        let result = execute(parse(args).unwrap(), resolver, &mut out).await;
        (out, result)
    }

    fn no_names(name: &str) -> anyhow::Result<String> {
        bail!("no workload {name}")
    }

    #[tokio::test]
    async fn against_the_reference_server() {
        let server = Everything::start();
        let url = format!("http://127.0.0.1:{}/mcp", server.port);

        let (out, r) = run_cli(&["list", "tools", "--server", &url], &no_names).await;
        r.unwrap();
        assert!(out.starts_with("TOOLS:\nNAME"), "{out}");
        assert!(out.lines().any(|l| l.starts_with("echo ") && l.ends_with("Echoes back the input string")), "{out}");

        let (out, r) = run_cli(&["list", "--server", &url, "--format", "json"], &no_names).await;
        r.unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert!(v["tools"].as_array().unwrap().iter().any(|t| t["name"] == "echo"));
        assert!(!v["resources"].as_array().unwrap().is_empty());
        assert!(v["prompts"].as_array().unwrap().iter().any(|p| p["name"] == "simple-prompt"));

        let (out, r) = run_cli(&["call", "echo", "--server", &url, "--args", r#"{"message":"hi"}"#], &no_names).await;
        r.unwrap();
        assert_eq!(out, "Echo: hi\n");

        // A tool error is printed, then fails the command unless --ignore-tool-error.
        let bad = ["call", "echo", "--server", &url, "--args", r#"{"message":42}"#];
        let (out, r) = run_cli(&bad, &no_names).await;
        let err = r.unwrap_err().to_string();
        assert!(err.contains("reported an error"), "{err}");
        assert!(!out.is_empty());
        let mut ignoring = bad.to_vec();
        ignoring.push("--ignore-tool-error");
        let (_, r) = run_cli(&ignoring, &no_names).await;
        r.unwrap();

        // A name goes through the resolver; an unresolvable one fails before connecting.
        let resolve = |name: &str| {
            if name == "everything" { Ok(url.clone()) } else { bail!("no workload {name}") }
        };
        let (out, r) = run_cli(&["list", "prompts", "--server", "everything"], &resolve).await;
        r.unwrap();
        assert!(out.starts_with("PROMPTS:\n"), "{out}");
        let (_, r) = run_cli(&["list", "--server", "nobody"], &resolve).await;
        assert!(r.unwrap_err().to_string().contains("no workload nobody"));

        // Wrong transport for this server: a clear connection error, not a hang.
        let (_, r) = run_cli(&["list", "--server", &url, "--transport", "sse", "--timeout", "5s"], &no_names).await;
        let err = format!("{:#}", r.unwrap_err());
        assert!(err.contains("connecting to MCP server"), "{err}");
    }
}
