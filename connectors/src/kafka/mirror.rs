//! The mirror's record format: one Kafka record as kept in the embedded
//! log ([`Mirrored`]), and where a Kafka position is in a mirror
//! ([`mirrored_at`]).

use crate::keys::{read_u32, read_u64};
use crate::log::EventLog;

/// The largest key plus value a record may have; larger ones go to the dead
/// letters (Kafka's own default limit for a message).
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;
/// How much of an oversized record is kept, for the dead letter.
pub(crate) const OVERSIZED_PREVIEW_BYTES: usize = 1024;

/// One Kafka record as kept in a mirror.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mirrored<'a> {
    pub offset: i64,
    /// The record's timestamp (ms), if it has one.
    pub timestamp: Option<i64>,
    pub key: Option<&'a [u8]>,
    /// `None` for a tombstone.
    pub value: Option<&'a [u8]>,
    /// For a record over [`MAX_MESSAGE_BYTES`]: its size; key and value
    /// then hold only their first bytes.
    pub oversized: Option<u64>,
}

const NULL_LEN: u32 = u32::MAX;

impl<'a> Mirrored<'a> {
    /// Layout: offset (8), timestamp (8, `i64::MIN` for none), full size
    /// (8, 0 unless oversized), key and value each as a length (4,
    /// `u32::MAX` for null) and bytes. All big-endian.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.offset.to_be_bytes());
        out.extend_from_slice(&self.timestamp.unwrap_or(i64::MIN).to_be_bytes());
        out.extend_from_slice(&self.oversized.unwrap_or(0).to_be_bytes());
        for part in [self.key, self.value] {
            match part {
                Some(bytes) => {
                    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
                    out.extend_from_slice(bytes);
                }
                None => out.extend_from_slice(&NULL_LEN.to_be_bytes()),
            }
        }
    }

    pub fn decode(bytes: &'a [u8]) -> Option<Mirrored<'a>> {
        let offset = read_u64(bytes.get(0..8)?)? as i64;
        let timestamp = read_u64(bytes.get(8..16)?)? as i64;
        let size = read_u64(bytes.get(16..24)?)?;
        let mut rest = bytes.get(24..)?;
        let mut part = || -> Option<Option<&'a [u8]>> {
            let len = read_u32(rest.get(0..4)?)?;
            rest = &rest[4..];
            if len == NULL_LEN {
                return Some(None);
            }
            let (value, tail) = rest.split_at_checked(len as usize)?;
            rest = tail;
            Some(Some(value))
        };
        let key = part()?;
        let value = part()?;
        Some(Mirrored {
            offset,
            timestamp: (timestamp != i64::MIN).then_some(timestamp),
            key,
            value,
            oversized: (size > 0).then_some(size),
        })
    }
}

/// The engine time at which the mirror holds the record at `offset` of a
/// Kafka partition, or a later one (the offset may have been a
/// transaction marker or compacted away); `None` while it holds none.
pub fn mirrored_at(log: &EventLog, mirror: &str, partition: u32, offset: u64) -> Option<u64> {
    let end = log.end_offset(mirror, partition);
    let at = |i: u64| -> Option<(i64, u64)> {
        let rec = log.read(mirror, partition, i, 1).ok()?.into_iter().next()?;
        Some((Mirrored::decode(&rec.payload)?.offset, rec.tick))
    };
    // Mostly a recent write: is it there at all?
    let (last, _) = at(end.checked_sub(1)?)?;
    if last < offset as i64 {
        return None;
    }
    // The first mirrored record at or past `offset`: Kafka offsets grow
    // with the mirror's.
    let (mut lo, mut hi) = (0, end - 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if at(mid)?.0 < offset as i64 {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    at(lo).map(|(_, tick)| tick)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrored_records_round_trip() {
        for m in [
            Mirrored {
                offset: 42,
                timestamp: Some(1_700_000_000_000),
                key: Some(b"{\"id\":1}"),
                value: Some(b"{\"id\":1,\"x\":2}"),
                oversized: None,
            },
            Mirrored {
                offset: 0,
                timestamp: None,
                key: None,
                value: None,
                oversized: Some(5 << 20),
            },
            Mirrored {
                offset: i64::MAX,
                timestamp: Some(-1),
                key: Some(b""),
                value: Some(b""),
                oversized: None,
            },
        ] {
            let mut buf = Vec::new();
            m.encode(&mut buf);
            assert_eq!(Mirrored::decode(&buf), Some(m.clone()));
            assert_eq!(Mirrored::decode(&buf[..buf.len() - 1]), None);
        }
    }
}
