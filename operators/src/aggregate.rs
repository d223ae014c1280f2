//! SQL aggregates as values: the monoid that keeps a group's accumulable
//! aggregates in a collection's difference type, and the folding of a list
//! of values into an aggregate's result.

use std::cmp::Ordering;

use differential_dataflow::difference::{IsZero, Multiply, Semigroup};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::repr::{as_f64, order_cmp, Datum, Diff, OrdF64, SqlType};

/// An aggregate function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AggFunc {
    /// count(*)
    CountRows,
    Count,
    Sum,
    Min,
    Max,
    Avg,
}

/// The running state of a group's accumulable aggregates, kept as the
/// difference of a collection so that an arrangement holds one entry per
/// group (DESIGN.md §4).
///
/// # Contract
/// `extremes` (min and max) only over append-only input: adding keeps the
/// extreme, and nothing can take it back, so a negative multiplier leaves
/// them as they are. Counts and sums take retractions.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AggDiff {
    /// Rows in the group: count(*).
    pub rows: i64,
    /// Per aggregate: (non-null inputs, sum of inputs).
    pub accs: Vec<(i64, Decimal)>,
    /// Per min or max: the extreme so far (NULL before any value). Always
    /// serialised: snapshots use a format that cannot skip fields.
    pub extremes: Vec<Extreme>,
}

/// The current value of a `min` or `max` (NULL: no value yet).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Extreme {
    Min(Datum),
    Max(Datum),
}

impl Extreme {
    pub fn value(&self) -> &Datum {
        match self {
            Extreme::Min(d) | Extreme::Max(d) => d,
        }
    }

    /// Keeps the more extreme of the two. Values SQL orders as equal (1.0
    /// and 1.00) are told apart by `Datum`'s total order, so the result
    /// does not depend on the order of the additions.
    fn absorb(&mut self, other: &Extreme) {
        let (mine, theirs, want) = match (&mut *self, other) {
            (Extreme::Min(a), Extreme::Min(b)) => (a, b, Ordering::Less),
            (Extreme::Max(a), Extreme::Max(b)) => (a, b, Ordering::Greater),
            // Two aggregates of one position always agree on their kind.
            _ => return,
        };
        if theirs.is_null() {
            return;
        }
        let better = mine.is_null() || order_cmp(theirs, mine).then_with(|| theirs.cmp(mine)) == want;
        if better {
            *mine = theirs.clone();
        }
    }
}

impl IsZero for AggDiff {
    fn is_zero(&self) -> bool {
        self.rows == 0
            && self.accs.iter().all(|(n, s)| *n == 0 && s.is_zero())
            && self.extremes.iter().all(|e| e.value().is_null())
    }
}

impl Semigroup for AggDiff {
    fn plus_equals(&mut self, rhs: &Self) {
        self.rows += rhs.rows;
        if self.accs.len() < rhs.accs.len() {
            self.accs.resize(rhs.accs.len(), (0, Decimal::ZERO));
        }
        for (a, b) in self.accs.iter_mut().zip(&rhs.accs) {
            a.0 += b.0;
            a.1 += b.1;
        }
        if self.extremes.len() < rhs.extremes.len() {
            self.extremes = rhs.extremes.clone();
            return;
        }
        for (a, b) in self.extremes.iter_mut().zip(&rhs.extremes) {
            a.absorb(b);
        }
    }
}

impl Multiply<Diff> for AggDiff {
    type Output = AggDiff;
    fn multiply(self, rhs: &Diff) -> AggDiff {
        let m = Decimal::from(*rhs);
        AggDiff {
            rows: self.rows * rhs,
            accs: self.accs.into_iter().map(|(n, s)| (n * rhs, s * m)).collect(),
            extremes: self.extremes,
        }
    }
}

/// A number as a decimal, for sums: a float a decimal cannot hold, and
/// anything that is not a number, counts as 0.
pub fn as_decimal(d: &Datum) -> Decimal {
    match d {
        Datum::Int(i) => Decimal::from(*i),
        Datum::Decimal(x) => *x,
        Datum::Float(f) => Decimal::try_from(f.get()).unwrap_or_default(),
        _ => Decimal::ZERO,
    }
}

/// A sum in the result type of `sum` over `input`: an integer while it fits
/// in a BIGINT (a decimal beyond), a float, or a decimal.
pub fn sum_datum(sum: Decimal, input: SqlType) -> Datum {
    if input.is_integer() {
        match sum.to_i64() {
            Some(i) => Datum::Int(i),
            None => Datum::Decimal(sum),
        }
    } else if input.is_float() {
        Datum::Float(OrdF64::new(sum.to_f64().unwrap_or(f64::NAN)))
    } else {
        Datum::Decimal(sum)
    }
}

/// The average `sum / n` in the result type of `avg` over `input`: a float,
/// or a decimal rounded half away from zero to the input's scale, at least 6.
pub fn avg_datum(sum: Decimal, n: i64, input: SqlType) -> Datum {
    if input.is_float() {
        return Datum::Float(OrdF64::new(sum.to_f64().unwrap_or(f64::NAN) / n as f64));
    }
    let scale = match input {
        SqlType::Decimal(_, s) => (s as u32).max(6),
        _ => 6,
    };
    let mut avg =
        (sum / Decimal::from(n)).round_dp_with_strategy(scale, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    avg.rescale(scale);
    Datum::Decimal(avg)
}

/// Aggregate `func` over `values` (NULLs skipped, except by `count(*)`),
/// with the same result types and rounding as grouped aggregates.
pub fn fold_aggregate(func: AggFunc, input_type: SqlType, values: Vec<Datum>) -> Datum {
    if func == AggFunc::CountRows {
        return Datum::Int(values.len() as i64);
    }
    let present: Vec<Datum> = values.into_iter().filter(|d| !d.is_null()).collect();
    let n = present.len() as i64;
    match func {
        AggFunc::CountRows | AggFunc::Count => Datum::Int(n),
        _ if n == 0 => Datum::Null,
        AggFunc::Min => present.into_iter().min_by(order_cmp).unwrap_or(Datum::Null),
        AggFunc::Max => present.into_iter().max_by(order_cmp).unwrap_or(Datum::Null),
        AggFunc::Sum | AggFunc::Avg if input_type.is_float() => {
            let sum: f64 = present.iter().map(|d| as_f64(d).unwrap_or(f64::NAN)).sum();
            let v = if func == AggFunc::Avg { sum / n as f64 } else { sum };
            Datum::Float(OrdF64::new(v))
        }
        AggFunc::Sum => sum_datum(present.iter().map(as_decimal).sum(), input_type),
        AggFunc::Avg => avg_datum(present.iter().map(as_decimal).sum(), n, input_type),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_max(d: Datum) -> AggDiff {
        AggDiff {
            rows: 1,
            accs: vec![],
            extremes: vec![Extreme::Max(d), Extreme::Min(Datum::Null)],
        }
    }

    /// The extremes add up to the same in every order, ties included.
    #[test]
    fn extremes_are_a_commutative_monoid() {
        let values = [
            Datum::Decimal(Decimal::new(100, 2)),
            Datum::Null,
            Datum::Decimal(Decimal::new(10, 1)),
            Datum::Decimal(Decimal::new(-5, 0)),
            Datum::Decimal(Decimal::new(1, 0)),
        ];
        let sum = |order: &[usize]| {
            let mut acc = AggDiff::default();
            for &i in order {
                acc.plus_equals(&with_max(values[i].clone()));
            }
            acc
        };
        let first = sum(&[0, 1, 2, 3, 4]);
        for order in [[4, 3, 2, 1, 0], [2, 0, 4, 1, 3], [1, 3, 0, 2, 4]] {
            assert_eq!(sum(&order), first);
        }
        assert_eq!(first.rows, 5);
        assert_eq!(order_cmp(first.extremes[0].value(), &Datum::Int(1)), Ordering::Equal);
        assert!(first.extremes[1].value().is_null(), "a min over NULLs stays NULL");
        assert!(!first.is_zero());
        // A retraction's multiplier leaves the extremes alone.
        assert_eq!(first.clone().multiply(&-1).extremes, first.extremes);
    }
}
