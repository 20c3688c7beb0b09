//! The status of an MCPServerEntry from its checks: one condition per check, the summary
//! `Valid` condition, phase `Valid` or `Failed`, observedGeneration. Pure.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;

use crate::crd::mcpserverentry::{MCPServerEntryPhase, MCPServerEntryStatus};
use crate::reconcile::check::{self, Check};
use crate::reconcile::outcome;

/// The summary condition.
pub const VALID: &str = "Valid";

/// The status after `checks`, from the `before` status of the object at `generation`; `now`
/// only stamps a condition that flips.
pub fn compute(
    checks: &[Check],
    before: Option<&MCPServerEntryStatus>,
    generation: Option<i64>,
    now: Timestamp,
) -> MCPServerEntryStatus {
    let failed: Vec<&Check> = checks.iter().filter(|c| !c.ok).collect();
    let summary = match failed.first() {
        None => Check::pass(VALID, "Validated", "every check passed; the entry is usable"),
        Some(first) => {
            Check::fail(VALID, first.reason, failed.iter().map(|c| c.message.as_str()).collect::<Vec<_>>().join("; "))
        }
    };
    let mut all = checks.to_vec();
    all.push(summary);
    let conditions = before.and_then(|s| s.conditions.clone()).unwrap_or_default();
    MCPServerEntryStatus {
        conditions: Some(check::apply(conditions, &all, generation, now)),
        observed_generation: generation,
        phase: Some(if failed.is_empty() { MCPServerEntryPhase::Valid } else { MCPServerEntryPhase::Failed }),
    }
}

/// The `Valid` condition of a status.
pub fn valid_condition(status: Option<&MCPServerEntryStatus>) -> Option<&Condition> {
    outcome::find(status?.conditions.as_ref(), VALID)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn all_passed_is_valid_and_a_failure_names_itself_in_valid() {
        let ok = [Check::pass("A", "Fine", "a ok"), Check::pass("B", "Fine", "b ok")];
        let s = compute(&ok, None, Some(2), Timestamp::UNIX_EPOCH);
        assert_eq!(s.phase, Some(MCPServerEntryPhase::Valid));
        assert_eq!(s.observed_generation, Some(2));
        let v = valid_condition(Some(&s)).unwrap();
        assert_eq!((v.status.as_str(), v.reason.as_str()), ("True", "Validated"));
        assert_eq!(s.conditions.as_ref().unwrap().len(), 3);

        let bad = [Check::fail("A", "GroupNotFound", "no group g"), Check::fail("B", "BlockedEndpoint", "loopback")];
        let s2 = compute(&bad, Some(&s), Some(3), Timestamp::UNIX_EPOCH);
        assert_eq!(s2.phase, Some(MCPServerEntryPhase::Failed));
        let v = valid_condition(Some(&s2)).unwrap();
        assert_eq!((v.status.as_str(), v.reason.as_str()), ("False", "GroupNotFound"));
        assert_eq!(v.message, "no group g; loopback");
        assert_eq!(v.observed_generation, Some(3));
    }

    #[test]
    fn the_same_checks_give_the_same_status() {
        let ok = [Check::pass("A", "Fine", "a ok")];
        let s = compute(&ok, None, Some(1), Timestamp::UNIX_EPOCH);
        let later = Timestamp::from_second(99).unwrap();
        assert_eq!(compute(&ok, Some(&s), Some(1), later), s, "nothing to write on a resync");
    }
}
