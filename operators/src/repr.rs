//! The values that flow through weir's dataflows.
//!
//! A [`Row`] is a vector of [`Datum`]s whose meaning is given by a
//! [`Schema`]. Every type here is totally ordered and serialisable, because
//! differential dataflow sorts and exchanges them.

use std::cmp::Ordering;
use std::fmt;

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// A text value: strings of up to 24 bytes are held inline, so decoding,
/// cloning and arranging a short text allocates nothing (most of an event's
/// strings are short: types, names, codes).
pub type Str = compact_str::CompactString;

/// A hash map for an operator's per-key state: foldhash instead of std's
/// SipHash (keys are rows, hashed on every record), still seeded per
/// process.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A row: the columns of one record, in schema order.
pub type Row = Vec<Datum>;

/// The difference type of every collection: how many copies of a row were
/// added (positive) or removed (negative).
pub type Diff = i64;

/// Engine time: milliseconds since the Unix epoch (DESIGN.md §2).
pub type Tick = u64;

/// One SQL value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Datum {
    /// SQL NULL. Sorts before every other value; SQL ordering (NULLS LAST for
    /// ascending) is applied where ORDER BY is evaluated, not here.
    Null,
    Bool(bool),
    /// SMALLINT, INT and BIGINT, widened to 64 bits; the column type keeps the range.
    Int(i64),
    Float(OrdF64),
    /// DECIMAL(p, s): exact, at most 28 significant digits.
    Decimal(Decimal),
    Text(Str),
    /// TIMESTAMP without time zone, as milliseconds since the Unix epoch.
    Timestamp(i64),
}

impl Datum {
    pub fn is_null(&self) -> bool {
        matches!(self, Datum::Null)
    }
}

/// An `f64` with a total order (IEEE 754 `totalOrder`), so floats can be
/// keys of arrangements. `-0.0` and `0.0` are normalised to `0.0` on
/// construction so that SQL equality and the order agree.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct OrdF64(f64);

impl OrdF64 {
    pub fn new(v: f64) -> Self {
        if v == 0.0 {
            OrdF64(0.0)
        } else if v.is_nan() {
            OrdF64(f64::NAN)
        } else {
            OrdF64(v)
        }
    }
    pub fn get(self) -> f64 {
        self.0
    }
}

impl PartialEq for OrdF64 {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for OrdF64 {}
impl PartialOrd for OrdF64 {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for OrdF64 {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}
impl std::hash::Hash for OrdF64 {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.to_bits().hash(state)
    }
}

/// SQL comparison: `None` when either side is NULL. Numbers of different
/// kinds compare by value.
pub fn sql_cmp(a: &Datum, b: &Datum) -> Option<Ordering> {
    use Datum::*;
    match (a, b) {
        (Null, _) | (_, Null) => None,
        (Int(x), Int(y)) => Some(x.cmp(y)),
        (Decimal(x), Decimal(y)) => Some(x.cmp(y)),
        (Int(x), Decimal(y)) => Some(rust_decimal::Decimal::from(*x).cmp(y)),
        (Decimal(x), Int(y)) => Some(x.cmp(&rust_decimal::Decimal::from(*y))),
        (Float(_), _) | (_, Float(_)) => {
            let (x, y) = (as_f64(a)?, as_f64(b)?);
            Some(OrdF64::new(x).cmp(&OrdF64::new(y)))
        }
        (Text(x), Text(y)) => Some(x.cmp(y)),
        (Bool(x), Bool(y)) => Some(x.cmp(y)),
        (Timestamp(x), Timestamp(y)) => Some(x.cmp(y)),
        _ => Some(a.cmp(b)),
    }
}

/// The order of ORDER BY: SQL comparison, NULLs last (PostgreSQL's default
/// for ascending order; descending order reverses it, putting NULLs first).
pub fn order_cmp(a: &Datum, b: &Datum) -> Ordering {
    match (a.is_null(), b.is_null()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => sql_cmp(a, b).unwrap_or(Ordering::Equal),
    }
}

/// A number as a float; `None` for anything else.
pub fn as_f64(d: &Datum) -> Option<f64> {
    match d {
        Datum::Int(i) => Some(*i as f64),
        Datum::Float(f) => Some(f.get()),
        Datum::Decimal(d) => d.to_f64(),
        _ => None,
    }
}

/// A SQL column type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SqlType {
    Bool,
    SmallInt,
    Int,
    BigInt,
    Real,
    Double,
    /// DECIMAL(precision, scale).
    Decimal(u8, u8),
    Text,
    Timestamp,
}

impl SqlType {
    pub fn is_integer(self) -> bool {
        matches!(self, SqlType::SmallInt | SqlType::Int | SqlType::BigInt)
    }
    pub fn is_float(self) -> bool {
        matches!(self, SqlType::Real | SqlType::Double)
    }
    pub fn is_numeric(self) -> bool {
        self.is_integer() || self.is_float() || matches!(self, SqlType::Decimal(..))
    }
}

impl fmt::Display for SqlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SqlType::Bool => write!(f, "BOOLEAN"),
            SqlType::SmallInt => write!(f, "SMALLINT"),
            SqlType::Int => write!(f, "INT"),
            SqlType::BigInt => write!(f, "BIGINT"),
            SqlType::Real => write!(f, "REAL"),
            SqlType::Double => write!(f, "DOUBLE"),
            SqlType::Decimal(p, s) => write!(f, "DECIMAL({p},{s})"),
            SqlType::Text => write!(f, "TEXT"),
            SqlType::Timestamp => write!(f, "TIMESTAMP"),
        }
    }
}

/// A named, typed column.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    pub ty: SqlType,
    pub nullable: bool,
}

/// The columns of a table or view, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    pub columns: Vec<Column>,
}

impl Schema {
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name.eq_ignore_ascii_case(name))
    }
    pub fn len(&self) -> usize {
        self.columns.len()
    }
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }
}

/// Milliseconds since the epoch to RFC 3339 (UTC, millisecond precision).
pub fn format_timestamp(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Parses an RFC 3339 timestamp (`2024-01-02T03:04:05[.fff][Z|±hh:mm]`, a
/// space instead of `T`, or a bare date) to milliseconds since the epoch.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if !t.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) {
        return None;
    }
    let mut ms = days_from_civil(y, mo, d) * 86_400_000;
    if b.len() == 10 {
        return Some(ms);
    }
    if b[10] != b'T' && b[10] != b't' && b[10] != b' ' {
        return None;
    }
    if b.len() < 19 || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    ms += (h * 3600 + mi * 60 + sec) * 1000;
    let mut i = 19;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let frac = &s[start..i.min(start + 3)];
        let mut f: i64 = frac.parse().ok()?;
        for _ in frac.len()..3 {
            f *= 10;
        }
        ms += f;
    }
    let rest = &s[i..];
    match rest {
        "" | "Z" | "z" => Some(ms),
        _ => {
            let rb = rest.as_bytes();
            if rb.len() != 6 || (rb[0] != b'+' && rb[0] != b'-') || rb[3] != b':' {
                return None;
            }
            let oh: i64 = rest.get(1..3)?.parse().ok()?;
            let om: i64 = rest.get(4..6)?.parse().ok()?;
            let off = (oh * 60 + om) * 60_000;
            Some(if rb[0] == b'+' { ms - off } else { ms + off })
        }
    }
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datum_is_small_and_a_short_text_is_inline() {
        // Rows are vectors of datums, copied into every stateful operator:
        // their width is most of a view's memory.
        assert!(std::mem::size_of::<Datum>() <= 24, "{}", std::mem::size_of::<Datum>());
        println!("size of a datum: {} bytes", std::mem::size_of::<Datum>());
        let Datum::Text(t) = Datum::Text(Str::from("PaymentAuthorized")) else {
            unreachable!()
        };
        assert!(!t.is_heap_allocated());
        // Serialised as a string, as a `String` was: snapshots stay readable.
        let bytes = bincode::serialize(&Datum::Text("sku-gift-card".into())).expect("serialises");
        let old = bincode::serialize(&OldDatum::Text("sku-gift-card".to_string())).expect("serialises");
        assert_eq!(bytes, old);
        assert_eq!(
            bincode::deserialize::<Datum>(&old).expect("reads back"),
            Datum::Text("sku-gift-card".into())
        );
    }

    /// The datum as it was with `String` text, for the format check above.
    #[derive(Serialize)]
    #[allow(dead_code)]
    enum OldDatum {
        Null,
        Bool(bool),
        Int(i64),
        Float(OrdF64),
        Decimal(Decimal),
        Text(String),
        Timestamp(i64),
    }

    #[test]
    fn timestamps_round_trip() {
        for ms in [0i64, 1_700_000_000_123, -86_400_001, 951_782_400_000] {
            assert_eq!(parse_timestamp(&format_timestamp(ms)), Some(ms));
        }
        assert_eq!(parse_timestamp("2024-02-29"), Some(1_709_164_800_000));
        assert_eq!(parse_timestamp("2023-02-29"), None);
        assert_eq!(
            parse_timestamp("2024-01-01T01:00:00+01:00"),
            parse_timestamp("2024-01-01T00:00:00Z")
        );
        assert_eq!(parse_timestamp("not a time"), None);
    }
}
