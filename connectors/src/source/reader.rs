//! One worker's share of a topic's partitions, read in offset order, each
//! record handed out with the time its dataflow feeds it at.

use weir_operators::repr::Tick;

use crate::log::{EventLog, LogRecord};
use crate::source::feeding::Feeding;

/// What one pass over a source's partitions did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Read {
    pub records: usize,
    /// The latest time a record was fed at.
    pub fed_until: Tick,
    /// Records still behind the log's end.
    pub behind: u64,
    /// The time the source's input may move on to: no record it will still
    /// read is fed before it.
    pub frontier: Tick,
}

/// How far a reader has read one partition, reading every record from
/// `start` on in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    pub partition: u32,
    pub start: u64,
    /// The next offset to read.
    pub next: u64,
}

pub struct PartitionReader {
    topic: String,
    /// Owned partitions: (partition, next offset to read, the time the last
    /// record read was fed at, the offset reading started at). The
    /// partition's records come in tick order.
    partitions: Vec<(u32, u64, Tick, u64)>,
    /// The topic's partitions known so far: a topic may gain partitions (a
    /// Kafka source's copy grows with its topic), which are then owned as
    /// the first ones were.
    known_partitions: u32,
    /// Records appended before this are not read (`'auto.offset.reset' =
    /// 'latest'`, or a rebuild from a time).
    skip_before: Tick,
    /// Records appended after this are not read (a point-in-time read).
    until: Option<Tick>,
    /// (this worker, workers): a worker owns the partitions `p` with
    /// `p % workers == this worker`.
    owner: (usize, usize),
}

impl PartitionReader {
    pub fn new(log: &EventLog, topic: &str, owner: (usize, usize), skip_before: Tick) -> PartitionReader {
        let mut r = PartitionReader {
            topic: topic.to_string(),
            partitions: Vec::new(),
            known_partitions: 0,
            skip_before,
            until: None,
            owner,
        };
        r.discover(log, log.partitions(topic));
        r
    }

    /// Reads no record appended after `until`, and never moves the
    /// frontier past it: the dataflow computes its views as of `until`.
    pub fn until(mut self, until: Option<Tick>) -> PartitionReader {
        self.until = until;
        self
    }

    /// Takes up the topic's partitions `known_partitions..count` that are
    /// this worker's, read from `skip_before` on.
    fn discover(&mut self, log: &EventLog, count: u32) {
        let (index, peers) = self.owner;
        for p in self.known_partitions..count {
            if p as usize % peers == index {
                let from = log.first_offset_from(&self.topic, p, self.skip_before);
                self.partitions.push((p, from, 0, from));
            }
        }
        self.known_partitions = self.known_partitions.max(count);
    }

    /// Records of the owned partitions not read yet.
    pub fn behind(&self, log: &EventLog) -> u64 {
        self.partitions
            .iter()
            .map(|&(p, next, _, _)| log.end_offset(&self.topic, p).saturating_sub(next))
            .sum()
    }

    /// How far each owned partition has been read, when every record from
    /// the start on is read in order (no `until`).
    pub fn progress(&self) -> Option<impl Iterator<Item = Progress> + '_> {
        if self.until.is_some() {
            return None;
        }
        Some(
            self.partitions
                .iter()
                .map(|&(partition, next, _, start)| Progress { partition, start, next }),
        )
    }

    /// Moves past the records that `feeders` (other readers of the same
    /// table) already read: in each owned partition, as far as the furthest
    /// feeder that started no later than this reader's next record. True
    /// when every owned partition has such a feeder: then reading further
    /// is theirs too.
    ///
    /// Only for a reader whose records feed nothing (a table checked for
    /// dead letters only): the times of the records moved past are not
    /// known, so the frontier it reports while behind does not move.
    pub fn follow(&mut self, feeders: &[Progress]) -> bool {
        let mut all = !self.partitions.is_empty();
        for part in self.partitions.iter_mut() {
            let read = feeders
                .iter()
                .filter(|f| f.partition == part.0 && f.start <= part.1)
                .map(|f| f.next)
                .max();
            match read {
                Some(upto) => part.1 = part.1.max(upto),
                None => all = false,
            }
        }
        all
    }

    /// Whether `other` reads the same records next as this reader: the
    /// same topic, partitions, offsets and bounds. Readers at the same
    /// position can read together ([`read_together`]).
    pub fn same_position(&self, other: &PartitionReader) -> bool {
        self.topic == other.topic
            && self.owner == other.owner
            && self.known_partitions == other.known_partitions
            && self.skip_before == other.skip_before
            && self.until == other.until
            && self.partitions.len() == other.partitions.len()
            && self
                .partitions
                .iter()
                .zip(&other.partitions)
                .all(|(a, b)| a.0 == b.0 && a.1 == b.1)
    }

    /// Reads up to `chunk` new records of each owned partition (when
    /// `may_read`; else only measures how far behind it is), handing each
    /// to `each` with its partition and the time it is fed at.
    pub fn read(
        &mut self,
        log: &EventLog,
        feeding: &Feeding,
        chunk: usize,
        may_read: bool,
        mut each: impl FnMut(u32, &LogRecord, Tick),
    ) -> Read {
        let mut readers = [(self, feeding)];
        let reads = read_together(&mut readers, log, chunk, may_read, |partition, rec, at| {
            each(partition, rec, at[0])
        });
        reads.into_iter().next().unwrap_or_default()
    }
}

/// [`PartitionReader::read`] for readers at the same position (see
/// [`PartitionReader::same_position`]), each with its dataflow's
/// [`Feeding`]: every record is read from the log once and handed to
/// `each` once, with the time each reader feeds it at (in the readers'
/// order). Returns each reader's [`Read`]; they stay at the same position.
///
/// # Contract
/// The readers are at the same position; the first one's decides what is
/// read.
pub fn read_together(
    readers: &mut [(&mut PartitionReader, &Feeding)],
    log: &EventLog,
    chunk: usize,
    may_read: bool,
    mut each: impl FnMut(u32, &LogRecord, &[Tick]),
) -> Vec<Read> {
    let Some(first) = readers.first() else {
        return Vec::new();
    };
    let topic = first.0.topic.clone();
    // Before the end offsets: records past them come at or after `sealed`.
    let sealed_at = log.sealed(&topic);
    let sealed: Vec<Tick> = readers.iter().map(|(_, f)| f.time(sealed_at)).collect();
    // After `sealed`: a partition added later holds only records appended
    // after it.
    let count = log.partitions(&topic);
    for (r, _) in readers.iter_mut() {
        if count > r.known_partitions {
            r.discover(log, count);
        }
    }
    let mut out = vec![
        Read {
            frontier: Tick::MAX,
            ..Read::default()
        };
        readers.len()
    ];
    let mut at = vec![0; readers.len()];
    let (until, skip_before) = (readers[0].0.until, readers[0].0.skip_before);
    for p in 0..readers[0].0.partitions.len() {
        let (partition, next, _, _) = readers[0].0.partitions[p];
        let end = log.end_offset(&topic, partition);
        if may_read && next < end {
            let records = match log.read(&topic, partition, next, chunk) {
                Ok(r) => r,
                Err(_) => continue,
            };
            let mut stopped = None;
            for rec in &records {
                if until.is_some_and(|u| rec.tick > u) {
                    stopped = Some(rec.offset);
                    break;
                }
                // The start offset was sought by tick; this only guards
                // against a clock that stepped back since.
                if rec.tick < skip_before {
                    continue;
                }
                for (k, (r, feeding)) in readers.iter_mut().enumerate() {
                    let t = feeding.time(rec.tick);
                    out[k].records += 1;
                    out[k].fed_until = out[k].fed_until.max(t);
                    r.partitions[p].2 = t;
                    at[k] = t;
                }
                each(partition, rec, &at);
            }
            let next = match (stopped, records.last()) {
                (Some(at), _) => Some(at),
                (None, Some(last)) => Some(last.offset + 1),
                (None, None) => None,
            };
            if let Some(next) = next {
                for (r, _) in readers.iter_mut() {
                    r.partitions[p].1 = next;
                }
            }
        }
        let next = readers[0].0.partitions[p].1;
        // Past `until`, a partition has nothing more to give.
        let done = until.is_some_and(|u| next < end && log.appended_at(&topic, partition, next).is_some_and(|t| t > u));
        for (k, (r, _)) in readers.iter().enumerate() {
            if !done {
                out[k].behind += end.saturating_sub(next);
            }
            // Caught up: what comes next is appended after `sealed`. Behind:
            // the next record is fed no earlier than the last one read.
            let frontier = if next >= end || done {
                sealed[k]
            } else {
                r.partitions[p].2
            };
            out[k].frontier = out[k].frontier.min(frontier);
        }
    }
    for (k, (r, _)) in readers.iter().enumerate() {
        if r.partitions.is_empty() {
            out[k].frontier = sealed[k];
        }
        if let Some(u) = until {
            out[k].frontier = out[k].frontier.min(u.saturating_add(1));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StateStore;

    /// Offsets every record of a read was handed out at.
    fn offsets(reader: &mut PartitionReader, log: &EventLog, chunk: usize) -> Vec<u64> {
        let mut seen = Vec::new();
        reader.read(log, &Feeding::default(), chunk, true, |_, rec, _| seen.push(rec.offset));
        seen
    }

    #[test]
    fn readers_at_one_position_read_each_record_once_at_their_own_times() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        let log = store.log();
        log.create_topic("t", 1).unwrap();
        let events: Vec<Vec<u8>> = (0..6).map(|i| format!("{{\"i\":{i}}}").into_bytes()).collect();
        log.append("t", Some(0), &events).unwrap();
        let mut a = PartitionReader::new(&log, "t", (0, 1), 0);
        let mut b = PartitionReader::new(&log, "t", (0, 1), 0);
        assert!(a.same_position(&b));
        // `b`'s dataflow was installed after the records: they are its
        // history, fed at their tick rounded up to the next 100 ms.
        let (fa, fb) = (
            Feeding::default(),
            Feeding {
                since: Tick::MAX,
                pins: vec![],
            },
        );
        let mut handed = Vec::new();
        let reads = read_together(&mut [(&mut a, &fa), (&mut b, &fb)], &log, 4, true, |_, rec, at| {
            handed.push((rec.offset, at.to_vec()));
        });
        assert_eq!(handed.iter().map(|(o, _)| *o).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
        for (offset, at) in &handed {
            let tick = log.appended_at("t", 0, *offset).unwrap();
            assert_eq!(at, &vec![tick, (tick / 100 + 1) * 100]);
        }
        assert_eq!((reads[0].records, reads[1].records), (4, 4));
        assert_eq!((reads[0].behind, reads[1].behind), (2, 2));
        assert!(a.same_position(&b), "they stay together");
        // One that read further is elsewhere.
        assert_eq!(offsets(&mut a, &log, 1), vec![4]);
        assert!(!a.same_position(&b));
    }

    #[test]
    fn a_follower_reads_only_what_no_covering_reader_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        let log = store.log();
        log.create_topic("t", 1).unwrap();
        let events: Vec<Vec<u8>> = (0..10).map(|i| format!("{{\"i\":{i}}}").into_bytes()).collect();
        log.append("t", Some(0), &events).unwrap();
        let progress = |r: &PartitionReader| r.progress().unwrap().collect::<Vec<_>>();

        let mut feeder = PartitionReader::new(&log, "t", (0, 1), 0);
        let mut follower = PartitionReader::new(&log, "t", (0, 1), 0);
        assert_eq!(offsets(&mut feeder, &log, 4), vec![0, 1, 2, 3]);
        let read = progress(&feeder);
        assert_eq!(
            read,
            vec![Progress {
                partition: 0,
                start: 0,
                next: 4
            }]
        );
        assert!(follower.follow(&read), "the feeder started no later");
        // What the feeder has not read yet, the follower reads itself
        // (e.g. once the feeder's job is dropped).
        assert_eq!(offsets(&mut follower, &log, 100), (4..10).collect::<Vec<_>>());

        // A reader that started later covers nothing before its start.
        let late = PartitionReader {
            partitions: vec![(0, 8, 0, 8)],
            ..PartitionReader::new(&log, "t", (0, 1), 0)
        };
        let mut early = PartitionReader::new(&log, "t", (0, 1), 0);
        assert!(!early.follow(&progress(&late)));
        assert_eq!(offsets(&mut early, &log, 100), (0..10).collect::<Vec<_>>());
        // A point-in-time reader covers nothing.
        assert!(PartitionReader::new(&log, "t", (0, 1), 0)
            .until(Some(5))
            .progress()
            .is_none());
    }
}
