//! The SOURCE of `apiary run` (`npx://pkg`, `uvx://pkg`, an `http(s)://` URL, a container image
//! such as `ghcr.io/org/server:1`, or a command after `--`) turned into a RunConfig source, and the workload name derived from it when `--name` is
//! not given.

use anyhow::bail;
use apiary_config::Source;

/// What `apiary run SOURCE -- ARGS` runs: the source and the arguments appended to it.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed {
    pub source: Source,
    pub args: Vec<String>,
}

/// Interprets SOURCE and the words after `--`.
pub fn parse(source: Option<&str>, trailing: &[String]) -> anyhow::Result<Parsed> {
    let Some(text) = source else {
        let Some((program, args)) = trailing.split_first() else {
            bail!(
                "nothing to run: give npx://PACKAGE, uvx://PACKAGE, an http(s):// URL, or a command after -- (apiary run --name NAME -- COMMAND ARGS)"
            );
        };
        return Ok(Parsed { source: Source::command(program.clone(), args.iter().cloned()), args: Vec::new() });
    };
    let args = trailing.to_vec();
    if let Some(pkg) = text.strip_prefix("npx://") {
        return package(Source::npx(pkg), "npx", pkg, args);
    }
    if let Some(pkg) = text.strip_prefix("uvx://") {
        return package(Source::uvx(pkg), "uvx", pkg, args);
    }
    let lower = text.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        if !args.is_empty() {
            bail!("arguments after -- are for local servers; a remote URL takes none");
        }
        return Ok(Parsed { source: Source::remote(text), args });
    }
    if let Some((scheme, _)) = text.split_once("://") {
        bail!(
            "{scheme}:// sources are not supported yet; use npx://, uvx://, an http(s):// URL, or a command after --"
        );
    }
    if crate::k8s_runtime::is_image_reference(text) {
        return Ok(Parsed { source: Source::image(text), args });
    }
    bail!(
        "{text:?} is not a source: give npx://PACKAGE, uvx://PACKAGE, an http(s):// URL, a container image (registry/name:tag), or put a local command after -- (apiary run --name NAME -- COMMAND ARGS)"
    )
}

fn package(source: Source, scheme: &str, pkg: &str, args: Vec<String>) -> anyhow::Result<Parsed> {
    if pkg.trim().is_empty() {
        bail!("{scheme}:// needs a package name, e.g. {scheme}://some-mcp-server");
    }
    Ok(Parsed { source, args })
}

/// Interpreters whose first file argument names the server better than the interpreter does.
const INTERPRETERS: &[&str] = &["python", "python3", "node", "deno", "bun", "sh", "bash", "uv", "ruby", "perl", "java"];

/// A workload name for `source` that follows the name rules, or `None` when nothing usable is
/// left after cleaning.
pub fn default_name(source: &Source) -> Option<String> {
    let raw = match source {
        Source::Package(p) => match p.ecosystem {
            apiary_config::Ecosystem::Npx => npm_base_name(&p.name).to_owned(),
            apiary_config::Ecosystem::Uvx => python_base_name(&p.name).to_owned(),
        },
        Source::Remote(r) => remote_name(&r.url),
        Source::Command(c) => {
            let base = file_stem(&c.program);
            if INTERPRETERS.contains(&base.as_str())
                && let Some(script) = c.args.iter().find(|a| !a.starts_with('-'))
            {
                file_stem(script)
            } else {
                base
            }
        }
        Source::Image(i) => {
            let last = i.reference.rsplit('/').next().unwrap_or(&i.reference);
            last.split([':', '@']).next().unwrap_or(last).to_owned()
        }
    };
    sanitize(&raw)
}

/// `@scope/name@1.2` → `name`.
fn npm_base_name(spec: &str) -> &str {
    let without_version = match spec.get(1..).and_then(|rest| rest.find('@')) {
        Some(i) => &spec[..i + 1],
        None => spec,
    };
    without_version.rsplit('/').next().unwrap_or(without_version)
}

/// `name[extra]>=1` → `name`.
fn python_base_name(spec: &str) -> &str {
    let end = spec.find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))).unwrap_or(spec.len());
    &spec[..end]
}

/// The URL's host (`fetch-mcp.example.com`); with a path before `/mcp` or `/sse`, its last
/// segment instead (`https://example.com/fetch/mcp` → `fetch`).
fn remote_name(url: &str) -> String {
    let Ok(u) = url::Url::parse(url) else {
        return String::new();
    };
    let segments: Vec<&str> = u.path_segments().map(|s| s.filter(|p| !p.is_empty()).collect()).unwrap_or_default();
    let meaningful: Vec<&str> = segments.iter().copied().filter(|s| !matches!(*s, "mcp" | "sse")).collect();
    match meaningful.last() {
        Some(last) if segments.len() > 1 => (*last).to_owned(),
        _ => u.host_str().unwrap_or_default().to_owned(),
    }
}

fn file_stem(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    match base.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() && ext.len() <= 4 => stem.to_owned(),
        _ => base.to_owned(),
    }
}

/// Lowercases, turns every other character into `-`, collapses runs, trims to a letter or digit
/// at both ends and to 63 characters.
pub fn sanitize(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        let c = c.to_ascii_lowercase();
        let keep = c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-');
        let c = if keep { c } else { '-' };
        if c == '-' && out.ends_with('-') {
            continue;
        }
        out.push(c);
    }
    out.truncate(63);
    let trimmed = out.trim_matches(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()));
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name_of(source: Option<&str>, trailing: &[&str]) -> Option<String> {
        let trailing: Vec<String> = trailing.iter().map(|s| (*s).to_owned()).collect();
        default_name(&parse(source, &trailing).unwrap().source)
    }

    #[test]
    fn parses_each_kind_of_source() {
        let p = parse(Some("npx://@modelcontextprotocol/server-everything"), &[]).unwrap();
        assert_eq!(p.source, Source::npx("@modelcontextprotocol/server-everything"));
        let p = parse(Some("uvx://mcp-server-time"), &["--local-timezone=UTC".into()]).unwrap();
        assert_eq!(p.source, Source::uvx("mcp-server-time"));
        assert_eq!(p.args, vec!["--local-timezone=UTC".to_owned()]);
        let p = parse(Some("https://fetch-mcp.example.com/mcp"), &[]).unwrap();
        assert_eq!(p.source, Source::remote("https://fetch-mcp.example.com/mcp"));
        let p = parse(None, &["python3".into(), "server.py".into()]).unwrap();
        assert_eq!(p.source, Source::command("python3", ["server.py"]));
        let p = parse(Some("ghcr.io/stackloklabs/gofetch/server:latest"), &["--x".into()]).unwrap();
        assert_eq!(p.source, Source::image("ghcr.io/stackloklabs/gofetch/server:latest"));
        assert_eq!(p.args, vec!["--x".to_owned()]);
    }

    #[test]
    fn refuses_what_it_cannot_run_with_a_hint() {
        for (src, needle) in [
            (Some("go://example.com/x"), "go:// sources are not supported"),
            (Some("my server"), "is not a source"),
            (Some("npx://"), "needs a package name"),
            (None, "nothing to run"),
        ] {
            let err = parse(src, &[]).unwrap_err().to_string();
            assert!(err.contains(needle), "{src:?}: {err}");
        }
        let err = parse(Some("https://x.example/mcp"), &["a".into()]).unwrap_err().to_string();
        assert!(err.contains("remote URL takes none"), "{err}");
    }

    #[test]
    fn derives_names_from_sources() {
        assert_eq!(
            name_of(Some("npx://@modelcontextprotocol/server-everything@1.2.3"), &[]).as_deref(),
            Some("server-everything")
        );
        assert_eq!(name_of(Some("uvx://mcp-server-time==2025.1"), &[]).as_deref(), Some("mcp-server-time"));
        assert_eq!(name_of(Some("https://fetch-mcp.example.com/mcp"), &[]).as_deref(), Some("fetch-mcp.example.com"));
        assert_eq!(name_of(Some("https://mcp.example.com/fetch/mcp"), &[]).as_deref(), Some("fetch"));
        assert_eq!(name_of(None, &["python3", "-u", "My Server.py"]).as_deref(), Some("my-server"));
        assert_eq!(
            name_of(None, &["/usr/bin/apiary-testkit-server", "--stdio"]).as_deref(),
            Some("apiary-testkit-server")
        );
        assert_eq!(sanitize("__"), None);
        assert_eq!(sanitize(&"A".repeat(80)).unwrap().len(), 63);
    }
}
