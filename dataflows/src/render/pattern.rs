//! `MATCH_RECOGNIZE` on the dataflow: the planned `DEFINE` conditions and
//! `MEASURES` (scalar expressions over the current row plus navigation
//! columns) evaluated for the pattern operator of `weir_operators::cep`.

use weir_operators::aggregate::fold_aggregate;
use weir_operators::cep::{
    match_recognize, CepStats, Ctx, Layout, Matcher, PatternState, Program, Rule, RuleError, VarId,
};
use weir_operators::repr::{Datum, Row};

use std::cell::RefCell;

use super::collection::{Coll, Errs};
use crate::expr::{Columns, EvalError, Extended, ScalarExpr};
use crate::plan::{MatchRecognize, Nav, RowAt};

/// A planned rule, ready to evaluate.
struct PlannedRule {
    arity: usize,
    navs: Vec<Nav>,
    vars: Vec<String>,
    /// Per variable: its condition and the navigation columns it reads.
    defines: Vec<Option<(ScalarExpr, Vec<usize>)>>,
    measures: Vec<ScalarExpr>,
    measure_navs: Vec<usize>,
    partition_by: Vec<usize>,
    order_by: usize,
    all_rows: bool,
    reads_bindings: bool,
    /// Every `DEFINE` reads only the current row and rows before it.
    row_local: bool,
    /// `PREV` does not reach rows this much older than its starting row.
    within: Option<i64>,
    /// The navigation columns a `DEFINE` reads, computed here for each
    /// row it classifies (reused: classifying allocates nothing for them).
    nav_buf: RefCell<Vec<Datum>>,
}

/// The navigation columns (indexes into `navs`) that `exprs` read.
fn navs_read<'a>(exprs: impl IntoIterator<Item = &'a ScalarExpr>, arity: usize) -> Vec<usize> {
    let mut cols = Vec::new();
    for e in exprs {
        e.columns(&mut cols);
    }
    let mut navs: Vec<usize> = cols.into_iter().filter_map(|c| c.checked_sub(arity)).collect();
    navs.sort_unstable();
    navs.dedup();
    navs
}

impl PlannedRule {
    fn new(m: &MatchRecognize) -> Self {
        let arity = m.input_arity;
        let defines: Vec<Option<(ScalarExpr, Vec<usize>)>> = m
            .defines
            .iter()
            .map(|d| d.as_ref().map(|e| (e.clone(), navs_read([e], arity))))
            .collect();
        let reads_bindings = defines
            .iter()
            .flatten()
            .any(|(_, navs)| navs.iter().any(|&i| m.navs[i].reads_bindings()));
        let row_local = defines.iter().flatten().all(|(_, navs)| {
            navs.iter()
                .all(|&i| matches!(m.navs[i], Nav::Row { at: RowAt::Current, .. }))
        });
        PlannedRule {
            row_local,
            arity,
            navs: m.navs.clone(),
            vars: m.vars.clone(),
            measure_navs: navs_read(&m.measures, arity),
            defines,
            measures: m.measures.clone(),
            partition_by: m.partition_by.clone(),
            order_by: m.order_by,
            all_rows: m.all_rows,
            reads_bindings,
            within: m.within_ms,
            nav_buf: RefCell::new(Vec::new()),
        }
    }

    fn nav(&self, i: usize, ctx: &Ctx<'_>) -> Result<Datum, EvalError> {
        Ok(match &self.navs[i] {
            Nav::Row { at, prev, expr } => {
                let seq = match *at {
                    RowAt::Current => Some(ctx.current),
                    RowAt::Last { var, k } => ctx.last(var, k as usize),
                    RowAt::First { var, k } => ctx.first(var, k as usize),
                };
                let target = seq.and_then(|from| {
                    let to = from.checked_sub(*prev)?;
                    // Within WITHIN of the row it starts from (docs/cep.md):
                    // state older than that can be forgotten.
                    let reachable = *prev == 0
                        || self.within.is_none_or(|w| match (ctx.ts(from), ctx.ts(to)) {
                            (Some(a), Some(b)) => a.saturating_sub(b) < w,
                            _ => false,
                        });
                    reachable.then_some(to)
                });
                match target.and_then(|s| ctx.row(s)) {
                    Some(row) => expr.eval(row)?,
                    None => Datum::Null,
                }
            }
            Nav::Agg {
                func,
                var,
                expr,
                input_type,
            } => {
                let mut values = Vec::new();
                for seq in ctx.positions(*var) {
                    let Some(row) = ctx.row(seq) else { continue };
                    values.push(match expr {
                        Some(e) => e.eval(row)?,
                        None => Datum::Bool(true),
                    });
                }
                fold_aggregate(*func, *input_type, values)
            }
            Nav::MatchNumber => ctx.match_number.map_or(Datum::Null, |n| Datum::Int(n as i64)),
            Nav::Classifier => ctx
                .classifier()
                .and_then(|v| self.vars.get(v as usize))
                .map_or(Datum::Null, |n| Datum::Text(n.as_str().into())),
            Nav::TimedOut => Datum::Bool(ctx.timed_out),
        })
    }

    /// Runs `f` on the current row extended with the navigation columns
    /// `navs` (the others NULL), computed into a reused buffer beside the
    /// row rather than into a copy of it.
    fn with_navs<T>(
        &self,
        ctx: &Ctx<'_>,
        navs: &[usize],
        f: impl FnOnce(&Extended<'_>) -> Result<T, EvalError>,
    ) -> Result<T, EvalError> {
        let row = ctx
            .row(ctx.current)
            .ok_or_else(|| EvalError::Invalid("the current row is gone".into()))?;
        // A nav's own evaluation never classifies a row nor measures one,
        // so the buffer is not borrowed twice.
        let mut extra = self.nav_buf.borrow_mut();
        extra.clear();
        extra.resize(self.navs.len(), Datum::Null);
        for &i in navs {
            extra[i] = self.nav(i, ctx)?;
        }
        f(&Extended {
            row,
            arity: self.arity,
            extra: &extra,
        })
    }
}

impl Rule for PlannedRule {
    fn define(&self, var: VarId, ctx: &Ctx<'_>) -> Result<bool, RuleError> {
        let Some(Some((cond, navs))) = self.defines.get(var as usize) else {
            return Ok(true);
        };
        let holds = match ctx.row(ctx.current) {
            None => Ok(false),
            Some(row) if navs.is_empty() => cond.holds(row),
            Some(_) => self.with_navs(ctx, navs, |ext| cond.holds(ext)),
        };
        holds.map_err(|e| {
            RuleError::new(format!(
                "DEFINE {}: {e}",
                self.vars.get(var as usize).map_or("?", |s| s.as_str())
            ))
        })
    }

    fn output(&self, ctx: &Ctx<'_>) -> Result<Row, RuleError> {
        self.with_navs(ctx, &self.measure_navs, |ext| {
            let mut out: Row = self.partition_by.iter().map(|&i| ext.col(i).clone()).collect();
            if self.all_rows {
                out.push(ext.col(self.order_by).clone());
            }
            for m in &self.measures {
                out.push(m.eval(ext)?);
            }
            if self.all_rows {
                for (i, d) in ext.row.iter().enumerate().take(self.arity) {
                    if i != self.order_by && !self.partition_by.contains(&i) {
                        out.push(d.clone());
                    }
                }
            }
            Ok(out)
        })
        .map_err(|e| RuleError::new(format!("MEASURES: {e}")))
    }

    fn reads_bindings(&self) -> bool {
        self.reads_bindings
    }

    fn row_local(&self) -> bool {
        self.row_local
    }
}

/// Renders a planned `MATCH_RECOGNIZE` over its input's rows.
pub(super) fn render<'s>(
    input: Coll<'s>,
    m: &MatchRecognize,
    stats: CepStats,
    snapshots: Option<PatternState>,
) -> (Coll<'s>, Errs<'s>) {
    // The planner compiled this pattern already; it cannot fail here.
    let program = Program::compile(&m.pattern).unwrap_or_else(|e| panic!("planned pattern does not compile: {e}"));
    let history = m
        .navs
        .iter()
        .map(|n| match n {
            Nav::Row { prev, .. } => *prev,
            _ => 0,
        })
        .max()
        .unwrap_or(0);
    let matcher = Matcher {
        program,
        rule: PlannedRule::new(m),
        skip: m.skip,
        within: m.within_ms,
        emit_timeouts: m.emit_timeouts,
        all_rows: m.all_rows,
        history,
        numbers_matches: m.navs.contains(&Nav::MatchNumber),
        max_rows: m.max_rows,
    };
    let layout = Layout {
        partition_by: m.partition_by.clone(),
        order_by: m.order_by,
        order_by_name: m.order_by_name.clone(),
        watermark: m.watermark,
    };
    match_recognize(input, "MatchRecognize", layout, matcher, stats, snapshots)
}
