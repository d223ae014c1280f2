//! Runs a job's SQL on the real rendered dataflows, in process, with a given
//! number of timely workers, feeding rows at given ticks (the log's append
//! times), and returns every view's final contents and the dead letters.
//! Shared by the CEP tests; each test file includes it with `mod cep_harness;`.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use weir_dataflows::render::{render_job, ErrorSink, SourceInput};
use weir_dataflows::sql::{plan_job, CatalogLookup, ObjectInfo};
use weir_operators::repr::{Diff, Row, Tick};
use weir_queries::peek::{peek, trace_upper};

struct Empty;
impl CatalogLookup for Empty {
    fn lookup(&self, _: &str) -> Option<ObjectInfo> {
        None
    }
}

/// One row appended to `table` at `tick`.
#[derive(Clone, Debug)]
pub struct Event {
    pub tick: Tick,
    pub table: String,
    pub row: Row,
}

/// What a run leaves behind.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Each view's rows (a row with multiplicity n appears n times), sorted.
    pub views: BTreeMap<String, Vec<Row>>,
    /// Dead letters from every worker: (view, reason, row), sorted.
    pub dead_letters: Vec<(String, String, Row)>,
}

/// How a run ends.
#[derive(Clone, Copy, Debug)]
pub enum End {
    /// The inputs are closed: the stream is over, every pending decision is
    /// taken (as if the watermark reached the end of time).
    Close,
    /// Time advances to this tick with no further rows (so watermarks may
    /// advance by idleness), and the views are read just before it.
    At(Tick),
}

/// Plans `script`, renders it on `workers` workers, feeds `events` (ticks
/// must not decrease), ends the run as `end` says and returns the result.
///
/// # Panics
/// When the script does not plan (the message carries the error).
pub fn run(script: &str, events: &[Event], workers: usize, end: End) -> Outcome {
    let plan = plan_job(script, &Empty).unwrap_or_else(|e| panic!("planning failed: {e}"));
    assert!(
        events.windows(2).all(|w| w[0].tick <= w[1].tick),
        "events must come in tick order"
    );
    let events = events.to_vec();
    let outcome: Arc<Mutex<Outcome>> = Arc::default();
    let shared = Arc::clone(&outcome);
    timely::execute(timely::Config::process(workers), move |worker| {
        let errors: ErrorSink = Default::default();
        let rendered = worker.dataflow(|scope| {
            render_job(
                scope,
                &plan.tables,
                &plan.views,
                &mut HashMap::new(),
                &errors,
                &[],
                &mut |_| Box::new(|_| {}),
            )
        });
        let mut sources = rendered.sources;
        let mut views = rendered.views;
        let index_of: HashMap<String, usize> = sources
            .iter()
            .enumerate()
            .map(|(i, (name, _))| (name.clone(), i))
            .collect();
        let mut last = 0;
        for e in &events {
            if e.tick != last {
                for (_, input) in sources.iter_mut() {
                    input.advance_to(e.tick);
                    input.flush();
                }
                // Let every tick be seen as a time of its own.
                worker.step();
                last = e.tick;
            }
            if worker.index() == 0 {
                let i = *index_of
                    .get(&e.table)
                    .unwrap_or_else(|| panic!("no table {} in the job", e.table));
                match &mut sources[i].1 {
                    SourceInput::Append(input) => input.update(e.row.clone(), 1),
                    SourceInput::Upsert(_) => panic!("the CEP harness feeds append-only tables"),
                }
            }
        }
        let read_at = match end {
            End::Close => {
                let final_tick = last + 1;
                for (_, input) in sources.iter_mut() {
                    input.advance_to(final_tick);
                    input.flush();
                }
                sources.clear();
                worker.step_while(|| views.iter().any(|v| !v.probe.done()));
                Tick::MAX - 1
            }
            End::At(t) => {
                assert!(t > last, "End::At must be after the last event");
                for (_, input) in sources.iter_mut() {
                    input.advance_to(t);
                    input.flush();
                }
                worker.step_while(|| {
                    views
                        .iter_mut()
                        .any(|v| trace_upper(&mut v.trace).is_some_and(|u| u < t))
                });
                t - 1
            }
        };
        let mut out = shared.lock().expect("outcome lock");
        for v in views.iter_mut() {
            let mut rows: Vec<(Row, Diff)> = Vec::new();
            peek(&mut v.trace, read_at, None, &mut rows);
            let all = out.views.entry(v.name.clone()).or_default();
            for (row, n) in rows {
                assert!(n > 0, "view {} holds {row:?} with multiplicity {n}", v.name);
                for _ in 0..n {
                    all.push(row.clone());
                }
            }
            all.sort();
        }
        for (view, reason, row, diff) in errors.borrow_mut().drain(..) {
            for _ in 0..diff.max(0) {
                out.dead_letters.push((view.clone(), reason.clone(), row.clone()));
            }
        }
        out.dead_letters.sort();
    })
    .expect("timely runs");
    Arc::try_unwrap(outcome)
        .map(|m| m.into_inner().expect("outcome lock"))
        .unwrap_or_else(|_| panic!("workers still hold the outcome"))
}
