//! A real Kafka-protocol broker for tests: `tansu`, with its data in
//! SQLite so that it keeps topics, records and offsets across a restart;
//! and `kafka-python`, a client that shares no code with weir (nor with
//! librdkafka).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::free_port;

/// The tansu binary: `$WEIR_TANSU`, else on `PATH` or in `~/.cargo/bin`
/// (`scripts/install-deps.sh` installs it there).
fn tansu() -> PathBuf {
    if let Ok(p) = std::env::var("WEIR_TANSU") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let cargo = PathBuf::from(home).join(".cargo/bin/tansu");
    if cargo.exists() {
        return cargo;
    }
    PathBuf::from("tansu")
}

pub struct Broker {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
}

impl Broker {
    /// A broker on a free port of 127.0.0.1 with its data in a fresh directory.
    pub fn start(name: &str) -> Broker {
        let dir = std::env::temp_dir().join(format!("weir-tansu-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("broker dir");
        let mut b = Broker {
            child: None,
            port: free_port(),
            dir,
        };
        b.restart();
        b
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `kill -9` of the broker process.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the broker (again) on the same port and data.
    pub fn restart(&mut self) {
        self.kill();
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::File::create(self.dir.join("tansu.log")).expect("broker log");
        let child = Command::new(tansu())
            .arg("broker")
            .arg("--listener-url")
            .arg(&url)
            .arg("--advertised-listener-url")
            .arg(&url)
            // tansu resolves the database path against its working directory.
            .arg("--storage-engine")
            .arg("sqlite://tansu.db")
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("tansu starts (scripts/install-deps.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Grows `topic` to `partitions` partitions. tansu has no
    /// CreatePartitions, so this stops it, adds them in its SQLite storage
    /// (as its own topic creation would have), and starts it again.
    pub fn grow_topic(&mut self, topic: &str, partitions: i32) {
        self.kill();
        let db = rusqlite::Connection::open(self.dir.join("tansu.db")).expect("tansu's database");
        let old: i32 = db
            .query_row("SELECT partitions FROM topic WHERE name = ?1", [topic], |r| r.get(0))
            .expect("the topic");
        db.execute(
            "UPDATE topic SET partitions = ?1 WHERE name = ?2",
            rusqlite::params![partitions, topic],
        )
        .unwrap();
        for p in old..partitions {
            db.execute(
                "INSERT INTO topition (topic, partition) SELECT id, ?1 FROM topic WHERE name = ?2",
                rusqlite::params![p, topic],
            )
            .unwrap();
            db.execute(
                "INSERT INTO watermark (topition, low, high) SELECT tp.id, 0, 0 FROM topition tp
                   JOIN topic t ON t.id = tp.topic WHERE t.name = ?1 AND tp.partition = ?2",
                rusqlite::params![topic, p],
            )
            .unwrap();
        }
        drop(db);
        self.restart();
    }

    pub fn create_topic(&self, topic: &str, partitions: i32) {
        weir_connectors::kafka::ensure_topic(&self.brokers(), topic, partitions).expect("topic created");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Produces `records` with kafka-python: each `{"key", "value", "partition",
/// "ts"}` (all optional; a missing value is a tombstone). Returns the
/// (partition, offset) of each record, in order.
pub fn python_produce(brokers: &str, topic: &str, records: &[Value]) -> Vec<(i32, i64)> {
    const SCRIPT: &str = r#"
import json, sys
from kafka import KafkaProducer
p = KafkaProducer(bootstrap_servers=sys.argv[1], acks='all', linger_ms=5, max_request_size=4000000)
topic = sys.argv[2]
futures = []
for line in sys.stdin:
    r = json.loads(line)
    key = r.get('key')
    value = r.get('value')
    futures.append(p.send(topic,
        key=None if key is None else key.encode(),
        value=None if value is None else value.encode(),
        partition=r.get('partition'),
        timestamp_ms=r.get('ts')))
p.flush()
for f in futures:
    m = f.get(timeout=30)
    print(json.dumps([m.partition, m.offset]))
"#;
    let input: String = records.iter().map(|r| format!("{r}\n")).collect();
    let out = python(SCRIPT, &[brokers, topic], &input);
    String::from_utf8_lossy(&out)
        .lines()
        .map(|l| serde_json::from_str::<(i32, i64)>(l).expect("partition and offset"))
        .collect()
}

/// Reads every record of `topic` with kafka-python:
/// `[key, value, {header: value}]` per record (text or null), in partition
/// then offset order.
pub fn python_consume(brokers: &str, topic: &str) -> Vec<(Option<String>, Option<String>, Value)> {
    const SCRIPT: &str = r#"
import json, sys
from kafka import KafkaConsumer, TopicPartition
c = KafkaConsumer(bootstrap_servers=sys.argv[1], enable_auto_commit=False,
                  )
topic = sys.argv[2]
tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or [])]
c.assign(tps)
c.seek_to_beginning()
ends = c.end_offsets(tps)
got = {tp: [] for tp in tps}
while any(c.position(tp) < ends[tp] for tp in tps):
    for tp, ms in c.poll(timeout_ms=1000, max_records=10000).items():
        for m in ms:
            got[tp].append([None if m.key is None else m.key.decode(),
                            None if m.value is None else m.value.decode(),
                            {k: v.decode() for k, v in (m.headers or [])}])
print(json.dumps([r for tp in tps for r in got[tp]]))
"#;
    let out = python(SCRIPT, &[brokers, topic], "");
    serde_json::from_slice(&out).expect("records as JSON")
}

/// The offsets committed by consumer group `group`, read with kafka-python:
/// (topic, partition) → offset.
pub fn python_group_offsets(brokers: &str, group: &str) -> std::collections::BTreeMap<(String, i32), i64> {
    const SCRIPT: &str = r#"
import json, sys
from kafka import KafkaAdminClient
a = KafkaAdminClient(bootstrap_servers=sys.argv[1])
got = a.list_group_offsets(sys.argv[2])
offsets = got.get(sys.argv[2], got) if isinstance(got, dict) else got
print(json.dumps([[tp.topic, tp.partition, om.offset] for tp, om in offsets.items()]))
"#;
    let out = python(SCRIPT, &[brokers, group], "");
    serde_json::from_slice::<Vec<(String, i32, i64)>>(&out)
        .expect("offsets as JSON")
        .into_iter()
        .map(|(t, p, o)| ((t, p), o))
        .collect()
}

/// Runs a Python script with `args` and `input` on its standard input;
/// its standard output. Fails the test, with Python's error, if it fails.
fn python(script: &str, args: &[&str], input: &str) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("input written");
    let out = child.wait_with_output().expect("python3 ends");
    assert!(
        out.status.success(),
        "kafka-python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
