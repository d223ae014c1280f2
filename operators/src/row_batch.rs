//! Arrangements of keyed rows whose batches hold every row's datums in one
//! flat vector.
//!
//! Differential's default layout keeps a batch's keys and values as a
//! `Vec<Row>`: one heap allocation per row, copied again (allocated,
//! cloned, freed) at every level of the spine a batch is merged into, and a
//! 24-byte header plus the allocator's rounding per row at rest. Here a
//! batch keeps a key (or value) as a range of one `Vec<Datum>` per
//! container: a merge appends datums, a drop frees two vectors, and a
//! cursor reads a row as `&[Datum]`.
//!
//! # Contract
//! - The order of rows is the order of `Row` (`Vec<Datum>` and `[Datum]`
//!   compare alike), so a flat arrangement holds the same updates in the
//!   same order as a `ValSpine<Row, Row, _, _>`, and reads the same.
//! - Only keyed arrangements (`(Row, Row)`) are flat: differential's
//!   `count_total` and `distinct_total` want owned keys from their cursor.

use std::rc::Rc;

use differential_dataflow::batcher::merge::chunker::ContainerChunker;
use differential_dataflow::batcher::merge::vec::VecMerger;
use differential_dataflow::batcher::merge::MergeBatcher;
use differential_dataflow::operators::arrange::{Arranged, TraceAgent};
use differential_dataflow::trace::implementations::ord_neu::{OrdValBatch, OrdValBuilder};
use differential_dataflow::trace::implementations::spine_fueled::Spine;
use differential_dataflow::trace::implementations::{BatchContainer, OffsetList};
use differential_dataflow::VecCollection;
use timely::container::PushInto;

use crate::repr::{Datum, Diff, Row, Tick};

/// Rows as ranges of one vector of datums: row `i` is
/// `datums[ends[i-1]..ends[i]]` (`ends[-1]` being 0).
pub struct RowContainer {
    /// Where each row ends in `datums`; a compact list (32-bit while the
    /// batch is small enough).
    ends: OffsetList,
    datums: Vec<Datum>,
}

impl RowContainer {
    fn start(&self, index: usize) -> usize {
        if index == 0 {
            0
        } else {
            self.ends.index(index - 1)
        }
    }
}

impl Default for RowContainer {
    fn default() -> Self {
        Self {
            ends: OffsetList::with_capacity(0),
            datums: Vec::new(),
        }
    }
}

impl PushInto<&[Datum]> for RowContainer {
    fn push_into(&mut self, row: &[Datum]) {
        self.datums.extend_from_slice(row);
        self.ends.push(self.datums.len());
    }
}

impl PushInto<&Row> for RowContainer {
    fn push_into(&mut self, row: &Row) {
        self.push_into(&row[..]);
    }
}

impl PushInto<Row> for RowContainer {
    fn push_into(&mut self, row: Row) {
        self.push_into(&row[..]);
    }
}

impl BatchContainer for RowContainer {
    type Owned = Row;
    type ReadItem<'a> = &'a [Datum];

    #[inline(always)]
    fn into_owned(item: &[Datum]) -> Row {
        item.to_vec()
    }
    #[inline(always)]
    fn clone_onto(item: &[Datum], other: &mut Row) {
        other.clear();
        other.extend_from_slice(item);
    }
    fn reborrow<'b, 'a: 'b>(item: &'a [Datum]) -> &'b [Datum] {
        item
    }
    fn push_ref(&mut self, item: &[Datum]) {
        self.push_into(item);
    }
    fn push_own(&mut self, item: &Row) {
        self.push_into(item);
    }
    fn clear(&mut self) {
        self.ends.clear();
        self.datums.clear();
    }
    fn with_capacity(rows: usize) -> Self {
        Self {
            ends: OffsetList::with_capacity(rows),
            datums: Vec::with_capacity(rows),
        }
    }
    fn merge_capacity(a: &Self, b: &Self) -> Self {
        Self {
            ends: OffsetList::with_capacity(a.len() + b.len()),
            datums: Vec::with_capacity(a.datums.len() + b.datums.len()),
        }
    }
    #[inline]
    fn index(&self, index: usize) -> &[Datum] {
        &self.datums[self.start(index)..self.ends.index(index)]
    }
    fn len(&self) -> usize {
        self.ends.len()
    }
}

/// The layout of a flat batch of `((Row, Row), Tick, Diff)` updates.
pub type RowLayout = (RowContainer, RowContainer, Vec<Tick>, Vec<Diff>, OffsetList);
/// A spine of flat batches: an arrangement's trace.
pub type RowSpine = Spine<Rc<OrdValBatch<RowLayout>>>;
/// Builds a flat batch from sorted, consolidated owned updates.
pub type RowBuilder = OrdValBuilder<RowLayout, Vec<((Row, Row), Tick, Diff)>>;
/// Sorts and consolidates owned updates before they are sealed flat.
pub type RowBatcher =
    MergeBatcher<ContainerChunker<Vec<((Row, Row), Tick, Diff)>>, VecMerger<(Row, Row), Tick, Diff>, RowBuilder>;
/// A shared handle to a flat arrangement's trace.
pub type RowTrace = TraceAgent<RowSpine>;

/// Arranging keyed rows flat (as differential's `arrange_by_key_named`).
pub trait ArrangeRows<'s> {
    fn arrange_rows_named(self, name: &str) -> Arranged<'s, RowTrace>;
}

impl<'s> ArrangeRows<'s> for VecCollection<'s, Tick, (Row, Row), Diff> {
    fn arrange_rows_named(self, name: &str) -> Arranged<'s, RowTrace> {
        self.arrange_named::<RowBatcher, RowSpine>(name, RowBatcher::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(vals: &[i64]) -> Row {
        vals.iter().map(|&v| Datum::Int(v)).collect()
    }

    #[test]
    fn reads_back_every_row_including_empty_ones() {
        let rows = [row(&[]), row(&[]), row(&[1, 2]), row(&[]), row(&[3])];
        let mut c = RowContainer::with_capacity(rows.len());
        for r in &rows {
            c.push_own(r);
        }
        assert_eq!(c.len(), rows.len());
        for (i, r) in rows.iter().enumerate() {
            assert_eq!(c.index(i), &r[..]);
        }
        c.clear();
        assert_eq!(c.len(), 0);
        c.push_ref(&rows[2]);
        assert_eq!(c.index(0), &rows[2][..]);
    }

    #[test]
    fn clone_onto_replaces_a_row_of_any_length() {
        let mut c = RowContainer::default();
        c.push_own(&row(&[1, 2, 3]));
        let mut owned = row(&[9]);
        RowContainer::clone_onto(c.index(0), &mut owned);
        assert_eq!(owned, row(&[1, 2, 3]));
    }
}
