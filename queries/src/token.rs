//! Tokens: the write positions a read must reflect (read-your-writes,
//! DESIGN.md §2), as ingest hands them out.

use crate::error::ReadError;

/// A write position a read must reflect: "topic:partition:offset".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
}

impl Token {
    pub fn parse(s: &str) -> Result<Token, ReadError> {
        let bad = || ReadError::BadRequest {
            code: "bad_token",
            message: format!("\"{s}\" is not a token (expected topic:partition:offset, as ingest returns)"),
        };
        let mut parts = s.rsplitn(3, ':');
        let offset = parts.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
        let partition = parts.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
        let topic = parts.next().filter(|t| !t.is_empty()).ok_or_else(bad)?.to_string();
        Ok(Token {
            topic,
            partition,
            offset,
        })
    }

    pub fn format(topic: &str, partition: u32, offset: u64) -> String {
        format!("{topic}:{partition}:{offset}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_may_hold_colons() {
        let t = Token::parse("a:b:3:17").expect("a token");
        assert_eq!((t.topic.as_str(), t.partition, t.offset), ("a:b", 3, 17));
        assert_eq!(Token::format("a:b", 3, 17), "a:b:3:17");
        assert!(Token::parse(":1:2").is_err());
        assert!(Token::parse("t:x:2").is_err());
    }
}
