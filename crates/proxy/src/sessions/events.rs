//! A session's event log: every SSE event Apiary writes for a session is kept here, up to
//! a byte cap (oldest evicted first), so a client that lost a stream can resume it with
//! `Last-Event-ID` and get each later event exactly once (bad-input.md, rows 20 and 28).
//! Event ids are `<stream>-<seq>`: the stream they were written on, and a sequence number
//! that grows across the whole session. A stream that was written whole to its client is
//! kept only among the few latest such streams (a client whose connection broke as the last
//! bytes went out can still resume it); older ones are dropped, so a busy session does not
//! hold every finished answer until the cap.

use std::collections::{BTreeMap, HashMap, VecDeque};

use apiary_transport::sse;
use bytes::Bytes;
use tokio::sync::mpsc;

/// Streams whose evictions are remembered; older ones are forgotten first.
const MAX_TRACKED_STREAMS: usize = 1024;
/// Streams written whole whose events are still kept for a late resumption.
const KEEP_DELIVERED: usize = 4;

struct Event {
    stream: u64,
    seq: u64,
    /// The encoded SSE event (empty for a priming event, which is never replayed).
    encoded: Bytes,
}

/// Why a `Last-Event-ID` cannot resume.
#[derive(Debug, PartialEq, Eq)]
pub enum ResumeError {
    /// Never issued in this session (row 20a).
    Unknown,
    /// Issued, but later events of its stream were evicted (row 20b).
    Evicted,
}

/// The buffer and the live resumers of one session.
pub struct EventLog {
    events: VecDeque<Event>,
    bytes: usize,
    cap: usize,
    next_seq: u64,
    /// The highest evicted sequence number per stream (ordered: the oldest stream is
    /// forgotten first without a scan).
    evicted: BTreeMap<u64, u64>,
    /// A resumed client waiting for live events of a stream it lost.
    resumers: HashMap<u64, mpsc::Sender<Bytes>>,
    /// Streams whose producer is done (newest last, bounded).
    finished: VecDeque<u64>,
    /// Finished streams that were written whole, whose events are still kept (newest last,
    /// at most [`KEEP_DELIVERED`]).
    delivered: VecDeque<u64>,
}

impl EventLog {
    pub fn new(cap: usize) -> Self {
        EventLog {
            events: VecDeque::new(),
            bytes: 0,
            cap,
            next_seq: 1,
            evicted: BTreeMap::new(),
            resumers: HashMap::new(),
            finished: VecDeque::new(),
            delivered: VecDeque::new(),
        }
    }

    fn push(&mut self, stream: u64, encoded: Bytes) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.bytes += encoded.len();
        self.events.push_back(Event { stream, seq, encoded });
        while self.bytes > self.cap {
            let Some(old) = self.events.pop_front() else { break };
            self.bytes -= old.encoded.len();
            self.note_evicted(old.stream, old.seq);
        }
        seq
    }

    /// Remembers that `stream`'s events up to `seq` are gone (a resumption from there is a gap).
    fn note_evicted(&mut self, stream: u64, seq: u64) {
        let e = self.evicted.entry(stream).or_insert(0);
        *e = (*e).max(seq);
        if self.evicted.len() > MAX_TRACKED_STREAMS {
            self.evicted.pop_first();
        }
    }

    /// Records a message event on `stream` and returns it encoded. If a resumed client
    /// follows that stream, it gets the event too (in order: the log's lock is held by the
    /// caller while this runs).
    pub fn message(&mut self, stream: u64, frame: &[u8]) -> Bytes {
        let seq = self.next_seq;
        let encoded = sse::message_event(Some(&format!("{stream}-{seq}")), frame);
        self.push(stream, encoded.clone());
        if let Some(tx) = self.resumers.get(&stream)
            && tx.try_send(encoded.clone()).is_err()
        {
            self.resumers.remove(&stream);
        }
        encoded
    }

    /// Records a priming event (an id and empty data) and returns it encoded.
    pub fn priming(&mut self, stream: u64, retry_ms: u64) -> Bytes {
        let seq = self.push(stream, Bytes::new());
        sse::priming_event(&format!("{stream}-{seq}"), retry_ms)
    }

    /// Resumes after `last_event_id`: the buffered later events of its stream, enqueued on
    /// `tx` in order, and `tx` registered for the stream's live events unless the stream is
    /// finished (then the replay is all there is). Returns the stream.
    pub fn resume(&mut self, last_event_id: &str, tx: &mpsc::Sender<Bytes>) -> Result<u64, ResumeError> {
        let (stream, seq) = parse_id(last_event_id).ok_or(ResumeError::Unknown)?;
        if seq >= self.next_seq {
            return Err(ResumeError::Unknown);
        }
        let issued_here = self.events.iter().any(|e| e.stream == stream && e.seq == seq);
        let evicted_upto = self.evicted.get(&stream).copied();
        if !issued_here {
            return Err(match evicted_upto {
                Some(max) if seq <= max => ResumeError::Evicted,
                _ => ResumeError::Unknown,
            });
        }
        if evicted_upto.is_some_and(|max| max > seq) {
            return Err(ResumeError::Evicted);
        }
        for e in self.events.iter().filter(|e| e.stream == stream && e.seq > seq && !e.encoded.is_empty()) {
            if tx.try_send(e.encoded.clone()).is_err() {
                break;
            }
        }
        if !self.finished.contains(&stream) {
            self.resumers.insert(stream, tx.clone());
        }
        Ok(stream)
    }

    /// The stream's producer is done: a resumed client following it is released. When every
    /// event was `delivered` (written to a client still connected), the stream joins the few
    /// kept for a late resumption, and the oldest of those loses its events.
    pub fn finish_stream(&mut self, stream: u64, delivered: bool) {
        self.resumers.remove(&stream);
        self.finished.push_back(stream);
        if self.finished.len() > MAX_TRACKED_STREAMS {
            self.finished.pop_front();
        }
        if !delivered {
            return;
        }
        self.delivered.push_back(stream);
        if self.delivered.len() > KEEP_DELIVERED
            && let Some(old) = self.delivered.pop_front()
        {
            self.drop_stream(old);
        }
    }

    /// Drops a stream's events, as if evicted.
    fn drop_stream(&mut self, stream: u64) {
        let mut last = None;
        let mut freed = 0;
        self.events.retain(|e| {
            let keep = e.stream != stream;
            if !keep {
                last = Some(e.seq);
                freed += e.encoded.len();
            }
            keep
        });
        self.bytes -= freed;
        if let Some(seq) = last {
            self.note_evicted(stream, seq);
        }
        if self.events.is_empty() {
            // A quiet session gives its buffer back.
            self.events = VecDeque::new();
        }
    }

    /// How many events are buffered.
    pub fn buffered_len(&self) -> usize {
        self.events.len()
    }
}

fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (s, q) = id.trim().split_once('-')?;
    Some((s.parse().ok()?, q.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_replays_later_events_of_the_same_stream_once() {
        let mut log = EventLog::new(1 << 20);
        let p = log.priming(1, 1000);
        assert!(p.starts_with(b"id: 1-1\n"));
        log.message(1, b"{\"a\":1}");
        log.message(2, b"{\"other\":1}");
        log.message(1, b"{\"a\":2}");
        let (tx, mut rx) = mpsc::channel(16);
        assert_eq!(log.resume("1-2", &tx), Ok(1));
        let got = rx.try_recv().unwrap();
        assert!(got.starts_with(b"id: 1-4\n") && got.ends_with(b"data: {\"a\":2}\n\n"), "{got:?}");
        assert!(rx.try_recv().is_err(), "events of other streams are never replayed");
        log.message(1, b"{\"a\":3}");
        assert!(rx.try_recv().unwrap().starts_with(b"id: 1-5\n"));
        log.finish_stream(1, false);
        log.message(1, b"{\"a\":4}");
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn delivered_streams_are_kept_only_among_the_latest_few() {
        let mut log = EventLog::new(1 << 20);
        let (tx, _rx) = mpsc::channel(64);
        for stream in 1..=KEEP_DELIVERED as u64 + 2 {
            log.priming(stream, 1000);
            log.message(stream, b"{\"answer\":1}");
            log.finish_stream(stream, true);
        }
        // A stream that lost its client keeps its events, however many streams follow.
        log.priming(100, 1000);
        let lost = log.message(100, b"{\"lost\":1}");
        log.finish_stream(100, false);
        for stream in 200..210 {
            log.priming(stream, 1000);
            log.finish_stream(stream, true);
        }
        assert_eq!(log.resume("1-1", &tx), Err(ResumeError::Evicted), "an old delivered stream is gone");
        // The lost stream's two events, and the priming event of each of the latest delivered.
        assert_eq!(log.buffered_len(), 2 + KEEP_DELIVERED);
        let (tx, mut rx) = mpsc::channel(64);
        let first_of_lost = log.events.iter().find(|e| e.stream == 100).map(|e| e.seq).unwrap();
        assert!(log.resume(&format!("100-{first_of_lost}"), &tx).is_ok());
        assert_eq!(rx.try_recv().unwrap(), lost, "the undelivered stream resumes");
        let latest = log.events.iter().rev().find(|e| e.stream == 209).map(|e| e.seq).unwrap();
        assert!(log.resume(&format!("209-{latest}"), &tx).is_ok(), "the latest delivered streams are kept");
    }

    #[test]
    fn unknown_and_evicted_ids_are_told_apart() {
        let mut log = EventLog::new(120);
        for _ in 0..10 {
            log.message(1, b"{\"padding\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}");
        }
        let (tx, _rx) = mpsc::channel(16);
        assert_eq!(log.resume("1-1", &tx), Err(ResumeError::Evicted));
        assert_eq!(log.resume("1-99", &tx), Err(ResumeError::Unknown));
        assert_eq!(log.resume("7-3", &tx), Err(ResumeError::Unknown));
        assert_eq!(log.resume("garbage", &tx), Err(ResumeError::Unknown));
        assert!(log.buffered_len() < 10);
        assert!(log.resume("1-10", &tx).is_ok());
    }
}
