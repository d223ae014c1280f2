//! `weir generate` (the shop's events straight into a stopped engine's
//! log, for loading volume) and the live feed of `--generate-rate`.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use weir_connectors::store::StateStore;

use super::shop;
use crate::shared::now_ms;

/// Appends the synthetic shop stream to the log at `rate` events per second.
pub async fn feed_shop(log: weir_connectors::log::EventLog, rate: u64, seed: u64) {
    let mut gen = shop::ShopGenerator::new(seed, now_ms() as i64, rate);
    // Batches of 1/10 s: ten durable appends per second per topic at most.
    let per_tick = (rate / 10).max(1);
    let mut interval = tokio::time::interval(Duration::from_millis(100));
    loop {
        interval.tick().await;
        let mut by_topic: HashMap<&'static str, Vec<Vec<u8>>> = HashMap::new();
        for _ in 0..per_tick {
            let (topic, event) = gen.next_event();
            by_topic.entry(topic).or_default().push(event.to_string().into_bytes());
        }
        let log = log.clone();
        let result = tokio::task::spawn_blocking(move || {
            for (topic, events) in by_topic {
                log.append(topic, None, &events)?;
            }
            Ok::<_, weir_connectors::log::LogError>(())
        })
        .await;
        if let Ok(Err(e)) = result {
            eprintln!("weir: the shop generator stopped: {e}");
            return;
        }
    }
}

/// `weir generate`: the shop's events straight into a data directory's log.
pub fn generate(events: u64, data_dir: &Path, seed: u64, batch: usize, order_ids: Option<i64>) -> Result<()> {
    std::fs::create_dir_all(data_dir)?;
    let store = StateStore::open(data_dir)
        .with_context(|| format!("opening {} (is an engine running on it?)", data_dir.display()))?;
    let log = store.log();
    // Event time: ending now, 1 ms apart.
    let start = now_ms() as i64 - events as i64;
    let mut gen = shop::ShopGenerator::new(seed, start, 1000);
    if let Some(n) = order_ids {
        gen = gen.with_order_ids(n);
    }
    let mut by_topic: HashMap<&'static str, Vec<Vec<u8>>> = HashMap::new();
    let mut written = 0u64;
    while written < events {
        let (topic, event) = gen.next_event();
        let buf = by_topic.entry(topic).or_default();
        buf.push(event.to_string().into_bytes());
        written += 1;
        if buf.len() >= batch {
            log.append(topic, None, buf)?;
            buf.clear();
        }
    }
    for (topic, buf) in by_topic {
        if !buf.is_empty() {
            log.append(topic, None, &buf)?;
        }
    }
    println!("{}", serde_json::json!({"events": written, "topics": log.topics()}));
    Ok(())
}
