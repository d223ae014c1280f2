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
        // Before the end offsets: records past them come at or after `sealed`.
        let sealed = feeding.time(log.sealed(&self.topic));
        // After `sealed`: a partition added later holds only records appended
        // after it.
        let count = log.partitions(&self.topic);
        if count > self.known_partitions {
            self.discover(log, count);
        }
        let mut out = Read {
            frontier: Tick::MAX,
            ..Read::default()
        };
        for p in 0..self.partitions.len() {
            let (partition, next, _, _) = self.partitions[p];
            let end = log.end_offset(&self.topic, partition);
            if may_read && next < end {
                let records = match log.read(&self.topic, partition, next, chunk) {
                    Ok(r) => r,
                    Err(_) => continue,
                };
                let mut stopped = None;
                for rec in &records {
                    if self.until.is_some_and(|u| rec.tick > u) {
                        stopped = Some(rec.offset);
                        break;
                    }
                    // The start offset was sought by tick; this only guards
                    // against a clock that stepped back since.
                    if rec.tick < self.skip_before {
                        continue;
                    }
                    out.records += 1;
                    let at = feeding.time(rec.tick);
                    out.fed_until = out.fed_until.max(at);
                    self.partitions[p].2 = at;
                    each(partition, rec, at);
                }
                match (stopped, records.last()) {
                    (Some(at), _) => self.partitions[p].1 = at,
                    (None, Some(last)) => self.partitions[p].1 = last.offset + 1,
                    (None, None) => {}
                }
            }
            let (_, next, last_fed, _) = self.partitions[p];
            // Past `until`, a partition has nothing more to give.
            let done = self
                .until
                .is_some_and(|u| next < end && log.appended_at(&self.topic, partition, next).is_some_and(|t| t > u));
            if !done {
                out.behind += end.saturating_sub(next);
            }
            // Caught up: what comes next is appended after `sealed`. Behind: the
            // next record is fed no earlier than the last one read.
            let frontier = if next >= end || done { sealed } else { last_fed };
            out.frontier = out.frontier.min(frontier);
        }
        if self.partitions.is_empty() {
            out.frontier = sealed;
        }
        if let Some(u) = self.until {
            out.frontier = out.frontier.min(u.saturating_add(1));
        }
        out
    }
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
