//! Upsert: keyed records, each replacing (or deleting) the key's row, turned
//! into a collection with one row per key. State is one entry per key
//! ever seen (a deleted key keeps a tombstone with its sequence number).

use differential_dataflow::{Hashable, VecCollection};

use crate::by_time::process_by_time;
use crate::capture::{encode_rows, Capture};
use crate::repr::{Diff, FastMap, Row, Tick};

/// One upsert: the key, the record's sequence number in its topic (a total
/// order over all records, also across partitions), and the new row or
/// `None` for a delete.
pub type UpsertRecord = (Row, u64, Option<Row>);

/// Turns a stream of upserts into the collection of latest rows per key.
///
/// # Contract
/// The latest record per key is the one with the highest sequence number,
/// whatever order records arrive in: a record older than what the key holds
/// (also a deleted key's tombstone) is ignored. Output changes are emitted at
/// the time of the record that caused them.
///
/// With `capture`, its state is written as of each requested time as the
/// latest rows (see [`crate::capture`]); fed back in as upserts older than
/// any later record, they rebuild the same state.
pub trait Upsert<'scope> {
    fn upsert(self, name: &str, capture: Option<Capture>) -> VecCollection<'scope, Tick, Row, Diff>;
}

type UpsertState = FastMap<Row, (u64, Option<Row>)>;

impl<'scope> Upsert<'scope> for VecCollection<'scope, Tick, UpsertRecord, Diff> {
    fn upsert(self, name: &str, capture: Option<Capture>) -> VecCollection<'scope, Tick, Row, Diff> {
        let writer = capture.map(|c| {
            let write: Box<dyn Fn(&UpsertState) -> _> = Box::new(|state: &UpsertState| {
                encode_rows(state.values().filter_map(|(_, r)| r.as_ref()).map(|r| (r, 1)))
            });
            (c, write)
        });
        process_by_time(
            self,
            &format!("Upsert: {name}"),
            |(key, _, _): &UpsertRecord| key.hashed(),
            writer,
            |state: &mut UpsertState, mut records, out| {
                records.sort_by_key(|((_, seq, _), _)| *seq);
                // A diff is only ever +1 (records are appended); a retraction
                // of an upsert has no meaning and is ignored.
                for ((key, seq, value), _) in records.into_iter().filter(|(_, d)| *d > 0) {
                    let entry = state.entry(key);
                    match entry {
                        std::collections::hash_map::Entry::Occupied(mut o) => {
                            let (old_seq, old) = o.get_mut();
                            if seq <= *old_seq {
                                continue;
                            }
                            if let Some(old) = old.take() {
                                out.push((old, -1));
                            }
                            if let Some(v) = &value {
                                out.push((v.clone(), 1));
                            }
                            *old_seq = seq;
                            *old = value;
                        }
                        std::collections::hash_map::Entry::Vacant(v) => {
                            if let Some(row) = &value {
                                out.push((row.clone(), 1));
                            }
                            v.insert((seq, value));
                        }
                    }
                }
            },
        )
    }
}
