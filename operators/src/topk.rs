//! Top-k per group over append-only input, numbering the rows.
//!
//! Over an append-only input a row that falls out of a group's top k can
//! never come back, so each group keeps at most k rows: state grows with
//! groups, not with events (DESIGN.md §4).

use std::cmp::Ordering;
use std::rc::Rc;

use differential_dataflow::{Hashable, VecCollection};

use crate::by_time::process_by_time;
use crate::capture::{encode_rows, Capture};
use crate::repr::{Datum, Diff, FastMap, Row, Tick};

/// Row order within a group: the first rows in this order are the top.
pub type RowOrder = Rc<dyn Fn(&[Datum], &[Datum]) -> Ordering>;

/// Keeps the first `k` rows of each group in `order`, and outputs each with
/// its 1-based position appended as a `Datum::Int` (ROW_NUMBER).
///
/// # Contract
/// The input is `(group key, row)` pairs that are only ever added
/// (retractions are ignored: the caller must only use it on append-only input). `order`
/// must be a total order on rows (break ties on the whole row), so that the
/// result is deterministic.
///
/// With `capture`, its state is written as of each requested time as the
/// kept input rows (see [`crate::capture`]); fed back in, they rebuild the
/// same top k.
pub trait MonotonicTopK<'scope> {
    fn monotonic_top_k(
        self,
        name: &str,
        k: usize,
        order: RowOrder,
        capture: Option<Capture>,
    ) -> VecCollection<'scope, Tick, Row, Diff>;
}

/// Each group's top, in a slab indexed by its key: a record costs one
/// hash lookup, and the groups a time touched are visited by slot.
#[derive(Default)]
struct TopState {
    slots: FastMap<Row, usize>,
    groups: Vec<Group>,
}

#[derive(Default)]
struct Group {
    top: Vec<Row>,
    /// The top as it was before the time being processed, taken the first
    /// time that time changes it (`None`: unchanged so far).
    before: Option<Vec<Row>>,
}

impl<'scope> MonotonicTopK<'scope> for VecCollection<'scope, Tick, (Row, Row), Diff> {
    fn monotonic_top_k(
        self,
        name: &str,
        k: usize,
        order: RowOrder,
        capture: Option<Capture>,
    ) -> VecCollection<'scope, Tick, Row, Diff> {
        let writer = capture.map(|c| {
            let write: Box<dyn Fn(&TopState) -> _> =
                Box::new(|state: &TopState| encode_rows(state.groups.iter().flat_map(|g| &g.top).map(|r| (r, 1))));
            (c, write)
        });
        let mut touched: Vec<usize> = Vec::new();
        process_by_time(
            self,
            &format!("TopK: {name}"),
            |(key, _): &(Row, Row)| key.hashed(),
            writer,
            move |state: &mut TopState, records, out| {
                if k == 0 {
                    return;
                }
                let TopState { slots, groups } = state;
                for ((key, mut row), copies) in records {
                    // A row added n times takes n positions.
                    let copies = copies.clamp(0, k as Diff) as usize;
                    if copies == 0 {
                        continue;
                    }
                    let slot = match slots.get(&key) {
                        Some(&slot) => slot,
                        None => {
                            groups.push(Group::default());
                            slots.insert(key, groups.len() - 1);
                            groups.len() - 1
                        }
                    };
                    let group = &mut groups[slot];
                    let enters = |top: &Vec<Row>, row: &Row| top.len() < k || order(row, &top[k - 1]) == Ordering::Less;
                    if !enters(&group.top, &row) {
                        continue;
                    }
                    if group.before.is_none() {
                        // With k = 1 the row that was the top leaves it now:
                        // it moves to `before` rather than being copied.
                        group.before = Some(if k == 1 {
                            std::mem::take(&mut group.top)
                        } else {
                            group.top.clone()
                        });
                        touched.push(slot);
                    }
                    let top = &mut group.top;
                    for c in 1..=copies {
                        if !enters(top, &row) {
                            break;
                        }
                        let pos = top.partition_point(|r| order(r, &row) != Ordering::Greater);
                        // The last copy moves the row in.
                        let placed = if c == copies {
                            std::mem::take(&mut row)
                        } else {
                            row.clone()
                        };
                        top.insert(pos, placed);
                        top.truncate(k);
                    }
                }
                for slot in touched.drain(..) {
                    let group = &mut groups[slot];
                    let before = group.before.take().unwrap_or_default();
                    let after = &group.top;
                    let n = before.len().max(after.len());
                    let mut before = before.into_iter();
                    for i in 0..n {
                        let (was, is) = (before.next(), after.get(i));
                        if was.as_ref() == is {
                            continue;
                        }
                        if let Some(was) = was {
                            out.push((numbered(was, i), -1));
                        }
                        if let Some(is) = is {
                            out.push((numbered_copy(is, i), 1));
                        }
                    }
                }
            },
        )
    }
}

/// `row` with its 1-based position `i + 1` appended (ROW_NUMBER), in one
/// allocation.
pub fn numbered_copy(row: &[Datum], i: usize) -> Row {
    let mut out = Vec::with_capacity(row.len() + 1);
    out.extend_from_slice(row);
    out.push(Datum::Int(i as i64 + 1));
    out
}

fn numbered(mut row: Row, i: usize) -> Row {
    row.reserve_exact(1);
    row.push(Datum::Int(i as i64 + 1));
    row
}
