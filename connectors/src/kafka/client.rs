//! What weir's Kafka clients share: request timeouts, the backoff between
//! attempts, and how a librdkafka error is classified ([`ErrorKind`]).

use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::error::ErrorKind;

/// Timeout of one metadata, offset or admin request.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Exponential backoff between attempts after an error.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Doubling waits, from [`BACKOFF_FIRST`] up to [`BACKOFF_MAX`].
pub(crate) struct Backoff(Duration);

impl Backoff {
    pub(crate) fn new() -> Self {
        Backoff(BACKOFF_FIRST)
    }
    pub(crate) fn next(&mut self) -> Duration {
        let d = self.0;
        self.0 = (self.0 * 2).min(BACKOFF_MAX);
        d
    }
    pub(crate) fn reset(&mut self) {
        self.0 = BACKOFF_FIRST;
    }
}

/// Whose fault a librdkafka error is: the client's settings (a bad
/// property, refused credentials or ACLs, an invalid topic name) are the
/// user's; a dropped client is weir's; anything else (the broker down or
/// unreachable, a timeout, a failed request) is the broker's.
pub(crate) fn kafka_error_kind(e: &KafkaError) -> ErrorKind {
    match e {
        KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_) | KafkaError::Nul(_) => ErrorKind::User,
        KafkaError::Canceled => ErrorKind::Internal,
        _ if e.rdkafka_error_code().is_some_and(refused) => ErrorKind::User,
        _ => ErrorKind::External,
    }
}

/// Whether the operation that failed with `e` may succeed if tried again
/// (by the same client or, for a fenced or wedged producer, a new one):
/// for the broker's errors.
pub(crate) fn kafka_error_retryable(e: &KafkaError) -> bool {
    kafka_error_kind(e) == ErrorKind::External
}

/// Codes that say the client's settings are refused: retrying with the
/// same settings fails the same way.
pub(crate) fn refused(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
            | RDKafkaErrorCode::DelegationTokenAuthorizationFailed
            | RDKafkaErrorCode::InvalidTopic
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_errors_are_classified() {
        let settings = KafkaError::ClientCreation("invalid sasl.mechanism".into());
        assert_eq!(kafka_error_kind(&settings), ErrorKind::User);
        assert!(!kafka_error_retryable(&settings));
        let refused = KafkaError::MetadataFetch(RDKafkaErrorCode::TopicAuthorizationFailed);
        assert_eq!(kafka_error_kind(&refused), ErrorKind::User);
        let down = KafkaError::MetadataFetch(RDKafkaErrorCode::BrokerTransportFailure);
        assert_eq!(kafka_error_kind(&down), ErrorKind::External);
        assert!(kafka_error_retryable(&down));
        assert_eq!(kafka_error_kind(&KafkaError::Canceled), ErrorKind::Internal);
    }
}
