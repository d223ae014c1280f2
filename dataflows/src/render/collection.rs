//! A rendered relation: its rows and its errors (the rows whose evaluation
//! failed, with the reason), and the helpers that route a failing row to the
//! errors instead of stopping the dataflow.

use differential_dataflow::{AsCollection, VecCollection};
use timely::dataflow::operators::ToStream;
use timely::dataflow::Scope;
use weir_operators::repr::{Diff, Row, Tick};

use crate::expr::{eval_all, ScalarExpr};

/// A rendered relation's rows.
pub(super) type Coll<'s> = VecCollection<'s, Tick, Row, Diff>;
/// Rows that failed evaluation, with the reason.
pub(super) type Errs<'s> = VecCollection<'s, Tick, (String, Row), Diff>;

pub(super) fn empty_errs<'s>(scope: Scope<'s, Tick>) -> Errs<'s> {
    Vec::<((String, Row), Tick, Diff)>::new()
        .to_stream(scope)
        .as_collection()
}

/// Splits a collection of results into values and errors.
pub(super) fn split<'s, D: differential_dataflow::Data>(
    results: VecCollection<'s, Tick, Result<D, (String, Row)>, Diff>,
) -> (VecCollection<'s, Tick, D, Diff>, Errs<'s>) {
    weir_operators::split::split_results(results, "Split: errors")
}

/// Keeps the rows for which every predicate is TRUE; a predicate that
/// fails to evaluate sends the row to the errors.
pub(super) fn filter<'s>(coll: Coll<'s>, predicates: Vec<ScalarExpr>) -> (Coll<'s>, Errs<'s>) {
    split(coll.flat_map(move |row| {
        for p in &predicates {
            match p.holds(&row) {
                Ok(true) => {}
                Ok(false) => return None,
                Err(err) => return Some(Err((err.to_string(), row))),
            }
        }
        Some(Ok(row))
    }))
}

/// Pairs each row with its key; a key that fails to evaluate is an error.
pub(super) fn keyed<'s>(coll: Coll<'s>, key: Vec<ScalarExpr>) -> (VecCollection<'s, Tick, (Row, Row), Diff>, Errs<'s>) {
    split(coll.map(move |row| match eval_all(&key, &row) {
        Ok(k) => Ok((k, row)),
        Err(e) => Err((e.to_string(), row)),
    }))
}
