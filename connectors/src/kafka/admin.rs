//! Topic administration: creating a topic when it is missing (for sinks
//! and `weir produce`).

use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use super::client::REQUEST_TIMEOUT;
use super::producer::ProduceError;

/// Creates `topic` with `partitions` partitions unless it exists; returns
/// the partitions it has.
pub fn ensure_topic(brokers: &str, topic: &str, partitions: i32) -> Result<i32, ProduceError> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let probe: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    let existing = |c: &BaseConsumer| -> Result<Option<i32>, KafkaError> {
        let md = c.fetch_metadata(Some(topic), REQUEST_TIMEOUT)?;
        Ok(md
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
            .map(|t| t.partitions().len() as i32))
    };
    if let Some(n) = existing(&probe)? {
        return Ok(n);
    }
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new()
        .operation_timeout(Some(REQUEST_TIMEOUT))
        .request_timeout(Some(REQUEST_TIMEOUT));
    let runtime = block_on(admin.create_topics([&new], &opts));
    match runtime?.into_iter().next() {
        Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) | Some(Ok(_)) | None => {}
        Some(Err((_, code))) => {
            return Err(ProduceError::CreateTopic {
                topic: topic.to_string(),
                code,
            })
        }
    }
    Ok(existing(&probe)?.unwrap_or(partitions))
}

/// Runs a future to completion on this thread (the admin client's calls
/// are futures; their work happens on librdkafka's threads).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    use std::task::{Context as TaskContext, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = TaskContext::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park_timeout(Duration::from_millis(50));
    }
}
