//! Evaluates one request against a [`CompiledPolicy`] in Authorino's phase order: authentication,
//! metadata, authorization, response. Rules of one priority see the results of lower priorities.
//! Every error that could otherwise let a request through denies it.
use http::Method;
use serde_json::{Map, Value};

use crate::cel_expr::{CelInput, CelProgram};
use crate::compile::{AuthzKind, CompiledPolicy, CredentialAt, DenyTemplate, HeaderValue, MetaRule, Val};
use crate::fetch::{HttpCall, MetadataFetcher};
use crate::identity::JwtVerifier;
use crate::request::{AuthData, RequestInfo, authorization_json};

/// The outcome for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Forward the request, setting (replacing) these headers on it.
    Allow { headers_to_set: Vec<(String, String)> },
    /// Answer the caller with this response. `reason` is for logs and never holds a credential.
    Deny { status: u16, headers: Vec<(String, String)>, body: Option<String>, reason: String },
}

/// A step that failed: which phase's response to send, and why.
enum Failure {
    Unauthenticated { reason: String, realms: Vec<String> },
    Unauthorized(String),
}

impl CompiledPolicy {
    /// Decides `request`, verifying tokens with `verifier` and fetching metadata with `fetcher`.
    pub async fn evaluate<V: JwtVerifier, F: MetadataFetcher>(
        &self,
        request: &RequestInfo,
        verifier: &V,
        fetcher: &F,
    ) -> Decision {
        let attributes = request.attributes();
        let mut auth = AuthData::default();
        match self.run(request, &attributes, &mut auth, verifier, fetcher).await {
            Ok(Some(headers_to_set)) => Decision::Allow { headers_to_set },
            // The policy's top-level `when` does not match: the policy does not apply.
            Ok(None) => Decision::Allow { headers_to_set: Vec::new() },
            Err(failure) => self.deny(failure, &attributes, &auth),
        }
    }

    async fn run<V: JwtVerifier, F: MetadataFetcher>(
        &self,
        request: &RequestInfo,
        attributes: &Value,
        auth: &mut AuthData,
        verifier: &V,
        fetcher: &F,
    ) -> Result<Option<Vec<(String, String)>>, Failure> {
        let unauthorized = |what: String| Failure::Unauthorized(what);
        if !self.when.is_empty() {
            let input = input(attributes, auth).map_err(|_| unauthorized("policy when: data".into()))?;
            if !all(&self.when, &input).map_err(|_| unauthorized("policy when: evaluation error".into()))? {
                return Ok(None);
            }
        }

        // Authentication: the first rule (by priority) whose credential verifies gives the identity.
        if !self.authentication.is_empty() {
            let input = input(attributes, auth).map_err(|_| unauthorized("authentication: data".into()))?;
            let mut reasons = Vec::new();
            let mut realms = Vec::new();
            for rule in &self.authentication {
                match all(&rule.when, &input) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(_) => {
                        reasons.push(format!("{}: when: evaluation error", rule.name));
                        continue;
                    }
                }
                realms.push(rule.name.clone());
                let Some(token) = credential(request, &rule.credential) else {
                    reasons.push(format!("{}: credential not found", rule.name));
                    continue;
                };
                match verifier.verify(&rule.issuer_url, &token).await {
                    Ok(claims) => {
                        auth.identity = claims;
                        break;
                    }
                    Err(e) => reasons.push(format!("{}: {e}", rule.name)),
                }
            }
            if auth.identity.is_null() {
                return Err(Failure::Unauthenticated { reason: reasons.join("; "), realms });
            }
        }

        // Metadata: a failed call leaves `auth.metadata.<name>` absent, as in Authorino.
        for group in &self.metadata {
            let input = input(attributes, auth).map_err(|_| unauthorized("metadata: data".into()))?;
            let mut calls = Vec::new();
            for rule in group {
                match all(&rule.when, &input) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(_) => return Err(unauthorized(format!("metadata {}: when: evaluation error", rule.name))),
                }
                if let Ok(call) = build_call(rule, &input) {
                    calls.push((rule.name.clone(), call));
                }
            }
            for (name, call) in calls {
                if let Ok(value) = fetcher.fetch(&call).await {
                    auth.metadata.insert(name, value);
                }
            }
        }

        // Authorization: every rule that applies must pass.
        for group in &self.authorization {
            let data = authorization_json(attributes, auth);
            let input = CelInput::new(&data).map_err(|_| unauthorized("authorization: data".into()))?;
            let mut results = Vec::new();
            for rule in group {
                let denied = |what: &str| unauthorized(format!("authorization {}: {what}", rule.name));
                match all(&rule.when, &input) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(_) => return Err(denied("when: evaluation error")),
                }
                let result = match &rule.kind {
                    AuthzKind::Opa(rego) => match rego.eval(&data) {
                        Ok(Some(result)) => result,
                        Ok(None) => return Err(denied("rego: not allowed")),
                        Err(_) => return Err(denied("rego: evaluation error")),
                    },
                    AuthzKind::Patterns(patterns) => match all(patterns, &input) {
                        Ok(true) => Value::Bool(true),
                        Ok(false) => return Err(denied("pattern not matched")),
                        Err(_) => return Err(denied("pattern: evaluation error")),
                    },
                };
                results.push((rule.name.clone(), result));
            }
            auth.authorization.extend(results);
        }

        // Response: the headers to set on the forwarded request.
        let mut headers = Vec::new();
        if !self.success_headers.is_empty() {
            let input = input(attributes, auth).map_err(|_| unauthorized("response: data".into()))?;
            for rule in &self.success_headers {
                let failed = || unauthorized(format!("response header {}: evaluation error", rule.header));
                if !all(&rule.when, &input).map_err(|_| failed())? {
                    continue;
                }
                let value = match &rule.value {
                    HeaderValue::Plain(v) => resolve(v, &input).map_err(|_| failed())?,
                    HeaderValue::Json(props) => {
                        let mut object = Map::new();
                        for (name, v) in props {
                            object.insert(name.clone(), resolve(v, &input).map_err(|_| failed())?);
                        }
                        Value::Object(object)
                    }
                };
                let text = stringify(&value);
                auth.response.insert(rule.header.clone(), value);
                headers.push((rule.header.clone(), text));
            }
        }
        Ok(Some(headers))
    }

    fn deny(&self, failure: Failure, attributes: &Value, auth: &AuthData) -> Decision {
        let (template, status, reason, default_headers) = match failure {
            Failure::Unauthenticated { reason, realms } => {
                let headers =
                    realms.iter().map(|r| ("WWW-Authenticate".to_owned(), format!("Bearer realm=\"{r}\""))).collect();
                (&self.unauthenticated, 401, reason, headers)
            }
            Failure::Unauthorized(reason) => (&self.unauthorized, 403, reason, Vec::new()),
        };
        render_deny(template, status, reason, default_headers, attributes, auth)
    }
}

fn render_deny(
    template: &DenyTemplate,
    status: u16,
    reason: String,
    default_headers: Vec<(String, String)>,
    attributes: &Value,
    auth: &AuthData,
) -> Decision {
    let status = template.code.unwrap_or(status);
    // A template expression that fails leaves that part out; the status still denies.
    let input = input(attributes, auth).ok();
    let render = |v: &Val| -> Option<String> {
        let input = input.as_ref()?;
        resolve(v, input).ok().map(|value| stringify(&value))
    };
    let mut headers = if template.headers.is_empty() {
        default_headers
    } else {
        template.headers.iter().filter_map(|(name, v)| Some((name.clone(), render(v)?))).collect()
    };
    if let Some(message) = template.message.as_ref().and_then(&render) {
        headers.push(("x-ext-auth-reason".to_owned(), message));
    }
    Decision::Deny { status, headers, body: template.body.as_ref().and_then(&render), reason }
}

fn input(attributes: &Value, auth: &AuthData) -> Result<CelInput, String> {
    CelInput::new(&authorization_json(attributes, auth))
}

/// All predicates true (an empty list is true); an evaluation error is an error.
fn all(predicates: &[CelProgram], input: &CelInput) -> Result<bool, String> {
    for p in predicates {
        if !input.eval_bool(p)? {
            return Ok(false);
        }
    }
    Ok(true)
}

fn resolve(v: &Val, input: &CelInput) -> Result<Value, String> {
    match v {
        Val::Static(value) => Ok(value.clone()),
        Val::Expr(program) => input.eval_json(program),
    }
}

/// A value as header or form text: strings as they are, anything else as JSON.
fn stringify(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The credential of `at` in the request, without its prefix.
fn credential(request: &RequestInfo, at: &CredentialAt) -> Option<String> {
    match at {
        CredentialAt::AuthorizationHeader { prefix } => {
            let value = request.header("authorization")?;
            let rest = strip_scheme(&value, prefix)?;
            (!rest.is_empty()).then(|| rest.to_owned())
        }
        CredentialAt::CustomHeader { name } => request.header(name).filter(|v| !v.is_empty()),
    }
}

/// `value` without a leading `<scheme> ` (scheme compared case-insensitively, as RFC 9110 says).
fn strip_scheme<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    if scheme.is_empty() {
        return Some(value.trim());
    }
    let head = value.get(..scheme.len())?;
    let rest = value.get(scheme.len()..)?;
    (head.eq_ignore_ascii_case(scheme) && rest.starts_with(' ')).then(|| rest.trim())
}

/// Builds the HTTP call of a metadata rule.
fn build_call(rule: &MetaRule, input: &CelInput) -> Result<HttpCall, String> {
    let url = stringify(&resolve(&rule.url, input)?);
    let mut headers = Vec::new();
    for (name, v) in &rule.headers {
        headers.push((name.clone(), stringify(&resolve(v, input)?)));
    }
    // As Authorino: GET has no body and says text/plain; POST sends `body`, or the parameters
    // encoded per `contentType` (possibly none).
    let mut body = None;
    if rule.method == Method::GET {
        headers.push(("Content-Type".to_owned(), "text/plain".to_owned()));
    } else {
        let bytes = if let Some(v) = &rule.body {
            stringify(&resolve(v, input)?).into_bytes()
        } else {
            let mut params = Vec::new();
            for (name, v) in &rule.body_parameters {
                params.push((name.clone(), resolve(v, input)?));
            }
            if rule.json_body {
                let object: Map<String, Value> = params.into_iter().collect();
                Value::Object(object).to_string().into_bytes()
            } else {
                let mut form = url::form_urlencoded::Serializer::new(String::new());
                for (name, value) in &params {
                    form.append_pair(name, &stringify(value));
                }
                form.finish().into_bytes()
            }
        };
        let content_type = if rule.json_body { "application/json" } else { "application/x-www-form-urlencoded" };
        headers.push(("Content-Type".to_owned(), content_type.to_owned()));
        body = Some(bytes);
    }
    if let Some((at, secret)) = &rule.secret {
        match at {
            CredentialAt::AuthorizationHeader { prefix } => {
                // The seed's Secret already holds `Basic <b64>` while the policy adds `Basic`:
                // a value that starts with the prefix is sent once, not as `Basic Basic <b64>`.
                let value = strip_scheme(&secret.0, prefix).unwrap_or(secret.0.trim());
                let header = if prefix.is_empty() { value.to_owned() } else { format!("{prefix} {value}") };
                headers.push(("Authorization".to_owned(), header));
            }
            CredentialAt::CustomHeader { name } => {
                headers.push((name.clone(), secret.0.trim().to_owned()));
            }
        }
    }
    Ok(HttpCall { method: rule.method.clone(), url, headers, body })
}
