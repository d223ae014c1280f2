//! The Kafka client commands: `weir produce --brokers` (NDJSON into a
//! Kafka topic, keyed, deletes as tombstones) and `weir generate --brokers`.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use weir_connectors::kafka::{ensure_topic, Producer};

use super::shop;
use crate::shared::now_ms;

/// Where `weir produce` writes when it writes to Kafka.
#[derive(Args, Clone)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers: produce to Kafka instead of the engine's log.
    #[arg(long)]
    pub brokers: Option<String>,
    /// Key each record by these fields (comma-separated), as a JSON object;
    /// an event with `"__op": "delete"` is then sent as a tombstone.
    #[arg(long)]
    pub key: Option<String>,
    /// Create the topic with this many partitions if it does not exist.
    #[arg(long)]
    pub partitions: Option<i32>,
}

/// `weir produce --brokers`: NDJSON to a Kafka topic, keyed by `--key`.
pub fn produce(topic: &str, file: Option<PathBuf>, brokers: &str, args: &KafkaArgs, batch: usize) -> Result<()> {
    let text = match file {
        Some(f) => std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?,
        None => std::io::read_to_string(std::io::stdin())?,
    };
    if let Some(n) = args.partitions {
        ensure_topic(brokers, topic, n)?;
    }
    let key_fields: Vec<&str> = args
        .key
        .as_deref()
        .map(|k| k.split(',').map(str::trim).filter(|f| !f.is_empty()).collect())
        .unwrap_or_default();
    let mut producer = Producer::new(brokers)?;
    let lines: Vec<(usize, &str)> = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).collect();
    for chunk in lines.chunks(batch.max(1)) {
        for (n, line) in chunk {
            let event: serde_json::Value =
                serde_json::from_str(line).with_context(|| format!("line {}: not JSON", n + 1))?;
            let (key, value) = kafka_record(&event, line, &key_fields).with_context(|| format!("line {}", n + 1))?;
            producer.send(topic, key.as_deref(), value.as_deref())?;
        }
        let delivered = producer.flush(Duration::from_secs(60))?;
        for (partition, (first, last)) in delivered {
            println!(
                "{}",
                serde_json::json!({
                    "topic": topic, "partition": partition, "first_offset": first, "last_offset": last,
                    "token": format!("{topic}:{partition}:{last}"),
                })
            );
        }
    }
    Ok(())
}

/// The key and value of one event: the key is a JSON object of
/// `key_fields` (none: no key); a keyed `"__op": "delete"` event is a
/// tombstone.
fn kafka_record(event: &serde_json::Value, line: &str, key_fields: &[&str]) -> Result<weir_connectors::sink::Record> {
    if key_fields.is_empty() {
        return Ok((None, Some(line.as_bytes().to_vec())));
    }
    let obj = event.as_object().context("an event must be a JSON object")?;
    let mut key = serde_json::Map::new();
    for f in key_fields {
        let v = obj
            .get(*f)
            .with_context(|| format!("the event has no key field \"{f}\""))?;
        key.insert(f.to_string(), v.clone());
    }
    let key = serde_json::to_vec(&key)?;
    let delete = weir_connectors::decode::is_delete(line.as_bytes());
    Ok((Some(key), (!delete).then(|| line.as_bytes().to_vec())))
}

/// `weir generate --brokers`: the shop's events into Kafka topics.
pub fn generate(events: u64, brokers: &str, partitions: i32, seed: u64, order_ids: Option<i64>) -> Result<()> {
    let start = now_ms() as i64 - events as i64;
    let mut gen = shop::ShopGenerator::new(seed, start, 1000);
    if let Some(n) = order_ids {
        gen = gen.with_order_ids(n);
    }
    let mut producer = Producer::new(brokers)?;
    let mut created: HashMap<&'static str, i32> = HashMap::new();
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    for i in 0..events {
        let (topic, event) = gen.next_event();
        if !created.contains_key(topic) {
            created.insert(topic, ensure_topic(brokers, topic, partitions)?);
        }
        producer.send(topic, None, Some(event.to_string().as_bytes()))?;
        *counts.entry(topic).or_default() += 1;
        if i % 100_000 == 99_999 {
            producer.flush(Duration::from_secs(120))?;
        }
    }
    producer.flush(Duration::from_secs(120))?;
    println!(
        "{}",
        serde_json::json!({"events": events, "brokers": brokers, "topics": counts})
    );
    Ok(())
}
