//! CEL as Authorino compiles it: the standard library plus cel-go's strings extension (the seed's
//! `split`), the well-known attributes as variables, JSON in and out. Sources are size-capped and
//! the parser's nesting depth is bounded, so a policy cannot make evaluation unbounded.
use std::sync::{Arc, LazyLock};

use serde_json::Value;

/// Longest CEL source accepted, in bytes.
pub const MAX_CEL_SOURCE: usize = 16 * 1024;

static ENV: LazyLock<Arc<cel::Env>> = LazyLock::new(|| {
    let mut env = cel::Env::stdlib();
    // Registering a fresh extension on a fresh stdlib env cannot clash; if it ever did, the
    // programs that use `split` & co. would fail to evaluate (and so deny), not allow.
    let _ = env.add_extension(cel::extensions::strings);
    Arc::new(env)
});

/// A compiled CEL expression.
pub struct CelProgram {
    program: cel::Program,
}

impl std::fmt::Debug for CelProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CelProgram")
    }
}

impl CelProgram {
    /// Compiles `source`; the error is the parser's message.
    pub fn compile(source: &str) -> Result<Self, String> {
        if source.len() > MAX_CEL_SOURCE {
            return Err(format!("CEL expression longer than {MAX_CEL_SOURCE} bytes"));
        }
        let program = ENV.compile(source).map_err(|e| e.to_string())?;
        Ok(CelProgram { program })
    }
}

/// The variables of one evaluation (the authorization JSON's top-level keys), converted once and
/// shared by every program evaluated against the same data.
pub struct CelInput {
    vars: Vec<(String, cel::Value)>,
}

impl CelInput {
    pub fn new(data: &Value) -> Result<Self, String> {
        let mut vars = Vec::new();
        if let Value::Object(map) = data {
            for (name, value) in map {
                let value = cel::to_value(value).map_err(|e| e.to_string())?;
                vars.push((name.clone(), value));
            }
        }
        Ok(CelInput { vars })
    }

    fn eval(&self, program: &CelProgram) -> Result<cel::Value, String> {
        let mut ctx = cel::Context::with_env(ENV.clone());
        for (name, value) in &self.vars {
            ctx.add_variable_from_value(name.clone(), value.clone());
        }
        program.program.execute(&ctx).map_err(|e| e.to_string())
    }

    /// Evaluates a predicate; anything but a boolean is an error.
    pub fn eval_bool(&self, program: &CelProgram) -> Result<bool, String> {
        match self.eval(program)? {
            cel::Value::Bool(b) => Ok(b),
            other => Err(format!("predicate gave {:?}, not a bool", other.type_of())),
        }
    }

    /// Evaluates an expression to JSON.
    pub fn eval_json(&self, program: &CelProgram) -> Result<Value, String> {
        let value = self.eval(program)?;
        value.json().map_err(|e| e.to_string())
    }
}
