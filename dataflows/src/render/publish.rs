//! Feeding a view's read-optimised copy ([`weir_operators::read_copy`])
//! from the batches its arrangement produces: no second arrangement, and
//! work proportional to the view's changes.

use std::cell::Cell;
use std::rc::Rc;

use differential_dataflow::operators::arrange::Arranged;
use differential_dataflow::trace::cursor::Cursor;
use differential_dataflow::trace::{Navigable, TraceReader};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::progress::frontier::{Antichain, AntichainRef};
use weir_operators::read_copy::ShardWriter;
use weir_operators::repr::{Datum, Diff, Row, Tick};

use super::ViewTrace;

/// Applies every batch of `arranged` on this worker to `writer`, and
/// publishes each time once the arrangement has passed it: a batch holds
/// every update before its upper, and the input frontier says no batch
/// with earlier updates is still on its way.
///
/// While the view replays the history before its install, the copy is not
/// kept (only its latest time could be read, and each update costs a
/// lookup in a large map): once past it, the copy is loaded from the
/// arrangement in one pass, and kept up to date batch by batch from then on.
pub fn publish_copy(arranged: &Arranged<'_, ViewTrace>, name: &str, mut writer: ShardWriter) {
    let mut trace = Some(arranged.trace.clone());
    // The sink reads the trace once, at the current time: it holds back
    // no compaction meanwhile.
    if let Some(t) = trace.as_mut() {
        t.set_logical_compaction(AntichainRef::new(&[]));
        t.set_physical_compaction(AntichainRef::new(&[]));
    }
    // The upper of the last batch with updates seen while replaying.
    let mut last_batch: Tick = 0;
    arranged.stream.clone().sink(Pipeline, name, move |(input, frontier)| {
        let mut upper: Tick = 0;
        input.for_each(|_cap, spans| {
            for span in spans.iter() {
                if let Some(u) = span.desc.upper().elements().first() {
                    upper = upper.max(*u);
                }
                let Some(batch) = span.inner.as_ref() else { continue };
                if trace.is_some() {
                    if batch.cursor().get_key(batch).is_some() {
                        last_batch = last_batch.max(upper);
                    }
                    continue;
                }
                for_each_update(batch, |key, val, t, d| writer.update(t, key.to_vec(), val.to_vec(), d));
            }
        });
        // A closed frontier (every source ended, or the dataflow dropped):
        // the view is final, complete at every time.
        upper = match frontier.frontier().first() {
            Some(f) => upper.max(*f),
            None => Tick::MAX,
        };
        if trace.is_some() && writer.replaying(upper) {
            return;
        }
        if let Some(mut t) = trace.take() {
            // Final while replaying: nothing changed after the last batch.
            let since = if upper == Tick::MAX { last_batch } else { upper }.saturating_sub(1);
            writer.load(upper, since, contents(&mut t));
            return;
        }
        writer.advance(upper);
    });
}

/// Adds the diffs of every batch of `arranged` on this worker to `rows`: the
/// view's row count on this worker, as of the batches seen.
pub fn count_rows(arranged: &Arranged<'_, ViewTrace>, name: &str, rows: Rc<Cell<i64>>) {
    arranged.stream.clone().sink(Pipeline, name, move |(input, _frontier)| {
        input.for_each(|_cap, spans| {
            for span in spans.iter() {
                let Some(batch) = span.inner.as_ref() else { continue };
                let mut sum: Diff = 0;
                for_each_update(batch, |_, _, _, d| sum += d);
                rows.set(rows.get() + sum);
            }
        });
    });
}

/// Calls `f(key, row, time, diff)` for every update in `batch`.
fn for_each_update(batch: &<ViewTrace as TraceReader>::Batch, mut f: impl FnMut(&[Datum], &[Datum], Tick, Diff)) {
    let mut cursor = batch.cursor();
    while let Some(key) = cursor.get_key(batch) {
        while let Some(val) = cursor.get_val(batch) {
            cursor.map_times(batch, |t, d| f(key, val, *t, *d));
            cursor.step_val(batch);
        }
        cursor.step_key(batch);
    }
}

/// The trace's rows as of its latest time: each (key, row) with the sum of
/// its diffs.
fn contents(trace: &mut ViewTrace) -> Vec<(Row, Row, Diff)> {
    let mut out = Vec::new();
    let mut upper = Antichain::new();
    trace.read_upper(&mut upper);
    let Some(batches) = trace.batches_through(upper.borrow()) else {
        return out;
    };
    let (mut cursor, storage) = differential_dataflow::trace::cursor::cursor_list(batches);
    while let Some(key) = cursor.get_key(&storage) {
        while let Some(val) = cursor.get_val(&storage) {
            let mut sum: Diff = 0;
            cursor.map_times(&storage, |_, d| sum += *d);
            if sum != 0 {
                out.push((key.to_vec(), val.to_vec(), sum));
            }
            cursor.step_val(&storage);
        }
        cursor.step_key(&storage);
    }
    out
}
