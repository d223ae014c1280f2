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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use differential_dataflow::input::Input;
    use timely::dataflow::operators::Inspect;

    use super::*;

    #[test]
    fn every_update_reaches_exactly_its_side() {
        let oks = Arc::new(Mutex::new(Vec::new()));
        let errs = Arc::new(Mutex::new(Vec::new()));
        let (o, e) = (Arc::clone(&oks), Arc::clone(&errs));
        timely::execute_directly(move |worker| {
            let mut input = worker.dataflow::<Tick, _, _>(|scope| {
                let (input, results) = scope.new_collection::<Result<i64, String>, Diff>();
                let (ok, err) = split_results(results, "Split");
                ok.inner.inspect(move |u| o.lock().unwrap().push(*u));
                err.inner.inspect(move |u| e.lock().unwrap().push(u.clone()));
                input
            });
            input.update_at(Ok(1), 0, 1);
            input.update_at(Err("bad".to_string()), 0, 1);
            input.update_at(Ok(2), 1, -1);
            input.update_at(Err("worse".to_string()), 2, 3);
            // The worker runs the dataflow to completion once the input is
            // dropped here.
        });
        let mut oks = oks.lock().unwrap().clone();
        oks.sort();
        assert_eq!(oks, vec![(1, 0, 1), (2, 1, -1)]);
        let mut errs = errs.lock().unwrap().clone();
        errs.sort();
        assert_eq!(errs, vec![("bad".to_string(), 0, 1), ("worse".to_string(), 2, 3)]);
    }
}
