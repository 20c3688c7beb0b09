//! Every rule a RunConfig must satisfy, checked all at once so one run reports every problem with its path.

use std::net::IpAddr;

use crate::command::split_python_requirement;
use crate::error::ValidationErrors;
use crate::limits::{Bound, bounds};
use crate::run_config::RunConfig;
use crate::source::{Ecosystem, Source};
use crate::stdio::MAX_SESSION_CHILDREN;

/// Linux refuses a single argument or environment string longer than this (`MAX_ARG_STRLEN`).
pub const MAX_ARG_BYTES: usize = 128 * 1024;

impl RunConfig {
    /// Checks every rule and returns all broken ones, each with its dotted field path.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errs = ValidationErrors::default();
        check_name(&mut errs, "name", &self.name);
        check_name(&mut errs, "group", &self.group);
        check_source(&mut errs, &self.source);
        for (i, a) in self.args.iter().enumerate() {
            check_arg(&mut errs, &format!("args[{i}]"), a);
        }
        self.check_transport_and_ports(&mut errs);
        check_host(&mut errs, "targetHost", &self.target_host);
        for (k, v) in &self.env {
            let path = format!("env.{k}");
            if !is_env_name(k) {
                errs.push(
                    &path,
                    format!(
                        "{k:?} is not a valid environment variable name: use letters, digits and '_', \
                         not starting with a digit"
                    ),
                );
            }
            check_arg(&mut errs, &path, v);
        }
        self.check_secrets(&mut errs);
        self.check_proxy(&mut errs);
        check_bound(
            &mut errs,
            "stdio.maxSessionChildren",
            u64::from(self.stdio.max_session_children),
            Bound { min: 1, max: u64::from(MAX_SESSION_CHILDREN), unit: "children" },
        );
        self.check_limits(&mut errs);
        check_telemetry(&mut errs, &self.telemetry);
        if let Err(message) = self.permission_profile.check() {
            errs.push("permissionProfile", message);
        }
        errs.into_result()
    }

    fn check_transport_and_ports(&self, errs: &mut ValidationErrors) {
        let transport = self.effective_transport();
        if self.is_remote() && self.transport == Some(crate::Transport::Stdio) {
            errs.push(
                "transport",
                "stdio is not possible for a remote server; use sse or streamable-http (or leave it \
                 out to follow the URL)",
            );
        }
        // A local server and the proxy cannot share a port on this machine. Image sources are
        // exempt: their target port is inside the container.
        let local_process = matches!(self.source, Source::Package(_) | Source::Command(_));
        if local_process && transport.is_http() && self.target_port != 0 && self.target_port == self.proxy.port {
            errs.push(
                "targetPort",
                format!("{} is also proxy.port; the proxy and the server cannot both listen on it", self.target_port),
            );
        }
        // A sandbox without the host network is fine for an HTTP server: the proxy reaches its
        // port through the workload's Unix socket (apiary_runtime::inbound).
    }

    fn check_secrets(&self, errs: &mut ValidationErrors) {
        if !self.secrets.is_empty() && self.is_remote() {
            errs.push("secrets", "a remote server runs elsewhere: there is no process to give secrets to");
        }
        for (i, s) in self.secrets.iter().enumerate() {
            if !crate::secret::is_secret_name(&s.name) {
                errs.push(
                    format!("secrets[{i}].name"),
                    format!(
                        "{:?} is not a secret name: use 1–128 characters from A-Z, a-z, 0-9, '_', '.', '-', \
                         not starting with '.' or '-'",
                        s.name
                    ),
                );
            }
            let path = format!("secrets[{i}].target");
            if !is_env_name(&s.target) {
                errs.push(&path, format!("{:?} is not a valid environment variable name", s.target));
            } else if self.secrets[..i].iter().any(|o| o.target == s.target) {
                errs.push(&path, format!("{} is the target of an earlier secret too", s.target));
            } else if self.env.contains_key(&s.target) {
                errs.push(&path, format!("{} is set by env as well; give it one value", s.target));
            }
        }
    }

    fn check_proxy(&self, errs: &mut ValidationErrors) {
        check_host(errs, "proxy.host", &self.proxy.host);
        check_endpoint_prefix(errs, "proxy.endpointPrefix", &self.proxy.endpoint_prefix);
        for (i, o) in self.proxy.allowed_origins.iter().enumerate() {
            check_origin(errs, &format!("proxy.allowedOrigins[{i}]"), o);
        }
    }

    fn check_limits(&self, errs: &mut ValidationErrors) {
        let l = &self.limits;
        let r = &self.restart;
        let checks: [(&str, u64, Bound); 12] = [
            ("limits.maxBodyBytes", l.max_body_bytes, bounds::MAX_BODY_BYTES),
            ("limits.maxLineBytes", l.max_line_bytes, bounds::MAX_LINE_BYTES),
            ("limits.maxSessions", u64::from(l.max_sessions), bounds::MAX_SESSIONS),
            ("limits.sessionIdleTtlSecs", l.session_idle_ttl_secs, bounds::SESSION_IDLE_TTL_SECS),
            ("limits.maxQueuedPerSession", u64::from(l.max_queued_per_session), bounds::MAX_QUEUED_PER_SESSION),
            ("limits.eventBufferBytes", l.event_buffer_bytes, bounds::EVENT_BUFFER_BYTES),
            ("limits.requestTimeoutSecs", l.request_timeout_secs, bounds::REQUEST_TIMEOUT_SECS),
            ("limits.writeTimeoutSecs", l.write_timeout_secs, bounds::WRITE_TIMEOUT_SECS),
            ("restart.maxRestarts", u64::from(r.max_restarts), bounds::MAX_RESTARTS),
            ("restart.windowSecs", r.window_secs, bounds::WINDOW_SECS),
            ("restart.backoffInitialMs", r.backoff_initial_ms, bounds::BACKOFF_INITIAL_MS),
            ("restart.backoffMaxMs", r.backoff_max_ms, bounds::BACKOFF_MAX_MS),
        ];
        for (path, value, bound) in checks {
            check_bound(errs, path, value, bound);
        }
        let in_range = |v: u64, b: Bound| (b.min..=b.max).contains(&v);
        // The relation is only worth stating once both values are acceptable on their own.
        if in_range(r.backoff_initial_ms, bounds::BACKOFF_INITIAL_MS)
            && in_range(r.backoff_max_ms, bounds::BACKOFF_MAX_MS)
            && r.backoff_max_ms < r.backoff_initial_ms
        {
            errs.push(
                "restart.backoffMaxMs",
                format!(
                    "{} is less than restart.backoffInitialMs ({}); the longest delay cannot be \
                     shorter than the first",
                    r.backoff_max_ms, r.backoff_initial_ms
                ),
            );
        }
    }
}

fn check_bound(errs: &mut ValidationErrors, path: &str, value: u64, b: Bound) {
    if value < b.min || value > b.max {
        let why = if value == 0 && b.min > 0 { " (0 is not allowed: every bound must be greater than 0)" } else { "" };
        errs.push(path, format!("{value} is out of range; use {}–{} {}{why}", b.min, b.max, b.unit));
    }
}

/// Workload and group names: they become file names, Kubernetes object names and URL parts.
fn check_name(errs: &mut ValidationErrors, path: &str, name: &str) {
    let ends_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let inner_ok = name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    let len = name.chars().count();
    if len == 0 {
        errs.push(path, "must not be empty; use 1–63 characters from a–z, 0–9, '.', '_' and '-'");
    } else if len > 63 || !inner_ok || !ends_ok(name.chars().next()) || !ends_ok(name.chars().last()) {
        errs.push(
            path,
            format!(
                "{name:?} is not a valid name: use 1–63 characters from a–z, 0–9, '.', '_' and '-', \
                 starting and ending with a letter or digit"
            ),
        );
    }
}

fn check_source(errs: &mut ValidationErrors, source: &Source) {
    match source {
        Source::Package(p) => {
            let path = "source.package.name";
            if p.name.is_empty() {
                errs.push(path, "must not be empty");
            } else if p.name.starts_with('-') {
                errs.push(path, format!("{:?} starts with '-' and would be read as an option", p.name));
            } else if p.name.chars().any(|c| c.is_whitespace() || c.is_control()) {
                errs.push(path, format!("{:?} contains spaces or control characters", p.name));
            } else if p.ecosystem == Ecosystem::Uvx {
                check_python_requirement(errs, path, &p.name);
            }
        }
        Source::Command(c) => {
            if c.program.is_empty() {
                errs.push("source.command.program", "must not be empty");
            } else {
                check_arg(errs, "source.command.program", &c.program);
            }
            for (i, a) in c.args.iter().enumerate() {
                check_arg(errs, &format!("source.command.args[{i}]"), a);
            }
        }
        Source::Image(img) => {
            let path = "source.image.ref";
            let r = &img.reference;
            if r.is_empty() {
                errs.push(path, "must not be empty");
            } else if r.starts_with('-') {
                errs.push(path, format!("{r:?} starts with '-' and would be read as an option"));
            } else if !r
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | ':' | '@' | '+'))
            {
                errs.push(
                    path,
                    format!(
                        "{r:?} is not an image reference like registry/repository:tag or \
                         repository@sha256:digest"
                    ),
                );
            }
        }
        Source::Remote(rem) => check_remote_url(errs, "source.remote.url", &rem.url),
    }
}

fn check_python_requirement(errs: &mut ValidationErrors, path: &str, spec: &str) {
    let (name, rest) = split_python_requirement(spec);
    let name_ok = name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().last().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = if let Some(version) = rest.strip_prefix('@') {
        !version.is_empty()
            && version.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+' | '!'))
    } else {
        rest.is_empty() || rest.starts_with(['[', '=', '<', '>', '!', '~'])
    };
    if !name_ok || !rest_ok {
        errs.push(
            path,
            format!(
                "{spec:?} is not a Python package requirement; write name, name@1.2.3, name==1.2.3 or \
                 name[extra]>=1.0"
            ),
        );
    }
}

fn check_remote_url(errs: &mut ValidationErrors, path: &str, raw: &str) {
    match url::Url::parse(raw) {
        Err(e) => errs.push(path, format!("{raw:?} is not a URL ({e}); write e.g. https://host/mcp")),
        Ok(u) => {
            if u.scheme() != "http" && u.scheme() != "https" {
                errs.push(path, format!("scheme {:?} is not supported; use http or https", u.scheme()));
            } else if u.host_str().is_none_or(str::is_empty) {
                errs.push(path, format!("{raw:?} has no host"));
            } else if u.fragment().is_some() {
                errs.push(path, format!("{raw:?} has a #fragment, which is never sent to the server"));
            }
        }
    }
}

/// Arguments and environment values end up in `execve`, which cannot carry NUL and refuses
/// strings over `MAX_ARG_STRLEN`.
fn check_arg(errs: &mut ValidationErrors, path: &str, value: &str) {
    if value.contains('\0') {
        errs.push(path, "contains a NUL character, which cannot be passed to a process");
    } else if value.len() > MAX_ARG_BYTES {
        errs.push(path, format!("is {} bytes long; at most {MAX_ARG_BYTES} bytes are allowed", value.len()));
    }
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_dns_name(host: &str) -> bool {
    host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn check_host(errs: &mut ValidationErrors, path: &str, host: &str) {
    if host.is_empty() {
        errs.push(path, "must not be empty; use an IP address such as 127.0.0.1 or a host name");
    } else if host.starts_with('[') && host.ends_with(']') {
        errs.push(path, format!("{host:?}: write IPv6 addresses without brackets, e.g. ::1"));
    } else if host.parse::<IpAddr>().is_err() && !is_dns_name(host) {
        errs.push(path, format!("{host:?} is not an IP address or host name"));
    }
}

fn check_endpoint_prefix(errs: &mut ValidationErrors, path: &str, prefix: &str) {
    if prefix.is_empty() {
        return;
    }
    if !prefix.starts_with('/') {
        errs.push(path, format!("{prefix:?} must start with '/', e.g. /{prefix}"));
    } else if prefix == "/" {
        errs.push(path, "\"/\" is no prefix; leave it empty");
    } else if prefix.ends_with('/') {
        errs.push(path, format!("{prefix:?} must not end with '/'; write {:?}", prefix.trim_end_matches('/')));
    } else if prefix.split('/').skip(1).any(|seg| seg.is_empty() || seg == "." || seg == "..") {
        errs.push(path, format!("{prefix:?} has an empty, '.' or '..' path segment"));
    } else if !prefix.chars().all(|c| c.is_ascii_alphanumeric() || "/-._~!$&'()*+,;=:@%".contains(c)) {
        errs.push(path, format!("{prefix:?} has characters not allowed in a URL path (spaces, '?', '#', ...)"));
    }
}

fn check_origin(errs: &mut ValidationErrors, path: &str, origin: &str) {
    let hint = "write scheme://host[:port], e.g. https://app.example.com";
    if origin == "*" {
        errs.push(path, format!("wildcards are not supported; list each origin ({hint})"));
        return;
    }
    if origin.eq_ignore_ascii_case("null") {
        errs.push(path, "\"null\" origins (sandboxed or file pages) cannot be allowed");
        return;
    }
    // Browsers send exactly scheme://host[:port]; anything after the authority would never match.
    let authority_only = origin.split_once("://").is_some_and(|(_, rest)| !rest.contains(['/', '?', '#', '@']));
    let parsed = url::Url::parse(origin);
    let host_ok = parsed.as_ref().is_ok_and(|u| u.host_str().is_some_and(|h| !h.is_empty()));
    if !authority_only || !host_ok {
        errs.push(path, format!("{origin:?} is not an origin; {hint} (no path, query or user)"));
    }
}

fn check_telemetry(errs: &mut ValidationErrors, t: &crate::telemetry::TelemetryConfig) {
    if let Some(addr) = &t.diagnostics_address
        && addr.parse::<std::net::SocketAddr>().is_err()
    {
        errs.push("telemetry.diagnosticsAddress", format!("{addr:?} is not an ip:port address, e.g. 127.0.0.1:9464"));
    }
    if let Some(url) = t.traces_url() {
        match url::Url::parse(&url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
                if u.scheme() == "http" && !t.insecure {
                    errs.push("telemetry.endpoint", "an http:// endpoint needs insecure: true (--otel-insecure)");
                }
                if !u.username().is_empty() || u.password().is_some() {
                    errs.push("telemetry.endpoint", "must not carry credentials; use headers");
                }
            }
            _ => errs.push(
                "telemetry.endpoint",
                format!("{:?} is not host:port[/path] or an http(s) URL", t.endpoint.as_deref().unwrap_or_default()),
            ),
        }
    }
    if t.headers.len() + t.headers_env.len() > crate::telemetry::MAX_OTEL_HEADERS {
        errs.push("telemetry.headers", format!("at most {} headers", crate::telemetry::MAX_OTEL_HEADERS));
    }
    let header_name =
        |k: &str| !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    for (k, var) in &t.headers_env {
        let path = format!("telemetry.headersEnv.{k}");
        if !header_name(k) {
            errs.push(&path, "is not an HTTP header name");
        }
        if t.headers.keys().any(|h| h.eq_ignore_ascii_case(k)) {
            errs.push(&path, "is also in telemetry.headers; set it in one of them");
        }
        if var.is_empty() || var.contains('=') || var.contains('\0') {
            errs.push(&path, "is not an environment variable name");
        }
    }
    for (k, v) in &t.headers {
        let path = format!("telemetry.headers.{k}");
        if !header_name(k) {
            errs.push(&path, "is not an HTTP header name");
        }
        // The value may be a secret: never echo it.
        if v.bytes().any(|b| b.is_ascii_control() && b != b'\t') || v.len() > 8192 {
            errs.push(&path, "the value has control characters or is longer than 8192 bytes");
        }
    }
    if let Some(name) = &t.service_name
        && (name.trim().is_empty() || name.len() > 255)
    {
        errs.push("telemetry.serviceName", "must be 1–255 characters");
    }
    if t.metrics_enabled {
        errs.push(
            "telemetry.metricsEnabled",
            "exporting metrics over OTLP is not supported yet; scrape /metrics on the diagnostics listener",
        );
    }
    if t.endpoint.is_none() && !t.headers.is_empty() {
        errs.push("telemetry.headers", "set only with an endpoint (--otel-endpoint)");
    }
    if t.endpoint.is_none() && !t.headers_env.is_empty() {
        errs.push("telemetry.headersEnv", "set only with an endpoint (--otel-endpoint)");
    }
}
