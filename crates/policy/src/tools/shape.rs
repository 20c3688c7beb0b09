//! Rewriting list responses and `tools/call` requests by splicing bytes: only the items that
//! change (and the separators around dropped ones) are touched; every other byte of the message
//! is forwarded as the server or client wrote it. serde_json finds the spans (borrowed
//! `RawValue`s are slices of the input), so no hand-written JSON parser decides what is where.

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde::de::{MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::policy::ItemFate;

/// Which list a response carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    Tools,
    Prompts,
    Resources,
}

impl ListKind {
    /// The member of `result` holding the list.
    pub fn field(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources => "resources",
        }
    }
}

/// One item of a list, as [`shape_list`] shows it to the caller's `fate`.
#[derive(Debug)]
pub struct ListItem<'a> {
    /// `name`, when it is a string.
    pub name: Option<&'a str>,
    /// `uri`, when it is a string (resources).
    pub uri: Option<&'a str>,
    /// the item's `annotations` object (tools), if any
    pub annotations: Option<&'a Map<String, Value>>,
    /// The whole item as it was written.
    pub raw: &'a RawValue,
}

/// Why a message could not be rewritten.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    /// Not well-formed JSON (or over the nesting limit, or not UTF-8).
    #[error("not a well-formed JSON-RPC message: {0}")]
    Invalid(String),
    /// A member that decides what is shown or called appears twice; readers disagree on which
    /// one counts, so such a message is refused rather than guessed at.
    #[error("member `{0}` appears more than once")]
    DuplicateMember(String),
    /// `with_call_name` needs `params.name` to be a string.
    #[error("the request has no string `params.name`")]
    NoToolName,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
    #[serde(borrow, default)]
    result: Option<&'a RawValue>,
}

/// An object's members in order, keys decoded, values as written.
struct Members<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = map.next_key::<String>()? {
                    out.push((k, map.next_value::<&'de RawValue>()?));
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl<'a> Members<'a> {
    /// Members of `raw` when it is an object, else `None`.
    fn of(raw: &'a RawValue) -> Option<Members<'a>> {
        if !raw.get().starts_with('{') {
            return None;
        }
        serde_json::from_str(raw.get()).ok()
    }

    /// The one member called `key`; a repeated one is an error.
    fn get(&self, key: &str) -> Result<Option<&'a RawValue>, ShapeError> {
        let mut found = self.0.iter().filter(|(k, _)| k == key).map(|(_, v)| *v);
        let first = found.next();
        if found.next().is_some() {
            return Err(ShapeError::DuplicateMember(key.to_owned()));
        }
        Ok(first)
    }
}

/// Byte range of `part` inside `whole`; `part` is a slice of `whole` (a borrowed `RawValue`).
fn span_of(whole: &[u8], part: &str) -> Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize);
    start..start + part.len()
}

fn envelope(message: &[u8]) -> Result<Envelope<'_>, ShapeError> {
    apiary_protocol::envelope::check_text(message).map_err(|e| ShapeError::Invalid(e.to_string()))?;
    serde_json::from_slice(message).map_err(|e| ShapeError::Invalid(e.to_string()))
}

fn as_string(raw: &RawValue) -> Option<String> {
    serde_json::from_str::<String>(raw.get()).ok()
}

/// Rewrites one JSON-RPC response message of a list call (`{"jsonrpc":"2.0","id":..,"result":
/// {"tools":[..],..}}`): calls `fate` per item, drops and changes items. `Ok(None)` when nothing
/// changed (forward the original bytes), and for error responses and other shapes. Otherwise
/// every byte outside the list array, and every kept item that was not changed, is kept exactly;
/// a changed item keeps all its bytes except the spliced `name` / `description` values (a
/// missing one is appended after its last member). Dropping an item removes it and the
/// separator before it (after it, for the first).
pub fn shape_list(
    message: &[u8],
    kind: ListKind,
    mut fate: impl FnMut(&ListItem<'_>) -> ItemFate,
) -> Result<Option<Bytes>, ShapeError> {
    let env = envelope(message)?;
    let Some(result) = env.result.and_then(Members::of) else { return Ok(None) };
    let Some(list) = result.get(kind.field())? else { return Ok(None) };
    if !list.get().starts_with('[') {
        return Ok(None);
    }
    let items: Vec<&RawValue> = serde_json::from_str(list.get()).map_err(|e| ShapeError::Invalid(e.to_string()))?;

    let mut fates = Vec::with_capacity(items.len());
    for item in &items {
        let members = Members::of(item);
        let member =
            |key: &str| -> Result<Option<&RawValue>, ShapeError> { members.as_ref().map_or(Ok(None), |m| m.get(key)) };
        let name = member("name")?.and_then(as_string);
        let uri = member("uri")?.and_then(as_string);
        let annotations = member("annotations")?.and_then(|a| serde_json::from_str::<Map<String, Value>>(a.get()).ok());
        let view =
            ListItem { name: name.as_deref(), uri: uri.as_deref(), annotations: annotations.as_ref(), raw: item };
        fates.push(fate(&view));
    }
    if fates.iter().all(|f| *f == ItemFate::Keep) {
        return Ok(None);
    }

    let list_span = span_of(message, list.get());
    let spans: Vec<Range<usize>> = items.iter().map(|i| span_of(message, i.get())).collect();
    let mut out = BytesMut::with_capacity(message.len());
    out.extend_from_slice(&message[..list_span.start + 1]);
    let mut first_kept = true;
    for (i, (span, fate)) in spans.iter().zip(&fates).enumerate() {
        if *fate == ItemFate::Drop {
            continue;
        }
        // What stood before this item: after `[` for the first one written, else its comma.
        // What stood before this item: the blank after `[` for the first item written, else
        // the separator (with its comma) that preceded it.
        let before =
            if first_kept || i == 0 { list_span.start + 1..spans[0].start } else { spans[i - 1].end..span.start };
        out.extend_from_slice(&message[before]);
        first_kept = false;
        match fate {
            ItemFate::Change { name, description } => {
                out.extend_from_slice(&changed_item(items[i], name.as_deref(), description.as_deref())?)
            }
            _ => out.extend_from_slice(&message[span.clone()]),
        }
    }
    let tail_start = if first_kept { list_span.end - 1 } else { spans.last().map_or(list_span.end - 1, |s| s.end) };
    out.extend_from_slice(&message[tail_start..]);
    // A change to the value an item already had changes nothing.
    if out[..] == message[..] {
        return Ok(None);
    }
    Ok(Some(out.freeze()))
}

/// The item with its `name` / `description` values replaced (or appended when absent). A
/// non-object item has nothing to rename and is kept as written.
fn changed_item(item: &RawValue, name: Option<&str>, description: Option<&str>) -> Result<Vec<u8>, ShapeError> {
    let text = item.get();
    let Some(members) = Members::of(item) else { return Ok(text.as_bytes().to_vec()) };
    let mut edits: Vec<(Range<usize>, String)> = Vec::new();
    let mut appended = String::new();
    for (key, new) in [("name", name), ("description", description)] {
        let Some(new) = new else { continue };
        let value = serde_json::to_string(new).map_err(|e| ShapeError::Invalid(e.to_string()))?;
        match members.get(key)? {
            Some(raw) => edits.push((span_of(text.as_bytes(), raw.get()), value)),
            None => {
                if !appended.is_empty() || !members.0.is_empty() {
                    appended.push(',');
                }
                appended.push_str(&format!("\"{key}\":{value}"));
            }
        }
    }
    if !appended.is_empty() {
        // After the last member's value, or just inside `{` when there is none.
        let at = members.0.iter().map(|(_, v)| span_of(text.as_bytes(), v.get()).end).max().unwrap_or(1);
        edits.push((at..at, appended));
    }
    edits.sort_by_key(|(r, _)| r.start);
    let mut out = Vec::with_capacity(text.len() + 64);
    let mut pos = 0;
    for (range, new) in edits {
        out.extend_from_slice(&text.as_bytes()[pos..range.start]);
        out.extend_from_slice(new.as_bytes());
        pos = range.end;
    }
    out.extend_from_slice(&text.as_bytes()[pos..]);
    Ok(out)
}

/// Replaces `params.name` in a `tools/call` request message, keeping every other byte exactly.
pub fn with_call_name(message: &[u8], new_name: &str) -> Result<Bytes, ShapeError> {
    let env = envelope(message)?;
    let params = env.params.and_then(Members::of).ok_or(ShapeError::NoToolName)?;
    let name = params.get("name")?.filter(|n| n.get().starts_with('"')).ok_or(ShapeError::NoToolName)?;
    let span = span_of(message, name.get());
    let value = serde_json::to_string(new_name).map_err(|e| ShapeError::Invalid(e.to_string()))?;
    let mut out = BytesMut::with_capacity(message.len() + value.len());
    out.extend_from_slice(&message[..span.start]);
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(&message[span.end..]);
    Ok(out.freeze())
}
