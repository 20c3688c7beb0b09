//! Gives back, once a proxy serves, the pages of the `apiary` binary that only starting it needed.
//!
//! Most of an idle proxy's resident memory is the binary's own code and read-only data, mapped
//! from the file: the kernel maps 64 KiB around every page a fault touches, so parsing the
//! command line, loading the configuration, starting the child and relocating the binary (its
//! 1.3 MiB `.rela.dyn`, read once by the dynamic loader) leave megabytes mapped that the serving
//! path never runs again. `MADV_DONTNEED` on those mappings drops them from this process; they
//! stay in the page cache, and whatever the proxy runs later faults back in (minor faults, the
//! first time only).
//!
//! Only mappings of the binary that are read-only and hold no written page are touched: a
//! private page once written (the relocated `.data.rel.ro`, a debugger's breakpoint) would be
//! reset to the file's content, so a mapping with any such page is left alone.
//!
//! The same is done again whenever the proxy is idle (next to no CPU used for [`IDLE_CHECK`])
//! after its resident size grew back: the code a burst of calls faulted in is dropped again,
//! and so is the free heap the allocator kept after it (`malloc_trim`). The first call after
//! an idle spell pays the minor faults of its code once more (a fraction of a millisecond).
#![allow(unsafe_code)]

use std::path::Path;
use std::time::Duration;

/// How often the proxy checks whether it is idle.
pub const IDLE_CHECK: Duration = Duration::from_secs(5);

/// What one [`release_startup_pages`] gave back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Released {
    /// Mappings of the binary dropped.
    pub mappings: usize,
    /// Their resident size just before, in KiB.
    pub rss_kib: u64,
}

/// Why nothing was given back.
#[derive(Debug, thiserror::Error)]
pub enum TrimError {
    #[error("cannot read /proc/self/smaps: {0}")]
    Smaps(#[source] std::io::Error),
    #[error("cannot find this binary's path: {0}")]
    Exe(#[source] std::io::Error),
    #[error("madvise(MADV_DONTNEED) on {start:#x}..{end:#x}: {source}")]
    Madvise { start: usize, end: usize, source: std::io::Error },
}

/// One mapping that may be dropped: `[start, end)` and its resident KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Droppable {
    start: usize,
    end: usize,
    rss_kib: u64,
}

/// Drops this process's mappings of its own binary that are read-only and unwritten.
pub fn release_startup_pages() -> Result<Released, TrimError> {
    let exe = std::fs::read_link("/proc/self/exe").map_err(TrimError::Exe)?;
    let smaps = std::fs::read_to_string("/proc/self/smaps").map_err(TrimError::Smaps)?;
    let mut released = Released::default();
    for m in droppable(&smaps, &exe) {
        // SAFETY: `m` is a whole mapping of this binary's file, read-only (`r-xp` or `r--p`) and
        // with no anonymous page: every page of it equals the file's content, so
        // dropping it changes no byte the process reads, it only makes the next access fault
        // the page back in from the page cache. Nothing in the process can write to it between
        // the read of smaps and this call: it is not writable, and the dynamic loader's
        // relocation (the only mprotect-and-write of the binary's pages) finished before `main`.
        let rc = unsafe { libc::madvise(m.start as *mut libc::c_void, m.end - m.start, libc::MADV_DONTNEED) };
        if rc != 0 {
            let source = std::io::Error::last_os_error();
            return Err(TrimError::Madvise { start: m.start, end: m.end, source });
        }
        released.mappings += 1;
        released.rss_kib += m.rss_kib;
    }
    Ok(released)
}

/// Calls [`release_startup_pages`] and logs what it did; for the serving paths, once the proxy
/// serves. Then, inside a Tokio runtime, watches for idle spells and gives memory back in each
/// ([`trim_when_idle`]). Failing here costs memory, not function: it is logged at debug level
/// only.
pub fn after_start() {
    release("start-up");
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(trim_when_idle());
    }
}

fn release(when: &str) {
    match release_startup_pages() {
        Ok(r) => tracing::debug!(mappings = r.mappings, rss_kib = r.rss_kib, "released the {when} pages of the binary"),
        Err(e) => tracing::debug!(error = %e, "kept the {when} pages of the binary"),
    }
    release_heap();
}

/// Returns the allocator's free heap to the system (glibc keeps it after a burst of sessions).
fn release_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only reads and updates the allocator's own state, under its locks;
    // it frees no block in use.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Every [`IDLE_CHECK`], reads this process's CPU time and resident size; an interval that
/// used at most [`IDLE_CPU`] of CPU, when the resident size grew by more than [`REGROWN_KIB`]
/// since the last release, releases the binary's pages and the free heap again. Runs until the
/// runtime stops; ends if either figure cannot be read.
async fn trim_when_idle() {
    let mut tick = tokio::time::interval(IDLE_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let (Some(mut cpu), Some(mut floor)) = (cpu_time(), resident_kib()) else { return };
    loop {
        tick.tick().await;
        let (Some(now), Some(resident)) = (cpu_time(), resident_kib()) else { return };
        if should_release(now.saturating_sub(cpu), resident, floor) {
            release("idle");
            // The release's own CPU is not work, and what it left resident is the new floor.
            cpu = cpu_time().unwrap_or(now);
            floor = resident_kib().unwrap_or(resident);
        } else {
            cpu = now;
            floor = floor.min(resident);
        }
    }
}

/// CPU time an interval may use and still count as idle (an idle proxy uses a few tens of
/// microseconds per interval: timers, this check).
const IDLE_CPU: Duration = Duration::from_millis(2);

/// Growth of the resident size since the last release (code faulted back in, heap kept) that
/// is worth giving back.
const REGROWN_KIB: u64 = 512;

/// Whether to release now: the interval just ended was idle, and enough came back since the
/// last release (`floor`, the resident KiB it left).
fn should_release(used: Duration, resident_kib: u64, floor_kib: u64) -> bool {
    used <= IDLE_CPU && resident_kib > floor_kib + REGROWN_KIB
}

/// This process's CPU time, all threads, user and system (`CLOCK_PROCESS_CPUTIME_ID`: exact,
/// not in clock ticks).
fn cpu_time() -> Option<Duration> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec for the call to fill.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return None;
    }
    Some(Duration::new(u64::try_from(ts.tv_sec).ok()?, u32::try_from(ts.tv_nsec).ok()?))
}

/// This process's resident size in KiB (`/proc/self/statm`, second field, in pages).
fn resident_kib() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    // SAFETY: sysconf only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let page_kib = u64::try_from(page).ok()? / 1024;
    parse_statm_pages(&statm).map(|pages| pages * page_kib)
}

fn parse_statm_pages(statm: &str) -> Option<u64> {
    statm.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// The mappings of `exe` in `smaps` (the text of `/proc/<pid>/smaps`) that are private,
/// read-only (`r-xp`, `r--p`) and hold no anonymous page (a private page once written is an
/// anonymous copy; `Swap` counts such copies swapped out). `Private_Dirty` is no test: it also
/// counts page-cache pages not yet written back, as a freshly built binary's are, which are
/// still the file's content.
fn droppable(smaps: &str, exe: &Path) -> Vec<Droppable> {
    let mut out = Vec::new();
    // The mapping whose fields are being read, if it is one of the binary's read-only ones.
    let mut current: Option<(Droppable, bool)> = None;
    let finish = |cur: Option<(Droppable, bool)>, out: &mut Vec<Droppable>| {
        if let Some((m, clean)) = cur
            && clean
        {
            out.push(m);
        }
    };
    for line in smaps.lines() {
        if let Some(header) = parse_header(line) {
            finish(current.take(), &mut out);
            let (start, end, perms, path) = header;
            if (perms == "r-xp" || perms == "r--p") && Path::new(path) == exe && end > start {
                current = Some((Droppable { start, end, rss_kib: 0 }, true));
            }
            continue;
        }
        let Some((m, clean)) = current.as_mut() else { continue };
        let Some((name, value)) = line.split_once(':') else { continue };
        let kib = value.trim().strip_suffix("kB").and_then(|v| v.trim().parse::<u64>().ok());
        match (name, kib) {
            ("Rss", Some(v)) => m.rss_kib = v,
            ("Anonymous" | "Swap", Some(v)) if v > 0 => *clean = false,
            // A field that should be a size but is not: do not guess.
            ("Anonymous" | "Swap", None) => *clean = false,
            _ => {}
        }
    }
    finish(current, &mut out);
    out
}

/// A mapping's header line: `start-end perms offset dev inode [path]`.
fn parse_header(line: &str) -> Option<(usize, usize, &str, &str)> {
    let mut fields = line.split_ascii_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    let perms = fields.next()?;
    // The path is what follows the first five fields (it may hold spaces); empty for anonymous
    // mappings. Fields are separated by runs of spaces.
    let mut rest = line;
    for _ in 0..5 {
        rest = rest.trim_start();
        rest = &rest[rest.find(|c: char| c.is_ascii_whitespace()).unwrap_or(rest.len())..];
    }
    Some((start, end, perms, rest.trim()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const SMAPS: &str = "\
55d000000000-55d000100000 r--p 00000000 fd:01 42 /opt/my apiary/apiary
Size:               1024 kB
Rss:                 800 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
Swap:                  0 kB
VmFlags: rd mr mw me sd
55d000100000-55d000500000 r-xp 00100000 fd:01 42                         /opt/my apiary/apiary
Rss:                4096 kB
Shared_Dirty:         12 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
55d000500000-55d000600000 r--p 00500000 fd:01 42 /opt/my apiary/apiary
Rss:                 916 kB
Private_Dirty:       916 kB
Anonymous:           916 kB
55d000600000-55d000610000 rw-p 00600000 fd:01 42 /opt/my apiary/apiary
Rss:                  28 kB
Anonymous:            28 kB
7f0000000000-7f0000200000 r-xp 00000000 fd:01 7 /usr/lib/x86_64-linux-gnu/libc.so.6
Rss:                 984 kB
Anonymous:             0 kB
7f0000300000-7f0000400000 rw-p 00000000 00:00 0
Rss:                 500 kB
Anonymous:           500 kB
";

    #[test]
    fn only_the_binarys_clean_read_only_mappings_are_dropped() {
        let got = droppable(SMAPS, Path::new("/opt/my apiary/apiary"));
        assert_eq!(
            got,
            vec![
                Droppable { start: 0x55d0_0000_0000, end: 0x55d0_0010_0000, rss_kib: 800 },
                Droppable { start: 0x55d0_0010_0000, end: 0x55d0_0050_0000, rss_kib: 4096 },
            ]
        );
    }

    #[test]
    fn a_written_page_or_an_unreadable_field_keeps_the_mapping() {
        let patched = SMAPS.replacen("Anonymous:             0 kB", "Anonymous:             4 kB", 1);
        let got = droppable(&patched, Path::new("/opt/my apiary/apiary"));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].start, 0x55d0_0010_0000);
        let garbled = SMAPS.replace("Anonymous:             0 kB", "Anonymous: lots");
        assert!(droppable(&garbled, Path::new("/opt/my apiary/apiary")).is_empty());
    }

    #[test]
    fn another_binarys_mappings_are_left_alone() {
        assert!(droppable(SMAPS, Path::new("/opt/apiary")).is_empty());
        let deleted = SMAPS.replace("/opt/my apiary/apiary", "/opt/my apiary/apiary (deleted)");
        assert!(droppable(&deleted, Path::new("/opt/my apiary/apiary")).is_empty());
    }

    #[test]
    fn resident_size_and_cpu_time_are_read() {
        assert_eq!(parse_statm_pages("10240 2560 1024 300 0 900 0\n"), Some(2560));
        assert_eq!(parse_statm_pages("10240"), None);
        assert!(resident_kib().is_some_and(|k| k > 0));
        let before = cpu_time().unwrap();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(cpu_time().unwrap() > before, "the CPU time of this process moves on");
    }

    #[test]
    fn memory_is_released_when_idle_and_grown_back() {
        let idle = Duration::from_micros(100);
        let busy = IDLE_CPU + Duration::from_millis(1);
        // Grown back, idle: release.
        assert!(should_release(idle, 10_000 + REGROWN_KIB + 1, 10_000));
        assert!(should_release(IDLE_CPU, 20_000, 10_000));
        // Grown back but busy: not while it works.
        assert!(!should_release(busy, 20_000, 10_000));
        // Idle but nothing came back: nothing to do.
        assert!(!should_release(idle, 10_000 + REGROWN_KIB, 10_000));
        assert!(!should_release(idle, 9_000, 10_000));
    }

    /// The real thing, on this test binary: its code keeps running after its pages are dropped,
    /// and the resident size of its clean mappings goes down.
    #[test]
    fn releasing_drops_resident_pages_and_the_process_runs_on() {
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let before = droppable(&std::fs::read_to_string("/proc/self/smaps").unwrap(), &exe);
        let before_kib: u64 = before.iter().map(|m| m.rss_kib).sum();
        assert!(!before.is_empty(), "the test binary has read-only mappings");
        let released = release_startup_pages().unwrap();
        assert!(released.mappings >= before.len().min(1));
        let after = droppable(&std::fs::read_to_string("/proc/self/smaps").unwrap(), &exe);
        let after_kib: u64 = after.iter().map(|m| m.rss_kib).sum();
        assert!(after_kib < before_kib, "resident KiB of the clean mappings: {before_kib} before, {after_kib} after");
        // Code dropped above runs again (faulted back in from the page cache).
        assert_eq!(format!("{:?}", Released { mappings: 1, rss_kib: 2 }), "Released { mappings: 1, rss_kib: 2 }");
    }
}
