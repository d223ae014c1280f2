//! Matching one partition's rows against a compiled pattern: the bindings a
//! match builds, what a rule's expressions see of them, and the threads of
//! the Pike VM run from each start row.

use std::collections::VecDeque;
use std::rc::Rc;

use super::pattern::{Skip, VarId};
use super::program::{Inst, Program};
use crate::repr::Row;

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

/// A rule's condition or measure could not be evaluated on a row. The row's
/// data is at fault (or the rule written for it), not the engine: evaluating
/// it again fails again, so it is not retried. The row goes to the dead
/// letters with [`RuleError::reason`] as the reason, and matching goes on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct RuleError {
    /// What went wrong, as the dead letters show it.
    pub reason: String,
}

impl RuleError {
    pub fn new(reason: impl Into<String>) -> Self {
        RuleError { reason: reason.into() }
    }
}

/// The conditions and measures of one rule, evaluated by the caller's
/// expression language.
pub trait Rule: 'static {
    /// `DEFINE var`: whether the current row (already bound to `var` in
    /// `ctx`) belongs to `var`. An error counts as false and is reported.
    fn define(&self, var: VarId, ctx: &Ctx<'_>) -> Result<bool, RuleError>;
    /// One output row for `ctx.current`.
    fn output(&self, ctx: &Ctx<'_>) -> Result<Row, RuleError>;
    /// Whether some `DEFINE` reads rows bound earlier (navigation through
    /// variables, aggregates). When none does, two threads at the same step
    /// of the pattern behave the same from then on and the less preferred
    /// one is dropped.
    fn reads_bindings(&self) -> bool;
    /// Whether every `DEFINE` depends only on the current row and the rows
    /// before it in the partition (no bindings, no match number): then a
    /// row's verdict for a variable is the same from every start row, and
    /// is computed once.
    fn row_local(&self) -> bool;
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
    /// Rows one attempt may span, at most: one that reaches it without a
    /// match is dropped, its start row reported, and matching goes on from
    /// the next row. This bounds a partition's state also without `WITHIN`.
    pub max_rows: u64,
}

/// [`Matcher::max_rows`] unless a rule sets its own (`'pattern.max_rows'`).
pub const DEFAULT_MAX_ROWS: u64 = 10_000;

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
    /// The step's next threads are built here, then swapped with `threads`:
    /// a step allocates nothing once both have grown.
    spare: Vec<Thread>,
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
    /// The attempt reached [`Matcher::max_rows`].
    Capped,
}

/// What a partition step produced: output rows and errors.
#[derive(Default)]
pub struct Emitted {
    pub rows: Vec<Row>,
    pub errors: Vec<(String, Row)>,
}

/// Entries a forgotten partition's lists keep allocated for the next key.
const KEPT_CAPACITY: usize = 16;

/// One partition's state.
pub struct Partition {
    /// Released rows (event time, row) from position `base` on.
    rows: VecDeque<(i64, Row)>,
    /// Per released row, the verdicts of row-local conditions found so far
    /// (see [`Rule::row_local`]): bit `2v` set when variable `v`'s is
    /// known, bit `2v + 1` when it holds.
    verdicts: VecDeque<u64>,
    base: u64,
    /// Rows the watermark has not passed yet, sorted by event time (ties by
    /// the whole row). Rows mostly come in order: inserting one is then a
    /// push at the back.
    pending: VecDeque<(i64, Row)>,
    /// The next start row.
    start: u64,
    /// The next row to feed the attempt.
    cursor: u64,
    attempt: Option<Attempt>,
    /// The thread lists of the last attempt, emptied, for the next one.
    spare_threads: (Vec<Thread>, Vec<Thread>),
    matches: u64,
    /// The wake-up time this partition is indexed under.
    pub(super) wake: Option<i64>,
    /// The event time of the newest released row.
    last_ts: i64,
}

impl Default for Partition {
    fn default() -> Self {
        Partition {
            rows: VecDeque::new(),
            verdicts: VecDeque::new(),
            base: 0,
            pending: VecDeque::new(),
            start: 0,
            cursor: 0,
            attempt: None,
            spare_threads: Default::default(),
            matches: 0,
            wake: None,
            last_ts: i64::MIN,
        }
    }
}

/// A partition as a snapshot holds it: its rows and positions, without the
/// attempt in progress. The attempt is rebuilt by matching again from its
/// start row, which gives the same threads: matching is deterministic and
/// an attempt's state is a function of the rows from its start on.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct PartitionSnapshot {
    rows: Vec<(i64, Row)>,
    base: u64,
    pending: Vec<((i64, Row), usize)>,
    start: u64,
    matches: u64,
    last_ts: i64,
}

impl Partition {
    /// What a snapshot keeps of this partition (see [`PartitionSnapshot`]).
    pub fn snapshot(&self) -> PartitionSnapshot {
        PartitionSnapshot {
            rows: self.rows.iter().cloned().collect(),
            base: self.base,
            pending: counted(&self.pending),
            start: self.start,
            matches: self.matches,
            last_ts: self.last_ts,
        }
    }

    /// A partition restored from a snapshot, its attempt (if one was in
    /// progress) matched again up to `watermark`, the watermark it was
    /// taken at. Nothing is emitted by that: what it decided was emitted
    /// before the snapshot; evaluation errors found again are returned (the
    /// dead letters record them once).
    pub fn restore<R: Rule>(s: PartitionSnapshot, m: &Matcher<R>, watermark: i64) -> (Partition, Emitted) {
        let verdicts = std::iter::repeat_n(0, s.rows.len()).collect();
        let mut p = Partition {
            rows: s.rows.into(),
            verdicts,
            base: s.base,
            pending: s
                .pending
                .into_iter()
                .flat_map(|(entry, n)| std::iter::repeat_n(entry, n))
                .collect(),
            start: s.start,
            cursor: s.start,
            attempt: None,
            spare_threads: Default::default(),
            matches: s.matches,
            wake: None,
            last_ts: s.last_ts,
        };
        let mut out = Emitted::default();
        p.run(m, Some(watermark), &mut out);
        (p, out)
    }

    fn end(&self) -> u64 {
        self.base + self.rows.len() as u64
    }

    /// Whether a match is in progress from the current start row.
    pub(super) fn in_progress(&self) -> bool {
        self.attempt.is_some()
    }

    /// Adds a row that the watermark has not passed.
    pub fn insert(&mut self, ts: i64, row: Row) {
        let in_order = self
            .pending
            .back()
            .is_none_or(|(last, r)| *last < ts || (*last == ts && *r <= row));
        if in_order {
            self.pending.push_back((ts, row));
        } else {
            let at = self
                .pending
                .partition_point(|(t, r)| *t < ts || (*t == ts && *r <= row));
            self.pending.insert(at, (ts, row));
        }
    }

    /// The watermark at which this partition has work: its oldest pending
    /// row to release, its attempt's `WITHIN` running out, or (with nothing
    /// else left) its rows kept for `PREV` falling out of reach.
    pub(super) fn next_wake<R>(&self, m: &Matcher<R>) -> Option<i64> {
        let release = self.pending.front().map(|(ts, _)| ts.saturating_add(1));
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
    pub(super) fn forgettable<R>(&self, m: &Matcher<R>, w: i64) -> bool {
        self.quiet()
            && !m.numbers_matches
            && (m.history == 0 || m.within.is_some_and(|within| w >= self.last_ts.saturating_add(within)))
    }

    /// Releases the rows below `watermark` (all of them when `None`: the
    /// stream ended) and matches as far as they allow.
    pub fn advance<R: Rule>(&mut self, m: &Matcher<R>, watermark: Option<i64>, out: &mut Emitted) {
        while let Some(&(ts, _)) = self.pending.front() {
            if watermark.is_some_and(|w| ts >= w) {
                break;
            }
            if let Some(entry) = self.pending.pop_front() {
                self.rows.push_back(entry);
                self.verdicts.push_back(0);
            }
            self.last_ts = ts;
        }
        self.run(m, watermark, out);
        // Keep the rows `PREV` may reach from the next start.
        let keep_from = self.start.saturating_sub(m.history);
        while self.base < keep_from && !self.rows.is_empty() {
            self.rows.pop_front();
            self.verdicts.pop_front();
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
                let (threads, spare) = std::mem::take(&mut self.spare_threads);
                let mut attempt = Attempt {
                    start: self.start,
                    start_ts,
                    threads,
                    spare,
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
                if self.cursor - attempt.start >= m.max_rows {
                    resolution = Some(Resolution::Capped);
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
            if resolution == Some(Resolution::Capped) {
                self.drop_capped(m, &attempt, out);
            } else {
                self.resolve(m, &attempt, resolution == Some(Resolution::TimeUp), out);
            }
            self.recycle(attempt);
        }
    }

    /// Feeds the row at the cursor to every thread of the attempt.
    fn step<R: Rule>(&mut self, m: &Matcher<R>, out: &mut Emitted) {
        let Some(attempt) = self.attempt.as_mut() else { return };
        let seq = self.cursor;
        let mut threads = std::mem::take(&mut attempt.threads);
        let mut next = std::mem::take(&mut attempt.spare);
        next.clear();
        let mut seen = Seen::new(m.program.insts.len());
        let dedupe = !m.rule.reads_bindings();
        let at = (seq - self.base) as usize;
        let local = m.rule.row_local();
        for thread in threads.drain(..) {
            let Inst::Var(var) = m.program.insts[thread.pc] else {
                continue;
            };
            let known = if local {
                self.verdicts.get(at).and_then(|&w| verdict(w, var))
            } else {
                None
            };
            if known == Some(false) {
                continue;
            }
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
            let holds = known.is_some()
                || match m.rule.define(var, &ctx) {
                    Ok(h) => h,
                    Err(err) => {
                        if let Some(row) = ctx.row(seq) {
                            out.errors.push((err.reason, row.clone()));
                        }
                        false
                    }
                };
            if local && known.is_none() {
                if let Some(w) = self.verdicts.get_mut(at) {
                    *w = with_verdict(*w, var, holds);
                }
            }
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
        attempt.spare = threads;
    }

    /// Keeps an ended attempt's thread lists (emptied) for the next one.
    fn recycle(&mut self, mut attempt: Attempt) {
        attempt.threads.clear();
        attempt.spare.clear();
        self.spare_threads = (attempt.threads, attempt.spare);
    }

    /// Empties the partition for another key, keeping what it allocated
    /// up to [`KEPT_CAPACITY`] entries per list: a partition that once
    /// held a long run does not hold its memory for every key after it.
    pub(super) fn reset(&mut self) {
        if let Some(a) = self.attempt.take() {
            self.recycle(a);
        }
        let mut kept = Partition {
            rows: std::mem::take(&mut self.rows),
            verdicts: std::mem::take(&mut self.verdicts),
            pending: std::mem::take(&mut self.pending),
            spare_threads: std::mem::take(&mut self.spare_threads),
            ..Partition::default()
        };
        kept.rows.clear();
        kept.verdicts.clear();
        kept.pending.clear();
        kept.rows.shrink_to(KEPT_CAPACITY);
        kept.verdicts.shrink_to(KEPT_CAPACITY);
        kept.pending.shrink_to(KEPT_CAPACITY);
        kept.spare_threads.0.shrink_to(KEPT_CAPACITY);
        kept.spare_threads.1.shrink_to(KEPT_CAPACITY);
        *self = kept;
    }

    /// Ends an attempt that reached the row cap, reporting its start row to
    /// the errors (the dead letters): the match found so far, if any, is
    /// emitted (a longer one might have followed); without one nothing is,
    /// and matching goes on from the next row.
    fn drop_capped<R: Rule>(&mut self, m: &Matcher<R>, attempt: &Attempt, out: &mut Emitted) {
        if let Some((_, row)) = self.rows.get((attempt.start - self.base) as usize) {
            let what = if attempt.best.is_some() {
                "was cut there: the match found so far was emitted"
            } else {
                "was dropped without a match"
            };
            out.errors.push((
                format!(
                    "a partial match from this row reached {} rows and {what} ('pattern.max_rows' sets the cap; WITHIN bounds a match by time)",
                    m.max_rows
                ),
                row.clone(),
            ));
        }
        if attempt.best.is_some() {
            self.resolve(m, attempt, false, out);
        } else {
            self.start = attempt.start + 1;
        }
    }

    fn resolve<R: Rule>(&mut self, m: &Matcher<R>, attempt: &Attempt, time_up: bool, out: &mut Emitted) {
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
                Err(err) => {
                    if let Some(row) = ctx.row(node.seq) {
                        out.errors.push((err.reason, row.clone()));
                    }
                }
            }
        }
    }
}

/// Instructions already reached in one step: a less preferred thread that
/// reaches them again can only repeat what the first one does. A program
/// of up to 128 instructions (nearly every pattern) marks bits of a word,
/// so a step allocates nothing for it.
enum Seen {
    Small(u128),
    Large { marks: Vec<bool>, touched: Vec<usize> },
}

impl Seen {
    fn new(n: usize) -> Self {
        if n <= 128 {
            Seen::Small(0)
        } else {
            Seen::Large {
                marks: vec![false; n],
                touched: Vec::new(),
            }
        }
    }
    /// Marks `pc`; false when it was marked already.
    fn visit(&mut self, pc: usize) -> bool {
        match self {
            Seen::Small(bits) => {
                let bit = 1u128 << pc;
                let new = *bits & bit == 0;
                *bits |= bit;
                new
            }
            Seen::Large { marks, touched } => {
                if marks[pc] {
                    return false;
                }
                marks[pc] = true;
                touched.push(pc);
                true
            }
        }
    }
    fn clear(&mut self) {
        match self {
            Seen::Small(bits) => *bits = 0,
            Seen::Large { marks, touched } => {
                for pc in touched.drain(..) {
                    marks[pc] = false;
                }
            }
        }
    }
}

/// Variable `var`'s verdict in a row's word of verdicts (see
/// `Partition::verdicts`), if known; variables past the word's 32 are
/// never kept.
fn verdict(word: u64, var: VarId) -> Option<bool> {
    let bit = 2 * u32::from(var);
    (bit < 64 && word >> bit & 1 == 1).then(|| word >> (bit + 1) & 1 == 1)
}

/// `word` with `var`'s verdict kept.
fn with_verdict(word: u64, var: VarId, holds: bool) -> u64 {
    let bit = 2 * u32::from(var);
    if bit >= 64 {
        return word;
    }
    word | (1 | u64::from(holds) << 1) << bit
}

/// Sorted entries as (entry, count) runs, as snapshots keep them.
fn counted(sorted: &VecDeque<(i64, Row)>) -> Vec<((i64, Row), usize)> {
    let mut out: Vec<((i64, Row), usize)> = Vec::new();
    for e in sorted {
        match out.last_mut() {
            Some((last, n)) if last == e => *n += 1,
            _ => out.push((e.clone(), 1)),
        }
    }
    out
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
