//! Decoding a table's records: JSON events of the embedded log, or the
//! records a Kafka source copied (with their Kafka key, offset and
//! tombstones), into rows, upserts and deletes; what does not fit the
//! table is [`Rejected`] with its position, for the dead letters.

use weir_operators::repr::{Row, Schema};

use crate::dead_letters::{DeadLetter, Position};
use crate::decode::{decode_json, is_delete};
use crate::kafka::{decode_key, Mirrored, MAX_MESSAGE_BYTES};
use crate::log::LogRecord;

/// What a decoder needs to know of its table.
#[derive(Clone, Debug, PartialEq)]
pub struct TableFormat {
    pub name: String,
    pub schema: Schema,
    /// An upsert table's key columns.
    pub primary_key: Option<Vec<usize>>,
    /// The log topic its records are read from.
    pub log_topic: String,
    /// For a Kafka table, its Kafka topic: the log topic is then its copy,
    /// and positions name Kafka offsets.
    pub kafka_topic: Option<String>,
}

/// One record, decoded.
#[derive(Clone, Debug, PartialEq)]
pub enum Decoded {
    /// A row of an append-only table.
    Append(Row),
    /// The latest row of a key of an upsert table.
    Upsert { key: Row, row: Row },
    /// An upsert table's key deleted.
    Delete { key: Row },
}

/// A record that does not fit its table.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejected {
    pub position: Position,
    /// The record as text, for people to read.
    pub payload: String,
    pub reason: String,
}

impl Rejected {
    /// The dead letter of this record, identified by its position so a
    /// replay records it once.
    pub fn into_dead_letter(self, table: &str, at_ms: i64) -> DeadLetter {
        let p = &self.position;
        DeadLetter {
            id: format!("{table}:{}:{}:{}", p.topic, p.partition, p.offset),
            source: table.to_string(),
            position: Some(self.position),
            payload: self.payload,
            reason: self.reason,
            at_ms,
            replays: Vec::new(),
        }
    }
}

pub struct TableDecoder {
    table: TableFormat,
    /// For an upsert table, the schema of its key columns: a delete event
    /// carries only those.
    key_schema: Option<Schema>,
    /// For an upsert table, its schema with the key columns nullable: the
    /// value of a Kafka record whose key gives them.
    value_schema: Option<Schema>,
}

impl TableDecoder {
    pub fn new(table: TableFormat) -> TableDecoder {
        let key_schema = table.primary_key.as_ref().map(|cols| Schema {
            columns: cols.iter().map(|&i| table.schema.columns[i].clone()).collect(),
        });
        let value_schema = table.primary_key.as_ref().map(|cols| {
            let mut s = table.schema.clone();
            for &i in cols {
                s.columns[i].nullable = true;
            }
            s
        });
        TableDecoder {
            table,
            key_schema,
            value_schema,
        }
    }

    pub fn table(&self) -> &TableFormat {
        &self.table
    }

    /// Decodes one record of the log's `partition`; for a Kafka table, a
    /// copied Kafka record.
    pub fn decode(&self, partition: u32, rec: &LogRecord) -> Result<Decoded, Rejected> {
        let Some(kafka_topic) = &self.table.kafka_topic else {
            return self.decode_value(&rec.payload, None).map_err(|reason| Rejected {
                position: Position {
                    topic: self.table.log_topic.clone(),
                    partition,
                    offset: rec.offset,
                },
                payload: String::from_utf8_lossy(&rec.payload).into_owned(),
                reason,
            });
        };
        let Some(m) = Mirrored::decode(&rec.payload) else {
            return Err(Rejected {
                position: Position {
                    topic: self.table.log_topic.clone(),
                    partition,
                    offset: rec.offset,
                },
                payload: String::new(),
                reason: "unreadable mirrored record".into(),
            });
        };
        let reject = |reason: String| Rejected {
            position: Position {
                topic: kafka_topic.clone(),
                partition,
                offset: m.offset.max(0) as u64,
            },
            payload: String::from_utf8_lossy(m.value.unwrap_or_default()).into_owned(),
            reason,
        };
        if let Some(size) = m.oversized {
            return Err(reject(format!(
                "oversized: the record has {size} bytes, more than {MAX_MESSAGE_BYTES}"
            )));
        }
        let key = match (m.key, &self.key_schema) {
            (Some(k), Some(schema)) => Some(decode_key(k, schema).map_err(|e| reject(e.to_string()))?),
            _ => None,
        };
        match m.value {
            Some(value) => self.decode_value(value, key),
            None if self.table.primary_key.is_none() => {
                Err("a null value (tombstone) deletes a key only in a table with a PRIMARY KEY".into())
            }
            None => match key {
                Some(key) => Ok(Decoded::Delete { key }),
                None => Err("a tombstone needs a key".into()),
            },
        }
        .map_err(reject)
    }

    /// Decodes one JSON event; the reason if it does not fit the table.
    /// Key columns are NOT NULL, so decoding rejects a record without its
    /// key. `key`, a Kafka record's key, gives an upsert table's key
    /// columns (over the value's); an event with `"__op": "delete"` deletes
    /// its key.
    fn decode_value(&self, payload: &[u8], key: Option<Row>) -> Result<Decoded, String> {
        let (Some(key_cols), Some(key_schema)) = (&self.table.primary_key, &self.key_schema) else {
            let row = decode_json(payload, &self.table.schema).map_err(|e| e.to_string())?;
            return Ok(Decoded::Append(row));
        };
        if is_delete(payload) {
            let key = decode_json(payload, key_schema).map_err(|e| e.to_string())?;
            return Ok(Decoded::Delete { key });
        }
        // With the record's key, the value need not repeat it.
        let schema = match (&key, &self.value_schema) {
            (Some(_), Some(s)) => s,
            _ => &self.table.schema,
        };
        let mut row = decode_json(payload, schema).map_err(|e| e.to_string())?;
        let key = match key {
            Some(key) => {
                for (&i, d) in key_cols.iter().zip(&key) {
                    row[i] = d.clone();
                }
                key
            }
            None => key_cols.iter().map(|&i| row[i].clone()).collect(),
        };
        Ok(Decoded::Upsert { key, row })
    }
}
