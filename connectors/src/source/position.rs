//! Where in the log the write a token names is.

use weir_operators::repr::Tick;

use crate::kafka::mirrored_at;
use crate::log::EventLog;

/// The tick at which the write at `topic:partition:offset` is in the log:
/// a Kafka position when Kafka sources copy `topic` into `mirrors` (then
/// every copy must hold it), else a position of the embedded log. `None`
/// while it is not there yet.
pub fn written_at(log: &EventLog, mirrors: &[String], topic: &str, partition: u32, offset: u64) -> Option<Tick> {
    if mirrors.is_empty() {
        return log.appended_at(topic, partition, offset);
    }
    mirrors
        .iter()
        .try_fold(0, |t: Tick, m| Some(t.max(mirrored_at(log, m, partition, offset)?)))
}
