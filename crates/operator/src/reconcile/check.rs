//! One validation's verdict and the `metav1.Condition` it becomes, for the kinds that only
//! validate (MCPServerEntry, MCPExternalAuthConfig) and so report a condition per check.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use super::outcome::set_condition;

/// The verdict of one check: the condition type it reports under, passed or not, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// Condition type (`GroupRefValidated`, ...).
    pub type_: &'static str,
    /// True when the check passed.
    pub ok: bool,
    /// CamelCase reason.
    pub reason: &'static str,
    /// What was found, naming the object or field when something is wrong.
    pub message: String,
}

impl Check {
    /// A passed check.
    pub fn pass(type_: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Check { type_, ok: true, reason, message: message.into() }
    }

    /// A failed check.
    pub fn fail(type_: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Check { type_, ok: false, reason, message: message.into() }
    }

    /// The condition at `generation`; `now` only matters when its status flips (see
    /// [`apply`]).
    pub fn condition(&self, generation: Option<i64>, now: Timestamp) -> Condition {
        Condition {
            type_: self.type_.to_string(),
            status: if self.ok { "True" } else { "False" }.to_string(),
            reason: self.reason.to_string(),
            message: self.message.clone(),
            observed_generation: generation,
            last_transition_time: Time(now),
        }
    }
}

/// `conditions` with each of `checks` set in place, keeping a condition's transition time when
/// its status did not flip, so an unchanged verdict writes nothing.
pub fn apply(conditions: Vec<Condition>, checks: &[Check], generation: Option<i64>, now: Timestamp) -> Vec<Condition> {
    checks.iter().fold(conditions, |acc, c| set_condition(acc, c.condition(generation, now)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn an_unchanged_verdict_keeps_its_transition_time_and_a_flip_moves_it() {
        let t0 = Timestamp::from_second(1_000).unwrap();
        let t1 = Timestamp::from_second(2_000).unwrap();
        let first = apply(vec![], &[Check::pass("A", "Ok", "fine")], Some(1), t0);
        let same = apply(first.clone(), &[Check::pass("A", "Ok", "fine")], Some(1), t1);
        assert_eq!(first, same);
        let flipped = apply(same, &[Check::fail("A", "Broken", "gone")], Some(1), t1);
        assert_eq!(flipped.len(), 1);
        assert_eq!((flipped[0].status.as_str(), flipped[0].last_transition_time.0), ("False", t1));
    }
}
