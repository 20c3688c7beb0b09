//! Finding the container engine: the Docker Engine API on a unix socket (Docker's, or Podman's
//! compatible service), from `DOCKER_HOST`, then `CONTAINER_HOST`, then the usual socket paths.
//! An engine that does not answer a ping is skipped, and when none answers the error names every
//! place that was tried.

use std::path::PathBuf;
use std::time::Duration;

use bollard::{API_DEFAULT_VERSION, Docker};

use super::ContainerError;

/// Seconds a single engine request may take to get its answer (create, start, inspect, delete).
/// Long-running calls (wait, attach, pull) use their own bounds.
pub const REQUEST_TIMEOUT_SECS: u64 = 60;

/// How long a ping may take before an endpoint counts as not answering.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// The places an engine is looked for, in order, given how environment variables are read.
pub fn candidates(var: impl Fn(&str) -> Option<String>) -> Vec<String> {
    let set = |k: &str| var(k).filter(|v| !v.trim().is_empty());
    if let Some(host) = set("DOCKER_HOST").or_else(|| set("CONTAINER_HOST")) {
        // An explicit choice is the only candidate: falling back elsewhere would run the server
        // in an engine the user did not ask for.
        return vec![host];
    }
    let mut out = Vec::new();
    if let Some(runtime_dir) = set("XDG_RUNTIME_DIR") {
        out.push(format!("unix://{}", PathBuf::from(runtime_dir).join("podman/podman.sock").display()));
    }
    out.push("unix:///run/podman/podman.sock".to_owned());
    out.push("unix:///var/run/docker.sock".to_owned());
    out
}

/// A client for one endpoint (`unix:///path`, or `tcp://`/`http://` host:port), not yet checked.
pub fn client_for(endpoint: &str) -> Result<Docker, ContainerError> {
    let connect = |e: &str| -> Result<Docker, bollard::errors::Error> {
        if e.starts_with("unix://") {
            Docker::connect_with_unix(e, REQUEST_TIMEOUT_SECS, API_DEFAULT_VERSION)
        } else if e.starts_with("tcp://") || e.starts_with("http://") {
            Docker::connect_with_http(e, REQUEST_TIMEOUT_SECS, API_DEFAULT_VERSION)
        } else {
            // A bare path, as some people put in DOCKER_HOST.
            Docker::connect_with_unix(&format!("unix://{e}"), REQUEST_TIMEOUT_SECS, API_DEFAULT_VERSION)
        }
    };
    connect(endpoint).map_err(|e| ContainerError::Engine { endpoint: endpoint.to_owned(), reason: e.to_string() })
}

/// The first engine that answers a ping, and its endpoint.
pub async fn connect() -> Result<(Docker, String), ContainerError> {
    connect_among(&candidates(|k| std::env::var(k).ok())).await
}

/// [`connect`], trying `previous` (the engine a workload ran in before) ahead of the usual
/// sockets, so a restart from a shell without `DOCKER_HOST` finds the same engine. An explicit
/// `DOCKER_HOST`/`CONTAINER_HOST` still wins.
pub async fn connect_preferring(previous: Option<&str>) -> Result<(Docker, String), ContainerError> {
    connect_among(&with_previous(candidates(|k| std::env::var(k).ok()), previous, |k| std::env::var(k).ok())).await
}

/// `found` with `previous` first, unless the environment names the engine.
pub fn with_previous(
    mut found: Vec<String>,
    previous: Option<&str>,
    var: impl Fn(&str) -> Option<String>,
) -> Vec<String> {
    let explicit = ["DOCKER_HOST", "CONTAINER_HOST"].iter().any(|k| var(k).is_some_and(|v| !v.trim().is_empty()));
    if let Some(p) = previous.filter(|_| !explicit) {
        found.retain(|c| c != p);
        found.insert(0, p.to_owned());
    }
    found
}

/// [`connect`] over the given endpoints.
pub async fn connect_among(endpoints: &[String]) -> Result<(Docker, String), ContainerError> {
    let mut tried = Vec::new();
    for endpoint in endpoints {
        match ping(endpoint).await {
            Ok(docker) => return Ok((docker, endpoint.clone())),
            Err(reason) => tried.push(format!("{endpoint} ({reason})")),
        }
    }
    Err(ContainerError::NoEngine(tried.join("; ")))
}

/// Refuses an engine that cannot put a container in a network namespace of this process (the
/// egress allow-list, see `super::egress`): it must be on this machine (a unix socket) and be
/// Podman (Docker has no `ns:` network mode).
pub async fn check_joins_namespaces(docker: &Docker, endpoint: &str, purpose: &str) -> Result<(), ContainerError> {
    let refuse = |reason: String| {
        ContainerError::Egress(format!(
            "the engine at {endpoint} {reason}; {purpose} needs Podman on this machine (its unix socket). Use profile `network`, or run the server as a package or command in the sandbox"
        ))
    };
    if !is_local(endpoint) {
        return Err(refuse("is not on this machine".into()));
    }
    let version = docker.version().await.map_err(|e| refuse(format!("did not say what it is ({e})")))?;
    let names: Vec<&str> = version.components.iter().flatten().map(|c| c.name.as_str()).collect();
    if !is_podman(&names) {
        return Err(refuse(format!("is not Podman (components: {})", names.join(", "))));
    }
    Ok(())
}

/// Whether `endpoint` is a unix socket (on this machine).
pub fn is_local(endpoint: &str) -> bool {
    endpoint.starts_with("unix://") || endpoint.starts_with('/')
}

/// Whether an engine's version components name Podman.
pub fn is_podman(components: &[&str]) -> bool {
    components.iter().any(|c| c.to_ascii_lowercase().starts_with("podman"))
}

/// A client for `endpoint` that answered a ping.
pub async fn ping(endpoint: &str) -> Result<Docker, String> {
    let docker = client_for(endpoint).map_err(|e| match e {
        ContainerError::Engine { reason, .. } => reason,
        other => other.to_string(),
    })?;
    match tokio::time::timeout(PING_TIMEOUT, docker.ping()).await {
        Ok(Ok(_)) => Ok(docker),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} s", PING_TIMEOUT.as_secs())),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn docker_host_is_the_only_candidate_when_set() {
        assert_eq!(candidates(env(&[("DOCKER_HOST", "unix:///x.sock")])), ["unix:///x.sock"]);
        assert_eq!(candidates(env(&[("CONTAINER_HOST", "unix:///p.sock")])), ["unix:///p.sock"]);
        let defaults = candidates(env(&[("XDG_RUNTIME_DIR", "/run/user/1000"), ("DOCKER_HOST", " ")]));
        assert_eq!(
            defaults,
            [
                "unix:///run/user/1000/podman/podman.sock",
                "unix:///run/podman/podman.sock",
                "unix:///var/run/docker.sock"
            ]
        );
    }

    #[test]
    fn the_previous_engine_goes_first_unless_the_environment_names_one() {
        let none = env(&[]);
        let got = with_previous(candidates(&none), Some("unix:///w/podman.sock"), &none);
        assert_eq!(got[0], "unix:///w/podman.sock");
        assert_eq!(got.len(), 3);
        let named = env(&[("DOCKER_HOST", "unix:///x.sock")]);
        assert_eq!(with_previous(candidates(&named), Some("unix:///w/podman.sock"), &named), ["unix:///x.sock"]);
    }

    #[test]
    fn only_a_local_podman_joins_our_namespaces() {
        assert!(is_local("unix:///run/podman/podman.sock") && is_local("/run/podman/podman.sock"));
        assert!(!is_local("tcp://10.0.0.1:2375") && !is_local("http://h:2375"));
        assert!(is_podman(&["Podman Engine", "Conmon", "OCI Runtime (runc)"]));
        assert!(!is_podman(&["Engine", "containerd", "runc", "docker-init"]));
    }

    #[tokio::test]
    async fn no_engine_names_every_place_tried() {
        let dir = tempfile::tempdir().unwrap();
        let missing = format!("unix://{}", dir.path().join("none.sock").display());
        // A socket file nobody accepts on.
        let dead = dir.path().join("dead.sock");
        drop(std::os::unix::net::UnixListener::bind(&dead).unwrap());
        let dead = format!("unix://{}", dead.display());
        let err = connect_among(&[missing.clone(), dead.clone()]).await.unwrap_err().to_string();
        assert!(err.contains(&missing) && err.contains(&dead), "{err}");
        assert!(err.contains("no container engine answers"), "{err}");
    }
}
