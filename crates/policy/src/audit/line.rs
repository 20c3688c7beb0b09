//! An audit event's NDJSON line, written straight into the caller's buffer. One is written per
//! request, and serde's generic path (a key escaped and a state checked per field, each enum
//! and option through the serializer) cost about as much as building the event; this writes
//! the fixed keys as literals and copies a string whole when it needs no escape. The bytes are
//! exactly `serde_json::to_vec(&event)`'s (checked against it by the test below): same field
//! order, same omitted fields, same escapes (a string that needs one is escaped by serde_json).

use serde_json::value::RawValue;

use super::event::{AuditEvent, Outcome, TargetType};

/// Appends `event` as one JSON object (no newline) to `out`.
pub(crate) fn write(event: &AuditEvent, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"time\":");
    string(out, &event.time);
    out.extend_from_slice(b",\"level\":");
    string(out, event.level);
    out.extend_from_slice(b",\"msg\":");
    string(out, event.msg);
    out.extend_from_slice(b",\"audit_id\":");
    string(out, &event.audit_id);
    out.extend_from_slice(b",\"type\":");
    string(out, &event.event_type);
    out.extend_from_slice(b",\"logged_at\":");
    string(out, &event.logged_at);
    out.extend_from_slice(b",\"outcome\":");
    out.extend_from_slice(match event.outcome {
        Outcome::Success => b"\"success\"",
        Outcome::Failure => b"\"failure\"",
        Outcome::Denied => b"\"denied\"",
        Outcome::Error => b"\"error\"",
    });
    out.extend_from_slice(b",\"component\":");
    string(out, &event.component);

    let source = &event.source;
    out.extend_from_slice(b",\"source\":{\"type\":");
    string(out, source.kind);
    out.extend_from_slice(b",\"value\":");
    string(out, &source.value);
    out.extend_from_slice(b",\"extra\":{");
    let mut first = true;
    optional(out, &mut first, b"\"user_agent\":", source.extra.user_agent.as_deref());
    optional(out, &mut first, b"\"request_id\":", source.extra.request_id.as_deref());
    out.extend_from_slice(b"}}");

    let subjects = &event.subjects;
    out.extend_from_slice(b",\"subjects\":{");
    let mut first = true;
    optional(out, &mut first, b"\"user_id\":", subjects.user_id.as_deref());
    optional(out, &mut first, b"\"user\":", Some(&subjects.user));
    optional(out, &mut first, b"\"client_name\":", subjects.client_name.as_deref());
    optional(out, &mut first, b"\"client_version\":", subjects.client_version.as_deref());
    out.push(b'}');

    let target = &event.target;
    out.extend_from_slice(b",\"target\":{");
    let mut first = true;
    optional(out, &mut first, b"\"endpoint\":", target.endpoint.as_deref());
    optional(out, &mut first, b"\"method\":", target.method.as_deref());
    let kind = match target.kind {
        TargetType::Tool => "tool",
        TargetType::Resource => "resource",
        TargetType::Prompt => "prompt",
        TargetType::Endpoint => "endpoint",
    };
    optional(out, &mut first, b"\"type\":", Some(kind));
    optional(out, &mut first, b"\"name\":", target.name.as_deref());
    out.push(b'}');

    let extra = &event.metadata.extra;
    out.extend_from_slice(b",\"metadata\":{\"extra\":{\"duration_ms\":");
    number(out, extra.duration_ms);
    if let Some(transport) = &extra.transport {
        out.extend_from_slice(b",\"transport\":");
        string(out, transport);
    }
    if let Some(size) = extra.response_size_bytes {
        out.extend_from_slice(b",\"response_size_bytes\":");
        number(out, size);
    }
    out.extend_from_slice(b"}}");

    if let Some(data) = &event.data {
        out.extend_from_slice(b",\"data\":{");
        let mut first = true;
        raw(out, &mut first, b"\"request\":", data.request.as_deref());
        raw(out, &mut first, b"\"response\":", data.response.as_deref());
        out.push(b'}');
    }
    out.push(b'}');
}

/// `"key":"value"` when there is a value, after a comma unless it is the object's first field.
fn optional(out: &mut Vec<u8>, first: &mut bool, key: &[u8], value: Option<&str>) {
    let Some(value) = value else { return };
    separator(out, first);
    out.extend_from_slice(key);
    string(out, value);
}

fn raw(out: &mut Vec<u8>, first: &mut bool, key: &[u8], value: Option<&RawValue>) {
    let Some(value) = value else { return };
    separator(out, first);
    out.extend_from_slice(key);
    out.extend_from_slice(value.get().as_bytes());
}

fn separator(out: &mut Vec<u8>, first: &mut bool) {
    if !*first {
        out.push(b',');
    }
    *first = false;
}

/// A JSON string: copied whole when nothing in it needs an escape (serde_json escapes only
/// `"`, `\` and control characters), else escaped by serde_json itself.
fn string(out: &mut Vec<u8>, s: &str) {
    if s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        // Writing a string into a Vec cannot fail; were it to, the line would be cut short, and
        // an event is better whole: fall back to an empty string rather than half a line.
        if serde_json::to_writer(&mut *out, s).is_err() {
            out.extend_from_slice(b"\"\"");
        }
        return;
    }
    out.reserve(s.len() + 2);
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

fn number(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::audit::AuditConfig;
    use crate::identity::{Identity, IdentityKind};
    use std::time::Duration;

    /// A small deterministic generator (xorshift), so a failing case can be replayed.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }

        fn text(&mut self) -> String {
            let pieces = ["a", "tools/call", " ", "\"", "\\", "\n", "\u{1}", "\u{7f}", "é", "😀", "/", "</script>"];
            (0..self.below(5)).map(|_| pieces[self.below(pieces.len() as u64) as usize]).collect()
        }

        fn maybe(&mut self) -> Option<String> {
            (self.below(2) == 0).then(|| self.text())
        }
    }

    #[test]
    fn lines_are_serde_json_s_bytes() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for case in 0..3000 {
            let cfg = AuditConfig {
                component: rng.text(),
                include_request_data: rng.below(2) == 0,
                include_response_data: rng.below(2) == 0,
                max_data_size: rng.below(40) as usize,
                ..AuditConfig::default()
            };
            let methods = [None, Some("tools/call"), Some("resources/read"), Some("prompts/get"), Some("ping")];
            let method = methods[rng.below(methods.len() as u64) as usize];
            let mut b = AuditEvent::builder(&cfg, method);
            if rng.below(2) == 0 {
                let mut claims = serde_json::Map::new();
                for key in ["name", "client_name", "client_version"] {
                    if let Some(v) = rng.maybe() {
                        claims.insert(key.to_owned(), v.into());
                    }
                }
                let who = Identity { subject: rng.text(), claims, kind: IdentityKind::Jwt };
                b = b.identity(Some(&who));
            }
            if let Some(t) = rng.maybe() {
                b = b.target_name(&t);
            }
            if let Some(t) = rng.maybe() {
                b = b.endpoint(&t);
            }
            if let Some(t) = rng.maybe() {
                b = b.http_method(&t);
            }
            if let Some(t) = rng.maybe() {
                b = b.user_agent(&t);
            }
            if let Some(t) = rng.maybe() {
                b = b.request_id(&t);
            }
            if let Some(t) = rng.maybe() {
                b = b.transport(&t);
            }
            if rng.below(2) == 0 {
                b = b.response_size(rng.below(u64::MAX));
            }
            if rng.below(3) == 0 {
                b = b.peer([std::net::IpAddr::from([127, 0, 0, 1]), "::1".parse().unwrap()][rng.below(2) as usize]);
            }
            let outcomes = [Outcome::Success, Outcome::Failure, Outcome::Denied, Outcome::Error];
            b = b.outcome(outcomes[rng.below(4) as usize]).duration(Duration::from_millis(rng.below(1 << 40)));
            let bodies: [&[u8]; 4] = [b"{\"a\": [1, 2.50]}", b"plain\ttext", b"", b"[\"\\u0001\"]"];
            b = b.request_data(bodies[rng.below(4) as usize]).response_data(bodies[rng.below(4) as usize]);
            let event = b.build();
            let mut line = Vec::new();
            write(&event, &mut line);
            assert_eq!(String::from_utf8(line).unwrap(), serde_json::to_string(&event).unwrap(), "case {case}");
        }
    }

    #[test]
    fn numbers_are_decimal() {
        for n in [0, 7, 10, 1234567890, u64::MAX] {
            let mut out = Vec::new();
            number(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }
}
