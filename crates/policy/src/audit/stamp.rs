//! What every audit event is stamped with — a random (v4) UUID and the time — made cheaply, as
//! one is made per request: the UUID's random bytes come from a per-thread pool filled from the
//! OS generator a few KiB at a time (one `getrandom` call per [`POOL_BYTES`] / 16 events instead
//! of one per event), and the time's date-and-seconds part is formatted once per second.

use std::cell::RefCell;

/// Random bytes each thread draws from the OS at once (256 UUIDs).
const POOL_BYTES: usize = 4096;

/// A thread's unused random bytes: `bytes[next..]`.
struct Pool {
    bytes: Box<[u8; POOL_BYTES]>,
    next: usize,
}

/// The last second formatted by this thread: `YYYY-MM-DDTHH:MM:SS.` of unix second `second`.
struct Second {
    second: i64,
    prefix: String,
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool { bytes: Box::new([0; POOL_BYTES]), next: POOL_BYTES });
    static SECOND: RefCell<Option<Second>> = const { RefCell::new(None) };
}

/// A new random (version 4) UUID, hyphenated and lower-case. Unique as `Uuid::new_v4` is: the
/// bytes are the OS generator's, each handed out once. (The pool is not shared with a forked
/// child; the proxy only forks to exec.)
pub(crate) fn uuid_v4() -> String {
    let bytes = POOL.with(|pool| {
        let mut pool = pool.try_borrow_mut().ok()?;
        if pool.next + 16 > POOL_BYTES {
            getrandom::fill(&mut pool.bytes[..]).ok()?;
            pool.next = 0;
        }
        let start = pool.next;
        let mut out = [0u8; 16];
        out.copy_from_slice(&pool.bytes[start..start + 16]);
        // Handed out once: wiped so the bytes are never seen again, even if the refill fails.
        pool.bytes[start..start + 16].fill(0);
        pool.next = start + 16;
        Some(out)
    });
    let uuid = match bytes {
        Some(b) => uuid::Builder::from_random_bytes(b).into_uuid(),
        // The OS generator failed (or a re-entrant call): one direct draw, as before.
        None => uuid::Uuid::new_v4(),
    };
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    uuid.hyphenated().encode_lower(&mut text).to_owned()
}

/// RFC 3339 UTC with microseconds, e.g. `2026-11-03T09:12:45.123456Z`: what
/// `strftime("%Y-%m-%dT%H:%M:%S%.6fZ")` gives.
pub(crate) fn utc_micros(ts: jiff::Timestamp) -> String {
    let (second, nanos) = (ts.as_second(), ts.subsec_nanosecond());
    if second < 0 || nanos < 0 {
        // Before 1970 the sub-second part counts backwards; never on a live clock.
        return utc_micros_slow(ts);
    }
    let micros = u32::try_from(nanos / 1000).unwrap_or(0);
    SECOND.with(|cached| {
        let Ok(mut cached) = cached.try_borrow_mut() else { return utc_micros_slow(ts) };
        if cached.as_ref().is_none_or(|c| c.second != second) {
            let full = utc_micros_slow(ts);
            *cached = Some(Second { second, prefix: full[..20].to_owned() });
            return full;
        }
        let prefix = cached.as_ref().map_or("", |c| c.prefix.as_str());
        let mut out = String::with_capacity(27);
        out.push_str(prefix);
        let mut digits = [b'0'; 6];
        let mut rest = micros;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        digits.iter().for_each(|d| out.push(char::from(*d)));
        out.push('Z');
        out
    })
}

/// The same, formatted whole.
fn utc_micros_slow(ts: jiff::Timestamp) -> String {
    use std::fmt::Write as _;
    let t = jiff::tz::Offset::UTC.to_datetime(ts);
    let mut out = String::with_capacity(27);
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.subsec_nanosecond() / 1000
    );
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn timestamps_match_strftime_within_and_across_seconds() {
        // Cached prefixes are reused within a second and replaced on the next one, backwards too.
        let cases = [
            (1_700_000_000, 999_999_999),
            (1_700_000_000, 0),
            (1_700_000_000, 5_000),
            (1_700_000_001, 123_456_789),
            (1_789_000_123, 1_000),
            (1_700_000_000, 999),
            (0, 0),
            (4_102_444_799, 123_456_789),
            (-1, -500_000_000),
            (-86_401, 0),
        ];
        for (secs, nanos) in cases {
            let ts = jiff::Timestamp::new(secs, nanos).unwrap();
            let want = ts.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
            assert_eq!(utc_micros(ts), want, "{secs}.{nanos}");
            assert_eq!(utc_micros(ts), want, "{secs}.{nanos}, cached");
        }
    }

    #[test]
    fn uuids_are_v4_and_unique_across_pool_refills() {
        let n = 3 * POOL_BYTES / 16 + 7;
        let mut seen = std::collections::HashSet::new();
        for _ in 0..n {
            let text = uuid_v4();
            let parsed = uuid::Uuid::parse_str(&text).unwrap();
            assert_eq!(parsed.get_version_num(), 4);
            assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
            assert_eq!(text, parsed.hyphenated().to_string(), "lower-case, hyphenated");
            assert!(seen.insert(text));
        }
    }

    #[test]
    fn each_thread_draws_its_own_bytes() {
        let mine: Vec<String> = (0..50).map(|_| uuid_v4()).collect();
        let theirs: Vec<String> = std::thread::spawn(|| (0..50).map(|_| uuid_v4()).collect()).join().unwrap();
        assert!(mine.iter().all(|id| !theirs.contains(id)));
    }
}
