//! Adding and removing one server entry in a TOML client config (Codex's
//! `[mcp_servers.NAME]` tables, Mistral Vibe's `[[mcp_servers]]` array) with `toml_edit`,
//! which keeps comments, order and formatting of everything it is not asked to change.

use serde_json::Value;
use toml_edit::{ArrayOfTables, DocumentMut, Item, Table};

/// How the servers are kept under the top-level key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `[key.NAME]` tables (Codex).
    Tables,
    /// `[[key]]` tables, each with its `name` (Mistral Vibe).
    Array,
}

/// Why a TOML edit was not made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TomlError {
    /// The text is not TOML.
    #[error("{0}")]
    Invalid(String),
    /// The servers key holds something other than the layout's tables.
    #[error("{0}")]
    Unsupported(String),
}

fn parse(text: &str) -> Result<DocumentMut, TomlError> {
    text.parse::<DocumentMut>().map_err(|e| {
        let msg = e.to_string();
        TomlError::Invalid(msg.lines().find(|l| !l.trim().is_empty()).unwrap_or(&msg).trim().to_owned())
    })
}

/// `text` with entry `name` set to `entry` (an object of scalars) under `key`; `None` when it
/// is already there as given.
pub fn upsert(text: &str, layout: Layout, key: &str, name: &str, entry: &Value) -> Result<Option<String>, TomlError> {
    let mut doc = parse(text)?;
    let table = to_table(entry)?;
    match layout {
        Layout::Tables => {
            let servers = doc.as_table_mut().entry(key).or_insert_with(|| {
                // `[key.NAME]` alone, without an empty `[key]` header above it.
                let mut t = Table::new();
                t.set_implicit(true);
                Item::Table(t)
            });
            let Some(servers) = servers.as_table_mut() else {
                return Err(TomlError::Unsupported(format!("`{key}` is not a table of tables")));
            };
            if servers.get(name).and_then(Item::as_table).is_some_and(|t| to_json(t) == *entry) {
                return Ok(None);
            }
            servers.insert(name, Item::Table(table));
        }
        Layout::Array => {
            let servers = doc.as_table_mut().entry(key).or_insert_with(|| Item::ArrayOfTables(ArrayOfTables::new()));
            let Some(list) = servers.as_array_of_tables_mut() else {
                return Err(TomlError::Unsupported(format!("`{key}` is not an array of tables ([[{key}]])")));
            };
            let found = list.iter().position(|t| named(t, name));
            match found {
                Some(i) => {
                    if list.get(i).is_some_and(|t| to_json(t) == *entry) {
                        return Ok(None);
                    }
                    list.replace(i, table);
                }
                None => list.push(table),
            }
        }
    }
    Ok(Some(doc.to_string()))
}

/// `text` without entry `name` under `key` (only when it points at `url`, if given); `None`
/// when there is no such entry. A key left empty is removed.
pub fn remove(
    text: &str,
    layout: Layout,
    key: &str,
    name: &str,
    url: Option<&str>,
) -> Result<Option<String>, TomlError> {
    let mut doc = parse(text)?;
    let points = |t: &Table| url.is_none_or(|u| t.iter().any(|(_, v)| v.as_str() == Some(u)));
    let emptied = match layout {
        Layout::Tables => {
            let Some(servers) = doc.get_mut(key).and_then(Item::as_table_mut) else {
                return Ok(None);
            };
            if !servers.get(name).and_then(Item::as_table).is_some_and(points) {
                return Ok(None);
            }
            servers.remove(name);
            servers.is_empty() && servers.is_implicit()
        }
        Layout::Array => {
            let Some(list) = doc.get_mut(key).and_then(Item::as_array_of_tables_mut) else {
                return Ok(None);
            };
            let found = list.iter().position(|t| named(t, name) && points(t));
            let Some(i) = found else {
                return Ok(None);
            };
            list.remove(i);
            list.is_empty()
        }
    };
    if emptied {
        doc.as_table_mut().remove(key);
    }
    Ok(Some(doc.to_string()))
}

fn named(t: &Table, name: &str) -> bool {
    t.get("name").and_then(Item::as_str) == Some(name)
}

/// A table of the entry's scalars, in order.
fn to_table(entry: &Value) -> Result<Table, TomlError> {
    let mut t = Table::new();
    let Some(members) = entry.as_object() else {
        return Err(TomlError::Unsupported("an entry is not an object".into()));
    };
    for (k, v) in members {
        let value: toml_edit::Value = match v {
            Value::String(s) => s.as_str().into(),
            Value::Bool(b) => (*b).into(),
            Value::Number(n) => match n.as_i64() {
                Some(i) => i.into(),
                None => n.as_f64().unwrap_or_default().into(),
            },
            _ => return Err(TomlError::Unsupported(format!("entry member {k:?} is not a scalar"))),
        };
        t.insert(k, Item::Value(value));
    }
    Ok(t)
}

/// A table's scalars as JSON, to compare with an entry.
fn to_json(t: &Table) -> Value {
    let mut m = serde_json::Map::new();
    for (k, item) in t.iter() {
        let v = match item.as_value() {
            Some(toml_edit::Value::String(s)) => Value::from(s.value().as_str()),
            Some(toml_edit::Value::Boolean(b)) => Value::from(*b.value()),
            Some(toml_edit::Value::Integer(i)) => Value::from(*i.value()),
            Some(toml_edit::Value::Float(f)) => Value::from(*f.value()),
            _ => Value::Null,
        };
        m.insert(k.to_owned(), v);
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const U: &str = "http://127.0.0.1:1/mcp";

    fn codex() -> Value {
        serde_json::json!({"url": U})
    }

    fn vibe() -> Value {
        serde_json::json!({"name": "w", "transport": "streamable-http", "url": U})
    }

    #[test]
    fn tables_round_trip_byte_for_byte() {
        for original in [
            "# Codex settings\nmodel = \"o3\"  # the model\n\n[mcp_servers.other]\ncommand = \"npx\"\nargs = [\"-y\", \"x\"]\n\n[profiles.fast]\nmodel = \"o4-mini\"\n",
            "model = \"o3\"\n",
            "",
        ] {
            let added = upsert(original, Layout::Tables, "mcp_servers", "w", &codex()).unwrap().unwrap();
            let doc: DocumentMut = added.parse().unwrap();
            assert_eq!(doc["mcp_servers"]["w"]["url"].as_str(), Some(U), "{added}");
            assert!(added.contains("[mcp_servers.w]\nurl = \"http://127.0.0.1:1/mcp\"\n"), "{added}");
            assert_eq!(upsert(&added, Layout::Tables, "mcp_servers", "w", &codex()).unwrap(), None);
            let removed = remove(&added, Layout::Tables, "mcp_servers", "w", Some(U)).unwrap().unwrap();
            assert_eq!(removed, original, "after adding:\n{added}");
        }
    }

    #[test]
    fn a_file_without_a_final_newline_gets_one() {
        let original = "model = 'o3' # no newline at the end";
        let added = upsert(original, Layout::Tables, "mcp_servers", "w", &codex()).unwrap().unwrap();
        let removed = remove(&added, Layout::Tables, "mcp_servers", "w", None).unwrap().unwrap();
        assert_eq!(removed, format!("{original}\n"));
    }

    #[test]
    fn array_round_trips_byte_for_byte() {
        for original in [
            "active_model = \"devstral\"\n\n# my servers\n[[mcp_servers]]\nname = \"other\"\ntransport = \"stdio\"\ncommand = \"uvx\"\n",
            "active_model = \"devstral\"\n",
            "",
        ] {
            let added = upsert(original, Layout::Array, "mcp_servers", "w", &vibe()).unwrap().unwrap();
            assert!(
                added.contains("[[mcp_servers]]\nname = \"w\"\ntransport = \"streamable-http\"\nurl = "),
                "{added}"
            );
            let removed = remove(&added, Layout::Array, "mcp_servers", "w", None).unwrap().unwrap();
            assert_eq!(removed, original, "after adding:\n{added}");
        }
    }

    #[test]
    fn other_entries_and_wrong_shapes() {
        let text = "[[mcp_servers]]\nname = \"w\"\nurl = \"http://other\"\n";
        assert_eq!(remove(text, Layout::Array, "mcp_servers", "w", Some(U)).unwrap(), None);
        let replaced = upsert(text, Layout::Array, "mcp_servers", "w", &vibe()).unwrap().unwrap();
        assert_eq!(replaced.matches("[[mcp_servers]]").count(), 1, "{replaced}");
        assert!(matches!(
            upsert("mcp_servers = 3\n", Layout::Tables, "mcp_servers", "w", &codex()),
            Err(TomlError::Unsupported(_))
        ));
        assert!(matches!(upsert("a = \n", Layout::Tables, "mcp_servers", "w", &codex()), Err(TomlError::Invalid(_))));
    }
}
