//! The status of an MCPGroup from the objects in its namespace: the sorted names of the
//! MCPServers, MCPRemoteProxies and MCPServerEntries whose `groupRef` names it, their counts,
//! phase `Ready` and the `MCPServersChecked` condition (or phase `Failed` when listing failed).
//! Pure.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;

use crate::crd::common::GroupRef;
use crate::crd::mcpgroup::{MCPGroupPhase, MCPGroupStatus};
use crate::reconcile::check::{self, Check};
use crate::reconcile::outcome;

/// The condition saying whether the members could be listed (printer column Checked).
pub const MCP_SERVERS_CHECKED: &str = "MCPServersChecked";

/// The members of one group, by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Members {
    /// MCPServer names.
    pub servers: Vec<String>,
    /// MCPRemoteProxy names.
    pub remote_proxies: Vec<String>,
    /// MCPServerEntry names.
    pub entries: Vec<String>,
}

/// The sorted names of the `(name, groupRef)` pairs whose `groupRef` names `group`. A
/// `groupRef` that names no group (wrong type, empty) belongs to no group.
pub fn in_group<'a>(group: &str, objects: impl IntoIterator<Item = (String, Option<&'a GroupRef>)>) -> Vec<String> {
    let mut names: Vec<String> =
        objects.into_iter().filter(|(_, g)| g.is_some_and(|g| g.name() == Ok(group))).map(|(n, _)| n).collect();
    names.sort();
    names
}

/// The status from the listed `members` (`Err`: why listing failed), from the `before` status
/// of the group at `generation`; `now` only stamps a flip.
pub fn compute(
    members: Result<Members, String>,
    before: Option<&MCPGroupStatus>,
    generation: Option<i64>,
    now: Timestamp,
) -> MCPGroupStatus {
    let conditions = before.and_then(|s| s.conditions.clone()).unwrap_or_default();
    let count = |v: &Vec<String>| Some(i32::try_from(v.len()).unwrap_or(i32::MAX));
    match members {
        Ok(m) => {
            let total = m.servers.len() + m.remote_proxies.len() + m.entries.len();
            let c = Check::pass(MCP_SERVERS_CHECKED, "ListSucceeded", format!("{total} member(s) found"));
            MCPGroupStatus {
                conditions: Some(check::apply(conditions, &[c], generation, now)),
                observed_generation: generation,
                phase: Some(MCPGroupPhase::Ready),
                server_count: count(&m.servers),
                servers: Some(m.servers),
                remote_proxy_count: count(&m.remote_proxies),
                remote_proxies: Some(m.remote_proxies),
                entry_count: count(&m.entries),
                entries: Some(m.entries),
            }
        }
        Err(why) => {
            let c = Check::fail(MCP_SERVERS_CHECKED, "ListFailed", format!("listing the members failed: {why}"));
            // The last known members stay; only the phase and condition say they may be stale.
            let mut next = before.cloned().unwrap_or_default();
            next.conditions = Some(check::apply(conditions, &[c], generation, now));
            next.observed_generation = generation;
            next.phase = Some(MCPGroupPhase::Failed);
            next
        }
    }
}

/// The `MCPServersChecked` condition of a status.
pub fn checked_condition(status: Option<&MCPGroupStatus>) -> Option<&Condition> {
    outcome::find(status?.conditions.as_ref(), MCP_SERVERS_CHECKED)
}

/// True when `before` lists `name` among the members of its kind (`pick` chooses the list):
/// the group must hear when that member leaves it.
pub fn lists(before: Option<&MCPGroupStatus>, pick: fn(&MCPGroupStatus) -> Option<&Vec<String>>, name: &str) -> bool {
    before.and_then(pick).is_some_and(|v| v.iter().any(|n| n == name))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use serde_json::json;

    use super::*;

    fn g(v: serde_json::Value) -> GroupRef {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn members_are_those_naming_the_group_in_either_spelling_sorted() {
        let (s, o, other, bad) = (g(json!("eng")), g(json!({"name": "eng"})), g(json!("ops")), g(json!(42)));
        let names = in_group(
            "eng",
            [
                ("zeta".to_string(), Some(&s)),
                ("alpha".to_string(), Some(&o)),
                ("ops-one".to_string(), Some(&other)),
                ("broken".to_string(), Some(&bad)),
                ("loose".to_string(), None),
            ],
        );
        assert_eq!(names, ["alpha", "zeta"]);
    }

    #[test]
    fn a_listed_group_is_ready_with_counts() {
        let m = Members { servers: vec!["a".into(), "b".into()], remote_proxies: vec![], entries: vec!["e".into()] };
        let s = compute(Ok(m), None, Some(1), Timestamp::UNIX_EPOCH);
        assert_eq!(s.phase, Some(MCPGroupPhase::Ready));
        assert_eq!((s.server_count, s.remote_proxy_count, s.entry_count), (Some(2), Some(0), Some(1)));
        assert_eq!(s.remote_proxies, Some(vec![]));
        let c = checked_condition(Some(&s)).unwrap();
        assert_eq!((c.status.as_str(), c.message.as_str()), ("True", "3 member(s) found"));
        assert!(lists(Some(&s), |s| s.entries.as_ref(), "e"));
        assert!(!lists(Some(&s), |s| s.servers.as_ref(), "e"));
        assert_eq!(
            compute(Ok(Members { entries: vec!["e".into()], ..m_ab() }), Some(&s), Some(1), Timestamp::UNIX_EPOCH),
            s
        );
    }

    fn m_ab() -> Members {
        Members { servers: vec!["a".into(), "b".into()], ..Members::default() }
    }

    #[test]
    fn a_failed_listing_keeps_the_members_and_says_failed() {
        let s = compute(Ok(m_ab()), None, Some(1), Timestamp::UNIX_EPOCH);
        let f = compute(Err("forbidden".into()), Some(&s), Some(1), Timestamp::UNIX_EPOCH);
        assert_eq!(f.phase, Some(MCPGroupPhase::Failed));
        assert_eq!(f.servers, s.servers);
        let c = checked_condition(Some(&f)).unwrap();
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "ListFailed"));
        assert!(c.message.contains("forbidden"));
    }
}
