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
#![allow(unsafe_code)]

use std::path::Path;

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
/// serves. Failing here costs memory, not function: it is logged at debug level only.
pub fn after_start() {
    match release_startup_pages() {
        Ok(r) => {
            tracing::debug!(mappings = r.mappings, rss_kib = r.rss_kib, "released the start-up pages of the binary")
        }
        Err(e) => tracing::debug!(error = %e, "kept the start-up pages of the binary"),
    }
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
