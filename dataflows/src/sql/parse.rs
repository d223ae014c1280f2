//! Parsing: weir's extensions and `CREATE SINK` statements cut out, the rest
//! parsed by `sqlparser`, parser errors turned into located [`PlanError`]s.

use sqlparser::ast::Statement;
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;

use super::error::{Loc, PlanError, Result};
use super::extensions::{self, Extensions};
use super::kafka::{self, SinkStatement};
use super::text::end_of;

/// Parses SQL, turning parser errors into [`PlanError`]s with a position.
/// weir's extensions to the grammar (`WITHIN … [EMIT TIMEOUTS]` in
/// `MATCH_RECOGNIZE`) are accepted and left out of the statements.
pub fn parse(sql: &str) -> Result<Vec<Statement>> {
    parse_extended(sql).map(|(statements, _)| statements)
}

fn parse_extended(sql: &str) -> Result<(Vec<Statement>, Extensions)> {
    parse_with_sinks(sql).map(|(statements, ext, _)| (statements, ext))
}

pub(super) fn parse_with_sinks(sql: &str) -> Result<(Vec<Statement>, Extensions, Vec<SinkStatement>)> {
    let (text, sinks) = kafka::cut_sinks(sql)?;
    let (text, ext) = extensions::cut_extensions(&text)?;
    let statements = Parser::parse_sql(&GenericDialect {}, &text).map_err(|e| {
        let msg = e.to_string();
        let msg = msg.strip_prefix("sql parser error: ").unwrap_or(&msg).to_string();
        // An error at the end of the input comes without a position.
        let (line, column) = parse_position(&msg).unwrap_or_else(|| end_of(sql));
        let clean = match msg.find(" at Line: ") {
            Some(i) => msg[..i].to_string(),
            None => msg,
        };
        PlanError::new("syntax_error", clean, Loc(line, column))
    })?;
    Ok((statements, ext, sinks))
}

fn parse_position(msg: &str) -> Option<(u64, u64)> {
    let i = msg.find("Line: ")?;
    let rest = &msg[i + 6..];
    let line: u64 = rest.split(',').next()?.trim().parse().ok()?;
    let j = rest.find("Column: ")?;
    let col: u64 = rest[j + 8..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .ok()?;
    Some((line, col))
}
