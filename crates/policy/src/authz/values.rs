//! JSON values (claims, tool arguments) as Cedar values, within fixed bounds so a hostile token or
//! request cannot make one decision cost unbounded work. A value is converted whole or not at all:
//! never a truncated string or a partial set, which a policy could misread.

use cedar_policy::RestrictedExpression;
use serde_json::Value;

/// Most claims, and separately most arguments, turned into attributes.
pub const MAX_ATTRIBUTES: usize = 64;
/// Longest string (in bytes) handed to Cedar.
pub const MAX_STRING_BYTES: usize = 16 * 1024;
/// Most elements of one set (a JSON array) or fields of one record (a JSON object).
pub const MAX_ELEMENTS: usize = 256;
/// Deepest nesting of sets and records below an attribute.
pub const MAX_DEPTH: usize = 4;
/// Most values converted for one decision, counting every nested element.
pub const MAX_NODES: usize = 4096;
/// Most string bytes converted for one decision.
pub const MAX_TOTAL_BYTES: usize = 1024 * 1024;

/// Magnitude a Cedar decimal (a 64-bit integer of ten-thousandths) can hold, with margin.
const MAX_DECIMAL: f64 = 9.0e14;

/// What is left to spend on one decision.
#[derive(Debug, Clone)]
pub(crate) struct Budget {
    nodes: usize,
    bytes: usize,
}

impl Budget {
    pub(crate) fn new() -> Budget {
        Budget { nodes: MAX_NODES, bytes: MAX_TOTAL_BYTES }
    }

    fn spend(&mut self, bytes: usize) -> Result<(), &'static str> {
        if self.nodes == 0 {
            return Err("the decision's value budget is spent");
        }
        if bytes > self.bytes {
            return Err("the decision's string budget is spent");
        }
        self.nodes -= 1;
        self.bytes -= bytes;
        Ok(())
    }
}

/// A built value as the direct evaluator (`direct`) reads it: a boolean, an integer or a string,
/// as [`to_cedar`] builds them; anything else (a decimal, a set, a record) it does not evaluate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Simple {
    Bool(bool),
    Long(i64),
    Str(String),
    Other,
}

impl Simple {
    /// The value [`to_cedar`] builds from `value`, when it is one of the simple kinds.
    pub(crate) fn of(value: &Value) -> Simple {
        match value {
            Value::Bool(b) => Simple::Bool(*b),
            Value::Number(n) => n.as_i64().map_or(Simple::Other, Simple::Long),
            Value::String(s) => Simple::Str(s.clone()),
            _ => Simple::Other,
        }
    }
}

/// Converts a JSON value. `Err` says why it was left out: too large, too deep, or a kind Cedar
/// has no type for (null, a number beyond a decimal's range).
pub(crate) fn to_cedar(value: &Value, budget: &mut Budget) -> Result<RestrictedExpression, &'static str> {
    convert(value, 0, budget, true)?.ok_or("the value was not built")
}

/// Spends the budget and checks the bounds exactly as [`to_cedar`] would, without building the
/// value: for an attribute no policy reads, so that leaving it out changes nothing else (the
/// budget left for the next attribute, or whether a left-out attribute is reported).
pub(crate) fn account(value: &Value, budget: &mut Budget) -> Result<(), &'static str> {
    convert(value, 0, budget, false).map(|_| ())
}

/// `build` false: the same checks and spending, no value (`Ok(None)`).
fn convert(
    value: &Value,
    depth: usize,
    budget: &mut Budget,
    build: bool,
) -> Result<Option<RestrictedExpression>, &'static str> {
    match value {
        Value::Null => Err("null has no Cedar value"),
        Value::Bool(b) => {
            budget.spend(0)?;
            Ok(build.then(|| RestrictedExpression::new_bool(*b)))
        }
        Value::Number(n) => {
            budget.spend(0)?;
            if let Some(long) = n.as_i64() {
                return Ok(build.then(|| RestrictedExpression::new_long(long)));
            }
            // A fraction (or an integer past 64 bits) becomes a Cedar decimal, as in ToolHive:
            // four decimal places, within the range Cedar's decimal can hold.
            match n.as_f64() {
                Some(f) if f.is_finite() && f.abs() < MAX_DECIMAL => {
                    Ok(build.then(|| RestrictedExpression::new_decimal(format!("{f:.4}"))))
                }
                _ => Err("the number is beyond the range of a Cedar decimal"),
            }
        }
        Value::String(s) => {
            if s.len() > MAX_STRING_BYTES {
                return Err("the string is longer than the limit");
            }
            budget.spend(s.len())?;
            Ok(build.then(|| RestrictedExpression::new_string(s.clone())))
        }
        Value::Array(items) => {
            if depth >= MAX_DEPTH {
                return Err("nested too deeply");
            }
            if items.len() > MAX_ELEMENTS {
                return Err("the list has more elements than the limit");
            }
            budget.spend(0)?;
            let mut set = Vec::with_capacity(if build { items.len() } else { 0 });
            for item in items {
                set.extend(convert(item, depth + 1, budget, build)?);
            }
            Ok(build.then(|| RestrictedExpression::new_set(set)))
        }
        Value::Object(map) => {
            if depth >= MAX_DEPTH {
                return Err("nested too deeply");
            }
            if map.len() > MAX_ELEMENTS {
                return Err("the object has more fields than the limit");
            }
            budget.spend(0)?;
            let mut fields = Vec::with_capacity(if build { map.len() } else { 0 });
            for (k, v) in map {
                if k.len() > MAX_STRING_BYTES {
                    return Err("a field name is longer than the limit");
                }
                if let Some(v) = convert(v, depth + 1, budget, build)? {
                    fields.push((k.clone(), v));
                }
            }
            if !build {
                return Ok(None);
            }
            // Keys of a JSON object are unique, so this cannot fail; refuse rather than panic.
            RestrictedExpression::new_record(fields).map(Some).map_err(|_| "the object has duplicate fields")
        }
    }
}
