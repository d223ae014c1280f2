//! `CREATE SINK name FROM view WITH (connector = …)`: what every sink
//! shares (its name, its view) before the connector's own options.

use super::error::{PlanError, Result};
use super::http_sink::http_sink;
use super::kafka::{kafka_sink, SinkStatement};
use super::lookup::CatalogLookup;
use crate::plan::{JobPlan, SinkPlan, SinkTarget};

/// Plans a sink of a job: its view must be one of the job's own.
pub(super) fn plan_sink(st: &SinkStatement, job: &JobPlan, catalog: &dyn CatalogLookup) -> Result<SinkPlan> {
    if job.tables.iter().any(|t| t.name == st.name)
        || job.views.iter().any(|v| v.name == st.name)
        || job.sinks.iter().any(|s| s.name == st.name)
        || catalog.lookup(&st.name).is_some()
    {
        return Err(PlanError::new(
            "duplicate_name",
            format!("\"{}\" is already the name of a table, view or sink", st.name),
            st.at,
        ));
    }
    // A sink resumes after a restart at exact times of its view's replay,
    // which only its own job's dataflow replays (another job's view comes
    // in compacted).
    let (schema, key) = match job.views.iter().find(|v| v.name == st.from) {
        Some(v) => (v.schema.clone(), v.key.clone()),
        None if catalog.lookup(&st.from).is_some() && !job.tables.iter().any(|t| t.name == st.from) => {
            return Err(PlanError::new(
                "unsupported",
                format!(
                    "view \"{}\" belongs to another job: a sink writes a view of its own job (put the CREATE SINK in that job)",
                    st.from
                ),
                st.from_at,
            ))
        }
        None => {
            return Err(PlanError::new(
                "unknown_view",
                format!("unknown view \"{}\" of this job (a sink writes the changes of one of its job's views)", st.from),
                st.from_at,
            ))
        }
    };
    let connector = st.options.iter().rev().find(|(k, _, _)| k == "connector");
    let target = match connector {
        Some((_, c, _)) if c.eq_ignore_ascii_case("kafka") => SinkTarget::Kafka(kafka_sink(st, &key)?),
        Some((_, c, _)) if c.eq_ignore_ascii_case("http") => SinkTarget::Http(http_sink(st, &schema)?),
        Some((_, c, at)) => {
            return Err(PlanError::new(
                "invalid_option",
                format!("unknown sink connector '{c}' (known: kafka, http)"),
                *at,
            ))
        }
        None => {
            return Err(PlanError::new(
                "invalid_option",
                "a sink needs connector = 'kafka' or 'http'",
                st.at,
            ))
        }
    };
    Ok(SinkPlan {
        name: st.name.clone(),
        from: st.from.clone(),
        schema,
        key,
        target,
    })
}
