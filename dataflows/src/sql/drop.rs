//! `DROP TABLE` / `DROP [MATERIALIZED] VIEW` statements, and cutting the
//! statements that create dropped objects out of a job's script.

use std::collections::BTreeSet;

use sqlparser::ast::{self, Statement};
use sqlparser::dialect::GenericDialect;

use super::error::{loc_of, loc_of_statement, unsupported, Loc, PlanError, Result};
use super::parse::parse;
use super::scope::object_name;
use super::text;

/// The kind of catalog object a `DROP` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropKind {
    Table,
    View,
}

impl std::fmt::Display for DropKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DropKind::Table => "table",
            DropKind::View => "view",
        })
    }
}

/// One object a `DROP TABLE` / `DROP [MATERIALIZED] VIEW` statement names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DropPlan {
    pub kind: DropKind,
    pub name: String,
    pub if_exists: bool,
    /// Where the name is in the statement (1-based).
    pub line: u64,
    pub column: u64,
}

impl DropPlan {
    /// An error about this name, located at it.
    pub fn error(&self, code: &'static str, message: impl Into<String>) -> PlanError {
        PlanError::new(code, message, Loc(self.line, self.column))
    }
}

/// Plans a script of `DROP TABLE` and `DROP [MATERIALIZED] VIEW`
/// statements (`IF EXISTS`, several names). Whether the objects exist and
/// what depends on them is the catalog's to check. `CASCADE` is refused:
/// dependants are dropped explicitly, so nothing disappears by surprise.
pub fn plan_drops(sql: &str) -> Result<Vec<DropPlan>> {
    let statements = parse(sql)?;
    if statements.is_empty() {
        return Err(PlanError::new("empty_statement", "no statement to run", Loc(1, 1)));
    }
    let mut drops = Vec::new();
    for stmt in &statements {
        let Statement::Drop {
            object_type,
            if_exists,
            names,
            cascade,
            ..
        } = stmt
        else {
            return Err(PlanError::new(
                "unsupported",
                "only DROP TABLE and DROP VIEW statements run here: CREATE statements are submitted as jobs, SELECTs as queries",
                loc_of_statement(stmt),
            ));
        };
        let kind = match object_type {
            ast::ObjectType::Table => DropKind::Table,
            ast::ObjectType::View | ast::ObjectType::MaterializedView => DropKind::View,
            other => return Err(unsupported(format!("DROP {other}"), loc_of_statement(stmt))),
        };
        if *cascade {
            return Err(unsupported(
                "DROP … CASCADE (drop the dependants first)",
                loc_of_statement(stmt),
            ));
        }
        for n in names {
            let at = loc_of(n);
            drops.push(DropPlan {
                kind,
                name: object_name(n)?,
                if_exists: *if_exists,
                line: at.0,
                column: at.1,
            });
        }
    }
    Ok(drops)
}

/// `script` without the statements that create any of `names`, each cut
/// out with its terminating `;` and the comments before it; the rest of
/// the text is kept as written. Returns `None` when no statement is left.
pub fn script_without(script: &str, names: &BTreeSet<String>) -> Result<Option<String>> {
    let tokens = sqlparser::tokenizer::Tokenizer::new(&GenericDialect {}, script)
        .tokenize_with_location()
        .map_err(|e| PlanError::new("syntax_error", e.message, Loc(e.location.line, e.location.column)))?;
    let line_starts = text::line_starts(script);
    // A token ends just before its end location.
    let offset_after = |loc| text::byte_offset(script, &line_starts, loc);
    let mut cuts = Vec::new();
    let mut begin = 0;
    for t in &tokens {
        if t.token == sqlparser::tokenizer::Token::SemiColon {
            let end = offset_after(t.span.end);
            cuts.push((begin, end));
            begin = end;
        }
    }
    cuts.push((begin, script.len()));
    let mut kept = String::new();
    let mut statements = 0;
    for (b, e) in cuts {
        let piece = &script[b..e];
        let creates = match parse(piece)?.as_slice() {
            [] => None,
            [Statement::CreateTable(ct)] => Some(object_name(&ct.name)?),
            [Statement::CreateView(cv)] => Some(object_name(&cv.name)?),
            [_] => Some(String::new()),
            _ => {
                return Err(PlanError::new(
                    "syntax_error",
                    "cannot split the job into statements",
                    Loc(1, 1),
                ))
            }
        };
        match creates {
            Some(n) if names.contains(&n) => {}
            Some(_) => {
                statements += 1;
                kept.push_str(piece);
            }
            None => kept.push_str(piece),
        }
    }
    Ok((statements > 0).then_some(kept))
}
