//! `GET /v1/views/{view}?col=value`: equality filters bound to a view's
//! columns, served from the index when they name every key column, and the
//! answer's order and limit.

use weir_dataflows::expr::{cast, sql_cmp};
use weir_operators::repr::{Datum, Diff, Row, Schema};

use crate::error::ReadError;
use crate::eval::sort_rows;

/// Column = value conditions on one view.
pub struct ViewFilter {
    conds: Vec<(usize, Datum)>,
}

impl ViewFilter {
    /// Binds `filters` (column name, value as text; `null` is NULL) to the
    /// view's columns, casting each value to its column's type.
    pub fn bind(view: &str, schema: &Schema, filters: &[(String, String)]) -> Result<ViewFilter, ReadError> {
        let mut conds = Vec::new();
        for (col, val) in filters {
            let i = schema.index_of(col).ok_or_else(|| ReadError::BadRequest {
                code: "unknown_column",
                message: format!("view {view} has no column \"{col}\""),
            })?;
            let d = if val == "null" {
                Datum::Null
            } else {
                cast(Datum::Text(val.as_str().into()), schema.columns[i].ty).map_err(|e| ReadError::BadRequest {
                    code: "type_error",
                    message: format!("filter {col}={val}: {e}"),
                })?
            };
            conds.push((i, d));
        }
        Ok(ViewFilter { conds })
    }

    /// The index key to look up, when the filters fix every key column.
    pub fn index_key(&self, key: Option<&[usize]>) -> Option<Row> {
        key?.iter()
            .map(|c| self.conds.iter().find(|(i, _)| i == c).map(|(_, d)| d.clone()))
            .collect()
    }

    /// Whether `row` passes every condition.
    pub fn matches(&self, row: &Row) -> bool {
        self.conds.iter().all(|(i, d)| match d {
            Datum::Null => row[*i].is_null(),
            d => sql_cmp(&row[*i], d) == Some(std::cmp::Ordering::Equal),
        })
    }

    /// The rows that pass, each as often as its multiplicity, in a stable
    /// order, at most `limit`.
    pub fn apply(&self, rows: Vec<(Row, Diff)>, limit: Option<usize>) -> Vec<Row> {
        let mut out = Vec::new();
        for (row, n) in rows {
            if self.matches(&row) {
                for _ in 0..n.max(0) {
                    out.push(row.clone());
                }
            }
        }
        sort_rows(&mut out, &[]);
        if let Some(l) = limit {
            out.truncate(l);
        }
        out
    }
}
