//! The options of Kafka tables (`connector = 'kafka'`), in Flink SQL's
//! spelling, and of Kafka sinks (`CREATE SINK … WITH (connector = 'kafka')`).

use super::*;
use crate::plan::{KafkaSource, KafkaStartup};

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
        let missing = |what: &str| {
            PlanError::new(
                "invalid_option",
                format!("a Kafka table needs '{what}'"),
                at,
            )
        };
        let brokers = self
            .get("bootstrap.servers")
            .or_else(|| self.get("properties.bootstrap.servers"))
            .map(|(v, _)| v.to_string())
            .ok_or_else(|| missing("bootstrap.servers"))?;
        let (topic, topic_at) = topic.ok_or_else(|| missing("topic"))?;
        if topic.is_empty() || topic.len() > 249 || !topic.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
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
                    let (ms, ms_at) = self
                        .get("scan.startup.timestamp-millis")
                        .ok_or_else(|| missing("scan.startup.timestamp-millis' with 'scan.startup.mode' = 'timestamp"))?;
                    KafkaStartup::Timestamp(ms.trim().parse().map_err(|_| {
                        PlanError::new(
                            "invalid_option",
                            format!("'scan.startup.timestamp-millis' must be milliseconds since the epoch, not \"{ms}\""),
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
            let Some(name) = k.strip_prefix("properties.") else { continue };
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
