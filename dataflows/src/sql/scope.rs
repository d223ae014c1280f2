//! Name resolution: the objects visible to a statement ([`JobScope`]), the
//! columns visible to an expression ([`ScopeColumn`]), and names as SQL
//! spells them.

use sqlparser::ast::{self, ObjectName};
use weir_operators::repr::{Column, SqlType};

use super::error::{loc_of, unsupported, Loc, PlanError, Result};
use super::lookup::{CatalogLookup, ObjectInfo};
use crate::plan::JobPlan;

/// Objects visible to a statement: the catalog plus the job's earlier objects.
pub(super) struct JobScope<'a> {
    pub(super) catalog: &'a dyn CatalogLookup,
    pub(super) job: &'a JobPlan,
}

impl JobScope<'_> {
    pub(super) fn lookup(&self, name: &str) -> Option<ObjectInfo> {
        for t in &self.job.tables {
            if t.name.eq_ignore_ascii_case(name) {
                return Some(ObjectInfo {
                    schema: t.schema.clone(),
                    monotonic: t.primary_key.is_none(),
                    key: t.primary_key.clone(),
                    watermark: t.watermark,
                });
            }
        }
        for v in &self.job.views {
            if v.name.eq_ignore_ascii_case(name) {
                return Some(ObjectInfo {
                    schema: v.schema.clone(),
                    monotonic: v.monotonic,
                    key: v.key.clone(),
                    watermark: v.watermark,
                });
            }
        }
        self.catalog.lookup(name)
    }
}

/// A column in scope while planning.
#[derive(Clone, Debug)]
pub(super) struct ScopeColumn {
    /// Table name or alias that qualifies it, if any.
    pub(super) qualifier: Option<String>,
    pub(super) name: String,
    pub(super) ty: SqlType,
    pub(super) nullable: bool,
}

impl ScopeColumn {
    /// The column as a schema shows it (without its qualifier).
    pub(super) fn column(&self) -> Column {
        Column {
            name: self.name.clone(),
            ty: self.ty,
            nullable: self.nullable,
        }
    }
}

pub(super) fn object_name(name: &ObjectName) -> Result<String> {
    if name.0.len() != 1 {
        return Err(PlanError::new(
            "unsupported",
            format!("qualified name {name} is not supported: names are global"),
            loc_of(name),
        ));
    }
    Ok(ident_name(
        name.0[0].as_ident().ok_or_else(|| unsupported(name, loc_of(name)))?,
    ))
}

/// Unquoted identifiers fold to lower case, as in PostgreSQL.
pub(super) fn ident_name(id: &ast::Ident) -> String {
    if id.quote_style.is_some() {
        id.value.clone()
    } else {
        id.value.to_lowercase()
    }
}

pub(super) fn resolve(columns: &[ScopeColumn], qualifier: Option<&str>, name: &str, at: Loc) -> Result<usize> {
    let mut found = None;
    for (i, c) in columns.iter().enumerate() {
        if c.name == name && (qualifier.is_none() || c.qualifier.as_deref() == qualifier) {
            if found.is_some() {
                return Err(PlanError::new(
                    "ambiguous_column",
                    format!("column reference \"{name}\" is ambiguous"),
                    at,
                ));
            }
            found = Some(i);
        }
    }
    found.ok_or_else(|| {
        let full = match qualifier {
            Some(q) => format!("{q}.{name}"),
            None => name.to_string(),
        };
        PlanError::new("unknown_column", format!("column \"{full}\" does not exist"), at)
    })
}
