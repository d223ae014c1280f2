//! Row pattern recognition (`MATCH_RECOGNIZE`, docs/cep.md) as a timely
//! operator.
//!
//! Three layers:
//! - [`Program`]: a pattern compiled to instructions of a Pike VM. Threads are
//!   kept in preferment order (greedy before reluctant, left alternatives
//!   first); the first thread to reach `Match` cuts every thread behind it, so
//!   the surviving match is the one the standard prefers, found in one pass
//!   over the rows instead of by backtracking.
//! - [`Partition`]: one partition's rows in event-time order and the attempt
//!   in progress from its current start row.
//! - [`match_recognize`]: the dataflow operator. It orders rows by event time
//!   behind a watermark, routes partitions to workers, fires time-outs as the
//!   watermark passes them and drops every partial match older than `WITHIN`,
//!   so its state is bounded by the rows inside that interval.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::rc::Rc;

use differential_dataflow::hashable::Hashable;
use differential_dataflow::{AsCollection, VecCollection};
use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::{Capability, OkErr};

use crate::repr::{format_timestamp, Datum, Diff, Row, Tick};

/// A pattern variable: its index in the rule's list of variables.
pub type VarId = u16;

/// A row pattern (the `PATTERN (…)` clause).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Pattern {
    Var(VarId),
    Concat(Vec<Pattern>),
    /// Alternatives, preferred left to right.
    Alt(Vec<Pattern>),
    Repeat {
        inner: Box<Pattern>,
        min: u32,
        max: Option<u32>,
        /// Greedy quantifiers prefer more iterations, reluctant ones fewer.
        greedy: bool,
    },
}

impl Pattern {
    /// Whether the pattern can match zero rows.
    pub fn nullable(&self) -> bool {
        match self {
            Pattern::Var(_) => false,
            Pattern::Concat(ps) => ps.iter().all(Pattern::nullable),
            Pattern::Alt(ps) => ps.iter().any(Pattern::nullable),
            Pattern::Repeat { inner, min, .. } => *min == 0 || inner.nullable(),
        }
    }

    /// Whether some quantifier has no upper bound.
    pub fn unbounded(&self) -> bool {
        match self {
            Pattern::Var(_) => false,
            Pattern::Concat(ps) | Pattern::Alt(ps) => ps.iter().any(Pattern::unbounded),
            Pattern::Repeat { inner, max, .. } => max.is_none() || inner.unbounded(),
        }
    }

    /// Whether some unbounded repetition's body can match zero rows: such a
    /// loop could iterate without consuming rows.
    pub fn has_nullable_loop(&self) -> bool {
        match self {
            Pattern::Var(_) => false,
            Pattern::Concat(ps) | Pattern::Alt(ps) => ps.iter().any(Pattern::has_nullable_loop),
            Pattern::Repeat { inner, max, .. } => (max.is_none() && inner.nullable()) || inner.has_nullable_loop(),
        }
    }
}

/// Where matching resumes after a match (`AFTER MATCH SKIP`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Skip {
    PastLastRow,
    ToNextRow,
    ToFirst(VarId),
    ToLast(VarId),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CepError {
    #[error("the pattern expands to more than {MAX_INSTRUCTIONS} steps: use smaller repetition bounds")]
    TooLarge,
}

/// Bounded repetitions are unrolled; this caps the unrolled size.
pub const MAX_INSTRUCTIONS: usize = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Inst {
    /// Consume one row if the variable's condition holds.
    Var(VarId),
    /// Continue at both, preferring the first.
    Split(usize, usize),
    Jmp(usize),
    Match,
}

/// A compiled pattern.
#[derive(Clone, Debug)]
pub struct Program {
    insts: Vec<Inst>,
}

impl Program {
    /// # Contract
    /// The caller has refused patterns that can match zero rows and loops
    /// whose body can: every cycle of the program consumes a row.
    pub fn compile(pattern: &Pattern) -> Result<Program, CepError> {
        let mut insts = Vec::new();
        emit(pattern, &mut insts)?;
        insts.push(Inst::Match);
        Ok(Program { insts })
    }
}

fn push(insts: &mut Vec<Inst>, inst: Inst) -> Result<usize, CepError> {
    if insts.len() >= MAX_INSTRUCTIONS {
        return Err(CepError::TooLarge);
    }
    insts.push(inst);
    Ok(insts.len() - 1)
}

fn emit(p: &Pattern, insts: &mut Vec<Inst>) -> Result<(), CepError> {
    match p {
        Pattern::Var(v) => {
            push(insts, Inst::Var(*v))?;
        }
        Pattern::Concat(ps) => {
            for p in ps {
                emit(p, insts)?;
            }
        }
        Pattern::Alt(ps) => {
            let mut exits = Vec::new();
            for (i, p) in ps.iter().enumerate() {
                if i + 1 == ps.len() {
                    emit(p, insts)?;
                } else {
                    let split = push(insts, Inst::Split(0, 0))?;
                    emit(p, insts)?;
                    exits.push(push(insts, Inst::Jmp(0))?);
                    insts[split] = Inst::Split(split + 1, insts.len());
                }
            }
            let end = insts.len();
            for j in exits {
                insts[j] = Inst::Jmp(end);
            }
        }
        Pattern::Repeat {
            inner,
            min,
            max,
            greedy,
        } => {
            for _ in 0..*min {
                emit(inner, insts)?;
            }
            let order = |take: usize, leave: usize| {
                if *greedy {
                    Inst::Split(take, leave)
                } else {
                    Inst::Split(leave, take)
                }
            };
            match max {
                Some(max) => {
                    // Optional copies, each reachable only through the one
                    // before it: (X (X (X)?)?)?
                    let mut splits = Vec::new();
                    for _ in *min..*max {
                        splits.push(push(insts, Inst::Split(0, 0))?);
                        emit(inner, insts)?;
                    }
                    let end = insts.len();
                    for s in splits {
                        insts[s] = order(s + 1, end);
                    }
                }
                None => {
                    let top = push(insts, Inst::Split(0, 0))?;
                    emit(inner, insts)?;
                    push(insts, Inst::Jmp(top))?;
                    let end = insts.len();
                    insts[top] = order(top + 1, end);
                }
            }
        }
    }
    Ok(())
}

/// One row bound to a variable, linked to the rows bound before it. Threads
/// share their common prefixes.
#[derive(Debug)]
pub struct Bind {
    /// The row's position in its partition (counted from the partition's
    /// first row).
    pub seq: u64,
    pub var: VarId,
    prev: Option<Rc<Bind>>,
}

/// The rows a (partial) match has bound so far, newest first.
pub type Bindings = Option<Rc<Bind>>;

fn walk(b: &Bindings) -> impl Iterator<Item = &Bind> {
    std::iter::successors(b.as_deref(), |n| n.prev.as_deref())
}

/// What a rule's expressions see: the partition's rows, the rows bound so
/// far and the current row.
pub struct Ctx<'a> {
    rows: &'a VecDeque<(i64, Row)>,
    base: u64,
    bindings: &'a Bindings,
    /// The row being classified (in DEFINE) or the last row of the prefix
    /// being measured (in MEASURES).
    pub current: u64,
    /// The number this match gets (or is getting); `None` for a time-out.
    pub match_number: Option<u64>,
    pub timed_out: bool,
}

impl Ctx<'_> {
    /// A row of the partition by position; `None` before the partition's
    /// first row (or before the rows kept for `PREV`).
    pub fn row(&self, seq: u64) -> Option<&Row> {
        let i = seq.checked_sub(self.base)?;
        self.rows.get(usize::try_from(i).ok()?).map(|(_, r)| r)
    }

    /// A row's event time, as [`Ctx::row`].
    pub fn ts(&self, seq: u64) -> Option<i64> {
        let i = seq.checked_sub(self.base)?;
        self.rows.get(usize::try_from(i).ok()?).map(|(ts, _)| *ts)
    }

    /// The position of the `k`-th row (from 0) bound to `var` (any variable
    /// when `None`), counted back from the newest.
    pub fn last(&self, var: Option<VarId>, k: usize) -> Option<u64> {
        walk(self.bindings)
            .filter(|b| var.is_none_or(|v| b.var == v))
            .nth(k)
            .map(|b| b.seq)
    }

    /// As [`Ctx::last`], counted from the oldest.
    pub fn first(&self, var: Option<VarId>, k: usize) -> Option<u64> {
        let seqs: Vec<u64> = self.positions(var);
        seqs.len().checked_sub(k + 1).map(|i| seqs[i])
    }

    /// Positions of the rows bound to `var` (all rows when `None`), newest
    /// first.
    pub fn positions(&self, var: Option<VarId>) -> Vec<u64> {
        walk(self.bindings)
            .filter(|b| var.is_none_or(|v| b.var == v))
            .map(|b| b.seq)
            .collect()
    }

    /// The current row's variable, when it is bound.
    pub fn classifier(&self) -> Option<VarId> {
        walk(self.bindings).find(|b| b.seq == self.current).map(|b| b.var)
    }
}

/// The conditions and measures of one rule, evaluated by the caller's
/// expression language.
pub trait Rule: 'static {
    /// `DEFINE var`: whether the current row (already bound to `var` in
    /// `ctx`) belongs to `var`. An error counts as false and is reported.
    fn define(&self, var: VarId, ctx: &Ctx<'_>) -> Result<bool, String>;
    /// One output row for `ctx.current`.
    fn output(&self, ctx: &Ctx<'_>) -> Result<Row, String>;
    /// Whether some `DEFINE` reads rows bound earlier (navigation through
    /// variables, aggregates). When none does, two threads at the same step
    /// of the pattern behave the same from then on and the less preferred
    /// one is dropped.
    fn reads_bindings(&self) -> bool;
}

/// How a rule matches; shared by every partition.
pub struct Matcher<R> {
    pub program: Program,
    pub rule: R,
    pub skip: Skip,
    /// `WITHIN`, in event-time milliseconds.
    pub within: Option<i64>,
    pub emit_timeouts: bool,
    /// One output row per matched row (`ALL ROWS PER MATCH`).
    pub all_rows: bool,
    /// Rows kept before the current start row, for `PREV`.
    pub history: u64,
    /// Whether partitions must remember their match count (MATCH_NUMBER()).
    pub numbers_matches: bool,
}

/// More threads than this in one attempt (only possible with ambiguous
/// patterns whose conditions read earlier rows) drop the least preferred
/// ones, and the drop is reported.
const MAX_THREADS: usize = 50_000;

struct Thread {
    pc: usize,
    bindings: Bindings,
}

/// Matching from one start row.
struct Attempt {
    start: u64,
    start_ts: i64,
    threads: Vec<Thread>,
    /// The most preferred complete match so far.
    best: Bindings,
}

/// Why an attempt ends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Resolution {
    /// No thread is left.
    Exhausted,
    /// The watermark passed `WITHIN`, or the stream ended.
    TimeUp,
}

/// What a partition step produced: output rows and errors.
#[derive(Default)]
pub struct Emitted {
    pub rows: Vec<Row>,
    pub errors: Vec<(String, Row)>,
}

/// One partition's state.
pub struct Partition {
    /// Released rows (event time, row) from position `base` on.
    rows: VecDeque<(i64, Row)>,
    base: u64,
    /// Rows the watermark has not passed yet, in event-time order (ties by
    /// the whole row), with their counts.
    pending: BTreeMap<(i64, Row), usize>,
    /// The next start row.
    start: u64,
    /// The next row to feed the attempt.
    cursor: u64,
    attempt: Option<Attempt>,
    matches: u64,
    /// The wake-up time this partition is indexed under.
    wake: Option<i64>,
    /// The event time of the newest released row.
    last_ts: i64,
}

impl Default for Partition {
    fn default() -> Self {
        Partition {
            rows: VecDeque::new(),
            base: 0,
            pending: BTreeMap::new(),
            start: 0,
            cursor: 0,
            attempt: None,
            matches: 0,
            wake: None,
            last_ts: i64::MIN,
        }
    }
}

impl Partition {
    fn end(&self) -> u64 {
        self.base + self.rows.len() as u64
    }

    /// Adds a row that the watermark has not passed.
    pub fn insert(&mut self, ts: i64, row: Row) {
        *self.pending.entry((ts, row)).or_default() += 1;
    }

    /// The watermark at which this partition has work: its oldest pending
    /// row to release, its attempt's `WITHIN` running out, or (with nothing
    /// else left) its rows kept for `PREV` falling out of reach.
    fn next_wake<R>(&self, m: &Matcher<R>) -> Option<i64> {
        let release = self.pending.keys().next().map(|(ts, _)| ts.saturating_add(1));
        let timeout = match (&self.attempt, m.within) {
            (Some(a), Some(w)) => Some(a.start_ts.saturating_add(w)),
            _ => None,
        };
        match (release, timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            // Only a wake that will let the partition go: anything else
            // would wake it again and again.
            (None, None) if self.quiet() && m.history > 0 && !m.numbers_matches => {
                m.within.map(|w| self.last_ts.saturating_add(w))
            }
            (a, b) => a.or(b),
        }
    }

    /// No rows waiting and no attempt in progress.
    fn quiet(&self) -> bool {
        self.pending.is_empty() && self.attempt.is_none() && self.start == self.end()
    }

    /// Nothing to remember at watermark `w`: quiet, no match count to keep,
    /// and no row `PREV` could still reach. `PREV` does not reach rows
    /// `WITHIN` or more older than its starting row (docs/cep.md), and any
    /// row still to come is at or past the watermark.
    fn forgettable<R>(&self, m: &Matcher<R>, w: i64) -> bool {
        self.quiet()
            && !m.numbers_matches
            && (m.history == 0 || m.within.is_some_and(|within| w >= self.last_ts.saturating_add(within)))
    }

    /// Releases the rows below `watermark` (all of them when `None`: the
    /// stream ended) and matches as far as they allow.
    pub fn advance<R: Rule>(&mut self, m: &Matcher<R>, watermark: Option<i64>, out: &mut Emitted) {
        while let Some(entry) = self.pending.first_entry() {
            let ts = entry.key().0;
            if watermark.is_some_and(|w| ts >= w) {
                break;
            }
            let ((ts, row), n) = entry.remove_entry();
            for _ in 1..n {
                self.rows.push_back((ts, row.clone()));
            }
            self.rows.push_back((ts, row));
            self.last_ts = ts;
        }
        self.run(m, watermark, out);
        // Keep the rows `PREV` may reach from the next start.
        let keep_from = self.start.saturating_sub(m.history);
        while self.base < keep_from && !self.rows.is_empty() {
            self.rows.pop_front();
            self.base += 1;
        }
    }

    fn run<R: Rule>(&mut self, m: &Matcher<R>, watermark: Option<i64>, out: &mut Emitted) {
        loop {
            if self.attempt.is_none() {
                if self.start >= self.end() {
                    return;
                }
                let start_ts = self.rows[(self.start - self.base) as usize].0;
                let mut attempt = Attempt {
                    start: self.start,
                    start_ts,
                    threads: Vec::new(),
                    best: None,
                };
                let mut seen = Seen::new(m.program.insts.len());
                add_thread(&m.program, &mut attempt.threads, &mut seen, 0, None, &mut attempt.best);
                self.attempt = Some(attempt);
                self.cursor = self.start;
            }
            let mut resolution = None;
            while self.cursor < self.end() {
                let Some(attempt) = self.attempt.as_mut() else { return };
                let ts = self.rows[(self.cursor - self.base) as usize].0;
                if m.within.is_some_and(|w| ts >= attempt.start_ts.saturating_add(w)) {
                    resolution = Some(Resolution::TimeUp);
                    break;
                }
                self.step(m, out);
                self.cursor += 1;
                if self.attempt.as_ref().is_some_and(|a| a.threads.is_empty()) {
                    resolution = Some(Resolution::Exhausted);
                    break;
                }
            }
            if resolution.is_none() {
                let timed_out = match (watermark, m.within, &self.attempt) {
                    (None, _, _) => true,
                    (Some(w), Some(within), Some(a)) => w >= a.start_ts.saturating_add(within),
                    _ => false,
                };
                if !timed_out {
                    return;
                }
                resolution = Some(Resolution::TimeUp);
            }
            let Some(attempt) = self.attempt.take() else { return };
            self.resolve(m, attempt, resolution == Some(Resolution::TimeUp), out);
        }
    }

    /// Feeds the row at the cursor to every thread of the attempt.
    fn step<R: Rule>(&mut self, m: &Matcher<R>, out: &mut Emitted) {
        let Some(attempt) = self.attempt.as_mut() else { return };
        let seq = self.cursor;
        let threads = std::mem::take(&mut attempt.threads);
        let mut next = Vec::with_capacity(threads.len());
        let mut seen = Seen::new(m.program.insts.len());
        let dedupe = !m.rule.reads_bindings();
        for thread in threads {
            let Inst::Var(var) = m.program.insts[thread.pc] else {
                continue;
            };
            let bound: Bindings = Some(Rc::new(Bind {
                seq,
                var,
                prev: thread.bindings,
            }));
            let ctx = Ctx {
                rows: &self.rows,
                base: self.base,
                bindings: &bound,
                current: seq,
                match_number: Some(self.matches + 1),
                timed_out: false,
            };
            let holds = match m.rule.define(var, &ctx) {
                Ok(h) => h,
                Err(reason) => {
                    if let Some(row) = ctx.row(seq) {
                        out.errors.push((reason, row.clone()));
                    }
                    false
                }
            };
            if !holds {
                continue;
            }
            if !dedupe {
                seen.clear();
            }
            if add_thread(
                &m.program,
                &mut next,
                &mut seen,
                thread.pc + 1,
                bound,
                &mut attempt.best,
            ) {
                // A match: every less preferred thread is cut.
                break;
            }
            if next.len() > MAX_THREADS {
                next.truncate(MAX_THREADS);
                if let Some((_, row)) = self.rows.get((seq - self.base) as usize) {
                    out.errors.push((
                        format!("pattern state limit: more than {MAX_THREADS} partial matches from one start row; the least preferred were dropped"),
                        row.clone(),
                    ));
                }
            }
        }
        attempt.threads = next;
    }

    fn resolve<R: Rule>(&mut self, m: &Matcher<R>, attempt: Attempt, time_up: bool, out: &mut Emitted) {
        if let Some(last) = attempt.best.as_ref() {
            self.matches += 1;
            let number = self.matches;
            self.emit(m, &attempt.best, Some(number), false, out);
            let target = match m.skip {
                Skip::PastLastRow => Some(last.seq + 1),
                Skip::ToNextRow => None,
                Skip::ToFirst(v) => walk(&attempt.best).filter(|b| b.var == v).last().map(|b| b.seq),
                Skip::ToLast(v) => walk(&attempt.best).find(|b| b.var == v).map(|b| b.seq),
            };
            self.start = target.filter(|&t| t > attempt.start).unwrap_or(attempt.start + 1);
        } else {
            if time_up && m.emit_timeouts {
                if let Some(partial) = attempt.threads.first() {
                    self.emit(m, &partial.bindings, None, true, out);
                }
            }
            self.start = attempt.start + 1;
        }
    }

    fn emit<R: Rule>(
        &self,
        m: &Matcher<R>,
        bindings: &Bindings,
        number: Option<u64>,
        timed_out: bool,
        out: &mut Emitted,
    ) {
        let mut nodes: Vec<&Rc<Bind>> = Vec::new();
        let mut at = bindings.as_ref();
        while let Some(n) = at {
            nodes.push(n);
            at = n.prev.as_ref();
        }
        // ONE ROW PER MATCH measures the whole match; ALL ROWS each prefix.
        let prefixes: Vec<&Rc<Bind>> = if m.all_rows {
            nodes.iter().rev().copied().collect()
        } else {
            nodes.first().copied().into_iter().collect()
        };
        for node in prefixes {
            let prefix = Some(Rc::clone(node));
            let ctx = Ctx {
                rows: &self.rows,
                base: self.base,
                bindings: &prefix,
                current: node.seq,
                match_number: number,
                timed_out,
            };
            match m.rule.output(&ctx) {
                Ok(row) => out.rows.push(row),
                Err(reason) => {
                    if let Some(row) = ctx.row(node.seq) {
                        out.errors.push((reason, row.clone()));
                    }
                }
            }
        }
    }
}

/// Instructions already reached in one step: a less preferred thread that
/// reaches them again can only repeat what the first one does.
struct Seen {
    marks: Vec<bool>,
    touched: Vec<usize>,
}

impl Seen {
    fn new(n: usize) -> Self {
        Seen {
            marks: vec![false; n],
            touched: Vec::new(),
        }
    }
    /// Marks `pc`; false when it was marked already.
    fn visit(&mut self, pc: usize) -> bool {
        if self.marks[pc] {
            return false;
        }
        self.marks[pc] = true;
        self.touched.push(pc);
        true
    }
    fn clear(&mut self) {
        for pc in self.touched.drain(..) {
            self.marks[pc] = false;
        }
    }
}

/// Follows the non-consuming instructions from `pc` in preferment order,
/// adding a thread at each variable reached. Returns true when `Match` is
/// reached: `best` takes the bindings and nothing less preferred follows.
fn add_thread(
    program: &Program,
    list: &mut Vec<Thread>,
    seen: &mut Seen,
    pc: usize,
    bindings: Bindings,
    best: &mut Bindings,
) -> bool {
    if !seen.visit(pc) {
        return false;
    }
    match program.insts[pc] {
        Inst::Var(_) => {
            list.push(Thread { pc, bindings });
            false
        }
        Inst::Jmp(to) => add_thread(program, list, seen, to, bindings, best),
        Inst::Split(a, b) => {
            add_thread(program, list, seen, a, bindings.clone(), best)
                || add_thread(program, list, seen, b, bindings, best)
        }
        Inst::Match => {
            *best = bindings;
            true
        }
    }
}

/// A source's watermark settings (the table's `WITH` options).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermark {
    /// How far behind the largest event time seen rows may still arrive.
    pub lateness_ms: i64,
    /// After this long without a row (in append time), event time moves on
    /// with the clock; `None`: never.
    pub idle_ms: Option<i64>,
}

impl Default for Watermark {
    fn default() -> Self {
        Watermark {
            lateness_ms: 0,
            idle_ms: Some(1000),
        }
    }
}

/// The watermark of one rule's input. Every worker sees every tick's
/// largest event time, so all compute the same watermark.
struct Clock {
    settings: Watermark,
    max_ts: Option<i64>,
    last_arrival: Tick,
    /// The watermark reached so far: it never goes back.
    floor: i64,
}

impl Clock {
    fn at(&self, now: Tick) -> i64 {
        let Some(max) = self.max_ts else { return self.floor };
        let mut w = self.floor.max(max.saturating_sub(self.settings.lateness_ms));
        if let Some(idle) = self.settings.idle_ms {
            let gap = i64::try_from(now.saturating_sub(self.last_arrival)).unwrap_or(i64::MAX);
            let moved = gap.saturating_sub(idle);
            if moved > 0 {
                w = w.max(max.saturating_sub(self.settings.lateness_ms).saturating_add(moved));
            }
        }
        w
    }

    /// The first tick at which the watermark reaches `w` with no further
    /// rows (the idle clock), if it ever does.
    fn tick_reaching(&self, w: i64) -> Option<Tick> {
        let base = self.max_ts?.saturating_sub(self.settings.lateness_ms);
        let idle = self.settings.idle_ms?;
        if w <= self.floor.max(base) {
            return Some(self.last_arrival);
        }
        let extra = u64::try_from(w.saturating_sub(base)).ok()?;
        Some(
            self.last_arrival
                .saturating_add(u64::try_from(idle).unwrap_or(u64::MAX))
                .saturating_add(extra),
        )
    }

    fn observe(&mut self, now: Tick, max_ts: i64) {
        self.floor = self.at(now);
        self.max_ts = Some(self.max_ts.map_or(max_ts, |m| m.max(max_ts)));
        self.last_arrival = now;
    }
}

/// Where a rule's input rows are keyed and ordered.
#[derive(Clone, Debug)]
pub struct Layout {
    pub partition_by: Vec<usize>,
    /// The event-time column (TIMESTAMP, or BIGINT milliseconds).
    pub order_by: usize,
    pub order_by_name: String,
    pub watermark: Watermark,
}

fn event_time(row: &Row, col: usize) -> Option<i64> {
    match row.get(col) {
        Some(Datum::Timestamp(t)) | Some(Datum::Int(t)) => Some(*t),
        _ => None,
    }
}

/// The per-worker state of the operator.
struct State<R> {
    matcher: Matcher<R>,
    layout: Layout,
    clock: Clock,
    partitions: HashMap<Row, Partition>,
    /// Partitions by the watermark at which they have work.
    wakes: BTreeSet<(i64, Row)>,
    /// Partitions with a match in progress.
    attempts: usize,
    /// Output waiting to be sent, with the tick it belongs to.
    outbox: Vec<(Tick, Emitted)>,
    /// The watermark partitions were last worked at.
    watermark: i64,
}

impl<R: Rule> State<R> {
    fn key(&self, row: &Row) -> Row {
        self.layout.partition_by.iter().map(|&i| row[i].clone()).collect()
    }

    /// Re-files a partition under the watermark at which it next has work,
    /// and forgets it when it holds nothing.
    fn reindex(&mut self, key: Row) {
        let Some(p) = self.partitions.get_mut(&key) else { return };
        let forget = p.forgettable(&self.matcher, self.watermark);
        let wake = if forget { None } else { p.next_wake(&self.matcher) };
        if p.wake != wake {
            if let Some(old) = p.wake {
                self.wakes.remove(&(old, key.clone()));
            }
            if let Some(w) = wake {
                self.wakes.insert((w, key.clone()));
            }
            p.wake = wake;
        }
        if forget {
            self.partitions.remove(&key);
        }
    }

    /// Queues output to be emitted at tick `t`.
    fn emit(&mut self, t: Tick, out: Emitted) {
        if !out.rows.is_empty() || !out.errors.is_empty() {
            self.outbox.push((t, out));
        }
    }

    /// Time passes through tick `t` with no rows. What the idle watermark
    /// decides is emitted at the tick the watermark reaches it, not when
    /// the operator happens to notice, so a view read at some `as_of`
    /// holds the same rows however the workers were scheduled.
    fn idle_until(&mut self, t: Tick) {
        let w = self.clock.at(t);
        while let Some(&(wake, _)) = self.wakes.first() {
            if wake > w {
                break;
            }
            let at = self.clock.tick_reaching(wake).map_or(t, |r| r.min(t));
            let mut out = Emitted::default();
            self.work_first(self.clock.at(at), &mut out);
            self.emit(at, out);
        }
    }

    /// One complete tick: its rows, and the largest event time any worker
    /// saw at it.
    fn tick(&mut self, now: Tick, rows: Vec<(Row, Diff)>, max_ts: Option<i64>) {
        self.idle_until(now);
        let mut out = Emitted::default();
        let before = self.clock.at(now);
        for (row, diff) in rows {
            let Some(ts) = event_time(&row, self.layout.order_by) else {
                out.errors
                    .push((format!("event time {} is NULL", self.layout.order_by_name), row));
                continue;
            };
            if diff < 0 {
                out.errors.push((
                    "a pattern's input must be append-only: a row was retracted".to_string(),
                    row,
                ));
                continue;
            }
            if ts < before {
                out.errors.push((
                    format!(
                        "late: event time {} is behind the watermark {} (allowed lateness {} ms)",
                        format_timestamp(ts),
                        format_timestamp(before),
                        self.layout.watermark.lateness_ms
                    ),
                    row,
                ));
                continue;
            }
            let key = self.key(&row);
            let p = match self.partitions.get_mut(&key) {
                Some(p) => p,
                None => self.partitions.entry(key.clone()).or_default(),
            };
            for _ in 1..diff {
                p.insert(ts, row.clone());
            }
            p.insert(ts, row);
            // Re-filed only when the row moves its wake-up earlier (a
            // partition with rows waiting is never forgotten).
            if p.wake.is_none_or(|w| ts.saturating_add(1) < w) {
                self.reindex(key);
            }
        }
        if let Some(m) = max_ts {
            self.clock.observe(now, m);
        }
        self.watermark = self.watermark.max(self.clock.at(now));
        let w = self.clock.at(now);
        while self.wakes.first().is_some_and(|(wake, _)| *wake <= w) {
            self.work_first(w, &mut out);
        }
        self.emit(now, out);
    }

    /// Works the partition with the earliest wake-up at watermark `w`.
    fn work_first(&mut self, w: i64, out: &mut Emitted) {
        self.watermark = self.watermark.max(w);
        let Some((_, key)) = self.wakes.pop_first() else { return };
        if let Some(p) = self.partitions.get_mut(&key) {
            p.wake = None;
            let had = p.attempt.is_some();
            p.advance(&self.matcher, Some(w), out);
            match (had, p.attempt.is_some()) {
                (false, true) => self.attempts += 1,
                (true, false) => self.attempts -= 1,
                _ => {}
            }
        }
        self.reindex(key);
    }

    /// The stream ended: every partition finishes, as if the watermark had
    /// passed everything.
    fn finish(&mut self, t: Tick) {
        let mut out = Emitted::default();
        for p in self.partitions.values_mut() {
            p.advance(&self.matcher, None, &mut out);
        }
        self.partitions.clear();
        self.wakes.clear();
        self.attempts = 0;
        self.emit(t, out);
    }
}

/// Output rows of a rule.
pub type Rows<'s> = VecCollection<'s, Tick, Row, Diff>;
/// Rows for the dead letters, with the reason.
pub type Rejects<'s> = VecCollection<'s, Tick, (String, Row), Diff>;

/// A rule's state on this worker, for metrics.
#[derive(Clone, Debug, Default)]
pub struct CepStats {
    /// Partitions with rows waiting for the watermark, a match in progress
    /// or history kept for `PREV` / `MATCH_NUMBER()`.
    pub partitions: Rc<std::cell::Cell<usize>>,
    /// Partitions with a partial match in progress.
    pub partial_matches: Rc<std::cell::Cell<usize>>,
    /// Rows emitted so far (matches, or their rows, and time-outs).
    pub emitted: Rc<std::cell::Cell<u64>>,
}

/// Matches `matcher` over `input` (append-only rows). Returns the output
/// rows, and the rows that could not be matched with the reason (late rows,
/// NULL event times, evaluation errors) for the dead letters.
///
/// Output is emitted at the tick the watermark passes what decides it: a
/// match when no more preferred match can still appear, a time-out when the
/// watermark passes its start plus `WITHIN`.
pub fn match_recognize<'s, R: Rule>(
    input: VecCollection<'s, Tick, Row, Diff>,
    name: &str,
    layout: Layout,
    matcher: Matcher<R>,
    stats: CepStats,
) -> (Rows<'s>, Rejects<'s>) {
    let order_by = layout.order_by;
    // Each worker's largest event time per tick, seen by every worker.
    let marks = input
        .inner
        .clone()
        .unary::<CapacityContainerBuilder<Vec<(i64, Tick, Diff)>>, _, _, _>(
            Pipeline,
            &format!("{name}: event-time marks"),
            move |_cap, _info| {
                move |input, output| {
                    input.for_each(|cap, data| {
                        let mut by_time: BTreeMap<Tick, i64> = BTreeMap::new();
                        for (row, t, diff) in data.iter() {
                            if *diff > 0 {
                                if let Some(ts) = event_time(row, order_by) {
                                    let m = by_time.entry(*t).or_insert(ts);
                                    *m = (*m).max(ts);
                                }
                            }
                        }
                        let mut session = output.session(&cap);
                        for (t, ts) in by_time {
                            session.give((ts, t, 1));
                        }
                    });
                }
            },
        )
        .broadcast();
    let key_cols = layout.partition_by.clone();
    let watermark = layout.watermark;
    let mut state = State {
        matcher,
        layout,
        clock: Clock {
            settings: watermark,
            max_ts: None,
            last_arrival: 0,
            floor: i64::MIN,
        },
        partitions: HashMap::new(),
        wakes: BTreeSet::new(),
        attempts: 0,
        outbox: Vec::new(),
        watermark: i64::MIN,
    };
    /// A match (or time-out) row, or a row for the dead letters.
    type Out = (Result<Row, (String, Row)>, Tick, Diff);
    type Builder = CapacityContainerBuilder<Vec<Out>>;
    let both = input.inner.binary_frontier::<_, Builder, _, _, _, _>(
        marks,
        Exchange::new(move |(row, _, _): &(Row, Tick, Diff)| {
            key_cols.iter().map(|&i| row[i].clone()).collect::<Row>().hashed()
        }),
        Pipeline,
        name,
        move |capability, _info| {
            let mut cap: Option<Capability<Tick>> = Some(capability);
            let mut rows: BTreeMap<Tick, Vec<(Row, Diff)>> = BTreeMap::new();
            let mut marks: BTreeMap<Tick, i64> = BTreeMap::new();
            move |(input, frontier), (mark_input, mark_frontier), output| {
                input.for_each(|_cap, data| {
                    for (row, t, diff) in data.drain(..) {
                        rows.entry(t).or_default().push((row, diff));
                    }
                });
                mark_input.for_each(|_cap, data| {
                    for (ts, t, _) in data.drain(..) {
                        let m = marks.entry(t).or_insert(ts);
                        *m = (*m).max(ts);
                    }
                });
                let Some(held) = cap.as_ref() else { return };
                // The earliest time either input may still bring.
                let now = [frontier.frontier().first(), mark_frontier.frontier().first()]
                    .into_iter()
                    .flatten()
                    .min()
                    .copied();
                let complete = |t: &Tick| now.is_none_or(|n| *t < n);
                loop {
                    let next = [rows.keys().next(), marks.keys().next()]
                        .into_iter()
                        .flatten()
                        .min()
                        .copied();
                    let Some(t) = next.filter(complete) else { break };
                    let data = rows.remove(&t).unwrap_or_default();
                    let mark = marks.remove(&t);
                    state.tick(t, data, mark);
                }
                match now {
                    // Every tick before the frontier is complete.
                    Some(n) => state.idle_until(n.saturating_sub(1)),
                    None => state.finish(*held.time()),
                }
                for (t, e) in state.outbox.drain(..) {
                    // Never before the capability held: that time is past.
                    let t = t.max(*held.time());
                    let at = held.delayed(&t);
                    let mut session = output.session(&at);
                    stats.emitted.set(stats.emitted.get() + e.rows.len() as u64);
                    for row in e.rows {
                        session.give((Ok(row), t, 1));
                    }
                    for err in e.errors {
                        session.give((Err(err), t, 1));
                    }
                }
                stats.partitions.set(state.partitions.len());
                stats.partial_matches.set(state.attempts);
                match now {
                    Some(n) => {
                        if let Some(c) = cap.as_mut() {
                            c.downgrade(&n);
                        }
                    }
                    None => cap = None,
                }
            }
        },
    );
    let (oks, errs) = both.ok_err::<Vec<_>, _, Vec<_>, _, _>(|(r, t, d)| match r {
        Ok(row) => Ok((row, t, d)),
        Err(e) => Err((e, t, d)),
    });
    (oks.as_collection(), errs.as_collection())
}
