//! What one Cedar evaluation of a set of policies found, in a form that two evaluations (the
//! per-request policies and the per-caller ones, see `analysis::Split`) can be joined into the
//! one decision a single evaluation of both sets would give: Cedar's rule is "a satisfied forbid
//! denies, else a satisfied permit allows", which holds over a union when it holds over each part.

use cedar_policy::{AuthorizationError, Response};

use super::Decision;

/// The satisfied policies and the errors of one evaluation.
#[derive(Debug, Clone, Default)]
pub(crate) struct Outcome {
    /// Satisfied forbids (Cedar reports them when it denies).
    forbids: Vec<String>,
    /// Satisfied permits, when no forbid was (Cedar reports them when it allows; when a forbid
    /// is satisfied they cannot change the decision and are not needed).
    permits: Vec<String>,
    /// (policy id, message), in the set's (the document's) order.
    errors: Vec<(String, String)>,
}

impl Outcome {
    pub(crate) fn of(response: &Response) -> Outcome {
        let errors = response
            .diagnostics()
            .errors()
            .map(|e| match e {
                AuthorizationError::PolicyEvaluationError(p) => (p.policy_id().to_string(), e.to_string()),
            })
            .collect();
        let reasons: Vec<String> = response.diagnostics().reason().map(ToString::to_string).collect();
        let (forbids, permits) = match response.decision() {
            cedar_policy::Decision::Allow => (Vec::new(), reasons),
            cedar_policy::Decision::Deny => (reasons, Vec::new()),
        };
        Outcome { forbids, permits, errors }
    }

    /// What Cedar's response would hold when no policy erred and these were satisfied (it
    /// reports the satisfied forbids when there is one, else the satisfied permits).
    pub(crate) fn satisfied(forbids: Vec<String>, permits: Vec<String>) -> Outcome {
        let permits = if forbids.is_empty() { permits } else { Vec::new() };
        Outcome { forbids, permits, errors: Vec::new() }
    }

    /// Adds another evaluation's findings; errors are kept in document order (ids `policy<N>`).
    pub(crate) fn join(&mut self, other: &Outcome) {
        self.forbids.extend(other.forbids.iter().cloned());
        self.permits.extend(other.permits.iter().cloned());
        if !other.errors.is_empty() {
            self.errors.extend(other.errors.iter().cloned());
            self.errors.sort_by_key(|(id, _)| document_index(id));
        }
    }

    /// The decision: any error denies (Cedar would skip the erroring policy; here it decides),
    /// then a satisfied forbid, then a satisfied permit allows; else the default deny.
    pub(crate) fn decision(self) -> Decision {
        let (allowed, mut decided) = if !self.errors.is_empty() {
            (false, self.errors.iter().map(|(id, _)| id.clone()).collect())
        } else if !self.forbids.is_empty() {
            (false, self.forbids)
        } else {
            (!self.permits.is_empty(), self.permits)
        };
        decided.sort();
        decided.dedup();
        Decision { allowed, policies: decided, errors: self.errors.into_iter().map(|(_, e)| e).collect() }
    }
}

/// The index in `policy<N>`; anything else sorts last, in its order.
fn document_index(id: &str) -> usize {
    id.strip_prefix("policy").and_then(|n| n.parse().ok()).unwrap_or(usize::MAX)
}
