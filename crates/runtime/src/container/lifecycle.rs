//! One container's life through the Engine API: the image made present, create, attach (before
//! start, so no early output is lost), start, then a task that pumps the demultiplexed output,
//! waits for the exit, and stops and removes the container when the handle's `kill` fires or is
//! dropped. Nothing is left behind: a container that could not be started is removed at once.

use std::collections::HashMap;
use std::time::Duration;

use apiary_transport::launch::{BoxRead, BoxWrite, ChildHandle, ExitReason};
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::query_parameters::{
    AttachContainerOptions, CreateContainerOptions, CreateImageOptions, ListContainersOptions, RemoveContainerOptions,
    StopContainerOptions, WaitContainerOptions,
};
use futures::StreamExt;
use tokio::io::{AsyncWriteExt, DuplexStream};
use tokio::sync::oneshot;

use std::sync::Arc;

use super::egress::EgressNamespace;
use super::inbound::InboundForwarder;
use super::spec::{Network, WORKLOAD_LABEL};
use super::{ContainerError, ContainerLauncher};
use crate::sandbox::egress::EgressLimits;

/// Bytes buffered between the attach stream and the proxy, per stream. A full buffer pushes
/// back on the container rather than growing.
const STREAM_BUFFER: usize = 64 * 1024;

/// Seconds a container gets between SIGTERM (forwarded by its init) and SIGKILL.
const STOP_GRACE_SECS: i32 = 2;

/// Longest wait for a stopped container to be reported not running before it is removed anyway.
const EXIT_WAIT: Duration = Duration::from_secs(10);

/// How long the exit wait may stay open: the container's whole life.
const LIFETIME_WAIT: Duration = Duration::from_secs(365 * 24 * 3600);

/// Most containers of one workload listed for removal at once.
const LIST_LIMIT: i32 = 1000;

/// Times a container list that cannot be decoded is asked again, and the pause between.
const LIST_ATTEMPTS: u32 = 40;
const LIST_RETRY_PAUSE: Duration = Duration::from_millis(250);

/// Finds the image locally, or pulls it within `limit`. A missing image is pulled rather than
/// refused, as `docker run` does; a local one is never pulled again.
pub async fn ensure_image(docker: &Docker, image: &str, limit: Duration) -> Result<(), ContainerError> {
    match docker.inspect_image(image).await {
        Ok(_) => return Ok(()),
        Err(BollardError::DockerResponseServerError { status_code: 404, .. }) => {}
        Err(source) => return Err(ContainerError::Api { what: format!("inspect image {image}"), source }),
    }
    tracing::info!(image, "pulling the image");
    let options = CreateImageOptions { from_image: Some(image.to_owned()), ..CreateImageOptions::default() };
    let pull = async {
        let mut progress = docker.clone().with_timeout(limit).create_image(Some(options), None, None);
        while let Some(step) = progress.next().await {
            step.map_err(|e| e.to_string())?;
        }
        Ok::<(), String>(())
    };
    match tokio::time::timeout(limit, pull).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(reason)) => Err(ContainerError::Pull { image: image.to_owned(), reason }),
        Err(_) => Err(ContainerError::Pull { image: image.to_owned(), reason: format!("not done after {limit:?}") }),
    }
}

/// Creates, attaches and starts one container of `launcher`'s spec.
pub async fn start(launcher: &ContainerLauncher) -> Result<ChildHandle, ContainerError> {
    let docker = &launcher.docker;
    let spec = &launcher.spec;
    launcher.ensure_image().await?;
    let name = format!("apiary-{}-{}", spec.workload, suffix());
    let mut body = spec.create_body();
    // The allow-list's namespace and proxy live as long as this container (until `supervise`
    // has removed it).
    let egress = match (&spec.network, spec.private_http_port()) {
        (Network::AllowList(allow), _) => {
            Some(Arc::new(EgressNamespace::start(allow.clone(), EgressLimits::default()).await?))
        }
        // An HTTP server without network: a namespace of ours, so that its port can be dialled.
        (Network::None, Some(_)) => Some(Arc::new(EgressNamespace::start_private().await?)),
        (Network::None | Network::Default, _) => None,
    };
    if let (Some(ns), Some(h)) = (&egress, body.host_config.as_mut()) {
        h.network_mode = Some(ns.network_mode());
    }
    // The proxy's way in, for as long as the container lives.
    let inbound = match (spec.private_http_port(), &egress) {
        (Some(port), Some(ns)) => {
            let path = launcher.upstream_socket.as_deref().ok_or(ContainerError::HttpNeedsSocket)?;
            Some(InboundForwarder::start(path, Arc::clone(ns), port)?)
        }
        _ => None,
    };
    if !launcher.secret_env.is_empty() {
        let env = body.env.get_or_insert_with(Vec::new);
        // Later entries win in the engine, as in `spec.env`.
        env.extend(launcher.secret_env.iter().map(|(k, v)| format!("{k}={}", v.as_str())));
    }
    // Names only: values may be secrets.
    let env_names: Vec<&str> =
        body.env.iter().flatten().map(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k)).collect();
    let network_mode = body.host_config.as_ref().and_then(|h| h.network_mode.as_deref()).unwrap_or_default();
    tracing::debug!(container = name, image = spec.image, network_mode, env = ?env_names, "creating the container");
    let created = docker
        .create_container(
            Some(CreateContainerOptions { name: Some(name.clone()), ..CreateContainerOptions::default() }),
            body,
        )
        .await
        .map_err(|source| ContainerError::Api {
            what: format!("create container {name} from {}", spec.image),
            source,
        })?;
    for warning in &created.warnings {
        tracing::warn!(container = name, "engine: {warning}");
    }
    let id = created.id;
    let stdio = spec.http_port.is_none();
    let attach = AttachContainerOptions {
        stream: true,
        stdin: stdio,
        stdout: true,
        stderr: true,
        ..AttachContainerOptions::default()
    };
    let attached = match docker.attach_container(&id, Some(attach)).await {
        Ok(a) => a,
        Err(source) => {
            remove(docker, &id).await;
            return Err(ContainerError::Api { what: format!("attach to container {name}"), source });
        }
    };
    if let Err(source) = docker.start_container(&id, None).await {
        remove(docker, &id).await;
        return Err(ContainerError::Api { what: format!("start container {name} (image {})", spec.image), source });
    }
    tracing::info!(container = name, id = short(&id), image = spec.image, "container started");

    let (stdout_w, stdout_r) = tokio::io::duplex(STREAM_BUFFER);
    let (stderr_target, stderr) = match &launcher.stderr_log {
        Some(log) => (StderrTo::Log(log.clone()), None),
        None => {
            let (w, r) = tokio::io::duplex(STREAM_BUFFER);
            (StderrTo::Pipe(w), Some(Box::new(r) as BoxRead))
        }
    };
    tokio::spawn(pump(attached.output, stdout_w, stderr_target));
    let stdin: BoxWrite = if stdio { Box::new(attached.input) } else { Box::new(tokio::io::sink()) };

    let (exit_tx, exited) = oneshot::channel();
    let (kill, kill_rx) = oneshot::channel();
    tokio::spawn(supervise(docker.clone(), id, name, kill_rx, exit_tx, (inbound, egress)));
    Ok(ChildHandle { pid: None, stdin, stdout: Box::new(stdout_r), stderr, exited, kill })
}

enum StderrTo {
    Pipe(DuplexStream),
    Log(std::sync::Arc<crate::log::LogFile>),
}

/// Splits the attach stream's frames into stdout and stderr until it ends. A line may span
/// frames; the reader joins them, so frames are passed on as bytes, never as messages.
async fn pump(
    mut output: std::pin::Pin<Box<dyn futures::Stream<Item = Result<LogOutput, BollardError>> + Send>>,
    mut stdout: DuplexStream,
    mut stderr: StderrTo,
) {
    let mut stdout_open = true;
    while let Some(frame) = output.next().await {
        match frame {
            Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                // A reader that went away stops getting bytes, but the stream is still drained
                // so the container never blocks on a full pipe.
                if stdout_open && stdout.write_all(&message).await.is_err() {
                    stdout_open = false;
                }
            }
            Ok(LogOutput::StdErr { message }) => match &mut stderr {
                StderrTo::Pipe(w) => {
                    let _ = w.write_all(&message).await;
                }
                StderrTo::Log(log) => {
                    if let Err(e) = log.append(&message) {
                        tracing::warn!(path = %log.path().display(), error = %e, "cannot write the server log");
                    }
                }
            },
            Ok(LogOutput::StdIn { .. }) => {}
            Err(e) => {
                tracing::debug!(error = %e, "the attach stream ended");
                break;
            }
        }
    }
}

/// Waits for the container to exit or for `kill`, then removes it and reports why it ended.
async fn supervise(
    docker: Docker,
    id: String,
    name: String,
    mut kill_rx: oneshot::Receiver<()>,
    exit_tx: oneshot::Sender<ExitReason>,
    network: (Option<InboundForwarder>, Option<Arc<EgressNamespace>>),
) {
    let waiter = docker.clone().with_timeout(LIFETIME_WAIT);
    let reason = tokio::select! {
        reason = wait_exit(&waiter, &id) => reason,
        _ = &mut kill_rx => {
            let stop = StopContainerOptions { t: Some(STOP_GRACE_SECS), ..StopContainerOptions::default() };
            if let Err(e) = docker.stop_container(&id, Some(stop)).await {
                tracing::debug!(container = name, error = %e, "stop");
            }
            match tokio::time::timeout(EXIT_WAIT, wait_exit(&waiter, &id)).await {
                Ok(reason) => reason,
                Err(_) => ExitReason::other("stopped (no exit status within the wait)"),
            }
        }
    };
    remove(&docker, &id).await;
    // The socket first (it holds the namespace too), before the exit lets a restart bind anew.
    drop(network);
    tracing::info!(container = name, reason = %reason, "container removed");
    let _ = exit_tx.send(reason);
}

/// The container's exit, as an [`ExitReason`].
async fn wait_exit(docker: &Docker, id: &str) -> ExitReason {
    let options = WaitContainerOptions { condition: "not-running".to_owned() };
    let mut stream = docker.wait_container(id, Some(options));
    match stream.next().await {
        Some(Ok(r)) => exit_reason(r.status_code),
        // bollard reports a non-zero status as an error carrying it.
        Some(Err(BollardError::DockerContainerWaitError { code, .. })) => exit_reason(code),
        Some(Err(e)) => ExitReason::other(format!("lost track of the container: {e}")),
        None => ExitReason::other("the engine ended the wait without a status"),
    }
}

/// A container's status: above 128 the engine's convention for "killed by signal N"; 137 is
/// also what the kernel's memory-limit killer leaves (the engine may not say OOMKilled).
pub fn exit_reason(code: i64) -> ExitReason {
    let code = i32::try_from(code).unwrap_or(i32::MAX);
    if (129..=159).contains(&code) {
        let signal = code - 128;
        let mut r = ExitReason::from_code(code);
        r.description = format!(
            "exited with status {code} (killed by signal {signal}{})",
            if signal == 9 { ", possibly at the memory limit" } else { "" }
        );
        return r;
    }
    ExitReason::from_code(code)
}

/// Removes a container, waiting first for it to be stopped (a forced delete races with a
/// container that is exiting by itself) and retrying once.
async fn remove(docker: &Docker, id: &str) {
    let options = RemoveContainerOptions { force: true, v: true, ..RemoveContainerOptions::default() };
    for attempt in 0..2 {
        match docker.remove_container(id, Some(options.clone())).await {
            Ok(()) | Err(BollardError::DockerResponseServerError { status_code: 404, .. }) => return,
            Err(e) if attempt == 0 => {
                tracing::debug!(id = short(id), error = %e, "remove, retrying");
                let _ = tokio::time::timeout(EXIT_WAIT, wait_exit(docker, id)).await;
            }
            Err(e) => tracing::warn!(id = short(id), error = %e, "cannot remove the container"),
        }
    }
}

/// Removes every container labelled with `workload`, running or not; returns how many.
pub async fn remove_workload_containers(docker: &Docker, workload: &str) -> Result<usize, ContainerError> {
    let filters = HashMap::from([("label".to_owned(), vec![format!("{WORKLOAD_LABEL}={workload}")])]);
    let options = ListContainersOptions {
        all: true,
        limit: Some(LIST_LIMIT),
        filters: Some(filters),
        ..ListContainersOptions::default()
    };
    let mut attempt = 0;
    let found = loop {
        attempt += 1;
        match docker.list_containers(Some(options.clone())).await {
            Ok(found) => break found,
            // Podman reports a container that has just exited as state `stopped`, which the
            // Engine API (and bollard) do not know, until its cleanup makes it `exited`
            // moments later: ask again rather than fail.
            Err(BollardError::JsonDataError { .. } | BollardError::JsonSerdeError { .. })
                if attempt < LIST_ATTEMPTS =>
            {
                tokio::time::sleep(LIST_RETRY_PAUSE).await;
            }
            Err(source) => {
                return Err(ContainerError::Api { what: format!("list the containers of {workload}"), source });
            }
        }
    };
    let mut removed = 0;
    for c in found {
        let Some(id) = c.id else { continue };
        let stop = StopContainerOptions { t: Some(STOP_GRACE_SECS), ..StopContainerOptions::default() };
        let _ = docker.stop_container(&id, Some(stop)).await;
        remove(docker, &id).await;
        removed += 1;
    }
    Ok(removed)
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// Eight random hex digits, so that several containers of one workload (one per session) and a
/// leftover of a crashed run never clash by name.
fn suffix() -> String {
    let mut bytes = [0u8; 4];
    if getrandom::fill(&mut bytes).is_err() {
        // The name only needs to differ from a sibling's; the clock does that well enough.
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        bytes = nanos.to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_above_128_name_the_signal() {
        assert_eq!(exit_reason(0).code, Some(0));
        assert_eq!(exit_reason(3).description, "exited with status 3");
        let killed = exit_reason(137);
        assert_eq!(killed.code, Some(137));
        assert!(killed.description.contains("signal 9") && killed.description.contains("memory"), "{killed}");
        assert!(exit_reason(143).description.contains("signal 15"));
    }

    #[test]
    fn suffixes_differ() {
        assert_ne!(suffix(), suffix());
        assert_eq!(suffix().len(), 8);
    }
}
