//! A naive reference matcher for `MATCH_RECOGNIZE`, written from
//! `docs/cep.md` (and SQL:2016 / Oracle row pattern recognition) and sharing
//! nothing with the engine: it neither parses SQL nor uses the planner. A
//! rule is described in Rust ([`Rule`]: a [`Pattern`], [`Cond`]itions and
//! measure [`Expr`]essions), rendered to SQL text for the engine with
//! [`Rule::view_sql`], and evaluated here by backtracking over each
//! partition's whole, event-time-sorted row sequence in preferment order.
//!
//! The input table is fixed: `ev (p BIGINT, ts TIMESTAMP, v BIGINT, tag TEXT)`
//! ordered by `ts`. Test files include this with `mod cep_reference;`.
//!
//! Per partition, from each candidate start row: the first match in
//! preferment order (depth-first, alternatives left to right, greedy tries
//! one more iteration first, reluctant one fewer), using only rows with
//! `ts < start.ts + within`. A match resumes per `AFTER MATCH SKIP` (a skip
//! to an unbound variable or to the start row resumes at start + 1). No
//! match: with `EMIT TIMEOUTS`, if some path consumed every usable row and
//! wanted another (the window or the stream ended), the first such path the
//! walk reaches (the most preferred) is emitted as a time-out; then start + 1.
//!
//! The decisions the reference takes where `docs/cep.md` leaves room:
//! - A quantified group whose inner pattern can match no rows: an iteration
//!   beyond the minimum must consume a row (ECMAScript's rule), so the search
//!   ends. (The random generator never quantifies such a group.)
//! - `EMIT TIMEOUTS` with `ALL ROWS PER MATCH`: see [`ALL_ROWS_TIMEOUT`].
//! - `CLASSIFIER()` is the variable's name exactly as written in `PATTERN`.
//! - A time-out does not use up a `MATCH_NUMBER()`.

#![allow(dead_code)]

use std::cmp::Ordering;
use std::collections::BTreeMap;

use rust_decimal::{Decimal, RoundingStrategy};
use weir_operators::repr::{Datum, Row};

/// What a time-out emits under `ALL ROWS PER MATCH` (docs/cep.md speaks of
/// "a row" per time-out, written with `ONE ROW PER MATCH` in mind).
pub const ALL_ROWS_TIMEOUT: AllRowsTimeout = AllRowsTimeout::EveryRow;

/// See [`ALL_ROWS_TIMEOUT`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllRowsTimeout {
    /// One row per row of the timed-out partial match, with running measures,
    /// exactly as for a match (but `MATCH_NUMBER()` NULL, `TIMED_OUT()` true).
    EveryRow,
    /// One row only, for the partial match's last row.
    LastRow,
}

/// The columns of the input table `ev`, in its order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Col {
    P,
    Ts,
    V,
    Tag,
}

impl Col {
    pub const ALL: [Col; 4] = [Col::P, Col::Ts, Col::V, Col::Tag];

    pub fn name(self) -> &'static str {
        match self {
            Col::P => "p",
            Col::Ts => "ts",
            Col::V => "v",
            Col::Tag => "tag",
        }
    }

    pub fn index(self) -> usize {
        match self {
            Col::P => 0,
            Col::Ts => 1,
            Col::V => 2,
            Col::Tag => 3,
        }
    }
}

/// The `CREATE TABLE` columns of the input, in order.
pub const TABLE_COLUMNS: &str = "p BIGINT, ts TIMESTAMP, v BIGINT, tag TEXT";

// ---------------------------------------------------------------------------
// Patterns

/// A row pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// A pattern variable: one row.
    Var(String),
    /// The items one after the other.
    Concat(Vec<Pattern>),
    /// The first alternative that leads to a match, left to right.
    Alt(Vec<Pattern>),
    /// `inner` between `min` and `max` (None: unbounded) times; greedy
    /// prefers more iterations, reluctant fewer.
    Repeat {
        inner: Box<Pattern>,
        min: u32,
        max: Option<u32>,
        greedy: bool,
    },
}

impl Pattern {
    pub fn var(name: &str) -> Pattern {
        Pattern::Var(name.to_string())
    }

    pub fn repeat(inner: Pattern, min: u32, max: Option<u32>, greedy: bool) -> Pattern {
        Pattern::Repeat {
            inner: Box::new(inner),
            min,
            max,
            greedy,
        }
    }

    /// Whether the pattern can match no rows at all.
    pub fn nullable(&self) -> bool {
        match self {
            Pattern::Var(_) => false,
            Pattern::Concat(items) => items.iter().all(Pattern::nullable),
            Pattern::Alt(items) => items.iter().any(Pattern::nullable),
            Pattern::Repeat { inner, min, .. } => *min == 0 || inner.nullable(),
        }
    }

    /// Whether some quantifier has no upper bound (`*`, `+`, `{n,}`).
    pub fn unbounded(&self) -> bool {
        match self {
            Pattern::Var(_) => false,
            Pattern::Concat(items) | Pattern::Alt(items) => items.iter().any(Pattern::unbounded),
            Pattern::Repeat { inner, max, .. } => max.is_none() || inner.unbounded(),
        }
    }

    /// Whether some quantified group's inner pattern can match no rows.
    pub fn quantifies_nullable(&self) -> bool {
        match self {
            Pattern::Var(_) => false,
            Pattern::Concat(items) | Pattern::Alt(items) => items.iter().any(Pattern::quantifies_nullable),
            Pattern::Repeat { inner, .. } => inner.nullable() || inner.quantifies_nullable(),
        }
    }

    /// The number of variable occurrences.
    pub fn size(&self) -> usize {
        match self {
            Pattern::Var(_) => 1,
            Pattern::Concat(items) | Pattern::Alt(items) => items.iter().map(Pattern::size).sum(),
            Pattern::Repeat { inner, .. } => inner.size(),
        }
    }

    /// The variables, in order of first appearance.
    pub fn vars(&self) -> Vec<String> {
        fn walk(p: &Pattern, out: &mut Vec<String>) {
            match p {
                Pattern::Var(v) => {
                    if !out.contains(v) {
                        out.push(v.clone());
                    }
                }
                Pattern::Concat(items) | Pattern::Alt(items) => items.iter().for_each(|i| walk(i, out)),
                Pattern::Repeat { inner, .. } => walk(inner, out),
            }
        }
        let mut out = Vec::new();
        walk(self, &mut out);
        out
    }

    /// The `PATTERN ( … )` text (without the outer parentheses), e.g.
    /// `A (B | C)*? D{1,3}`.
    pub fn render(&self) -> String {
        match self {
            Pattern::Var(v) => v.clone(),
            Pattern::Concat(items) => items
                .iter()
                .map(|i| match i {
                    Pattern::Alt(_) => format!("({})", i.render()),
                    _ => i.render(),
                })
                .collect::<Vec<_>>()
                .join(" "),
            Pattern::Alt(items) => items
                .iter()
                .map(|i| match i {
                    Pattern::Alt(_) => format!("({})", i.render()),
                    _ => i.render(),
                })
                .collect::<Vec<_>>()
                .join(" | "),
            Pattern::Repeat {
                inner,
                min,
                max,
                greedy,
            } => {
                let base = match **inner {
                    Pattern::Var(_) => inner.render(),
                    _ => format!("({})", inner.render()),
                };
                let quantifier = match (*min, *max) {
                    (0, None) => "*".to_string(),
                    (1, None) => "+".to_string(),
                    (0, Some(1)) => "?".to_string(),
                    (n, None) => format!("{{{n},}}"),
                    (n, Some(m)) if n == m => format!("{{{n}}}"),
                    (0, Some(m)) => format!("{{,{m}}}"),
                    (n, Some(m)) => format!("{{{n},{m}}}"),
                };
                let reluctant = if *greedy { "" } else { "?" };
                format!("{base}{quantifier}{reluctant}")
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Expressions

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggFunc {
    Count,
    Sum,
    Min,
    Max,
    Avg,
}

impl AggFunc {
    fn name(self) -> &'static str {
        match self {
            AggFunc::Count => "count",
            AggFunc::Sum => "sum",
            AggFunc::Min => "min",
            AggFunc::Max => "max",
            AggFunc::Avg => "avg",
        }
    }
}

/// A value expression of a `DEFINE` condition or a measure. `var: None` is
/// unqualified: the current row for a column, all rows of the match so far
/// for `FIRST`/`LAST` and aggregates.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Lit(Datum),
    /// `col` (the current row) or `x.col` (the last row mapped to `x` so far).
    Col(Option<String>, Col),
    /// `FIRST(x.col, n)`: the row `n` after the first one mapped to `x`.
    First(Option<String>, Col, usize),
    /// `LAST(x.col, n)`: the row `n` before the last one mapped to `x`.
    Last(Option<String>, Col, usize),
    /// `PREV(nav, n)`: the row `n` rows before the row `nav` refers to, in
    /// the partition. `nav` is a `Col`, `First` or `Last`.
    Prev(Box<Expr>, usize),
    /// `count(*)` / `count(x.*)` (column None) or `f(x.col)`.
    Agg(AggFunc, Option<String>, Option<Col>),
    Add(Box<Expr>, Box<Expr>),
    Sub(Box<Expr>, Box<Expr>),
    MatchNumber,
    Classifier,
    TimedOut,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl CmpOp {
    pub const ALL: [CmpOp; 6] = [CmpOp::Lt, CmpOp::Le, CmpOp::Gt, CmpOp::Ge, CmpOp::Eq, CmpOp::Ne];

    fn text(self) -> &'static str {
        match self {
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Eq => "=",
            CmpOp::Ne => "<>",
        }
    }

    fn holds(self, o: Ordering) -> bool {
        match self {
            CmpOp::Lt => o == Ordering::Less,
            CmpOp::Le => o != Ordering::Greater,
            CmpOp::Gt => o == Ordering::Greater,
            CmpOp::Ge => o != Ordering::Less,
            CmpOp::Eq => o == Ordering::Equal,
            CmpOp::Ne => o != Ordering::Equal,
        }
    }
}

/// A `DEFINE` condition, in SQL's three-valued logic.
#[derive(Clone, Debug, PartialEq)]
pub enum Cond {
    Cmp(Expr, CmpOp, Expr),
    IsNull(Expr),
    IsNotNull(Expr),
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
    Not(Box<Cond>),
}

fn qualified(var: &Option<String>, col: Col) -> String {
    match var {
        Some(x) => format!("{x}.{}", col.name()),
        None => col.name().to_string(),
    }
}

fn literal(d: &Datum) -> String {
    match d {
        Datum::Null => "NULL".to_string(),
        Datum::Bool(b) => if *b { "TRUE" } else { "FALSE" }.to_string(),
        Datum::Int(i) => i.to_string(),
        Datum::Text(s) => format!("'{}'", s.replace('\'', "''")),
        other => panic!("the reference renders no literal {other:?}"),
    }
}

impl Expr {
    /// Shorthands for building rules by hand.
    pub fn int(i: i64) -> Expr {
        Expr::Lit(Datum::Int(i))
    }
    pub fn text(s: &str) -> Expr {
        Expr::Lit(Datum::Text(s.into()))
    }
    pub fn col(var: Option<&str>, col: Col) -> Expr {
        Expr::Col(var.map(str::to_string), col)
    }
    pub fn first(var: Option<&str>, col: Col, n: usize) -> Expr {
        Expr::First(var.map(str::to_string), col, n)
    }
    pub fn last(var: Option<&str>, col: Col, n: usize) -> Expr {
        Expr::Last(var.map(str::to_string), col, n)
    }
    pub fn prev(nav: Expr, n: usize) -> Expr {
        Expr::Prev(Box::new(nav), n)
    }
    pub fn agg(f: AggFunc, var: Option<&str>, col: Option<Col>) -> Expr {
        Expr::Agg(f, var.map(str::to_string), col)
    }

    pub fn render(&self) -> String {
        match self {
            Expr::Lit(d) => literal(d),
            Expr::Col(var, col) => qualified(var, *col),
            Expr::First(var, col, 0) => format!("FIRST({})", qualified(var, *col)),
            Expr::First(var, col, n) => format!("FIRST({}, {n})", qualified(var, *col)),
            Expr::Last(var, col, 0) => format!("LAST({})", qualified(var, *col)),
            Expr::Last(var, col, n) => format!("LAST({}, {n})", qualified(var, *col)),
            Expr::Prev(nav, 1) => format!("PREV({})", nav.render()),
            Expr::Prev(nav, n) => format!("PREV({}, {n})", nav.render()),
            Expr::Agg(f, var, None) => match var {
                Some(x) => format!("{}({x}.*)", f.name()),
                None => format!("{}(*)", f.name()),
            },
            Expr::Agg(f, var, Some(col)) => format!("{}({})", f.name(), qualified(var, *col)),
            Expr::Add(a, b) => format!("({} + {})", a.render(), b.render()),
            Expr::Sub(a, b) => format!("({} - {})", a.render(), b.render()),
            Expr::MatchNumber => "MATCH_NUMBER()".to_string(),
            Expr::Classifier => "CLASSIFIER()".to_string(),
            Expr::TimedOut => "TIMED_OUT()".to_string(),
        }
    }

    /// The pattern variables the expression names.
    fn vars(&self, out: &mut Vec<String>) {
        match self {
            Expr::Col(Some(x), _) | Expr::First(Some(x), ..) | Expr::Last(Some(x), ..) | Expr::Agg(_, Some(x), _) => {
                out.push(x.clone())
            }
            Expr::Prev(e, _) => e.vars(out),
            Expr::Add(a, b) | Expr::Sub(a, b) => {
                a.vars(out);
                b.vars(out);
            }
            _ => {}
        }
    }
}

impl Cond {
    pub fn cmp(a: Expr, op: CmpOp, b: Expr) -> Cond {
        Cond::Cmp(a, op, b)
    }

    pub fn render(&self) -> String {
        match self {
            Cond::Cmp(a, op, b) => format!("{} {} {}", a.render(), op.text(), b.render()),
            Cond::IsNull(e) => format!("{} IS NULL", e.render()),
            Cond::IsNotNull(e) => format!("{} IS NOT NULL", e.render()),
            Cond::And(a, b) => format!("({}) AND ({})", a.render(), b.render()),
            Cond::Or(a, b) => format!("({}) OR ({})", a.render(), b.render()),
            Cond::Not(a) => format!("NOT ({})", a.render()),
        }
    }

    fn vars(&self, out: &mut Vec<String>) {
        match self {
            Cond::Cmp(a, _, b) => {
                a.vars(out);
                b.vars(out);
            }
            Cond::IsNull(e) | Cond::IsNotNull(e) => e.vars(out),
            Cond::And(a, b) | Cond::Or(a, b) => {
                a.vars(out);
                b.vars(out);
            }
            Cond::Not(a) => a.vars(out),
        }
    }
}

// ---------------------------------------------------------------------------
// Rules

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowsPerMatch {
    One,
    All,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Skip {
    PastLastRow,
    ToNextRow,
    ToFirst(String),
    ToLast(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Second,
    Minute,
}

/// `WITHIN INTERVAL 'amount' unit [EMIT TIMEOUTS]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Within {
    pub amount: i64,
    pub unit: Unit,
    pub emit_timeouts: bool,
}

impl Within {
    pub fn millis(&self) -> i64 {
        match self.unit {
            Unit::Second => self.amount * 1000,
            Unit::Minute => self.amount * 60_000,
        }
    }
}

/// One `MATCH_RECOGNIZE` over `ev`, `ORDER BY ts`. Measures are named `m0`,
/// `m1`, … in order.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub partition_by: Vec<Col>,
    pub measures: Vec<Expr>,
    /// None: the clause is not written (`ONE ROW PER MATCH`).
    pub rows_per_match: Option<RowsPerMatch>,
    /// None: the clause is not written (`PAST LAST ROW`).
    pub skip: Option<Skip>,
    pub pattern: Pattern,
    pub within: Option<Within>,
    /// Variables without a condition match every row.
    pub defines: Vec<(String, Cond)>,
}

impl Rule {
    /// A rule with the defaults: one partition column `p`, no measures, no
    /// DEFINEs, no WITHIN, the default rows per match and skip.
    pub fn new(pattern: Pattern) -> Rule {
        Rule {
            partition_by: vec![Col::P],
            measures: Vec::new(),
            rows_per_match: None,
            skip: None,
            pattern,
            within: None,
            defines: Vec::new(),
        }
    }

    pub fn all_rows(&self) -> bool {
        self.rows_per_match == Some(RowsPerMatch::All)
    }

    /// The input columns that follow the measures under `ALL ROWS PER MATCH`.
    fn remaining(&self) -> Vec<Col> {
        Col::ALL
            .into_iter()
            .filter(|c| *c != Col::Ts && !self.partition_by.contains(c))
            .collect()
    }

    /// The output columns' names, in order.
    pub fn output_columns(&self) -> Vec<String> {
        let mut out: Vec<String> = self.partition_by.iter().map(|c| c.name().to_string()).collect();
        if self.all_rows() {
            out.push("ts".to_string());
        }
        out.extend((0..self.measures.len()).map(|i| format!("m{i}")));
        if self.all_rows() {
            out.extend(self.remaining().iter().map(|c| c.name().to_string()));
        }
        out
    }

    /// Checks that the rule is one the reference (and docs/cep.md) accepts.
    pub fn validate(&self) -> Result<(), String> {
        let vars = self.pattern.vars();
        if self.pattern.nullable() {
            return Err("the pattern can match no rows".into());
        }
        let mut named = Vec::new();
        for m in &self.measures {
            m.vars(&mut named);
        }
        for (v, c) in &self.defines {
            if !vars.contains(v) {
                return Err(format!("DEFINE {v}: not a pattern variable"));
            }
            c.vars(&mut named);
        }
        if let Some(Skip::ToFirst(v) | Skip::ToLast(v)) = &self.skip {
            named.push(v.clone());
        }
        if let Some(v) = named.iter().find(|v| !vars.contains(v)) {
            return Err(format!("{v} is not a pattern variable"));
        }
        if self.defines.is_empty() {
            return Err("sqlparser needs at least one DEFINE".into());
        }
        if !self.all_rows() && self.partition_by.is_empty() && self.measures.is_empty() {
            return Err("ONE ROW PER MATCH would have no columns".into());
        }
        Ok(())
    }

    /// `CREATE MATERIALIZED VIEW {view} AS SELECT * FROM {table}
    /// MATCH_RECOGNIZE (…);`. `with_within: false` leaves the `WITHIN …`
    /// clause out (sqlparser does not parse it).
    pub fn view_sql(&self, view: &str, table: &str, with_within: bool) -> String {
        let mut s = format!("CREATE MATERIALIZED VIEW {view} AS SELECT * FROM {table} MATCH_RECOGNIZE (\n");
        if !self.partition_by.is_empty() {
            let cols: Vec<&str> = self.partition_by.iter().map(|c| c.name()).collect();
            s += &format!("  PARTITION BY {}\n", cols.join(", "));
        }
        s += "  ORDER BY ts\n";
        if !self.measures.is_empty() {
            let ms: Vec<String> = self
                .measures
                .iter()
                .enumerate()
                .map(|(i, m)| format!("{} AS m{i}", m.render()))
                .collect();
            s += &format!("  MEASURES {}\n", ms.join(",\n           "));
        }
        match self.rows_per_match {
            Some(RowsPerMatch::One) => s += "  ONE ROW PER MATCH\n",
            Some(RowsPerMatch::All) => s += "  ALL ROWS PER MATCH\n",
            None => {}
        }
        match &self.skip {
            Some(Skip::PastLastRow) => s += "  AFTER MATCH SKIP PAST LAST ROW\n",
            Some(Skip::ToNextRow) => s += "  AFTER MATCH SKIP TO NEXT ROW\n",
            Some(Skip::ToFirst(v)) => s += &format!("  AFTER MATCH SKIP TO FIRST {v}\n"),
            Some(Skip::ToLast(v)) => s += &format!("  AFTER MATCH SKIP TO LAST {v}\n"),
            None => {}
        }
        s += &format!("  PATTERN ({})", self.pattern.render());
        if let (Some(w), true) = (self.within, with_within) {
            let unit = match w.unit {
                Unit::Second => "SECOND",
                Unit::Minute => "MINUTE",
            };
            s += &format!(" WITHIN INTERVAL '{}' {unit}", w.amount);
            if w.emit_timeouts {
                s += " EMIT TIMEOUTS";
            }
        }
        let defs: Vec<String> = self
            .defines
            .iter()
            .map(|(v, c)| format!("{v} AS {}", c.render()))
            .collect();
        s += &format!("\n  DEFINE {}\n);\n", defs.join(",\n         "));
        s
    }

    /// The view's rows for the whole input (rows of `ev`, in any order),
    /// sorted; `Err` when the backtracking search exceeds its budget.
    pub fn evaluate(&self, input: &[Row]) -> Result<Vec<Row>, TooExpensive> {
        if let Err(e) = self.validate() {
            panic!("the reference was given an invalid rule: {e}\n{self:#?}");
        }
        let mut partitions: BTreeMap<Vec<Datum>, Vec<Row>> = BTreeMap::new();
        for row in input {
            assert_eq!(row.len(), Col::ALL.len(), "a row of ev has 4 columns: {row:?}");
            let key = self.partition_by.iter().map(|c| row[c.index()].clone()).collect();
            partitions.entry(key).or_default().push(row.clone());
        }
        let mut out = Vec::new();
        let mut budget = Budget { left: STEP_BUDGET };
        for (key, mut rows) in partitions {
            // Event time, then the whole row: for equal ts that compares
            // the other columns in table order, NULL first.
            rows.sort_by(|a, b| ts_of(a).cmp(&ts_of(b)).then_with(|| a.cmp(b)));
            self.partition(&key, &rows, &mut budget, &mut out)?;
        }
        out.sort();
        Ok(out)
    }

    fn partition(
        &self,
        key: &[Datum],
        rows: &[Row],
        budget: &mut Budget,
        out: &mut Vec<Row>,
    ) -> Result<(), TooExpensive> {
        let vars = self.pattern.vars();
        let defines: Vec<Option<&Cond>> = vars
            .iter()
            .map(|v| self.defines.iter().find(|(d, _)| d == v).map(|(_, c)| c))
            .collect();
        let within = self.within.map(|w| w.millis());
        let timeouts = self.within.is_some_and(|w| w.emit_timeouts);
        let mut number = 0;
        let mut start = 0;
        while start < rows.len() {
            // The rows a match from `start` may use: WITHIN requires
            // last.ts - first.ts < within.
            let window_end = match within {
                Some(w) => (start..rows.len())
                    .find(|&j| ts_of(&rows[j]) - ts_of(&rows[start]) >= w)
                    .unwrap_or(rows.len()),
                None => rows.len(),
            };
            let mut search = Search {
                rows,
                vars: &vars,
                within: self.within.map(|w| w.millis()),
                defines: &defines,
                start,
                window_end,
                path: Vec::new(),
                found: None,
                partial: None,
                budget,
            };
            let flow = search.node(&self.pattern, &mut |s: &mut Search| {
                if s.path.is_empty() {
                    return Flow::Go;
                }
                s.found = Some(s.path.clone());
                Flow::Stop
            });
            let (found, partial) = (search.found, search.partial);
            if flow == Flow::Stop && found.is_none() {
                return Err(TooExpensive);
            }
            match found {
                Some(path) => {
                    number += 1;
                    self.emit(key, rows, &vars, start, &path, Some(number), out);
                    let last = start + path.len() - 1;
                    let bound = |want_last: bool, x: &str| {
                        let id = vars.iter().position(|v| v == x);
                        let mut mapped = (0..path.len()).filter(|&i| Some(path[i]) == id).map(|i| start + i);
                        if want_last {
                            mapped.next_back()
                        } else {
                            mapped.next()
                        }
                    };
                    let target = match self.skip.as_ref().unwrap_or(&Skip::PastLastRow) {
                        Skip::PastLastRow => Some(last + 1),
                        Skip::ToNextRow => Some(start + 1),
                        Skip::ToFirst(x) => bound(false, x),
                        Skip::ToLast(x) => bound(true, x),
                    };
                    // Skipping to an unbound variable or to the match's
                    // first row resumes at the row after the first row.
                    start = match target {
                        Some(t) if t > start => t,
                        _ => start + 1,
                    };
                }
                None => {
                    if let (true, Some(path)) = (timeouts, partial) {
                        self.emit(key, rows, &vars, start, &path, None, out);
                    }
                    start += 1;
                }
            }
        }
        Ok(())
    }

    /// The output rows of a match (`number` Some) or a time-out (None) from
    /// `start` mapping its rows to `path`'s variables.
    #[allow(clippy::too_many_arguments)]
    fn emit(
        &self,
        key: &[Datum],
        rows: &[Row],
        vars: &[String],
        start: usize,
        path: &[usize],
        number: Option<i64>,
        out: &mut Vec<Row>,
    ) {
        let within = self.within.map(|w| w.millis());
        let frame = |len: usize| Frame {
            rows,
            vars,
            within,
            start,
            path: &path[..len],
            match_number: number,
            timed_out: number.is_none(),
        };
        if !self.all_rows() {
            let f = frame(path.len());
            let mut row = key.to_vec();
            row.extend(self.measures.iter().map(|m| f.eval(m)));
            out.push(row);
            return;
        }
        let first = if number.is_none() && ALL_ROWS_TIMEOUT == AllRowsTimeout::LastRow {
            path.len()
        } else {
            1
        };
        for len in first..=path.len() {
            let f = frame(len);
            let current = &rows[f.current()];
            let mut row = key.to_vec();
            row.push(current[Col::Ts.index()].clone());
            row.extend(self.measures.iter().map(|m| f.eval(m)));
            row.extend(self.remaining().iter().map(|c| current[c.index()].clone()));
            out.push(row);
        }
    }
}

/// The search gave up: the rule and input are too costly for backtracking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooExpensive;

/// Variable attempts allowed for one [`Rule::evaluate`].
const STEP_BUDGET: u64 = 3_000_000;

struct Budget {
    left: u64,
}

fn ts_of(row: &Row) -> i64 {
    match row[Col::Ts.index()] {
        Datum::Timestamp(t) => t,
        ref other => panic!("ts must be a TIMESTAMP, not {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// The backtracking search

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    /// Stop searching: a match was found (or the budget ran out).
    Stop,
    /// Backtrack and try the next alternative.
    Go,
}

/// The search for the first match from `start`, in preferment order. Each
/// step of the pattern takes a continuation `k` (what must follow); the
/// first complete path the depth-first walk reaches is the most preferred.
struct Search<'a> {
    rows: &'a [Row],
    vars: &'a [String],
    within: Option<i64>,
    defines: &'a [Option<&'a Cond>],
    start: usize,
    /// Rows at or after this index are not available to a match from
    /// `start` (end of the partition, or WITHIN).
    window_end: usize,
    /// The variable of each row from `start` on, so far.
    path: Vec<usize>,
    found: Option<Vec<usize>>,
    /// The first (most preferred) path that consumed every available row and
    /// wanted one more: the partial match alive when time ran out.
    partial: Option<Vec<usize>>,
    budget: &'a mut Budget,
}

type Cont<'k, 'a> = dyn FnMut(&mut Search<'a>) -> Flow + 'k;

impl<'a> Search<'a> {
    fn node(&mut self, p: &'a Pattern, k: &mut Cont<'_, 'a>) -> Flow {
        match p {
            Pattern::Var(name) => {
                let id = self
                    .vars
                    .iter()
                    .position(|v| v == name)
                    .unwrap_or_else(|| panic!("{name} is a pattern variable"));
                self.var(id, k)
            }
            Pattern::Concat(items) => self.seq(items, k),
            Pattern::Alt(alternatives) => {
                for a in alternatives {
                    if self.node(a, k) == Flow::Stop {
                        return Flow::Stop;
                    }
                }
                Flow::Go
            }
            Pattern::Repeat {
                inner,
                min,
                max,
                greedy,
            } => self.repeat(inner, *min, *max, *greedy, 0, k),
        }
    }

    fn seq(&mut self, items: &'a [Pattern], k: &mut Cont<'_, 'a>) -> Flow {
        match items.split_first() {
            None => k(self),
            Some((first, rest)) => self.node(first, &mut |s: &mut Search<'a>| s.seq(rest, &mut *k)),
        }
    }

    /// `inner` repeated, `done` iterations already behind.
    fn repeat(
        &mut self,
        inner: &'a Pattern,
        min: u32,
        max: Option<u32>,
        greedy: bool,
        done: u32,
        k: &mut Cont<'_, 'a>,
    ) -> Flow {
        if done < min {
            return self.node(inner, &mut |s: &mut Search<'a>| {
                s.repeat(inner, min, max, greedy, done + 1, &mut *k)
            });
        }
        let more = max.is_none_or(|m| done < m);
        // Unbounded: once the minimum is reached the count no longer matters.
        let next = if max.is_some() { done + 1 } else { done };
        if greedy {
            if more && self.iterate(inner, min, max, greedy, next, k) == Flow::Stop {
                return Flow::Stop;
            }
            k(self)
        } else {
            if k(self) == Flow::Stop {
                return Flow::Stop;
            }
            if more {
                self.iterate(inner, min, max, greedy, next, k)
            } else {
                Flow::Go
            }
        }
    }

    /// One optional iteration; it must consume at least one row.
    fn iterate(
        &mut self,
        inner: &'a Pattern,
        min: u32,
        max: Option<u32>,
        greedy: bool,
        next: u32,
        k: &mut Cont<'_, 'a>,
    ) -> Flow {
        let before = self.path.len();
        self.node(inner, &mut |s: &mut Search<'a>| {
            if s.path.len() == before {
                Flow::Go
            } else {
                s.repeat(inner, min, max, greedy, next, &mut *k)
            }
        })
    }

    /// The next row, mapped to variable `id`.
    fn var(&mut self, id: usize, k: &mut Cont<'_, 'a>) -> Flow {
        if self.budget.left == 0 {
            return Flow::Stop;
        }
        self.budget.left -= 1;
        let pos = self.start + self.path.len();
        if pos >= self.window_end {
            if self.partial.is_none() && !self.path.is_empty() {
                self.partial = Some(self.path.clone());
            }
            return Flow::Go;
        }
        self.path.push(id);
        let holds = match self.defines[id] {
            None => true,
            Some(c) => {
                let f = Frame {
                    rows: self.rows,
                    vars: self.vars,
                    within: self.within,
                    start: self.start,
                    path: &self.path,
                    match_number: None,
                    timed_out: false,
                };
                f.test(c) == Some(true)
            }
        };
        let flow = if holds { k(self) } else { Flow::Go };
        self.path.pop();
        flow
    }
}

// ---------------------------------------------------------------------------
// Evaluation

/// A match (or partial match) as it stands: rows `start ..= current` of the
/// partition, mapped to `path`'s variables; the current row is the last.
/// In `DEFINE v` the current row is tentatively mapped to `v`.
struct Frame<'a> {
    rows: &'a [Row],
    vars: &'a [String],
    /// `WITHIN` in ms: `PREV` does not reach a row this much older than
    /// the row it starts from (docs/cep.md).
    within: Option<i64>,
    start: usize,
    path: &'a [usize],
    match_number: Option<i64>,
    timed_out: bool,
}

impl Frame<'_> {
    fn current(&self) -> usize {
        self.start + self.path.len() - 1
    }

    /// The partition indexes of the rows mapped to `var` so far (all rows of
    /// the match so far when None), in order.
    fn mapped(&self, var: &Option<String>) -> Vec<usize> {
        match var {
            None => (self.start..=self.current()).collect(),
            Some(x) => {
                let id = self
                    .vars
                    .iter()
                    .position(|v| v == x)
                    .unwrap_or_else(|| panic!("{x} is not a pattern variable"));
                (0..self.path.len())
                    .filter(|&i| self.path[i] == id)
                    .map(|i| self.start + i)
                    .collect()
            }
        }
    }

    /// The row a navigation refers to, if any, and its column.
    fn navigate(&self, e: &Expr) -> (Option<usize>, Col) {
        match e {
            Expr::Col(None, col) => (Some(self.current()), *col),
            Expr::Col(var, col) => (self.mapped(var).last().copied(), *col),
            Expr::First(var, col, n) => (self.mapped(var).get(*n).copied(), *col),
            Expr::Last(var, col, n) => {
                let m = self.mapped(var);
                (m.len().checked_sub(n + 1).map(|i| m[i]), *col)
            }
            Expr::Prev(nav, n) => {
                let (row, col) = self.navigate(nav);
                let target = row.and_then(|r| {
                    let t = r.checked_sub(*n)?;
                    let too_old = self
                        .within
                        .is_some_and(|w| ts_of(&self.rows[r]) - ts_of(&self.rows[t]) >= w);
                    (!too_old).then_some(t)
                });
                (target, col)
            }
            other => panic!("not a navigation: {other:?}"),
        }
    }

    fn eval(&self, e: &Expr) -> Datum {
        match e {
            Expr::Lit(d) => d.clone(),
            Expr::Col(..) | Expr::First(..) | Expr::Last(..) | Expr::Prev(..) => match self.navigate(e) {
                (Some(r), col) => self.rows[r][col.index()].clone(),
                (None, _) => Datum::Null,
            },
            Expr::Agg(f, var, col) => {
                let rows = self.mapped(var);
                let values: Vec<&Datum> = match col {
                    None => {
                        assert_eq!(*f, AggFunc::Count, "only count takes *");
                        return Datum::Int(rows.len() as i64);
                    }
                    Some(c) => rows
                        .iter()
                        .map(|&r| &self.rows[r][c.index()])
                        .filter(|d| !d.is_null())
                        .collect(),
                };
                aggregate(*f, &values)
            }
            Expr::Add(a, b) => arith(self.eval(a), self.eval(b), false),
            Expr::Sub(a, b) => arith(self.eval(a), self.eval(b), true),
            Expr::MatchNumber => self.match_number.map_or(Datum::Null, Datum::Int),
            Expr::Classifier => Datum::Text(self.vars[self.path[self.path.len() - 1]].as_str().into()),
            Expr::TimedOut => Datum::Bool(self.timed_out),
        }
    }

    /// Three-valued: None is NULL (UNKNOWN).
    fn test(&self, c: &Cond) -> Option<bool> {
        match c {
            Cond::Cmp(a, op, b) => compare(&self.eval(a), &self.eval(b)).map(|o| op.holds(o)),
            Cond::IsNull(e) => Some(self.eval(e).is_null()),
            Cond::IsNotNull(e) => Some(!self.eval(e).is_null()),
            Cond::And(a, b) => match (self.test(a), self.test(b)) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            },
            Cond::Or(a, b) => match (self.test(a), self.test(b)) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            },
            Cond::Not(a) => self.test(a).map(|b| !b),
        }
    }
}

/// An aggregate over non-NULL values (empty: NULL). `avg` of BIGINT is
/// weir's: DECIMAL with 6 decimal places, rounded half away from zero.
fn aggregate(f: AggFunc, values: &[&Datum]) -> Datum {
    if f == AggFunc::Count {
        return Datum::Int(values.len() as i64);
    }
    if values.is_empty() {
        return Datum::Null;
    }
    let ints = || {
        values.iter().map(|d| match d {
            Datum::Int(i) => *i,
            other => panic!("sum/avg over a non-BIGINT value {other:?}"),
        })
    };
    match f {
        AggFunc::Count => unreachable!("handled above"),
        AggFunc::Sum => Datum::Int(ints().sum()),
        AggFunc::Min => values.iter().copied().min().cloned().unwrap_or(Datum::Null),
        AggFunc::Max => values.iter().copied().max().cloned().unwrap_or(Datum::Null),
        AggFunc::Avg => {
            let sum: i64 = ints().sum();
            let mut avg = (Decimal::from(sum) / Decimal::from(values.len() as i64))
                .round_dp_with_strategy(6, RoundingStrategy::MidpointAwayFromZero);
            avg.rescale(6);
            Datum::Decimal(avg)
        }
    }
}

fn arith(a: Datum, b: Datum, minus: bool) -> Datum {
    let dec = |d: &Datum| match d {
        Datum::Int(i) => Decimal::from(*i),
        Datum::Decimal(x) => *x,
        other => panic!("arithmetic on {other:?}"),
    };
    match (&a, &b) {
        (Datum::Null, _) | (_, Datum::Null) => Datum::Null,
        (Datum::Int(x), Datum::Int(y)) => Datum::Int(if minus { x - y } else { x + y }),
        _ => Datum::Decimal(if minus { dec(&a) - dec(&b) } else { dec(&a) + dec(&b) }),
    }
}

/// SQL comparison; None when either side is NULL.
fn compare(a: &Datum, b: &Datum) -> Option<Ordering> {
    match (a, b) {
        (Datum::Null, _) | (_, Datum::Null) => None,
        (Datum::Int(x), Datum::Int(y)) => Some(x.cmp(y)),
        (Datum::Int(x), Datum::Decimal(y)) => Some(Decimal::from(*x).cmp(y)),
        (Datum::Decimal(x), Datum::Int(y)) => Some(x.cmp(&Decimal::from(*y))),
        (Datum::Decimal(x), Datum::Decimal(y)) => Some(x.cmp(y)),
        (Datum::Text(x), Datum::Text(y)) => Some(x.cmp(y)),
        (Datum::Timestamp(x), Datum::Timestamp(y)) => Some(x.cmp(y)),
        (Datum::Bool(x), Datum::Bool(y)) => Some(x.cmp(y)),
        _ => panic!("the reference cannot compare {a:?} with {b:?} (a generator bug)"),
    }
}
