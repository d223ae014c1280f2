//! Which failed attempts are worth another, and how long to wait before
//! it: exponential backoff with jitter, or the service's `Retry-After`.

use std::time::{Duration, SystemTime};

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// A 2xx answer.
    Delivered,
    /// A retry may help: connect error, time-out, 5xx, 429 (with the wait
    /// the service asked for, if it did).
    Transient {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// A retry cannot help: 4xx other than 408 and 429, 3xx, a request
    /// that cannot be built.
    Permanent { reason: String },
}

/// The class of an HTTP answer with `status`.
pub fn classify(status: u16, retry_after: Option<&str>, now: SystemTime) -> Attempt {
    match status {
        200..=299 => Attempt::Delivered,
        408 | 429 | 500..=599 => Attempt::Transient {
            reason: format!("the service answered {status}"),
            retry_after: retry_after.and_then(|v| parse_retry_after(v, now)),
        },
        _ => Attempt::Permanent {
            reason: format!("the service answered {status}"),
        },
    }
}

/// `Retry-After`: whole seconds, or an HTTP date (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Exponential backoff with equal jitter: before retry `n` (1 for the first
/// retry) wait between half and all of `initial · 2ⁿ⁻¹`, at most `max`.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The ceiling of the wait before retry `n`.
    pub fn ceiling(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The wait before retry `n`, `unit` in [0, 1) choosing within the
    /// jitter range; a service's `Retry-After` is waited out in full.
    pub fn delay(&self, n: u32, unit: f64, retry_after: Option<Duration>) -> Duration {
        let ceiling = self.ceiling(n);
        let jittered = ceiling / 2 + ceiling.mul_f64(unit.clamp(0.0, 1.0) / 2.0);
        retry_after.map_or(jittered, |r| r.max(jittered))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_within_jitter_up_to_the_max() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        assert_eq!(b.ceiling(1), Duration::from_millis(100));
        assert_eq!(b.ceiling(3), Duration::from_millis(400));
        assert_eq!(b.ceiling(10), Duration::from_secs(1));
        assert_eq!(b.ceiling(100), Duration::from_secs(1));
        assert_eq!(b.delay(2, 0.0, None), Duration::from_millis(100));
        assert_eq!(b.delay(2, 0.999_999, None).as_millis(), 199);
        assert_eq!(b.delay(1, 0.5, Some(Duration::from_secs(3))), Duration::from_secs(3));
    }

    #[test]
    fn classifies_answers_and_reads_retry_after() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(classify(204, None, now), Attempt::Delivered);
        assert!(matches!(classify(404, None, now), Attempt::Permanent { .. }));
        assert!(matches!(
            classify(503, None, now),
            Attempt::Transient { retry_after: None, .. }
        ));
        let Attempt::Transient { retry_after, .. } = classify(429, Some("2"), now) else {
            panic!("429 is transient")
        };
        assert_eq!(retry_after, Some(Duration::from_secs(2)));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(5));
        assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(5)));
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
