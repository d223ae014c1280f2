//! The pattern-rule benchmark (issue 3): prints one JSON object per
//! measurement.
//!
//! Workloads, each a job run on the engine in process (`weir::harness`: the
//! real log, sources and worker loop, without HTTP) with W workers (env
//! `WEIR_BENCH_WORKERS`, default `1,2`):
//! - `shop_rules`: the shop's sources and `examples/shop/05_rules.sql` over
//!   the shop generator's stream.
//! - `nexmark_abc`: `PATTERN (A B* C) WITHIN INTERVAL '5' SECOND` partitioned
//!   by (auction, bidder) over the bids of the `nexmark` generator.
//! - `nexmark_v`: `PATTERN (START DOWN+ UP)` (the V shape) partitioned by
//!   auction over the same bids.
//!
//! For each, events are appended as JSON 1,000 at a time (as `POST
//! /v1/topics/{t}/events` takes NDJSON batches), each append stamped with
//! the tick of its last event's time; the figures are events/s from the
//! first append until the rule's views have caught up (drawing, encoding,
//! the durable appends, decoding and matching), events/s per worker, the
//! live partial matches, the rows in the views and the process's RSS after
//! each checkpoint of
//! `WEIR_BENCH_EVENTS` (default `1000000,10000000`: the same stream goes
//! on, so RSS must stay flat), and — on the first checkpoint's events — the
//! naive reference matcher of the tests (backtracking over each partition's
//! sorted rows) on the same input: `speedup_over_reference` is the figure.
//!
//! The reference matches rows already in memory; the engine's figure also
//! holds the JSON encoding, the durable log and the decoding. So each
//! workload's dataflow (the real planner and renderer, one worker) is also
//! run on the same rows in memory, fed as the log would feed them (1,000
//! per tick): `dataflow_speedup_over_reference` compares like with like.
//!
//! Run: `cargo bench --bench cep` (`WEIR_BENCH_ONLY=nexmark_v` runs one
//! workload).

#[path = "../tests/cep_reference/mod.rs"]
mod cep_reference;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use timely::dataflow::operators::probe::Handle as ProbeHandle;

use serde_json::json;
use weir::cli::shop;
use weir::harness::Harness;
use weir_connectors::decode::{decode_json, encode_json};
use weir_dataflows::render::{render_job, ErrorSink, SinkOutput, SourceInput};
use weir_dataflows::sql::{plan_job, CatalogLookup, ObjectInfo};
use weir_operators::repr::{Datum, Row, Schema, Tick};

// The allocator the weir binary runs with.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

struct Empty;
impl CatalogLookup for Empty {
    fn lookup(&self, _: &str) -> Option<ObjectInfo> {
        None
    }
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()))
        })
        .unwrap_or(0.0)
        / 1024.0
}

/// A stream of (table index, row, event time ms), generated on demand.
trait Stream: Send {
    fn next_event(&mut self) -> (usize, Row, i64);
}

struct ShopStream {
    generator: shop::ShopGenerator,
    tables: Vec<(String, Schema)>,
}

impl Stream for ShopStream {
    fn next_event(&mut self) -> (usize, Row, i64) {
        loop {
            let (topic, event) = self.generator.next_event();
            let Some(i) = self.tables.iter().position(|(n, _)| n == topic) else {
                continue;
            };
            let payload = event.to_string();
            let Ok(row) = decode_json(payload.as_bytes(), &self.tables[i].1) else {
                continue;
            };
            let ts = match row.last() {
                Some(Datum::Timestamp(t)) => *t,
                _ => 0,
            };
            return (i, row, ts);
        }
    }
}

/// Nexmark bids as rows of the reference's table `ev (p, ts, v, tag)`:
/// `p` the partition (`key` of the bid), `v` the price.
struct BidStream {
    bids: nexmark::EventGenerator,
    key: fn(&nexmark::event::Bid) -> i64,
}

impl Stream for BidStream {
    fn next_event(&mut self) -> (usize, Row, i64) {
        loop {
            if let Some(nexmark::event::Event::Bid(b)) = self.bids.next() {
                let ts = b.date_time as i64;
                return (
                    0,
                    vec![
                        Datum::Int((self.key)(&b)),
                        Datum::Timestamp(ts),
                        Datum::Int(b.price as i64),
                        Datum::Text(Default::default()),
                    ],
                    ts,
                );
            }
        }
    }
}

fn bids(key: fn(&nexmark::event::Bid) -> i64) -> Box<dyn Stream> {
    // A fixed start: every worker draws the same stream (the default
    // starts at the wall clock, different per worker).
    let config = nexmark::config::NexmarkConfig {
        base_time: 1_700_000_000_000,
        ..Default::default()
    };
    Box::new(BidStream {
        bids: nexmark::EventGenerator::new(config).with_type_filter(nexmark::event::EventType::Bid),
        key,
    })
}

/// (auction, bidder) as one partition value.
fn by_auction_and_bidder(b: &nexmark::event::Bid) -> i64 {
    ((b.auction as i64) << 24) | (b.bidder as i64 & 0xff_ffff)
}

fn by_auction(b: &nexmark::event::Bid) -> i64 {
    b.auction as i64
}

fn bid_abc() -> Box<dyn Stream> {
    bids(by_auction_and_bidder)
}

fn bid_v() -> Box<dyn Stream> {
    bids(by_auction)
}

const EV_TABLE: &str = "CREATE TABLE ev (p BIGINT, ts TIMESTAMP, v BIGINT, tag TEXT)
  WITH (connector = 'log', topic = 'ev', 'watermark.lateness' = '1 s', 'watermark.idle' = 'none');";

/// `v` of variable `x`, and the row before it.
fn price(x: &str) -> cep_reference::Expr {
    cep_reference::Expr::col(Some(x), cep_reference::Col::V)
}

fn prev_price(x: &str) -> cep_reference::Expr {
    cep_reference::Expr::prev(price(x), 1)
}

/// `PATTERN (A B* C) WITHIN INTERVAL '5' SECOND`: a run of rising bids of
/// one bidder on one auction that ends with a lower bid.
fn abc_rule() -> cep_reference::Rule {
    use cep_reference::{AggFunc, CmpOp, Cond, Expr, Pattern, Rule, Unit, Within};
    let mut r = Rule::new(Pattern::Concat(vec![
        Pattern::var("A"),
        Pattern::repeat(Pattern::var("B"), 0, None, true),
        Pattern::var("C"),
    ]));
    r.within = Some(Within {
        amount: 5,
        unit: Unit::Second,
        emit_timeouts: false,
    });
    r.defines = vec![
        ("B".into(), Cond::cmp(price("B"), CmpOp::Ge, prev_price("B"))),
        ("C".into(), Cond::cmp(price("C"), CmpOp::Lt, prev_price("C"))),
    ];
    r.measures = vec![price("A"), Expr::agg(AggFunc::Count, Some("B"), None), price("C")];
    r
}

/// `PATTERN (START DOWN+ UP)`: the V shape of an auction's bids.
fn v_rule() -> cep_reference::Rule {
    use cep_reference::{CmpOp, Col, Cond, Expr, Pattern, Rule, Unit, Within};
    let mut r = Rule::new(Pattern::Concat(vec![
        Pattern::var("START"),
        Pattern::repeat(Pattern::var("DOWN"), 1, None, true),
        Pattern::var("UP"),
    ]));
    r.within = Some(Within {
        amount: 10,
        unit: Unit::Second,
        emit_timeouts: false,
    });
    r.defines = vec![
        ("DOWN".into(), Cond::cmp(price("DOWN"), CmpOp::Lt, prev_price("DOWN"))),
        ("UP".into(), Cond::cmp(price("UP"), CmpOp::Gt, prev_price("UP"))),
    ];
    r.measures = vec![price("START"), Expr::last(Some("DOWN"), Col::V, 0), price("UP")];
    r
}

struct Workload {
    name: &'static str,
    script: String,
    stream: fn() -> Box<dyn Stream>,
    /// The same rule for the reference matcher, over the same rows.
    reference: Option<cep_reference::Rule>,
}

fn shop_workload() -> Workload {
    let read = |f: &str| std::fs::read_to_string(format!("{}/examples/shop/{f}", env!("CARGO_MANIFEST_DIR")));
    let script = format!(
        "{}\n{}",
        read("01_sources.sql").unwrap_or_default(),
        read("05_rules.sql").unwrap_or_default()
    );
    Workload {
        name: "shop_rules",
        script,
        stream: || {
            let read = std::fs::read_to_string(format!("{}/examples/shop/01_sources.sql", env!("CARGO_MANIFEST_DIR")))
                .unwrap_or_default();
            let plan = plan_job(&read, &Empty).unwrap_or_else(|e| panic!("shop sources: {e}"));
            let tables = plan.tables.iter().map(|t| (t.name.clone(), t.schema.clone())).collect();
            Box::new(ShopStream {
                generator: shop::ShopGenerator::new(7, 1_700_000_000_000, 1000).with_order_ids(50_000),
                tables,
            })
        },
        reference: None,
    }
}

/// One checkpoint's figures.
#[derive(Default, Clone)]
struct Checkpoint {
    events: u64,
    busy: Duration,
    partial_matches: i64,
    rows_in_views: i64,
    dead_letters: u64,
    rss_mib: f64,
}

/// Runs `w` on the engine in process (`weir::harness`: the real log,
/// sources and worker loop) with `workers` workers through every checkpoint.
fn run_engine(w: &Workload, workers: usize, checkpoints: &[u64]) -> Vec<Checkpoint> {
    let plan = plan_job(&w.script, &Empty).unwrap_or_else(|e| panic!("{}: {e}", w.name));
    let h = Harness::start(workers).expect("the engine starts");
    h.submit(w.name, &w.script)
        .unwrap_or_else(|e| panic!("{}: {e}", w.name));
    let mut stream = (w.stream)();
    let mut fed = 0u64;
    let mut busy = Duration::ZERO;
    let mut tick: Tick = 1;
    let mut dead_letters = 0;
    let mut out = Vec::new();
    const APPEND: u64 = 1_000;
    for &target in checkpoints {
        let started = Instant::now();
        while fed < target {
            // An append of APPEND events is stamped with one tick, when its
            // last event happened; one append per table.
            let mut by_table: HashMap<usize, Vec<Vec<u8>>> = HashMap::new();
            for _ in 0..APPEND.min(target - fed) {
                let (table, row, ts) = stream.next_event();
                tick = tick.max(ts as Tick);
                let json = encode_json(&row, &plan.tables[table].schema);
                by_table
                    .entry(table)
                    .or_default()
                    .push(serde_json::to_vec(&json).expect("a row encodes"));
                fed += 1;
            }
            for (table, events) in by_table {
                h.append(tick, plan.tables[table].topic(), None, &events)
                    .expect("the log appends");
            }
        }
        h.advance_to(tick + 1);
        for v in &plan.views {
            h.read(&v.name, tick).expect("the view reads");
        }
        busy += started.elapsed();
        let views = h.engine().views();
        dead_letters += h.dead_letters().len() as u64;
        out.push(Checkpoint {
            events: target,
            busy,
            partial_matches: plan.views.iter().filter_map(|v| h.partial_matches(&v.name)).sum(),
            rows_in_views: views.iter().filter_map(|v| v.rows).sum(),
            dead_letters,
            rss_mib: rss_mib(),
        });
    }
    out
}

/// Runs `w`'s dataflow on one worker over `n` events of its stream held in
/// memory, fed at the ticks the engine's appends would have (one tick per
/// 1,000 events): events/s from the first row fed until every view has
/// caught up, and the rows in the views.
fn run_dataflow(w: &Workload, n: u64) -> (f64, i64) {
    let plan = plan_job(&w.script, &Empty).unwrap_or_else(|e| panic!("{}: {e}", w.name));
    let mut stream = (w.stream)();
    let mut batches: Vec<(Tick, Vec<(usize, Row)>)> = Vec::new();
    let mut tick: Tick = 1;
    let mut drawn = 0;
    while drawn < n {
        let mut batch = Vec::new();
        for _ in 0..1_000.min(n - drawn) {
            let (table, row, ts) = stream.next_event();
            tick = tick.max(ts as Tick);
            batch.push((table, row));
            drawn += 1;
        }
        batches.push((tick, batch));
    }
    timely::execute_directly(move |worker| {
        let errors = ErrorSink::default();
        let mut imports = HashMap::new();
        let mut no_sink = |_: &weir_dataflows::plan::SinkPlan| -> SinkOutput { Box::new(|_| {}) };
        let job = worker.dataflow(|scope| {
            render_job(
                scope,
                None,
                &plan.tables,
                &plan.views,
                &mut imports,
                &errors,
                &[],
                &mut no_sink,
                &mut |_| None,
            )
        });
        // Nothing is restored: the restore inputs close at once.
        let mut cuts = job.cuts;
        cuts.restores.clear();
        let mut inputs: Vec<(String, SourceInput)> = job.sources;
        // The input of each of the plan's tables.
        let slot: Vec<Option<usize>> = plan
            .tables
            .iter()
            .map(|t| inputs.iter().position(|(name, _)| *name == t.name))
            .collect();
        let probes: Vec<ProbeHandle<Tick>> = job.views.iter().map(|v| v.probe.clone()).collect();
        let started = Instant::now();
        let mut last = 1;
        for (tick, batch) in batches {
            for (table, row) in batch {
                if let Some(SourceInput::Append(input)) = slot[table].map(|i| &mut inputs[i].1) {
                    input.push(row, tick);
                }
            }
            for (_, input) in inputs.iter_mut() {
                input.advance_to(tick + 1);
                input.flush();
            }
            worker.step();
            last = tick + 1;
        }
        while probes.iter().any(|p| p.less_than(&last)) {
            worker.step();
        }
        let rate = n as f64 / started.elapsed().as_secs_f64().max(1e-9);
        (rate, job.views.iter().map(|v| v.rows.get()).sum())
    })
}

/// The rule's view keeps a count of its matches, not every match: a view
/// of all matches grows with them, and the benchmark measures the rule's
/// own state.
fn counted(view_sql: String) -> String {
    view_sql.replacen("SELECT * FROM ev", "SELECT count(*) AS matches FROM ev", 1)
}

fn env_list(name: &str, default: &str) -> Vec<u64> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_string())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

fn main() {
    // `cargo test --all-targets` runs bench binaries as tests, without
    // `--bench`: the benchmark only runs under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let checkpoints = env_list("WEIR_BENCH_EVENTS", "1000000,10000000");
    let workers = env_list("WEIR_BENCH_WORKERS", "1,2");
    let workloads = [
        shop_workload(),
        Workload {
            name: "nexmark_abc",
            script: format!("{EV_TABLE}\n{}", counted(abc_rule().view_sql("m", "ev", true))),
            stream: bid_abc,
            reference: Some(abc_rule()),
        },
        Workload {
            name: "nexmark_v",
            script: format!("{EV_TABLE}\n{}", counted(v_rule().view_sql("m", "ev", true))),
            stream: bid_v,
            reference: Some(v_rule()),
        },
    ];
    let only = std::env::var("WEIR_BENCH_ONLY").ok();
    for w in workloads.iter().filter(|w| only.as_deref().is_none_or(|o| o == w.name)) {
        let mut engine_rate_1 = None;
        for &n in &workers {
            let points = run_engine(w, n as usize, &checkpoints);
            for p in &points {
                let rate = p.events as f64 / p.busy.as_secs_f64().max(1e-9);
                println!(
                    "{}",
                    json!({
                        "bench": w.name,
                        "workers": n,
                        "events": p.events,
                        "events_per_s": rate.round(),
                        "events_per_s_per_worker": (rate / n as f64).round(),
                        "live_partial_matches": p.partial_matches,
                        "rows_in_views": p.rows_in_views,
                        "dead_letters": p.dead_letters,
                        "rss_mib": (p.rss_mib * 10.0).round() / 10.0,
                    })
                );
            }
            if let Some(first) = points.first() {
                if n == 1 {
                    engine_rate_1 = Some(first.events as f64 / first.busy.as_secs_f64().max(1e-9));
                }
            }
            if let (Some(first), Some(last)) = (points.first(), points.last()) {
                if points.len() > 1 {
                    println!(
                        "{}",
                        json!({"bench": w.name, "workers": n, "rss_ratio": (last.rss_mib / first.rss_mib * 100.0).round() / 100.0,
                               "from_events": first.events, "to_events": last.events})
                    );
                }
            }
        }
        if let (Some(rule), Some(&n), Some(engine)) = (&w.reference, checkpoints.first(), engine_rate_1) {
            let mut stream = (w.stream)();
            let rows: Vec<Row> = (0..n).map(|_| stream.next_event().1).collect();
            let started = Instant::now();
            let out = rule.evaluate(&rows);
            let took = started.elapsed().as_secs_f64().max(1e-9);
            let rate = n as f64 / took;
            let (dataflow, _) = run_dataflow(w, n);
            println!(
                "{}",
                json!({"bench": w.name, "reference_events": n, "reference_events_per_s": rate.round(),
                       "reference_output_rows": out.as_ref().map(|o| o.len()).ok(),
                       "engine_events_per_s_1_worker": engine.round(),
                       "speedup_over_reference": (engine / rate * 10.0).round() / 10.0,
                       "dataflow_events_per_s_1_worker": dataflow.round(),
                       "dataflow_speedup_over_reference": (dataflow / rate * 10.0).round() / 10.0})
            );
        }
    }
}
