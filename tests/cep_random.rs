//! `MATCH_RECOGNIZE` against an independent reference: random rules (pattern,
//! DEFINEs, MEASURES, rows per match, AFTER MATCH SKIP, WITHIN, EMIT
//! TIMEOUTS) over random streams of a few partitions, some rows out of order
//! within the lateness bound, fed over several ticks to the real rendered
//! dataflows with 1 and 4 workers; the view must equal what the backtracking
//! reference in `tests/cep_reference/` computes from the whole stream.
//!
//! `CEP_SEEDS=n` sets how many seeds run (default [`DEFAULT_SEEDS`]);
//! `CEP_SEED=s` runs only seed `s` (a failure prints the seed to use).
//!
//! Also hand-written tests of the reference itself, on tiny streams whose
//! answers are worked out by hand in the comments.

mod cep_harness;
mod cep_reference;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};

use cep_harness::{run, End, Event};
use cep_reference::{AggFunc, CmpOp, Col, Cond, Expr, Pattern, RowsPerMatch, Rule, Skip, Unit, Within, TABLE_COLUMNS};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use weir_operators::repr::{Datum, Row};

const DEFAULT_SEEDS: u64 = 100;

/// The event time of the streams' first rows (ms).
const BASE_TS: i64 = 1_700_000_000_000;

/// Whether the generator writes `PREV(FIRST(x.v))` / `PREV(LAST(x.v))`
/// (docs/cep.md: `PREV(expr [, n])` is relative to "the row expr refers to").
const NESTED_PREV: bool = true;

/// Whether the generator combines `EMIT TIMEOUTS` with `ALL ROWS PER MATCH`
/// (see `cep_reference::ALL_ROWS_TIMEOUT` for what the reference does).
const TIMEOUTS_WITH_ALL_ROWS: bool = true;

// ---------------------------------------------------------------------------
// Random rules

fn pick<T: Clone>(rng: &mut StdRng, xs: &[T]) -> T {
    xs[rng.random_range(0..xs.len())].clone()
}

/// (min, max) of the quantifiers drawn: `* + ? {n,} {n} {n,m} {,m}`.
const QUANTIFIERS: [(u32, Option<u32>); 11] = [
    (0, None),
    (1, None),
    (0, Some(1)),
    (2, None),
    (2, Some(2)),
    (3, Some(3)),
    (1, Some(2)),
    (1, Some(3)),
    (2, Some(3)),
    (0, Some(2)),
    (0, Some(3)),
];

fn gen_pattern(rng: &mut StdRng, vars: &[String], depth: u32) -> Pattern {
    if depth == 0 || rng.random_bool(0.4) {
        return Pattern::Var(pick(rng, vars));
    }
    match rng.random_range(0..3) {
        0 => {
            let n = rng.random_range(2..=3);
            Pattern::Concat((0..n).map(|_| gen_pattern(rng, vars, depth - 1)).collect())
        }
        1 => {
            let n = rng.random_range(2..=3);
            Pattern::Alt((0..n).map(|_| gen_pattern(rng, vars, depth - 1)).collect())
        }
        _ => {
            let inner = gen_pattern(rng, vars, depth - 1);
            if inner.nullable() {
                return inner;
            }
            let (min, max) = pick(rng, &QUANTIFIERS);
            Pattern::repeat(inner, min, max, rng.random_bool(0.6))
        }
    }
}

/// A pattern that cannot match no rows, quantifies no group that can, and
/// has at most 6 variable occurrences.
fn gen_top_pattern(rng: &mut StdRng, vars: &[String]) -> Pattern {
    loop {
        let n = rng.random_range(1..=3);
        let mut items: Vec<Pattern> = (0..n).map(|_| gen_pattern(rng, vars, 2)).collect();
        let p = if items.len() == 1 {
            items.remove(0)
        } else {
            Pattern::Concat(items)
        };
        if !p.nullable() && !p.quantifies_nullable() && p.size() <= 6 {
            return p;
        }
    }
}

fn opt_var(rng: &mut StdRng, vars: &[String]) -> Option<String> {
    if rng.random_bool(0.25) {
        None
    } else {
        Some(pick(rng, vars))
    }
}

/// `col` or `me.col`: the current row inside `DEFINE me`.
fn cur(rng: &mut StdRng, me: &str, col: Col) -> Expr {
    if rng.random_bool(0.5) {
        Expr::Col(None, col)
    } else {
        Expr::Col(Some(me.to_string()), col)
    }
}

fn tag_lit(rng: &mut StdRng) -> Expr {
    Expr::text(pick(rng, &["x", "y", "z"]))
}

/// One condition from the templates; `me` is the variable being defined.
fn gen_atom(rng: &mut StdRng, me: &str, vars: &[String]) -> Cond {
    use AggFunc::*;
    let other = pick(rng, vars);
    let op = pick(rng, &CmpOp::ALL);
    let n01 = rng.random_range(0..=1);
    let template = rng.random_range(0..21);
    match template {
        // A.v > 5
        0 | 1 => Cond::Cmp(cur(rng, me, Col::V), op, Expr::int(rng.random_range(0..=6))),
        // A.v < PREV(A.v [, 2])
        2 => {
            let n = rng.random_range(1..=2);
            Cond::Cmp(cur(rng, me, Col::V), op, Expr::prev(cur(rng, me, Col::V), n))
        }
        // A.v < PREV(B.v)
        3 => Cond::Cmp(cur(rng, me, Col::V), op, Expr::prev(Expr::Col(Some(other), Col::V), 1)),
        // A.v > B.v (B's last row so far)
        4 => Cond::Cmp(cur(rng, me, Col::V), op, Expr::Col(Some(other), Col::V)),
        // B.v > LAST(A.v [, 1])
        5 => Cond::Cmp(cur(rng, me, Col::V), op, Expr::Last(Some(other), Col::V, n01)),
        // FIRST(A.v [, 1]) < B.v, FIRST(v): the match's first row
        6 => Cond::Cmp(Expr::First(opt_var(rng, vars), Col::V, n01), op, cur(rng, me, Col::V)),
        // sum(A.v) < 9
        7 => Cond::Cmp(
            Expr::Agg(Sum, opt_var(rng, vars), Some(Col::V)),
            op,
            Expr::int(rng.random_range(2..=14)),
        ),
        // count(A.*) <= 2, count(*) < 3
        8 => Cond::Cmp(
            Expr::Agg(Count, opt_var(rng, vars), None),
            pick(rng, &[CmpOp::Lt, CmpOp::Le, CmpOp::Eq, CmpOp::Ge]),
            Expr::int(rng.random_range(1..=4)),
        ),
        // count(B.v) = 1 (non-NULL values)
        9 => Cond::Cmp(
            Expr::Agg(Count, Some(other), Some(Col::V)),
            op,
            Expr::int(rng.random_range(0..=3)),
        ),
        // tag = 'x'
        10 | 11 => Cond::Cmp(cur(rng, me, Col::Tag), pick(rng, &[CmpOp::Eq, CmpOp::Ne]), tag_lit(rng)),
        // v IS NULL, A.tag IS NOT NULL
        12 => {
            let col = pick(rng, &[Col::V, Col::Tag]);
            let e = cur(rng, me, col);
            if rng.random_bool(0.5) {
                Cond::IsNull(e)
            } else {
                Cond::IsNotNull(e)
            }
        }
        // avg(A.v) >= 3 (DECIMAL against BIGINT)
        13 => Cond::Cmp(
            Expr::Agg(Avg, opt_var(rng, vars), Some(Col::V)),
            op,
            Expr::int(rng.random_range(1..=5)),
        ),
        // max(B.v) >= A.v
        14 => Cond::Cmp(
            Expr::Agg(pick(rng, &[Min, Max]), opt_var(rng, vars), Some(Col::V)),
            op,
            cur(rng, me, Col::V),
        ),
        // LAST(A.v, 1) IS NULL OR A.v > LAST(A.v, 1): each A above the previous A
        15 => Cond::Or(
            Box::new(Cond::IsNull(Expr::Last(Some(me.to_string()), Col::V, 1))),
            Box::new(Cond::Cmp(
                cur(rng, me, Col::V),
                op,
                Expr::Last(Some(me.to_string()), Col::V, 1),
            )),
        ),
        // tag = PREV(tag), A.tag <> B.tag
        16 => {
            let rhs = if rng.random_bool(0.5) {
                Expr::prev(Expr::Col(None, Col::Tag), 1)
            } else {
                Expr::Col(Some(other), Col::Tag)
            };
            Cond::Cmp(cur(rng, me, Col::Tag), pick(rng, &[CmpOp::Eq, CmpOp::Ne]), rhs)
        }
        // max(A.v) - min(A.v) <= 2
        17 => {
            let var = opt_var(rng, vars);
            Cond::Cmp(
                Expr::Sub(
                    Box::new(Expr::Agg(Max, var.clone(), Some(Col::V))),
                    Box::new(Expr::Agg(Min, var, Some(Col::V))),
                ),
                op,
                Expr::int(rng.random_range(0..=3)),
            )
        }
        // ts > PREV(ts) (false on ties), A.ts >= LAST(B.ts)
        18 => {
            let rhs = if rng.random_bool(0.5) {
                Expr::prev(Expr::Col(None, Col::Ts), 1)
            } else {
                Expr::Last(Some(other), Col::Ts, 0)
            };
            Cond::Cmp(cur(rng, me, Col::Ts), op, rhs)
        }
        // v > PREV(LAST(B.v)), v <> PREV(FIRST(B.v), 2)
        19 if NESTED_PREV => {
            let nav = if rng.random_bool(0.5) {
                Expr::First(Some(other), Col::V, 0)
            } else {
                Expr::Last(Some(other), Col::V, 0)
            };
            let n = rng.random_range(1..=2);
            Cond::Cmp(cur(rng, me, Col::V), op, Expr::prev(nav, n))
        }
        // v + B.v > 6
        _ => Cond::Cmp(
            Expr::Add(Box::new(cur(rng, me, Col::V)), Box::new(Expr::Col(Some(other), Col::V))),
            op,
            Expr::int(rng.random_range(2..=10)),
        ),
    }
}

fn gen_cond(rng: &mut StdRng, me: &str, vars: &[String], depth: u32) -> Cond {
    if depth > 0 {
        match rng.random_range(0..10) {
            0 => {
                return Cond::And(
                    Box::new(gen_cond(rng, me, vars, depth - 1)),
                    Box::new(gen_cond(rng, me, vars, depth - 1)),
                )
            }
            1 => {
                return Cond::Or(
                    Box::new(gen_cond(rng, me, vars, depth - 1)),
                    Box::new(gen_cond(rng, me, vars, depth - 1)),
                )
            }
            2 => return Cond::Not(Box::new(gen_cond(rng, me, vars, depth - 1))),
            _ => {}
        }
    }
    gen_atom(rng, me, vars)
}

fn gen_measure(rng: &mut StdRng, vars: &[String], timeouts: bool) -> Expr {
    use AggFunc::*;
    let col = pick(rng, &[Col::V, Col::V, Col::Tag, Col::Ts]);
    let n01 = rng.random_range(0..=1);
    match rng.random_range(0..16) {
        0 => Expr::First(opt_var(rng, vars), col, n01),
        1 => Expr::Last(opt_var(rng, vars), col, n01),
        // B.v (last B row), v (the current row)
        2 => Expr::Col(opt_var(rng, vars), col),
        3 => {
            let n = rng.random_range(1..=2);
            Expr::prev(Expr::Col(opt_var(rng, vars), Col::V), n)
        }
        4 => Expr::Agg(Count, opt_var(rng, vars), None),
        5 => Expr::Agg(Count, opt_var(rng, vars), Some(pick(rng, &[Col::V, Col::Tag]))),
        6 => Expr::Agg(Sum, opt_var(rng, vars), Some(Col::V)),
        7 => Expr::Agg(pick(rng, &[Min, Max]), opt_var(rng, vars), Some(col)),
        8 => Expr::Agg(Avg, opt_var(rng, vars), Some(Col::V)),
        9 => Expr::Sub(
            Box::new(Expr::Last(Some(pick(rng, vars)), Col::V, 0)),
            Box::new(Expr::First(Some(pick(rng, vars)), Col::V, 0)),
        ),
        10 => Expr::MatchNumber,
        11 => Expr::Classifier,
        12 => Expr::TimedOut,
        13 if timeouts => Expr::TimedOut,
        _ => Expr::Agg(Count, None, None),
    }
}

fn gen_rule(rng: &mut StdRng) -> Rule {
    let nvars = rng.random_range(1..=4);
    let names: Vec<String> = ["A", "B", "C", "D"][..nvars].iter().map(|s| s.to_string()).collect();
    let pattern = gen_top_pattern(rng, &names);
    let vars = pattern.vars();

    // Unbounded patterns go without WITHIN too: the row cap (far above
    // these inputs) bounds them.
    let within = if rng.random_bool(if pattern.unbounded() { 0.6 } else { 0.4 }) {
        let (amount, unit) = if rng.random_bool(0.05) {
            (1, Unit::Minute)
        } else {
            (rng.random_range(1..=5), Unit::Second)
        };
        Some(Within {
            amount,
            unit,
            emit_timeouts: rng.random_bool(0.5),
        })
    } else {
        None
    };
    let timeouts = within.is_some_and(|w| w.emit_timeouts);
    let rows_per_match = match rng.random_range(0..10) {
        0 | 1 => None,
        2..=5 => Some(RowsPerMatch::One),
        _ if timeouts && !TIMEOUTS_WITH_ALL_ROWS => Some(RowsPerMatch::One),
        _ => Some(RowsPerMatch::All),
    };
    let skip = match rng.random_range(0..8) {
        0 | 1 => None,
        2 => Some(Skip::PastLastRow),
        3 | 4 => Some(Skip::ToNextRow),
        5 => Some(Skip::ToFirst(pick(rng, &vars))),
        _ => Some(Skip::ToLast(pick(rng, &vars))),
    };
    let partition_by = match rng.random_range(0..10) {
        0 => vec![],
        1 => vec![Col::P, Col::Tag],
        2 => vec![Col::Tag],
        _ => vec![Col::P],
    };
    let all_rows = rows_per_match == Some(RowsPerMatch::All);
    let nmeasures = rng.random_range(if all_rows { 0 } else { 1 }..=4);
    let measures = (0..nmeasures).map(|_| gen_measure(rng, &vars, timeouts)).collect();
    let mut defines = Vec::new();
    for v in &vars {
        if rng.random_bool(0.8) {
            defines.push((v.clone(), gen_cond(rng, v, &vars, 1)));
        }
    }
    if defines.is_empty() {
        let v = pick(rng, &vars);
        let c = gen_cond(rng, &v, &vars, 1);
        defines.push((v, c));
    }
    let rule = Rule {
        partition_by,
        measures,
        rows_per_match,
        skip,
        pattern,
        within,
        defines,
    };
    if let Err(e) = rule.validate() {
        panic!("the generator made an invalid rule ({e}): {rule:#?}");
    }
    rule
}

// ---------------------------------------------------------------------------
// Random streams

struct Input {
    lateness_ms: i64,
    events: Vec<Event>,
}

fn gen_input(rng: &mut StdRng) -> Input {
    let lateness_ms = pick(rng, &[1000, 2000, 5000]);
    let mut rows: Vec<Row> = Vec::new();
    for p in 1..=rng.random_range(1..=3i64) {
        let p = if rng.random_bool(0.05) {
            Datum::Null
        } else {
            Datum::Int(p)
        };
        let mut t = BASE_TS + 500 * rng.random_range(0..4);
        for _ in 0..rng.random_range(2..=18) {
            let v = if rng.random_bool(0.07) {
                Datum::Null
            } else {
                Datum::Int(rng.random_range(1..=5))
            };
            let tag = match rng.random_range(0..7) {
                0..=2 => Datum::Text("x".into()),
                3 | 4 => Datum::Text("y".into()),
                5 => Datum::Text("z".into()),
                _ => Datum::Null,
            };
            rows.push(vec![p.clone(), Datum::Timestamp(t), v, tag]);
            t += pick(rng, &[0, 0, 500, 1000, 1000, 1500, 2000, 3000]);
        }
    }
    // Arrival order: event time plus a jitter of at most `spread`, so no row
    // is late: a row arriving after another has ts >= other.ts - spread.
    // With spread = lateness a row can arrive exactly at the watermark (not
    // late: late is below it).
    let spread = if rng.random_bool(0.3) {
        lateness_ms
    } else {
        lateness_ms / 2
    };
    let mut keyed: Vec<(i64, u32, Row)> = rows
        .into_iter()
        .map(|r| {
            let Datum::Timestamp(ts) = r[1] else {
                unreachable!("ts was just written")
            };
            (ts + rng.random_range(0..=spread), rng.random(), r)
        })
        .collect();
    keyed.sort();
    let mut tick = 1;
    let mut events = Vec::new();
    for (i, (_, _, row)) in keyed.into_iter().enumerate() {
        if i > 0 && rng.random_bool(0.3) {
            tick += 1;
        }
        events.push(Event {
            tick,
            table: "ev".into(),
            row,
        });
    }
    // The lateness invariant: a row at tick k has ts >= (max ts of rows at
    // ticks < k) - lateness.
    let mut max_before = i64::MIN;
    let mut max_this = i64::MIN;
    let mut this_tick = 0;
    for e in &events {
        if e.tick != this_tick {
            max_before = max_before.max(max_this);
            this_tick = e.tick;
        }
        let ts = ts_ms(&e.row);
        assert!(ts >= max_before.saturating_sub(lateness_ms), "a late row was generated");
        max_this = max_this.max(ts);
    }
    Input { lateness_ms, events }
}

fn ts_ms(row: &Row) -> i64 {
    match row[1] {
        Datum::Timestamp(t) => t,
        ref other => panic!("ts is a TIMESTAMP, not {other:?}"),
    }
}

fn job_sql(rule: &Rule, lateness_ms: i64, with_within: bool) -> String {
    let lateness = if lateness_ms % 1000 == 0 && lateness_ms > 1000 {
        format!("{} seconds", lateness_ms / 1000)
    } else {
        format!("{lateness_ms} ms")
    };
    format!(
        "CREATE TABLE ev ({TABLE_COLUMNS}) WITH (connector='log', topic='ev', 'watermark.lateness'='{lateness}');\n{}",
        rule.view_sql("m", "ev", with_within)
    )
}

// ---------------------------------------------------------------------------
// The differential check

enum Checked {
    Same {
        rows: usize,
    },
    /// The reference's backtracking exceeded its budget.
    Skipped,
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else {
        "(a panic without a message)".to_string()
    }
}

/// The multiset differences `a - b`.
fn minus(a: &[Row], b: &[Row]) -> Vec<Row> {
    let mut counts: BTreeMap<&Row, i64> = BTreeMap::new();
    for r in a {
        *counts.entry(r).or_default() += 1;
    }
    for r in b {
        *counts.entry(r).or_default() -= 1;
    }
    let mut out = Vec::new();
    for (r, n) in counts {
        for _ in 0..n.max(0) {
            out.push(r.clone());
        }
    }
    out
}

fn report(seed: u64, sql: &str, rule: &Rule, input: &Input, what: &str) -> String {
    let mut s = format!("seed {seed}: {what}\nreproduce: CEP_SEED={seed} cargo test --test cep_random random_rules -- --nocapture\n\n{sql}\noutput columns: {:?}\ninput (tick: p, ts, v, tag):\n", rule.output_columns());
    for e in &input.events {
        let _ = writeln!(s, "  {}: {:?}", e.tick, e.row);
    }
    s
}

fn rows_text(rows: &[Row]) -> String {
    rows.iter().map(|r| format!("  {r:?}\n")).collect()
}

fn check_seed(seed: u64) -> Result<Checked, String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let rule = gen_rule(&mut rng);
    let input = gen_input(&mut rng);
    let sql = job_sql(&rule, input.lateness_ms, true);
    let rows: Vec<Row> = input.events.iter().map(|e| e.row.clone()).collect();
    let Ok(expected) = rule.evaluate(&rows) else {
        return Ok(Checked::Skipped);
    };
    for workers in [1, 4] {
        let outcome =
            catch_unwind(AssertUnwindSafe(|| run(&sql, &input.events, workers, End::Close))).map_err(|p| {
                report(
                    seed,
                    &sql,
                    &rule,
                    &input,
                    &format!("the engine panicked ({workers} workers): {}", panic_text(&*p)),
                )
            })?;
        if !outcome.dead_letters.is_empty() {
            return Err(report(
                seed,
                &sql,
                &rule,
                &input,
                &format!("dead letters with {workers} workers:\n{:#?}", outcome.dead_letters),
            ));
        }
        let got = outcome.views.get("m").cloned().unwrap_or_default();
        if got != expected {
            let what = format!(
                "the view differs from the reference with {workers} workers\nreference:\n{}engine:\n{}only in the reference:\n{}only in the engine:\n{}",
                rows_text(&expected),
                rows_text(&got),
                rows_text(&minus(&expected, &got)),
                rows_text(&minus(&got, &expected)),
            );
            return Err(report(seed, &sql, &rule, &input, &what));
        }
    }
    Ok(Checked::Same { rows: expected.len() })
}

fn seeds() -> Vec<u64> {
    let env = |name: &str| {
        std::env::var(name).ok().map(|s| {
            s.parse::<u64>()
                .unwrap_or_else(|_| panic!("{name} must be a number, not {s:?}"))
        })
    };
    match env("CEP_SEED") {
        Some(s) => vec![s],
        None => (0..env("CEP_SEEDS").unwrap_or(DEFAULT_SEEDS)).collect(),
    }
}

#[test]
fn random_rules_match_the_reference() {
    let (mut same, mut skipped, mut rows, mut nonempty) = (0, 0, 0, 0);
    for seed in seeds() {
        match check_seed(seed) {
            Ok(Checked::Same { rows: n }) => {
                same += 1;
                rows += n;
                nonempty += usize::from(n > 0);
            }
            Ok(Checked::Skipped) => skipped += 1,
            Err(report) => panic!("{report}"),
        }
    }
    eprintln!("cep_random: {same} seeds agree ({nonempty} with output, {rows} rows in all), {skipped} skipped (too costly for the reference)");
}

/// Every generated job text parses (with `WITHIN …` left out: sqlparser does
/// not know it, the engine cuts it out before parsing).
#[test]
fn generated_sql_parses() {
    for seed in 0..400 {
        let mut rng = StdRng::seed_from_u64(seed);
        let rule = gen_rule(&mut rng);
        let sql = job_sql(&rule, 1000, false);
        if let Err(e) = weir_dataflows::sql::parse(&sql) {
            panic!("seed {seed}: the generated SQL does not parse: {e}\n{sql}");
        }
    }
}

/// The generator is useful: most seeds' rules match something, some time
/// out, and the reference rarely runs out of budget.
#[test]
fn generated_cases_match_often() {
    let (mut nonempty, mut timeouts, mut skipped) = (0, 0, 0);
    let n = 300;
    for seed in 0..n as u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let rule = gen_rule(&mut rng);
        let input = gen_input(&mut rng);
        let rows: Vec<Row> = input.events.iter().map(|e| e.row.clone()).collect();
        match rule.evaluate(&rows) {
            Ok(out) => {
                nonempty += usize::from(!out.is_empty());
                let timed_out = rule.within.is_some_and(|w| w.emit_timeouts) && {
                    let probe = Rule {
                        measures: vec![Expr::TimedOut],
                        rows_per_match: Some(RowsPerMatch::One),
                        ..rule.clone()
                    };
                    probe
                        .evaluate(&rows)
                        .is_ok_and(|o| o.iter().any(|r| r.last() == Some(&Datum::Bool(true))))
                };
                timeouts += usize::from(timed_out);
            }
            Err(_) => skipped += 1,
        }
    }
    eprintln!("of {n} cases: {nonempty} with output, {timeouts} with time-outs, {skipped} too costly");
    assert!(nonempty * 2 > n, "only {nonempty} of {n} random cases produce output");
    assert!(timeouts * 20 > n, "only {timeouts} of {n} random cases time out");
    assert!(
        skipped * 50 < n,
        "{skipped} of {n} random cases are too costly for the reference"
    );
}

// ---------------------------------------------------------------------------
// The reference by hand

fn ev(p: i64, ts: i64, v: Option<i64>, tag: Option<&str>) -> Row {
    vec![
        Datum::Int(p),
        Datum::Timestamp(BASE_TS + ts),
        v.map_or(Datum::Null, Datum::Int),
        tag.map_or(Datum::Null, |t| Datum::Text(t.into())),
    ]
}

/// Rows of partition 1 at ts 0, 1000, 2000, … with these values and tag 'x'.
fn seq(values: &[i64]) -> Vec<Row> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| ev(1, 1000 * i as i64, Some(*v), Some("x")))
        .collect()
}

fn int(i: i64) -> Datum {
    Datum::Int(i)
}

fn text(s: &str) -> Datum {
    Datum::Text(s.into())
}

fn ts(ms: i64) -> Datum {
    Datum::Timestamp(BASE_TS + ms)
}

fn eval(rule: &Rule, rows: &[Row]) -> Vec<Row> {
    rule.evaluate(rows).expect("tiny cases stay within the budget")
}

fn v_gt(var: &str, k: i64) -> (String, Cond) {
    (
        var.to_string(),
        Cond::Cmp(Expr::col(Some(var), Col::V), CmpOp::Gt, Expr::int(k)),
    )
}

fn sorted(mut rows: Vec<Row>) -> Vec<Row> {
    rows.sort();
    rows
}

#[test]
fn reference_greedy_and_reluctant() {
    // A B{1,5}: greedy takes all three rows; reluctant stops at two, and the
    // third row alone cannot start a match.
    let rows = seq(&[1, 2, 3]);
    for (greedy, expected) in [
        (true, vec![int(1), int(3), int(3)]),
        (false, vec![int(1), int(2), int(2)]),
    ] {
        for (max, within) in [(Some(5), None), (None, Some(10))] {
            let mut rule = Rule::new(Pattern::Concat(vec![
                Pattern::var("A"),
                Pattern::repeat(Pattern::var("B"), 1, max, greedy),
            ]));
            rule.within = within.map(|amount| Within {
                amount,
                unit: Unit::Second,
                emit_timeouts: false,
            });
            rule.defines = vec![v_gt("A", 0)];
            rule.measures = vec![Expr::agg(AggFunc::Count, None, None), Expr::last(Some("B"), Col::V, 0)];
            assert_eq!(
                eval(&rule, &rows),
                vec![expected.clone()],
                "{}",
                rule.view_sql("m", "ev", true)
            );
        }
    }
}

#[test]
fn reference_greedy_backtracks() {
    // A B{0,3} C, C AS v = 3, over 1 2 3 3: B first takes 2 3 3, then C has
    // no row; backtracking gives B = 2 3, C = the last 3.
    let mut rule = Rule::new(Pattern::Concat(vec![
        Pattern::var("A"),
        Pattern::repeat(Pattern::var("B"), 0, Some(3), true),
        Pattern::var("C"),
    ]));
    rule.defines = vec![("C".into(), Cond::Cmp(Expr::col(None, Col::V), CmpOp::Eq, Expr::int(3)))];
    rule.measures = vec![
        Expr::agg(AggFunc::Count, None, None),
        Expr::agg(AggFunc::Count, Some("B"), None),
    ];
    assert_eq!(eval(&rule, &seq(&[1, 2, 3, 3])), vec![vec![int(1), int(4), int(2)]]);
}

#[test]
fn reference_alternation_prefers_the_left() {
    let rows = seq(&[1, 2, 3]);
    let all = |pattern: Pattern| {
        let mut rule = Rule::new(pattern);
        rule.rows_per_match = Some(RowsPerMatch::All);
        rule.defines = vec![v_gt("A", 0), v_gt("B", 0)];
        rule.measures = vec![Expr::Classifier];
        rule
    };
    // (A | B) C: A is preferred; C has no DEFINE.
    let r = all(Pattern::Concat(vec![
        Pattern::Alt(vec![Pattern::var("A"), Pattern::var("B")]),
        Pattern::var("C"),
    ]));
    assert_eq!(
        eval(&r, &rows),
        vec![
            vec![int(1), ts(0), text("A"), int(1), text("x")],
            vec![int(1), ts(1000), text("C"), int(2), text("x")],
        ]
    );
    // (B | A) C: B is.
    let r = all(Pattern::Concat(vec![
        Pattern::Alt(vec![Pattern::var("B"), Pattern::var("A")]),
        Pattern::var("C"),
    ]));
    assert_eq!(eval(&r, &rows)[0][2], text("B"));
    // A (B | B C): the left alternative wins although the right one is longer.
    let r = all(Pattern::Concat(vec![
        Pattern::var("A"),
        Pattern::Alt(vec![
            Pattern::var("B"),
            Pattern::Concat(vec![Pattern::var("B"), Pattern::var("C")]),
        ]),
    ]));
    let out = eval(&r, &rows);
    assert_eq!(out.len(), 2, "{out:?}");
    // A failing: (A | B) with A AS v > 5 takes B.
    let mut r = all(Pattern::Concat(vec![
        Pattern::Alt(vec![Pattern::var("A"), Pattern::var("B")]),
        Pattern::var("C"),
    ]));
    r.defines[0] = v_gt("A", 5);
    assert_eq!(eval(&r, &rows)[0][2], text("B"));
}

#[test]
fn reference_skip_modes() {
    let rows = seq(&[1, 2, 3, 4]);
    let ab = |skip: Option<Skip>| {
        let mut rule = Rule::new(Pattern::Concat(vec![Pattern::var("A"), Pattern::var("B")]));
        rule.defines = vec![v_gt("A", 0)];
        rule.measures = vec![Expr::first(Some("A"), Col::V, 0), Expr::MatchNumber];
        rule.skip = skip;
        rule
    };
    let past = vec![vec![int(1), int(1), int(1)], vec![int(1), int(3), int(2)]];
    let next = vec![
        vec![int(1), int(1), int(1)],
        vec![int(1), int(2), int(2)],
        vec![int(1), int(3), int(3)],
    ];
    assert_eq!(eval(&ab(None), &rows), past);
    assert_eq!(eval(&ab(Some(Skip::PastLastRow)), &rows), past);
    assert_eq!(eval(&ab(Some(Skip::ToNextRow)), &rows), next);
    // The last B is the match's second row.
    assert_eq!(eval(&ab(Some(Skip::ToLast("B".into()))), &rows), next);
    // The first A is the match's first row: resume at the row after it.
    assert_eq!(eval(&ab(Some(Skip::ToFirst("A".into()))), &rows), next);

    // A C? B with C never matching: skipping to C (unbound) resumes at the
    // row after the first row.
    let mut rule = ab(Some(Skip::ToFirst("C".into())));
    rule.pattern = Pattern::Concat(vec![
        Pattern::var("A"),
        Pattern::repeat(Pattern::var("C"), 0, Some(1), true),
        Pattern::var("B"),
    ]);
    rule.defines.push(v_gt("C", 100));
    assert_eq!(eval(&rule, &rows), next);

    // A{2} B over 1..5 with TO LAST A: matches start at 1, 2, 3 (each
    // resumes at its second row); PAST LAST ROW finds only the first.
    let rows = seq(&[1, 2, 3, 4, 5]);
    let mut rule = ab(Some(Skip::ToLast("A".into())));
    rule.pattern = Pattern::Concat(vec![
        Pattern::repeat(Pattern::var("A"), 2, Some(2), true),
        Pattern::var("B"),
    ]);
    assert_eq!(
        eval(&rule, &rows),
        vec![
            vec![int(1), int(1), int(1)],
            vec![int(1), int(2), int(2)],
            vec![int(1), int(3), int(3)],
        ]
    );
    rule.skip = Some(Skip::PastLastRow);
    assert_eq!(eval(&rule, &rows), vec![vec![int(1), int(1), int(1)]]);
}

#[test]
fn reference_timeouts() {
    // "placed (x) not followed by paid (y) within 3 s": A X*? B.
    let rows = vec![
        ev(1, 0, Some(1), Some("x")),    // start: A, X = row 2, B would be at 5000 >= 3000: time-out
        ev(1, 1000, Some(2), Some("z")), // no A
        ev(1, 5000, Some(3), Some("y")), // no A
        ev(1, 6000, Some(4), Some("x")), // A, next row at 10000 is outside: time-out
        ev(1, 10000, Some(5), Some("x")), // A, B: a match
        ev(1, 11000, Some(6), Some("y")),
        ev(1, 20000, Some(7), Some("x")), // A, the stream ends: time-out
    ];
    let mut rule = Rule::new(Pattern::Concat(vec![
        Pattern::var("A"),
        Pattern::repeat(Pattern::var("X"), 0, None, false),
        Pattern::var("B"),
    ]));
    rule.within = Some(Within {
        amount: 3,
        unit: Unit::Second,
        emit_timeouts: true,
    });
    rule.defines = vec![
        (
            "A".into(),
            Cond::Cmp(Expr::col(Some("A"), Col::Tag), CmpOp::Eq, Expr::text("x")),
        ),
        (
            "B".into(),
            Cond::Cmp(Expr::col(Some("B"), Col::Tag), CmpOp::Eq, Expr::text("y")),
        ),
    ];
    rule.measures = vec![
        Expr::agg(AggFunc::Count, None, None),
        Expr::last(Some("B"), Col::V, 0),
        Expr::MatchNumber,
        Expr::TimedOut,
        Expr::Classifier,
        Expr::first(Some("A"), Col::V, 0),
    ];
    let null = Datum::Null;
    let yes = Datum::Bool(true);
    assert_eq!(
        eval(&rule, &rows),
        sorted(vec![
            vec![
                int(1),
                int(2),
                null.clone(),
                null.clone(),
                yes.clone(),
                text("X"),
                int(1)
            ],
            vec![
                int(1),
                int(1),
                null.clone(),
                null.clone(),
                yes.clone(),
                text("A"),
                int(4)
            ],
            vec![int(1), int(2), int(6), int(1), Datum::Bool(false), text("B"), int(5)],
            vec![int(1), int(1), null.clone(), null, yes, text("A"), int(7)],
        ])
    );
    // Without EMIT TIMEOUTS only the match.
    rule.within = rule.within.map(|w| Within {
        emit_timeouts: false,
        ..w
    });
    assert_eq!(eval(&rule, &rows).len(), 1);

    // Of the partial matches alive, the most preferred: A (B | C) D over two
    // rows, D never matching. From row 1, A B and A C both wait for D: A B
    // is preferred; from row 2, A waits.
    for (alternatives, second) in [(["B", "C"], "B"), (["C", "B"], "C")] {
        let mut rule = Rule::new(Pattern::Concat(vec![
            Pattern::var("A"),
            Pattern::Alt(alternatives.into_iter().map(Pattern::var).collect()),
            Pattern::var("D"),
        ]));
        rule.within = Some(Within {
            amount: 10,
            unit: Unit::Second,
            emit_timeouts: true,
        });
        rule.defines = vec![v_gt("D", 100)];
        rule.measures = vec![Expr::Classifier, Expr::TimedOut, Expr::MatchNumber];
        assert_eq!(
            eval(&rule, &seq(&[1, 2])),
            vec![
                vec![int(1), text("A"), Datum::Bool(true), Datum::Null],
                vec![int(1), text(second), Datum::Bool(true), Datum::Null],
            ]
        );
    }

    // The most preferred partial match: A B{1,3} (greedy) over x 1, x 2 with
    // B AS v > 0 and C after it never reached; the stream ends after row 2.
    let mut rule = Rule::new(Pattern::Concat(vec![
        Pattern::var("A"),
        Pattern::repeat(Pattern::var("B"), 1, Some(3), true),
        Pattern::var("C"),
    ]));
    rule.within = Some(Within {
        amount: 10,
        unit: Unit::Second,
        emit_timeouts: true,
    });
    rule.defines = vec![v_gt("B", 0), v_gt("C", 100)];
    rule.measures = vec![Expr::agg(AggFunc::Count, Some("B"), None), Expr::TimedOut];
    // From row 1: A B, wants more (B or C): times out with 1 B. From row 2:
    // A alone, times out with 0 B.
    assert_eq!(
        eval(&rule, &seq(&[1, 2])),
        vec![
            vec![int(1), int(0), Datum::Bool(true)],
            vec![int(1), int(1), Datum::Bool(true)]
        ]
    );
}

#[test]
fn reference_within_is_strict() {
    let mut rule = Rule::new(Pattern::Concat(vec![Pattern::var("A"), Pattern::var("B")]));
    rule.within = Some(Within {
        amount: 1,
        unit: Unit::Second,
        emit_timeouts: false,
    });
    rule.defines = vec![v_gt("A", 0)];
    rule.measures = vec![Expr::agg(AggFunc::Count, None, None)];
    let at = |t: i64| vec![ev(1, 0, Some(1), None), ev(1, t, Some(1), None)];
    assert_eq!(eval(&rule, &at(1000)), Vec::<Row>::new());
    assert_eq!(eval(&rule, &at(999)), vec![vec![int(1), int(2)]]);
}

#[test]
fn reference_unbound_variables_are_null() {
    // A B? C with B never matching.
    let mut rule = Rule::new(Pattern::Concat(vec![
        Pattern::var("A"),
        Pattern::repeat(Pattern::var("B"), 0, Some(1), true),
        Pattern::var("C"),
    ]));
    rule.defines = vec![v_gt("B", 100)];
    rule.measures = vec![
        Expr::last(Some("B"), Col::V, 0),
        Expr::agg(AggFunc::Count, Some("B"), None),
        Expr::agg(AggFunc::Sum, Some("B"), Some(Col::V)),
        Expr::agg(AggFunc::Avg, Some("B"), Some(Col::V)),
        Expr::agg(AggFunc::Min, Some("B"), Some(Col::V)),
        Expr::col(Some("B"), Col::V),
        Expr::agg(AggFunc::Count, Some("A"), Some(Col::V)),
    ];
    let rows = vec![ev(1, 0, None, None), ev(1, 1000, Some(2), None)];
    let n = Datum::Null;
    assert_eq!(
        eval(&rule, &rows),
        vec![vec![
            int(1),
            n.clone(),
            int(0),
            n.clone(),
            n.clone(),
            n.clone(),
            n,
            int(0)
        ]]
    );
}

#[test]
fn reference_prev_and_running_defines() {
    // A{1,4} with A.v > PREV(A.v) over 3 1 2 3 1: the first row has no
    // previous row (NULL: false), 1 > 3 fails, then 2 3 rise.
    let mut rule = Rule::new(Pattern::repeat(Pattern::var("A"), 1, Some(4), true));
    rule.defines = vec![(
        "A".into(),
        Cond::Cmp(
            Expr::col(Some("A"), Col::V),
            CmpOp::Gt,
            Expr::prev(Expr::col(Some("A"), Col::V), 1),
        ),
    )];
    rule.measures = vec![Expr::agg(AggFunc::Count, None, None), Expr::first(Some("A"), Col::V, 0)];
    assert_eq!(eval(&rule, &seq(&[3, 1, 2, 3, 1])), vec![vec![int(1), int(2), int(2)]]);

    // A{1,5} with sum(A.v) < 6 over 1 2 3 4: the running sum includes the
    // current row: 1 2 | 3 | 4.
    rule.defines = vec![(
        "A".into(),
        Cond::Cmp(
            Expr::agg(AggFunc::Sum, Some("A"), Some(Col::V)),
            CmpOp::Lt,
            Expr::int(6),
        ),
    )];
    rule.pattern = Pattern::repeat(Pattern::var("A"), 1, Some(5), true);
    assert_eq!(
        eval(&rule, &seq(&[1, 2, 3, 4])),
        vec![
            vec![int(1), int(1), int(3)],
            vec![int(1), int(1), int(4)],
            vec![int(1), int(2), int(1)]
        ]
    );

    // PREV reaches back before the match start, within the partition: A B
    // with A AS v = PREV(v, 2) over 7 1 7 5. Rows 1 and 2 have no row two
    // before them (NULL: false); row 3 equals row 1.
    let mut rule = Rule::new(Pattern::Concat(vec![Pattern::var("A"), Pattern::var("B")]));
    rule.defines = vec![(
        "A".into(),
        Cond::Cmp(
            Expr::col(None, Col::V),
            CmpOp::Eq,
            Expr::prev(Expr::col(None, Col::V), 2),
        ),
    )];
    rule.measures = vec![Expr::first(Some("A"), Col::V, 0)];
    assert_eq!(eval(&rule, &seq(&[7, 1, 7, 5])), vec![vec![int(1), int(7)]]);
}

#[test]
fn reference_all_rows_running_measures() {
    // A B{1,3}: per row, the prefix up to that row.
    let mut rule = Rule::new(Pattern::Concat(vec![
        Pattern::var("A"),
        Pattern::repeat(Pattern::var("B"), 1, Some(3), true),
    ]));
    rule.rows_per_match = Some(RowsPerMatch::All);
    rule.defines = vec![v_gt("A", 0)];
    rule.measures = vec![
        Expr::agg(AggFunc::Count, None, None),
        Expr::last(Some("B"), Col::V, 0),
        Expr::agg(AggFunc::Sum, None, Some(Col::V)),
        Expr::Classifier,
        Expr::prev(Expr::col(None, Col::V), 1),
    ];
    let x = text("x");
    assert_eq!(
        eval(&rule, &seq(&[1, 2, 3])),
        vec![
            vec![
                int(1),
                ts(0),
                int(1),
                Datum::Null,
                int(1),
                text("A"),
                Datum::Null,
                int(1),
                x.clone()
            ],
            vec![
                int(1),
                ts(1000),
                int(2),
                int(2),
                int(3),
                text("B"),
                int(1),
                int(2),
                x.clone()
            ],
            vec![int(1), ts(2000), int(3), int(3), int(6), text("B"), int(2), int(3), x],
        ]
    );
    // No PARTITION BY: ts, the measures, then p, v, tag.
    rule.partition_by = vec![];
    rule.measures = vec![Expr::MatchNumber];
    assert_eq!(
        eval(&rule, &seq(&[1, 2]))[0],
        vec![ts(0), int(1), int(1), int(1), text("x")]
    );
}

#[test]
fn reference_ties_are_ordered_by_the_other_columns() {
    // All at one ts, arriving 3 1 NULL 2 'y' 2 'x': ordered NULL, 1, 2 'x',
    // 2 'y', 3.
    let rows = vec![
        ev(1, 0, Some(3), Some("x")),
        ev(1, 0, Some(1), Some("x")),
        ev(1, 0, None, Some("x")),
        ev(1, 0, Some(2), Some("y")),
        ev(1, 0, Some(2), Some("x")),
    ];
    let mut rule = Rule::new(Pattern::Concat(vec![
        Pattern::var("A"),
        Pattern::var("B"),
        Pattern::var("C"),
        Pattern::var("D"),
        Pattern::var("E"),
    ]));
    rule.rows_per_match = Some(RowsPerMatch::All);
    rule.defines = vec![("A".into(), Cond::IsNull(Expr::col(None, Col::V)))];
    rule.measures = vec![Expr::Classifier];
    let out = eval(&rule, &rows);
    let order: Vec<(Datum, Datum, Datum)> = out.iter().map(|r| (r[2].clone(), r[3].clone(), r[4].clone())).collect();
    assert_eq!(
        sorted_by_classifier(order),
        vec![
            (text("A"), Datum::Null, text("x")),
            (text("B"), int(1), text("x")),
            (text("C"), int(2), text("x")),
            (text("D"), int(2), text("y")),
            (text("E"), int(3), text("x")),
        ]
    );
}

fn sorted_by_classifier(mut v: Vec<(Datum, Datum, Datum)>) -> Vec<(Datum, Datum, Datum)> {
    v.sort();
    v
}

#[test]
fn reference_avg_is_weirs_decimal() {
    let mut rule = Rule::new(Pattern::repeat(Pattern::var("A"), 3, Some(3), true));
    rule.defines = vec![v_gt("A", 0)];
    rule.measures = vec![Expr::agg(AggFunc::Avg, Some("A"), Some(Col::V))];
    let out = eval(&rule, &seq(&[1, 2, 2]));
    assert_eq!(out, vec![vec![int(1), Datum::Decimal(Decimal::new(1_666_667, 6))]]);
    let Datum::Decimal(d) = &out[0][1] else {
        unreachable!("checked just above")
    };
    assert_eq!(d.scale(), 6);
}

#[test]
fn reference_partitions_are_independent() {
    // Interleaved partitions; MATCH_NUMBER counts per partition.
    let rows = vec![
        ev(1, 0, Some(1), None),
        ev(2, 0, Some(1), None),
        ev(1, 1000, Some(2), None),
        ev(2, 1000, Some(2), None),
        ev(2, 2000, Some(3), None),
        ev(2, 3000, Some(4), None),
    ];
    let mut rule = Rule::new(Pattern::Concat(vec![Pattern::var("A"), Pattern::var("B")]));
    rule.defines = vec![v_gt("A", 0)];
    rule.measures = vec![Expr::MatchNumber, Expr::first(Some("A"), Col::V, 0)];
    assert_eq!(
        eval(&rule, &rows),
        vec![
            vec![int(1), int(1), int(1)],
            vec![int(2), int(1), int(1)],
            vec![int(2), int(2), int(3)],
        ]
    );
}

#[test]
fn reference_renders_sql() {
    let mut rule = Rule::new(Pattern::Concat(vec![
        Pattern::var("A"),
        Pattern::repeat(Pattern::Alt(vec![Pattern::var("B"), Pattern::var("C")]), 0, None, false),
        Pattern::repeat(Pattern::var("D"), 1, Some(3), true),
        Pattern::repeat(
            Pattern::Concat(vec![Pattern::var("A"), Pattern::var("B")]),
            0,
            Some(2),
            false,
        ),
    ]));
    assert_eq!(rule.pattern.render(), "A (B | C)*? D{1,3} (A B){,2}?");
    rule.within = Some(Within {
        amount: 5,
        unit: Unit::Second,
        emit_timeouts: true,
    });
    rule.skip = Some(Skip::ToLast("B".into()));
    rule.rows_per_match = Some(RowsPerMatch::All);
    rule.measures = vec![
        Expr::agg(AggFunc::Count, Some("A"), None),
        Expr::prev(Expr::last(Some("B"), Col::V, 1), 2),
    ];
    rule.defines = vec![(
        "A".into(),
        Cond::Or(
            Box::new(Cond::IsNull(Expr::prev(Expr::col(None, Col::Tag), 1))),
            Box::new(Cond::Cmp(Expr::col(None, Col::Tag), CmpOp::Ne, Expr::text("x"))),
        ),
    )];
    assert_eq!(
        rule.view_sql("m", "ev", true),
        "CREATE MATERIALIZED VIEW m AS SELECT * FROM ev MATCH_RECOGNIZE (
  PARTITION BY p
  ORDER BY ts
  MEASURES count(A.*) AS m0,
           PREV(LAST(B.v, 1), 2) AS m1
  ALL ROWS PER MATCH
  AFTER MATCH SKIP TO LAST B
  PATTERN (A (B | C)*? D{1,3} (A B){,2}?) WITHIN INTERVAL '5' SECOND EMIT TIMEOUTS
  DEFINE A AS (PREV(tag) IS NULL) OR (tag <> 'x')
);
"
    );
    assert_eq!(rule.output_columns(), ["p", "ts", "m0", "m1", "v", "tag"]);
    weir_dataflows::sql::parse(&rule.view_sql("m", "ev", false)).expect("the rendered SQL parses");
}
