//! Byte-exact edits of one member of a JSON message.
//!
//! A proxy that rewrites an id or a progress token must not re-serialise the message: a
//! round trip through a typed value re-orders keys, respells numbers (`1.50`, big integers),
//! and changes escapes. So the rewrite finds the byte range of the one member's value with a
//! small scanner (strings, escapes and nesting respected; depth bounded by
//! [`MAX_DEPTH`]; no recursion) and builds the new message as
//! prefix + new value + suffix. Every other byte stays as it came.
//!
//! The scanner finds boundaries; it does not validate scalars. Messages reach it after
//! [`Message::parse`](crate::Message::parse) has validated the whole text. On any input it
//! returns a typed error rather than panicking.

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use serde::de::IgnoredAny;

use crate::envelope::MAX_DEPTH;

/// Why a member could not be found or edited.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpliceError {
    #[error("expected a JSON object at byte {at}")]
    NotAnObject { at: usize },
    #[error("malformed JSON at byte {at}")]
    Malformed { at: usize },
    #[error("nesting deeper than {MAX_DEPTH} at byte {at}")]
    TooDeep { at: usize },
    #[error("byte range {start}..{end} is outside the {len}-byte text")]
    OutOfRange { start: usize, end: usize, len: usize },
    #[error("edits overlap at byte {at}")]
    Overlap { at: usize },
    #[error("the replacement is not one JSON value")]
    InvalidValue,
    #[error("member {0} is absent")]
    Absent(String),
    #[error("an empty member path")]
    EmptyPath,
}

/// What one pass over an object found.
struct ObjectScan {
    /// Index of the opening `{`.
    open: usize,
    /// End of the last member's value (where a new member is appended), if any member.
    last_value_end: Option<usize>,
    /// The value range of the looked-for key; the last one when the key repeats, as most
    /// JSON readers (serde_json, JavaScript, Python) keep the last.
    found: Option<Range<usize>>,
}

/// A cursor over `text[..end]`.
struct Scanner<'a> {
    text: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a [u8], range: Range<usize>) -> Result<Self, SpliceError> {
        check_range(text, &range)?;
        Ok(Scanner { text, pos: range.start, end: range.end })
    }

    fn peek(&self) -> Option<u8> {
        if self.pos < self.end { self.text.get(self.pos).copied() } else { None }
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn malformed(&self) -> SpliceError {
        SpliceError::Malformed { at: self.pos }
    }

    fn expect(&mut self, b: u8) -> Result<(), SpliceError> {
        if self.peek() != Some(b) {
            return Err(self.malformed());
        }
        self.pos += 1;
        Ok(())
    }

    /// A string starting at the cursor (on its `"`); returns its range, quotes included.
    fn string(&mut self) -> Result<Range<usize>, SpliceError> {
        let start = self.pos;
        self.expect(b'"')?;
        loop {
            match self.peek() {
                None => return Err(SpliceError::Malformed { at: start }),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(start..self.pos);
                }
                // The escaped byte cannot end the string (`\"`, `\\`).
                Some(b'\\') => self.pos += 2,
                Some(_) => self.pos += 1,
            }
        }
    }

    /// One value starting at the cursor; returns its range. Containers are skipped with an
    /// explicit stack of open brackets, bounded by `MAX_DEPTH`.
    fn value(&mut self) -> Result<Range<usize>, SpliceError> {
        let start = self.pos;
        match self.peek() {
            None => Err(self.malformed()),
            Some(b'"') => self.string(),
            Some(b'{' | b'[') => {
                let mut open: Vec<u8> = Vec::new();
                loop {
                    match self.peek() {
                        None => return Err(SpliceError::Malformed { at: start }),
                        Some(b'"') => {
                            self.string()?;
                            continue;
                        }
                        Some(b @ (b'{' | b'[')) => {
                            if open.len() >= MAX_DEPTH {
                                return Err(SpliceError::TooDeep { at: self.pos });
                            }
                            open.push(if b == b'{' { b'}' } else { b']' });
                        }
                        Some(b @ (b'}' | b']')) => {
                            if open.pop() != Some(b) {
                                return Err(self.malformed());
                            }
                            if open.is_empty() {
                                self.pos += 1;
                                return Ok(start..self.pos);
                            }
                        }
                        Some(_) => {}
                    }
                    self.pos += 1;
                }
            }
            Some(b'-' | b'0'..=b'9' | b't' | b'f' | b'n') => {
                while let Some(b) = self.peek() {
                    if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                        break;
                    }
                    self.pos += 1;
                }
                Ok(start..self.pos)
            }
            Some(_) => Err(self.malformed()),
        }
    }

    /// Walks the object at the cursor, noting where `key`'s value is.
    fn object(&mut self, key: &str) -> Result<ObjectScan, SpliceError> {
        self.skip_ws();
        let open = self.pos;
        if self.peek() != Some(b'{') {
            return Err(SpliceError::NotAnObject { at: self.pos });
        }
        self.pos += 1;
        let mut scan = ObjectScan { open, last_value_end: None, found: None };
        self.skip_ws();
        if self.peek() == Some(b'}') {
            return Ok(scan);
        }
        loop {
            self.skip_ws();
            let k = self.string()?;
            self.skip_ws();
            self.expect(b':')?;
            self.skip_ws();
            let v = self.value()?;
            scan.last_value_end = Some(v.end);
            if key_is(&self.text[k], key) {
                scan.found = Some(v);
            }
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => return Ok(scan),
                _ => return Err(self.malformed()),
            }
        }
    }
}

/// One member of an object: the range of its key (quotes included) and of its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub key: Range<usize>,
    pub value: Range<usize>,
}

impl Scanner<'_> {
    /// Every member of the object at the cursor, in order.
    fn members(&mut self) -> Result<Vec<Member>, SpliceError> {
        self.skip_ws();
        if self.peek() != Some(b'{') {
            return Err(SpliceError::NotAnObject { at: self.pos });
        }
        self.pos += 1;
        let mut out = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            return Ok(out);
        }
        loop {
            self.skip_ws();
            let key = self.string()?;
            self.skip_ws();
            self.expect(b':')?;
            self.skip_ws();
            let value = self.value()?;
            out.push(Member { key, value });
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => return Ok(out),
                _ => return Err(self.malformed()),
            }
        }
    }
}

/// The members of the object spanning `object` of `text`, in order (its own members only).
pub fn members(text: &[u8], object: Range<usize>) -> Result<Vec<Member>, SpliceError> {
    Scanner::new(text, object)?.members()
}

/// The key of a member, decoded (escapes and all); `None` when it is not a valid string.
pub fn member_key(text: &[u8], member: &Member) -> Option<String> {
    serde_json::from_slice(text.get(member.key.clone())?).ok()
}

/// `text` without the members of the object spanning `object` whose key `drop` picks, each
/// removed with the one comma that joined it to a neighbour; every other byte is kept.
/// Returns the text unchanged (a cheap clone) when nothing is dropped.
pub fn remove_members(text: &Bytes, object: Range<usize>, drop: impl Fn(&str) -> bool) -> Result<Bytes, SpliceError> {
    let all = members(text, object.clone())?;
    let picked: Vec<bool> = all.iter().map(|m| member_key(text, m).is_some_and(|k| drop(&k))).collect();
    if !picked.contains(&true) {
        return Ok(text.clone());
    }
    // A dropped member takes the separator after it (up to the next member's key); the
    // last kept member's trailing separator goes when every member after it is dropped.
    let mut cuts: Vec<(Range<usize>, &[u8])> = Vec::new();
    let last_kept = picked.iter().rposition(|p| !p);
    for (i, m) in all.iter().enumerate() {
        if !picked[i] {
            continue;
        }
        let range = match (all.get(i + 1), last_kept) {
            // A kept member follows somewhere: cut up to the next key.
            (Some(next), Some(k)) if k > i => m.key.start..next.key.start,
            // Only dropped members follow and one was kept before: cut from the end of the
            // previous member's value (its comma goes with this one).
            _ if i > 0 && last_kept.is_some() => all[i - 1].value.end..m.value.end,
            // Nothing is kept: cut the member alone, leaving the braces and whitespace.
            (Some(next), None) => m.key.start..next.key.start,
            _ => m.key.start..m.value.end,
        };
        cuts.push((range, b""));
    }
    splice(text, &cuts)
}

/// Whether the quoted key `raw` (quotes included) spells `key`, escapes decoded.
fn key_is(raw: &[u8], key: &str) -> bool {
    let inner = raw.get(1..raw.len().saturating_sub(1)).unwrap_or_default();
    if !inner.contains(&b'\\') {
        return inner == key.as_bytes();
    }
    serde_json::from_slice::<String>(raw).is_ok_and(|k| k == key)
}

fn check_range(text: &[u8], range: &Range<usize>) -> Result<(), SpliceError> {
    if range.start > range.end || range.end > text.len() {
        return Err(SpliceError::OutOfRange { start: range.start, end: range.end, len: text.len() });
    }
    Ok(())
}

/// The byte range of the value of member `key` in the object spanning `object` of `text`;
/// `None` when the object has no such member. Only the object's own members are looked at,
/// never members of nested values.
pub fn find_member(text: &[u8], object: Range<usize>, key: &str) -> Result<Option<Range<usize>>, SpliceError> {
    Ok(Scanner::new(text, object)?.object(key)?.found)
}

/// The byte range of the value at `path` (`["_meta", "progressToken"]`) from the object
/// spanning `object`; `None` when a member on the way is absent or is not an object.
pub fn find_path(text: &[u8], object: Range<usize>, path: &[&str]) -> Result<Option<Range<usize>>, SpliceError> {
    let Some((first, rest)) = path.split_first() else {
        return Err(SpliceError::EmptyPath);
    };
    let mut at = match find_member(text, object, first)? {
        Some(r) => r,
        None => return Ok(None),
    };
    for key in rest {
        if text.get(at.start) != Some(&b'{') {
            return Ok(None);
        }
        at = match find_member(text, at, key)? {
            Some(r) => r,
            None => return Ok(None),
        };
    }
    Ok(Some(at))
}

/// `text` with each range replaced by its bytes. The ranges must not overlap; they may come
/// in any order.
pub fn splice(text: &[u8], edits: &[(Range<usize>, &[u8])]) -> Result<Bytes, SpliceError> {
    let mut order: Vec<&(Range<usize>, &[u8])> = edits.iter().collect();
    order.sort_by_key(|(r, _)| (r.start, r.end));
    let grow: usize = edits.iter().map(|(_, with)| with.len()).sum();
    let mut out = BytesMut::with_capacity(text.len() + grow);
    let mut done = 0;
    for (range, with) in order {
        check_range(text, range)?;
        if range.start < done {
            return Err(SpliceError::Overlap { at: range.start });
        }
        out.extend_from_slice(&text[done..range.start]);
        out.extend_from_slice(with);
        done = range.end;
    }
    out.extend_from_slice(&text[done..]);
    Ok(out.freeze())
}

/// Checks that `value` is exactly one JSON value, so an edit cannot break the message.
pub fn check_value(value: &str) -> Result<(), SpliceError> {
    serde_json::from_str::<IgnoredAny>(value).map(drop).map_err(|_| SpliceError::InvalidValue)
}

/// `text` with the value at `path` (from the object spanning `object`) replaced by `value`
/// (JSON text), or, when the member is absent, added.
///
/// Adding is the smallest change that makes the member exist: `"key":value` is appended
/// after the object's last member (or right after `{` when it has none), with no whitespace;
/// when a parent on the path is absent too it is added the same way, holding only the rest
/// of the path (`"_meta":{"progressToken":value}`). A parent that exists but is not an
/// object is an error. Every other byte is kept.
pub fn set_path(text: &[u8], object: Range<usize>, path: &[&str], value: &str) -> Result<Bytes, SpliceError> {
    if path.is_empty() {
        return Err(SpliceError::EmptyPath);
    }
    check_value(value)?;
    let mut at = object;
    for (i, key) in path.iter().enumerate() {
        let scan = Scanner::new(text, at)?.object(key)?;
        let last = i + 1 == path.len();
        match scan.found {
            Some(r) if last => return splice(text, &[(r, value.as_bytes())]),
            Some(r) => at = r,
            None => {
                let member = nest(&path[i..], value)?;
                return match scan.last_value_end {
                    Some(end) => splice(text, &[(end..end, format!(",{member}").as_bytes())]),
                    None => splice(text, &[(scan.open + 1..scan.open + 1, member.as_bytes())]),
                };
            }
        }
    }
    Err(SpliceError::EmptyPath)
}

/// `"a":{"b":value}` for `path = [a, b]`.
fn nest(path: &[&str], value: &str) -> Result<String, SpliceError> {
    let mut out = value.to_owned();
    for (i, key) in path.iter().enumerate().rev() {
        let k = serde_json::to_string(key).map_err(|_| SpliceError::InvalidValue)?;
        out = if i == 0 { format!("{k}:{out}") } else { format!("{{{k}:{out}}}") };
    }
    Ok(out)
}

/// `text` with the value at `path` replaced by `value` (JSON text); an error when absent.
pub fn replace_path(text: &[u8], object: Range<usize>, path: &[&str], value: &str) -> Result<Bytes, SpliceError> {
    check_value(value)?;
    match find_path(text, object, path)? {
        Some(r) => splice(text, &[(r, value.as_bytes())]),
        None => Err(SpliceError::Absent(path.join("."))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn whole(s: &str) -> Range<usize> {
        0..s.len()
    }

    fn at<'a>(s: &'a str, path: &[&str]) -> Option<&'a str> {
        find_path(s.as_bytes(), whole(s), path).unwrap().map(|r| &s[r])
    }

    #[test]
    fn members_are_found_as_written() {
        let s = r#" { "a" : 1.50 , "b":{"c":[1,{"d":"}"}],"e":"x\"y"}, "n":12345678901234567890123 } "#;
        assert_eq!(at(s, &["a"]), Some("1.50"));
        assert_eq!(at(s, &["b"]), Some(r#"{"c":[1,{"d":"}"}],"e":"x\"y"}"#));
        assert_eq!(at(s, &["b", "e"]), Some(r#""x\"y""#));
        assert_eq!(at(s, &["n"]), Some("12345678901234567890123"));
        assert_eq!(at(s, &["d"]), None, "a nested member is not the object's own");
        assert_eq!(at(s, &["a", "x"]), None, "a scalar has no members");
    }

    #[test]
    fn escaped_keys_and_duplicates() {
        let s = r#"{"progress\u0054oken":1,"k":1,"k":2}"#;
        assert_eq!(at(s, &["progressToken"]), Some("1"));
        assert_eq!(at(s, &["k"]), Some("2"), "the last of a repeated key, as readers keep it");
    }

    #[test]
    fn splices_keep_every_other_byte() {
        let s = r#"{"a" :  1.50,"b":"\u00e9\/","c":1e400}"#;
        let out = replace_path(s.as_bytes(), whole(s), &["b"], "7").unwrap();
        assert_eq!(&out[..], br#"{"a" :  1.50,"b":7,"c":1e400}"#);
        let num = s.find("1e400").unwrap();
        let out = splice(s.as_bytes(), &[(num..num + 5, b"2"), (1..4, b"\"z\"")]).unwrap();
        assert_eq!(&out[..], br#"{"z" :  1.50,"b":"\u00e9\/","c":2}"#);
        assert_eq!(splice(b"abc", &[(0..2, b""), (1..3, b"")]), Err(SpliceError::Overlap { at: 1 }));
        assert!(matches!(splice(b"abc", &[(2..9, b"")]), Err(SpliceError::OutOfRange { .. })));
    }

    #[test]
    fn absent_members_are_added_with_the_least_change() {
        let s = "{\"a\":1 ,\n \"m\":{ } \n}";
        let out = set_path(s.as_bytes(), whole(s), &["m", "t"], "\"x\"").unwrap();
        assert_eq!(&out[..], b"{\"a\":1 ,\n \"m\":{\"t\":\"x\" } \n}");
        let out = set_path(s.as_bytes(), whole(s), &["_meta", "t"], "5").unwrap();
        assert_eq!(&out[..], b"{\"a\":1 ,\n \"m\":{ },\"_meta\":{\"t\":5} \n}");
        let out = set_path(s.as_bytes(), whole(s), &["a"], "2").unwrap();
        assert_eq!(&out[..], b"{\"a\":2 ,\n \"m\":{ } \n}");
        let out = set_path(b" {} ", 0..4, &["a"], "true").unwrap();
        assert_eq!(&out[..], b" {\"a\":true} ");
        assert!(matches!(set_path(s.as_bytes(), whole(s), &["a", "b"], "1"), Err(SpliceError::NotAnObject { .. })));
        assert_eq!(set_path(s.as_bytes(), whole(s), &["a"], "1 2"), Err(SpliceError::InvalidValue));
        assert_eq!(replace_path(s.as_bytes(), whole(s), &["z"], "1"), Err(SpliceError::Absent("z".into())));
    }

    #[test]
    fn members_are_removed_with_one_comma_each() {
        let keep_all = |s: &str, drop: &[&str]| {
            let text = Bytes::from(s.to_owned());
            let out = remove_members(&text, 0..s.len(), |k| drop.contains(&k)).unwrap();
            String::from_utf8(out.to_vec()).unwrap()
        };
        let s = r#"{"a":1.50 , "b":[1,{"c":2}],"c":"x\"y", "d":1e400}"#;
        assert_eq!(keep_all(s, &[]), s);
        assert_eq!(keep_all(s, &["a"]), r#"{"b":[1,{"c":2}],"c":"x\"y", "d":1e400}"#);
        assert_eq!(keep_all(s, &["b", "c"]), r#"{"a":1.50 , "d":1e400}"#);
        assert_eq!(keep_all(s, &["c", "d"]), r#"{"a":1.50 , "b":[1,{"c":2}]}"#);
        assert_eq!(keep_all(s, &["a", "c"]), r#"{"b":[1,{"c":2}],"d":1e400}"#);
        assert_eq!(keep_all(s, &["a", "b", "c", "d"]), "{}");
        assert_eq!(keep_all("{ \"a\":1 }", &["a"]), "{  }");
        assert_eq!(keep_all(r#"{"\u0061":1,"b":2}"#, &["a"]), r#"{"b":2}"#);
        let text = Bytes::from_static(b"[1]");
        assert!(matches!(remove_members(&text, 0..3, |_| true), Err(SpliceError::NotAnObject { .. })));
    }

    #[test]
    fn nasty_inputs_give_errors_not_panics() {
        let deep = format!("{{\"a\":{}}}", "[".repeat(10_000));
        let cases: &[&[u8]] = &[
            b"",
            b"{",
            b"[]",
            b"{\"a\"",
            b"{\"a\":",
            b"{\"a\":1",
            b"{\"a\":1,}",
            b"{\"a\":[1}",
            b"{\"a\":\"\\",
            b"{\"a\":\"\\\"}",
            b"{a:1}",
            b"{\"a\"1}",
            b"{\"a\":\xff}",
            b"{\"\xff\\u\":1}",
            b"{\"a\":{\"b\":}}",
            b"}}}}",
            deep.as_bytes(),
        ];
        for text in cases {
            let r = 0..text.len();
            let _ = find_path(text, r.clone(), &["a", "b"]);
            let _ = set_path(text, r.clone(), &["a", "b"], "1");
            let _ = find_member(text, r.clone(), "\\");
            let _ = find_member(text, r.start..r.end + 1, "a");
        }
        assert!(matches!(find_path(deep.as_bytes(), 0..deep.len(), &["b"]), Err(SpliceError::TooDeep { .. })));
        assert!(matches!(find_member(b"{\"a\":[1}", 0..8, "a"), Err(SpliceError::Malformed { .. })));
        assert!(matches!(find_member(b"[]", 0..2, "a"), Err(SpliceError::NotAnObject { at: 0 })));
        let (start, end) = (1, 0);
        assert!(matches!(find_member(b"{}", start..end, "a"), Err(SpliceError::OutOfRange { .. })));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_any_range_never_panic(text in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64), a in 0usize..80, b in 0usize..80) {
            let _ = find_path(&text, a..b, &["x", "y"]);
            let _ = set_path(&text, a..b, &["x", "y"], "1");
            let _ = splice(&text, &[(a..b, b"z")]);
        }

        #[test]
        fn json_ish_text_never_panics(text in "[{}\\[\\]\",:\\\\ a-z0-9]{0,48}") {
            let _ = find_path(text.as_bytes(), 0..text.len(), &["a", "b"]);
            let _ = set_path(text.as_bytes(), 0..text.len(), &["a"], "\"v\"");
        }
    }
}
