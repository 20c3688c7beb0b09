//! CPU pinning, like `taskset`: the load tool pins itself before its runtime starts (threads
//! inherit the mask), and pins every thread of the measured processes so load and target do not
//! fight over one core.

use std::path::Path;

use rustix::process::Pid;
use rustix::thread::{CpuSet, sched_setaffinity};

use crate::cli::CpuList;
use crate::procfs::{self, ProcError};

/// A failure to pin.
#[derive(Debug, thiserror::Error)]
pub enum AffinityError {
    #[error("no CPU given")]
    Empty,
    #[error("CPU {0} is beyond what the kernel accepts")]
    TooHigh(usize),
    #[error("cannot pin thread {tid}: {source}")]
    Set { tid: u32, source: std::io::Error },
    #[error(transparent)]
    Proc(#[from] ProcError),
}

fn cpu_set(cpus: &CpuList) -> Result<CpuSet, AffinityError> {
    if cpus.0.is_empty() {
        return Err(AffinityError::Empty);
    }
    let mut set = CpuSet::new();
    for &cpu in &cpus.0 {
        if cpu >= CpuSet::MAX_CPU {
            return Err(AffinityError::TooHigh(cpu));
        }
        set.set(cpu);
    }
    Ok(set)
}

/// Pins the calling thread; threads it starts afterwards inherit the mask.
pub fn pin_current_thread(cpus: &CpuList) -> Result<(), AffinityError> {
    let set = cpu_set(cpus)?;
    sched_setaffinity(None, &set).map_err(|e| AffinityError::Set { tid: 0, source: e.into() })
}

/// Pins every thread of every process in `pids`. Returns how many threads were pinned. A thread
/// that exits between the listing and the call is skipped.
pub fn pin_processes(proc_root: &Path, pids: &[u32], cpus: &CpuList) -> Result<usize, AffinityError> {
    let set = cpu_set(cpus)?;
    let mut pinned = 0;
    for &pid in pids {
        // A descendant may exit between the walk that listed it and this read: a process
        // that is gone needs no pinning, just as a thread gone before `sched_setaffinity`.
        let tids = match procfs::tasks(proc_root, pid) {
            Ok(tids) => tids,
            Err(ProcError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e.into()),
        };
        for tid in tids {
            let Some(raw) = i32::try_from(tid).ok().and_then(Pid::from_raw) else { continue };
            match sched_setaffinity(Some(raw), &set) {
                Ok(()) => pinned += 1,
                Err(rustix::io::Errno::SRCH) => {}
                Err(e) => return Err(AffinityError::Set { tid, source: e.into() }),
            }
        }
    }
    Ok(pinned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_huge_cpu_sets_are_refused() {
        assert!(matches!(cpu_set(&CpuList(vec![])), Err(AffinityError::Empty)));
        assert!(matches!(cpu_set(&CpuList(vec![CpuSet::MAX_CPU])), Err(AffinityError::TooHigh(_))));
        let set = cpu_set(&CpuList(vec![0, 2])).unwrap();
        assert!(set.is_set(0) && !set.is_set(1) && set.is_set(2));
    }

    #[test]
    fn a_process_gone_before_pinning_is_skipped_not_an_error() {
        let root = std::env::temp_dir().join(format!("apiary-affinity-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        // No `<root>/4242/task`: the process exited after the walk listed it.
        let pinned = pin_processes(&root, &[4242], &CpuList(vec![0])).unwrap();
        assert_eq!(pinned, 0);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
