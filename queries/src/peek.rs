//! Reading a view's arrangement on one worker.

use std::sync::atomic::{AtomicU64, Ordering};

use differential_dataflow::trace::cursor::Cursor;
use differential_dataflow::trace::TraceReader;
use timely::progress::Antichain;
use weir_dataflows::render::ViewTrace;
use weir_operators::repr::{Datum, Diff, Row, Tick};

/// Rows a peek found with a negative multiplicity, in this process. A view
/// never holds one unless the engine is wrong (a retraction of something
/// never added); reads leave such rows out, and the test harness fails on
/// any.
pub static NEGATIVE_MULTIPLICITIES: AtomicU64 = AtomicU64::new(0);

/// The first time not yet complete in the trace; `None` once the trace is
/// closed (its dataflow dropped).
pub fn trace_upper(trace: &mut ViewTrace) -> Option<Tick> {
    let mut upper = Antichain::new();
    trace.read_upper(&mut upper);
    upper.elements().first().copied()
}

/// Allows the trace to forget history before `since`: reads as of a time
/// at or after it stay exact. Called as reads complete (DESIGN.md §2).
pub fn allow_compaction(trace: &mut ViewTrace, since: Tick) {
    let f = Antichain::from_elem(since);
    trace.set_logical_compaction(f.borrow());
    trace.set_physical_compaction(f.borrow());
}

/// The rows of this worker's part of the view as of `as_of`, with their
/// multiplicities; only the rows under `key` when it is given.
///
/// # Contract
/// The caller has checked that the trace is complete through `as_of`
/// (`trace_upper(trace) > Some(as_of)`) and not compacted past it.
pub fn peek(trace: &mut ViewTrace, as_of: Tick, key: Option<&Row>, out: &mut Vec<(Row, Diff)>) {
    let mut upper = Antichain::new();
    trace.read_upper(&mut upper);
    let Some(batches) = trace.batches_through(upper.borrow()) else {
        return;
    };
    let (mut cursor, storage) = differential_dataflow::trace::cursor::cursor_list(batches);
    match key {
        Some(k) => {
            cursor.seek_key(&storage, k);
            if cursor.get_key(&storage) == Some(&k[..]) {
                collect_vals(&mut cursor, &storage, as_of, out);
            }
        }
        None => {
            while cursor.key_valid(&storage) {
                collect_vals(&mut cursor, &storage, as_of, out);
                cursor.step_key(&storage);
            }
        }
    }
}

fn collect_vals<C>(cursor: &mut C, storage: &C::Storage, as_of: Tick, out: &mut Vec<(Row, Diff)>)
where
    C: for<'a> Cursor<Key<'a> = &'a [Datum], Val<'a> = &'a [Datum], Time = Tick, Diff = Diff>,
{
    let key = cursor.key(storage);
    while let Some(val) = cursor.get_val(storage) {
        let mut count: Diff = 0;
        cursor.map_times(storage, |t, d| {
            if C::owned_time(t) <= as_of {
                count += C::owned_diff(d);
            }
        });
        if count > 0 {
            let row = if val.is_empty() { key.to_vec() } else { val.to_vec() };
            out.push((row, count));
        } else if count < 0 {
            NEGATIVE_MULTIPLICITIES.fetch_add(1, Ordering::Relaxed);
        }
        cursor.step_val(storage);
    }
}
