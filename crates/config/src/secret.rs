//! Secret references (`apiary run --secret NAME,target=ENV`): a RunConfig names a secret and the
//! environment variable it becomes, never the value, which is read from the secrets provider each
//! time the server starts.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Longest secret name accepted.
pub const MAX_SECRET_NAME_LEN: usize = 128;

/// One secret given to a local server in its environment.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretRef {
    /// The secret's name in the secrets provider (`apiary secret set NAME`).
    pub name: String,
    /// The environment variable the server sees it in. Names: `[A-Za-z_][A-Za-z0-9_]*`.
    pub target: String,
}

/// Why a `--secret` value could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--secret expects NAME,target=ENV, got {0:?}")]
pub struct SecretRefParseError(pub String);

impl FromStr for SecretRef {
    type Err = SecretRefParseError;

    /// ToolHive's form: `NAME,target=ENV`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || SecretRefParseError(text.to_owned());
        let (name, rest) = text.split_once(',').ok_or_else(bad)?;
        let target = rest.trim().strip_prefix("target=").ok_or_else(bad)?;
        let (name, target) = (name.trim(), target.trim());
        if name.is_empty() || target.is_empty() || target.contains(',') {
            return Err(bad());
        }
        Ok(SecretRef { name: name.to_owned(), target: target.to_owned() })
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},target={}", self.name, self.target)
    }
}

/// True for a name a secret may have: 1–128 characters from `A-Z a-z 0-9 _ . -`, not starting
/// with `.` or `-` (names become map keys and, for the environment provider, parts of variable
/// names, so anything stranger is refused up front).
pub fn is_secret_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= MAX_SECRET_NAME_LEN
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_toolhive_flag_form() {
        let r: SecretRef = "github-token,target=GITHUB_TOKEN".parse().unwrap();
        assert_eq!(r, SecretRef { name: "github-token".into(), target: "GITHUB_TOKEN".into() });
        assert_eq!(r.to_string(), "github-token,target=GITHUB_TOKEN");
        for bad in ["x", "x,GITHUB", ",target=A", "x,target=", "x,target=A,B", "x,tgt=A"] {
            assert!(bad.parse::<SecretRef>().is_err(), "{bad}");
        }
    }

    #[test]
    fn secret_name_rule() {
        for ok in ["a", "GITHUB_TOKEN", "github-token", "a.b", "_x", "9"] {
            assert!(is_secret_name(ok), "{ok}");
        }
        for bad in ["", "-a", ".a", "a b", "a/b", "a,b", "ä", &"a".repeat(129)] {
            assert!(!is_secret_name(bad), "{bad}");
        }
    }
}
