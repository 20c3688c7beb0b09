//! Which scopes a caller's token grants, for the required-scopes check (RFC 6750 §3.1
//! `insufficient_scope`): the `scope` claim (RFC 8693/9068 and RFC 7662: one space-delimited
//! string) or `scp` (Azure AD, Okta: an array, or a string).

use serde_json::Value;

use crate::identity::Identity;

/// The required scopes the identity's token lacks, in the configured order (empty: none).
pub(crate) fn missing<'a>(identity: &Identity, required: &'a [String]) -> Vec<&'a str> {
    if required.is_empty() {
        return Vec::new();
    }
    let granted = granted(identity);
    required.iter().map(String::as_str).filter(|r| !granted.contains(r)).collect()
}

/// Every scope the token grants, from `scope` and `scp`.
fn granted(identity: &Identity) -> Vec<&str> {
    let mut out = Vec::new();
    for claim in ["scope", "scp"] {
        match identity.claims.get(claim) {
            Some(Value::String(s)) => out.extend(s.split_whitespace()),
            Some(Value::Array(items)) => out.extend(items.iter().filter_map(Value::as_str)),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::identity::IdentityKind;
    use serde_json::json;

    fn with(claims: Value) -> Identity {
        Identity { subject: "alice".into(), claims: claims.as_object().unwrap().clone(), kind: IdentityKind::Jwt }
    }

    fn req(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn scope_string_scp_array_and_scp_string_are_read() {
        let need = req(&["mcp:tools", "openid"]);
        assert!(missing(&with(json!({"scope": "openid  mcp:tools profile"})), &need).is_empty());
        assert!(missing(&with(json!({"scp": ["mcp:tools", "openid"]})), &need).is_empty());
        assert!(missing(&with(json!({"scope": "openid", "scp": "mcp:tools"})), &need).is_empty());
    }

    #[test]
    fn what_is_missing_is_named_in_order() {
        let need = req(&["mcp:tools", "openid", "mcp:admin"]);
        assert_eq!(missing(&with(json!({"scope": "openid"})), &need), vec!["mcp:tools", "mcp:admin"]);
        assert_eq!(missing(&with(json!({})), &need).len(), 3);
        // A scope is a whole word: a prefix or a non-string does not count.
        assert_eq!(missing(&with(json!({"scope": "mcp:toolsx", "scp": [1, true]})), &req(&["mcp:tools"])).len(), 1);
        assert!(missing(&with(json!({})), &[]).is_empty());
    }
}
