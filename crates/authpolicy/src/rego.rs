//! OPA Rego rules as Authorino runs them: the inline policy is wrapped in its own package under
//! `default allow = false`, evaluated (Rego v0 syntax, as Authorino's default) against the
//! authorization JSON as `input`; `allValues` exposes every rule's value, not only `allow`.
//! `io.jwt.decode` is provided here, as regorus has no JWT builtins.
use std::cell::RefCell;
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;

/// Longest Rego source accepted, in bytes.
pub const MAX_REGO_SOURCE: usize = 64 * 1024;
/// Wall-clock bound of one rule's evaluation.
const EVAL_LIMIT: Duration = Duration::from_millis(200);
/// Compiled engines kept per thread (regorus engines are not `Send`); the cache is cleared when full.
const ENGINES_PER_THREAD: usize = 256;

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static ENGINES: RefCell<HashMap<u64, regorus::Engine>> = RefCell::new(HashMap::new());
}

/// One `opa` rule, compiled once at load to reject errors early; each thread compiles its own
/// engine from the kept source on first use.
#[derive(Debug)]
pub struct RegoRule {
    id: u64,
    source: String,
    all_values: bool,
}

const PACKAGE: &str = "authorino.authz.rule";

impl RegoRule {
    pub fn compile(rego: &str, all_values: bool) -> Result<Self, String> {
        if rego.len() > MAX_REGO_SOURCE {
            return Err(format!("Rego policy longer than {MAX_REGO_SOURCE} bytes"));
        }
        // Authorino drops the user's `package` line and puts the policy in its own package.
        let body: String =
            rego.lines().filter(|line| !line.trim_start().starts_with("package ")).collect::<Vec<_>>().join("\n");
        let source = format!("package {PACKAGE}\ndefault allow = false\n{body}\n");
        build_engine(&source)?;
        Ok(RegoRule { id: NEXT_ID.fetch_add(1, Ordering::Relaxed), source, all_values })
    }

    /// Evaluates against `input`: `Ok(Some(result))` when `allow` is true, `Ok(None)` when it is not.
    pub fn eval(&self, input: &Value) -> Result<Option<Value>, String> {
        let input_json = serde_json::to_string(input).map_err(|e| e.to_string())?;
        let input = regorus::Value::from_json_str(&input_json).map_err(|e| e.to_string())?;
        ENGINES.with(|cell| {
            let mut engines = cell.borrow_mut();
            if !engines.contains_key(&self.id) {
                if engines.len() >= ENGINES_PER_THREAD {
                    engines.clear();
                }
                engines.insert(self.id, build_engine(&self.source)?);
            }
            let engine = engines.get_mut(&self.id).ok_or_else(|| "rego engine cache".to_owned())?;
            engine.set_input(input);
            let allow = engine.eval_rule(format!("data.{PACKAGE}.allow")).map_err(|e| e.to_string())?;
            if allow != regorus::Value::from(true) {
                return Ok(None);
            }
            if !self.all_values {
                return Ok(Some(serde_json::json!({ "allow": true })));
            }
            // Every complete rule's value. Unlike Authorino (null), an undefined rule is absent.
            let results = engine.eval_query(format!("data.{PACKAGE}"), false).map_err(|e| e.to_string())?;
            let value = results
                .result
                .first()
                .and_then(|r| r.expressions.first())
                .map(|e| e.value.clone())
                .ok_or_else(|| "rego package gave no value".to_owned())?;
            to_json(&value).map(Some)
        })
    }
}

fn to_json(value: &regorus::Value) -> Result<Value, String> {
    let json = value.to_json_str().map_err(|e| e.to_string())?;
    serde_json::from_str(&json).map_err(|e| e.to_string())
}

fn build_engine(source: &str) -> Result<regorus::Engine, String> {
    let mut engine = regorus::Engine::new();
    engine.set_rego_v0(true);
    engine.set_execution_timer_config(regorus::utils::limits::ExecutionTimerConfig {
        limit: EVAL_LIMIT,
        check_interval: NonZeroU32::MIN,
    });
    engine
        .add_extension("io.jwt.decode".to_owned(), 1, Box::new(|args: Vec<regorus::Value>| Ok(jwt_decode(&args))))
        .map_err(|e| e.to_string())?;
    engine.add_policy("policy.rego".to_owned(), source.to_owned()).map_err(|e| e.to_string())?;
    // Compile now, with an empty input, so errors surface at load rather than per request.
    engine.set_input(regorus::Value::new_object());
    engine.eval_rule(format!("data.{PACKAGE}.allow")).map_err(|e| e.to_string())?;
    Ok(engine)
}

/// `io.jwt.decode(token)`: `[header, payload, signature-hex]`, undefined for a malformed token
/// (OPA's non-strict builtin error). The signature is not verified, as in OPA.
fn jwt_decode(args: &[regorus::Value]) -> regorus::Value {
    let Some(Ok(token)) = args.first().map(|v| v.as_string()) else {
        return regorus::Value::Undefined;
    };
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return regorus::Value::Undefined;
    };
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let decode_json = |part: &str| -> Option<regorus::Value> {
        let bytes = b64.decode(part.trim_end_matches('=')).ok()?;
        let text = std::str::from_utf8(&bytes).ok()?;
        let value = regorus::Value::from_json_str(text).ok()?;
        value.as_object().is_ok().then_some(value)
    };
    let (Some(header), Some(payload), Ok(sig)) = (decode_json(h), decode_json(p), b64.decode(s.trim_end_matches('=')))
    else {
        return regorus::Value::Undefined;
    };
    let sig_hex: String = sig.iter().map(|b| format!("{b:02x}")).collect();
    regorus::Value::from(vec![header, payload, regorus::Value::from(sig_hex)])
}
