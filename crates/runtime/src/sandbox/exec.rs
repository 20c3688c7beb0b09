//! The sandbox helper (`apiary __sandbox-exec`): namespaces, the filesystem view, the pid-1 reaper
//! and the confined server process. It must run while the process is single-threaded.

use std::ffi::OsString;
use std::fmt;
use std::os::unix::process::CommandExt;

use rustix::process::{Pid, Signal, WaitOptions};
use rustix::thread::UnshareFlags;

use super::sys::{self, Forked};
use super::{SandboxSpec, bridge, confine, fsview};

/// Exit code of the helper when the sandbox cannot be built (as `env` and `docker run` use 125).
pub const SETUP_FAILED: i32 = 125;

/// Exit code when the server program cannot be executed (as `env` uses 126).
pub const EXEC_FAILED: i32 = 126;

/// Signals the helper and its reaper leave to the server: the launcher signals the whole process
/// group, and the server alone decides what SIGTERM means. The server gets default handling back.
const FORWARDED_SIGNALS: &[i32] = &[libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT];

/// A step of building the sandbox that failed.
#[derive(Debug)]
pub struct SetupError {
    /// What was being done.
    pub step: String,
    /// Why it failed.
    pub source: std::io::Error,
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot {}: {}", self.step, self.source)
    }
}

impl std::error::Error for SetupError {}

fn say(line: &str) {
    eprintln!("apiary sandbox: {line}");
}

/// Builds the sandbox and runs `program args` in it; returns the exit code for the helper
/// (the server's, or 128+signal, or [`SETUP_FAILED`]).
pub fn run(spec: &SandboxSpec, program: &OsString, args: &[OsString]) -> i32 {
    if let Err(e) = rustix::thread::set_no_new_privs(true) {
        say(&format!("cannot set no_new_privs: {e}"));
        return SETUP_FAILED;
    }
    let uid = rustix::process::getuid().as_raw();
    let gid = rustix::process::getgid().as_raw();
    let mut namespaces = UnshareFlags::NEWUSER
        | UnshareFlags::NEWNS
        | UnshareFlags::NEWPID
        | UnshareFlags::NEWIPC
        | UnshareFlags::NEWUTS;
    if !spec.host_network {
        namespaces |= UnshareFlags::NEWNET;
    }
    if let Err(e) = sys::unshare(namespaces) {
        let msg = format!(
            "cannot create user, mount, pid, ipc, uts{} namespaces: {e} (are unprivileged user namespaces \
             disabled?)",
            if spec.host_network { "" } else { " and network" }
        );
        if !spec.allow_degraded {
            say(&format!(
                "{msg}; refusing to start the server unsandboxed (--allow-degraded-isolation to run it anyway)"
            ));
            return SETUP_FAILED;
        }
        say(&format!("{msg}; DEGRADED: no namespaces, no private filesystem view"));
        // No namespace, no bridge: an allow-list gets no network rather than port 3128 of the host.
        let spec = SandboxSpec { egress: None, inbound: None, ..spec.clone() };
        return confine_and_exec(&spec, program, args, &mut vec!["namespaces".into()]);
    }
    if let Err(e) = map_ids(uid, gid) {
        say(&format!("{e}"));
        return SETUP_FAILED;
    }
    sys::set_signals(FORWARDED_SIGNALS, true);
    match sys::fork() {
        Err(e) => {
            say(&format!("cannot fork the sandbox's init: {e}"));
            SETUP_FAILED
        }
        Ok(Forked::Parent(pid)) => wait_for(pid),
        Ok(Forked::Child) => sys::exit_now(init(spec, program, args)),
    }
}

/// The caller's uid and gid, mapped to themselves (so files keep their owners).
fn map_ids(uid: u32, gid: u32) -> Result<(), SetupError> {
    let write = |file: &str, text: String| {
        std::fs::write(file, text).map_err(|source| SetupError { step: format!("write {file}"), source })
    };
    write("/proc/self/setgroups", "deny".into())?;
    write("/proc/self/uid_map", format!("{uid} {uid} 1\n"))?;
    write("/proc/self/gid_map", format!("{gid} {gid} 1\n"))
}

/// Pid 1 of the new pid namespace: builds the view, starts the server and reaps every process
/// that ends up orphaned here until the server exits (then the kernel ends the rest).
fn init(spec: &SandboxSpec, program: &OsString, args: &[OsString]) -> i32 {
    // If the helper above dies (SIGKILL from the launcher), take the whole namespace with it.
    let _ = rustix::process::set_parent_process_death_signal(Some(Signal::KILL));
    let _ = rustix::system::sethostname(b"apiary-sandbox");
    // Bound on the host's path before the new root hides it; only meaningful in a namespace of
    // our own (with the host's network the server's port is reached directly).
    let inbound = match spec.inbound.as_ref().filter(|_| !spec.host_network) {
        Some(b) => match bridge::listen_inbound(b) {
            Ok(l) => Some((l, b.port)),
            Err(e) => {
                say(&e.to_string());
                return SETUP_FAILED;
            }
        },
        None => None,
    };
    let mut degraded = match fsview::enter(spec) {
        Ok(d) => d,
        Err(e) => {
            say(&e.to_string());
            return SETUP_FAILED;
        }
    };
    // Bound before the server exists, so its first connection finds the listener.
    let egress = match spec.egress.as_ref().map(bridge::listen).transpose() {
        Ok(l) => l,
        Err(e) => {
            say(&e.to_string());
            return SETUP_FAILED;
        }
    };
    match sys::fork() {
        Err(e) => {
            say(&format!("cannot fork the server: {e}"));
            SETUP_FAILED
        }
        Ok(Forked::Child) => {
            let _ = rustix::process::set_parent_process_death_signal(Some(Signal::KILL));
            sys::exit_now(confine_and_exec(spec, program, args, &mut degraded))
        }
        Ok(Forked::Parent(server)) => {
            // Threads only now, after the last fork.
            if let Some(listener) = egress {
                bridge::serve(listener);
            }
            if let Some((listener, port)) = inbound {
                bridge::serve_inbound(listener, port);
            }
            reap_until(server)
        }
    }
}

/// rlimits, capabilities, Landlock, seccomp, then `execve`. Returns only on failure.
fn confine_and_exec(spec: &SandboxSpec, program: &OsString, args: &[OsString], degraded: &mut Vec<String>) -> i32 {
    let steps = (|| {
        confine::set_rlimits(spec)?;
        confine::drop_capabilities()?;
        let status = confine::landlock(spec)?;
        if status != landlock::RulesetStatus::FullyEnforced {
            if !spec.allow_degraded {
                return Err(SetupError {
                    step: "enforce landlock fully".into(),
                    source: std::io::Error::other(format!("the kernel gives {status:?}")),
                });
            }
            degraded.push(format!("landlock {status:?}"));
        }
        // Built before it is installed: after it, nothing but execve is certain to be allowed.
        let programs = confine::seccomp_programs()?;
        sys::set_signals(FORWARDED_SIGNALS, false);
        confine::apply_seccomp(&programs)
    })();
    if let Err(e) = steps {
        say(&e.to_string());
        return SETUP_FAILED;
    }
    if !degraded.is_empty() {
        say(&format!("DEGRADED isolation: {}", degraded.join("; ")));
    }
    let e = std::process::Command::new(program).args(args).exec();
    say(&format!("cannot run {}: {e}", program.to_string_lossy()));
    EXEC_FAILED
}

/// Waits for `pid` and returns its exit code (128+signal when killed).
fn wait_for(pid: i32) -> i32 {
    let Some(pid) = Pid::from_raw(pid) else { return SETUP_FAILED };
    loop {
        match rustix::process::waitpid(Some(pid), WaitOptions::empty()) {
            Ok(Some((_, status))) => return code_of(status),
            Ok(None) => continue,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                say(&format!("cannot wait for the sandbox: {e}"));
                return SETUP_FAILED;
            }
        }
    }
}

/// Reaps every child (pid 1's duty) until `server` has exited; returns its exit code.
fn reap_until(server: i32) -> i32 {
    loop {
        match rustix::process::wait(WaitOptions::empty()) {
            Ok(Some((pid, status))) if pid.as_raw_nonzero().get() == server => return code_of(status),
            Ok(_) | Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                say(&format!("cannot wait for the server: {e}"));
                return SETUP_FAILED;
            }
        }
    }
}

fn code_of(status: rustix::process::WaitStatus) -> i32 {
    if let Some(code) = status.exit_status() {
        code
    } else if let Some(sig) = status.terminating_signal() {
        128 + sig
    } else {
        SETUP_FAILED
    }
}
