//! The state store's views against real RocksDB files in temporary
//! directories: durability across close/reopen, concurrency, ranges.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::thread;

use weir_connectors::dead_letters::{DeadLetter, Position};
use weir_connectors::log::{LogError, DEFAULT_PARTITIONS};
use weir_connectors::store::{StateStore, StoreError, FORMAT_VERSION};
use weir_connectors::ErrorKind;

fn open(dir: &Path) -> StateStore {
    StateStore::open(dir).expect("open state store")
}

fn events(texts: &[&str]) -> Vec<Vec<u8>> {
    texts.iter().map(|t| t.as_bytes().to_vec()).collect()
}

#[test]
fn append_assigns_dense_offsets_and_seqs() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let log = store.log();

    let a = log
        .append("orders", Some(1), &events(&["{\"a\":1}", "{\"a\":2}"]))
        .unwrap();
    assert_eq!(
        (a.partition, a.first_offset, a.last_offset, a.first_seq, a.last_seq),
        (1, 0, 1, 0, 1)
    );
    let b = log.append("orders", Some(2), &events(&["{\"a\":3}"])).unwrap();
    assert_eq!(
        (b.partition, b.first_offset, b.last_offset, b.first_seq, b.last_seq),
        (2, 0, 0, 2, 2)
    );
    let c = log.append("orders", Some(1), &events(&["{\"a\":4}"])).unwrap();
    assert_eq!((c.first_offset, c.first_seq), (2, 3));

    let info = log.topic("orders").unwrap();
    assert_eq!(info.partitions, DEFAULT_PARTITIONS);
    assert_eq!(info.end_offsets, vec![0, 3, 1, 0]);
    assert_eq!(log.end_offset("orders", 1), 3);
    assert_eq!(log.end_offset("orders", 99), 0);
    assert_eq!(log.end_offset("nope", 0), 0);

    let records = log.read("orders", 1, 0, 100).unwrap();
    let got: Vec<(u64, u64, &[u8])> = records
        .iter()
        .map(|r| (r.offset, r.seq, r.payload.as_slice()))
        .collect();
    assert_eq!(
        got,
        vec![
            (0, 0, &b"{\"a\":1}"[..]),
            (1, 1, &b"{\"a\":2}"[..]),
            (2, 3, &b"{\"a\":4}"[..])
        ]
    );
}

#[test]
fn round_robin_spreads_batches_over_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).log();
    let partitions: Vec<u32> = (0..8)
        .map(|_| log.append("rr", None, &events(&["{}"])).unwrap().partition)
        .collect();
    assert_eq!(partitions, vec![0, 1, 2, 3, 0, 1, 2, 3]);
    assert_eq!(log.topic("rr").unwrap().end_offsets, vec![2, 2, 2, 2]);
}

#[test]
fn read_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).log();
    log.create_topic("r", 2).unwrap();
    let batch: Vec<Vec<u8>> = (0..10).map(|i| format!("{{\"i\":{i}}}").into_bytes()).collect();
    log.append("r", Some(0), &batch).unwrap();
    log.append("r", Some(1), &events(&["{\"other\":true}"])).unwrap();

    let offsets = |from, max| -> Vec<u64> { log.read("r", 0, from, max).unwrap().iter().map(|r| r.offset).collect() };
    assert_eq!(offsets(0, 3), vec![0, 1, 2]);
    assert_eq!(offsets(7, 100), vec![7, 8, 9]);
    assert_eq!(offsets(9, 1), vec![9]);
    assert!(offsets(10, 5).is_empty());
    assert!(offsets(1000, 5).is_empty());
    assert!(offsets(0, 0).is_empty());
    assert_eq!(log.read("r", 0, 4, 1).unwrap()[0].payload, b"{\"i\":4}".to_vec());
    // Partition 1's record does not leak into partition 0 and vice versa.
    assert_eq!(log.read("r", 1, 0, 100).unwrap().len(), 1);

    assert!(matches!(log.read("missing", 0, 0, 1), Err(LogError::NoSuchTopic(_))));
    assert!(matches!(
        log.read("r", 2, 0, 1),
        Err(LogError::NoSuchPartition {
            partition: 2,
            partitions: 2,
            ..
        })
    ));
}

#[test]
fn topics_keep_apart_even_with_prefix_names() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).log();
    log.create_topic("t", 1).unwrap();
    log.create_topic("t.x", 1).unwrap();
    log.append("t", Some(0), &events(&["1", "2"])).unwrap();
    log.append("t.x", Some(0), &events(&["3"])).unwrap();
    assert_eq!(log.read("t", 0, 0, 10).unwrap().len(), 2);
    assert_eq!(log.read("t.x", 0, 0, 10).unwrap().len(), 1);
    let names: Vec<String> = log.topics().into_iter().map(|t| t.name).collect();
    assert_eq!(names, vec!["t", "t.x"]);
}

#[test]
fn bad_appends_and_topics_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).log();
    assert!(matches!(log.append("t", None, &[]), Err(LogError::EmptyBatch)));
    // Not even created by a refused append.
    assert!(log.topic("t").is_none());
    for bad in ["", "a/b", "sp ace", "ü", "x".repeat(201).as_str()] {
        assert!(
            matches!(
                log.append(bad, None, &events(&["{}"])),
                Err(LogError::InvalidTopicName(_))
            ),
            "{bad:?}"
        );
        assert!(matches!(log.create_topic(bad, 1), Err(LogError::InvalidTopicName(_))));
    }
    assert!(log.create_topic(&"x".repeat(200), 1).is_ok());
    assert!(matches!(
        log.create_topic("zero", 0),
        Err(LogError::InvalidPartitionCount(0))
    ));
    assert!(matches!(
        log.append("t", Some(4), &events(&["{}"])),
        Err(LogError::NoSuchPartition {
            partition: 4,
            partitions: 4,
            ..
        })
    ));

    // Creation is idempotent whatever count is asked the second time.
    let first = log.create_topic("fixed", 3).unwrap();
    let again = log.create_topic("fixed", 8).unwrap();
    assert_eq!((first.partitions, again.partitions), (3, 3));
    assert_eq!(log.create_topic("fixed", 0).unwrap().partitions, 3);
}

#[test]
fn log_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path()).log();
        log.create_topic("a", 3).unwrap();
        log.append("a", Some(0), &events(&["1", "2", "3"])).unwrap();
        log.append("a", Some(2), &events(&["4"])).unwrap();
        log.append("b", None, &events(&["5"])).unwrap();
        log.create_topic("empty", 2).unwrap();
    }
    let store = open(dir.path());
    let log = store.log();
    let infos: BTreeMap<String, (u32, Vec<u64>)> = log
        .topics()
        .into_iter()
        .map(|t| (t.name, (t.partitions, t.end_offsets)))
        .collect();
    assert_eq!(infos["a"], (3, vec![3, 0, 1]));
    assert_eq!(infos["b"], (4, vec![1, 0, 0, 0]));
    assert_eq!(infos["empty"], (2, vec![0, 0]));

    // Seqs continue after the highest one written before the restart.
    let next = log.append("a", Some(1), &events(&["6"])).unwrap();
    assert_eq!((next.first_offset, next.first_seq), (0, 4));
    let next = log.append("a", Some(0), &events(&["7"])).unwrap();
    assert_eq!((next.first_offset, next.first_seq), (3, 5));
    assert_eq!(log.append("empty", Some(1), &events(&["8"])).unwrap().first_seq, 0);
    assert_eq!(
        log.read("a", 0, 0, 10)
            .unwrap()
            .iter()
            .map(|r| r.seq)
            .collect::<Vec<_>>(),
        vec![0, 1, 2, 5]
    );
}

#[test]
fn concurrent_appends_are_dense_and_ordered() {
    const THREADS: usize = 8;
    const BATCHES: usize = 25;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let log = store.log();
    log.create_topic("hot", 3).unwrap();

    let reader_log = log.clone();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader_stop = stop.clone();
    // A concurrent reader only ever sees whole batches, in offset order.
    let reader = thread::spawn(move || {
        while !reader_stop.load(std::sync::atomic::Ordering::Relaxed) {
            for p in 0..3 {
                let end = reader_log.end_offset("hot", p);
                let records = reader_log.read("hot", p, 0, usize::MAX).unwrap();
                assert!(records.len() as u64 >= end);
                for (i, r) in records.iter().enumerate() {
                    assert_eq!(r.offset, i as u64);
                }
            }
        }
    });

    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let log = log.clone();
            thread::spawn(move || {
                (0..BATCHES)
                    .map(|b| {
                        let size = 1 + (t + b) % 3;
                        let batch: Vec<Vec<u8>> = (0..size)
                            .map(|i| format!("{{\"t\":{t},\"b\":{b},\"i\":{i}}}").into_bytes())
                            .collect();
                        let partition = if b % 2 == 0 { None } else { Some((t % 3) as u32) };
                        let appended = log.append("hot", partition, &batch).unwrap();
                        (batch, appended)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let results: Vec<_> = writers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    reader.join().unwrap();

    let total: u64 = results.iter().map(|(batch, _)| batch.len() as u64).sum();
    let mut seqs = HashSet::new();
    for (batch, appended) in &results {
        assert_eq!(appended.last_offset - appended.first_offset + 1, batch.len() as u64);
        assert_eq!(appended.last_seq - appended.first_seq + 1, batch.len() as u64);
        // Each batch landed whole and in order where the answer says.
        let stored = log
            .read("hot", appended.partition, appended.first_offset, batch.len())
            .unwrap();
        let payloads: Vec<Vec<u8>> = stored.iter().map(|r| r.payload.clone()).collect();
        assert_eq!(&payloads, batch);
        for r in &stored {
            assert!(seqs.insert(r.seq), "seq {} given twice", r.seq);
        }
    }
    // Seqs are exactly 0..total, and within each partition they increase with the offset.
    assert_eq!(seqs.len() as u64, total);
    assert_eq!(seqs.iter().max().copied(), Some(total - 1));
    let mut stored_total = 0;
    for p in 0..3 {
        let records = log.read("hot", p, 0, usize::MAX).unwrap();
        assert_eq!(records.len() as u64, log.end_offset("hot", p));
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.offset, i as u64);
        }
        assert!(records.windows(2).all(|w| w[0].seq < w[1].seq));
        stored_total += records.len() as u64;
    }
    assert_eq!(stored_total, total);
}

#[test]
fn appends_to_different_topics_run_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).log();
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let log = log.clone();
            thread::spawn(move || {
                for _ in 0..20 {
                    log.append(&format!("topic-{t}"), Some(0), &events(&["{}"])).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    for t in 0..4 {
        let name = format!("topic-{t}");
        assert_eq!(log.end_offset(&name, 0), 20);
        let seqs: Vec<u64> = log.read(&name, 0, 0, 100).unwrap().iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (0..20).collect::<Vec<u64>>());
    }
}

#[test]
fn job_store_keeps_creation_order_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let jobs = open(dir.path()).jobs();
        jobs.put_job("zeta", b"create table z").unwrap();
        jobs.put_job("alpha", b"create view a").unwrap();
        jobs.put_job("mid", b"create view m").unwrap();
        // Replacing keeps the place; deleting and re-creating moves it last.
        jobs.put_job("zeta", b"create table z2").unwrap();
        assert!(jobs.delete_job("alpha").unwrap());
        assert!(!jobs.delete_job("alpha").unwrap());
        jobs.put_job("alpha", b"create view a2").unwrap();
        assert_eq!(jobs.job("mid"), Some(b"create view m".to_vec()));
        assert_eq!(jobs.job("nope"), None);
    }
    let jobs = open(dir.path()).jobs();
    let expected = vec![
        ("zeta".to_string(), b"create table z2".to_vec()),
        ("mid".to_string(), b"create view m".to_vec()),
        ("alpha".to_string(), b"create view a2".to_vec()),
    ];
    assert_eq!(jobs.jobs(), expected);
    jobs.put_job("new", b"x").unwrap();
    jobs.put_job("mid", b"m2").unwrap();
    let names: Vec<String> = jobs.jobs().into_iter().map(|(name, _)| name).collect();
    assert_eq!(names, vec!["zeta", "mid", "alpha", "new"]);
}

fn letter(id: &str, source: &str, offset: u64) -> DeadLetter {
    DeadLetter {
        id: id.to_string(),
        source: source.to_string(),
        position: Some(Position {
            topic: "payments".to_string(),
            partition: 1,
            offset,
        }),
        payload: format!("{{\"amount\":\"bad {offset}\"}}"),
        reason: "column amount: expected DECIMAL(12,2), got string \"bad\"".to_string(),
        at_ms: 1_700_000_000_000 + offset as i64,
        replays: Vec::new(),
    }
}

#[test]
fn dead_letters_are_idempotent_and_durable() {
    let dir = tempfile::tempdir().unwrap();
    {
        let dl = open(dir.path()).dead_letters();
        assert!(dl.is_empty());
        assert!(dl.record(&letter("payments/1/0", "payments", 0)).unwrap());
        assert!(dl.record(&letter("payments/1/1", "payments", 1)).unwrap());
        // A replay meets the same bad event again.
        assert!(!dl.record(&letter("payments/1/0", "payments", 0)).unwrap());
        let mut other = letter("orders/0/7", "orders", 7);
        other.position = None;
        assert!(dl.record(&other).unwrap());
        assert_eq!(dl.len(), 3);
    }
    let dl = open(dir.path()).dead_letters();
    assert!(!dl.record(&letter("payments/1/1", "payments", 1)).unwrap());
    let counts = dl.count_by_source();
    assert_eq!(
        counts,
        BTreeMap::from([("orders".to_string(), 1), ("payments".to_string(), 2)])
    );

    let all = dl.list(None, 100).unwrap();
    let ids: Vec<(u64, &str)> = all.iter().map(|(n, l)| (*n, l.id.as_str())).collect();
    assert_eq!(ids, vec![(0, "payments/1/0"), (1, "payments/1/1"), (2, "orders/0/7")]);
    assert_eq!(all[1].1, letter("payments/1/1", "payments", 1));
    assert_eq!(all[2].1.position, None);

    // Paging with the numeric cursor.
    let page = dl.list(None, 2).unwrap();
    assert_eq!(page.len(), 2);
    let rest = dl.list(Some(page[1].0), 2).unwrap();
    assert_eq!(rest.iter().map(|(n, _)| *n).collect::<Vec<_>>(), vec![2]);
    assert!(dl.list(Some(2), 10).unwrap().is_empty());
    assert!(dl.list(Some(u64::MAX), 10).unwrap().is_empty());
    assert!(dl.list(None, 0).unwrap().is_empty());

    // Numbering continues after a reopen.
    assert!(dl.record(&letter("payments/1/2", "payments", 2)).unwrap());
    assert_eq!(dl.list(Some(2), 10).unwrap()[0].0, 3);
    assert_eq!(dl.count_by_source()["payments"], 3);
}

#[test]
fn views_share_one_database() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let clone = store.clone();
    store.log().append("shared", Some(0), &events(&["{}"])).unwrap();
    assert_eq!(clone.log().end_offset("shared", 0), 1);
    store.jobs().put_job("j", b"sql").unwrap();
    assert_eq!(clone.jobs().jobs().len(), 1);
    // Jobs and dead letters do not show up as topics and vice versa.
    assert_eq!(store.log().topics().len(), 1);
    assert!(store.dead_letters().list(None, 10).unwrap().is_empty());
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<StateStore>();
    assert_send_sync::<weir_connectors::EventLog>();
    assert_send_sync::<weir_connectors::JobStore>();
    assert_send_sync::<weir_connectors::DeadLetters>();
}

#[test]
fn a_second_open_of_a_live_store_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let _store = open(dir.path());
    let err = StateStore::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("cannot open the state store"), "{err}");
}

#[test]
fn errors_say_whose_fault_it_is_and_whether_to_retry() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let log = store.log();
    log.create_topic("t", 2).unwrap();
    // The caller's mistakes.
    for err in [
        log.append("a/b", None, &events(&["{}"])).unwrap_err(),
        log.append("t", Some(2), &events(&["{}"])).unwrap_err(),
        log.append("t", None, &[]).unwrap_err(),
        log.read("missing", 0, 0, 1).unwrap_err(),
    ] {
        assert_eq!((err.kind(), err.retryable()), (ErrorKind::User, false), "{err}");
    }
    // RocksDB's I/O errors (here: the lock of a database already open)
    // are the disk's, and worth another try; also through the log's error.
    let locked = StateStore::open(dir.path()).unwrap_err();
    assert!(matches!(locked, StoreError::Open { .. }), "{locked}");
    assert_eq!(
        (locked.kind(), locked.retryable()),
        (ErrorKind::External, true),
        "{locked}"
    );
    let through_log = LogError::from(locked);
    assert_eq!(
        (through_log.kind(), through_log.retryable()),
        (ErrorKind::External, true)
    );
    drop((log, store));

    // A database of another format version is the configuration's fault.
    let other = tempfile::tempdir().unwrap();
    {
        let db = rocksdb::DB::open_default(other.path()).unwrap();
        db.put(b"V", (FORMAT_VERSION + 1).to_be_bytes()).unwrap();
    }
    let err = StateStore::open(other.path()).unwrap_err();
    assert!(matches!(err, StoreError::UnsupportedVersion { .. }), "{err}");
    assert_eq!((err.kind(), err.retryable()), (ErrorKind::User, false));
    // A record the store cannot read is weir's.
    {
        let db = rocksdb::DB::open_default(other.path()).unwrap();
        db.put(b"V", FORMAT_VERSION.to_be_bytes()).unwrap();
        db.put(b"Tt", [0u8; 2]).unwrap();
    }
    let err = StateStore::open(other.path()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert_eq!((err.kind(), err.retryable()), (ErrorKind::Internal, false));
}

#[test]
fn ticks_never_go_back_and_sealed_stays_below_later_appends() {
    let dir = tempfile::tempdir().unwrap();
    let last_tick = {
        let store = open(dir.path());
        let log = store.log();
        // Concurrent appenders and a reader of `sealed`: every record that
        // was not visible when `sealed` was read has a tick at or after it.
        let writers: Vec<_> = (0..3)
            .map(|w| {
                let log = log.clone();
                thread::spawn(move || {
                    for i in 0..100 {
                        log.append("t", Some((w + i) % 4), &events(&["{}"])).unwrap();
                    }
                })
            })
            .collect();
        let mut checks = Vec::new();
        for _ in 0..200 {
            let sealed = log.sealed("t");
            let ends: Vec<u64> = (0..4).map(|p| log.end_offset("t", p)).collect();
            checks.push((sealed, ends));
        }
        for w in writers {
            w.join().unwrap();
        }
        let mut last = 0;
        for p in 0..4 {
            let records = log.read("t", p, 0, 1000).unwrap();
            assert!(
                records.windows(2).all(|w| w[0].tick <= w[1].tick),
                "ticks go back in partition {p}"
            );
            for (sealed, ends) in &checks {
                for r in records.iter().filter(|r| r.offset >= ends[p as usize]) {
                    assert!(
                        r.tick >= *sealed,
                        "a record appended after sealed={sealed} has tick {}",
                        r.tick
                    );
                }
            }
            last = last.max(records.last().map_or(0, |r| r.tick));
        }
        last
    };
    // After a restart, new ticks continue from the stored ones.
    let store = open(dir.path());
    let a = store.log().append("t", Some(0), &events(&["{}"])).unwrap();
    let r = store.log().read("t", 0, a.first_offset, 1).unwrap();
    assert!(r[0].tick >= last_tick);
}

#[test]
fn topics_grow_and_take_several_partitions_in_one_append_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        let log = store.log();
        assert_eq!(log.grow_partitions("m", 2).unwrap(), 2);
        let one = events(&["a", "b"]);
        let two = events(&["c"]);
        let got = log.append_partitions("m", &[(1, &one), (0, &two)]).unwrap();
        assert_eq!(
            got.iter()
                .map(|a| (a.partition, a.first_offset, a.last_offset, a.first_seq, a.last_seq))
                .collect::<Vec<_>>(),
            vec![(1, 0, 1, 0, 1), (0, 0, 0, 2, 2)]
        );
        // One write, one tick.
        let t1 = log.read("m", 1, 0, 10).unwrap()[0].tick;
        assert_eq!(log.read("m", 0, 0, 10).unwrap()[0].tick, t1);
        // A partition named twice, or one the topic lacks, is refused whole.
        assert!(log.append_partitions("m", &[(0, &one), (0, &two)]).is_err());
        assert!(log.append_partitions("m", &[(0, &one), (5, &two)]).is_err());
        assert_eq!(log.end_offset("m", 0), 1);
        // Growing never shrinks; new partitions start empty.
        assert_eq!(log.grow_partitions("m", 1).unwrap(), 2);
        assert_eq!(log.grow_partitions("m", 4).unwrap(), 4);
        assert_eq!(log.topic("m").unwrap().end_offsets, vec![1, 2, 0, 0]);
        log.append("m", Some(3), &events(&["d"])).unwrap();
    }
    let store = open(dir.path());
    let log = store.log();
    assert_eq!(log.partitions("m"), 4);
    assert_eq!(log.topic("m").unwrap().end_offsets, vec![1, 2, 0, 1]);
    assert_eq!(log.read("m", 3, 0, 10).unwrap()[0].seq, 3);
}
