//! Test daemons (Keycloak, Jaeger) started as process groups: spawned from a long-lived thread
//! so their parent-death signal fires only when the test process ends, and stopped as a whole
//! group.

use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::{OnceLock, mpsc};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group};

/// Spawns `cmd` from a thread that lives as long as the process, so the child's
/// parent-death signal fires only when the process ends.
pub(crate) fn spawn_from_long_lived_thread(cmd: Command) -> io::Result<Child> {
    type Job = (Command, mpsc::Sender<io::Result<Child>>);
    static SPAWNER: OnceLock<Option<mpsc::Sender<Job>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (jobs, queue) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new().name("daemon-spawner".to_owned()).spawn(move || {
            // The sender sits in a static, so this loop ends only with the process.
            for (mut cmd, reply) in queue {
                let _ = reply.send(cmd.spawn());
            }
        });
        thread.ok().map(|_| jobs)
    });
    let Some(jobs) = spawner else {
        return Err(io::Error::other("cannot start the daemon-spawner thread"));
    };
    let (reply, answer) = mpsc::channel();
    jobs.send((cmd, reply)).map_err(|_| io::Error::other("the daemon-spawner thread is gone"))?;
    answer.recv().map_err(|_| io::Error::other("the daemon-spawner thread gave no answer"))?
}

/// SIGTERM to the group, then SIGKILL if any member is still alive after the grace period.
pub(crate) fn stop_group(child: &mut Child, grace: Duration) {
    let group = Pid::from_child(child);
    let _ = kill_process_group(group, Signal::TERM);
    let deadline = Instant::now() + grace;
    let mut reaped = false;
    while Instant::now() < deadline {
        reaped = reaped || matches!(child.try_wait(), Ok(Some(_)));
        if reaped && live_members(group.as_raw_nonzero().get()) == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = kill_process_group(group, Signal::KILL);
    let _ = child.kill();
    let _ = child.wait();
}

/// How many processes of group `pgid` are alive (zombies excluded: in a container nobody may
/// reap an orphaned `java`).
fn live_members(pgid: i32) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter(|entry| entry.file_name().to_str().is_some_and(|name| name.bytes().all(|b| b.is_ascii_digit())))
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("stat")).ok())
        .filter(|stat| {
            // Fields after the command name (which may hold spaces and parens): state, ppid, pgrp.
            let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                return false;
            };
            let mut fields = rest.split_whitespace();
            let state = fields.next();
            let pgrp = fields.nth(1).and_then(|f| f.parse::<i32>().ok());
            pgrp == Some(pgid) && state != Some("Z") && state != Some("X")
        })
        .count()
}

/// A loopback port free at the moment of asking (the daemon binds it a moment later; a
/// collision shows as a start failure naming the port in its log).
pub(crate) fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}

/// The first `name` on PATH that is a file.
pub(crate) fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests may unwrap
    use super::*;
    use std::os::unix::process::CommandExt;

    #[test]
    fn a_process_group_is_counted_and_stopped() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 60 & sleep 60; wait"]).process_group(0);
        let mut child = cmd.spawn().unwrap();
        let pgid = i32::try_from(child.id()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while live_members(pgid) < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(live_members(pgid), 3);
        stop_group(&mut child, Duration::from_secs(15));
        assert_eq!(live_members(pgid), 0);
    }
}
