//! "Accept both, write one": folds every accepted second spelling of a field into its
//! canonical field and fills in the defaults the operator applies, giving the in-memory view
//! the reconcilers work from. The user's object is never rewritten. When both spellings are
//! set and differ, the canonical one wins and a [`Conflict`] is returned so the operator can
//! record a `Warning` event naming both fields.

mod mcpserver;
mod plain;
mod registration;
mod remote;
mod vmcp;

use std::fmt::{self, Display};

use crate::crd::common::GroupRef;

/// Default of `proxyPort` and of `mcpPort` (names.md §2).
pub const DEFAULT_PORT: i32 = 8080;

/// Two spellings of one field carried different values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// Path of the canonical field, which wins (`spec.proxyPort`).
    pub canonical: &'static str,
    /// Path of the other spelling, which is ignored (`spec.port`).
    pub alias: &'static str,
    /// The canonical field's value, as text.
    pub canonical_value: String,
    /// The ignored value, as text.
    pub alias_value: String,
}

impl Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}) and {} ({}) differ; using {}",
            self.canonical, self.canonical_value, self.alias, self.alias_value, self.canonical
        )
    }
}

/// A spec with every alias folded into its canonical field and the operator's defaults
/// applied, plus the conflicts found on the way.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalized<S> {
    /// The canonical view. Alias fields are `None`.
    pub spec: S,
    /// Fields given twice with different values, in field order.
    pub conflicts: Vec<Conflict>,
}

/// Implemented by every spec type: compute the canonical in-memory view.
pub trait Normalize: Sized {
    /// The canonical view of `self`; `self` is left as the user wrote it.
    fn normalize(&self) -> Normalized<Self>;
}

/// Chooses between a canonical field and its alias: the canonical value when set, else the
/// alias. Records a conflict when both are set and differ.
fn pick<T: PartialEq + Display>(
    canonical_path: &'static str,
    canonical: Option<T>,
    alias_path: &'static str,
    alias: Option<T>,
    conflicts: &mut Vec<Conflict>,
) -> Option<T> {
    match (canonical, alias) {
        (Some(c), Some(a)) => {
            if c != a {
                conflicts.push(Conflict {
                    canonical: canonical_path,
                    alias: alias_path,
                    canonical_value: c.to_string(),
                    alias_value: a.to_string(),
                });
            }
            Some(c)
        }
        (Some(c), None) => Some(c),
        (None, a) => a,
    }
}

/// A group reference in its canonical (string) form when it names a group; an invalid value
/// is left alone for validation to report.
fn canonical_group_ref(group_ref: &GroupRef) -> GroupRef {
    match group_ref.name() {
        Ok(name) => GroupRef::from_name(name),
        Err(_) => group_ref.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pick_prefers_canonical_and_reports_a_difference() {
        let mut conflicts = Vec::new();
        assert_eq!(pick("a", Some(1), "b", Some(2), &mut conflicts), Some(1));
        assert_eq!(conflicts.len(), 1);
        assert_eq!(conflicts[0].to_string(), "a (1) and b (2) differ; using a");
        assert_eq!(pick("a", Some(3), "b", Some(3), &mut conflicts), Some(3));
        assert_eq!(pick("a", None, "b", Some(4), &mut conflicts), Some(4));
        assert_eq!(pick::<i32>("a", None, "b", None, &mut conflicts), None);
        assert_eq!(conflicts.len(), 1, "equal values or one side missing is no conflict");
    }
}
