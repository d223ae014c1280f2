//! Runs a job's SQL on the engine in process (`weir::harness`: the real
//! log, sources and worker loop), with a given number of timely workers,
//! appending rows at given ticks, and returns every view's final contents
//! and the dead letters. Shared by the CEP tests; each test file includes
//! it with `mod cep_harness;`.

#![allow(dead_code)]

use std::collections::BTreeMap;

use weir::harness::Harness;
use weir_connectors::decode::encode_json;
use weir_dataflows::sql::{plan_job, CatalogLookup, ObjectInfo};
use weir_operators::repr::{Row, Tick};

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
    /// Dead letters from every worker: (source, reason, payload), sorted.
    pub dead_letters: Vec<(String, String, String)>,
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

/// Runs `script` as a job on the engine in process ([`weir::harness`]) with
/// `workers` workers: `events` (ticks must not decrease) are appended to
/// their tables' topics at their ticks, in order (one partition, so rows of
/// one tick keep their order), the run ends as `end` says, and every view's
/// rows and the dead letters are returned.
///
/// # Panics
/// When the script does not plan (the message carries the error), or the
/// engine fails.
pub fn run(script: &str, events: &[Event], workers: usize, end: End) -> Outcome {
    let plan = plan_job(script, &Empty).unwrap_or_else(|e| panic!("planning failed: {e}"));
    assert!(
        events.windows(2).all(|w| w[0].tick <= w[1].tick),
        "events must come in tick order"
    );
    let h = Harness::start(workers).expect("the engine starts");
    h.submit("job", script)
        .unwrap_or_else(|e| panic!("planning failed: {e}"));
    let table = |name: &str| {
        plan.tables
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("no table {name} in the job"))
    };
    // One append per run of events of one tick and table.
    let mut i = 0;
    while i < events.len() {
        let (tick, name) = (events[i].tick, &events[i].table);
        let t = table(name);
        let mut batch = Vec::new();
        while i < events.len() && events[i].tick == tick && events[i].table == *name {
            let json = encode_json(&events[i].row, &t.schema);
            batch.push(serde_json::to_vec(&json).expect("a row encodes"));
            i += 1;
        }
        h.append(tick, t.topic(), Some(0), &batch).expect("the log appends");
    }
    let last = events.last().map_or(0, |e| e.tick);
    let read_at = match end {
        End::Close => {
            // Every record read before the sources end.
            h.advance_to(last + 1);
            for v in &plan.views {
                h.read(&v.name, last).expect("the view reads");
            }
            h.end_sources("job").expect("the job is there");
            Harness::END
        }
        End::At(t) => {
            assert!(t > last, "End::At must be after the last event");
            h.advance_to(t);
            t - 1
        }
    };
    let mut out = Outcome::default();
    for v in &plan.views {
        let mut rows = h.read(&v.name, read_at).expect("the view reads");
        rows.sort();
        out.views.insert(v.name.clone(), rows);
    }
    out.dead_letters = h
        .dead_letters()
        .into_iter()
        .map(|d| (d.source, d.reason, d.payload))
        .collect();
    out.dead_letters.sort();
    out
}
