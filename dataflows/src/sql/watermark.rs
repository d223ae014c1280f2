//! Event-time settings: the table options `'watermark.lateness'` and
//! `'watermark.idle'`, and the watermark a plan inherits from what it reads.

use weir_operators::cep::Watermark;

use super::error::{Loc, PlanError, Result};
use super::extensions::parse_duration_ms;
use crate::plan::RelPlan;

/// The table options `'watermark.lateness'` and `'watermark.idle'`.
pub(super) fn watermark_option(w: &mut Watermark, key: &str, value: &str, at: Loc) -> Result<()> {
    let bad = || {
        PlanError::new(
            "invalid_option",
            format!("'{key}' takes a duration such as '2 seconds' or '500 ms', not '{value}'"),
            at,
        )
    };
    match key {
        "watermark.lateness" => w.lateness_ms = parse_duration_ms(value).ok_or_else(bad)?,
        _ if value.eq_ignore_ascii_case("none") => w.idle_ms = None,
        _ => w.idle_ms = Some(parse_duration_ms(value).filter(|&ms| ms > 0).ok_or_else(bad)?),
    }
    Ok(())
}

/// The watermark settings of everything `plan` reads, combined: the largest
/// lateness and the shortest idle time.
pub(super) fn combined_watermark(plan: &RelPlan, lookup: &dyn Fn(&str) -> Option<Watermark>) -> Watermark {
    let mut names = Vec::new();
    gets(plan, &mut names);
    let found: Vec<Watermark> = names.iter().filter_map(|n| lookup(n)).collect();
    if found.is_empty() {
        return Watermark::default();
    }
    Watermark {
        lateness_ms: found.iter().map(|w| w.lateness_ms).max().unwrap_or(0),
        idle_ms: found.iter().filter_map(|w| w.idle_ms).min(),
    }
}

fn gets<'a>(plan: &'a RelPlan, out: &mut Vec<&'a str>) {
    match plan {
        RelPlan::Get { name } => out.push(name),
        RelPlan::Constant { .. } => {}
        RelPlan::Map { input, .. }
        | RelPlan::Filter { input, .. }
        | RelPlan::Project { input, .. }
        | RelPlan::Reduce { input, .. }
        | RelPlan::Distinct { input }
        | RelPlan::TopK { input, .. } => gets(input, out),
        RelPlan::Join { left, right, .. } => {
            gets(left, out);
            gets(right, out);
        }
        RelPlan::UnionAll { inputs } => inputs.iter().for_each(|i| gets(i, out)),
        RelPlan::MatchRecognize(m) => gets(&m.input, out),
    }
}
