//! Positions in SQL text: line/column ↔ byte offsets, and blanking a cut-out
//! clause so every other position stays valid.

/// Converts a token location (line and column, counting characters) to a
/// byte offset in `sql`.
pub(super) fn byte_offset(sql: &str, line_starts: &[usize], loc: sqlparser::tokenizer::Location) -> usize {
    let start = line_starts
        .get((loc.line as usize).saturating_sub(1))
        .copied()
        .unwrap_or(sql.len());
    let line = &sql[start..];
    let chars = (loc.column as usize).saturating_sub(1);
    start + line.char_indices().nth(chars).map_or(line.len(), |(i, _)| i)
}

/// The byte offset where each line of `sql` starts.
pub(super) fn line_starts(sql: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(sql.match_indices('\n').map(|(i, _)| i + 1))
        .collect()
}

/// Replaces `sql[b..e]` in `text` (a copy of `sql`) with spaces. Same
/// length in bytes and the same line breaks: every later position, in this
/// text and in error messages, stays valid.
pub(super) fn blank(sql: &str, text: &mut String, b: usize, e: usize) {
    let blank: String = sql[b..e]
        .chars()
        .map(|c| {
            if c == '\n' {
                "\n".to_string()
            } else {
                " ".repeat(c.len_utf8())
            }
        })
        .collect();
    text.replace_range(b..e, &blank);
}

/// The position just after the last character of `sql`.
pub(super) fn end_of(sql: &str) -> (u64, u64) {
    let trimmed = sql.trim_end();
    let line = trimmed.lines().count().max(1) as u64;
    let column = trimmed.lines().last().map_or(0, |l| l.chars().count()) as u64 + 1;
    (line, column)
}
