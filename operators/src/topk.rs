//! Top-k per group over append-only input, numbering the rows.
//!
//! Over an append-only input a row that falls out of a group's top k can
//! never come back, so each group keeps at most k rows: state grows with
//! groups, not with events (DESIGN.md §4).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::rc::Rc;

use differential_dataflow::{Hashable, VecCollection};

use crate::by_time::process_by_time;
use crate::capture::{encode_rows, Capture};
use crate::repr::{Datum, Diff, Row, Tick};

/// Row order within a group: the first rows in this order are the top.
pub type RowOrder = Rc<dyn Fn(&Row, &Row) -> Ordering>;

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

type TopState = HashMap<Row, Vec<Row>>;

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
                Box::new(|state: &TopState| encode_rows(state.values().flatten().map(|r| (r, 1))));
            (c, write)
        });
        process_by_time(
            self,
            &format!("TopK: {name}"),
            |(key, _): &(Row, Row)| key.hashed(),
            writer,
            move |state: &mut TopState, records, out| {
                let mut touched: HashMap<Row, Vec<Row>> = HashMap::new();
                // A row added n times takes n positions.
                for ((key, row), copies) in records {
                    for _ in 0..copies.clamp(0, k as Diff) {
                        let top = state.entry(key.clone()).or_default();
                        if k == 0 || (top.len() == k && order(&row, &top[k - 1]) != Ordering::Less) {
                            break;
                        }
                        touched.entry(key.clone()).or_insert_with(|| top.clone());
                        let pos = top.partition_point(|r| order(r, &row) != Ordering::Greater);
                        top.insert(pos, row.clone());
                        top.truncate(k);
                    }
                }
                for (key, before) in touched {
                    let after = &state[&key];
                    for (i, row) in before.iter().enumerate() {
                        if after.get(i) != Some(row) {
                            out.push((numbered(row, i), -1));
                        }
                    }
                    for (i, row) in after.iter().enumerate() {
                        if before.get(i) != Some(row) {
                            out.push((numbered(row, i), 1));
                        }
                    }
                }
            },
        )
    }
}

fn numbered(row: &Row, i: usize) -> Row {
    let mut r = row.clone();
    r.push(Datum::Int(i as i64 + 1));
    r
}
