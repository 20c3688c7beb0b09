//! Tools a client adds at run time with `add_tool`, so tests can watch a server's
//! `notifications/tools/list_changed` travel through a proxy and the next list change.
//!
//! The list belongs to one connection (one stdio process, or one Streamable HTTP session):
//! until someone calls `add_tool` on it, `tools/list` is exactly the fixed catalogue, so no
//! other test sees a different list.

use std::sync::{Mutex, PoisonError};

use rmcp::model::Tool;

/// Most tools one connection may add.
pub const MAX_DYNAMIC_TOOLS: usize = 64;
/// Description every added tool carries.
pub const DYNAMIC_DESCRIPTION: &str = "A tool added at run time by add_tool; returns its own name";

/// Why a tool could not be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddToolError {
    /// The name breaks the spec's tool-name rules (1–128 of `A-Za-z0-9_.-`).
    #[error("tool name must be 1 to 128 characters of A-Z, a-z, 0-9, '_', '.' or '-'")]
    BadName,
    /// A fixed or added tool already has this name.
    #[error("a tool named {0} already exists")]
    Exists(String),
    /// The connection already added [`MAX_DYNAMIC_TOOLS`] tools.
    #[error("at most {MAX_DYNAMIC_TOOLS} tools may be added")]
    Full,
}

/// The tools one connection added, in the order they were added.
#[derive(Debug, Default)]
pub struct DynamicTools {
    names: Mutex<Vec<String>>,
}

impl DynamicTools {
    /// Adds `name` unless it is malformed, taken (`fixed` names the catalogue's tools) or the
    /// list is full.
    pub fn add(&self, name: &str, fixed: &[Tool]) -> Result<(), AddToolError> {
        let valid =
            (1..=128).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !valid {
            return Err(AddToolError::BadName);
        }
        let mut names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        if fixed.iter().any(|t| t.name == name) || names.iter().any(|n| n == name) {
            return Err(AddToolError::Exists(name.to_owned()));
        }
        if names.len() >= MAX_DYNAMIC_TOOLS {
            return Err(AddToolError::Full);
        }
        names.push(name.to_owned());
        Ok(())
    }

    /// Whether `name` was added.
    pub fn contains(&self, name: &str) -> bool {
        self.names.lock().unwrap_or_else(PoisonError::into_inner).iter().any(|n| n == name)
    }

    /// The added tools, as `tools/list` shows them after the catalogue.
    pub fn tools(&self) -> Vec<Tool> {
        let names = self.names.lock().unwrap_or_else(PoisonError::into_inner).clone();
        names.into_iter().map(|name| Tool::new(name, DYNAMIC_DESCRIPTION, super::tools::no_arguments())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_valid_new_names_only() {
        let dynamic = DynamicTools::default();
        let fixed = super::super::tools::catalogue();
        assert!(dynamic.tools().is_empty());
        assert_eq!(dynamic.add("extra", &fixed), Ok(()));
        assert!(dynamic.contains("extra"));
        assert_eq!(dynamic.add("extra", &fixed), Err(AddToolError::Exists("extra".into())));
        assert_eq!(dynamic.add("echo", &fixed), Err(AddToolError::Exists("echo".into())));
        assert_eq!(dynamic.add("", &fixed), Err(AddToolError::BadName));
        assert_eq!(dynamic.add("a b", &fixed), Err(AddToolError::BadName));
        assert_eq!(dynamic.add(&"x".repeat(129), &fixed), Err(AddToolError::BadName));
        let names: Vec<String> = dynamic.tools().iter().map(|t| t.name.to_string()).collect();
        assert_eq!(names, vec!["extra"]);
    }

    #[test]
    fn the_list_is_bounded() {
        let dynamic = DynamicTools::default();
        for i in 0..MAX_DYNAMIC_TOOLS {
            dynamic.add(&format!("t{i}"), &[]).unwrap();
        }
        assert_eq!(dynamic.add("one_more", &[]), Err(AddToolError::Full));
        assert_eq!(dynamic.tools().len(), MAX_DYNAMIC_TOOLS);
    }
}
