//! `--env-file`: `KEY=VALUE` lines as Docker and ToolHive read them (blank lines and `#` comments
//! skipped, an optional leading `export `, matching surrounding quotes removed).

use std::path::Path;

use anyhow::{Context, bail};

/// Largest env file read; anything bigger is not an env file.
const MAX_ENV_FILE_BYTES: u64 = 1024 * 1024;

/// Reads `path` into ordered (name, value) pairs.
pub fn read(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let meta = std::fs::metadata(path).with_context(|| format!("--env-file {}", path.display()))?;
    if meta.len() > MAX_ENV_FILE_BYTES {
        bail!("--env-file {}: larger than {MAX_ENV_FILE_BYTES} bytes", path.display());
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("--env-file {}", path.display()))?;
    parse(&text).with_context(|| format!("--env-file {}", path.display()))
}

/// Parses env-file text.
pub fn parse(text: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let Some((key, value)) = line.split_once('=') else {
            bail!("line {}: expected KEY=VALUE, got {line:?}", i + 1);
        };
        let key = key.trim();
        if key.is_empty() {
            bail!("line {}: the variable name is empty", i + 1);
        }
        out.push((key.to_owned(), unquote(value.trim()).to_owned()));
    }
    Ok(out)
}

/// Parses one `-e/--env` value.
pub fn parse_pair(text: &str) -> anyhow::Result<(String, String)> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => bail!("--env expects KEY=VALUE, got {text:?}"),
    }
}

fn unquote(v: &str) -> &str {
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return &v[1..v.len() - 1];
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_docker_style_lines() {
        let pairs = parse("# c\n\nA=1\nexport B = two words \nC=\"q=x\"\nD='s'\nE=\n").unwrap();
        let want: Vec<(String, String)> = [("A", "1"), ("B", "two words"), ("C", "q=x"), ("D", "s"), ("E", "")]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(pairs, want);
        let err = parse("A=1\nnonsense\n").unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(parse_pair("K").is_err());
        assert!(parse_pair("=v").is_err());
        assert_eq!(parse_pair("K=a=b").unwrap(), ("K".into(), "a=b".into()));
    }
}
