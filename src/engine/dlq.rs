//! Sending dead letters through again (`POST /v1/dlq/replay`): a decode
//! failure is read again by its table's current definition — if the
//! record is still in the topic, the table's dataflow (rebuilt when the
//! definition was replaced) read it there already; if retention removed
//! it, it is appended again — and a failed action is sent again by its
//! sink, with the idempotency key it had. Each replayed letter is marked with
//! what became of it; none is removed.

use serde::Serialize;
use serde_json::Value;
use weir_connectors::action::request::ActionRequest;
use weir_connectors::dead_letters::{DeadLetter, Replay};
use weir_dataflows::catalog::ObjectKind;

use super::{Engine, EngineError};
use crate::shared::{lock, now_ms};

/// Which letters to replay.
pub struct ReplaySelection {
    /// Letters by cursor (as `GET /v1/dlq` lists them).
    pub cursors: Vec<u64>,
    /// Or every letter of one source (a table, a view, a sink) …
    pub source: Option<String>,
    /// … up to this many, oldest first.
    pub limit: usize,
    /// Letters replayed before are skipped unless this is set.
    pub again: bool,
}

/// What became of one letter.
#[derive(Serialize)]
pub struct Replayed {
    pub cursor: u64,
    pub source: String,
    /// `replayed`, `skipped` (replayed before) or `refused`.
    pub result: &'static str,
    /// Where it went, or why not.
    pub detail: String,
}

impl Engine {
    pub fn replay_dead_letters(&self, sel: &ReplaySelection) -> Result<Vec<Replayed>, EngineError> {
        let dl = self.shared.store.dead_letters();
        let internal = |e: weir_connectors::StoreError| EngineError::Internal(e.to_string());
        let mut chosen: Vec<(u64, DeadLetter)> = Vec::new();
        for &c in &sel.cursors {
            match dl.get(c).map_err(internal)? {
                Some(l) => chosen.push((c, l)),
                None => {
                    return Err(EngineError::BadRequest {
                        code: "no_such_letter",
                        message: format!("no dead letter with cursor {c}"),
                    })
                }
            }
        }
        if let Some(source) = &sel.source {
            let mut after = None;
            'pages: loop {
                let page = dl.list(after, 1000).map_err(internal)?;
                let Some((last, _)) = page.last() else { break };
                after = Some(*last);
                for (c, l) in page {
                    if chosen.len() >= sel.limit {
                        break 'pages;
                    }
                    if &l.source == source && (sel.again || l.replays.is_empty()) {
                        chosen.push((c, l));
                    }
                }
            }
        }
        let mut out = Vec::with_capacity(chosen.len());
        for (cursor, letter) in chosen {
            let source = letter.source.clone();
            if !letter.replays.is_empty() && !sel.again {
                out.push(Replayed {
                    cursor,
                    source,
                    result: "skipped",
                    detail: "replayed before (pass \"again\": true to replay it once more)".into(),
                });
                continue;
            }
            let done = match serde_json::from_str::<Value>(&letter.payload) {
                Ok(v) if v["kind"] == "action" => self.resend_action(&letter, &v),
                _ => self.reappend(&letter),
            };
            match done {
                Ok(detail) => {
                    dl.mark_replayed(
                        cursor,
                        Replay {
                            at_ms: now_ms() as i64,
                            outcome: detail.clone(),
                        },
                    )
                    .map_err(internal)?;
                    out.push(Replayed {
                        cursor,
                        source,
                        result: "replayed",
                        detail,
                    });
                }
                Err(why) => out.push(Replayed {
                    cursor,
                    source,
                    result: "refused",
                    detail: why,
                }),
            }
        }
        Ok(out)
    }

    /// A failed action, through its sink again.
    fn resend_action(&self, letter: &DeadLetter, payload: &Value) -> Result<String, String> {
        let request: ActionRequest = serde_json::from_value(payload["request"].clone())
            .map_err(|e| format!("the letter's request is not readable: {e}"))?;
        let sinks = self.shared.connectors.sinks();
        let resend = sinks
            .values()
            .find(|w| w.name == letter.source)
            .and_then(|w| w.resend.clone())
            .ok_or_else(|| format!("no action sink named {} runs now", letter.source))?;
        drop(sinks);
        let key = request.idempotency_key.clone();
        let seq = resend
            .resend(request)
            .map_err(|e| format!("cannot put it in the sink's outbox: {e}"))?;
        Ok(format!(
            "sent again by sink {} as request {seq} with Idempotency-Key {key}; its outcome goes where the sink's outcomes go",
            letter.source
        ))
    }

    /// A decode failure, appended to its table's topic again.
    fn reappend(&self, letter: &DeadLetter) -> Result<String, String> {
        let Some(pos) = &letter.position else {
            return Err(format!(
                "the letter of {} has no place in a topic (a view's evaluation error): fix the view and rebuild it",
                letter.source
            ));
        };
        let table = {
            let cat = lock(&self.catalog);
            match cat.objects.get(&letter.source).map(|o| &o.kind) {
                Some(ObjectKind::Table(t)) => t.clone(),
                _ => return Err(format!("no table named {} now", letter.source)),
            }
        };
        if table.kafka().is_some() {
            return Err(format!(
                "table {} reads Kafka topic {}: produce the fixed event to that topic again",
                table.name, pos.topic
            ));
        }
        if let Err(e) = weir_connectors::decode_json(letter.payload.as_bytes(), &table.schema) {
            return Err(format!(
                "table {}'s current definition does not read it either: {e}",
                table.name
            ));
        }
        let topic = table.topic().to_string();
        let log = &self.shared.log;
        if pos.topic == topic
            && pos.offset >= log.start_offset(&topic, pos.partition)
            && pos.offset < log.end_offset(&topic, pos.partition)
        {
            // Still in the topic: the table's dataflow, installed with its
            // current definition, read it from there; again would be twice.
            return Ok(format!(
                "read by table {}'s current definition at its place in the topic ({topic} partition {} offset {}): nothing appended",
                table.name, pos.partition, pos.offset
            ));
        }
        let partition = (pos.partition < log.partitions(&topic)).then_some(pos.partition);
        let appended = log
            .append(&topic, partition, &[letter.payload.clone().into_bytes()])
            .map_err(|e| format!("cannot append it to {topic}: {e}"))?;
        self.shared.wakers.wake();
        Ok(format!(
            "appended again to topic {topic} partition {} at offset {} (was offset {}), read by the table's current definition",
            appended.partition, appended.first_offset, pos.offset
        ))
    }
}
