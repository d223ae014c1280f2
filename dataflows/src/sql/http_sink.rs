//! The options of action sinks (`CREATE SINK … WITH (connector = 'http')`):
//! where to send each change and how to survive the service failing.

use weir_operators::repr::Schema;

use super::error::{Loc, PlanError, Result};
use super::extensions::parse_duration_ms;
use super::kafka::SinkStatement;
use crate::plan::HttpSinkPlan;

const KNOWN: &str = "connector, url, method, format, changes, 'header.<Name>', 'max.in.flight', timeout, \
     'retry.attempts', 'retry.initial', 'retry.max.delay', 'breaker.failures', 'breaker.cooldown', \
     'fallback.after', 'fallback.topic', 'fallback.url', 'response.topic'";

fn invalid(message: impl Into<String>, at: Loc) -> PlanError {
    PlanError::new("invalid_option", message, at)
}

/// The action of a sink whose view has columns `schema`.
pub(super) fn http_sink(st: &SinkStatement, schema: &Schema) -> Result<HttpSinkPlan> {
    let mut plan = HttpSinkPlan {
        url: String::new(),
        method: "POST".into(),
        headers: Vec::new(),
        on_insert: true,
        on_update: false,
        on_delete: false,
        max_in_flight: 16,
        timeout_ms: 10_000,
        retry_attempts: 5,
        retry_initial_ms: 100,
        retry_max_delay_ms: 10_000,
        breaker_failures: 5,
        breaker_cooldown_ms: 30_000,
        max_wait_ms: 300_000,
        fallback_topic: None,
        fallback_url: None,
        response_topic: None,
    };
    let mut url = None;
    for (key, value, at) in &st.options {
        let at = *at;
        let duration = || {
            parse_duration_ms(value)
                .and_then(|ms| u64::try_from(ms).ok())
                .ok_or_else(|| {
                    invalid(
                        format!("'{key}' must be a duration such as '500 ms' or '10 s', not '{value}'"),
                        at,
                    )
                })
        };
        let count = |min: u32, max: u32| {
            value
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| {
                    invalid(
                        format!("'{key}' must be a whole number from {min} to {max}, not '{value}'"),
                        at,
                    )
                })
        };
        match key.as_str() {
            "connector" => {}
            "format" => {
                if !value.eq_ignore_ascii_case("json") {
                    return Err(invalid(format!("unknown format '{value}' (known: json)"), at));
                }
            }
            "url" => {
                check_url(value, schema, key, at)?;
                url = Some(value.clone());
            }
            "method" => {
                let m = value.to_ascii_uppercase();
                if !matches!(m.as_str(), "POST" | "PUT" | "PATCH" | "DELETE" | "GET") {
                    return Err(invalid(
                        format!("unknown method '{value}' (known: POST, PUT, PATCH, DELETE, GET)"),
                        at,
                    ));
                }
                plan.method = m;
            }
            "changes" => {
                plan.on_insert = false;
                for part in value.split(',').map(str::trim) {
                    match part.to_ascii_lowercase().as_str() {
                        "insert" | "inserts" => plan.on_insert = true,
                        "update" | "updates" => plan.on_update = true,
                        "delete" | "deletes" => plan.on_delete = true,
                        _ => {
                            return Err(invalid(
                                format!(
                                "unknown change '{part}' in 'changes' (known: insert, update, delete, comma-separated)"
                            ),
                                at,
                            ))
                        }
                    }
                }
            }
            "max.in.flight" => plan.max_in_flight = count(1, 1024)?,
            "timeout" => plan.timeout_ms = duration()?.max(1),
            "retry.attempts" => plan.retry_attempts = count(1, 1000)?,
            "retry.initial" => plan.retry_initial_ms = duration()?,
            "retry.max.delay" => plan.retry_max_delay_ms = duration()?,
            "breaker.failures" => plan.breaker_failures = count(1, 1_000_000)?,
            "breaker.cooldown" => plan.breaker_cooldown_ms = duration()?,
            "fallback.after" => plan.max_wait_ms = duration()?,
            "fallback.topic" => plan.fallback_topic = Some(topic(value, key, at)?),
            "response.topic" => plan.response_topic = Some(topic(value, key, at)?),
            "fallback.url" => {
                check_url(value, schema, key, at)?;
                plan.fallback_url = Some(value.clone());
            }
            k if k.starts_with("header.") => {
                let name = &k["header.".len()..];
                let reserved = ["content-type", "idempotency-key", "content-length", "host"];
                if name.is_empty()
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                    || name.to_ascii_lowercase().starts_with("weir-")
                    || reserved.contains(&name.to_ascii_lowercase().as_str())
                {
                    return Err(invalid(
                        format!("'{k}': a header name of letters, digits, - and _, not one weir sets (Content-Type, Idempotency-Key, Weir-*)"),
                        at,
                    ));
                }
                if value.bytes().any(|b| b.is_ascii_control()) {
                    return Err(invalid(
                        format!("'{k}': a header value cannot hold control characters"),
                        at,
                    ));
                }
                plan.headers.push((name.to_string(), value.clone()));
            }
            other => {
                return Err(invalid(
                    format!("unknown option '{other}' of an http sink (known: {KNOWN})"),
                    at,
                ))
            }
        }
    }
    plan.url = url.ok_or_else(|| invalid("an http sink needs url = 'http://…'", st.at))?;
    if !(plan.on_insert || plan.on_update || plan.on_delete) {
        return Err(invalid("'changes' names no change to act on", st.at));
    }
    if plan.retry_max_delay_ms < plan.retry_initial_ms {
        return Err(invalid("'retry.max.delay' is shorter than 'retry.initial'", st.at));
    }
    Ok(plan)
}

/// An `http://` or `https://` URL whose `{column}` placeholders name
/// columns of the view.
fn check_url(url: &str, schema: &Schema, key: &str, at: Loc) -> Result<()> {
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"))
        .ok_or_else(|| invalid(format!("'{key}' must start with http:// or https://, not '{url}'"), at))?;
    if rest.is_empty() || rest.starts_with('/') || url.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(invalid(format!("'{key}' = '{url}' is not a URL with a host"), at));
    }
    for name in placeholders(url).map_err(|m| invalid(format!("'{key}': {m}"), at))? {
        if !schema.columns.iter().any(|c| c.name == name) {
            let known: Vec<&str> = schema.columns.iter().map(|c| c.name.as_str()).collect();
            return Err(invalid(
                format!(
                    "'{key}' names column {{{name}}}, which the view does not have (it has {})",
                    known.join(", ")
                ),
                at,
            ));
        }
    }
    Ok(())
}

/// The column names between braces in a URL template.
fn placeholders(url: &str) -> std::result::Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut rest = url;
    while let Some(open) = rest.find(['{', '}']) {
        if rest.as_bytes()[open] == b'}' {
            return Err("a '}' without its '{'".into());
        }
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or("a '{' without its '}'")?;
        let name = &after[..close];
        if name.is_empty() || name.contains('{') {
            return Err("a placeholder is {column}".into());
        }
        out.push(name);
        rest = &after[close + 1..];
    }
    Ok(out)
}

/// A topic of the embedded log that the sink appends outcomes to.
fn topic(name: &str, key: &str, at: Loc) -> Result<String> {
    let ok = (1..=200).contains(&name.len())
        && !name.starts_with("__")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(name.to_string())
    } else {
        Err(invalid(
            format!("'{key}' = '{name}' is not a topic name: 1-200 of letters, digits, . _ - (not starting with __)"),
            at,
        ))
    }
}
