//! Stateful cuts: where a dataflow's state can be written down and read back
//! (DESIGN.md §4, "Durable state").
//!
//! A *cut* is the input of the first arrangement on a path from a source.
//! Everything upstream of it is map, filter and flat-map, so the cut's
//! collection at a completed time `T` is the consolidated function of the
//! events up to `T`. Snapshotting the dataflow is reading every cut's
//! arrangement at `T` (no state beyond what the operators already keep);
//! restoring it is feeding those updates, at `T`, into an extra input
//! concatenated at the same cut, while the sources resume after `T`.
//! Downstream of a cut everything is recomputed from it.
//!
//! Operators with state of their own (upsert, monotonic top-k) have no
//! input arrangement to read: their *output* is arranged for the snapshot
//! (one entry per key), and restoring feeds it back into their input, which
//! they turn into the same state (the latest row per key, the top k).
//!
//! # Contract
//! - Cuts are numbered in render order, which depends only on the plans: the
//!   same job renders the same cuts, on any worker count. A snapshot is
//!   only restored into a dataflow of the same plan fingerprint and
//!   [`SNAPSHOT_FORMAT`].
//! - An entry read on one worker may be restored on any worker: every cut
//!   is exchanged by key downstream.
//! - Data that a restored dataflow produces again by itself (constants,
//!   imported views) is not part of any cut: constants render empty when
//!   restoring, imports are read from their own dataflow.

use std::fmt;

use differential_dataflow::difference::Semigroup;
use differential_dataflow::input::{Input, InputSession};
use differential_dataflow::operators::arrange::{Arranged, TraceAgent};
use differential_dataflow::trace::cursor::Cursor;
use differential_dataflow::trace::implementations::KeySpine;
use differential_dataflow::trace::TraceReader;
use differential_dataflow::VecCollection;
use serde::de::DeserializeOwned;
use timely::dataflow::Scope;
use timely::progress::Antichain;
use weir_operators::aggregate::AggDiff;
use weir_operators::capture::Capture;
use weir_operators::cep::PatternState;
use weir_operators::repr::{Datum, Diff, Row, Tick};
use weir_operators::row_batch::{ArrangeRows, RowTrace};

/// The version of what a cut's entries mean. Bump it whenever rendering
/// changes which cuts a plan has, their order, or their entries' encoding:
/// older snapshots are then ignored and their jobs replay. (2: min and max
/// over append-only input moved into the difference type of their group.)
pub const SNAPSHOT_FORMAT: u32 = 2;

/// Keyed rows, arranged flat ([`weir_operators::row_batch`]).
pub type ValCutTrace = RowTrace;
pub type KeyCutTrace<R> = TraceAgent<KeySpine<Row, Tick, R>>;

/// A cut at keyed rows: its arrangement, and the collection it holds (the
/// input with the restored updates).
pub type KeyedCut<'s> = (Arranged<'s, ValCutTrace>, VecCollection<'s, Tick, (Row, Row), Diff>);

/// A cut as the snapshot reads it: an arrangement, or an operator's own
/// state captured as of the snapshot's time.
pub trait CutTrace {
    /// Announces a snapshot at `at` (a time not yet processed: operators
    /// with their own state write it down when they pass it).
    fn request(&mut self, _at: Tick) {}
    /// Forgets an announced snapshot.
    fn cancel(&mut self, _at: Tick) {}
    /// Whether the cut can be read at `at` now.
    fn ready(&mut self, at: Tick) -> bool;
    /// Lets the arrangement forget history before `since`.
    fn allow_compaction(&mut self, _since: Tick) {}
    /// Every update with a time at or before `at`, consolidated, each
    /// encoded as one entry.
    ///
    /// # Contract
    /// The caller has checked [`CutTrace::ready`], and has not allowed
    /// compaction past `at`.
    fn read_at(&mut self, at: Tick, out: &mut dyn FnMut(Vec<u8>)) -> Result<(), SnapshotEncodeError>;
}

/// A cut's restore input, fed from a snapshot's entries.
pub trait RestoreInput {
    /// Decodes one entry and feeds it at `at`.
    fn push(&mut self, at: Tick, entry: &[u8]) -> Result<(), SnapshotDecodeError>;
}

/// A cut could not be read: an entry would not encode (a bug of weir's, not
/// of the input), or an operator could not capture its state at the time.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotEncodeError {
    #[error("internal error: cannot encode a snapshot entry: {0}")]
    Encode(#[from] bincode::Error),
    #[error("cannot capture an operator's state: {0}")]
    Capture(String),
}

/// A stored entry does not decode as its cut's type: the snapshot does not
/// belong to this dataflow or is damaged.
#[derive(Debug, thiserror::Error)]
#[error("snapshot entry does not fit its cut: {0}")]
pub struct SnapshotDecodeError(#[from] bincode::Error);

fn walk<K, V, R, C>(cursor: &mut C, storage: &C::Storage, at: Tick, out: &mut dyn FnMut(&K, &V, R))
where
    K: ?Sized,
    V: ?Sized,
    R: Semigroup,
    C: for<'a> Cursor<Key<'a> = &'a K, Val<'a> = &'a V, Time = Tick, Diff = R>,
{
    while cursor.key_valid(storage) {
        while cursor.val_valid(storage) {
            let mut acc: Option<R> = None;
            cursor.map_times(storage, |t, d| {
                if C::owned_time(t) <= at {
                    let d = C::owned_diff(d);
                    match &mut acc {
                        Some(a) => a.plus_equals(&d),
                        None => acc = Some(d),
                    }
                }
            });
            if let Some(d) = acc.filter(|d| !d.is_zero()) {
                out(cursor.key(storage), cursor.val(storage), d);
            }
            cursor.step_val(storage);
        }
        cursor.step_key(storage);
    }
}

fn trace_upper<Tr: TraceReader<Time = Tick>>(trace: &mut Tr) -> Option<Tick> {
    let mut upper = Antichain::new();
    trace.read_upper(&mut upper);
    upper.elements().first().copied()
}

fn compact<Tr: TraceReader<Time = Tick>>(trace: &mut Tr, since: Tick) {
    let f = Antichain::from_elem(since);
    trace.set_logical_compaction(f.borrow());
    trace.set_physical_compaction(f.borrow());
}

macro_rules! cut_trace {
    ($name:ident, $trace:ty, $key:ty, $val:ty, $diff:ty) => {
        struct $name($trace);

        impl CutTrace for $name {
            fn ready(&mut self, at: Tick) -> bool {
                trace_upper(&mut self.0).is_none_or(|u| u > at)
            }
            fn allow_compaction(&mut self, since: Tick) {
                compact(&mut self.0, since)
            }
            fn read_at(&mut self, at: Tick, out: &mut dyn FnMut(Vec<u8>)) -> Result<(), SnapshotEncodeError> {
                let mut upper = Antichain::new();
                self.0.read_upper(&mut upper);
                let Some(batches) = self.0.batches_through(upper.borrow()) else {
                    return Ok(());
                };
                let (mut cursor, storage) = differential_dataflow::trace::cursor::cursor_list(batches);
                let mut failed = None;
                walk(&mut cursor, &storage, at, &mut |k: &$key, v: &$val, d: $diff| {
                    if failed.is_none() {
                        match bincode::serialize(&(k, v, d)) {
                            Ok(bytes) => out(bytes),
                            Err(e) => failed = Some(e),
                        }
                    }
                });
                failed.map_or(Ok(()), |e| Err(e.into()))
            }
        }
    };
}

// A flat row serialises as its `Vec`: entries read the same either way.
cut_trace!(ValCut, ValCutTrace, [Datum], [Datum], Diff);
cut_trace!(KeyCut, KeyCutTrace<Diff>, Row, (), Diff);
cut_trace!(AggCut, KeyCutTrace<AggDiff>, Row, (), AggDiff);

/// The own state of an operator, captured as of the snapshot's time.
struct CaptureCut(Capture);

impl CutTrace for CaptureCut {
    fn request(&mut self, at: Tick) {
        self.0.request(at);
    }
    fn cancel(&mut self, at: Tick) {
        self.0.cancel(at);
    }
    fn ready(&mut self, at: Tick) -> bool {
        self.0.captured(at)
    }
    fn read_at(&mut self, at: Tick, out: &mut dyn FnMut(Vec<u8>)) -> Result<(), SnapshotEncodeError> {
        match self.0.take(at) {
            Some(Ok(entries)) => {
                entries.into_iter().for_each(out);
                Ok(())
            }
            Some(Err(e)) => Err(SnapshotEncodeError::Capture(e)),
            None => Err(SnapshotEncodeError::Capture(format!("no state was captured at {at}"))),
        }
    }
}

/// Feeds decoded entries `(key, val, diff)` into an input, mapped to the
/// input's records by `map`.
struct Restore<E, D, R, F>
where
    D: differential_dataflow::Data,
    R: Semigroup + 'static,
{
    input: InputSession<Tick, D, R>,
    map: F,
    _entry: std::marker::PhantomData<E>,
}

impl<E, D, R, F> RestoreInput for Restore<E, D, R, F>
where
    E: DeserializeOwned,
    D: differential_dataflow::Data,
    R: Semigroup + 'static,
    F: FnMut(E) -> (D, R),
{
    fn push(&mut self, at: Tick, entry: &[u8]) -> Result<(), SnapshotDecodeError> {
        let e: E = bincode::deserialize(entry)?;
        let (d, r) = (self.map)(e);
        let at = at.max(*self.input.time());
        self.input.update_at(d, at, r);
        Ok(())
    }
}

/// The restore input of a cut that restores by other means.
struct NoRestore;

impl RestoreInput for NoRestore {
    fn push(&mut self, _at: Tick, _entry: &[u8]) -> Result<(), SnapshotDecodeError> {
        Ok(())
    }
}

/// The cuts of one dataflow on one worker, in render order.
#[derive(Default)]
pub struct Cuts {
    pub traces: Vec<Box<dyn CutTrace>>,
    /// One per cut, same order; dropped (closed) once restored, or at once
    /// when nothing is restored.
    pub restores: Vec<Box<dyn RestoreInput>>,
    /// Why this dataflow cannot be snapshotted, if it cannot (it then
    /// replays on restart).
    pub unsupported: Option<String>,
    /// While restoring: the snapshot's entries of a cut, from every part
    /// (for operators that restore their own state at construction).
    pub state_source: Option<StateSource>,
    /// Why restoring an operator's own state failed, if it did.
    pub restore_error: Option<String>,
}

/// Reads a cut's entries from every part of the snapshot being restored.
pub type StateSource = Box<dyn FnMut(u32) -> Result<Vec<Vec<u8>>, String>>;

impl fmt::Debug for Cuts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cuts")
            .field("cuts", &self.traces.len())
            .field("unsupported", &self.unsupported)
            .finish()
    }
}

impl Cuts {
    /// Whether a snapshot is being restored into this dataflow (while it is
    /// rendered): constants then render empty, their rows are in the cuts.
    pub fn restoring(&self) -> bool {
        self.state_source.is_some()
    }

    /// The cut of a pattern rule: its state is captured by the operator
    /// itself, and restored into it at construction. Returns what the
    /// operator takes.
    pub fn pattern(&mut self) -> PatternState {
        let cut = self.traces.len() as u32;
        let restore = match self.state_source.as_mut() {
            Some(read) => read(cut).unwrap_or_else(|e| {
                self.restore_error.get_or_insert(e);
                Vec::new()
            }),
            None => Vec::new(),
        };
        let state = PatternState {
            capture: Capture::default(),
            restore,
        };
        self.traces.push(Box::new(CaptureCut(state.capture.clone())));
        // Its restore is the operator's own: nothing is fed at this cut.
        self.restores.push(Box::new(NoRestore));
        state
    }

    /// Marks the dataflow as one that cannot be snapshotted (the first
    /// reason is kept).
    pub fn refuse(&mut self, why: impl Into<String>) {
        self.unsupported.get_or_insert_with(|| why.into());
    }

    /// A cut at keyed rows: arranges them (with the restored updates) and
    /// keeps the arrangement for the snapshot. Returns the arrangement and
    /// the collection it holds.
    pub fn keyed<'s>(
        &mut self,
        scope: Scope<'s, Tick>,
        coll: VecCollection<'s, Tick, (Row, Row), Diff>,
        name: &str,
    ) -> KeyedCut<'s> {
        let (input, restored) = scope.new_collection::<(Row, Row), Diff>();
        self.restores.push(Box::new(Restore {
            input,
            map: |(k, v, d): (Row, Row, Diff)| ((k, v), d),
            _entry: std::marker::PhantomData,
        }));
        let all = coll.concat(restored);
        let arranged = all.clone().arrange_rows_named(&format!("Arrange: {name}"));
        self.traces.push(Box::new(ValCut(arranged.trace.clone())));
        (arranged, all)
    }

    /// A cut at rows arranged by themselves (DISTINCT).
    pub fn rows<'s>(
        &mut self,
        scope: Scope<'s, Tick>,
        coll: VecCollection<'s, Tick, Row, Diff>,
        name: &str,
    ) -> Arranged<'s, KeyCutTrace<Diff>> {
        let (input, restored) = scope.new_collection::<Row, Diff>();
        self.restores.push(Box::new(Restore {
            input,
            map: |(k, (), d): (Row, (), Diff)| (k, d),
            _entry: std::marker::PhantomData,
        }));
        let arranged = coll.concat(restored).arrange_by_self_named(&format!("Arrange: {name}"));
        self.traces.push(Box::new(KeyCut(arranged.trace.clone())));
        arranged
    }

    /// A cut at group keys whose difference accumulates the aggregates.
    pub fn accumulated<'s>(
        &mut self,
        scope: Scope<'s, Tick>,
        coll: VecCollection<'s, Tick, Row, AggDiff>,
        name: &str,
    ) -> Arranged<'s, KeyCutTrace<AggDiff>> {
        let (input, restored) = scope.new_collection::<Row, AggDiff>();
        self.restores.push(Box::new(Restore {
            input,
            map: |(k, (), d): (Row, (), AggDiff)| (k, d),
            _entry: std::marker::PhantomData,
        }));
        let arranged = coll.concat(restored).arrange_by_self_named(&format!("Arrange: {name}"));
        self.traces.push(Box::new(AggCut(arranged.trace.clone())));
        arranged
    }

    /// The cut of an operator that keeps its own state: `op` is applied to
    /// `input` with the restored records concatenated, and to a [`Capture`]
    /// through which it writes its state as rows `(row, (), count)`.
    /// Restoring feeds each snapshotted row, mapped by `back`, into the
    /// operator's input, which turns it into the same state (the latest row
    /// per key, the top k).
    pub fn own_state<'s, D, F, O>(
        &mut self,
        scope: Scope<'s, Tick>,
        input: VecCollection<'s, Tick, D, Diff>,
        mut back: F,
        op: O,
    ) -> VecCollection<'s, Tick, Row, Diff>
    where
        D: differential_dataflow::Data,
        F: FnMut(Row) -> D + 'static,
        O: FnOnce(VecCollection<'s, Tick, D, Diff>, Capture) -> VecCollection<'s, Tick, Row, Diff>,
    {
        let (restore, restored) = scope.new_collection::<D, Diff>();
        self.restores.push(Box::new(Restore {
            input: restore,
            map: move |(k, (), d): (Row, (), Diff)| (back(k), d),
            _entry: std::marker::PhantomData,
        }));
        let capture = Capture::default();
        let out = op(input.concat(restored), capture.clone());
        self.traces.push(Box::new(CaptureCut(capture)));
        out
    }
}
