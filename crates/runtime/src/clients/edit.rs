//! Adding and removing one server entry in a client's JSON config file, keeping every other
//! byte as the user wrote it: the entry is spliced into (or cut out of) the servers object
//! rather than the file being re-serialised, and the new file replaces the old by a rename.
//!
//! A file that is not valid JSON (JSONC comments, trailing commas) is refused and never
//! overwritten. Adding then removing an entry restores the file byte for byte when the servers
//! object existed before.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use apiary_protocol::splice::{self, SpliceError};

/// Largest client config read (Claude Code's `~/.claude.json` grows with history; keep room).
const MAX_CONFIG_BYTES: u64 = 64 * 1024 * 1024;

/// Why a client config could not be edited.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is not valid JSON ({message}); Apiary leaves it untouched — fix it or add the entry by hand")]
    NotJson { path: PathBuf, message: String },
    #[error("{path}: cannot edit member {key:?}: {source}")]
    Splice { path: PathBuf, key: String, source: SpliceError },
    #[error("{path} is larger than {MAX_CONFIG_BYTES} bytes; Apiary leaves it untouched")]
    TooLarge { path: PathBuf },
    #[error("{path} is not valid {format} ({message}); Apiary leaves it untouched — fix it or add the entry by hand")]
    Invalid { path: PathBuf, format: &'static str, message: String },
    #[error("{path}: {message}; Apiary leaves it untouched — add the entry by hand")]
    Refused { path: PathBuf, message: String },
}

/// What an edit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The file was written.
    Changed,
    /// The file already said so; nothing was written.
    Unchanged,
}

/// `text` with `servers_key.name` set to `entry` (JSON text), the servers object created when
/// absent. `text` must be a JSON object (already validated).
pub fn set_entry(text: &[u8], servers_key: &str, name: &str, entry: &str) -> Result<Vec<u8>, SpliceError> {
    Ok(splice::set_path(text, 0..text.len(), &[servers_key, name], entry)?.to_vec())
}

/// `text` without member `name` of the object at `servers_key`; `None` when there is no such
/// member. The member is cut with the comma that separates it from its neighbour, so an entry
/// [`set_entry`] appended comes out leaving the bytes that were there before.
pub fn remove_entry(text: &[u8], servers_key: &str, name: &str) -> Result<Option<Vec<u8>>, SpliceError> {
    let Some(servers) = splice::find_member(text, 0..text.len(), servers_key)? else {
        return Ok(None);
    };
    if text.get(servers.start) != Some(&b'{') {
        return Ok(None);
    }
    let Some(value) = splice::find_member(text, servers.clone(), name)? else {
        return Ok(None);
    };
    let key_start = key_start(text, servers.start, value.start).ok_or(SpliceError::Malformed { at: value.start })?;
    let before = skip_ws_back(text, servers.start, key_start);
    let cut = if before > servers.start + 1 && text.get(before - 1) == Some(&b',') {
        // Not the first member: cut from the comma before it to the end of its value.
        before - 1..value.end
    } else {
        // The first member: cut through the comma after it (and the space up to the next key).
        let after = skip_ws(text, value.end, servers.end);
        if text.get(after) == Some(&b',') {
            key_start..skip_ws(text, after + 1, servers.end)
        } else {
            key_start..value.end
        }
    };
    Ok(Some(splice::splice(text, &[(cut, b"")])?.to_vec()))
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn skip_ws(text: &[u8], mut at: usize, end: usize) -> usize {
    while at < end && text.get(at).copied().is_some_and(is_ws) {
        at += 1;
    }
    at
}

/// The index just past the whitespace that ends at `at` (walking back, not past `floor`).
fn skip_ws_back(text: &[u8], floor: usize, mut at: usize) -> usize {
    while at > floor && text.get(at - 1).copied().is_some_and(is_ws) {
        at -= 1;
    }
    at
}

/// Where the key whose value starts at `value_start` begins (its opening quote). Walks back over
/// `:` and the key string; a workload name holds no `"`, so the key's raw text has no `\"` and
/// the previous quote is its opening one.
fn key_start(text: &[u8], floor: usize, value_start: usize) -> Option<usize> {
    let colon = skip_ws_back(text, floor, value_start);
    if colon == floor || text.get(colon - 1) != Some(&b':') {
        return None;
    }
    let close = skip_ws_back(text, floor, colon - 1);
    if close == floor || text.get(close - 1) != Some(&b'"') {
        return None;
    }
    let inner = text.get(floor..close - 1)?;
    let open = inner.iter().rposition(|&b| b == b'"')?;
    Some(floor + open)
}

/// Reads `path` as it is (bounded): `None` when it does not exist (or holds only whitespace).
pub(crate) fn read_raw(path: &Path) -> Result<Option<Vec<u8>>, EditError> {
    let io_err = |source| EditError::Io { path: path.to_path_buf(), source };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(e)),
    };
    let mut text = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1).read_to_end(&mut text).map_err(io_err)?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(EditError::TooLarge { path: path.to_path_buf() });
    }
    if text.iter().all(|&b| is_ws(b)) {
        return Ok(None);
    }
    Ok(Some(text))
}

/// Reads `path` as a JSON object: `None` when it does not exist (or holds only whitespace).
fn read(path: &Path) -> Result<Option<Vec<u8>>, EditError> {
    let Some(text) = read_raw(path)? else {
        return Ok(None);
    };
    // Validated without building a value: only the splice below touches the text.
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&text) {
        return Err(EditError::NotJson { path: path.to_path_buf(), message: e.to_string() });
    }
    if text.iter().copied().find(|&b| !is_ws(b)) != Some(b'{') {
        return Err(EditError::NotJson { path: path.to_path_buf(), message: "the top level is not an object".into() });
    }
    Ok(Some(text))
}

/// Whether the entry already there means the same as `entry` (however it is formatted).
fn same_entry(text: &[u8], servers_key: &str, name: &str, entry: &str) -> bool {
    let Ok(Some(at)) = splice::find_path(text, 0..text.len(), &[servers_key, name]) else {
        return false;
    };
    let old = text.get(at).and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok());
    old.is_some() && old == serde_json::from_str::<serde_json::Value>(entry).ok()
}

/// Whether entry `name` holds `url` as one of its string members.
fn points_at(text: &[u8], servers_key: &str, name: &str, url: &str) -> bool {
    let Ok(Some(at)) = splice::find_path(text, 0..text.len(), &[servers_key, name]) else {
        return false;
    };
    match text.get(at).and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok()) {
        Some(serde_json::Value::Object(members)) => members.values().any(|v| v.as_str() == Some(url)),
        _ => false,
    }
}

/// The file to write: a symlinked config (dotfile managers) is edited where it points.
pub(crate) fn target(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Adds or replaces entry `name` (JSON text `entry`) under `servers_key` in the config at
/// `path`, creating the file (and its directory) when missing.
pub fn upsert(path: &Path, servers_key: &str, name: &str, entry: &str) -> Result<Outcome, EditError> {
    let path = target(path);
    let splice_err = |source| EditError::Splice { path: path.clone(), key: servers_key.to_owned(), source };
    let new = match read(&path)? {
        Some(text) => {
            if same_entry(&text, servers_key, name, entry) {
                return Ok(Outcome::Unchanged);
            }
            let new = set_entry(&text, servers_key, name, entry).map_err(splice_err)?;
            if new == text {
                return Ok(Outcome::Unchanged);
            }
            new
        }
        None => {
            let entry: serde_json::Value =
                serde_json::from_str(entry).map_err(|_| splice_err(SpliceError::InvalidValue))?;
            let doc = serde_json::json!({ servers_key: { name: entry } });
            let mut bytes = serde_json::to_vec_pretty(&doc).map_err(|_| splice_err(SpliceError::InvalidValue))?;
            bytes.push(b'\n');
            bytes
        }
    };
    write_atomic(&path, &new)?;
    Ok(Outcome::Changed)
}

/// Removes entry `name` from `servers_key` in the config at `path`; a missing file or entry is
/// [`Outcome::Unchanged`]. With `url`, only an entry that points at that URL is Apiary's and
/// removed; an entry of the same name the user wrote for something else stays.
pub fn remove(path: &Path, servers_key: &str, name: &str, url: Option<&str>) -> Result<Outcome, EditError> {
    let path = target(path);
    let Some(text) = read(&path)? else {
        return Ok(Outcome::Unchanged);
    };
    if let Some(url) = url
        && !points_at(&text, servers_key, name, url)
    {
        return Ok(Outcome::Unchanged);
    }
    let new = remove_entry(&text, servers_key, name).map_err(|source| EditError::Splice {
        path: path.clone(),
        key: servers_key.to_owned(),
        source,
    })?;
    match new {
        Some(new) => {
            write_atomic(&path, &new)?;
            Ok(Outcome::Changed)
        }
        None => Ok(Outcome::Unchanged),
    }
}

/// Writes through a temporary file in the same directory, flushed, with the old file's mode
/// (0600 for a new file), then renamed over the old one.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), EditError> {
    use std::os::unix::fs::PermissionsExt;
    let io_err = |source| EditError::Io { path: path.to_path_buf(), source };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(io_err)?;
    let mode = match std::fs::metadata(path) {
        Ok(m) => m.permissions().mode() & 0o7777,
        Err(_) => 0o600,
    };
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("config");
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{file_name}.apiary-"))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(io_err)?;
    tmp.write_all(bytes).map_err(io_err)?;
    tmp.as_file().set_permissions(std::fs::Permissions::from_mode(mode)).map_err(io_err)?;
    tmp.as_file().sync_all().map_err(io_err)?;
    tmp.persist(path).map_err(|e| io_err(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const ENTRY: &str = r#"{"url":"http://127.0.0.1:1/mcp"}"#;

    fn round_trip(original: &str) {
        let added = set_entry(original.as_bytes(), "mcpServers", "w", ENTRY).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&added).unwrap();
        assert_eq!(v["mcpServers"]["w"]["url"], "http://127.0.0.1:1/mcp", "{original}");
        let removed = remove_entry(&added, "mcpServers", "w").unwrap().unwrap();
        assert_eq!(String::from_utf8(removed).unwrap(), original);
    }

    #[test]
    fn add_then_remove_restores_the_bytes() {
        round_trip("{\n  \"mcpServers\": {\n    \"other\" : { \"url\": \"x\" }\n  },\n  \"n\": 1.50\n}\n");
        round_trip("{\"mcpServers\":{}}");
        round_trip("{ \"mcpServers\" : {   } , \"z\":[1,{\"w\":2}]}");
        round_trip("\t{\"a\":\"}\\\"\",\"mcpServers\":{\"a\":1,\"b\":{\"w\":3}}}  \n");
    }

    #[test]
    fn removing_a_first_or_middle_member_keeps_the_rest_valid() {
        let text = r#"{"mcpServers": {"w": {"url": "u"},  "b": 2}}"#;
        let out = remove_entry(text.as_bytes(), "mcpServers", "w").unwrap().unwrap();
        assert_eq!(std::str::from_utf8(&out).unwrap(), r#"{"mcpServers": {"b": 2}}"#);
        let text = "{\"mcpServers\": {\"a\": 1,\n \"w\": {},\n \"b\": 2}}";
        let out = remove_entry(text.as_bytes(), "mcpServers", "w").unwrap().unwrap();
        assert_eq!(std::str::from_utf8(&out).unwrap(), "{\"mcpServers\": {\"a\": 1,\n \"b\": 2}}");
        assert!(remove_entry(b"{\"mcpServers\":{\"x\":1}}", "mcpServers", "w").unwrap().is_none());
        assert!(remove_entry(b"{\"other\":{\"w\":1}}", "mcpServers", "w").unwrap().is_none());
    }

    #[test]
    fn files_are_created_kept_in_mode_and_refused_when_not_json() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/mcp.json");
        assert_eq!(upsert(&path, "servers", "w", ENTRY).unwrap(), Outcome::Changed);
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(v, serde_json::json!({"servers": {"w": {"url": "http://127.0.0.1:1/mcp"}}}));
        assert_eq!(upsert(&path, "servers", "w", ENTRY).unwrap(), Outcome::Unchanged);

        let kept = dir.path().join("kept.json");
        std::fs::write(&kept, "{}").unwrap();
        std::fs::set_permissions(&kept, std::fs::Permissions::from_mode(0o640)).unwrap();
        upsert(&kept, "servers", "w", ENTRY).unwrap();
        assert_eq!(std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777, 0o640);
        assert_eq!(remove(&kept, "servers", "w", Some("http://other/mcp")).unwrap(), Outcome::Unchanged);
        assert_eq!(remove(&kept, "servers", "w", Some("http://127.0.0.1:1/mcp")).unwrap(), Outcome::Changed);
        assert_eq!(std::fs::read_to_string(&kept).unwrap(), "{\"servers\":{}}");

        let bad = dir.path().join("bad.json");
        let text = "{ // comment\n \"servers\": {} }";
        std::fs::write(&bad, text).unwrap();
        assert!(matches!(upsert(&bad, "servers", "w", ENTRY), Err(EditError::NotJson { .. })));
        assert!(matches!(remove(&bad, "servers", "w", None), Err(EditError::NotJson { .. })));
        assert_eq!(std::fs::read_to_string(&bad).unwrap(), text);
        std::fs::write(&bad, "[1]").unwrap();
        assert!(matches!(upsert(&bad, "servers", "w", ENTRY), Err(EditError::NotJson { .. })));
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 3, "no temp files left: {names:?}");
    }

    #[test]
    fn a_servers_member_that_is_not_an_object_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        std::fs::write(&path, r#"{"servers": [1]}"#).unwrap();
        assert!(matches!(upsert(&path, "servers", "w", ENTRY), Err(EditError::Splice { .. })));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), r#"{"servers": [1]}"#);
    }
}
