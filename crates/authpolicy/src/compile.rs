//! Turns a parsed AuthPolicy into what evaluation runs: CEL programs and Rego rules compiled,
//! rules ordered by `priority`, Secrets resolved. Anything it cannot evaluate is a [`LoadError`]
//! naming the field, so the route refuses traffic rather than running a partial policy.
use std::collections::BTreeMap;

use http::Method;
use serde_json::Value;

use crate::cel_expr::CelProgram;
use crate::error::LoadError;
use crate::model::{
    AuthPolicy, AuthenticationRule, AuthorizationRule, Common, Credentials, DenyWith, MetadataRule, Predicate, Rules,
    SuccessHeader, ValueOrExpr, refuse_extra,
};
use crate::rego::RegoRule;

/// Where `sharedSecretRef`s are read from: `(secret name, key) -> value`, in the policy's namespace.
pub trait SecretSource {
    fn secret(&self, name: &str, key: &str) -> Option<String>;
}

impl<F: Fn(&str, &str) -> Option<String>> SecretSource for F {
    fn secret(&self, name: &str, key: &str) -> Option<String> {
        self(name, key)
    }
}

/// A policy ready to evaluate requests.
#[derive(Debug)]
pub struct CompiledPolicy {
    pub(crate) when: Vec<CelProgram>,
    pub(crate) authentication: Vec<AuthnRule>,
    pub(crate) metadata: Vec<Vec<MetaRule>>,
    pub(crate) authorization: Vec<Vec<AuthzRule>>,
    pub(crate) success_headers: Vec<HeaderRule>,
    pub(crate) unauthenticated: DenyTemplate,
    pub(crate) unauthorized: DenyTemplate,
}

#[derive(Debug)]
pub(crate) enum Val {
    Static(Value),
    Expr(CelProgram),
}

#[derive(Debug)]
pub(crate) struct AuthnRule {
    pub name: String,
    pub when: Vec<CelProgram>,
    pub issuer_url: String,
    pub credential: CredentialAt,
}

/// Where a credential sits in a request.
#[derive(Debug, Clone)]
pub(crate) enum CredentialAt {
    AuthorizationHeader { prefix: String },
    CustomHeader { name: String },
}

/// A Secret value; never printed.
pub(crate) struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[derive(Debug)]
pub(crate) struct MetaRule {
    pub name: String,
    pub when: Vec<CelProgram>,
    pub method: Method,
    pub url: Val,
    pub json_body: bool,
    pub body: Option<Val>,
    pub body_parameters: Vec<(String, Val)>,
    pub headers: Vec<(String, Val)>,
    pub secret: Option<(CredentialAt, Secret)>,
}

#[derive(Debug)]
pub(crate) struct AuthzRule {
    pub name: String,
    pub when: Vec<CelProgram>,
    pub kind: AuthzKind,
}

#[derive(Debug)]
pub(crate) enum AuthzKind {
    Opa(RegoRule),
    Patterns(Vec<CelProgram>),
}

#[derive(Debug)]
pub(crate) struct HeaderRule {
    pub header: String,
    pub when: Vec<CelProgram>,
    pub value: HeaderValue,
}

#[derive(Debug)]
pub(crate) enum HeaderValue {
    Plain(Val),
    Json(Vec<(String, Val)>),
}

#[derive(Debug, Default)]
pub(crate) struct DenyTemplate {
    pub code: Option<u16>,
    pub message: Option<Val>,
    pub headers: Vec<(String, Val)>,
    pub body: Option<Val>,
}

impl CompiledPolicy {
    /// Compiles `policy`, reading its `sharedSecretRef`s from `secrets`.
    pub fn load(policy: &AuthPolicy, secrets: &dyn SecretSource) -> Result<Self, LoadError> {
        let spec = &policy.spec;
        refuse_extra(&spec.extra, "spec")?;
        refuse_extra(&spec.target_ref.extra, "spec.targetRef")?;
        let mut when = compile_when(&spec.when, "spec.when")?;
        // One policy on a route: `rules`, `defaults` and `overrides` all simply apply, but only
        // one of them may be given (merging them is Kuadrant's business between policies).
        let sections = [
            spec.rules.as_ref().map(|r| (r, "spec.rules")),
            spec.defaults.as_ref().and_then(|s| s.rules.as_ref().map(|r| (r, "spec.defaults.rules"))),
            spec.overrides.as_ref().and_then(|s| s.rules.as_ref().map(|r| (r, "spec.overrides.rules"))),
        ];
        for (section, path) in [(&spec.defaults, "spec.defaults"), (&spec.overrides, "spec.overrides")] {
            if let Some(section) = section {
                refuse_extra(&section.extra, path)?;
                if let Some(strategy) = &section.strategy
                    && strategy != "atomic"
                    && strategy != "merge"
                {
                    return Err(LoadError::invalid(&format!("{path}.strategy"), "not atomic or merge"));
                }
                when.extend(compile_when(&section.when, &format!("{path}.when"))?);
            }
        }
        let mut given = sections.into_iter().flatten();
        let empty = Rules::default();
        let (rules, path) = given.next().unwrap_or((&empty, "spec.rules"));
        if let Some((_, second)) = given.next() {
            return Err(LoadError::Unsupported { path: format!("{second} (with {path})") });
        }
        refuse_extra(&rules.extra, path)?;

        let mut authentication = Vec::new();
        for (name, rule) in by_priority(&rules.authentication, |r| r.common.priority) {
            authentication.push(compile_authn(name, rule, &format!("{path}.authentication.{name}"))?);
        }
        let mut metadata = Vec::new();
        for group in groups(&rules.metadata, |r| r.common.priority) {
            let mut compiled = Vec::new();
            for (name, rule) in group {
                compiled.push(compile_meta(name, rule, &format!("{path}.metadata.{name}"), secrets)?);
            }
            metadata.push(compiled);
        }
        let mut authorization = Vec::new();
        for group in groups(&rules.authorization, |r| r.common.priority) {
            let mut compiled = Vec::new();
            for (name, rule) in group {
                compiled.push(compile_authz(name, rule, &format!("{path}.authorization.{name}"))?);
            }
            authorization.push(compiled);
        }
        let mut success_headers = Vec::new();
        let mut unauthenticated = DenyTemplate::default();
        let mut unauthorized = DenyTemplate::default();
        if let Some(response) = &rules.response {
            let rpath = format!("{path}.response");
            refuse_extra(&response.extra, &rpath)?;
            if let Some(success) = &response.success {
                refuse_extra(&success.extra, &format!("{rpath}.success"))?;
                for (name, header) in by_priority(&success.headers, |h| h.common.priority) {
                    let hpath = format!("{rpath}.success.headers.{name}");
                    success_headers.push(compile_header(name, header, &hpath)?);
                }
            }
            if let Some(deny) = &response.unauthenticated {
                unauthenticated = compile_deny(deny, &format!("{rpath}.unauthenticated"))?;
            }
            if let Some(deny) = &response.unauthorized {
                unauthorized = compile_deny(deny, &format!("{rpath}.unauthorized"))?;
            }
        }
        Ok(CompiledPolicy {
            when,
            authentication,
            metadata,
            authorization,
            success_headers,
            unauthenticated,
            unauthorized,
        })
    }
}

/// Entries sorted by priority (stable: name order within a priority).
fn by_priority<T>(map: &BTreeMap<String, T>, priority: impl Fn(&T) -> i64) -> Vec<(&String, &T)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by_key(|(_, rule)| priority(rule));
    entries
}

/// Entries grouped by priority, lowest first; a group runs on the data of the groups before it.
fn groups<T>(map: &BTreeMap<String, T>, priority: impl Fn(&T) -> i64) -> Vec<Vec<(&String, &T)>> {
    let mut out: Vec<Vec<(&String, &T)>> = Vec::new();
    let mut last = None;
    for (name, rule) in by_priority(map, &priority) {
        let p = priority(rule);
        match out.last_mut() {
            Some(group) if last == Some(p) => group.push((name, rule)),
            _ => out.push(vec![(name, rule)]),
        }
        last = Some(p);
    }
    out
}

fn cel(source: &str, path: &str) -> Result<CelProgram, LoadError> {
    CelProgram::compile(source).map_err(|e| LoadError::invalid(path, e))
}

fn compile_when(when: &[Predicate], path: &str) -> Result<Vec<CelProgram>, LoadError> {
    when.iter().enumerate().map(|(i, p)| compile_predicate(p, &format!("{path}[{i}]"))).collect()
}

fn compile_predicate(p: &Predicate, path: &str) -> Result<CelProgram, LoadError> {
    refuse_extra(&p.extra, path)?;
    match &p.predicate {
        Some(source) => cel(source, &format!("{path}.predicate")),
        None => Err(LoadError::invalid(path, "no predicate")),
    }
}

fn compile_common(common: &Common, path: &str) -> Result<Vec<CelProgram>, LoadError> {
    compile_when(&common.when, &format!("{path}.when"))
}

fn compile_val(v: &ValueOrExpr, path: &str) -> Result<Val, LoadError> {
    refuse_extra(&v.extra, path)?;
    match (&v.value, &v.expression) {
        (Some(value), None) => Ok(Val::Static(value.clone())),
        (None, Some(source)) => Ok(Val::Expr(cel(source, &format!("{path}.expression"))?)),
        _ => Err(LoadError::invalid(path, "exactly one of value or expression")),
    }
}

fn compile_vals(map: &BTreeMap<String, ValueOrExpr>, path: &str) -> Result<Vec<(String, Val)>, LoadError> {
    map.iter().map(|(name, v)| Ok((name.clone(), compile_val(v, &format!("{path}.{name}"))?))).collect()
}

fn compile_credentials(c: Option<&Credentials>, path: &str) -> Result<CredentialAt, LoadError> {
    let Some(c) = c else {
        return Ok(CredentialAt::AuthorizationHeader { prefix: "Bearer".to_owned() });
    };
    refuse_extra(&c.extra, path)?;
    match (&c.authorization_header, &c.custom_header) {
        (Some(h), None) => {
            refuse_extra(&h.extra, &format!("{path}.authorizationHeader"))?;
            Ok(CredentialAt::AuthorizationHeader { prefix: h.prefix.clone().unwrap_or_else(|| "Bearer".to_owned()) })
        }
        (None, Some(h)) => {
            refuse_extra(&h.extra, &format!("{path}.customHeader"))?;
            Ok(CredentialAt::CustomHeader { name: h.name.to_ascii_lowercase() })
        }
        _ => Err(LoadError::invalid(path, "exactly one credentials location")),
    }
}

fn compile_authn(name: &str, rule: &AuthenticationRule, path: &str) -> Result<AuthnRule, LoadError> {
    refuse_extra(&rule.extra, path)?;
    let when = compile_common(&rule.common, path)?;
    let credential = compile_credentials(rule.credentials.as_ref(), &format!("{path}.credentials"))?;
    let Some(jwt) = &rule.jwt else {
        return Err(LoadError::invalid(path, "no authentication method"));
    };
    refuse_extra(&jwt.extra, &format!("{path}.jwt"))?;
    let Some(issuer_url) = jwt.issuer_url.clone() else {
        return Err(LoadError::invalid(&format!("{path}.jwt"), "no issuerUrl"));
    };
    Ok(AuthnRule { name: name.to_owned(), when, issuer_url, credential })
}

fn compile_meta(
    name: &str,
    rule: &MetadataRule,
    path: &str,
    secrets: &dyn SecretSource,
) -> Result<MetaRule, LoadError> {
    refuse_extra(&rule.extra, path)?;
    let when = compile_common(&rule.common, path)?;
    let Some(http) = &rule.http else {
        return Err(LoadError::invalid(path, "no metadata method"));
    };
    let path = format!("{path}.http");
    refuse_extra(&http.extra, &path)?;
    let url = match (&http.url, &http.url_expression) {
        // Authorino interpolates `{json.path}` in `url`; Apiary does not read GJSON paths.
        (Some(url), None) if url.contains('{') => {
            return Err(LoadError::Unsupported { path: format!("{path}.url (interpolation)") });
        }
        (Some(url), None) => Val::Static(Value::String(url.clone())),
        (None, Some(source)) => Val::Expr(cel(source, &format!("{path}.urlExpression"))?),
        _ => return Err(LoadError::invalid(&path, "exactly one of url or urlExpression")),
    };
    // Authorino's HTTP metadata sends GET (no body) or POST (a body, maybe empty).
    let method = match http.method.as_deref().unwrap_or("GET") {
        "GET" => Method::GET,
        "POST" => Method::POST,
        other => {
            return Err(LoadError::Unsupported { path: format!("{path}.method ({other})") });
        }
    };
    let json_body = match http.content_type.as_deref() {
        None | Some("application/x-www-form-urlencoded") => false,
        Some("application/json") => true,
        Some(other) => {
            return Err(LoadError::invalid(&format!("{path}.contentType"), format!("unknown {other}")));
        }
    };
    let body = http.body.as_ref().map(|b| compile_val(b, &format!("{path}.body"))).transpose()?;
    let body_parameters = compile_vals(&http.body_parameters, &format!("{path}.bodyParameters"))?;
    if body.is_some() && !body_parameters.is_empty() {
        return Err(LoadError::invalid(&path, "body and bodyParameters are exclusive"));
    }
    if method == Method::GET && (body.is_some() || !body_parameters.is_empty()) {
        return Err(LoadError::invalid(&format!("{path}.method"), "GET sends no body"));
    }
    let headers = compile_vals(&http.headers, &format!("{path}.headers"))?;
    let secret = match &http.shared_secret_ref {
        Some(r) => {
            let rpath = format!("{path}.sharedSecretRef");
            refuse_extra(&r.extra, &rpath)?;
            let value = secrets.secret(&r.name, &r.key).ok_or_else(|| LoadError::MissingSecret {
                path: rpath,
                name: r.name.clone(),
                key: r.key.clone(),
            })?;
            let at = compile_credentials(http.credentials.as_ref(), &format!("{path}.credentials"))?;
            Some((at, Secret(value)))
        }
        None if http.credentials.is_some() => {
            return Err(LoadError::invalid(&format!("{path}.credentials"), "credentials without sharedSecretRef"));
        }
        None => None,
    };
    Ok(MetaRule { name: name.to_owned(), when, method, url, json_body, body, body_parameters, headers, secret })
}

fn compile_authz(name: &str, rule: &AuthorizationRule, path: &str) -> Result<AuthzRule, LoadError> {
    refuse_extra(&rule.extra, path)?;
    let when = compile_common(&rule.common, path)?;
    let kind = match (&rule.opa, &rule.pattern_matching) {
        (Some(opa), None) => {
            let opath = format!("{path}.opa");
            refuse_extra(&opa.extra, &opath)?;
            let Some(rego) = &opa.rego else {
                return Err(LoadError::invalid(&opath, "no rego"));
            };
            let rule =
                RegoRule::compile(rego, opa.all_values).map_err(|e| LoadError::invalid(&format!("{opath}.rego"), e))?;
            AuthzKind::Opa(rule)
        }
        (None, Some(pm)) => {
            let ppath = format!("{path}.patternMatching");
            refuse_extra(&pm.extra, &ppath)?;
            if pm.patterns.is_empty() {
                return Err(LoadError::invalid(&ppath, "no patterns"));
            }
            AuthzKind::Patterns(compile_when(&pm.patterns, &format!("{ppath}.patterns"))?)
        }
        _ => return Err(LoadError::invalid(path, "exactly one authorization method")),
    };
    Ok(AuthzRule { name: name.to_owned(), when, kind })
}

fn compile_header(name: &str, header: &SuccessHeader, path: &str) -> Result<HeaderRule, LoadError> {
    refuse_extra(&header.extra, path)?;
    let when = compile_common(&header.common, path)?;
    let value = match (&header.plain, &header.json) {
        (Some(plain), None) => HeaderValue::Plain(compile_val(plain, &format!("{path}.plain"))?),
        (None, Some(json)) => {
            refuse_extra(&json.extra, &format!("{path}.json"))?;
            HeaderValue::Json(compile_vals(&json.properties, &format!("{path}.json.properties"))?)
        }
        _ => return Err(LoadError::invalid(path, "exactly one of plain or json")),
    };
    Ok(HeaderRule { header: header.key.clone().unwrap_or_else(|| name.to_owned()), when, value })
}

fn compile_deny(deny: &DenyWith, path: &str) -> Result<DenyTemplate, LoadError> {
    refuse_extra(&deny.extra, path)?;
    if let Some(code) = deny.code
        && !(300..600).contains(&code)
    {
        return Err(LoadError::invalid(&format!("{path}.code"), "not an HTTP error status"));
    }
    Ok(DenyTemplate {
        code: deny.code,
        message: deny.message.as_ref().map(|m| compile_val(m, &format!("{path}.message"))).transpose()?,
        headers: compile_vals(&deny.headers, &format!("{path}.headers"))?,
        body: deny.body.as_ref().map(|b| compile_val(b, &format!("{path}.body"))).transpose()?,
    })
}
