//! The `cedar.policies` strings as one Cedar policy set, each with ToolHive's id `policy<index>`,
//! and a parse error turned into "policy N, line L, column C" inside that policy's text.

use cedar_policy::{ParseErrors, Policy, PolicyId, PolicySet};
use miette::Diagnostic as _;

use super::error::AuthzConfigError;

/// The id of the policy at `index` (ToolHive's naming, shown in decisions and audit).
pub fn policy_id(index: usize) -> String {
    format!("policy{index}")
}

/// Parses every policy; the first one that fails is reported.
pub(crate) fn parse(texts: &[String], origin: &str) -> Result<PolicySet, AuthzConfigError> {
    let mut set = PolicySet::new();
    for (index, text) in texts.iter().enumerate() {
        let policy = Policy::parse(Some(PolicyId::new(policy_id(index))), text)
            .map_err(|e| parse_error(origin, index, text, &e))?;
        set.add(policy).map_err(|e| AuthzConfigError::PolicyNoPosition {
            origin: origin.to_owned(),
            index,
            message: e.to_string(),
        })?;
    }
    Ok(set)
}

fn parse_error(origin: &str, index: usize, text: &str, err: &ParseErrors) -> AuthzConfigError {
    let first = err.iter().next();
    let mut message = first.map_or_else(|| err.to_string(), ToString::to_string);
    if let Some(help) = first.and_then(|e| e.help()) {
        message = format!("{message} ({help})");
    }
    let offset = first.and_then(|e| e.labels()).and_then(|mut labels| labels.next()).map(|l| l.offset());
    match offset {
        Some(offset) => {
            let (line, column) = line_column(text, offset);
            AuthzConfigError::Policy { origin: origin.to_owned(), index, line, column, message }
        }
        None => AuthzConfigError::PolicyNoPosition { origin: origin.to_owned(), index, message },
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::line_column;

    #[test]
    fn positions_count_from_one() {
        let text = "permit(\n  principal,\n  actoin\n);";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, text.find("actoin").unwrap_or(0)), (3, 3));
        assert_eq!(line_column("é x", 3), (1, 3));
        assert_eq!(line_column("ab", 99), (1, 3));
    }
}
