//! weir's clauses that sqlparser does not know (`WITHIN INTERVAL …
//! [EMIT TIMEOUTS]` in `MATCH_RECOGNIZE`), cut out of the text before
//! parsing and kept with their positions; and the durations they spell.

use sqlparser::dialect::GenericDialect;
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, Tokenizer, Word};

use super::error::{Loc, PlanError, Result};
use super::text::{blank, byte_offset, line_starts};

/// A `WITHIN` clause cut out of the text.
#[derive(Clone, Debug)]
pub(super) struct Within {
    pub(super) at: Loc,
    pub(super) ms: i64,
    pub(super) emit_timeouts: bool,
}

/// What the text said beyond sqlparser's grammar, by position.
#[derive(Clone, Debug, Default)]
pub(super) struct Extensions {
    pub(super) withins: Vec<Within>,
    /// Where each `PATTERN` keyword is (the pattern itself has no span).
    pub(super) patterns: Vec<Loc>,
}

/// Cuts `WITHIN INTERVAL '…' [unit] [EMIT TIMEOUTS]` out of `sql`
/// (replacing it with spaces, so every other position stays) and notes
/// where each `PATTERN` keyword is.
pub(super) fn cut_extensions(sql: &str) -> Result<(String, Extensions)> {
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .tokenize_with_location()
        .map_err(|e| PlanError::new("syntax_error", e.message, Loc(e.location.line, e.location.column)))?;
    let words: Vec<(usize, &Word)> = tokens
        .iter()
        .enumerate()
        .filter_map(|(i, t)| match &t.token {
            Token::Word(w) => Some((i, w)),
            _ => None,
        })
        .collect();
    let mut ext = Extensions::default();
    if !words
        .iter()
        .any(|(_, w)| w.keyword == Keyword::WITHIN || w.keyword == Keyword::PATTERN)
    {
        return Ok((sql.to_string(), ext));
    }
    let significant: Vec<usize> = (0..tokens.len())
        .filter(|&i| !matches!(tokens[i].token, Token::Whitespace(_)))
        .collect();
    let next = |i: usize, n: usize| -> Option<&sqlparser::tokenizer::TokenWithSpan> {
        let pos = significant.binary_search(&i).ok()?;
        significant.get(pos + n).map(|&j| &tokens[j])
    };
    let is_word = |t: Option<&sqlparser::tokenizer::TokenWithSpan>, kw: &str| matches!(t, Some(t) if matches!(&t.token, Token::Word(w) if w.value.eq_ignore_ascii_case(kw)));
    let starts = line_starts(sql);
    let mut text = sql.to_string();
    for &(i, w) in &words {
        let at = Loc(tokens[i].span.start.line, tokens[i].span.start.column);
        if w.keyword == Keyword::PATTERN && matches!(next(i, 1).map(|t| &t.token), Some(Token::LParen)) {
            ext.patterns.push(at);
            continue;
        }
        if w.keyword != Keyword::WITHIN || is_word(next(i, 1), "GROUP") {
            continue;
        }
        let syntax = || {
            PlanError::new(
                "syntax_error",
                "WITHIN takes an interval, e.g. WITHIN INTERVAL '10' MINUTE [EMIT TIMEOUTS]",
                at,
            )
        };
        if !is_word(next(i, 1), "INTERVAL") {
            return Err(syntax());
        }
        let Some(Token::SingleQuotedString(value)) = next(i, 2).map(|t| &t.token) else {
            return Err(syntax());
        };
        let mut used = 2;
        let unit = match next(i, 3).map(|t| &t.token) {
            Some(Token::Word(u)) if unit_ms(&u.value).is_some() => {
                used = 3;
                Some(u.value.clone())
            }
            _ => None,
        };
        let ms = match &unit {
            Some(u) => value
                .trim()
                .parse::<i64>()
                .ok()
                .and_then(|n| n.checked_mul(unit_ms(u)?)),
            None => parse_duration_ms(value),
        }
        .filter(|&ms| ms > 0)
        .ok_or_else(|| {
            PlanError::new(
                "invalid_pattern",
                format!("WITHIN needs a positive whole number of a unit, not '{value}'"),
                at,
            )
        })?;
        let emit_timeouts = is_word(next(i, used + 1), "EMIT");
        if emit_timeouts {
            if !is_word(next(i, used + 2), "TIMEOUTS") {
                let t = next(i, used + 1).map_or(at, |t| Loc(t.span.start.line, t.span.start.column));
                return Err(PlanError::new("syntax_error", "expected EMIT TIMEOUTS", t));
            }
            used += 2;
        }
        let last = next(i, used).ok_or_else(syntax)?;
        let (b, e) = (
            byte_offset(sql, &starts, tokens[i].span.start),
            byte_offset(sql, &starts, last.span.end),
        );
        blank(sql, &mut text, b, e);
        ext.withins.push(Within { at, ms, emit_timeouts });
    }
    Ok((text, ext))
}

/// Milliseconds in one `unit` (SQL interval units and short forms).
fn unit_ms(unit: &str) -> Option<i64> {
    Some(match unit.to_ascii_lowercase().as_str() {
        "ms" | "millisecond" | "milliseconds" => 1,
        "s" | "sec" | "secs" | "second" | "seconds" => 1000,
        "m" | "min" | "mins" | "minute" | "minutes" => 60_000,
        "h" | "hour" | "hours" => 3_600_000,
        "d" | "day" | "days" => 86_400_000,
        _ => return None,
    })
}

/// `1000`, `500 MB`, `10GB`, `2 GiB` → bytes (KB/MB/GB/TB are powers of
/// 1000, KiB/MiB/GiB/TiB of 1024).
pub fn parse_bytes(text: &str) -> Option<u64> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let n: u64 = t[..digits].parse().ok()?;
    let unit: u64 = match t[digits..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(unit)
}

/// `'500 ms'`, `'2 seconds'`, `'10min'`, `'1 hour'` → milliseconds.
pub fn parse_duration_ms(text: &str) -> Option<i64> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let n: i64 = t[..digits].parse().ok()?;
    n.checked_mul(unit_ms(t[digits..].trim())?)
}
