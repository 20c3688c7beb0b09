//! Reads what the report needs from Linux's /proc: a process's CPU time (utime+stime, all its
//! threads) and parent from `/proc/<pid>/stat`, its resident memory from `/proc/<pid>/status`,
//! and the process tree below a set of pids, so a proxy's stdio child is measured with it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A failure to read or understand a /proc file.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cannot parse {path}: {what}")]
    Parse { path: PathBuf, what: &'static str },
}

/// The fields of `/proc/<pid>/stat` the report uses. Times are in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub pid: u32,
    pub ppid: u32,
    pub utime: u64,
    pub stime: u64,
    /// Start time after boot; with the pid it names a process even if pids are reused.
    pub starttime: u64,
}

impl Stat {
    pub fn cpu_ticks(&self) -> u64 {
        self.utime + self.stime
    }
}

/// Parses the text of `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may
/// itself contain spaces and parentheses, so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Result<Stat, &'static str> {
    let open = text.find('(').ok_or("no `(` before the command name")?;
    let close = text.rfind(')').ok_or("no `)` after the command name")?;
    let pid = text[..open].trim().parse().map_err(|_| "bad pid")?;
    // Fields after the name, numbered from 3 (state) in proc(5).
    let rest: Vec<&str> = text.get(close + 1..).ok_or("truncated")?.split_ascii_whitespace().collect();
    let field = |n: usize| -> Result<u64, &'static str> {
        rest.get(n - 3).ok_or("too few fields")?.parse().map_err(|_| "a field is not a number")
    };
    Ok(Stat {
        pid,
        ppid: u32::try_from(field(4)?).map_err(|_| "bad ppid")?,
        utime: field(14)?,
        stime: field(15)?,
        starttime: field(22)?,
    })
}

/// Parses `VmRSS` (in KiB) from the text of `/proc/<pid>/status`. Kernel threads and zombies
/// have no such line: `None`.
pub fn parse_vm_rss_kib(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut words = line["VmRSS:".len()..].split_ascii_whitespace();
    let value = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") | None => Some(value),
        Some(_) => None,
    }
}

fn read(path: &Path) -> Result<String, ProcError> {
    std::fs::read_to_string(path).map_err(|source| ProcError::Io { path: path.to_owned(), source })
}

/// `/proc/<pid>/stat` of one process.
pub fn read_stat(proc_root: &Path, pid: u32) -> Result<Stat, ProcError> {
    let path = proc_root.join(pid.to_string()).join("stat");
    let text = read(&path)?;
    parse_stat(&text).map_err(|what| ProcError::Parse { path, what })
}

/// `VmRSS` of one process in KiB (0 when it has none).
pub fn read_rss_kib(proc_root: &Path, pid: u32) -> Result<u64, ProcError> {
    let path = proc_root.join(pid.to_string()).join("status");
    Ok(parse_vm_rss_kib(&read(&path)?).unwrap_or(0))
}

/// The stat of every process now visible under `proc_root`. Processes that exit while the
/// directory is walked are skipped.
pub fn all_stats(proc_root: &Path) -> Result<Vec<Stat>, ProcError> {
    let entries =
        std::fs::read_dir(proc_root).map_err(|source| ProcError::Io { path: proc_root.to_owned(), source })?;
    let mut stats = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        match read_stat(proc_root, pid) {
            Ok(stat) => stats.push(stat),
            // Gone between the listing and the read.
            Err(ProcError::Io { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(stats)
}

/// The given roots and all their descendants, among `stats`. A root missing from `stats` is
/// left out (it has exited).
pub fn tree(stats: &[Stat], roots: &[u32]) -> Vec<Stat> {
    let mut children: BTreeMap<u32, Vec<&Stat>> = BTreeMap::new();
    let mut by_pid: BTreeMap<u32, &Stat> = BTreeMap::new();
    for s in stats {
        children.entry(s.ppid).or_default().push(s);
        by_pid.insert(s.pid, s);
    }
    let mut seen = BTreeSet::new();
    let mut queue: Vec<&Stat> = roots.iter().filter_map(|p| by_pid.get(p).copied()).collect();
    let mut out = Vec::new();
    while let Some(s) = queue.pop() {
        if !seen.insert(s.pid) {
            continue;
        }
        out.push(*s);
        if let Some(kids) = children.get(&s.pid) {
            queue.extend(kids.iter().copied());
        }
    }
    out.sort_by_key(|s| s.pid);
    out
}

/// CPU ticks the processes of `end` used since `start`. A process only in `end` started inside
/// the window, so all its time counts; one only in `start` exited and its time is lost (its
/// parent's `cutime` is not read).
pub fn cpu_ticks_between(start: &[Stat], end: &[Stat]) -> u64 {
    let before: BTreeMap<(u32, u64), u64> = start.iter().map(|s| ((s.pid, s.starttime), s.cpu_ticks())).collect();
    end.iter().map(|s| s.cpu_ticks().saturating_sub(before.get(&(s.pid, s.starttime)).copied().unwrap_or(0))).sum()
}

/// Summed VmRSS of `pids` in KiB; a process that exited meanwhile counts 0.
pub fn rss_kib(proc_root: &Path, pids: impl IntoIterator<Item = u32>) -> u64 {
    pids.into_iter().map(|p| read_rss_kib(proc_root, p).unwrap_or(0)).sum()
}

/// Thread ids of a process (`/proc/<pid>/task`).
pub fn tasks(proc_root: &Path, pid: u32) -> Result<Vec<u32>, ProcError> {
    let path = proc_root.join(pid.to_string()).join("task");
    let entries = std::fs::read_dir(&path).map_err(|source| ProcError::Io { path: path.clone(), source })?;
    let mut tids: Vec<u32> =
        entries.flatten().filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok())).collect();
    tids.sort_unstable();
    Ok(tids)
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, 100 almost everywhere).
pub fn ticks_per_second() -> u64 {
    rustix::param::clock_ticks_per_second()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (apiary proxy (x)) S 4200 4242 4200 34816 4242 4194304 2451 0 0 0 \
        125 37 0 0 20 0 9 0 987654 1169018880 4321 18446744073709551615 1 1 0 0 0 0 0 4096 17664 \
        0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n";

    const STATUS: &str = "Name:\tapiary\nUmask:\t0022\nState:\tS (sleeping)\nVmPeak:\t 1200000 kB\n\
        VmSize:\t 1141620 kB\nVmHWM:\t   20480 kB\nVmRSS:\t   17284 kB\nRssAnon:\t    6000 kB\nThreads:\t9\n";

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis() {
        let s = parse_stat(STAT).unwrap();
        assert_eq!(s, Stat { pid: 4242, ppid: 4200, utime: 125, stime: 37, starttime: 987654 });
        assert_eq!(s.cpu_ticks(), 162);
    }

    #[test]
    fn broken_stat_lines_are_errors() {
        assert!(parse_stat("").is_err());
        assert!(parse_stat("12 (x) S 1 2 3").is_err());
        assert!(parse_stat("x (y) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20").is_err());
    }

    #[test]
    fn vm_rss_is_read_in_kib() {
        assert_eq!(parse_vm_rss_kib(STATUS), Some(17284));
        // A kernel thread has no VmRSS line.
        assert_eq!(parse_vm_rss_kib("Name:\tkthreadd\nState:\tS (sleeping)\n"), None);
        assert_eq!(parse_vm_rss_kib("VmRSS:\t 12 MB\n"), None);
    }

    fn st(pid: u32, ppid: u32, ticks: u64, starttime: u64) -> Stat {
        Stat { pid, ppid, utime: ticks, stime: 0, starttime }
    }

    #[test]
    fn the_tree_holds_roots_and_all_descendants_once() {
        let stats = [st(1, 0, 0, 0), st(10, 1, 0, 5), st(11, 10, 0, 6), st(12, 11, 0, 7), st(20, 1, 0, 8)];
        let pids: Vec<u32> = tree(&stats, &[10, 11, 99]).iter().map(|s| s.pid).collect();
        assert_eq!(pids, vec![10, 11, 12]);
    }

    #[test]
    fn cpu_between_counts_new_processes_whole_and_reused_pids_as_new() {
        let start = [st(10, 1, 100, 5), st(11, 10, 50, 6), st(12, 10, 30, 7)];
        // 10 used 20 ticks; 11 exited (lost); 12 was replaced by a new process with the same pid;
        // 13 is new.
        let end = [st(10, 1, 120, 5), st(12, 10, 4, 90), st(13, 10, 3, 91)];
        assert_eq!(cpu_ticks_between(&start, &end), 20 + 4 + 3);
    }

    #[test]
    fn this_process_is_readable() {
        let root = Path::new("/proc");
        let me = std::process::id();
        let stat = read_stat(root, me).unwrap();
        assert_eq!(stat.pid, me);
        assert!(read_rss_kib(root, me).unwrap() > 0);
        assert!(tasks(root, me).unwrap().contains(&me));
        assert!(tree(&all_stats(root).unwrap(), &[me]).iter().any(|s| s.pid == me));
    }
}
