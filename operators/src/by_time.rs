//! A keyed, stateful operator that processes each timestamp only once it is
//! complete, in time order. The upsert and top-k operators are built on it:
//! both need "all updates at time t, in order" to emit correct differences.

use std::collections::BTreeMap;

use differential_dataflow::{AsCollection, VecCollection};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::ExchangeData;

use crate::capture::{Capture, Captured};
use crate::repr::{Diff, Row, Tick};

/// What writes an operator's state down for a snapshot (see
/// [`crate::capture`]).
pub type StateWriter<S> = (Capture, Box<dyn Fn(&S) -> Captured>);

/// A complete-when-the-frontier-passes time's capability and updates.
type Pending<D> = (Capability<Tick>, Vec<(D, Diff)>);

/// Routes every update of `collection` to the worker `route(record) % peers`,
/// buffers it until its time is complete, then calls `logic(state, updates,
/// output)` once per complete time, in time order, with that time's
/// `(record, diff)` pairs in arrival order (`logic` sorts them if it needs an
/// order). What `logic` pushes to `output` is emitted at that time.
///
/// # Contract
/// `state` lives for the operator's lifetime and is private to the worker;
/// records with the same route value always reach the same worker. With
/// `capture`, the state is written down as of each requested time.
pub fn process_by_time<'scope, D, S, R, L>(
    collection: VecCollection<'scope, Tick, D, Diff>,
    name: &str,
    route: R,
    capture: Option<StateWriter<S>>,
    mut logic: L,
) -> VecCollection<'scope, Tick, Row, Diff>
where
    D: ExchangeData,
    S: Default + 'static,
    R: Fn(&D) -> u64 + 'static,
    L: FnMut(&mut S, Vec<(D, Diff)>, &mut Vec<(Row, Diff)>) + 'static,
{
    collection
        .inner
        .unary_frontier::<CapacityContainerBuilder<Vec<(Row, Tick, Diff)>>, _, _, _>(
            Exchange::new(move |(d, _, _): &(D, Tick, Diff)| route(d)),
            name,
            move |_capability, _info| {
                let mut pending: BTreeMap<Tick, Pending<D>> = BTreeMap::new();
                let mut state = S::default();
                let mut out = Vec::new();
                move |(input, frontier), output| {
                    input.for_each(|cap, data| {
                        for (d, t, diff) in data.drain(..) {
                            pending
                                .entry(t)
                                .or_insert_with(|| (cap.delayed(&t, 0), Vec::new()))
                                .1
                                .push((d, diff));
                        }
                    });
                    while let Some(entry) = pending.first_entry() {
                        let t = *entry.key();
                        if frontier.less_equal(&t) {
                            break;
                        }
                        if let Some((c, write)) = &capture {
                            c.before(t, &mut || write(&state));
                        }
                        let (cap, data) = entry.remove();
                        logic(&mut state, data, &mut out);
                        if !out.is_empty() {
                            let mut session = output.session(&cap);
                            for (row, diff) in out.drain(..) {
                                session.give((row, t, diff));
                            }
                        }
                    }
                    if let Some((c, write)) = &capture {
                        // Nothing is left before the first pending time or
                        // the frontier, whichever comes first.
                        let next = pending.keys().next().copied();
                        let f = frontier.frontier().first().copied();
                        let upto = match (next, f) {
                            (Some(n), Some(f)) => Some(n.min(f)),
                            (Some(n), None) => Some(n),
                            (None, f) => f,
                        };
                        c.passed(upto, &mut || write(&state));
                    }
                }
            },
        )
        .as_collection()
}
