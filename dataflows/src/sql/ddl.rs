//! Planning the statements of a job: `CREATE TABLE` (columns, keys,
//! connector options), `CREATE [MATERIALIZED] VIEW`, and `SET`.

use std::collections::BTreeSet;

use sqlparser::ast::{self, Expr, ObjectName, Value};
use weir_operators::cep::Watermark;
use weir_operators::repr::{Column, Schema};

use super::error::{loc_ident, loc_of, unsupported, Loc, PlanError, Result};
use super::extensions;
use super::kafka;
use super::optimize::optimize;
use super::prune::prune_columns;
use super::query::QueryPlanner;
use super::schedule;
use super::scope::{ident_name, object_name, JobScope, ScopeColumn};
use super::typeconv::sql_type;
use super::watermark;
use crate::plan::{Connector, RelPlan, StartFrom, TablePlan, TableRetention, ViewPlan};

/// `SET 'auto.offset.reset' = 'earliest' | 'latest'` (ksqlDB's setting):
/// where the job's sources start.
pub(super) fn plan_start(variable: &ObjectName, values: &[Expr]) -> Result<StartFrom> {
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

pub(super) fn plan_table(ct: &ast::CreateTable, scope: &JobScope) -> Result<TablePlan> {
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
    let options = with_options(&ct.table_options, "table", at)?;
    let mut connector = None;
    let mut topic = None;
    let mut format = None;
    let mut watermark = Watermark::default();
    let mut retention: Option<TableRetention> = None;
    let mut kafka = kafka::Options::default();
    let mut interval = None;
    for (k, value) in &options {
        let (k, value) = (k.as_str(), *value);
        let v = option_value(value)?;
        match k {
            "connector" => connector = Some(v),
            "topic" => topic = Some((v, loc_of(value))),
            "format" => format = Some(v),
            "interval" => interval = Some((v, loc_of(value))),
            "watermark.lateness" | "watermark.idle" => watermark::watermark_option(&mut watermark, k, &v, loc_of(value))?,
            "retention" => {
                let ms = extensions::parse_duration_ms(&v)
                    .and_then(|ms| u64::try_from(ms).ok())
                    .ok_or_else(|| {
                        PlanError::new(
                            "invalid_option",
                            format!("'retention' '{v}' is not a duration like '7 days'"),
                            loc_of(value),
                        )
                    })?;
                retention.get_or_insert_with(TableRetention::default).max_age_ms = Some(ms);
            }
            "retention.bytes" => {
                let n = extensions::parse_bytes(&v).ok_or_else(|| {
                    PlanError::new(
                        "invalid_option",
                        format!("'retention.bytes' '{v}' is not a size like '10 GB'"),
                        loc_of(value),
                    )
                })?;
                retention.get_or_insert_with(TableRetention::default).max_bytes = Some(n);
            }
            "cleanup.policy" => {
                // Kafka's values: `delete` is what age and size do.
                let compact = match v.to_lowercase().replace(' ', "").as_str() {
                    "delete" => false,
                    "compact" | "compact,delete" | "delete,compact" => true,
                    _ => {
                        return Err(PlanError::new(
                            "invalid_option",
                            format!("'cleanup.policy' '{v}' is not 'compact', 'delete' or 'compact,delete'"),
                            loc_of(value),
                        ))
                    }
                };
                if compact && primary_key.is_none() {
                    return Err(PlanError::new(
                        "invalid_option",
                        format!("'cleanup.policy' 'compact' keeps the latest record per key: table {name} needs a PRIMARY KEY"),
                        loc_of(value),
                    ));
                }
                retention.get_or_insert_with(TableRetention::default).compact = compact;
            }
            _ if kafka.accepts(k) => kafka.set(k, v, loc_of(value)),
            other => {
                return Err(PlanError::new(
                    "invalid_option",
                    format!(
                        "unknown table option '{other}' (known: connector, topic, format, interval, watermark.lateness, watermark.idle, retention, retention.bytes, cleanup.policy; for Kafka: {})",
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
        Some("schedule") => {
            if let Some((k, _, at)) = kafka.first() {
                return Err(PlanError::new(
                    "invalid_option",
                    format!("option '{k}' is for connector 'kafka'"),
                    at,
                ));
            }
            if let Some((_, at)) = topic {
                return Err(PlanError::new(
                    "invalid_option",
                    "a schedule table has no 'topic': weir appends its ticks",
                    at,
                ));
            }
            Connector::Schedule(schedule::source(&name, &columns, interval.clone(), at)?)
        }
        Some(other) => {
            return Err(PlanError::new(
                "invalid_option",
                format!("unknown connector '{other}' (known: log, kafka, schedule)"),
                at,
            ))
        }
    };
    if let (Some((_, at)), false) = (&interval, matches!(connector, Connector::Schedule(_))) {
        return Err(PlanError::new(
            "invalid_option",
            "option 'interval' is for connector 'schedule'",
            *at,
        ));
    }
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
        retention,
    })
}

/// The `WITH (key = value, …)` options of a table or view: each key
/// unquoted and lower-cased, with its value's expression.
fn with_options<'a>(options: &'a ast::CreateTableOptions, what: &str, at: Loc) -> Result<Vec<(String, &'a Expr)>> {
    let opts = match options {
        ast::CreateTableOptions::With(opts) => opts.as_slice(),
        ast::CreateTableOptions::None => &[],
        _ => return Err(unsupported(format!("{what} options other than WITH (...)"), at)),
    };
    opts.iter()
        .map(|opt| match opt {
            ast::SqlOption::KeyValue { key, value } => Ok((
                key.to_string().trim_matches(|c| c == '\'' || c == '"').to_lowercase(),
                value,
            )),
            _ => Err(unsupported(format!("option {opt}"), at)),
        })
        .collect()
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

pub(super) fn plan_view(cv: &ast::CreateView, scope: &JobScope, ext: &extensions::Extensions) -> Result<ViewPlan> {
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
    let options = view_options(cv)?;
    let read_copy = options.read_copy;
    let mut plan = optimize(rel.plan);
    if let Some((cap, at)) = options.pattern_max_rows {
        if set_pattern_max_rows(&mut plan, cap) == 0 {
            return Err(PlanError::new(
                "invalid_option",
                format!("'pattern.max_rows' is set but view {name} has no MATCH_RECOGNIZE"),
                at,
            ));
        }
    }
    let watermark = watermark::combined_watermark(&plan, &|n| scope.lookup(n).map(|i| i.watermark));
    let key = plan
        .unique_key(&|n| scope.lookup(n).and_then(|info| info.key))
        .filter(|k| !k.is_empty());
    // Last: the key and the watermark above are read off the plan as
    // written, and pruning keeps its output as it was.
    let plan = prune_columns(plan, &|n| scope.lookup(n).map(|i| i.schema.columns.len()));
    Ok(ViewPlan {
        name,
        plan,
        schema,
        key,
        depends_on: planner.depends_on.into_iter().collect(),
        monotonic: rel.monotonic,
        watermark,
        read_copy,
    })
}

/// A view's `WITH (…)` options.
struct ViewOptions {
    /// `read_copy`: 'on' (the default) or 'off'.
    read_copy: bool,
    /// `'pattern.max_rows'`: rows one match attempt of the view's
    /// MATCH_RECOGNIZE may span, and where it was given.
    pattern_max_rows: Option<(u64, Loc)>,
}

fn view_options(cv: &ast::CreateView) -> Result<ViewOptions> {
    let at = loc_of(&cv.name);
    let options = with_options(&cv.options, "view", at)?;
    let mut out = ViewOptions {
        read_copy: true,
        pattern_max_rows: None,
    };
    for (k, value) in &options {
        let (k, value) = (k.as_str(), *value);
        let v = option_value(value)?;
        match k {
            "read_copy" => {
                out.read_copy = match v.to_lowercase().as_str() {
                    "on" | "true" => true,
                    "off" | "false" => false,
                    _ => {
                        return Err(PlanError::new(
                            "invalid_option",
                            format!("'read_copy' '{v}' is not 'on' or 'off'"),
                            loc_of(value),
                        ))
                    }
                }
            }
            "pattern.max_rows" => match v.trim().parse::<u64>() {
                Ok(n) if n > 0 => out.pattern_max_rows = Some((n, loc_of(value))),
                _ => {
                    return Err(PlanError::new(
                        "invalid_option",
                        format!("'pattern.max_rows' '{v}' is not a positive whole number of rows"),
                        loc_of(value),
                    ))
                }
            },
            other => {
                return Err(PlanError::new(
                    "invalid_option",
                    format!("unknown view option '{other}' (known: read_copy, pattern.max_rows)"),
                    loc_of(value),
                ))
            }
        }
    }
    Ok(out)
}

/// Sets the row cap of every MATCH_RECOGNIZE in `plan`; how many there were.
fn set_pattern_max_rows(plan: &mut RelPlan, cap: u64) -> usize {
    match plan {
        RelPlan::Get { .. } | RelPlan::Constant { .. } => 0,
        RelPlan::Map { input, .. }
        | RelPlan::Filter { input, .. }
        | RelPlan::Project { input, .. }
        | RelPlan::Reduce { input, .. }
        | RelPlan::Distinct { input, .. }
        | RelPlan::TopK { input, .. } => set_pattern_max_rows(input, cap),
        RelPlan::Join { left, right, .. } => set_pattern_max_rows(left, cap) + set_pattern_max_rows(right, cap),
        RelPlan::UnionAll { inputs, .. } => inputs.iter_mut().map(|i| set_pattern_max_rows(i, cap)).sum(),
        RelPlan::MatchRecognize(m) => {
            m.max_rows = cap;
            1 + set_pattern_max_rows(&mut m.input, cap)
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::plan::TableRetention;
    use crate::sql::lookup::EmptyCatalog as Empty;
    use crate::sql::plan_job;

    #[test]
    fn retention_options_parse_and_bad_ones_say_where() {
        let plan = plan_job(
            "CREATE TABLE t (a BIGINT) WITH (connector = 'log', 'retention' = '7 days', 'retention.bytes' = '2 GiB');",
            &Empty,
        )
        .expect("plans");
        assert_eq!(
            plan.tables[0].retention,
            Some(TableRetention {
                max_age_ms: Some(7 * 86_400_000),
                max_bytes: Some(2 << 30),
                compact: false,
            })
        );
        let plain = plan_job("CREATE TABLE t (a BIGINT) WITH (connector = 'log');", &Empty).expect("plans");
        assert_eq!(plain.tables[0].retention, None);
        let json = serde_json::to_string(&plain.tables[0]).expect("serialises");
        assert!(!json.contains("retention"), "unset, it is not in the plan: {json}");
        let err = plan_job(
            "CREATE TABLE t (a BIGINT) WITH (connector = 'log', 'retention' = 'forever');",
            &Empty,
        )
        .expect_err("refused");
        assert!(err.to_string().contains("'retention' 'forever'"), "{err}");
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    #[test]
    fn compaction_is_for_upsert_tables_only() {
        let plan = plan_job(
            "CREATE TABLE t (k BIGINT PRIMARY KEY, v TEXT) WITH (connector = 'log', 'cleanup.policy' = 'compact');",
            &Empty,
        )
        .expect("plans");
        assert_eq!(
            plan.tables[0].retention,
            Some(TableRetention {
                compact: true,
                ..TableRetention::default()
            })
        );
        let err = plan_job(
            "CREATE TABLE t (k BIGINT, v TEXT)\n  WITH (connector = 'log', 'cleanup.policy' = 'compact');",
            &Empty,
        )
        .expect_err("refused");
        assert!(err.to_string().contains("needs a PRIMARY KEY"), "{err}");
        assert!(err.to_string().contains("line 2"), "{err}");
        let err = plan_job(
            "CREATE TABLE t (k BIGINT PRIMARY KEY) WITH (connector = 'log', 'cleanup.policy' = 'squash');",
            &Empty,
        )
        .expect_err("refused");
        assert!(err.to_string().contains("'cleanup.policy' 'squash'"), "{err}");
    }
}
