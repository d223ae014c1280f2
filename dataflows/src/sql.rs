//! SQL → [`JobPlan`]: parsing with `sqlparser`, name resolution against the
//! catalog, type checking, and planning into [`RelPlan`]s.
//!
//! Planning is pure (Materialize's rule): every fact it needs about existing
//! objects comes through [`CatalogLookup`], and nothing is installed here.
//! A job either plans completely or fails with one [`PlanError`] that names
//! the line and column of the offending construct.

use std::collections::BTreeSet;

use rust_decimal::Decimal;
use serde::Serialize;
use sqlparser::ast::{
    self, BinaryOperator, DataType, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, JoinConstraint,
    JoinOperator, ObjectName, SelectItem, SetExpr, SetOperator, SetQuantifier, Spanned, Statement, TableFactor,
    UnaryOperator, Value,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;
use weir_operators::repr::{Column, Datum, OrdF64, Schema, SqlType};

use weir_operators::cep::Watermark;

use crate::expr::{ArithOp, CmpOp, Func, ScalarExpr};

mod kafka;
mod pattern;
use crate::plan::{
    AggFunc, Aggregate, Connector, JobPlan, JoinKind, OrderKey, RelPlan, StartFrom, TablePlan, ViewPlan,
};

/// A planning error: a stable code for clients, a message for people, and
/// where in the submitted SQL it happened (1-based; 0 when unknown).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{message} (line {line}, column {column})")]
pub struct PlanError {
    pub code: &'static str,
    pub message: String,
    pub line: u64,
    pub column: u64,
}

impl PlanError {
    fn new(code: &'static str, message: impl Into<String>, at: Loc) -> Self {
        PlanError {
            code,
            message: message.into(),
            line: at.0,
            column: at.1,
        }
    }
}

/// A position in the SQL text.
#[derive(Clone, Copy, Debug, Default)]
struct Loc(u64, u64);

fn loc_of(node: &impl Spanned) -> Loc {
    let s = node.span().start;
    Loc(s.line, s.column)
}

/// Where a statement is. sqlparser leaves DROP statements without a span,
/// so those are located at their first name.
fn loc_of_statement(stmt: &Statement) -> Loc {
    match stmt {
        Statement::Drop { names, .. } => names.first().map(loc_of).unwrap_or(Loc(1, 1)),
        other => loc_of(other),
    }
}

fn loc_ident(id: &ast::Ident) -> Loc {
    Loc(id.span.start.line, id.span.start.column)
}

/// What the planner needs to know about an existing catalog object.
#[derive(Clone, Debug)]
pub struct ObjectInfo {
    pub schema: Schema,
    /// The object only ever grows (an append-only table, or a view over one).
    pub monotonic: bool,
    /// Columns that identify a row: an upsert table's primary key, a view's key.
    pub key: Option<Vec<usize>>,
    /// Event-time settings for patterns over the object.
    pub watermark: Watermark,
}

/// Name resolution against the catalog; names are case-insensitive.
pub trait CatalogLookup {
    fn lookup(&self, name: &str) -> Option<ObjectInfo>;
}

type Result<T> = std::result::Result<T, PlanError>;

fn unsupported(what: impl std::fmt::Display, at: Loc) -> PlanError {
    PlanError::new("unsupported", format!("{what} is not supported"), at)
}

/// Plans a job: a script of `CREATE TABLE` and `CREATE [MATERIALIZED] VIEW`
/// statements. Later statements may use objects of earlier ones.
pub fn plan_job(sql: &str, catalog: &dyn CatalogLookup) -> Result<JobPlan> {
    let (statements, ext, sinks) = parse_with_sinks(sql)?;
    if statements.is_empty() && sinks.is_empty() {
        return Err(PlanError::new("empty_job", "the job contains no statements", Loc(1, 1)));
    }
    let mut job = JobPlan::default();
    for stmt in &statements {
        let scope = JobScope { catalog, job: &job };
        match stmt {
            Statement::CreateTable(ct) => {
                let table = plan_table(ct, &scope)?;
                job.tables.push(table);
            }
            Statement::CreateView(cv) => {
                let view = plan_view(cv, &scope, &ext)?;
                job.views.push(view);
            }
            Statement::Set(ast::Set::SingleAssignment { variable, values, .. }) => {
                job.start = plan_start(variable, values)?;
            }
            Statement::Drop { .. } => {
                return Err(PlanError::new(
                    "unsupported",
                    "DROP is not part of a job: run it on its own (POST /v1/sql, or `weir sql`)",
                    loc_of_statement(stmt),
                ));
            }
            other => {
                let kind = other.to_string();
                let kind: String = kind.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
                return Err(PlanError::new(
                    "unsupported",
                    format!("{kind} is not supported in a job: a job holds CREATE TABLE, CREATE VIEW and CREATE SINK statements"),
                    loc_of(other),
                ));
            }
        }
    }
    for st in &sinks {
        let sink = kafka::plan_sink(st, &job, catalog)?;
        job.sinks.push(sink);
    }
    Ok(job)
}

/// `SET 'auto.offset.reset' = 'earliest' | 'latest'` (ksqlDB's setting):
/// where the job's sources start.
fn plan_start(variable: &ObjectName, values: &[Expr]) -> Result<StartFrom> {
    let at = loc_of(variable);
    let name = variable
        .to_string()
        .trim_matches(|c| c == '\'' || c == '"')
        .to_lowercase();
    if name != "auto.offset.reset" {
        return Err(PlanError::new(
            "invalid_option",
            format!("unknown setting '{name}' (known: 'auto.offset.reset')"),
            at,
        ));
    }
    let [value] = values else {
        return Err(PlanError::new("invalid_option", "SET takes one value", at));
    };
    match option_value(value)?.to_lowercase().as_str() {
        "earliest" => Ok(StartFrom::Earliest),
        "latest" => Ok(StartFrom::Latest),
        other => Err(PlanError::new(
            "invalid_option",
            format!(
                "'auto.offset.reset' is 'earliest' (replay the history) or 'latest' (only new events), not '{other}'"
            ),
            loc_of(value),
        )),
    }
}

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
    let line_starts = pattern::line_starts(script);
    // A token ends just before its end location.
    let offset_after = |loc| pattern::byte_offset(script, &line_starts, loc);
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

/// Parses SQL, turning parser errors into [`PlanError`]s with a position.
/// weir's extensions to the grammar (`WITHIN … [EMIT TIMEOUTS]` in
/// `MATCH_RECOGNIZE`) are accepted and left out of the statements.
pub fn parse(sql: &str) -> Result<Vec<Statement>> {
    parse_extended(sql).map(|(statements, _)| statements)
}

fn parse_extended(sql: &str) -> Result<(Vec<Statement>, pattern::Extensions)> {
    parse_with_sinks(sql).map(|(statements, ext, _)| (statements, ext))
}

fn parse_with_sinks(sql: &str) -> Result<(Vec<Statement>, pattern::Extensions, Vec<kafka::SinkStatement>)> {
    let (text, sinks) = kafka::cut_sinks(sql)?;
    let (text, ext) = pattern::cut_extensions(&text)?;
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

/// The position just after the last character of `sql`.
fn end_of(sql: &str) -> (u64, u64) {
    let trimmed = sql.trim_end();
    let line = trimmed.lines().count().max(1) as u64;
    let column = trimmed.lines().last().map_or(0, |l| l.chars().count()) as u64 + 1;
    (line, column)
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

/// Objects visible to a statement: the catalog plus the job's earlier objects.
struct JobScope<'a> {
    catalog: &'a dyn CatalogLookup,
    job: &'a JobPlan,
}

impl JobScope<'_> {
    fn lookup(&self, name: &str) -> Option<ObjectInfo> {
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

fn object_name(name: &ObjectName) -> Result<String> {
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
fn ident_name(id: &ast::Ident) -> String {
    if id.quote_style.is_some() {
        id.value.clone()
    } else {
        id.value.to_lowercase()
    }
}

fn check_new_name(name: &str, scope: &JobScope, at: Loc) -> Result<()> {
    if scope.lookup(name).is_some() {
        return Err(PlanError::new(
            "duplicate_name",
            format!("an object named \"{name}\" already exists"),
            at,
        ));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(PlanError::new(
            "invalid_name",
            format!("\"{name}\" is not a valid name: use letters, digits and _"),
            at,
        ));
    }
    Ok(())
}

fn sql_type(dt: &DataType, at: Loc) -> Result<SqlType> {
    use DataType as D;
    Ok(match dt {
        D::Bool | D::Boolean => SqlType::Bool,
        D::SmallInt(_) | D::Int2(_) => SqlType::SmallInt,
        D::Int(_) | D::Integer(_) | D::Int4(_) => SqlType::Int,
        D::BigInt(_) | D::Int8(_) => SqlType::BigInt,
        D::Real | D::Float4 => SqlType::Real,
        D::Double(_) | D::DoublePrecision | D::Float8 | D::Float(_) => SqlType::Double,
        D::Decimal(info) | D::Numeric(info) | D::Dec(info) => {
            let (p, s) = match info {
                ast::ExactNumberInfo::None => (28, 6),
                ast::ExactNumberInfo::Precision(p) => (*p, 0),
                ast::ExactNumberInfo::PrecisionAndScale(p, s) => (*p, (*s).max(0) as u64),
            };
            if p == 0 || p > 28 || s > p {
                return Err(PlanError::new(
                    "type_error",
                    format!(
                        "DECIMAL({p},{s}) is out of range: precision must be 1..=28 and scale at most the precision"
                    ),
                    at,
                ));
            }
            SqlType::Decimal(p as u8, s as u8)
        }
        D::Text
        | D::Varchar(_)
        | D::String(_)
        | D::CharVarying(_)
        | D::CharacterVarying(_)
        | D::Char(_)
        | D::Character(_) => SqlType::Text,
        D::Timestamp(_, tz) => {
            if matches!(tz, ast::TimezoneInfo::WithTimeZone | ast::TimezoneInfo::Tz) {
                return Err(unsupported("TIMESTAMP WITH TIME ZONE", at));
            }
            SqlType::Timestamp
        }
        other => return Err(unsupported(format!("type {other}"), at)),
    })
}

fn plan_table(ct: &ast::CreateTable, scope: &JobScope) -> Result<TablePlan> {
    let at = loc_of(&ct.name);
    let name = object_name(&ct.name)?;
    check_new_name(&name, scope, at)?;
    let mut columns = Vec::new();
    let mut primary_key: Option<Vec<usize>> = None;
    for (i, cd) in ct.columns.iter().enumerate() {
        let cname = ident_name(&cd.name);
        if columns.iter().any(|c: &Column| c.name == cname) {
            return Err(PlanError::new(
                "duplicate_name",
                format!("column \"{cname}\" is defined twice"),
                loc_ident(&cd.name),
            ));
        }
        let ty = sql_type(&cd.data_type, loc_ident(&cd.name))?;
        let mut nullable = true;
        for opt in &cd.options {
            match &opt.option {
                ast::ColumnOption::NotNull => nullable = false,
                ast::ColumnOption::Null => {}
                ast::ColumnOption::PrimaryKey(_) => {
                    if primary_key.is_some() {
                        return Err(PlanError::new(
                            "invalid_key",
                            "more than one PRIMARY KEY",
                            loc_ident(&cd.name),
                        ));
                    }
                    primary_key = Some(vec![i]);
                    nullable = false;
                }
                other => return Err(unsupported(format!("column option {other}"), loc_ident(&cd.name))),
            }
        }
        columns.push(Column {
            name: cname,
            ty,
            nullable,
        });
    }
    if columns.is_empty() {
        return Err(PlanError::new("invalid_table", "a table needs at least one column", at));
    }
    for c in &ct.constraints {
        match c {
            ast::TableConstraint::PrimaryKey(pk) => {
                if primary_key.is_some() {
                    return Err(PlanError::new("invalid_key", "more than one PRIMARY KEY", at));
                }
                let mut key = Vec::new();
                for ic in &pk.columns {
                    let Expr::Identifier(id) = &ic.column.expr else {
                        return Err(unsupported("an expression in PRIMARY KEY", loc_of(&ic.column.expr)));
                    };
                    let cname = ident_name(id);
                    let i = columns.iter().position(|c| c.name == cname).ok_or_else(|| {
                        PlanError::new(
                            "unknown_column",
                            format!("PRIMARY KEY column \"{cname}\" is not a column of {name}"),
                            loc_ident(id),
                        )
                    })?;
                    columns[i].nullable = false;
                    key.push(i);
                }
                primary_key = Some(key);
            }
            other => return Err(unsupported(format!("constraint {other}"), at)),
        }
    }
    let options = match &ct.table_options {
        ast::CreateTableOptions::With(opts) => opts.clone(),
        ast::CreateTableOptions::None => Vec::new(),
        _ => return Err(unsupported("table options other than WITH (...)", at)),
    };
    let mut connector = None;
    let mut topic = None;
    let mut format = None;
    let mut watermark = Watermark::default();
    let mut kafka = kafka::Options::default();
    for opt in &options {
        let ast::SqlOption::KeyValue { key, value } = opt else {
            return Err(unsupported(format!("option {opt}"), at));
        };
        let k = key.to_string().trim_matches(|c| c == '\'' || c == '"').to_lowercase();
        let v = option_value(value)?;
        match k.as_str() {
            "connector" => connector = Some(v),
            "topic" => topic = Some((v, loc_of(value))),
            "format" => format = Some(v),
            "watermark.lateness" | "watermark.idle" => pattern::watermark_option(&mut watermark, &k, &v, loc_of(value))?,
            _ if kafka.accepts(&k) => kafka.set(&k, v, loc_of(value)),
            other => {
                return Err(PlanError::new(
                    "invalid_option",
                    format!(
                        "unknown table option '{other}' (known: connector, topic, format, watermark.lateness, watermark.idle; for Kafka: {})",
                        kafka::KNOWN
                    ),
                    loc_of(value),
                ))
            }
        }
    }
    let connector = match connector.as_deref() {
        None | Some("log") => {
            if let Some((k, _, at)) = kafka.first() {
                return Err(PlanError::new(
                    "invalid_option",
                    format!("option '{k}' is for connector 'kafka'"),
                    at,
                ));
            }
            Connector::Log {
                topic: topic.map_or_else(|| name.clone(), |(t, _)| t),
            }
        }
        Some("kafka") => Connector::Kafka(kafka.source(&name, topic, at)?),
        Some(other) => {
            return Err(PlanError::new(
                "invalid_option",
                format!("unknown connector '{other}' (known: log, kafka)"),
                at,
            ))
        }
    };
    match format.as_deref() {
        None | Some("json") => {}
        Some(other) => {
            return Err(PlanError::new(
                "invalid_option",
                format!("unknown format '{other}' (known: json)"),
                at,
            ))
        }
    }
    Ok(TablePlan {
        name,
        schema: Schema { columns },
        primary_key,
        connector,
        watermark,
    })
}

fn option_value(e: &Expr) -> Result<String> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => Ok(s.clone()),
            Value::Number(n, _) => Ok(n.clone()),
            Value::Boolean(b) => Ok(b.to_string()),
            _ => Err(PlanError::new(
                "invalid_option",
                format!("option value {e} must be a string"),
                loc_of(e),
            )),
        },
        Expr::Identifier(id) => Ok(id.value.clone()),
        _ => Err(PlanError::new(
            "invalid_option",
            format!("option value {e} must be a string"),
            loc_of(e),
        )),
    }
}

fn plan_view(cv: &ast::CreateView, scope: &JobScope, ext: &pattern::Extensions) -> Result<ViewPlan> {
    let at = loc_of(&cv.name);
    let name = object_name(&cv.name)?;
    check_new_name(&name, scope, at)?;
    let mut planner = QueryPlanner {
        scope,
        depends_on: BTreeSet::new(),
        ext,
    };
    let mut rel = planner.plan_query(&cv.query, None)?;
    if !cv.columns.is_empty() {
        if cv.columns.len() != rel.columns.len() {
            return Err(PlanError::new(
                "type_error",
                format!(
                    "view {name} names {} columns but its query has {}",
                    cv.columns.len(),
                    rel.columns.len()
                ),
                at,
            ));
        }
        for (c, vc) in rel.columns.iter_mut().zip(&cv.columns) {
            c.name = ident_name(&vc.name);
        }
    }
    let mut seen = BTreeSet::new();
    for c in &rel.columns {
        if !seen.insert(c.name.clone()) {
            return Err(PlanError::new(
                "duplicate_name",
                format!("view {name} has two columns named \"{}\": give one an alias", c.name),
                loc_of(&*cv.query),
            ));
        }
    }
    let schema = Schema {
        columns: rel.columns.iter().map(ScopeColumn::column).collect(),
    };
    let plan = optimize(rel.plan);
    let watermark = pattern::combined_watermark(&plan, &|n| scope.lookup(n).map(|i| i.watermark));
    let key = plan
        .unique_key(&|n| scope.lookup(n).and_then(|info| info.key))
        .filter(|k| !k.is_empty());
    Ok(ViewPlan {
        name,
        plan,
        schema,
        key,
        depends_on: planner.depends_on.into_iter().collect(),
        monotonic: rel.monotonic,
        watermark,
    })
}

/// A column in scope while planning.
#[derive(Clone, Debug)]
struct ScopeColumn {
    /// Table name or alias that qualifies it, if any.
    qualifier: Option<String>,
    name: String,
    ty: SqlType,
    nullable: bool,
}

impl ScopeColumn {
    /// The column as a schema shows it (without its qualifier).
    fn column(&self) -> Column {
        Column {
            name: self.name.clone(),
            ty: self.ty,
            nullable: self.nullable,
        }
    }
}

/// A planned relation with its columns.
#[derive(Clone, Debug)]
struct Rel {
    plan: RelPlan,
    columns: Vec<ScopeColumn>,
    monotonic: bool,
}

/// A typed scalar expression.
#[derive(Clone, Debug)]
struct Typed {
    expr: ScalarExpr,
    ty: SqlType,
    nullable: bool,
}

struct QueryPlanner<'a> {
    scope: &'a JobScope<'a>,
    depends_on: BTreeSet<String>,
    /// `WITHIN` clauses and `PATTERN` positions of the statement's text.
    ext: &'a pattern::Extensions,
}

/// How aggregates are resolved while binding an expression: outside a
/// grouped query they are errors; inside, group keys and aggregates map to
/// the Reduce's output columns.
struct GroupContext<'a> {
    /// GROUP BY expressions (as SQL text) with their output column.
    keys: Vec<(String, usize)>,
    aggregates: &'a mut Vec<(String, Aggregate, Typed)>,
    nkeys: usize,
    /// The pre-aggregation scope, where aggregate arguments are bound.
    input: &'a [ScopeColumn],
}

impl QueryPlanner<'_> {
    fn plan_query(&mut self, q: &ast::Query, outer_alias: Option<&str>) -> Result<Rel> {
        if q.with.is_some() {
            return Err(unsupported("WITH (common table expressions)", loc_of(q)));
        }
        if q.fetch.is_some() || !q.locks.is_empty() {
            return Err(unsupported("FETCH / FOR UPDATE", loc_of(q)));
        }
        let mut rel = self.plan_set_expr(&q.body)?;
        let limit = match &q.limit_clause {
            None => None,
            Some(ast::LimitClause::LimitOffset { limit, offset, .. }) => {
                if offset.is_some() {
                    return Err(unsupported("OFFSET in a view", loc_of(q)));
                }
                match limit {
                    None => None,
                    Some(e) => Some(self.const_usize(e)?),
                }
            }
            Some(other) => return Err(unsupported(format!("{other}"), loc_of(q))),
        };
        if let Some(limit) = limit {
            // ORDER BY … LIMIT n in a view: a global top-n.
            let mut order = Vec::new();
            if let Some(ob) = &q.order_by {
                order = self.order_keys(ob, &rel.columns)?;
            }
            let arity = rel.columns.len();
            rel.plan = RelPlan::Project {
                input: Box::new(RelPlan::TopK {
                    input: Box::new(rel.plan),
                    partition_by: vec![],
                    order_by: order,
                    limit: Some(limit),
                    monotonic: rel.monotonic,
                    input_arity: arity,
                }),
                outputs: (0..arity).collect(),
            };
            rel.monotonic = false;
        }
        // ORDER BY without LIMIT does not change a view's contents: views are
        // sets; readers order at query time.
        if let Some(alias) = outer_alias {
            for c in &mut rel.columns {
                c.qualifier = Some(alias.to_string());
            }
        }
        Ok(rel)
    }

    fn const_usize(&self, e: &Expr) -> Result<usize> {
        match e {
            Expr::Value(v) => match &v.value {
                Value::Number(n, _) => n
                    .parse()
                    .map_err(|_| PlanError::new("type_error", format!("{n} is not a row count"), loc_of(e))),
                _ => Err(PlanError::new("type_error", "LIMIT takes a number", loc_of(e))),
            },
            _ => Err(PlanError::new("type_error", "LIMIT takes a constant number", loc_of(e))),
        }
    }

    fn order_keys(&mut self, ob: &ast::OrderBy, columns: &[ScopeColumn]) -> Result<Vec<OrderKey>> {
        let ast::OrderByKind::Expressions(exprs) = &ob.kind else {
            return Err(unsupported("ORDER BY ALL", loc_of(ob)));
        };
        let mut keys = Vec::new();
        for o in exprs {
            let column = match &o.expr {
                Expr::Value(v) if matches!(v.value, Value::Number(..)) => {
                    let n = self.const_usize(&o.expr)?;
                    if n == 0 || n > columns.len() {
                        return Err(PlanError::new(
                            "unknown_column",
                            format!("ORDER BY position {n} is not in the select list"),
                            loc_of(&o.expr),
                        ));
                    }
                    n - 1
                }
                other => {
                    let t = bind(other, columns, None)?;
                    match t.expr {
                        ScalarExpr::Column(i) => i,
                        _ => {
                            return Err(unsupported(
                                "ORDER BY an expression (order by an output column)",
                                loc_of(other),
                            ))
                        }
                    }
                }
            };
            let desc = matches!(o.options.sort, Some(ast::OrderBySort::Desc));
            keys.push(OrderKey {
                column,
                desc,
                nulls_first: o.options.nulls_first.unwrap_or(desc),
            });
        }
        Ok(keys)
    }

    fn plan_set_expr(&mut self, body: &SetExpr) -> Result<Rel> {
        match body {
            SetExpr::Select(s) => self.plan_select(s),
            SetExpr::Query(q) => self.plan_query(q, None),
            SetExpr::SetOperation {
                left,
                op,
                set_quantifier,
                right,
            } => {
                if *op != SetOperator::Union {
                    return Err(unsupported(format!("{op}"), loc_of(body)));
                }
                let l = self.plan_set_expr(left)?;
                let r = self.plan_set_expr(right)?;
                if l.columns.len() != r.columns.len() {
                    return Err(PlanError::new(
                        "type_error",
                        format!(
                            "each UNION query must have the same number of columns ({} vs {})",
                            l.columns.len(),
                            r.columns.len()
                        ),
                        loc_of(&**right),
                    ));
                }
                let mut columns = l.columns.clone();
                let mut lcast = Vec::new();
                let mut rcast = Vec::new();
                for (i, (c, rc)) in columns.iter_mut().zip(&r.columns).enumerate() {
                    let ty = unify(c.ty, rc.ty).ok_or_else(|| {
                        PlanError::new(
                            "type_error",
                            format!("UNION types {} and {} cannot be matched", c.ty, rc.ty),
                            loc_of(&**right),
                        )
                    })?;
                    lcast.push(coerce(ScalarExpr::Column(i), c.ty, ty));
                    rcast.push(coerce(ScalarExpr::Column(i), rc.ty, ty));
                    c.ty = ty;
                    c.nullable |= rc.nullable;
                    c.qualifier = None;
                }
                let arity = columns.len();
                let project = |plan: RelPlan, exprs: Vec<ScalarExpr>| RelPlan::Project {
                    input: Box::new(RelPlan::Map {
                        input: Box::new(plan),
                        exprs,
                    }),
                    outputs: (arity..2 * arity).collect(),
                };
                let all = RelPlan::UnionAll {
                    inputs: vec![project(l.plan, lcast), project(r.plan, rcast)],
                };
                let distinct = !matches!(set_quantifier, SetQuantifier::All);
                Ok(Rel {
                    plan: if distinct {
                        RelPlan::Distinct { input: Box::new(all) }
                    } else {
                        all
                    },
                    columns,
                    monotonic: l.monotonic && r.monotonic && !distinct,
                })
            }
            other => Err(unsupported(
                other.to_string().split_whitespace().next().unwrap_or("this query"),
                loc_of(other),
            )),
        }
    }

    fn plan_from(&mut self, from: &[ast::TableWithJoins]) -> Result<Rel> {
        let mut acc: Option<Rel> = None;
        for twj in from {
            let mut rel = self.plan_factor(&twj.relation)?;
            for j in &twj.joins {
                let right = self.plan_factor(&j.relation)?;
                let (kind, constraint) = match &j.join_operator {
                    JoinOperator::Join(c) | JoinOperator::Inner(c) => (JoinKind::Inner, Some(c)),
                    JoinOperator::Left(c) | JoinOperator::LeftOuter(c) => (JoinKind::Left, Some(c)),
                    JoinOperator::CrossJoin(_) => (JoinKind::Inner, None),
                    other => {
                        // "FullOuter(..)" → "FULL OUTER JOIN".
                        let text = format!("{other:?}");
                        let variant = text.split('(').next().unwrap_or("this");
                        let mut name = String::new();
                        for c in variant.chars() {
                            if c.is_uppercase() && !name.is_empty() {
                                name.push(' ');
                            }
                            name.push(c.to_ascii_uppercase());
                        }
                        return Err(unsupported(format!("{name} JOIN"), loc_of(&j.relation)));
                    }
                };
                rel = self.plan_join(rel, right, kind, constraint, loc_of(&j.relation))?;
            }
            acc = Some(match acc {
                None => rel,
                Some(left) => self.plan_join(left, rel, JoinKind::Inner, None, loc_of(&twj.relation))?,
            });
        }
        Ok(acc.unwrap_or_else(|| Rel {
            plan: RelPlan::Constant { rows: vec![vec![]] },
            columns: vec![],
            monotonic: true,
        }))
    }

    fn plan_factor(&mut self, f: &TableFactor) -> Result<Rel> {
        match f {
            TableFactor::Table { name, alias, args, .. } => {
                if args.is_some() {
                    return Err(unsupported("table functions", loc_of(name)));
                }
                let n = object_name(name)?;
                let info = self.scope.lookup(&n).ok_or_else(|| {
                    PlanError::new("unknown_table", format!("unknown table or view \"{n}\""), loc_of(name))
                })?;
                self.depends_on.insert(n.clone());
                let qualifier = match alias {
                    Some(a) => {
                        if !a.columns.is_empty() {
                            return Err(unsupported("column aliases on a table", loc_of(name)));
                        }
                        ident_name(&a.name)
                    }
                    None => n.clone(),
                };
                Ok(Rel {
                    plan: RelPlan::Get { name: n },
                    columns: info
                        .schema
                        .columns
                        .iter()
                        .map(|c| ScopeColumn {
                            qualifier: Some(qualifier.clone()),
                            name: c.name.clone(),
                            ty: c.ty,
                            nullable: c.nullable,
                        })
                        .collect(),
                    monotonic: info.monotonic,
                })
            }
            TableFactor::Derived {
                lateral,
                subquery,
                alias,
                ..
            } => {
                if *lateral {
                    return Err(unsupported("LATERAL", loc_of(&**subquery)));
                }
                let alias = alias.as_ref().map(|a| ident_name(&a.name));
                self.plan_query(subquery, alias.as_deref())
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                if alias.is_some() {
                    return Err(unsupported("an alias on a parenthesized join", loc_of(f)));
                }
                self.plan_from(std::slice::from_ref(table_with_joins))
            }
            TableFactor::MatchRecognize { .. } => self.plan_match_recognize(f),
            other => Err(unsupported(format!("FROM {other}"), loc_of(other))),
        }
    }

    fn plan_join(
        &mut self,
        left: Rel,
        right: Rel,
        kind: JoinKind,
        constraint: Option<&JoinConstraint>,
        at: Loc,
    ) -> Result<Rel> {
        let nl = left.columns.len();
        let mut columns = left.columns.clone();
        columns.extend(right.columns.iter().cloned().map(|mut c| {
            if kind == JoinKind::Left {
                c.nullable = true;
            }
            c
        }));
        let mut conjuncts = Vec::new();
        match constraint {
            None | Some(JoinConstraint::None) => {}
            Some(JoinConstraint::On(e)) => {
                let t = bind(e, &columns, None)?;
                expect_bool(&t, e)?;
                split_conjuncts(t.expr, &mut conjuncts);
            }
            Some(JoinConstraint::Using(names)) => {
                for n in names {
                    let name = object_name(n)?;
                    let li = resolve(&left.columns, None, &name, loc_of(n))?;
                    let ri = resolve(&right.columns, None, &name, loc_of(n))?;
                    conjuncts.push(ScalarExpr::Cmp(
                        CmpOp::Eq,
                        Box::new(ScalarExpr::Column(li)),
                        Box::new(ScalarExpr::Column(nl + ri)),
                    ));
                }
            }
            Some(other) => return Err(unsupported(format!("join constraint {other:?}"), at)),
        }
        let mut left_key = Vec::new();
        let mut right_key = Vec::new();
        let mut residual = Vec::new();
        for c in conjuncts {
            if let ScalarExpr::Cmp(CmpOp::Eq, a, b) = &c {
                let side = |e: &ScalarExpr| {
                    let mut cols = Vec::new();
                    e.columns(&mut cols);
                    if cols.is_empty() {
                        None
                    } else if cols.iter().all(|&i| i < nl) {
                        Some(true)
                    } else if cols.iter().all(|&i| i >= nl) {
                        Some(false)
                    } else {
                        None
                    }
                };
                match (side(a), side(b)) {
                    (Some(true), Some(false)) => {
                        let mut r = (**b).clone();
                        r.permute(&|i| i - nl);
                        left_key.push((**a).clone());
                        right_key.push(r);
                        continue;
                    }
                    (Some(false), Some(true)) => {
                        let mut r = (**a).clone();
                        r.permute(&|i| i - nl);
                        left_key.push((**b).clone());
                        right_key.push(r);
                        continue;
                    }
                    _ => {}
                }
            }
            residual.push(c);
        }
        Ok(Rel {
            plan: RelPlan::Join {
                left: Box::new(left.plan),
                right: Box::new(right.plan),
                left_key,
                right_key,
                residual,
                kind,
                right_arity: right.columns.len(),
            },
            columns,
            monotonic: left.monotonic && right.monotonic && kind == JoinKind::Inner,
        })
    }

    fn plan_select(&mut self, s: &ast::Select) -> Result<Rel> {
        let at = loc_of(s);
        if s.top.is_some() || s.into.is_some() || !s.lateral_views.is_empty() || s.qualify.is_some() {
            return Err(unsupported("TOP / INTO / LATERAL VIEW / QUALIFY", at));
        }
        if !s.named_window.is_empty() {
            return Err(unsupported("WINDOW clauses", at));
        }
        let mut rel = self.plan_from(&s.from)?;
        if let Some(w) = &s.selection {
            if contains_aggregate(w) {
                return Err(PlanError::new(
                    "aggregate_error",
                    "aggregate functions are not allowed in WHERE",
                    loc_of(w),
                ));
            }
            let t = bind(w, &rel.columns, None)?;
            expect_bool(&t, w)?;
            let mut preds = Vec::new();
            split_conjuncts(t.expr, &mut preds);
            rel.plan = RelPlan::Filter {
                input: Box::new(rel.plan),
                predicates: preds,
            };
        }

        // Expand the select list (wildcards) into (expr, name) pairs.
        let mut items: Vec<(Expr, String)> = Vec::new();
        for item in &s.projection {
            match item {
                SelectItem::UnnamedExpr(e) => items.push((e.clone(), default_name(e))),
                SelectItem::ExprWithAlias { expr, alias } => items.push((expr.clone(), ident_name(alias))),
                SelectItem::ExprWithAliases { .. } => {
                    return Err(unsupported("multiple aliases for one select item", at))
                }
                SelectItem::Wildcard(_) => {
                    for c in &rel.columns {
                        items.push((column_expr(c), c.name.clone()));
                    }
                }
                SelectItem::QualifiedWildcard(kind, _) => {
                    let q = match kind {
                        ast::SelectItemQualifiedWildcardKind::ObjectName(n) => object_name(n)?,
                        ast::SelectItemQualifiedWildcardKind::Expr(e) => {
                            return Err(unsupported(format!("{e}.*"), loc_of(e)))
                        }
                    };
                    let cols: Vec<_> = rel
                        .columns
                        .iter()
                        .filter(|c| c.qualifier.as_deref() == Some(q.as_str()))
                        .collect();
                    if cols.is_empty() {
                        return Err(PlanError::new(
                            "unknown_table",
                            format!("unknown table \"{q}\" in {q}.*"),
                            at,
                        ));
                    }
                    for c in cols {
                        items.push((column_expr(c), c.name.clone()));
                    }
                }
            }
        }

        let group_exprs: Vec<Expr> = match &s.group_by {
            GroupByExpr::Expressions(exprs, mods) => {
                if !mods.is_empty() {
                    return Err(unsupported("GROUP BY modifiers", at));
                }
                exprs
                    .iter()
                    .map(|e| match e {
                        // GROUP BY 2 names the second select item.
                        Expr::Value(v) if matches!(v.value, Value::Number(..)) => {
                            let n = self.const_usize(e)?;
                            items.get(n.wrapping_sub(1)).map(|(e, _)| e.clone()).ok_or_else(|| {
                                PlanError::new(
                                    "unknown_column",
                                    format!("GROUP BY position {n} is not in the select list"),
                                    loc_of(e),
                                )
                            })
                        }
                        _ => Ok(e.clone()),
                    })
                    .collect::<Result<_>>()?
            }
            GroupByExpr::All(_) => return Err(unsupported("GROUP BY ALL", at)),
        };
        let has_aggs =
            items.iter().any(|(e, _)| contains_aggregate(e)) || s.having.as_ref().is_some_and(contains_aggregate);
        let window_items: Vec<usize> = items
            .iter()
            .enumerate()
            .filter(|(_, (e, _))| is_window_call(e))
            .map(|(i, _)| i)
            .collect();

        let mut typed_items: Vec<Typed>;
        let post_columns: Vec<ScopeColumn>;
        if has_aggs || !group_exprs.is_empty() || s.having.is_some() {
            if !window_items.is_empty() {
                return Err(unsupported(
                    "window functions together with GROUP BY (use a subquery)",
                    at,
                ));
            }
            let mut keys = Vec::new();
            let mut key_typed = Vec::new();
            for g in &group_exprs {
                if contains_aggregate(g) {
                    return Err(PlanError::new(
                        "aggregate_error",
                        "aggregate functions are not allowed in GROUP BY",
                        loc_of(g),
                    ));
                }
                let t = bind(g, &rel.columns, None)?;
                keys.push((g.to_string(), key_typed.len()));
                key_typed.push(t);
            }
            let mut aggregates = Vec::new();
            let nkeys = key_typed.len();
            let input_cols = rel.columns.clone();
            let mut ctx = GroupContext {
                keys: keys.clone(),
                aggregates: &mut aggregates,
                nkeys,
                input: &input_cols,
            };
            typed_items = Vec::new();
            for (e, _) in &items {
                typed_items.push(bind(e, &[], Some(&mut ctx))?);
            }
            let having = match &s.having {
                Some(h) => {
                    let t = bind(h, &[], Some(&mut ctx))?;
                    expect_bool(&t, h)?;
                    Some(t)
                }
                None => None,
            };
            // Columns of the Reduce's output, for naming.
            let mut reduce_cols: Vec<ScopeColumn> = key_typed
                .iter()
                .zip(&group_exprs)
                .map(|(t, g)| ScopeColumn {
                    qualifier: None,
                    name: default_name(g),
                    ty: t.ty,
                    nullable: t.nullable,
                })
                .collect();
            for (text, _, t) in aggregates.iter() {
                reduce_cols.push(ScopeColumn {
                    qualifier: None,
                    name: text.clone(),
                    ty: t.ty,
                    nullable: t.nullable,
                });
            }
            rel.plan = RelPlan::Reduce {
                input: Box::new(rel.plan),
                group_key: key_typed.into_iter().map(|t| t.expr).collect(),
                aggregates: aggregates.into_iter().map(|(_, a, _)| a).collect(),
                monotonic: rel.monotonic,
            };
            rel.monotonic = false;
            if let Some(h) = having {
                let mut preds = Vec::new();
                split_conjuncts(h.expr, &mut preds);
                rel.plan = RelPlan::Filter {
                    input: Box::new(rel.plan),
                    predicates: preds,
                };
            }
            post_columns = reduce_cols;
        } else {
            typed_items = Vec::new();
            let mut window: Option<(Vec<usize>, Vec<OrderKey>)> = None;
            for (e, _) in &items {
                if is_window_call(e) {
                    let spec = self.plan_row_number(e, &rel.columns)?;
                    if window.as_ref().is_some_and(|w| *w != spec) {
                        return Err(unsupported(
                            "several different window specifications in one SELECT",
                            loc_of(e),
                        ));
                    }
                    window = Some(spec);
                    // Placeholder; rewritten once the TopK is in place.
                    typed_items.push(Typed {
                        expr: ScalarExpr::Column(rel.columns.len()),
                        ty: SqlType::BigInt,
                        nullable: false,
                    });
                } else {
                    typed_items.push(bind(e, &rel.columns, None)?);
                }
            }
            if let Some((partition_by, order_by)) = window {
                rel.plan = RelPlan::TopK {
                    input: Box::new(rel.plan),
                    partition_by,
                    order_by,
                    limit: None,
                    monotonic: rel.monotonic,
                    input_arity: rel.columns.len(),
                };
                rel.monotonic = false;
                rel.columns.push(ScopeColumn {
                    qualifier: None,
                    name: "row_number".into(),
                    ty: SqlType::BigInt,
                    nullable: false,
                });
            }
            post_columns = rel.columns.clone();
        }

        // Final projection: Map the items, then Project onto them.
        let base = post_columns.len();
        let mut outputs = Vec::new();
        let mut exprs = Vec::new();
        for t in &typed_items {
            match t.expr {
                ScalarExpr::Column(i) => outputs.push(i),
                _ => {
                    outputs.push(base + exprs.len());
                    exprs.push(t.expr.clone());
                }
            }
        }
        let mut plan = rel.plan;
        if !exprs.is_empty() {
            plan = RelPlan::Map {
                input: Box::new(plan),
                exprs,
            };
        }
        if outputs.iter().copied().ne(0..base) {
            plan = RelPlan::Project {
                input: Box::new(plan),
                outputs,
            };
        }
        let columns: Vec<ScopeColumn> = typed_items
            .iter()
            .zip(&items)
            .map(|(t, (_, name))| ScopeColumn {
                qualifier: None,
                name: name.clone(),
                ty: t.ty,
                nullable: t.nullable,
            })
            .collect();
        let mut monotonic = rel.monotonic;
        if s.distinct.is_some() {
            if let Some(ast::Distinct::On(_)) = &s.distinct {
                return Err(unsupported("DISTINCT ON", at));
            }
            plan = RelPlan::Distinct { input: Box::new(plan) };
            monotonic = false;
        }
        Ok(Rel {
            plan,
            columns,
            monotonic,
        })
    }

    /// `ROW_NUMBER() OVER (PARTITION BY … ORDER BY …)` → partition and order columns.
    fn plan_row_number(&mut self, e: &Expr, columns: &[ScopeColumn]) -> Result<(Vec<usize>, Vec<OrderKey>)> {
        let Expr::Function(f) = e else {
            return Err(unsupported("this window expression", loc_of(e)));
        };
        let name = f.name.to_string().to_lowercase();
        if name != "row_number" {
            return Err(unsupported(
                format!("window function {name} (only ROW_NUMBER is)"),
                loc_of(e),
            ));
        }
        let Some(ast::WindowType::WindowSpec(spec)) = &f.over else {
            return Err(unsupported("named windows", loc_of(e)));
        };
        if spec.window_frame.is_some() {
            return Err(unsupported("window frames", loc_of(e)));
        }
        let mut partition = Vec::new();
        for p in &spec.partition_by {
            match bind(p, columns, None)?.expr {
                ScalarExpr::Column(i) => partition.push(i),
                _ => return Err(unsupported("PARTITION BY an expression (use a column)", loc_of(p))),
            }
        }
        let mut order = Vec::new();
        for o in &spec.order_by {
            let column = match bind(&o.expr, columns, None)?.expr {
                ScalarExpr::Column(i) => i,
                _ => {
                    return Err(unsupported(
                        "ORDER BY an expression in OVER (use a column)",
                        loc_of(&o.expr),
                    ))
                }
            };
            let desc = matches!(o.options.sort, Some(ast::OrderBySort::Desc));
            order.push(OrderKey {
                column,
                desc,
                nulls_first: o.options.nulls_first.unwrap_or(desc),
            });
        }
        Ok((partition, order))
    }
}

fn column_expr(c: &ScopeColumn) -> Expr {
    let id = |s: &str| ast::Ident::with_quote('"', s);
    match &c.qualifier {
        Some(q) => Expr::CompoundIdentifier(vec![id(q), id(&c.name)]),
        None => Expr::Identifier(id(&c.name)),
    }
}

/// The output name of an unaliased select item, as PostgreSQL names it.
fn default_name(e: &Expr) -> String {
    match e {
        Expr::Identifier(id) => ident_name(id),
        Expr::CompoundIdentifier(ids) => ids.last().map(ident_name).unwrap_or_default(),
        Expr::Function(f) => f.name.to_string().to_lowercase(),
        Expr::Cast { expr, .. } => default_name(expr),
        Expr::Nested(e) => default_name(e),
        Expr::Case { .. } => "case".into(),
        _ => "?column?".into(),
    }
}

const AGGREGATES: [&str; 5] = ["count", "sum", "min", "max", "avg"];

fn is_window_call(e: &Expr) -> bool {
    matches!(e, Expr::Function(f) if f.over.is_some())
}

fn contains_aggregate(e: &Expr) -> bool {
    let mut found = false;
    let _ = ast::visit_expressions(e, |e| {
        if let Expr::Function(f) = e {
            if f.over.is_none() && AGGREGATES.contains(&f.name.to_string().to_lowercase().as_str()) {
                found = true;
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    found
}

fn split_conjuncts(e: ScalarExpr, out: &mut Vec<ScalarExpr>) {
    match e {
        ScalarExpr::And(es) => es.into_iter().for_each(|e| split_conjuncts(e, out)),
        e => out.push(e),
    }
}

fn expect_bool(t: &Typed, e: &Expr) -> Result<()> {
    if t.ty != SqlType::Bool && !(t.expr == ScalarExpr::Literal(Datum::Null)) {
        return Err(PlanError::new(
            "type_error",
            format!("argument of WHERE/ON/HAVING must be BOOLEAN, not {}", t.ty),
            loc_of(e),
        ));
    }
    Ok(())
}

fn resolve(columns: &[ScopeColumn], qualifier: Option<&str>, name: &str, at: Loc) -> Result<usize> {
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

/// The common type of two types, for UNION, CASE, COALESCE and comparisons.
fn unify(a: SqlType, b: SqlType) -> Option<SqlType> {
    use SqlType::*;
    if a == b {
        return Some(a);
    }
    Some(match (a, b) {
        (x, y) if x.is_integer() && y.is_integer() => BigInt,
        (x, y) if x.is_float() && y.is_numeric() || y.is_float() && x.is_numeric() => Double,
        (Decimal(p1, s1), Decimal(p2, s2)) => {
            let s = s1.max(s2);
            Decimal(((p1 - s1).max(p2 - s2) + s).min(28), s)
        }
        (Decimal(p, s), x) | (x, Decimal(p, s)) if x.is_integer() => Decimal((p.max(19 + s)).min(28), s),
        _ => return None,
    })
}

fn coerce(e: ScalarExpr, from: SqlType, to: SqlType) -> ScalarExpr {
    let same_class = from == to
        || (from.is_integer() && to.is_integer())
        || (from.is_float() && to.is_float())
        || (matches!(from, SqlType::Decimal(..)) && matches!(to, SqlType::Decimal(..)));
    if same_class {
        e
    } else {
        ScalarExpr::Cast(Box::new(e), to)
    }
}

fn literal(d: Datum, ty: SqlType) -> Typed {
    let nullable = d.is_null();
    Typed {
        expr: ScalarExpr::Literal(d),
        ty,
        nullable,
    }
}

/// Binds a SQL expression against `columns`. With a group context, column
/// references must be group keys and aggregates become Reduce outputs.
fn bind(e: &Expr, columns: &[ScopeColumn], mut group: Option<&mut GroupContext>) -> Result<Typed> {
    let at = loc_of(e);
    if let Some(g) = group.as_deref_mut() {
        let text = e.to_string();
        if let Some((_, k)) = g.keys.iter().find(|(t, _)| *t == text) {
            let k = *k;
            // Re-derive the key's type by binding it over the input.
            let t = bind(e, g.input, None)?;
            return Ok(Typed {
                expr: ScalarExpr::Column(k),
                ty: t.ty,
                nullable: t.nullable,
            });
        }
        if let Expr::Function(f) = e {
            let name = f.name.to_string().to_lowercase();
            if f.over.is_none() && AGGREGATES.contains(&name.as_str()) {
                return bind_aggregate(f, &name, g);
            }
        }
    }
    // Binds a sub-expression in the same scope and group context.
    macro_rules! sub {
        ($x:expr) => {
            bind($x, columns, group.as_deref_mut())
        };
    }
    match e {
        Expr::Identifier(id) => bind_column(columns, None, &ident_name(id), at, group.is_some()),
        Expr::CompoundIdentifier(ids) => {
            if ids.len() != 2 {
                return Err(unsupported(format!("name {e}"), at));
            }
            bind_column(
                columns,
                Some(&ident_name(&ids[0])),
                &ident_name(&ids[1]),
                at,
                group.is_some(),
            )
        }
        Expr::Nested(inner) => sub!(inner),
        Expr::Value(v) => bind_value(&v.value, at),
        Expr::TypedString(ts) => {
            let ty = sql_type(&ts.data_type, at)?;
            let text = match &ts.value.value {
                Value::SingleQuotedString(s) => s.clone(),
                other => other.to_string(),
            };
            let d = crate::expr::cast(Datum::Text(text), ty)
                .map_err(|err| PlanError::new("type_error", err.to_string(), at))?;
            Ok(literal(d, ty))
        }
        Expr::IsNull(x) | Expr::IsNotNull(x) => {
            let t = sub!(x)?;
            let is_null = ScalarExpr::IsNull(Box::new(t.expr));
            Ok(Typed {
                expr: if matches!(e, Expr::IsNull(_)) {
                    is_null
                } else {
                    ScalarExpr::Not(Box::new(is_null))
                },
                ty: SqlType::Bool,
                nullable: false,
            })
        }
        Expr::IsTrue(x) | Expr::IsFalse(x) | Expr::IsNotTrue(x) | Expr::IsNotFalse(x) => {
            let t = sub!(x)?;
            let want = matches!(e, Expr::IsTrue(_) | Expr::IsNotTrue(_));
            let test = ScalarExpr::Coalesce(vec![
                ScalarExpr::Cmp(
                    CmpOp::Eq,
                    Box::new(t.expr),
                    Box::new(ScalarExpr::Literal(Datum::Bool(want))),
                ),
                ScalarExpr::Literal(Datum::Bool(false)),
            ]);
            let negate = matches!(e, Expr::IsNotTrue(_) | Expr::IsNotFalse(_));
            Ok(Typed {
                expr: if negate { ScalarExpr::Not(Box::new(test)) } else { test },
                ty: SqlType::Bool,
                nullable: false,
            })
        }
        Expr::UnaryOp { op, expr } => {
            let t = sub!(expr)?;
            match op {
                UnaryOperator::Not => {
                    check_type(&t, SqlType::Bool, "NOT", at)?;
                    Ok(Typed {
                        expr: ScalarExpr::Not(Box::new(t.expr)),
                        ..t
                    })
                }
                UnaryOperator::Minus => {
                    if !t.ty.is_numeric() {
                        return Err(type_err(format!("operator does not exist: - {}", t.ty), at));
                    }
                    Ok(Typed {
                        expr: ScalarExpr::Neg(Box::new(t.expr)),
                        ..t
                    })
                }
                UnaryOperator::Plus => Ok(t),
                other => Err(unsupported(format!("operator {other}"), at)),
            }
        }
        Expr::BinaryOp { left, op, right } => {
            let l = sub!(left)?;
            let r = sub!(right)?;
            bind_binary(op, l, r, at)
        }
        Expr::Between {
            expr,
            negated,
            low,
            high,
        } => {
            let x = sub!(expr)?;
            let lo = sub!(low)?;
            let hi = sub!(high)?;
            let ge = bind_binary(&BinaryOperator::GtEq, x.clone(), lo, at)?;
            let le = bind_binary(&BinaryOperator::LtEq, x, hi, at)?;
            let both = ScalarExpr::And(vec![ge.expr, le.expr]);
            Ok(Typed {
                expr: if *negated {
                    ScalarExpr::Not(Box::new(both))
                } else {
                    both
                },
                ty: SqlType::Bool,
                nullable: ge.nullable || le.nullable,
            })
        }
        Expr::In {
            expr, target, negated, ..
        } => {
            let ast::InTarget::List(list) = target else {
                return Err(unsupported("IN (subquery)", at));
            };
            let x = sub!(expr)?;
            let mut items = Vec::new();
            let mut nullable = x.nullable;
            for item in list {
                let t = sub!(item)?;
                let t = coerce_for_compare(&x, t, loc_of(item))?;
                nullable |= t.nullable;
                items.push(t.expr);
            }
            let e = ScalarExpr::InList(Box::new(x.expr), items);
            Ok(Typed {
                expr: if *negated { ScalarExpr::Not(Box::new(e)) } else { e },
                ty: SqlType::Bool,
                nullable,
            })
        }
        Expr::Like {
            negated,
            any,
            expr,
            pattern,
            escape_char,
        }
        | Expr::ILike {
            negated,
            any,
            expr,
            pattern,
            escape_char,
        } => {
            if *any || escape_char.is_some() {
                return Err(unsupported("LIKE ANY / ESCAPE", at));
            }
            let x = sub!(expr)?;
            let p = sub!(pattern)?;
            check_type(&x, SqlType::Text, "LIKE", at)?;
            check_type(&p, SqlType::Text, "LIKE", at)?;
            let e2 = ScalarExpr::Like {
                expr: Box::new(x.expr),
                pattern: Box::new(p.expr),
                case_insensitive: matches!(e, Expr::ILike { .. }),
            };
            Ok(Typed {
                expr: if *negated { ScalarExpr::Not(Box::new(e2)) } else { e2 },
                ty: SqlType::Bool,
                nullable: x.nullable || p.nullable,
            })
        }
        Expr::Case {
            operand,
            conditions,
            else_result,
            ..
        } => {
            let operand = match operand {
                Some(o) => Some(sub!(o)?),
                None => None,
            };
            let mut whens = Vec::new();
            let mut results = Vec::new();
            for cw in conditions {
                let c = sub!(&cw.condition)?;
                let cond = match &operand {
                    Some(o) => bind_binary(&BinaryOperator::Eq, o.clone(), c, loc_of(&cw.condition))?,
                    None => {
                        expect_bool(&c, &cw.condition)?;
                        c
                    }
                };
                let r = sub!(&cw.result)?;
                whens.push(cond.expr);
                results.push((r, &cw.result));
            }
            let otherwise = match else_result {
                Some(x) => Some((sub!(x)?, &**x)),
                None => None,
            };
            let all: Vec<&(Typed, &Expr)> = results.iter().chain(otherwise.iter()).collect();
            let ty = common_type(&all.iter().map(|(t, e)| (t, *e)).collect::<Vec<_>>(), "CASE")?;
            let nullable = otherwise.is_none() || all.iter().any(|(t, _)| t.nullable);
            let whens = whens
                .into_iter()
                .zip(results)
                .map(|(c, (r, _))| (c, coerce(r.expr, r.ty, ty)))
                .collect();
            let otherwise = match otherwise {
                Some((t, _)) => coerce(t.expr, t.ty, ty),
                None => ScalarExpr::Literal(Datum::Null),
            };
            Ok(Typed {
                expr: ScalarExpr::Case {
                    whens,
                    otherwise: Box::new(otherwise),
                },
                ty,
                nullable,
            })
        }
        Expr::Cast {
            expr,
            data_type,
            format,
            kind,
            ..
        } => {
            if format.is_some() || matches!(kind, ast::CastKind::TryCast | ast::CastKind::SafeCast) {
                return Err(unsupported("TRY_CAST / CAST … FORMAT", at));
            }
            let t = sub!(expr)?;
            let ty = sql_type(data_type, at)?;
            Ok(Typed {
                expr: ScalarExpr::Cast(Box::new(t.expr), ty),
                ty,
                nullable: t.nullable,
            })
        }
        Expr::Substring {
            expr,
            substring_from,
            substring_for,
            ..
        } => {
            let mut args = vec![sub!(expr)?];
            let from = match substring_from {
                Some(f) => sub!(f)?,
                None => literal(Datum::Int(1), SqlType::BigInt),
            };
            args.push(from);
            if let Some(f) = substring_for {
                args.push(sub!(f)?);
            }
            bind_call(Func::Substring, args, at)
        }
        Expr::Extract { field, expr, .. } => {
            let unit = field.to_string().to_lowercase();
            let t = sub!(expr)?;
            bind_call(Func::Extract, vec![literal(Datum::Text(unit), SqlType::Text), t], at)
        }
        Expr::Function(f) => {
            let name = f.name.to_string().to_lowercase();
            if f.over.is_some() {
                return Err(unsupported(
                    format!("window function {name} here (ROW_NUMBER() OVER may only be a select item)"),
                    at,
                ));
            }
            if AGGREGATES.contains(&name.as_str()) {
                return Err(PlanError::new(
                    "aggregate_error",
                    format!("aggregate function {name} is not allowed here"),
                    at,
                ));
            }
            let args = function_args(f)?;
            let mut bound = Vec::new();
            for a in &args {
                match a {
                    Some(x) => bound.push(sub!(x)?),
                    None => return Err(unsupported(format!("{name}(*)"), at)),
                }
            }
            match name.as_str() {
                "coalesce" => {
                    if bound.is_empty() {
                        return Err(type_err("coalesce needs arguments", at));
                    }
                    let pairs: Vec<(&Typed, &Expr)> = bound.iter().zip(args.iter().map(|a| a.unwrap_or(e))).collect();
                    let ty = common_type(&pairs, "COALESCE")?;
                    let nullable = bound.iter().all(|t| t.nullable);
                    Ok(Typed {
                        expr: ScalarExpr::Coalesce(bound.into_iter().map(|t| coerce(t.expr, t.ty, ty)).collect()),
                        ty,
                        nullable,
                    })
                }
                "nullif" => {
                    if bound.len() != 2 {
                        return Err(type_err("nullif takes two arguments", at));
                    }
                    let b = bound.pop().ok_or_else(|| type_err("nullif takes two arguments", at))?;
                    let a = bound.pop().ok_or_else(|| type_err("nullif takes two arguments", at))?;
                    let b = coerce_for_compare(&a, b, at)?;
                    Ok(Typed {
                        expr: ScalarExpr::NullIf(Box::new(a.expr), Box::new(b.expr)),
                        ty: a.ty,
                        nullable: true,
                    })
                }
                "lower" => bind_call(Func::Lower, bound, at),
                "upper" => bind_call(Func::Upper, bound, at),
                "length" | "char_length" | "character_length" => bind_call(Func::Length, bound, at),
                "substring" | "substr" => bind_call(Func::Substring, bound, at),
                "abs" => bind_call(Func::Abs, bound, at),
                "round" => bind_call(Func::Round, bound, at),
                "date_trunc" => bind_call(Func::DateTrunc, bound, at),
                "date_part" => bind_call(Func::Extract, bound, at),
                other => Err(PlanError::new(
                    "unknown_function",
                    format!("function {other} does not exist"),
                    at,
                )),
            }
        }
        other => Err(unsupported(format!("expression {other}"), at)),
    }
}

fn type_err(msg: impl Into<String>, at: Loc) -> PlanError {
    PlanError::new("type_error", msg, at)
}

fn check_type(t: &Typed, want: SqlType, what: &str, at: Loc) -> Result<()> {
    if t.ty != want && t.expr != ScalarExpr::Literal(Datum::Null) {
        return Err(type_err(format!("{what} expects {want}, got {}", t.ty), at));
    }
    Ok(())
}

fn common_type(items: &[(&Typed, &Expr)], what: &str) -> Result<SqlType> {
    let mut ty: Option<SqlType> = None;
    for (t, e) in items {
        if t.expr == ScalarExpr::Literal(Datum::Null) {
            continue;
        }
        ty = Some(match ty {
            None => t.ty,
            Some(prev) => unify(prev, t.ty).ok_or_else(|| {
                type_err(
                    format!("{what} types {prev} and {} cannot be matched", t.ty),
                    loc_of(*e),
                )
            })?,
        });
    }
    Ok(ty.unwrap_or(SqlType::Text))
}

/// `Some(expr)` per argument, `None` for `*`.
fn function_args(f: &ast::Function) -> Result<Vec<Option<&Expr>>> {
    let at = loc_of(f);
    match &f.args {
        FunctionArguments::None => Ok(vec![]),
        FunctionArguments::Subquery(_) => Err(unsupported("subqueries as function arguments", at)),
        FunctionArguments::List(list) => {
            if !list.clauses.is_empty() {
                return Err(unsupported("clauses inside a function call", at));
            }
            list.args
                .iter()
                .map(|a| match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(Some(e)),
                    FunctionArg::Unnamed(FunctionArgExpr::Wildcard) => Ok(None),
                    _ => Err(unsupported("named or qualified-wildcard arguments", at)),
                })
                .collect()
        }
    }
}

fn bind_aggregate(f: &ast::Function, name: &str, g: &mut GroupContext) -> Result<Typed> {
    let at = loc_of(f);
    if f.filter.is_some() || !f.within_group.is_empty() || f.null_treatment.is_some() {
        return Err(unsupported("FILTER / WITHIN GROUP on aggregates", at));
    }
    let distinct = matches!(
        &f.args,
        FunctionArguments::List(l) if matches!(l.duplicate_treatment, Some(ast::DuplicateTreatment::Distinct))
    );
    let args = function_args(f)?;
    let text = Expr::Function(f.clone()).to_string();
    if let Some(i) = g.aggregates.iter().position(|(t, _, _)| *t == text) {
        let t = g.aggregates[i].2.clone();
        return Ok(Typed {
            expr: ScalarExpr::Column(g.nkeys + i),
            ..t
        });
    }
    let (func, arg) = match (name, args.as_slice()) {
        ("count", [None]) if !distinct => (AggFunc::CountRows, None),
        (_, [Some(a)]) => {
            if contains_aggregate(a) {
                return Err(PlanError::new(
                    "aggregate_error",
                    "aggregate function calls cannot be nested",
                    loc_of(*a),
                ));
            }
            let t = bind(a, g.input, None)?;
            (aggregate_func(name), Some(t))
        }
        _ => return Err(type_err(format!("{name} takes exactly one argument"), at)),
    };
    let input_type = arg.as_ref().map(|t| t.ty).unwrap_or(SqlType::BigInt);
    let out_ty = aggregate_type(func, input_type, name, at)?;
    let agg = Aggregate {
        func,
        expr: arg.map(|t| t.expr).unwrap_or(ScalarExpr::Literal(Datum::Null)),
        distinct,
        input_type,
    };
    let typed = Typed {
        expr: ScalarExpr::Column(g.nkeys + g.aggregates.len()),
        ty: out_ty,
        nullable: !matches!(func, AggFunc::CountRows | AggFunc::Count),
    };
    g.aggregates.push((text, agg, typed.clone()));
    Ok(typed)
}

/// The aggregate over a value called `name` (one of [`AGGREGATES`]).
fn aggregate_func(name: &str) -> AggFunc {
    match name {
        "count" => AggFunc::Count,
        "sum" => AggFunc::Sum,
        "min" => AggFunc::Min,
        "max" => AggFunc::Max,
        _ => AggFunc::Avg,
    }
}

/// The result type of aggregate `func` (called `name`) over `input_type`.
fn aggregate_type(func: AggFunc, input_type: SqlType, name: &str, at: Loc) -> Result<SqlType> {
    Ok(match func {
        AggFunc::CountRows | AggFunc::Count => SqlType::BigInt,
        AggFunc::Sum | AggFunc::Avg if !input_type.is_numeric() => {
            return Err(type_err(format!("function {name}({input_type}) does not exist"), at))
        }
        AggFunc::Sum => match input_type {
            t if t.is_integer() => SqlType::BigInt,
            SqlType::Real | SqlType::Double => SqlType::Double,
            SqlType::Decimal(_, s) => SqlType::Decimal(28, s),
            t => t,
        },
        AggFunc::Avg => match input_type {
            t if t.is_float() => SqlType::Double,
            SqlType::Decimal(_, s) => SqlType::Decimal(28, s.max(6)),
            _ => SqlType::Decimal(28, 6),
        },
        AggFunc::Min | AggFunc::Max => input_type,
    })
}

fn bind_column(columns: &[ScopeColumn], q: Option<&str>, name: &str, at: Loc, grouped: bool) -> Result<Typed> {
    if grouped {
        return Err(PlanError::new(
            "group_by_error",
            format!(
                "column \"{}\" must appear in the GROUP BY clause or be used in an aggregate function",
                match q {
                    Some(q) => format!("{q}.{name}"),
                    None => name.to_string(),
                }
            ),
            at,
        ));
    }
    let i = resolve(columns, q, name, at)?;
    Ok(Typed {
        expr: ScalarExpr::Column(i),
        ty: columns[i].ty,
        nullable: columns[i].nullable,
    })
}

fn bind_value(v: &Value, at: Loc) -> Result<Typed> {
    Ok(match v {
        Value::Number(n, _) => {
            if let Ok(i) = n.parse::<i64>() {
                literal(
                    Datum::Int(i),
                    if i32::try_from(i).is_ok() {
                        SqlType::Int
                    } else {
                        SqlType::BigInt
                    },
                )
            } else if n.contains(['e', 'E']) {
                let f: f64 = n.parse().map_err(|_| type_err(format!("bad number {n}"), at))?;
                literal(Datum::Float(OrdF64::new(f)), SqlType::Double)
            } else {
                let d: Decimal = n
                    .parse()
                    .map_err(|_| type_err(format!("number {n} is out of range"), at))?;
                let s = d.scale() as u8;
                literal(Datum::Decimal(d), SqlType::Decimal(28, s))
            }
        }
        Value::SingleQuotedString(s) => literal(Datum::Text(s.clone()), SqlType::Text),
        Value::Boolean(b) => literal(Datum::Bool(*b), SqlType::Bool),
        Value::Null => Typed {
            expr: ScalarExpr::Literal(Datum::Null),
            ty: SqlType::Text,
            nullable: true,
        },
        other => return Err(unsupported(format!("literal {other}"), at)),
    })
}

/// Makes `t` comparable with `with`: string literals become timestamps or
/// numbers where the other side is one (as PostgreSQL's unknown-typed
/// literals do); numbers of different kinds compare by value.
fn coerce_for_compare(with: &Typed, t: Typed, at: Loc) -> Result<Typed> {
    if t.expr == ScalarExpr::Literal(Datum::Null) || with.expr == ScalarExpr::Literal(Datum::Null) {
        return Ok(t);
    }
    if with.ty == t.ty || (with.ty.is_numeric() && t.ty.is_numeric()) {
        return Ok(t);
    }
    if let ScalarExpr::Literal(Datum::Text(s)) = &t.expr {
        if matches!(with.ty, SqlType::Timestamp | SqlType::Bool) || with.ty.is_numeric() {
            let d = crate::expr::cast(Datum::Text(s.clone()), with.ty).map_err(|err| type_err(err.to_string(), at))?;
            return Ok(literal(d, with.ty));
        }
    }
    Err(type_err(format!("cannot compare {} with {}", with.ty, t.ty), at))
}

fn bind_binary(op: &BinaryOperator, l: Typed, r: Typed, at: Loc) -> Result<Typed> {
    use BinaryOperator as B;
    let nullable = l.nullable || r.nullable;
    match op {
        B::And | B::Or => {
            check_type(&l, SqlType::Bool, &op.to_string(), at)?;
            check_type(&r, SqlType::Bool, &op.to_string(), at)?;
            let mut parts = Vec::new();
            let is_and = matches!(op, B::And);
            for x in [l.expr, r.expr] {
                match x {
                    ScalarExpr::And(es) if is_and => parts.extend(es),
                    ScalarExpr::Or(es) if !is_and => parts.extend(es),
                    x => parts.push(x),
                }
            }
            Ok(Typed {
                expr: if is_and {
                    ScalarExpr::And(parts)
                } else {
                    ScalarExpr::Or(parts)
                },
                ty: SqlType::Bool,
                nullable,
            })
        }
        B::Eq | B::NotEq | B::Lt | B::LtEq | B::Gt | B::GtEq => {
            let cmp = match op {
                B::Eq => CmpOp::Eq,
                B::NotEq => CmpOp::NotEq,
                B::Lt => CmpOp::Lt,
                B::LtEq => CmpOp::LtEq,
                B::Gt => CmpOp::Gt,
                _ => CmpOp::GtEq,
            };
            // Coerce whichever side is an untyped string literal.
            let (l, r) = if matches!(l.expr, ScalarExpr::Literal(Datum::Text(_))) && r.ty != SqlType::Text {
                (coerce_for_compare(&r, l, at)?, r)
            } else {
                let r = coerce_for_compare(&l, r, at)?;
                (l, r)
            };
            Ok(Typed {
                expr: ScalarExpr::Cmp(cmp, Box::new(l.expr), Box::new(r.expr)),
                ty: SqlType::Bool,
                nullable,
            })
        }
        B::Plus | B::Minus | B::Multiply | B::Divide | B::Modulo => {
            let arith = match op {
                B::Plus => ArithOp::Add,
                B::Minus => ArithOp::Sub,
                B::Multiply => ArithOp::Mul,
                B::Divide => ArithOp::Div,
                _ => ArithOp::Mod,
            };
            let lnull = l.expr == ScalarExpr::Literal(Datum::Null);
            let rnull = r.expr == ScalarExpr::Literal(Datum::Null);
            let (lt, rt) = (if lnull { r.ty } else { l.ty }, if rnull { l.ty } else { r.ty });
            if !lt.is_numeric() || !rt.is_numeric() {
                return Err(type_err(format!("operator does not exist: {} {op} {}", l.ty, r.ty), at));
            }
            let ty = match (lt, rt) {
                (a, b) if a.is_integer() && b.is_integer() => SqlType::BigInt,
                (a, b) if a.is_float() || b.is_float() => SqlType::Double,
                (SqlType::Decimal(p1, s1), SqlType::Decimal(p2, s2)) => match arith {
                    ArithOp::Mul => SqlType::Decimal(28, (s1 + s2).min(28)),
                    ArithOp::Div => SqlType::Decimal(28, s1.max(s2).max(16)),
                    _ => SqlType::Decimal(p1.max(p2).min(28), s1.max(s2)),
                },
                (SqlType::Decimal(_, s), _) | (_, SqlType::Decimal(_, s)) => match arith {
                    ArithOp::Div => SqlType::Decimal(28, s.max(16)),
                    _ => SqlType::Decimal(28, s),
                },
                _ => SqlType::Double,
            };
            Ok(Typed {
                expr: ScalarExpr::Arith(arith, Box::new(l.expr), Box::new(r.expr), ty),
                ty,
                nullable,
            })
        }
        B::StringConcat => Ok(Typed {
            expr: ScalarExpr::Concat(Box::new(l.expr), Box::new(r.expr)),
            ty: SqlType::Text,
            nullable,
        }),
        other => Err(unsupported(format!("operator {other}"), at)),
    }
}

fn bind_call(f: Func, args: Vec<Typed>, at: Loc) -> Result<Typed> {
    let nullable = args.iter().any(|a| a.nullable);
    let n = args.len();
    let arity_ok = match f {
        Func::Lower | Func::Upper | Func::Length | Func::Abs => n == 1,
        Func::Substring => n == 2 || n == 3,
        Func::Round => n == 1 || n == 2,
        Func::DateTrunc | Func::Extract => n == 2,
    };
    if !arity_ok {
        return Err(type_err(
            format!("wrong number of arguments to {f:?}").to_lowercase(),
            at,
        ));
    }
    let want = |i: usize, ok: &dyn Fn(SqlType) -> bool, what: &str| -> Result<()> {
        let a = &args[i];
        if a.expr != ScalarExpr::Literal(Datum::Null) && !ok(a.ty) {
            return Err(type_err(
                format!("{:?} argument {} must be {what}, got {}", f, i + 1, a.ty).to_lowercase(),
                at,
            ));
        }
        Ok(())
    };
    let ty = match f {
        Func::Lower | Func::Upper => {
            want(0, &|t| t == SqlType::Text, "text")?;
            SqlType::Text
        }
        Func::Length => {
            want(0, &|t| t == SqlType::Text, "text")?;
            SqlType::BigInt
        }
        Func::Substring => {
            want(0, &|t| t == SqlType::Text, "text")?;
            for i in 1..n {
                want(i, &|t| t.is_integer(), "an integer")?;
            }
            SqlType::Text
        }
        Func::Abs => {
            want(0, &|t| t.is_numeric(), "numeric")?;
            args[0].ty
        }
        Func::Round => {
            want(0, &|t| t.is_numeric(), "numeric")?;
            if n == 2 {
                want(1, &|t| t.is_integer(), "an integer")?;
            }
            match args[0].ty {
                SqlType::Decimal(..) => {
                    let digits = match args.get(1).map(|a| &a.expr) {
                        Some(ScalarExpr::Literal(Datum::Int(d))) => (*d).clamp(0, 28) as u8,
                        None => 0,
                        Some(_) => 6,
                    };
                    SqlType::Decimal(28, digits)
                }
                t => t,
            }
        }
        Func::DateTrunc => {
            want(0, &|t| t == SqlType::Text, "text")?;
            want(1, &|t| t == SqlType::Timestamp, "a timestamp")?;
            SqlType::Timestamp
        }
        Func::Extract => {
            want(0, &|t| t == SqlType::Text, "text")?;
            want(1, &|t| t == SqlType::Timestamp, "a timestamp")?;
            SqlType::Decimal(28, 3)
        }
    };
    Ok(Typed {
        expr: ScalarExpr::Call(f, args.into_iter().map(|a| a.expr).collect()),
        ty,
        nullable,
    })
}

/// Rewrites that must happen for plans to have bounded state: a filter
/// `rn <= N` (or `< N`, `= 1`) over a ROW_NUMBER becomes the TopK's limit.
pub fn optimize(plan: RelPlan) -> RelPlan {
    match plan {
        RelPlan::Filter { input, predicates } => {
            let input = optimize(*input);
            push_limit(input, predicates)
        }
        RelPlan::Map { input, exprs } => RelPlan::Map {
            input: Box::new(optimize(*input)),
            exprs,
        },
        RelPlan::Project { input, outputs } => RelPlan::Project {
            input: Box::new(optimize(*input)),
            outputs,
        },
        RelPlan::Reduce {
            input,
            group_key,
            aggregates,
            monotonic,
        } => RelPlan::Reduce {
            input: Box::new(optimize(*input)),
            group_key,
            aggregates,
            monotonic,
        },
        RelPlan::Join {
            left,
            right,
            left_key,
            right_key,
            residual,
            kind,
            right_arity,
        } => RelPlan::Join {
            left: Box::new(optimize(*left)),
            right: Box::new(optimize(*right)),
            left_key,
            right_key,
            residual,
            kind,
            right_arity,
        },
        RelPlan::Distinct { input } => RelPlan::Distinct {
            input: Box::new(optimize(*input)),
        },
        RelPlan::UnionAll { inputs } => RelPlan::UnionAll {
            inputs: inputs.into_iter().map(optimize).collect(),
        },
        RelPlan::TopK {
            input,
            partition_by,
            order_by,
            limit,
            monotonic,
            input_arity,
        } => RelPlan::TopK {
            input: Box::new(optimize(*input)),
            partition_by,
            order_by,
            limit,
            monotonic,
            input_arity,
        },
        RelPlan::MatchRecognize(mut m) => {
            m.input = optimize(m.input);
            RelPlan::MatchRecognize(m)
        }
        other => other,
    }
}

/// Finds the TopK under `input` (through Projects) and, if a predicate
/// bounds its row number, sets the limit. The predicate stays in place (it
/// is then always true), so the result does not depend on the rewrite.
fn push_limit(mut input: RelPlan, predicates: Vec<ScalarExpr>) -> RelPlan {
    for p in &predicates {
        let (col, bound) = match p {
            ScalarExpr::Cmp(op, a, b) => match (&**a, &**b, op) {
                (ScalarExpr::Column(c), ScalarExpr::Literal(Datum::Int(n)), CmpOp::LtEq) => (*c, *n),
                (ScalarExpr::Column(c), ScalarExpr::Literal(Datum::Int(n)), CmpOp::Lt) => (*c, *n - 1),
                (ScalarExpr::Column(c), ScalarExpr::Literal(Datum::Int(1)), CmpOp::Eq) => (*c, 1),
                (ScalarExpr::Literal(Datum::Int(n)), ScalarExpr::Column(c), CmpOp::GtEq) => (*c, *n),
                (ScalarExpr::Literal(Datum::Int(n)), ScalarExpr::Column(c), CmpOp::Gt) => (*c, *n - 1),
                _ => continue,
            },
            _ => continue,
        };
        if bound < 0 {
            continue;
        }
        set_topk_limit(&mut input, col, bound as usize);
    }
    RelPlan::Filter {
        input: Box::new(input),
        predicates,
    }
}

fn set_topk_limit(plan: &mut RelPlan, col: usize, bound: usize) {
    match plan {
        RelPlan::Project { input, outputs } => {
            if let Some(&c) = outputs.get(col) {
                set_topk_limit(input, c, bound);
            }
        }
        RelPlan::Map { input, .. } => set_topk_limit(input, col, bound),
        RelPlan::TopK { limit, input_arity, .. } if col == *input_arity => {
            *limit = Some(limit.map_or(bound, |l| l.min(bound)));
        }
        _ => {}
    }
}

/// A read of one view: what `POST /v1/query` accepts. Evaluated by the
/// query side over rows peeked from the view's arrangement.
#[derive(Clone, Debug, PartialEq)]
pub struct PeekPlan {
    pub view: String,
    /// Filters, maps and projections over the view's rows only (see
    /// [`RelPlan::eval_linear`]).
    pub plan: RelPlan,
    pub columns: Vec<Column>,
    /// Over the output row.
    pub order_by: Vec<OrderKey>,
    pub limit: Option<usize>,
}

/// The first node, from the top, that makes `plan` more than filters and
/// projections of one object, in the user's terms.
fn nonlinear_construct(plan: &RelPlan) -> &'static str {
    match plan {
        RelPlan::Map { input, .. } | RelPlan::Filter { input, .. } | RelPlan::Project { input, .. } => {
            nonlinear_construct(input)
        }
        RelPlan::Get { .. } => "this query",
        RelPlan::Constant { .. } => "a SELECT without FROM",
        RelPlan::Reduce { .. } => "grouping (GROUP BY or an aggregate)",
        RelPlan::Join { .. } => "a join",
        RelPlan::Distinct { .. } => "DISTINCT",
        RelPlan::UnionAll { .. } => "UNION",
        RelPlan::TopK { .. } => "a window function",
        RelPlan::MatchRecognize(_) => "MATCH_RECOGNIZE",
    }
}

/// Plans `SELECT … FROM view [WHERE …] [ORDER BY …] [LIMIT n]` with the
/// planner of views; a plan that is more than filters and projections of
/// one view (joins, grouping, DISTINCT, UNION, window functions) is refused
/// with a clear error: such a query belongs in a materialized view.
pub fn plan_peek(sql: &str, catalog: &dyn CatalogLookup) -> Result<PeekPlan> {
    let statements = parse(sql)?;
    let [Statement::Query(q)] = statements.as_slice() else {
        let at = statements
            .get(1)
            .or(statements.first())
            .map(loc_of)
            .unwrap_or(Loc(1, 1));
        return Err(PlanError::new(
            "unsupported",
            "a query is exactly one SELECT statement",
            at,
        ));
    };
    let not_here = |what: &str, at: Loc| {
        PlanError::new(
            "unsupported",
            format!("{what} is not supported in a query: a query reads one view with WHERE, ORDER BY and LIMIT; create a view for the rest"),
            at,
        )
    };
    if q.with.is_some() {
        return Err(not_here("WITH", loc_of(&**q)));
    }
    let job = JobPlan::default();
    let scope = JobScope { catalog, job: &job };
    let ext = pattern::Extensions::default();
    let mut planner = QueryPlanner {
        scope: &scope,
        depends_on: BTreeSet::new(),
        ext: &ext,
    };
    let rel = planner.plan_set_expr(&q.body)?;
    let Some(view) = rel.plan.linear_source().map(str::to_string) else {
        return Err(not_here(nonlinear_construct(&rel.plan), loc_of(&*q.body)));
    };
    let order_by = match &q.order_by {
        Some(ob) => planner.order_keys(ob, &rel.columns)?,
        None => vec![],
    };
    let limit = match &q.limit_clause {
        None => None,
        Some(ast::LimitClause::LimitOffset { limit, offset, .. }) => {
            if offset.is_some() {
                return Err(not_here("OFFSET", loc_of(&**q)));
            }
            match limit {
                Some(e) => Some(planner.const_usize(e)?),
                None => None,
            }
        }
        Some(_) => return Err(not_here("this LIMIT form", loc_of(&**q))),
    };
    Ok(PeekPlan {
        view,
        plan: rel.plan,
        columns: rel.columns.iter().map(ScopeColumn::column).collect(),
        order_by,
        limit,
    })
}
