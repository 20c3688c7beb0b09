//! The terminal half of `--remote-auth`: the login runs here, in the process the user started,
//! before the workload is reported started, and its session goes to a 0600 file in the state
//! directory (`remote-auth/<name>.json`) that the proxy resumes and keeps current.
//!
//! Why a file rather than a pipe to the detached proxy: the session must outlive that proxy
//! anyway (`apiary stop` then `start` resumes without a new login while the refresh token is
//! valid), so the hand-off and the persistence are one mechanism; the file is private to the
//! user (0600 in the 0700 state directory), never in argv, the environment or the RunConfig, and
//! `apiary rm` deletes it.

use std::path::PathBuf;

use anyhow::Context;
use apiary_config::RunConfig;
use apiary_policy::outgoing::{persist, remote_auth_config};
use apiary_policy::remote_auth::{RemoteAuth, RemoteAuthSnapshot, SessionFileError};
use apiary_runtime::state::StateDir;

/// Whether an existing session may be resumed instead of logging in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Login {
    /// `apiary run`: a new login.
    Fresh,
    /// `apiary start`/`restart`: resume the saved session; log in only when it is gone.
    Resume,
}

/// The session file of workload `name`.
pub fn session_path(state: &StateDir, name: &str) -> anyhow::Result<PathBuf> {
    // Checks the name as every state path does.
    state.record_path(name)?;
    Ok(state.root().join("remote-auth").join(format!("{name}.json")))
}

/// The session file of `apiary proxy NAME` (removed when it exits).
pub fn proxy_session_path(state: &StateDir, name: &str) -> anyhow::Result<PathBuf> {
    state.record_path(name)?;
    Ok(state.root().join("remote-auth").join("proxy").join(format!("{name}.json")))
}

/// Deletes the session of `name`, if any (`apiary rm`).
pub fn remove(state: &StateDir, name: &str) -> anyhow::Result<()> {
    let path = session_path(state, name)?;
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Points the proxy of `config` at its session file, says what to do when it expires, and
/// hands it a client secret given on the command line (in memory only).
pub fn attach(config: &mut RunConfig, path: PathBuf, hint: String, secret: Option<&str>) {
    if let Some(r) = config.policy.outgoing.remote_auth.as_mut() {
        r.session_file = Some(path);
        r.relogin_hint = Some(hint);
        if let Some(s) = secret {
            r.client_secret = Some(s.to_owned());
        }
    }
}

/// The hint a detached workload's proxy gives when its login has expired.
pub fn workload_hint(name: &str) -> String {
    format!("run `apiary restart {name}` in a terminal to log in again")
}

/// Makes sure `config`'s remote login has a live session in `path` before its proxy starts:
/// resumes it (one refresh proves it) or logs in here, in the terminal. `secret` is a client
/// secret given on the command line (this process has it; its environment may not).
pub async fn ensure(
    config: &RunConfig,
    path: &std::path::Path,
    how: Login,
    secret: Option<&str>,
) -> anyhow::Result<()> {
    let Some(settings) = &config.policy.outgoing.remote_auth else { return Ok(()) };
    let mut settings = settings.clone();
    if let Some(s) = secret {
        settings.client_secret = Some(s.to_owned());
    }
    let mut cfg = remote_auth_config(&settings).context("--remote-auth")?;
    cfg.on_tokens = Some(persist(path.to_path_buf()));
    if how == Login::Resume {
        match RemoteAuthSnapshot::load(path) {
            Ok(snap) => {
                let auth = RemoteAuth::resume(cfg.clone(), snap).context("resuming the remote login")?;
                match auth.access_token().await {
                    Ok(_) => {
                        // A token that did not need a refresh was not written back by the hook.
                        auth.snapshot()?.save(path)?;
                        tracing::info!(workload = %config.name, "remote auth: resumed the saved login");
                        return Ok(());
                    }
                    Err(e) if e.needs_login() => {
                        eprintln!("The saved login to {} has expired ({e}); logging in again.", remote_url(config));
                    }
                    Err(e) => return Err(e).context("the saved remote login cannot be refreshed now; try again later"),
                }
            }
            Err(SessionFileError::Missing(_)) => {}
            Err(e @ SessionFileError::Corrupt(_)) => eprintln!("{e}; logging in again."),
            Err(e) => return Err(e.into()),
        }
    }
    let url = remote_url(config);
    RemoteAuth::login(cfg, &url).await.with_context(|| format!("logging in for {url}"))?;
    tracing::info!(workload = %config.name, "remote auth: logged in");
    // The login's hook saved the session; check it is there before the proxy looks for it.
    RemoteAuthSnapshot::load(path).context("saving the remote login")?;
    Ok(())
}

fn remote_url(config: &RunConfig) -> String {
    match &config.source {
        apiary_config::Source::Remote(r) => r.url.clone(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn session_paths_are_per_workload_and_checked() {
        let state = StateDir::at("/tmp/st");
        assert_eq!(session_path(&state, "fetch").unwrap(), PathBuf::from("/tmp/st/remote-auth/fetch.json"));
        assert_eq!(proxy_session_path(&state, "fetch").unwrap(), PathBuf::from("/tmp/st/remote-auth/proxy/fetch.json"));
        assert!(session_path(&state, "../x").is_err());
    }

    #[test]
    fn attach_sets_the_runtime_fields_only_with_remote_auth() {
        let mut c = RunConfig::new("w", apiary_config::Source::remote("https://r.example/mcp"));
        attach(&mut c, PathBuf::from("/p"), "h".into(), None);
        assert!(c.policy.outgoing.remote_auth.is_none());
        c.policy.outgoing.remote_auth = Some(apiary_config::RemoteAuthSettings::default());
        attach(&mut c, PathBuf::from("/session-file"), workload_hint("w"), Some("s3cret"));
        let r = c.policy.outgoing.remote_auth.as_ref().unwrap();
        assert_eq!(r.session_file.as_deref(), Some(std::path::Path::new("/session-file")));
        assert!(r.relogin_hint.as_deref().unwrap().contains("apiary restart w"));
        assert_eq!(r.client_secret.as_deref(), Some("s3cret"));
        // Never saved, never shown.
        let text = serde_json::to_string(&c).unwrap();
        assert!(
            !text.contains("session-file") && !text.contains("apiary restart") && !text.contains("s3cret"),
            "{text}"
        );
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
