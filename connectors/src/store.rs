//! The RocksDB state store: one database per engine, shared by the event
//! log, the job store, the dead-letter list and the connectors' settings.
//! Its key layout is in [`crate::keys`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{BlockBasedIndexType, BlockBasedOptions, Cache, DBCompressionType, Options, WriteBatch, DB};

use crate::clock::Clock;
use crate::dead_letters::DeadLetters;
use crate::job_store::JobStore;
use crate::keys::{read_u32, TAG_VERSION};
use crate::log::EventLog;
use crate::rocks::write_durably;
use crate::snapshots::Snapshots;

pub use crate::keys::FORMAT_VERSION;
pub use crate::meta::Meta;
pub use crate::rocks::StoreError;

/// The engine's one RocksDB database. Cheap to clone (an `Arc` inside),
/// `Send + Sync`; the database closes when the last clone and the last view
/// handed out by it are dropped.
#[derive(Clone)]
pub struct StateStore {
    path: PathBuf,
    db: Arc<DB>,
    log: EventLog,
    jobs: JobStore,
    dead_letters: DeadLetters,
    snapshots: Snapshots,
}

/// The RocksDB block cache (data, index and filter blocks).
const BLOCK_CACHE_BYTES: usize = 32 << 20;

impl StateStore {
    /// Opens the database at `path`, creating the directory and the database
    /// if missing, and recovers the in-memory state of every view (end
    /// offsets, next sequence numbers, jobs, dead-letter counts).
    pub fn open(path: &Path) -> Result<StateStore, StoreError> {
        Self::open_with_clock(path, Clock::Wall)
    }

    /// [`StateStore::open`] with the log stamping appends by `clock`.
    pub fn open_with_clock(path: &Path, clock: Clock) -> Result<StateStore, StoreError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_compression_type(DBCompressionType::Lz4);
        // Memory for reading the log stays fixed however long it grows: data
        // blocks, and the index and filter blocks of every file (otherwise
        // held outside any cache, growing with the log), share one cache.
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&Cache::new_lru_cache(BLOCK_CACHE_BYTES));
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        // A seek reads a small top-level index and one 4 KiB index
        // partition, not a whole file's index: with one index block per
        // file, a restart's few seeks per partition read (and decompress)
        // every file's index, which grows with the log.
        table.set_index_type(BlockBasedIndexType::TwoLevelIndexSearch);
        table.set_metadata_block_size(4096);
        table.set_pin_top_level_index_and_filter(true);
        // The log is read in order: larger blocks mean fewer index entries
        // and better compression, at a little more work per point read.
        table.set_block_size(16 << 10);
        opts.set_block_based_table_factory(&table);
        let db = DB::open(&opts, path).map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        check_version(&db, path)?;
        let db = Arc::new(db);
        Ok(StateStore {
            path: path.to_path_buf(),
            log: EventLog::recover(db.clone(), clock)?,
            jobs: JobStore::recover(db.clone())?,
            dead_letters: DeadLetters::recover(db.clone())?,
            snapshots: Snapshots::recover(db.clone())?,
            db,
        })
    }

    /// Stops RocksDB's background flushes and compactions and waits for
    /// those running, before the process exits: a process that ends while
    /// they run can crash in RocksDB's teardown. Every write already made is
    /// durable (writes are synced); the store must not be written after this.
    pub fn stop_background_work(&self) {
        self.db.cancel_all_background_work(true);
    }

    /// The directory the database lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The embedded event log.
    pub fn log(&self) -> EventLog {
        self.log.clone()
    }

    /// The durable job store.
    pub fn jobs(&self) -> JobStore {
        self.jobs.clone()
    }

    /// The dead-letter list.
    pub fn dead_letters(&self) -> DeadLetters {
        self.dead_letters.clone()
    }

    /// The dataflows' snapshots.
    pub fn snapshots(&self) -> Snapshots {
        self.snapshots.clone()
    }

    /// The database, for the connectors' own records (an action sink's
    /// outbox).
    pub(crate) fn db(&self) -> Arc<DB> {
        self.db.clone()
    }

    /// Small durable settings of the connectors (e.g. where a Kafka source
    /// started), by key.
    pub fn meta(&self) -> Meta {
        Meta::new(self.db.clone())
    }
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore").field("path", &self.path).finish()
    }
}

fn check_version(db: &DB, path: &Path) -> Result<(), StoreError> {
    match db.get([TAG_VERSION])? {
        Some(bytes) => {
            let found =
                read_u32(&bytes).ok_or_else(|| StoreError::corrupt(&[TAG_VERSION], "version is not 4 bytes"))?;
            if found != FORMAT_VERSION {
                return Err(StoreError::UnsupportedVersion {
                    path: path.to_path_buf(),
                    found,
                    expected: FORMAT_VERSION,
                });
            }
            Ok(())
        }
        None => {
            let mut batch = WriteBatch::default();
            batch.put([TAG_VERSION], FORMAT_VERSION.to_be_bytes());
            write_durably(db, batch)
        }
    }
}
