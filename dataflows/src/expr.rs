//! Scalar expressions: what the planner produces from SQL expressions and
//! what the rendered dataflows evaluate on every row.
//!
//! Evaluation follows PostgreSQL: three-valued logic, NULL in → NULL out for
//! the strict functions, integer division truncates, division by zero and
//! overflow are errors (the row goes to the dead letters, DESIGN.md §1).

use std::borrow::Cow;
use std::cmp::Ordering;

use rust_decimal::prelude::{FromPrimitive, ToPrimitive};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
pub use weir_operators::repr::{as_f64, order_cmp, sql_cmp};
use weir_operators::repr::{civil_from_days, days_from_civil, Datum, OrdF64, Row, SqlType, Str};

/// Why a row could not be evaluated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    #[error("division by zero")]
    DivisionByZero,
    #[error("{0} out of range")]
    Overflow(&'static str),
    #[error("invalid input syntax for type {ty}: \"{value}\"")]
    BadCast { ty: SqlType, value: String },
    #[error("{0}")]
    Invalid(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CmpOp {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

/// Scalar functions callable by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Func {
    Lower,
    Upper,
    Length,
    /// substring(text, from [, for]), 1-based as in SQL.
    Substring,
    Abs,
    /// round(x [, digits])
    Round,
    /// date_trunc('unit', ts)
    DateTrunc,
    /// extract(unit FROM ts), the unit being the first argument.
    Extract,
}

/// What a column past the end of a row reads as.
static NULL: Datum = Datum::Null;

/// The columns an expression reads: a row, or a row with computed columns
/// after it ([`Extended`]).
pub trait Columns {
    /// Column `i`; NULL past the end.
    fn col(&self, i: usize) -> &Datum;
}

impl Columns for [Datum] {
    fn col(&self, i: usize) -> &Datum {
        self.get(i).unwrap_or(&NULL)
    }
}

impl Columns for Row {
    fn col(&self, i: usize) -> &Datum {
        self.as_slice().col(i)
    }
}

impl<const N: usize> Columns for [Datum; N] {
    fn col(&self, i: usize) -> &Datum {
        self.as_slice().col(i)
    }
}

/// A row of `arity` columns and columns computed for it (a pattern's
/// navigation columns), read as one row without copying it: column
/// `arity + j` is `extra[j]`.
pub struct Extended<'a> {
    pub row: &'a [Datum],
    pub arity: usize,
    pub extra: &'a [Datum],
}

impl Columns for Extended<'_> {
    fn col(&self, i: usize) -> &Datum {
        match i.checked_sub(self.arity) {
            None => self.row.col(i),
            Some(j) => self.extra.col(j),
        }
    }
}

/// A scalar expression over the columns of one input row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ScalarExpr {
    Column(usize),
    Literal(Datum),
    Not(Box<ScalarExpr>),
    IsNull(Box<ScalarExpr>),
    And(Vec<ScalarExpr>),
    Or(Vec<ScalarExpr>),
    Cmp(CmpOp, Box<ScalarExpr>, Box<ScalarExpr>),
    /// Arithmetic; `ty` is the result type the planner derived.
    Arith(ArithOp, Box<ScalarExpr>, Box<ScalarExpr>, SqlType),
    Neg(Box<ScalarExpr>),
    Case {
        whens: Vec<(ScalarExpr, ScalarExpr)>,
        otherwise: Box<ScalarExpr>,
    },
    Coalesce(Vec<ScalarExpr>),
    NullIf(Box<ScalarExpr>, Box<ScalarExpr>),
    Cast(Box<ScalarExpr>, SqlType),
    Concat(Box<ScalarExpr>, Box<ScalarExpr>),
    Like {
        expr: Box<ScalarExpr>,
        pattern: Box<ScalarExpr>,
        case_insensitive: bool,
    },
    InList(Box<ScalarExpr>, Vec<ScalarExpr>),
    Call(Func, Vec<ScalarExpr>),
}

impl ScalarExpr {
    pub fn column(i: usize) -> Self {
        ScalarExpr::Column(i)
    }

    /// Evaluates the expression on `row` (a row, or a row with computed
    /// columns after it).
    pub fn eval<C: Columns + ?Sized>(&self, row: &C) -> Result<Datum, EvalError> {
        self.eval_ref(row).map(Cow::into_owned)
    }

    /// [`ScalarExpr::eval`], borrowing a column's or a literal's value
    /// where the result is one, so that a comparison or a test of a text
    /// column copies no string.
    fn eval_ref<'a, C: Columns + ?Sized>(&'a self, row: &'a C) -> Result<Cow<'a, Datum>, EvalError> {
        use ScalarExpr::*;
        Ok(Cow::Owned(match self {
            Column(i) => return Ok(Cow::Borrowed(row.col(*i))),
            Literal(d) => return Ok(Cow::Borrowed(d)),
            Not(e) => match *e.eval_ref(row)? {
                Datum::Bool(b) => Datum::Bool(!b),
                _ => Datum::Null,
            },
            IsNull(e) => Datum::Bool(e.eval_ref(row)?.is_null()),
            And(es) => {
                let mut saw_null = false;
                for e in es {
                    match *e.eval_ref(row)? {
                        Datum::Bool(false) => return Ok(Cow::Owned(Datum::Bool(false))),
                        Datum::Bool(true) => {}
                        _ => saw_null = true,
                    }
                }
                if saw_null {
                    Datum::Null
                } else {
                    Datum::Bool(true)
                }
            }
            Or(es) => {
                let mut saw_null = false;
                for e in es {
                    match *e.eval_ref(row)? {
                        Datum::Bool(true) => return Ok(Cow::Owned(Datum::Bool(true))),
                        Datum::Bool(false) => {}
                        _ => saw_null = true,
                    }
                }
                if saw_null {
                    Datum::Null
                } else {
                    Datum::Bool(false)
                }
            }
            Cmp(op, l, r) => {
                let (l, r) = (l.eval_ref(row)?, r.eval_ref(row)?);
                match sql_cmp(&l, &r) {
                    None => Datum::Null,
                    Some(ord) => Datum::Bool(match op {
                        CmpOp::Eq => ord == Ordering::Equal,
                        CmpOp::NotEq => ord != Ordering::Equal,
                        CmpOp::Lt => ord == Ordering::Less,
                        CmpOp::LtEq => ord != Ordering::Greater,
                        CmpOp::Gt => ord == Ordering::Greater,
                        CmpOp::GtEq => ord != Ordering::Less,
                    }),
                }
            }
            Arith(op, l, r, ty) => arith(*op, l.eval(row)?, r.eval(row)?, *ty)?,
            Neg(e) => match *e.eval_ref(row)? {
                Datum::Int(i) => Datum::Int(i.checked_neg().ok_or(EvalError::Overflow("bigint"))?),
                Datum::Float(f) => Datum::Float(OrdF64::new(-f.get())),
                Datum::Decimal(d) => Datum::Decimal(-d),
                _ => Datum::Null,
            },
            Case { whens, otherwise } => {
                for (cond, res) in whens {
                    if *cond.eval_ref(row)? == Datum::Bool(true) {
                        return res.eval_ref(row);
                    }
                }
                return otherwise.eval_ref(row);
            }
            Coalesce(es) => {
                for e in es {
                    let d = e.eval_ref(row)?;
                    if !d.is_null() {
                        return Ok(d);
                    }
                }
                Datum::Null
            }
            NullIf(a, b) => {
                let a = a.eval_ref(row)?;
                let b = b.eval_ref(row)?;
                if sql_cmp(&a, &b) == Some(Ordering::Equal) {
                    Datum::Null
                } else {
                    return Ok(a);
                }
            }
            Cast(e, ty) => cast(e.eval(row)?, *ty)?,
            Concat(a, b) => match (&*a.eval_ref(row)?, &*b.eval_ref(row)?) {
                (Datum::Null, _) | (_, Datum::Null) => Datum::Null,
                (a, b) => Datum::Text(format!("{}{}", to_text(a), to_text(b)).into()),
            },
            Like {
                expr,
                pattern,
                case_insensitive,
            } => match (&*expr.eval_ref(row)?, &*pattern.eval_ref(row)?) {
                (Datum::Text(s), Datum::Text(p)) => {
                    if *case_insensitive {
                        Datum::Bool(like(&s.to_lowercase(), &p.to_lowercase()))
                    } else {
                        Datum::Bool(like(s, p))
                    }
                }
                _ => Datum::Null,
            },
            InList(e, list) => {
                let v = e.eval_ref(row)?;
                if v.is_null() {
                    return Ok(Cow::Owned(Datum::Null));
                }
                let mut saw_null = false;
                for item in list {
                    match sql_cmp(&v, &*item.eval_ref(row)?) {
                        Some(Ordering::Equal) => return Ok(Cow::Owned(Datum::Bool(true))),
                        None => saw_null = true,
                        _ => {}
                    }
                }
                if saw_null {
                    Datum::Null
                } else {
                    Datum::Bool(false)
                }
            }
            Call(f, args) => {
                let vals = args.iter().map(|a| a.eval(row)).collect::<Result<Vec<_>, _>>()?;
                call(*f, &vals)?
            }
        }))
    }

    /// True when the expression evaluates to TRUE (not FALSE, not NULL).
    pub fn holds<C: Columns + ?Sized>(&self, row: &C) -> Result<bool, EvalError> {
        Ok(*self.eval_ref(row)? == Datum::Bool(true))
    }

    /// Rewrites column references through `map` (old index → new index).
    pub fn permute(&mut self, map: &dyn Fn(usize) -> usize) {
        self.visit_mut(&mut |e| {
            if let ScalarExpr::Column(i) = e {
                *i = map(*i);
            }
        });
    }

    /// The columns this expression reads.
    pub fn columns(&self, out: &mut Vec<usize>) {
        self.visit(&mut |e| {
            if let ScalarExpr::Column(i) = e {
                out.push(*i);
            }
        });
    }

    fn children(&self) -> Vec<&ScalarExpr> {
        use ScalarExpr::*;
        match self {
            Column(_) | Literal(_) => vec![],
            Not(e) | IsNull(e) | Neg(e) | Cast(e, _) => vec![e],
            And(es) | Or(es) | Coalesce(es) | Call(_, es) => es.iter().collect(),
            Cmp(_, a, b) | Arith(_, a, b, _) | NullIf(a, b) | Concat(a, b) => vec![a, b],
            Like { expr, pattern, .. } => vec![expr, pattern],
            InList(e, l) => std::iter::once(&**e).chain(l.iter()).collect(),
            Case { whens, otherwise } => whens
                .iter()
                .flat_map(|(a, b)| [a, b])
                .chain(std::iter::once(&**otherwise))
                .collect(),
        }
    }

    fn visit(&self, f: &mut dyn FnMut(&ScalarExpr)) {
        f(self);
        for c in self.children() {
            c.visit(f);
        }
    }

    fn visit_mut(&mut self, f: &mut dyn FnMut(&mut ScalarExpr)) {
        use ScalarExpr::*;
        f(self);
        match self {
            Column(_) | Literal(_) => {}
            Not(e) | IsNull(e) | Neg(e) | Cast(e, _) => e.visit_mut(f),
            And(es) | Or(es) | Coalesce(es) | Call(_, es) => es.iter_mut().for_each(|e| e.visit_mut(f)),
            Cmp(_, a, b) | Arith(_, a, b, _) | NullIf(a, b) | Concat(a, b) => {
                a.visit_mut(f);
                b.visit_mut(f);
            }
            Like { expr, pattern, .. } => {
                expr.visit_mut(f);
                pattern.visit_mut(f);
            }
            InList(e, l) => {
                e.visit_mut(f);
                l.iter_mut().for_each(|e| e.visit_mut(f));
            }
            Case { whens, otherwise } => {
                for (a, b) in whens {
                    a.visit_mut(f);
                    b.visit_mut(f);
                }
                otherwise.visit_mut(f);
            }
        }
    }
}

/// Evaluates every expression of a projection.
pub fn eval_all(exprs: &[ScalarExpr], row: &[Datum]) -> Result<Row, EvalError> {
    exprs.iter().map(|e| e.eval(row)).collect()
}

fn as_decimal(d: &Datum) -> Option<Decimal> {
    match d {
        Datum::Int(i) => Some(Decimal::from(*i)),
        Datum::Decimal(d) => Some(*d),
        Datum::Float(f) => Decimal::from_f64(f.get()),
        _ => None,
    }
}

fn arith(op: ArithOp, l: Datum, r: Datum, ty: SqlType) -> Result<Datum, EvalError> {
    if l.is_null() || r.is_null() {
        return Ok(Datum::Null);
    }
    if ty.is_integer() {
        let (Datum::Int(a), Datum::Int(b)) = (&l, &r) else {
            return Err(EvalError::Invalid("integer arithmetic on non-integers".into()));
        };
        let (a, b) = (*a, *b);
        let v = match op {
            ArithOp::Add => a.checked_add(b),
            ArithOp::Sub => a.checked_sub(b),
            ArithOp::Mul => a.checked_mul(b),
            ArithOp::Div | ArithOp::Mod if b == 0 => return Err(EvalError::DivisionByZero),
            ArithOp::Div => a.checked_div(b),
            ArithOp::Mod => a.checked_rem(b),
        };
        return v.map(Datum::Int).ok_or(EvalError::Overflow("bigint"));
    }
    if ty.is_float() {
        let (a, b) = (as_f64(&l).unwrap_or(f64::NAN), as_f64(&r).unwrap_or(f64::NAN));
        let v = match op {
            ArithOp::Add => a + b,
            ArithOp::Sub => a - b,
            ArithOp::Mul => a * b,
            ArithOp::Div | ArithOp::Mod if b == 0.0 => return Err(EvalError::DivisionByZero),
            ArithOp::Div => a / b,
            ArithOp::Mod => a % b,
        };
        return Ok(Datum::Float(OrdF64::new(v)));
    }
    let (Some(a), Some(b)) = (as_decimal(&l), as_decimal(&r)) else {
        return Err(EvalError::Invalid("decimal arithmetic on non-numbers".into()));
    };
    let v = match op {
        ArithOp::Add => a.checked_add(b),
        ArithOp::Sub => a.checked_sub(b),
        ArithOp::Mul => a.checked_mul(b),
        ArithOp::Div | ArithOp::Mod if b.is_zero() => return Err(EvalError::DivisionByZero),
        ArithOp::Div => a.checked_div(b),
        ArithOp::Mod => a.checked_rem(b),
    };
    v.map(|d| Datum::Decimal(limit_scale(d, ty)))
        .ok_or(EvalError::Overflow("numeric"))
}

/// Division results keep at most 16 fractional digits (as PostgreSQL shows
/// them); other results keep their exact scale.
fn limit_scale(d: Decimal, ty: SqlType) -> Decimal {
    match ty {
        SqlType::Decimal(_, s) if d.scale() > s as u32 && d.scale() > 16 => {
            d.round_dp_with_strategy(16, RoundingStrategy::MidpointAwayFromZero)
        }
        _ => d,
    }
}

/// Text form of a value, as `||` and CAST(... AS TEXT) produce it.
pub fn to_text(d: &Datum) -> String {
    match d {
        Datum::Null => String::new(),
        Datum::Bool(b) => if *b { "true" } else { "false" }.to_string(),
        Datum::Int(i) => i.to_string(),
        Datum::Float(f) => format_float(f.get()),
        Datum::Decimal(d) => d.to_string(),
        Datum::Text(s) => s.to_string(),
        Datum::Timestamp(ms) => {
            let s = weir_operators::repr::format_timestamp(*ms);
            // PostgreSQL's text form: "2024-01-02 03:04:05.123".
            s.trim_end_matches('Z').replacen('T', " ", 1)
        }
    }
}

fn format_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        format!("{f}")
    }
}

/// CAST following PostgreSQL's rules for the supported types.
pub fn cast(d: Datum, ty: SqlType) -> Result<Datum, EvalError> {
    if d.is_null() {
        return Ok(Datum::Null);
    }
    let bad = |d: &Datum| EvalError::BadCast { ty, value: to_text(d) };
    Ok(match ty {
        SqlType::Bool => match &d {
            Datum::Bool(_) => d,
            Datum::Int(i) => Datum::Bool(*i != 0),
            Datum::Text(s) => match s.trim().to_ascii_lowercase().as_str() {
                "t" | "true" | "yes" | "y" | "on" | "1" => Datum::Bool(true),
                "f" | "false" | "no" | "n" | "off" | "0" => Datum::Bool(false),
                _ => return Err(bad(&d)),
            },
            _ => return Err(bad(&d)),
        },
        SqlType::SmallInt | SqlType::Int | SqlType::BigInt => {
            let v: i64 = match &d {
                Datum::Int(i) => *i,
                Datum::Bool(b) => *b as i64,
                Datum::Float(f) => {
                    let r = f.get().round_ties_even();
                    if !r.is_finite() || r < i64::MIN as f64 || r > i64::MAX as f64 {
                        return Err(EvalError::Overflow("bigint"));
                    }
                    r as i64
                }
                Datum::Decimal(x) => x
                    .round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero)
                    .to_i64()
                    .ok_or(EvalError::Overflow("bigint"))?,
                Datum::Text(s) => s.trim().parse().map_err(|_| bad(&d))?,
                _ => return Err(bad(&d)),
            };
            let (lo, hi, name) = match ty {
                SqlType::SmallInt => (i16::MIN as i64, i16::MAX as i64, "smallint"),
                SqlType::Int => (i32::MIN as i64, i32::MAX as i64, "integer"),
                _ => (i64::MIN, i64::MAX, "bigint"),
            };
            if v < lo || v > hi {
                return Err(EvalError::Overflow(name));
            }
            Datum::Int(v)
        }
        SqlType::Real | SqlType::Double => match &d {
            Datum::Text(s) => Datum::Float(OrdF64::new(s.trim().parse().map_err(|_| bad(&d))?)),
            _ => Datum::Float(OrdF64::new(as_f64(&d).ok_or_else(|| bad(&d))?)),
        },
        SqlType::Decimal(p, s) => {
            let v = match &d {
                Datum::Text(t) => t.trim().parse::<Decimal>().map_err(|_| bad(&d))?,
                Datum::Float(f) if !f.get().is_finite() => return Err(bad(&d)),
                _ => as_decimal(&d).ok_or_else(|| bad(&d))?,
            };
            Datum::Decimal(fit_decimal(v, p, s)?)
        }
        SqlType::Text => match d {
            Datum::Text(_) => d,
            other => Datum::Text(to_text(&other).into()),
        },
        SqlType::Timestamp => match &d {
            Datum::Timestamp(_) => d,
            Datum::Text(s) => Datum::Timestamp(weir_operators::repr::parse_timestamp(s).ok_or_else(|| bad(&d))?),
            _ => return Err(bad(&d)),
        },
    })
}

/// Rounds to `s` fractional digits and checks that at most `p - s` integer
/// digits remain, as a DECIMAL(p, s) column requires.
pub fn fit_decimal(v: Decimal, p: u8, s: u8) -> Result<Decimal, EvalError> {
    let mut r = v.round_dp_with_strategy(s as u32, RoundingStrategy::MidpointAwayFromZero);
    r.rescale(s as u32);
    let int_digits = r.trunc().abs().to_string().trim_start_matches('0').len();
    if int_digits > (p.saturating_sub(s)) as usize {
        return Err(EvalError::Overflow("numeric"));
    }
    Ok(r)
}

/// SQL LIKE with `%` and `_`, and `\` escaping the next character.
pub fn like(s: &str, pattern: &str) -> bool {
    let s: Vec<char> = s.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    // Iterative matcher with backtracking to the last `%`.
    let (mut si, mut pi) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() {
            match p[pi] {
                '%' => {
                    star = Some((pi, si));
                    pi += 1;
                    continue;
                }
                '_' => {
                    si += 1;
                    pi += 1;
                    continue;
                }
                '\\' if pi + 1 < p.len() && p[pi + 1] == s[si] => {
                    si += 1;
                    pi += 2;
                    continue;
                }
                // An escaped character that does not match: backtrack.
                '\\' if pi + 1 < p.len() => {}
                c if c == s[si] => {
                    si += 1;
                    pi += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, ss)) => {
                pi = sp + 1;
                si = ss + 1;
                star = Some((sp, ss + 1));
            }
            None => return false,
        }
    }
    while pi < p.len() && p[pi] == '%' {
        pi += 1;
    }
    pi == p.len()
}

const MS_PER_DAY: i64 = 86_400_000;

fn call(f: Func, args: &[Datum]) -> Result<Datum, EvalError> {
    if args.iter().any(Datum::is_null) {
        return Ok(Datum::Null);
    }
    let text = |i: usize| match &args[i] {
        Datum::Text(s) => Ok(s.as_str()),
        other => Err(EvalError::Invalid(format!("expected text, got {}", to_text(other)))),
    };
    let int = |i: usize| match &args[i] {
        Datum::Int(v) => Ok(*v),
        other => Err(EvalError::Invalid(format!("expected integer, got {}", to_text(other)))),
    };
    Ok(match f {
        Func::Lower => Datum::Text(text(0)?.to_lowercase().into()),
        Func::Upper => Datum::Text(text(0)?.to_uppercase().into()),
        Func::Length => Datum::Int(text(0)?.chars().count() as i64),
        Func::Substring => {
            let s: Vec<char> = text(0)?.chars().collect();
            // SQL positions are 1-based and may start before the string.
            let start = int(1)?;
            let end = if args.len() > 2 {
                let len = int(2)?;
                if len < 0 {
                    return Err(EvalError::Invalid("negative substring length not allowed".into()));
                }
                start.saturating_add(len)
            } else {
                i64::MAX
            };
            let from = start.max(1) - 1;
            let to = (end - 1).clamp(0, s.len() as i64);
            if from as usize >= s.len() || to <= from {
                Datum::Text(Str::default())
            } else {
                Datum::Text(s[from as usize..to as usize].iter().collect())
            }
        }
        Func::Abs => match &args[0] {
            Datum::Int(i) => Datum::Int(i.checked_abs().ok_or(EvalError::Overflow("bigint"))?),
            Datum::Float(x) => Datum::Float(OrdF64::new(x.get().abs())),
            Datum::Decimal(d) => Datum::Decimal(d.abs()),
            other => return Err(EvalError::Invalid(format!("abs of {}", to_text(other)))),
        },
        Func::Round => {
            let digits = if args.len() > 1 { int(1)? } else { 0 };
            match &args[0] {
                Datum::Int(i) => Datum::Int(*i),
                Datum::Float(x) => {
                    let m = 10f64.powi(digits as i32);
                    // PostgreSQL rounds double precision half to even.
                    Datum::Float(OrdF64::new((x.get() * m).round_ties_even() / m))
                }
                Datum::Decimal(d) => {
                    let dp = digits.clamp(0, 28) as u32;
                    let mut r = d.round_dp_with_strategy(dp, RoundingStrategy::MidpointAwayFromZero);
                    r.rescale(dp);
                    Datum::Decimal(r)
                }
                other => return Err(EvalError::Invalid(format!("round of {}", to_text(other)))),
            }
        }
        Func::DateTrunc => {
            let unit = text(0)?.to_ascii_lowercase();
            let Datum::Timestamp(ms) = args[1] else {
                return Err(EvalError::Invalid("date_trunc needs a timestamp".into()));
            };
            let days = ms.div_euclid(MS_PER_DAY);
            let (y, m, _) = civil_from_days(days);
            Datum::Timestamp(match unit.as_str() {
                "millisecond" | "milliseconds" => ms,
                "second" => ms - ms.rem_euclid(1000),
                "minute" => ms - ms.rem_euclid(60_000),
                "hour" => ms - ms.rem_euclid(3_600_000),
                "day" => days * MS_PER_DAY,
                // ISO weeks start on Monday; 1970-01-01 was a Thursday.
                "week" => (days - (days + 3).rem_euclid(7)) * MS_PER_DAY,
                "month" => days_from_civil(y, m, 1) * MS_PER_DAY,
                "quarter" => days_from_civil(y, (m - 1) / 3 * 3 + 1, 1) * MS_PER_DAY,
                "year" => days_from_civil(y, 1, 1) * MS_PER_DAY,
                other => return Err(EvalError::Invalid(format!("unit \"{other}\" not recognized"))),
            })
        }
        Func::Extract => {
            let unit = text(0)?.to_ascii_lowercase();
            let Datum::Timestamp(ms) = args[1] else {
                return Err(EvalError::Invalid("extract needs a timestamp".into()));
            };
            let days = ms.div_euclid(MS_PER_DAY);
            let in_day = ms.rem_euclid(MS_PER_DAY);
            let (y, m, d) = civil_from_days(days);
            let v: Decimal = match unit.as_str() {
                "year" => y.into(),
                "quarter" => ((m - 1) / 3 + 1).into(),
                "month" => m.into(),
                "day" => d.into(),
                "hour" => (in_day / 3_600_000).into(),
                "minute" => (in_day / 60_000 % 60).into(),
                "second" => Decimal::new(in_day % 60_000, 3),
                "millisecond" | "milliseconds" => Decimal::new(in_day % 60_000, 0),
                "dow" => (days + 4).rem_euclid(7).into(),
                "isodow" => ((days + 3).rem_euclid(7) + 1).into(),
                "doy" => (days - days_from_civil(y, 1, 1) + 1).into(),
                "epoch" => Decimal::new(ms, 3),
                other => return Err(EvalError::Invalid(format!("unit \"{other}\" not recognized"))),
            };
            Datum::Decimal(v)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_matches_sql() {
        assert!(like("hello", "h%o"));
        assert!(like("hello", "_ello"));
        assert!(!like("hello", "h_o"));
        assert!(like("a%b", "a\\%b"));
        assert!(!like("axb", "a\\%b"));
        assert!(like("", "%"));
        assert!(like("abcabc", "%abc"));
    }

    #[test]
    fn integer_division_truncates_and_checks_zero() {
        let e = ScalarExpr::Arith(
            ArithOp::Div,
            Box::new(ScalarExpr::Literal(Datum::Int(-7))),
            Box::new(ScalarExpr::Literal(Datum::Int(2))),
            SqlType::BigInt,
        );
        assert_eq!(e.eval(&[]), Ok(Datum::Int(-3)));
        let z = ScalarExpr::Arith(
            ArithOp::Div,
            Box::new(ScalarExpr::Literal(Datum::Int(1))),
            Box::new(ScalarExpr::Literal(Datum::Int(0))),
            SqlType::BigInt,
        );
        assert_eq!(z.eval(&[]), Err(EvalError::DivisionByZero));
    }

    #[test]
    fn three_valued_logic() {
        let t = ScalarExpr::Literal(Datum::Bool(true));
        let f = ScalarExpr::Literal(Datum::Bool(false));
        let n = ScalarExpr::Literal(Datum::Null);
        assert_eq!(ScalarExpr::And(vec![t.clone(), n.clone()]).eval(&[]), Ok(Datum::Null));
        assert_eq!(
            ScalarExpr::And(vec![f.clone(), n.clone()]).eval(&[]),
            Ok(Datum::Bool(false))
        );
        assert_eq!(ScalarExpr::Or(vec![t, n.clone()]).eval(&[]), Ok(Datum::Bool(true)));
        assert_eq!(ScalarExpr::Or(vec![f, n]).eval(&[]), Ok(Datum::Null));
    }

    #[test]
    fn decimal_fits_precision() {
        let d: Decimal = "123.456".parse().unwrap();
        assert_eq!(fit_decimal(d, 5, 2).unwrap().to_string(), "123.46");
        assert!(fit_decimal(d, 4, 2).is_err());
    }
}
