//! The control plane: the catalog of jobs, planning and installing them,
//! replacing them without disturbing readers, and the wiring of reads,
//! connectors and status to the workers.
//!
//! # Layout
//! - `error`: [`EngineError`], mapped to HTTP statuses by the API.
//! - `jobs`: submit, install, replace, rebuild, drop (jobs and objects).
//! - `connectors`: the Kafka sources and sink writers the jobs need.
//! - `reads`: the engine's side of the read path ([`weir_queries::ReadContext`]).
//! - `status`: typed answers for jobs, views and readiness.
//! - `event_store`: reads of the log and the dead letters.
//! - `gauges`: per-view and per-connector gauges for a metrics scrape.

mod connectors;
mod dlq;
mod error;
mod event_store;
mod gauges;
mod jobs;
mod point_in_time;
mod reads;
mod retention;
mod snapshots;
mod status;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};

use weir_connectors::log::Appended;
use weir_dataflows::catalog::{Catalog, DataflowId};
use weir_operators::repr::Schema;

pub use connectors::KafkaHealth;
pub use dlq::{ReplaySelection, Replayed};
pub use error::EngineError;
pub use reads::ViewShape;
pub use retention::TopicRetention;
pub use snapshots::{SnapshotOutcome, SnapshotStatus};
pub use status::{JobStatus, ViewInfo};

use crate::shared::{lock, Shared};
use crate::worker::Command;

pub struct Engine {
    pub shared: Arc<Shared>,
    commands: Mutex<std::sync::mpsc::Sender<Command>>,
    catalog: Mutex<Catalog>,
    next_df: AtomicU64,
    /// Per installed dataflow: the plan fingerprint its snapshots carry
    /// (see `snapshots::fingerprint`).
    fingerprints: Mutex<HashMap<DataflowId, u64>>,
    /// Whether jobs restored at start resume from their snapshots.
    restore_snapshots: AtomicBool,
    /// Per view, its current version's columns and closure, shared by reads
    /// (see `reads`): (dataflow, schema, closure).
    #[allow(clippy::type_complexity)]
    view_versions: Mutex<HashMap<String, (DataflowId, Arc<Schema>, Arc<BTreeSet<DataflowId>>)>>,
}

impl Engine {
    pub fn new(shared: Arc<Shared>, commands: std::sync::mpsc::Sender<Command>) -> Arc<Engine> {
        Arc::new(Engine {
            shared,
            commands: Mutex::new(commands),
            catalog: Mutex::new(Catalog::default()),
            next_df: AtomicU64::new(1),
            fingerprints: Mutex::default(),
            restore_snapshots: AtomicBool::new(true),
            view_versions: Mutex::default(),
        })
    }

    fn send(&self, cmd: Command) -> Result<(), EngineError> {
        lock(&self.commands)
            .send(cmd)
            .map_err(|_| EngineError::Internal("the dataflow workers have stopped".into()))?;
        self.shared.wakers.wake();
        Ok(())
    }

    /// Appends events to a topic of the embedded log, durably, and wakes
    /// the workers. Topics whose names start with `__` are the engine's own
    /// (Kafka sources are copied into them): refused.
    pub fn append(&self, topic: &str, partition: Option<u32>, events: &[Vec<u8>]) -> Result<Appended, EngineError> {
        Self::check_writable(topic)?;
        let appended = self.shared.log.append(topic, partition, events)?;
        self.shared.wakers.wake();
        self.shared
            .metrics
            .appended
            .with_label_values(&[appended.topic.as_str()])
            .inc_by(events.len() as u64);
        Ok(appended)
    }

    /// Refuses appends to the engine's own topics.
    pub fn check_writable(topic: &str) -> Result<(), EngineError> {
        if topic.starts_with(weir_connectors::log::RESERVED_PREFIX) {
            return Err(EngineError::BadRequest {
                code: "invalid_topic",
                message: format!("topic {topic} is the engine's own (names starting with __ are reserved: Kafka sources are copied into them)"),
            });
        }
        Ok(())
    }

    pub fn shutdown(&self) {
        let _ = self.send(Command::Shutdown);
    }
}
