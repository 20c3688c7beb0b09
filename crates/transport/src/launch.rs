//! The seam between the proxy and the runtimes: something that can start an MCP server
//! and hand back its stdin, stdout and stderr. The proxy never learns whether the child is
//! a local process, a container or a pod.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;

/// Why a child stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitReason {
    /// Exit status, when the child exited by itself.
    pub code: Option<i32>,
    /// The signal that ended it, when one did.
    pub signal: Option<i32>,
    /// A sentence for people: "exited with status 3", "killed by signal 9".
    pub description: String,
}

impl ExitReason {
    pub fn from_code(code: i32) -> Self {
        ExitReason { code: Some(code), signal: None, description: format!("exited with status {code}") }
    }

    pub fn from_signal(signal: i32) -> Self {
        ExitReason { code: None, signal: Some(signal), description: format!("killed by signal {signal}") }
    }

    pub fn other(description: impl Into<String>) -> Self {
        ExitReason { code: None, signal: None, description: description.into() }
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description)
    }
}

pub type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
pub type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// A started child. Dropping `kill` (or sending on it) stops the child; `exited` resolves
/// once it is gone, whoever stopped it.
pub struct ChildHandle {
    pub pid: Option<u32>,
    pub stdin: BoxWrite,
    pub stdout: BoxRead,
    pub stderr: Option<BoxRead>,
    pub exited: oneshot::Receiver<ExitReason>,
    pub kill: oneshot::Sender<()>,
}

impl fmt::Debug for ChildHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildHandle").field("pid", &self.pid).finish_non_exhaustive()
    }
}

/// A child could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("cannot start `{program}`: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("{0}")]
    Other(String),
}

pub type LaunchFuture<'a> = Pin<Box<dyn Future<Output = Result<ChildHandle, LaunchError>> + Send + 'a>>;

/// Starts MCP server children. Called again for every restart and every new child.
pub trait Launch: Send + Sync + 'static {
    fn launch(&self) -> LaunchFuture<'_>;

    /// What is launched, for logs ("npx -y @modelcontextprotocol/server-everything").
    fn describe(&self) -> String;
}
