//! Feeding a view's read-optimised copy ([`weir_operators::read_copy`])
//! from the batches its arrangement produces: no second arrangement, and
//! work proportional to the view's changes.

use differential_dataflow::operators::arrange::Arranged;
use differential_dataflow::trace::cursor::Cursor;
use differential_dataflow::trace::Navigable;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use weir_operators::read_copy::ShardWriter;
use weir_operators::repr::Tick;

use super::ViewTrace;

/// Applies every batch of `arranged` on this worker to `writer`, and
/// publishes each time once the arrangement has passed it: a batch holds
/// every update before its upper, and the input frontier says no batch
/// with earlier updates is still on its way.
pub fn publish_copy(arranged: &Arranged<'_, ViewTrace>, name: &str, mut writer: ShardWriter) {
    arranged.stream.clone().sink(Pipeline, name, move |(input, frontier)| {
        let mut upper: Tick = 0;
        input.for_each(|_cap, spans| {
            for span in spans.iter() {
                if let Some(u) = span.desc.upper().elements().first() {
                    upper = upper.max(*u);
                }
                let Some(batch) = span.inner.as_ref() else { continue };
                let mut cursor = batch.cursor();
                while let Some(key) = cursor.get_key(batch) {
                    while let Some(val) = cursor.get_val(batch) {
                        cursor.map_times(batch, |t, d| {
                            writer.update(*t, key.clone(), val.clone(), *d);
                        });
                        cursor.step_val(batch);
                    }
                    cursor.step_key(batch);
                }
            }
        });
        // A closed frontier (every source ended, or the dataflow dropped):
        // the view is final, complete at every time.
        upper = match frontier.frontier().first() {
            Some(f) => upper.max(*f),
            None => Tick::MAX,
        };
        writer.advance(upper);
    });
}
