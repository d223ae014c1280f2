//! The options of Kafka tables (`connector = 'kafka'`), in Flink SQL's
//! spelling, and of Kafka sinks (`CREATE SINK … WITH (connector = 'kafka')`).

use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use sqlparser::dialect::GenericDialect;

use super::error::{Loc, PlanError, Result};
use super::text::{self, end_of};
use crate::plan::{Envelope, KafkaSinkPlan, KafkaSource, KafkaStartup};

/// The Kafka options of a table, as listed in error messages.
pub(super) const KNOWN: &str = "'bootstrap.servers', 'scan.startup.mode', 'scan.startup.timestamp-millis', \
     'scan.startup.specific-offsets', 'properties.group.id', 'properties.<librdkafka setting>'";

/// The Kafka options of one table, as given, with where each was given.
#[derive(Default)]
pub(super) struct Options {
    given: Vec<(String, String, Loc)>,
}

impl Options {
    pub(super) fn accepts(&self, key: &str) -> bool {
        matches!(
            key,
            "bootstrap.servers"
                | "scan.startup.mode"
                | "scan.startup.timestamp-millis"
                | "scan.startup.specific-offsets"
        ) || key.starts_with("properties.")
    }

    pub(super) fn set(&mut self, key: &str, value: String, at: Loc) {
        self.given.push((key.to_string(), value, at));
    }

    pub(super) fn first(&self) -> Option<(&str, &str, Loc)> {
        self.given.first().map(|(k, v, at)| (k.as_str(), v.as_str(), *at))
    }

    fn get(&self, key: &str) -> Option<(&str, Loc)> {
        self.given
            .iter()
            .rev()
            .find(|(k, _, _)| k == key)
            .map(|(_, v, at)| (v.as_str(), *at))
    }

    /// The source of table `table`; `at` is where the table is defined.
    pub(super) fn source(&self, table: &str, topic: Option<(String, Loc)>, at: Loc) -> Result<KafkaSource> {
        let missing = |what: &str| PlanError::new("invalid_option", format!("a Kafka table needs '{what}'"), at);
        let brokers = self
            .get("bootstrap.servers")
            .or_else(|| self.get("properties.bootstrap.servers"))
            .map(|(v, _)| v.to_string())
            .ok_or_else(|| missing("bootstrap.servers"))?;
        let (topic, topic_at) = topic.ok_or_else(|| missing("topic"))?;
        if topic.is_empty()
            || topic.len() > 249
            || !topic.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(PlanError::new(
                "invalid_option",
                format!("\"{topic}\" is not a valid Kafka topic name: 1-249 of letters, digits, . _ -"),
                topic_at,
            ));
        }
        let startup = match self.get("scan.startup.mode") {
            None => KafkaStartup::Earliest,
            Some((mode, mode_at)) => match mode.to_lowercase().as_str() {
                "earliest" | "earliest-offset" => KafkaStartup::Earliest,
                "latest" | "latest-offset" => KafkaStartup::Latest,
                "timestamp" => {
                    let (ms, ms_at) = self.get("scan.startup.timestamp-millis").ok_or_else(|| {
                        missing("scan.startup.timestamp-millis' with 'scan.startup.mode' = 'timestamp")
                    })?;
                    KafkaStartup::Timestamp(ms.trim().parse().map_err(|_| {
                        PlanError::new(
                            "invalid_option",
                            format!(
                                "'scan.startup.timestamp-millis' must be milliseconds since the epoch, not \"{ms}\""
                            ),
                            ms_at,
                        )
                    })?)
                }
                "offsets" | "specific-offsets" => {
                    let (spec, spec_at) = self
                        .get("scan.startup.specific-offsets")
                        .ok_or_else(|| missing("scan.startup.specific-offsets' with 'scan.startup.mode' = 'offsets"))?;
                    KafkaStartup::Offsets(specific_offsets(spec).ok_or_else(|| {
                        PlanError::new(
                            "invalid_option",
                            format!(
                                "'scan.startup.specific-offsets' must read like 'partition:0,offset:42;partition:1,offset:300', not \"{spec}\""
                            ),
                            spec_at,
                        )
                    })?)
                }
                other => {
                    return Err(PlanError::new(
                        "invalid_option",
                        format!("unknown 'scan.startup.mode' '{other}' (known: earliest, latest, timestamp, offsets)"),
                        mode_at,
                    ))
                }
            },
        };
        let group_id = self
            .get("properties.group.id")
            .map_or_else(|| format!("weir-{table}"), |(v, _)| v.to_string());
        let mut properties = Vec::new();
        for (k, v, at) in &self.given {
            let Some(name) = k.strip_prefix("properties.") else {
                continue;
            };
            if matches!(name, "group.id" | "bootstrap.servers") {
                continue;
            }
            // weir tracks offsets itself and reads committed data only.
            if matches!(
                name,
                "enable.auto.commit" | "enable.auto.offset.store" | "isolation.level" | "auto.offset.reset"
            ) {
                return Err(PlanError::new(
                    "invalid_option",
                    format!("'{k}' is set by weir: it tracks the offsets of a source itself"),
                    *at,
                ));
            }
            properties.push((name.to_string(), v.clone()));
        }
        let mirror = mirror_topic(table, &brokers, &topic, &startup);
        Ok(KafkaSource {
            brokers,
            topic,
            startup,
            group_id,
            properties,
            mirror,
        })
    }
}

/// A `CREATE SINK name FROM view WITH (…)` statement, cut out of a job's
/// text before the rest is parsed (sqlparser has no such statement).
pub(super) struct SinkStatement {
    pub(super) name: String,
    pub(super) at: Loc,
    pub(super) from: String,
    pub(super) from_at: Loc,
    pub(super) options: Vec<(String, String, Loc)>,
}

/// Cuts every `CREATE SINK` statement out of `sql` (blanked, so that other
/// positions stay), and returns them.
pub(super) fn cut_sinks(sql: &str) -> Result<(String, Vec<SinkStatement>)> {
    if !sql.to_ascii_uppercase().contains("SINK") {
        return Ok((sql.to_string(), Vec::new()));
    }
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .tokenize_with_location()
        .map_err(|e| PlanError::new("syntax_error", e.message, Loc(e.location.line, e.location.column)))?;
    let sig: Vec<&TokenWithSpan> = tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .collect();
    let loc = |t: &TokenWithSpan| Loc(t.span.start.line, t.span.start.column);
    let word = |t: &TokenWithSpan, kw: &str| matches!(&t.token, Token::Word(w) if w.value.eq_ignore_ascii_case(kw));
    let starts = text::line_starts(sql);
    let mut text = sql.to_string();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 1 < sig.len() {
        // A statement starts the text or follows a semicolon.
        let starts_statement = i == 0 || matches!(sig[i - 1].token, Token::SemiColon);
        if !(starts_statement && word(sig[i], "CREATE") && word(sig[i + 1], "SINK")) {
            i += 1;
            continue;
        }
        let begin = sig[i];
        let mut j = i + 2;
        let expect = |what: &str, j: &mut usize| -> Result<&TokenWithSpan> {
            let t = sig.get(*j).copied().ok_or_else(|| {
                let (line, column) = end_of(sql);
                PlanError::new(
                    "syntax_error",
                    format!("expected {what}, found the end of the job"),
                    Loc(line, column),
                )
            })?;
            *j += 1;
            Ok(t)
        };
        let ident = |t: &TokenWithSpan, what: &str| -> Result<String> {
            match &t.token {
                Token::Word(w) => Ok(if w.quote_style.is_some() {
                    w.value.clone()
                } else {
                    w.value.to_lowercase()
                }),
                other => Err(PlanError::new(
                    "syntax_error",
                    format!("expected {what}, found {other}"),
                    loc(t),
                )),
            }
        };
        let t = expect("the sink's name", &mut j)?;
        let (name, at) = (ident(t, "the sink's name")?, loc(t));
        let t = expect("FROM", &mut j)?;
        if !word(t, "FROM") {
            return Err(PlanError::new(
                "syntax_error",
                format!("expected FROM, found {}", t.token),
                loc(t),
            ));
        }
        let t = expect("a view's name", &mut j)?;
        let (from, from_at) = (ident(t, "a view's name")?, loc(t));
        let t = expect("WITH (…)", &mut j)?;
        if !word(t, "WITH") {
            return Err(PlanError::new(
                "syntax_error",
                format!("expected WITH (…), found {}", t.token),
                loc(t),
            ));
        }
        let t = expect("(", &mut j)?;
        if t.token != Token::LParen {
            return Err(PlanError::new(
                "syntax_error",
                format!("expected (, found {}", t.token),
                loc(t),
            ));
        }
        let mut options = Vec::new();
        let end = loop {
            let k = expect("an option", &mut j)?;
            let key = match &k.token {
                Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => s.to_lowercase(),
                Token::Word(w) => w.value.to_lowercase(),
                other => {
                    return Err(PlanError::new(
                        "syntax_error",
                        format!("expected an option, found {other}"),
                        loc(k),
                    ))
                }
            };
            let eq = expect("=", &mut j)?;
            if eq.token != Token::Eq {
                return Err(PlanError::new(
                    "syntax_error",
                    format!("expected =, found {}", eq.token),
                    loc(eq),
                ));
            }
            let v = expect("a value", &mut j)?;
            let value = match &v.token {
                Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => s.clone(),
                Token::Number(n, _) => n.clone(),
                Token::Word(w) => w.value.clone(),
                other => {
                    return Err(PlanError::new(
                        "syntax_error",
                        format!("expected a value, found {other}"),
                        loc(v),
                    ))
                }
            };
            options.push((key, value, loc(v)));
            let sep = expect(", or )", &mut j)?;
            match sep.token {
                Token::Comma => continue,
                Token::RParen => break sep,
                ref other => {
                    return Err(PlanError::new(
                        "syntax_error",
                        format!("expected , or ), found {other}"),
                        loc(sep),
                    ))
                }
            }
        };
        if let Some(t) = sig
            .get(j)
            .filter(|t| t.token != Token::SemiColon && t.token != Token::EOF)
        {
            return Err(PlanError::new(
                "syntax_error",
                format!("expected ; after CREATE SINK, found {}", t.token),
                loc(t),
            ));
        }
        let (b, e) = (
            text::byte_offset(sql, &starts, begin.span.start),
            text::byte_offset(sql, &starts, end.span.end),
        );
        text::blank(sql, &mut text, b, e);
        out.push(SinkStatement {
            name,
            at,
            from,
            from_at,
            options,
        });
        i = j;
    }
    Ok((text, out))
}

/// The Kafka topic of a sink (`connector = 'kafka'`, checked by the
/// caller); `key` is its view's key.
pub(super) fn kafka_sink(st: &SinkStatement, key: &Option<Vec<usize>>) -> Result<KafkaSinkPlan> {
    let get = |k: &str| st.options.iter().rev().find(|(key, _, _)| key == k);
    let mut properties = Vec::new();
    for (k, v, at) in &st.options {
        match k.as_str() {
            "connector" | "bootstrap.servers" | "topic" | "format" | "envelope" | "sink.semantic" | "topic.partitions" => {}
            k if k.starts_with("properties.") => {
                let name = &k["properties.".len()..];
                if matches!(name, "transactional.id" | "enable.idempotence" | "bootstrap.servers") {
                    return Err(PlanError::new(
                        "invalid_option",
                        format!("'{k}' is set by weir (see 'sink.semantic')"),
                        *at,
                    ));
                }
                properties.push((name.to_string(), v.clone()));
            }
            other => {
                return Err(PlanError::new(
                    "invalid_option",
                    format!(
                        "unknown sink option '{other}' (known: connector, 'bootstrap.servers', topic, format, envelope, 'sink.semantic', 'topic.partitions', 'properties.<librdkafka setting>')"
                    ),
                    *at,
                ))
            }
        }
    }
    if let Some((_, f, at)) = get("format").filter(|(_, f, _)| !f.eq_ignore_ascii_case("json")) {
        return Err(PlanError::new(
            "invalid_option",
            format!("unknown format '{f}' (known: json)"),
            *at,
        ));
    }
    let brokers = get("bootstrap.servers")
        .map(|(_, v, _)| v.clone())
        .ok_or_else(|| PlanError::new("invalid_option", "a Kafka sink needs 'bootstrap.servers'", st.at))?;
    let (topic, topic_at) = get("topic")
        .map(|(_, v, at)| (v.clone(), *at))
        .ok_or_else(|| PlanError::new("invalid_option", "a Kafka sink needs 'topic'", st.at))?;
    if topic.is_empty() || topic.len() > 249 || !topic.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
        return Err(PlanError::new(
            "invalid_option",
            format!("\"{topic}\" is not a valid Kafka topic name: 1-249 of letters, digits, . _ -"),
            topic_at,
        ));
    }
    let envelope = match get("envelope") {
        None => {
            return Err(PlanError::new(
                "invalid_option",
                "a sink needs envelope = 'upsert' or 'debezium'",
                st.at,
            ))
        }
        Some((_, e, at)) => match e.to_lowercase().as_str() {
            "upsert" => {
                if key.is_none() {
                    return Err(PlanError::new(
                        "invalid_option",
                        format!(
                            "envelope 'upsert' needs a view with a key (GROUP BY columns); view {} has none: use envelope 'debezium'",
                            st.from
                        ),
                        *at,
                    ));
                }
                Envelope::Upsert
            }
            "debezium" => Envelope::Debezium,
            other => {
                return Err(PlanError::new(
                    "invalid_option",
                    format!("unknown envelope '{other}' (known: upsert, debezium)"),
                    *at,
                ))
            }
        },
    };
    let exactly_once = match get("sink.semantic") {
        None => false,
        Some((_, v, at)) => match v.to_lowercase().as_str() {
            "at-least-once" => false,
            "exactly-once" => true,
            other => {
                return Err(PlanError::new(
                    "invalid_option",
                    format!("unknown 'sink.semantic' '{other}' (known: at-least-once, exactly-once)"),
                    *at,
                ))
            }
        },
    };
    let partitions = match get("topic.partitions") {
        None => 1,
        Some((_, v, at)) => v
            .parse::<i32>()
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| {
                PlanError::new(
                    "invalid_option",
                    format!("'topic.partitions' must be 1 to 10000, not {v}"),
                    *at,
                )
            })?,
    };
    Ok(KafkaSinkPlan {
        brokers,
        topic,
        envelope,
        exactly_once,
        partitions,
        properties,
    })
}

/// `partition:0,offset:42;partition:1,offset:300` (Flink's syntax).
fn specific_offsets(spec: &str) -> Option<Vec<(i32, i64)>> {
    let mut out = Vec::new();
    for part in spec.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let mut partition = None;
        let mut offset = None;
        for kv in part.split(',') {
            let (k, v) = kv.split_once(':')?;
            match k.trim() {
                "partition" => partition = Some(v.trim().parse::<i32>().ok().filter(|p| *p >= 0)?),
                "offset" => offset = Some(v.trim().parse::<i64>().ok().filter(|o| *o >= 0)?),
                _ => return None,
            }
        }
        out.push((partition?, offset?));
    }
    (!out.is_empty()).then_some(out)
}

/// The embedded log topic a Kafka table is ingested into. The settings
/// that decide which records it holds are hashed into the name (FNV-1a,
/// stable across builds), so a table defined again differently starts
/// a new copy rather than mixing two.
fn mirror_topic(table: &str, brokers: &str, topic: &str, startup: &KafkaStartup) -> String {
    let identity = format!("{brokers}\u{0}{topic}\u{0}{startup:?}");
    let mut hash: u32 = 0x811c_9dc5;
    for b in identity.bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    let table: String = table
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' })
        .take(150)
        .collect();
    format!("__kafka.{table}.{hash:08x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specific_offsets_parse() {
        assert_eq!(
            specific_offsets("partition:0,offset:42;partition:1,offset:300"),
            Some(vec![(0, 42), (1, 300)])
        );
        assert_eq!(specific_offsets("partition:0"), None);
        assert_eq!(specific_offsets("partition:-1,offset:3"), None);
        assert_eq!(specific_offsets(""), None);
    }

    #[test]
    fn mirror_names_are_stable_and_distinct() {
        let a = mirror_topic("orders", "b:9092", "orders", &KafkaStartup::Earliest);
        assert_eq!(a, mirror_topic("orders", "b:9092", "orders", &KafkaStartup::Earliest));
        assert_ne!(a, mirror_topic("orders", "b:9092", "orders", &KafkaStartup::Latest));
        assert!(a.starts_with("__kafka.orders."));
    }
}
