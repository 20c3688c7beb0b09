//! Adding and removing one server entry in a YAML client config (goose's `extensions` map,
//! Continue's `mcpServers` list) by editing lines, not by re-serialising the document.
//!
//! Why lines: no YAML crate in the dependency tree keeps comments, key order, quoting and
//! blank lines when it writes a document back, and a user's goose config is mostly other
//! settings. So only the one entry's lines (and, when absent, the top-level key) are inserted
//! or cut, in block style. Every edit is checked before anything is written: the original and
//! the edited text are both parsed (serde-saphyr) and the edited document must equal the
//! original with exactly that entry changed; anything else (flow style, anchors that move,
//! odd indentation) is refused and the file left as it was.

use serde_json::Value;

/// How the servers are kept under the top-level key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `key: {NAME: {...}}` (goose).
    Map,
    /// `key: [{name: NAME, ...}]` (Continue).
    List,
}

/// Why a YAML edit was not made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum YamlError {
    /// The text is not YAML.
    #[error("{0}")]
    Invalid(String),
    /// The text is YAML but not in a shape this editor changes safely.
    #[error("{0}")]
    Unsupported(String),
}

/// Default indentation of a new block.
const INDENT: usize = 2;

/// `text` with entry `name` set to `entry` (an object of scalars) under `key`; `None` when the
/// entry is already there as given.
pub fn upsert(text: &str, layout: Layout, key: &str, name: &str, entry: &Value) -> Result<Option<String>, YamlError> {
    let before = parse(text)?;
    if lookup(&before, layout, key, name) == Some(entry) {
        return Ok(None);
    }
    let mut expected = before.clone();
    apply_set(&mut expected, layout, key, name, entry)?;

    let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_owned).collect();
    let key_line = match find_key(&lines, key)? {
        Some(i) => i,
        None => {
            if let Some(last) = lines.last_mut()
                && !last.ends_with('\n')
            {
                last.push_str(eol);
            }
            lines.push(format!("{}:{eol}", plain_key(key)));
            lines.len() - 1
        }
    };
    let block = Block::scan(&lines, key_line, layout);
    let at = match block.find_entry(&lines, name) {
        Some(range) => {
            let start = range.start;
            lines.drain(range);
            start
        }
        None => block.end,
    };
    let new_lines = render(layout, block.child_indent, name, entry, eol);
    lines.splice(at..at, new_lines);
    let out: String = lines.concat();
    verify(&out, &expected)?;
    Ok(Some(out))
}

/// `text` without entry `name` under `key` (only when it points at `url`, if given); `None`
/// when there is no such entry. A key left with no entries is removed with its line.
pub fn remove(
    text: &str,
    layout: Layout,
    key: &str,
    name: &str,
    url: Option<&str>,
) -> Result<Option<String>, YamlError> {
    let before = parse(text)?;
    let Some(old) = lookup(&before, layout, key, name) else {
        return Ok(None);
    };
    if let Some(url) = url
        && !old.as_object().is_some_and(|m| m.values().any(|v| v.as_str() == Some(url)))
    {
        return Ok(None);
    }
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_owned).collect();
    let Some(key_line) = find_key(&lines, key)? else {
        return Err(YamlError::Unsupported(format!("the top-level `{key}:` line was not found")));
    };
    let block = Block::scan(&lines, key_line, layout);
    let Some(range) = block.find_entry(&lines, name) else {
        return Err(YamlError::Unsupported(format!("entry {name:?} under `{key}` is not in block style")));
    };
    lines.drain(range);
    let mut expected = before.clone();
    apply_remove(&mut expected, layout, key, name);
    // The last entry gone: the key Apiary (or the user) added for it goes too, when its line
    // holds nothing else, so that a set-up-then-removed file is what it was.
    let rescanned = Block::scan(&lines, key_line, layout);
    let bare = lines.get(key_line).is_some_and(|l| l.trim_end() == format!("{}:", plain_key(key)));
    if rescanned.children == 0 && bare {
        lines.remove(key_line);
        if let Some(map) = expected.as_object_mut() {
            map.shift_remove(key);
        }
    }
    let out: String = lines.concat();
    verify(&out, &expected)?;
    Ok(Some(out))
}

fn parse(text: &str) -> Result<Value, YamlError> {
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    let v: Value = serde_saphyr::from_str(text).map_err(|e| YamlError::Invalid(first_line(&e.to_string())))?;
    match v {
        Value::Object(_) | Value::Null => Ok(v),
        _ => Err(YamlError::Invalid("the top level is not a mapping".into())),
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).chars().take(300).collect()
}

/// The entry named `name` in a parsed document.
fn lookup<'a>(doc: &'a Value, layout: Layout, key: &str, name: &str) -> Option<&'a Value> {
    let servers = doc.get(key)?;
    match layout {
        Layout::Map => servers.get(name),
        Layout::List => servers.as_array()?.iter().find(|e| e.get("name").and_then(Value::as_str) == Some(name)),
    }
}

fn apply_set(doc: &mut Value, layout: Layout, key: &str, name: &str, entry: &Value) -> Result<(), YamlError> {
    if doc.is_null() {
        *doc = Value::Object(serde_json::Map::new());
    }
    let Some(map) = doc.as_object_mut() else {
        return Err(YamlError::Invalid("the top level is not a mapping".into()));
    };
    let servers = map.entry(key.to_owned()).or_insert(Value::Null);
    match layout {
        Layout::Map => {
            if servers.is_null() {
                *servers = Value::Object(serde_json::Map::new());
            }
            let Some(m) = servers.as_object_mut() else {
                return Err(YamlError::Unsupported(format!("`{key}` is not a mapping")));
            };
            m.insert(name.to_owned(), entry.clone());
        }
        Layout::List => {
            if servers.is_null() {
                *servers = Value::Array(Vec::new());
            }
            let Some(list) = servers.as_array_mut() else {
                return Err(YamlError::Unsupported(format!("`{key}` is not a list")));
            };
            match list.iter_mut().find(|e| e.get("name").and_then(Value::as_str) == Some(name)) {
                Some(old) => *old = entry.clone(),
                None => list.push(entry.clone()),
            }
        }
    }
    Ok(())
}

fn apply_remove(doc: &mut Value, layout: Layout, key: &str, name: &str) {
    let Some(servers) = doc.get_mut(key) else {
        return;
    };
    match layout {
        Layout::Map => {
            if let Some(m) = servers.as_object_mut() {
                m.shift_remove(name);
            }
        }
        Layout::List => {
            if let Some(list) = servers.as_array_mut() {
                list.retain(|e| e.get("name").and_then(Value::as_str) != Some(name));
            }
        }
    }
}

/// The edited text must parse to exactly the expected document.
fn verify(out: &str, expected: &Value) -> Result<(), YamlError> {
    let after = parse(out)?;
    // An emptied document parses as null; the expectation may be an empty mapping.
    let same = &after == expected || (after.is_null() && expected.as_object().is_some_and(serde_json::Map::is_empty));
    if same {
        Ok(())
    } else {
        Err(YamlError::Unsupported(
            "the file's layout could not be edited line by line without changing other settings".into(),
        ))
    }
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_blank_or_comment(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#')
}

/// A key as written plainly, or double-quoted when it holds anything else.
fn plain_key(key: &str) -> String {
    let plain = !key.is_empty()
        && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !key.starts_with(['-', '.']);
    if plain { key.to_owned() } else { Value::from(key).to_string() }
}

/// The line of top-level `key:`; refused when its value is written on the same line (flow
/// style or a scalar) or the document has several parts.
fn find_key(lines: &[String], key: &str) -> Result<Option<usize>, YamlError> {
    let quoted = Value::from(key).to_string();
    for (i, line) in lines.iter().enumerate() {
        if indent(line) != 0 || is_blank_or_comment(line) {
            continue;
        }
        if line.trim_end() == "---" && i > 0 {
            return Err(YamlError::Unsupported("the file holds several YAML documents".into()));
        }
        let rest = line.strip_prefix(&format!("{key}:")).or_else(|| line.strip_prefix(&format!("{quoted}:")));
        let Some(rest) = rest else { continue };
        if rest.trim().is_empty() {
            return Ok(Some(i));
        }
        if rest.starts_with([' ', '\t']) && rest.trim().starts_with('#') {
            return Ok(Some(i));
        }
        return Err(YamlError::Unsupported(format!(
            "`{key}` has its value on the same line (flow style); Apiary edits block style only"
        )));
    }
    Ok(None)
}

/// The lines of the block under a top-level key.
struct Block {
    /// Where a new entry goes: after the block's last non-blank, non-comment line.
    end: usize,
    /// Indentation of the entries (of `- ` for a list).
    child_indent: usize,
    /// Entries (map keys or list items) in the block.
    children: usize,
    first: usize,
    layout: Layout,
}

impl Block {
    fn scan(lines: &[String], key_line: usize, layout: Layout) -> Block {
        let mut end = key_line + 1;
        let mut child_indent = None;
        let mut children = 0;
        for (i, line) in lines.iter().enumerate().skip(key_line + 1) {
            if is_blank_or_comment(line) {
                continue;
            }
            let ind = indent(line);
            let item = layout == Layout::List && line[ind..].starts_with('-');
            if ind == 0 && !item {
                break;
            }
            let ci = *child_indent.get_or_insert(ind);
            if ind == ci && (layout == Layout::Map || item) {
                children += 1;
            }
            end = i + 1;
        }
        let default = match layout {
            Layout::Map | Layout::List => INDENT,
        };
        Block { end, child_indent: child_indent.unwrap_or(default), children, first: key_line + 1, layout }
    }

    /// The lines of entry `name`: its first line and the more-indented lines after it.
    fn find_entry(&self, lines: &[String], name: &str) -> Option<std::ops::Range<usize>> {
        let ci = self.child_indent;
        let key_forms = [format!("{}:", plain_key(name)), format!("{}:", Value::from(name))];
        let mut i = self.first;
        while i < self.end {
            let line = &lines[i];
            if is_blank_or_comment(line) || indent(line) != ci {
                i += 1;
                continue;
            }
            let body = line[ci..].trim_end();
            let span_end = entry_end(lines, i, ci, self.end);
            let hit = match self.layout {
                Layout::Map => key_forms.iter().any(|k| body == k.as_str()),
                Layout::List => body.starts_with('-') && names_item(&lines[i..span_end], ci, name),
            };
            if hit {
                return Some(i..span_end);
            }
            i = span_end;
        }
        None
    }
}

/// Past the last line of the entry starting at `start` (lines indented more than `ci`).
fn entry_end(lines: &[String], start: usize, ci: usize, limit: usize) -> usize {
    let mut end = start + 1;
    while end < limit {
        let line = &lines[end];
        if line.trim().is_empty() || indent(line) <= ci {
            break;
        }
        end += 1;
    }
    end
}

/// Whether a list item's lines hold `name: NAME` at its own key level.
fn names_item(item: &[String], ci: usize, name: &str) -> bool {
    let values = [name.to_owned(), Value::from(name).to_string()];
    item.iter().enumerate().any(|(n, line)| {
        let body = if n == 0 { line[ci..].trim_start_matches('-').trim_start() } else { line.trim_start() };
        let inner = if n == 0 { true } else { indent(line) == ci + INDENT };
        inner && body.strip_prefix("name:").is_some_and(|v| values.iter().any(|x| v.trim() == x))
    })
}

/// The lines of one entry in block style.
fn render(layout: Layout, ci: usize, name: &str, entry: &Value, eol: &str) -> Vec<String> {
    let pad = " ".repeat(ci);
    let inner = " ".repeat(ci + INDENT);
    let members: Vec<(String, String)> =
        entry.as_object().map(|m| m.iter().map(|(k, v)| (plain_key(k), scalar(v))).collect()).unwrap_or_default();
    let mut out = Vec::new();
    match layout {
        Layout::Map => {
            out.push(format!("{pad}{}:{eol}", plain_key(name)));
            out.extend(members.iter().map(|(k, v)| format!("{inner}{k}: {v}{eol}")));
        }
        Layout::List => {
            for (n, (k, v)) in members.iter().enumerate() {
                let lead = if n == 0 { format!("{pad}- ") } else { inner.clone() };
                out.push(format!("{lead}{k}: {v}{eol}"));
            }
        }
    }
    out
}

/// A scalar in YAML: strings double-quoted (JSON's escapes are YAML's), the rest as JSON.
fn scalar(v: &Value) -> String {
    v.to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn goose(url: &str) -> Value {
        serde_json::json!({"name": "w", "type": "streamable_http", "uri": url, "enabled": true, "timeout": 60, "description": ""})
    }

    fn cont(url: &str) -> Value {
        serde_json::json!({"name": "w", "type": "streamable-http", "url": url})
    }

    const U: &str = "http://127.0.0.1:1/mcp";

    #[test]
    fn map_round_trips_byte_for_byte() {
        for original in [
            "GOOSE_PROVIDER: openai # the provider\nextensions:\n  developer:\n    enabled: true\n    name: developer\n    type: builtin\n\n# trailing note\nGOOSE_MODEL: gpt-4o\n",
            "extensions:\n    other:\n        enabled: false\n",
            "GOOSE_MODEL: x\n",
            "",
            "a: 1\nextensions:\n",
        ] {
            let added = upsert(original, Layout::Map, "extensions", "w", &goose(U)).unwrap().unwrap();
            let v: Value = serde_saphyr::from_str(&added).unwrap();
            assert_eq!(v["extensions"]["w"], goose(U), "{added}");
            assert_eq!(upsert(&added, Layout::Map, "extensions", "w", &goose(U)).unwrap(), None);
            let removed = remove(&added, Layout::Map, "extensions", "w", Some(U)).unwrap().unwrap();
            let want = if original == "a: 1\nextensions:\n" { "a: 1\n" } else { original };
            assert_eq!(removed, want, "after adding:\n{added}");
        }
    }

    #[test]
    fn list_round_trips_byte_for_byte() {
        for original in [
            "name: my config\nversion: 0.0.1\nmcpServers:\n  - name: other\n    command: uvx\n    args:\n      - mcp-server-time\n# models below\nmodels: []\n",
            "mcpServers:\n- name: other\n  url: http://x/mcp\n",
            "models: []\n",
        ] {
            let added = upsert(original, Layout::List, "mcpServers", "w", &cont(U)).unwrap().unwrap();
            let v: Value = serde_saphyr::from_str(&added).unwrap();
            let list = v["mcpServers"].as_array().unwrap();
            assert_eq!(list.last().unwrap(), &cont(U), "{added}");
            let removed = remove(&added, Layout::List, "mcpServers", "w", None).unwrap().unwrap();
            assert_eq!(removed, original, "after adding:\n{added}");
        }
    }

    #[test]
    fn a_changed_url_replaces_the_entry_in_place() {
        let original = "extensions:\n  w:\n    uri: old\n  z:\n    enabled: true\n";
        let out = upsert(original, Layout::Map, "extensions", "w", &goose(U)).unwrap().unwrap();
        assert!(out.starts_with("extensions:\n  w:\n"), "{out}");
        assert!(out.ends_with("  z:\n    enabled: true\n"), "{out}");
        let list = "mcpServers:\n  - name: w\n    url: old\n  - name: z\n";
        let out = upsert(list, Layout::List, "mcpServers", "w", &cont(U)).unwrap().unwrap();
        assert!(out.ends_with("  - name: z\n"), "{out}");
        // Someone else's entry of the same name (another URL) is not removed.
        assert_eq!(remove(&out, Layout::List, "mcpServers", "w", Some("http://other")).unwrap(), None);
    }

    #[test]
    fn flow_style_and_invalid_yaml_are_refused() {
        let flow = "extensions: {a: {enabled: true}}\n";
        assert!(matches!(upsert(flow, Layout::Map, "extensions", "w", &goose(U)), Err(YamlError::Unsupported(_))));
        assert!(matches!(upsert("a: [\n", Layout::Map, "extensions", "w", &goose(U)), Err(YamlError::Invalid(_))));
        assert!(matches!(upsert("- 1\n", Layout::Map, "extensions", "w", &goose(U)), Err(YamlError::Invalid(_))));
    }
}
