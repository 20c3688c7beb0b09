//! The caller as the later layers see it: a subject and the claims it was granted. Never the
//! token itself, so an identity can be logged, audited and handed to Cedar without leaking it.

use serde_json::{Map, Value};

/// How an identity was established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityKind {
    /// A JWT checked against the issuer's keys.
    Jwt,
    /// An opaque token the issuer's introspection endpoint called active.
    Introspected,
    /// No authentication is configured: every caller is the same anonymous principal.
    Anonymous,
    /// Local mode: every caller is taken to be the OS user running the proxy (unchecked).
    Local,
}

/// An authenticated (or anonymous) caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// `sub`, or `anonymous`.
    pub subject: String,
    /// Every claim of the token (for Cedar's `claim_*` attributes and the audit subject).
    pub claims: Map<String, Value>,
    pub kind: IdentityKind,
}

impl Identity {
    /// The principal of a proxy that authenticates nobody.
    pub fn anonymous() -> Identity {
        Identity { subject: "anonymous".to_owned(), claims: Map::new(), kind: IdentityKind::Anonymous }
    }

    /// The principal of local mode: `username`, with the claims ToolHive's local-user mode
    /// gives (`sub`, `name`, `email`), so Cedar policies read it as they read a token's caller.
    pub fn local(username: &str) -> Identity {
        let mut claims = Map::new();
        claims.insert("sub".to_owned(), Value::String(username.to_owned()));
        claims.insert("name".to_owned(), Value::String(format!("Local User: {username}")));
        claims.insert("email".to_owned(), Value::String(format!("{username}@localhost")));
        claims.insert("preferred_username".to_owned(), Value::String(username.to_owned()));
        Identity { subject: username.to_owned(), claims, kind: IdentityKind::Local }
    }

    /// The OS user running this process, as local mode names it: `$USER`, else `$LOGNAME`,
    /// else `local` (ToolHive's fallback).
    pub fn os_username() -> String {
        ["USER", "LOGNAME"]
            .iter()
            .filter_map(|v| std::env::var(v).ok())
            .map(|u| u.trim().to_owned())
            .find(|u| !u.is_empty())
            .unwrap_or_else(|| "local".to_owned())
    }

    /// A claim's value as a string, when it is one.
    pub fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// A human name for logs and audit: `preferred_username`, `name`, `email`, else the subject.
    pub fn display_name(&self) -> &str {
        ["preferred_username", "name", "email"].iter().find_map(|c| self.claim_str(c)).unwrap_or(&self.subject)
    }
}
