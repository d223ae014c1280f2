//! The Kafka producer: idempotent or transactional writes, with the
//! delivery reports collected per partition.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;

use super::client::{kafka_error_kind, kafka_error_retryable, refused};
use crate::error::ErrorKind;
use crate::sync::lock;

/// Why producing, or creating a topic, failed.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("{failed} of {sent} records were not delivered; first error: {first}")]
    Undelivered { sent: usize, failed: usize, first: String },
    #[error("cannot create topic {topic}: {code}")]
    CreateTopic { topic: String, code: RDKafkaErrorCode },
}

impl ProduceError {
    /// Whose fault it is: the user's for refused client settings
    /// (properties, credentials, ACLs) and for a topic the broker will not
    /// create as asked (invalid name, partitions, replication or config, a
    /// policy); weir's for a dropped client; the broker's otherwise,
    /// including records it did not acknowledge.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ProduceError::Kafka(e) => kafka_error_kind(e),
            ProduceError::Undelivered { .. } => ErrorKind::External,
            ProduceError::CreateTopic { code, .. } if refused(*code) || invalid_topic(*code) => ErrorKind::User,
            ProduceError::CreateTopic { .. } => ErrorKind::External,
        }
    }

    /// Whether trying again may succeed: for the broker's errors.
    pub fn retryable(&self) -> bool {
        match self {
            ProduceError::Kafka(e) => kafka_error_retryable(e),
            ProduceError::Undelivered { .. } | ProduceError::CreateTopic { .. } => self.kind() == ErrorKind::External,
        }
    }
}

/// Codes with which the broker refuses to create a topic as asked.
fn invalid_topic(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::InvalidPartitions
            | RDKafkaErrorCode::InvalidReplicationFactor
            | RDKafkaErrorCode::InvalidConfig
            | RDKafkaErrorCode::PolicyViolation
    )
}

/// Where each partition's delivered records landed: (first, last) offset.
pub type Delivered = BTreeMap<i32, (i64, i64)>;

#[derive(Default)]
struct DeliveryState {
    delivered: Delivered,
    failed: usize,
    first_error: Option<String>,
}

/// Collects delivery reports.
struct Deliveries(Arc<Mutex<DeliveryState>>);

impl ClientContext for Deliveries {
    fn log(&self, _level: RDKafkaLogLevel, _fac: &str, _message: &str) {}
}

impl rdkafka::producer::ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        let mut st = lock(&self.0);
        match result {
            Ok(m) => {
                let e = st.delivered.entry(m.partition()).or_insert((m.offset(), m.offset()));
                e.0 = e.0.min(m.offset());
                e.1 = e.1.max(m.offset());
            }
            Err((e, _)) => {
                st.failed += 1;
                st.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// A producer for `weir produce`: idempotent (no record written twice by
/// its retries), every record acknowledged by all in-sync replicas.
pub struct Producer {
    inner: rdkafka::producer::BaseProducer<Deliveries>,
    state: Arc<Mutex<DeliveryState>>,
    sent: usize,
}

impl Producer {
    pub fn new(brokers: &str) -> Result<Producer, ProduceError> {
        Producer::with_settings(brokers, &[], None)
    }

    /// A producer with further librdkafka `settings`, and transactional
    /// with `transactional_id` (then [`Producer::init_transactions`] first).
    pub fn with_settings(
        brokers: &str,
        settings: &[(String, String)],
        transactional_id: Option<&str>,
    ) -> Result<Producer, ProduceError> {
        let state = Arc::new(Mutex::new(DeliveryState::default()));
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("batch.size", "1000000")
            .set("queue.buffering.max.messages", "1000000")
            .set("message.timeout.ms", "60000");
        if let Some(id) = transactional_id {
            cfg.set("transactional.id", id);
        }
        for (k, v) in settings {
            cfg.set(k, v);
        }
        let inner = cfg.create_with_context(Deliveries(Arc::clone(&state)))?;
        Ok(Producer { inner, state, sent: 0 })
    }

    pub fn init_transactions(&self, timeout: Duration) -> Result<(), KafkaError> {
        use rdkafka::producer::Producer as _;
        self.inner.init_transactions(timeout)
    }

    pub fn begin_transaction(&self) -> Result<(), KafkaError> {
        use rdkafka::producer::Producer as _;
        self.inner.begin_transaction()
    }

    /// Commits the transaction (flushing its records first).
    pub fn commit_transaction(&mut self, timeout: Duration) -> Result<(), ProduceError> {
        use rdkafka::producer::Producer as _;
        self.inner.commit_transaction(timeout)?;
        self.flush(timeout).map(|_| ())
    }

    pub fn abort_transaction(&mut self, timeout: Duration) -> Result<(), KafkaError> {
        use rdkafka::producer::Producer as _;
        let aborted = self.inner.abort_transaction(timeout);
        // Reports of an aborted transaction's records say nothing.
        *lock(&self.state) = DeliveryState::default();
        self.sent = 0;
        aborted
    }

    /// Queues one record (`value: None` is a tombstone); waits while the
    /// local queue is full.
    pub fn send(&mut self, topic: &str, key: Option<&[u8]>, value: Option<&[u8]>) -> Result<(), ProduceError> {
        self.send_with_headers(topic, key, value, None)
    }

    /// [`Producer::send`] with headers.
    pub fn send_with_headers(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: Option<&rdkafka::message::OwnedHeaders>,
    ) -> Result<(), ProduceError> {
        use rdkafka::producer::BaseRecord;
        loop {
            let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic);
            if let Some(k) = key {
                record = record.key(k);
            }
            if let Some(v) = value {
                record = record.payload(v);
            }
            if let Some(h) = headers {
                record = record.headers(h.clone());
            }
            match self.inner.send(record) {
                Ok(()) => {
                    self.sent += 1;
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    self.inner.poll(Duration::from_millis(10));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }

    /// Waits until every queued record is acknowledged; where they landed,
    /// or why some were not delivered.
    pub fn flush(&mut self, timeout: Duration) -> Result<Delivered, ProduceError> {
        use rdkafka::producer::Producer as _;
        self.inner.flush(timeout)?;
        let mut st = lock(&self.state);
        let out = std::mem::take(&mut *st);
        let sent = std::mem::take(&mut self.sent);
        if out.failed > 0 {
            return Err(ProduceError::Undelivered {
                sent,
                failed: out.failed,
                first: out.first_error.unwrap_or_default(),
            });
        }
        Ok(out.delivered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_creation_errors_say_whose_fault() {
        let create = |code| ProduceError::CreateTopic {
            topic: "t".into(),
            code,
        };
        let invalid = create(RDKafkaErrorCode::InvalidPartitions);
        assert_eq!(
            invalid.to_string(),
            format!("cannot create topic t: {}", RDKafkaErrorCode::InvalidPartitions)
        );
        assert_eq!((invalid.kind(), invalid.retryable()), (ErrorKind::User, false));
        let slow = create(RDKafkaErrorCode::RequestTimedOut);
        assert_eq!((slow.kind(), slow.retryable()), (ErrorKind::External, true));
        let lost = ProduceError::Undelivered {
            sent: 2,
            failed: 1,
            first: "timed out".into(),
        };
        assert_eq!((lost.kind(), lost.retryable()), (ErrorKind::External, true));
    }
}
