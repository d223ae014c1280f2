//! A collection of results split into its values and its errors in one
//! pass, each update moved to the one output it belongs to.
//!
//! Why not two `flat_map`s: a timely stream read by two operators is cloned
//! for every reader but the last, so splitting that way copies every row
//! (and each of its strings) once more at every stage that can fail.

use differential_dataflow::Data;
use differential_dataflow::{AsCollection, VecCollection};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::progress::operate::FrontierInterest;

use crate::repr::{Diff, Tick};

/// The `Ok` updates of `results` and, apart, the `Err` ones, at their own
/// times and with their own diffs, by one operator called `name`.
pub fn split_results<'s, D, E>(
    results: VecCollection<'s, Tick, Result<D, E>, Diff>,
    name: &str,
) -> (VecCollection<'s, Tick, D, Diff>, VecCollection<'s, Tick, E, Diff>)
where
    D: Data,
    E: Data,
{
    let mut builder = OperatorBuilder::new(name.to_owned(), results.inner.scope());
    let mut input = builder.new_input(results.inner, Pipeline);
    builder.set_notify_for(0, FrontierInterest::Never);
    let (mut oks_out, oks) = builder.new_output::<Vec<(D, Tick, Diff)>>();
    let (mut errs_out, errs) = builder.new_output::<Vec<(E, Tick, Diff)>>();
    builder.build(move |_| {
        let mut ok_batch = Vec::new();
        let mut err_batch = Vec::new();
        move |_frontiers| {
            let mut oks_out = oks_out.activate();
            let mut errs_out = errs_out.activate();
            input.for_each(|cap, data| {
                for (r, t, diff) in data.drain(..) {
                    match r {
                        Ok(d) => ok_batch.push((d, t, diff)),
                        Err(e) => err_batch.push((e, t, diff)),
                    }
                }
                if !ok_batch.is_empty() {
                    oks_out.give(&cap, &mut ok_batch);
                    ok_batch.clear();
                }
                if !err_batch.is_empty() {
                    errs_out.give(&cap, &mut err_batch);
                    err_batch.clear();
                }
            });
        }
    });
    (oks.as_collection(), errs.as_collection())
}
