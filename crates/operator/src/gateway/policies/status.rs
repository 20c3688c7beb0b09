//! An AuthPolicy's `status`: the `Accepted` and `Enforced` conditions and `observedGeneration`,
//! built from what the policy has now (a condition that did not flip keeps its
//! `lastTransitionTime`) and written with a merge patch on the status subresource only when
//! something other than a time changed, so the write's own watch event does not write again.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use super::decide::Cond;
use crate::reconcile::outcome::set_condition;

/// The conditions in `status` (none when absent or unreadable).
pub fn current(status: Option<&Value>) -> Vec<Condition> {
    status.and_then(|s| s.get("conditions")).and_then(|c| serde_json::from_value(c.clone()).ok()).unwrap_or_default()
}

/// The merge patch that brings `status` to `wanted` at `generation`, or `None` when it already
/// says that (times aside).
pub fn patch(
    status: Option<&Value>,
    wanted: &[(&'static str, Cond)],
    generation: Option<i64>,
    now: Timestamp,
) -> Option<Value> {
    let before = current(status);
    let mut after = before.clone();
    for (type_, (state, reason, message)) in wanted {
        let c = Condition {
            type_: (*type_).to_owned(),
            status: (*state).to_owned(),
            reason: (*reason).to_owned(),
            message: message.clone(),
            observed_generation: generation,
            last_transition_time: Time(now),
        };
        after = set_condition(after, c);
    }
    let observed = status.and_then(|s| s.get("observedGeneration")).and_then(Value::as_i64);
    let same = |a: &Condition, b: &Condition| {
        (&a.type_, &a.status, &a.reason, &a.message, a.observed_generation)
            == (&b.type_, &b.status, &b.reason, &b.message, b.observed_generation)
    };
    let unchanged =
        observed == generation && before.len() == after.len() && before.iter().zip(&after).all(|(a, b)| same(a, b));
    (!unchanged).then(|| json!({"status": {"observedGeneration": generation, "conditions": after}}))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn wanted(accepted: &'static str) -> Vec<(&'static str, Cond)> {
        vec![
            ("Accepted", (accepted, "Accepted", "AuthPolicy has been accepted".to_owned())),
            ("Enforced", ("True", "Enforced", "AuthPolicy has been successfully enforced".to_owned())),
        ]
    }

    #[test]
    fn a_new_status_is_written_then_not_again() {
        let first = patch(None, &wanted("True"), Some(2), t(10)).unwrap();
        assert_eq!(first["status"]["observedGeneration"], 2);
        let conditions = first["status"]["conditions"].as_array().unwrap();
        assert_eq!(conditions.len(), 2);
        assert_eq!(conditions[0]["type"], "Accepted");
        assert_eq!(conditions[0]["observedGeneration"], 2);
        // What the first write stored, read back later: nothing to write.
        assert_eq!(patch(Some(&first["status"]), &wanted("True"), Some(2), t(99)), None);
    }

    #[test]
    fn a_flip_or_a_new_generation_is_written_and_unflipped_times_are_kept() {
        let first = patch(None, &wanted("True"), Some(2), t(10)).unwrap();
        let flipped = patch(Some(&first["status"]), &wanted("False"), Some(2), t(20)).unwrap();
        let c = &flipped["status"]["conditions"];
        assert_eq!(c[0]["status"], "False");
        assert_ne!(c[0]["lastTransitionTime"], first["status"]["conditions"][0]["lastTransitionTime"]);
        assert_eq!(c[1]["lastTransitionTime"], first["status"]["conditions"][1]["lastTransitionTime"]);
        let next = patch(Some(&first["status"]), &wanted("True"), Some(3), t(30)).unwrap();
        assert_eq!(next["status"]["observedGeneration"], 3);
    }

    #[test]
    fn other_condition_types_are_kept() {
        let status = json!({"conditions": [{"type": "Foreign", "status": "True", "reason": "X", "message": "",
            "lastTransitionTime": "2026-01-01T00:00:00Z"}]});
        let p = patch(Some(&status), &wanted("True"), Some(1), t(1)).unwrap();
        let types: Vec<&str> =
            p["status"]["conditions"].as_array().unwrap().iter().map(|c| c["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["Foreign", "Accepted", "Enforced"]);
    }
}
