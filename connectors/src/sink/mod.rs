//! Sinks: a view's changes leaving the engine, one engine time at a time,
//! in time order ([`SinkMsg`]), to a Kafka changelog topic ([`kafka`]) or
//! as calls of an HTTP service ([`crate::action`]).
//!
//! Every sink kind takes the same messages from the dataflow (so a job
//! replace, a snapshot restore and a replay after a restart work alike:
//! [`feed`]), records how far it has taken them ([`SinkProgress`]) and
//! reports a [`SinkStatus`].

pub mod feed;
pub mod kafka;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rocksdb::WriteBatch;
use weir_operators::repr::{Diff, Row, Tick};

pub use kafka::{encode, start_sink, Record, SinkConfig, SinkEnvelope, SinkError, AS_OF_HEADER};

use crate::action::{ActionResend, ActionStatus};
use crate::keys::read_u64;
use crate::meta::Meta;
use crate::rocks::StoreError;
use crate::sync::lock;

/// What a dataflow version sends to its sink's writer.
#[derive(Debug)]
pub enum SinkMsg {
    Changes {
        version: u64,
        as_of: Tick,
        changes: Vec<(Row, Diff)>,
    },
    /// Every change of `version` before `frontier` has been sent.
    Frontier { version: u64, frontier: Tick },
    /// From here on, write `version`'s changes from where the current
    /// version's end (a replaced job's new version takes over).
    Activate { version: u64 },
    /// `version` was restored from a snapshot at `at`, taken once this sink
    /// had written every change through `at` (see
    /// [`SinkStatus::settled`]): its changes through `at` are the restored
    /// state, not changes, and are not written.
    ResumeAfter { version: u64, at: Tick },
}

/// What a sink reports, for job status and metrics.
#[derive(Debug, Default)]
pub struct SinkStatus {
    /// The last time whose changes are written (0: none yet): in the topic
    /// for Kafka, in the durable outbox for an action sink.
    pub written_as_of: AtomicU64,
    /// The active version's frontier: its changes before it are handed over.
    pub frontier: AtomicU64,
    /// Every change before this time is written (flushed and acknowledged;
    /// recorded as written for exactly-once; in the outbox for actions).
    pub settled: AtomicU64,
    pub records: AtomicU64,
    pub errors: AtomicU64,
    /// Times handed over and not yet written.
    pub queued: AtomicU64,
    pub last_error: Mutex<Option<String>>,
    /// True while the last attempt to write failed.
    pub failing: AtomicBool,
}

/// Where a sink's progress is recorded: the last time written (and, for
/// exactly-once Kafka, the one being committed).
pub struct SinkProgress {
    meta: Meta,
    key: String,
}

impl SinkProgress {
    /// The progress of sink `name` writing to `destination` (a topic, a
    /// URL): a sink defined again elsewhere starts afresh.
    pub fn new(meta: Meta, name: &str, destination: &str) -> SinkProgress {
        SinkProgress {
            meta,
            key: format!("sink/{name}/{destination}"),
        }
    }

    pub(crate) fn get(&self, what: &str) -> Result<Option<Tick>, StoreError> {
        Ok(self
            .meta
            .get(&format!("{}/{what}", self.key))?
            .and_then(|b| read_u64(&b)))
    }

    pub(crate) fn put(&self, what: &str, t: Tick) -> Result<(), StoreError> {
        self.meta.put(&format!("{}/{what}", self.key), &t.to_be_bytes())
    }

    /// Adds recording `what` = `t` to `batch`, to be written with it.
    pub(crate) fn put_in(&self, batch: &mut WriteBatch, what: &str, t: Tick) {
        self.meta
            .put_in(batch, &format!("{}/{what}", self.key), &t.to_be_bytes());
    }

    /// Forgets the progress: a sink defined again later starts afresh.
    pub fn forget(&self) -> Result<(), StoreError> {
        for what in ["committed", "pending"] {
            self.meta.delete(&format!("{}/{what}", self.key))?;
        }
        Ok(())
    }

    /// The times a restarted engine must replay exactly (history is
    /// replayed at coarser times, but never across these): where the
    /// writer may resume.
    pub fn pins(&self) -> Vec<Tick> {
        let mut pins: Vec<Tick> = ["committed", "pending"]
            .iter()
            .filter_map(|w| self.get(w).ok().flatten())
            .collect();
        pins.sort_unstable();
        pins.dedup();
        pins
    }
}

/// The rows that left and joined each key at one time (`key`: the key
/// columns; `None`: the whole row), each as often as its multiplicity.
pub(crate) fn by_key<'a>(changes: &'a [(Row, Diff)], key: Option<&[usize]>) -> BTreeMap<Row, Moved<'a>> {
    let mut out: BTreeMap<Row, Moved<'a>> = BTreeMap::new();
    for (row, diff) in changes {
        let k: Row = match key {
            Some(cols) => cols.iter().map(|&c| row[c].clone()).collect(),
            None => row.clone(),
        };
        let e = out.entry(k).or_default();
        for _ in 0..diff.unsigned_abs() {
            if *diff < 0 {
                e.0.push(row);
            } else {
                e.1.push(row);
            }
        }
    }
    out
}

/// A key's rows that left and joined it.
pub(crate) type Moved<'a> = (Vec<&'a Row>, Vec<&'a Row>);

/// Waits between a sink's attempts at something that failed: doubling from
/// 100 ms to 10 s, each failure shown in the sink's status, cut short when
/// the sink stops.
pub(crate) struct Retrying<'a> {
    status: &'a SinkStatus,
    stop: &'a AtomicBool,
    wait: Duration,
}

impl<'a> Retrying<'a> {
    pub(crate) fn new(status: &'a SinkStatus, stop: &'a AtomicBool) -> Retrying<'a> {
        Retrying {
            status,
            stop,
            wait: Duration::from_millis(100),
        }
    }

    pub(crate) fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    pub(crate) fn succeeded(&self) {
        self.status.failing.store(false, Ordering::SeqCst);
    }

    /// Records `e`, then waits; false if the sink stopped meanwhile.
    pub(crate) fn failed(&mut self, e: impl std::fmt::Display) -> bool {
        self.status.errors.fetch_add(1, Ordering::Relaxed);
        self.status.failing.store(true, Ordering::SeqCst);
        *lock(&self.status.last_error) = Some(e.to_string());
        let until = Instant::now() + self.wait;
        while !self.stopped() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.wait = (self.wait * 2).min(Duration::from_secs(10));
        !self.stopped()
    }
}

/// What forgets a stopped sink's durable state (its progress, an action
/// sink's outbox).
pub(crate) type Forget = Box<dyn FnOnce() -> Result<(), StoreError> + Send>;

/// A running sink writer; stops when dropped.
pub struct Sink {
    pub name: String,
    /// The topic or URL it writes to.
    pub destination: String,
    pub status: Arc<SinkStatus>,
    /// An action sink's deliveries, retries and circuit.
    pub action: Option<Arc<ActionStatus>>,
    /// An action sink's way to send a dead letter through again.
    pub resend: Option<Arc<ActionResend>>,
    pub(crate) tx: Sender<SinkMsg>,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) threads: Vec<std::thread::JoinHandle<()>>,
    pub(crate) forget: Option<Forget>,
}

impl Sink {
    /// Where a dataflow version sends its changes.
    pub fn sender(&self) -> Sender<SinkMsg> {
        self.tx.clone()
    }

    /// Stops the writer, then forgets its durable state: for a sink no job
    /// has any more.
    pub fn stop_and_forget(mut self) -> Result<(), StoreError> {
        self.halt();
        match self.forget.take() {
            Some(f) => f(),
            None => Ok(()),
        }
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.halt();
    }
}
