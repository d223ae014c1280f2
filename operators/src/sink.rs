//! Hands a collection's changes out of the dataflow, one complete time at a
//! time, in time order, on one worker: what a changelog sink writes.

use std::collections::BTreeMap;

use differential_dataflow::consolidation::consolidate;
use differential_dataflow::VecCollection;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;

use crate::repr::{Diff, Row, Tick};

/// What [`deliver_changes`] hands out.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The consolidated changes at one time (never empty), once every
    /// change at that time is known. Times come in increasing order.
    Changes(Tick, Vec<(Row, Diff)>),
    /// Every change before this time has been handed out.
    Frontier(Tick),
}

/// Routes every change of `collection` to worker 0 and calls `deliver`
/// there, in time order: the changes of each complete time, and each
/// advance of the frontier (the empty frontier is reported as
/// `Frontier(Tick::MAX)`). Other workers never call it.
pub fn deliver_changes<L>(collection: VecCollection<'_, Tick, Row, Diff>, name: &str, mut deliver: L)
where
    L: FnMut(Delivery) + 'static,
{
    let mut pending: BTreeMap<Tick, Vec<(Row, Diff)>> = BTreeMap::new();
    let mut reported: Option<Tick> = None;
    collection.inner.sink(
        Exchange::new(|_: &(Row, Tick, Diff)| 0),
        name,
        move |(input, frontier)| {
            input.for_each(|_cap, data| {
                for (row, t, diff) in data.drain(..) {
                    pending.entry(t).or_default().push((row, diff));
                }
            });
            let upper = frontier.frontier().first().copied().unwrap_or(Tick::MAX);
            while let Some(entry) = pending.first_entry() {
                if *entry.key() >= upper {
                    break;
                }
                let (t, mut changes) = entry.remove_entry();
                consolidate(&mut changes);
                if !changes.is_empty() {
                    deliver(Delivery::Changes(t, changes));
                }
            }
            if reported != Some(upper) {
                reported = Some(upper);
                deliver(Delivery::Frontier(upper));
            }
        },
    );
}
