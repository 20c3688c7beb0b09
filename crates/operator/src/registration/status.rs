//! The status of an MCPServerRegistration from what its reconcile found: the `Ready`
//! condition (True with the tool count, else False with the reason), `discoveredTools`,
//! `observedGeneration`. Pure.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;

use super::route::Problem;
use crate::crd::registration::MCPServerRegistrationStatus;
use crate::reconcile::check::{self, Check};
use crate::reconcile::outcome;

/// The condition the registration reports.
pub const READY: &str = "Ready";

/// What one reconcile found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The server answered `tools/list`.
    Ready {
        /// Its MCP endpoint.
        url: String,
        /// How many tools it lists.
        tools: usize,
        /// The prefix its tools are shown with (`prefix` over `toolPrefix`).
        prefix: Option<String>,
    },
    /// It cannot be used, and why.
    NotReady(Problem),
}

/// The status after `verdict`, from the `before` status of the object at `generation`; `now`
/// only stamps a condition that flips.
pub fn compute(
    verdict: &Verdict,
    before: Option<&MCPServerRegistrationStatus>,
    generation: Option<i64>,
    now: Timestamp,
) -> MCPServerRegistrationStatus {
    let (check, tools) = match verdict {
        Verdict::Ready { url, tools, prefix } => {
            let shown = match prefix.as_deref().filter(|p| !p.is_empty()) {
                Some(p) => format!(", shown as {p}<tool>"),
                None => String::new(),
            };
            let check = Check::pass(READY, "ToolsDiscovered", format!("{tools} tool(s) discovered at {url}{shown}"));
            (check, Some(i32::try_from(*tools).unwrap_or(i32::MAX)))
        }
        Verdict::NotReady(p) => (Check::fail(READY, p.reason, p.message.clone()), None),
    };
    let conditions = before.and_then(|s| s.conditions.clone()).unwrap_or_default();
    MCPServerRegistrationStatus {
        conditions: Some(check::apply(conditions, &[check], generation, now)),
        observed_generation: generation,
        discovered_tools: tools,
    }
}

/// The `Ready` condition of a status.
pub fn ready_condition(status: Option<&MCPServerRegistrationStatus>) -> Option<&Condition> {
    outcome::find(status?.conditions.as_ref(), READY)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn ready(tools: usize) -> Verdict {
        Verdict::Ready { url: "http://h:9999/mcp".into(), tools, prefix: Some("kube_".into()) }
    }

    #[test]
    fn ready_counts_the_tools_and_a_problem_names_its_reason() {
        let s = compute(&ready(7), None, Some(2), Timestamp::UNIX_EPOCH);
        assert_eq!((s.discovered_tools, s.observed_generation), (Some(7), Some(2)));
        let c = ready_condition(Some(&s)).unwrap();
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "ToolsDiscovered"));
        assert_eq!(c.message, "7 tool(s) discovered at http://h:9999/mcp, shown as kube_<tool>");

        let gone = Verdict::NotReady(Problem { reason: "RouteNotFound", message: "no HTTPRoute ns/r".into() });
        let later = Timestamp::from_second(5).unwrap();
        let s2 = compute(&gone, Some(&s), Some(2), later);
        assert_eq!(s2.discovered_tools, None);
        let c = ready_condition(Some(&s2)).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str(), c.message.as_str()),
            ("False", "RouteNotFound", "no HTTPRoute ns/r")
        );
        assert_eq!(c.last_transition_time.0, later);
        assert_eq!(s2.conditions.as_ref().unwrap().len(), 1);
    }

    #[test]
    fn the_same_verdict_gives_the_same_status() {
        let s = compute(&ready(3), None, Some(1), Timestamp::UNIX_EPOCH);
        let later = Timestamp::from_second(99).unwrap();
        assert_eq!(compute(&ready(3), Some(&s), Some(1), later), s, "nothing to write on a resync");
        assert_ne!(compute(&ready(4), Some(&s), Some(1), later), s, "a tool change is written");
    }
}
