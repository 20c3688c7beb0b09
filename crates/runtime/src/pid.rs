//! Process ids read back from state files: is this still the process we recorded, and signalling it
//! or its process group. A pid alone can be reused after its process dies, so records also keep the
//! process's start time (from `/proc/<pid>/stat`) and a match requires both.

use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process, kill_process_group, test_kill_process, test_kill_process_group};
use serde::{Deserialize, Serialize};

/// A process as recorded: its id and, where the system tells, when it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcRef {
    /// Process id.
    pub pid: u32,
    /// Start time in clock ticks since boot (field 22 of `/proc/<pid>/stat`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ticks: Option<u64>,
}

impl ProcRef {
    /// Records `pid` together with its current start time.
    pub fn capture(pid: u32) -> Self {
        ProcRef { pid, start_ticks: start_ticks(pid) }
    }

    /// True while the recorded process still runs (not a zombie) and, when a start time was
    /// recorded, the pid still belongs to that same process.
    pub fn is_alive(&self) -> bool {
        let Some(pid) = to_pid(self.pid) else {
            return false;
        };
        match test_kill_process(pid) {
            Ok(()) => {}
            // EPERM: it exists but belongs to someone else, which our own records never describe
            // unless the pid was reused.
            Err(_) => return false,
        }
        match proc_stat(self.pid) {
            Some(stat) => {
                if stat.state == 'Z' || stat.state == 'X' {
                    return false;
                }
                match self.start_ticks {
                    Some(t) => stat.start_ticks == t,
                    None => true,
                }
            }
            // No /proc (or it vanished in between): trust the signal test.
            None => true,
        }
    }

    /// Sends `signal` to the process, if it is still the recorded one.
    pub fn signal(&self, signal: Signal) -> bool {
        if !self.is_alive() {
            return false;
        }
        to_pid(self.pid).is_some_and(|p| kill_process(p, signal).is_ok())
    }

    /// Sends `signal` to the process group this process leads (children Apiary starts lead their
    /// own group). When the leader is gone but members remain, they are orphans of this child and
    /// get the signal too; when the pid now names some other live process, nothing is sent.
    pub fn signal_group(&self, signal: Signal) -> bool {
        let Some(pgid) = to_pid(self.pid) else {
            return false;
        };
        if test_kill_process_group(pgid).is_err() {
            return false;
        }
        let leader_running = test_kill_process(pgid).is_ok();
        if leader_running && !self.is_alive() {
            // The pid was reused (or the leader is a zombie, whose group members still count).
            let zombie = proc_stat(self.pid).is_some_and(|s| s.state == 'Z');
            if !zombie {
                return false;
            }
        }
        kill_process_group(pgid, signal).is_ok()
    }

    /// True while any process of the group led by this pid remains.
    pub fn group_exists(&self) -> bool {
        to_pid(self.pid).is_some_and(|p| test_kill_process_group(p).is_ok())
    }
}

/// Waits until `done` returns true or `timeout` passes, checking every 25 ms; returns `done()`.
pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Signals a process group by id (a no-op for 0, which would mean "my own group").
pub fn signal_group_id(pgid: u32, signal: Signal) -> bool {
    to_pid(pgid).is_some_and(|p| kill_process_group(p, signal).is_ok())
}

/// True while a process group with this id has members.
pub fn group_id_exists(pgid: u32) -> bool {
    to_pid(pgid).is_some_and(|p| test_kill_process_group(p).is_ok())
}

fn to_pid(raw: u32) -> Option<Pid> {
    i32::try_from(raw).ok().and_then(Pid::from_raw)
}

struct Stat {
    state: char,
    start_ticks: u64,
}

/// The start time of `pid`, if `/proc` tells.
pub fn start_ticks(pid: u32) -> Option<u64> {
    proc_stat(pid).map(|s| s.start_ticks)
}

fn proc_stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may itself hold
/// spaces and parentheses, so fields are counted from the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let after = &text[text.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // Fields 4..=21 come next; the start time is field 22.
    let start_ticks = fields.nth(18)?.parse().ok()?;
    Some(Stat { state, start_ticks })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        let line = "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.state, 'S');
        assert_eq!(s.start_ticks, 98765);
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn own_process_is_alive_and_a_wrong_start_time_is_not() {
        let me = ProcRef::capture(std::process::id());
        assert!(me.is_alive());
        assert!(me.start_ticks.is_some());
        let other = ProcRef { start_ticks: me.start_ticks.map(|t| t + 1), ..me };
        assert!(!other.is_alive());
        assert!(!ProcRef { pid: 0, start_ticks: None }.is_alive());
    }
}
