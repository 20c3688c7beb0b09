//! The seam between the proxy and the runtimes: something that can start an MCP server
//! and hand back its stdin, stdout and stderr. The proxy never learns whether the child is
//! a local process, a container or a pod.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

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

/// The verified caller of one client session, as the proxy's front last saw it: the bearer
/// token of the session's latest authenticated request (a client may refresh its token
/// mid-session). It exists so that an in-process child (the vMCP) can exchange the caller's
/// token for its backends (RFC 8693); a process or container child never receives it.
/// Held in memory only, never logged (`Debug` hides it), dropped with the session's child.
#[derive(Clone, Default)]
pub struct CallerHandle(Arc<Mutex<Option<Arc<str>>>>);

impl CallerHandle {
    /// A handle holding `token` (the caller's bearer token, already verified).
    pub fn new(token: Option<Arc<str>>) -> CallerHandle {
        CallerHandle(Arc::new(Mutex::new(token)))
    }

    /// The caller's current token.
    pub fn token(&self) -> Option<Arc<str>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Records the token of the session's latest authenticated request.
    pub fn set(&self, token: Option<Arc<str>>) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = token;
    }

    /// How many holders share this handle (the front's registry keeps only weak ones).
    pub fn holders(&self) -> usize {
        Arc::strong_count(&self.0)
    }

    /// Runs `f` (the serving of one request) with this as the request's caller, so that a
    /// session child started while serving it can be given the handle.
    pub async fn scope<F: Future>(self, f: F) -> F::Output {
        REQUEST_CALLER.scope(self, f).await
    }

    /// The caller of the request being served (inside [`CallerHandle::scope`]).
    pub fn of_current_request() -> Option<CallerHandle> {
        REQUEST_CALLER.try_with(Clone::clone).ok()
    }

    /// A weak reference, for a registry that must not keep the token alive.
    pub fn downgrade(&self) -> WeakCallerHandle {
        WeakCallerHandle(Arc::downgrade(&self.0))
    }
}

tokio::task_local! {
    /// The caller of the request being served (set by the proxy's front).
    static REQUEST_CALLER: CallerHandle;
}

/// The `params._meta` member in which the proxy's front names the caller of a 2026-07-28
/// request it passes to an in-process child that uses callers (the vMCP, whose shared child
/// serves every modern caller): a one-shot ticket ([`CallerHandle::lend`]), never the token.
pub const CALLER_TICKET_META: &str = "apiary/callerTicket";
/// Tickets lent and not yet redeemed; past it the oldest is forgotten.
const MAX_TICKETS: usize = 4096;
/// How long a ticket can be redeemed (a request reaches its in-process child at once).
const TICKET_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// A table of one-shot tickets: a random name (128 bits) for a value handed to an in-process
/// child through the bytes of a request (`params._meta`), redeemed at most once, within
/// [`TICKET_TTL`]. Bounded: past its capacity the oldest outstanding ticket lapses. Redeeming
/// is a map lookup (every request of a gateway lends and redeems one). The caller ticket
/// ([`CALLER_TICKET_META`]) and the gateway's authorization ticket are two tables of it.
pub struct Tickets<T> {
    capacity: usize,
    table: Mutex<Table<T>>,
}

struct Table<T> {
    /// Outstanding tickets.
    by_name: std::collections::HashMap<String, (std::time::Instant, T)>,
    /// Names in lending order (redeemed ones linger until they reach the front or a compaction).
    order: std::collections::VecDeque<(String, std::time::Instant)>,
}

impl<T> Tickets<T> {
    /// An empty table holding at most [`MAX_TICKETS`] outstanding tickets.
    pub fn new() -> Tickets<T> {
        Tickets::with_capacity(MAX_TICKETS)
    }

    /// An empty table holding at most `capacity` (at least 1) outstanding tickets.
    pub fn with_capacity(capacity: usize) -> Tickets<T> {
        let table = Table { by_name: std::collections::HashMap::new(), order: std::collections::VecDeque::new() };
        Tickets { capacity: capacity.max(1), table: Mutex::new(table) }
    }

    /// Lends a ticket naming `value`; lapsed tickets (and the oldest, when full) are forgotten.
    pub fn lend(&self, value: T) -> String {
        let ticket = format!("{:032x}", rand::random::<u128>());
        let now = std::time::Instant::now();
        let mut guard = self.table.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let table = &mut *guard;
        while let Some((name, at)) = table.order.front() {
            let live = table.by_name.contains_key(name);
            if live && now.duration_since(*at) <= TICKET_TTL && table.by_name.len() < self.capacity {
                break;
            }
            if let Some((name, _)) = table.order.pop_front() {
                table.by_name.remove(&name);
            }
        }
        // Redeemed names behind a live one: dropped now and then, so `order` stays bounded.
        if table.order.len() >= self.capacity.saturating_mul(2) {
            let by_name = &table.by_name;
            table.order.retain(|(name, _)| by_name.contains_key(name));
        }
        table.order.push_back((ticket.clone(), now));
        table.by_name.insert(ticket.clone(), (now, value));
        ticket
    }

    /// The value a ticket names, once; `None` for a ticket unknown, redeemed or lapsed.
    pub fn redeem(&self, ticket: &str) -> Option<T> {
        let mut table = self.table.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (lent, value) = table.by_name.remove(ticket)?;
        (lent.elapsed() <= TICKET_TTL).then_some(value)
    }

    /// Tickets lent and not yet redeemed or forgotten.
    pub fn outstanding(&self) -> usize {
        self.table.lock().unwrap_or_else(std::sync::PoisonError::into_inner).by_name.len()
    }
}

impl<T> Default for Tickets<T> {
    fn default() -> Self {
        Tickets::new()
    }
}

impl<T> fmt::Debug for Tickets<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tickets").field("outstanding", &self.outstanding()).field("capacity", &self.capacity).finish()
    }
}

/// The caller tickets lent by the proxy's front.
static TICKETS: std::sync::LazyLock<Tickets<CallerHandle>> = std::sync::LazyLock::new(Tickets::new);

impl CallerHandle {
    /// A one-shot ticket (128 random bits) naming this handle, for a request handed to an
    /// in-process child through bytes ([`CALLER_TICKET_META`]); redeemed at most once, within
    /// a minute. The table is bounded: past [`MAX_TICKETS`] the oldest ticket lapses.
    pub fn lend(&self) -> String {
        TICKETS.lend(self.clone())
    }

    /// The handle a ticket names, once; `None` for a ticket unknown, redeemed or lapsed.
    pub fn redeem(ticket: &str) -> Option<CallerHandle> {
        TICKETS.redeem(ticket)
    }
}

impl fmt::Debug for CallerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CallerHandle(..)")
    }
}

/// A [`CallerHandle`] that does not keep the session's token alive.
#[derive(Clone, Default)]
pub struct WeakCallerHandle(std::sync::Weak<Mutex<Option<Arc<str>>>>);

impl WeakCallerHandle {
    /// The handle, while some child still holds it.
    pub fn upgrade(&self) -> Option<CallerHandle> {
        self.0.upgrade().map(CallerHandle)
    }
}

impl fmt::Debug for WeakCallerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WeakCallerHandle(..)")
    }
}

/// What the proxy knows about the child it starts, beyond the command.
#[derive(Debug, Clone, Default)]
pub struct LaunchContext {
    /// The caller of the session this child serves alone: set only for a session's own
    /// child, when the launcher asked for it ([`Launch::wants_caller`]) and the proxy
    /// authenticates callers.
    pub caller: Option<CallerHandle>,
}

/// Starts MCP server children. Called again for every restart and every new child.
pub trait Launch: Send + Sync + 'static {
    fn launch(&self) -> LaunchFuture<'_>;

    /// Starts a child knowing its context. Launchers that need nothing of it (processes,
    /// containers, pods) keep this default.
    fn launch_with(&self, context: LaunchContext) -> LaunchFuture<'_> {
        drop(context);
        self.launch()
    }

    /// Whether this launcher's children use the session's caller ([`LaunchContext::caller`]);
    /// the proxy keeps no caller token for those that do not.
    fn wants_caller(&self) -> bool {
        false
    }

    /// Whether this launcher's children may ever use the caller (a reloaded config may add a
    /// backend that does): the proxy tracks sessions' callers, on every request, only then.
    fn may_want_caller(&self) -> bool {
        self.wants_caller()
    }

    /// For a child that speaks HTTP but listens where the host's network cannot reach it (inside
    /// a private network namespace): the Unix socket on this machine through which its port is
    /// reached. The proxy's HTTP upstream then dials this socket instead of the target's TCP
    /// address (the URL, and so the `Host` header, stay the same). `None`: dial the address.
    fn upstream_socket(&self) -> Option<std::path::PathBuf> {
        None
    }

    /// What is launched, for logs ("npx -y @modelcontextprotocol/server-everything").
    fn describe(&self) -> String;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_caller_handle_is_shared_weakly_referenced_and_never_printed() {
        let handle = CallerHandle::new(Some(Arc::from("secret-token")));
        let held = handle.clone();
        let weak = handle.downgrade();
        handle.set(Some(Arc::from("refreshed")));
        assert_eq!(held.token().as_deref(), Some("refreshed"));
        assert_eq!(handle.holders(), 2);
        assert!(
            !format!("{handle:?} {weak:?} {:?}", LaunchContext { caller: Some(held.clone()) }).contains("refreshed")
        );
        drop((handle, held));
        assert!(weak.upgrade().is_none(), "the token goes with its last holder");
    }

    #[test]
    fn a_ticket_names_its_caller_once() {
        let handle = CallerHandle::new(Some(Arc::from("t-ticket")));
        let ticket = handle.lend();
        assert_eq!(ticket.len(), 32);
        assert!(CallerHandle::redeem("not-a-ticket").is_none());
        assert_eq!(CallerHandle::redeem(&ticket).unwrap().token().as_deref(), Some("t-ticket"));
        assert!(CallerHandle::redeem(&ticket).is_none(), "redeemed once only");
    }

    #[test]
    fn a_ticket_table_is_bounded_and_keeps_the_newest() {
        let table: Tickets<usize> = Tickets::new();
        let tickets: Vec<String> = (0..MAX_TICKETS + 3).map(|i| table.lend(i)).collect();
        assert_eq!(table.outstanding(), MAX_TICKETS);
        assert!(table.redeem(&tickets[0]).is_none(), "the oldest lapsed");
        assert_eq!(table.redeem(&tickets[MAX_TICKETS + 2]), Some(MAX_TICKETS + 2));
        assert_eq!(table.redeem(&tickets[3]), Some(3));
        assert_eq!(table.outstanding(), MAX_TICKETS - 2);
        assert_ne!(tickets[1], tickets[2], "random names");
    }

    #[test]
    fn redeemed_tickets_do_not_grow_the_table() {
        let table: Tickets<usize> = Tickets::with_capacity(8);
        let stuck = table.lend(0);
        for i in 1..1000 {
            let t = table.lend(i);
            assert_eq!(table.redeem(&t), Some(i));
        }
        assert_eq!(table.outstanding(), 1);
        assert!(table.table.lock().unwrap().order.len() <= 16, "bounded behind a ticket never redeemed");
        assert_eq!(table.redeem(&stuck), Some(0));
    }

    #[tokio::test]
    async fn the_request_caller_is_seen_only_inside_its_scope() {
        assert!(CallerHandle::of_current_request().is_none());
        let handle = CallerHandle::new(Some(Arc::from("t")));
        let seen = handle.clone().scope(async { CallerHandle::of_current_request() }).await;
        assert_eq!(seen.unwrap().token().as_deref(), Some("t"));
        assert!(CallerHandle::of_current_request().is_none());
    }
}
