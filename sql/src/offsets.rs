//! Byte offsets of sqlparser's token locations (1-based lines and character columns), for
//! cutting statements and rules out of their text by the tokens' spans.

use sqlparser::tokenizer::Location;

/// Byte offsets in a text of the tokenizer's locations (1-based lines and character columns).
pub struct ByteOffsets<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> ByteOffsets<'a> {
    /// The offsets of `text`.
    pub fn new(text: &'a str) -> ByteOffsets<'a> {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        ByteOffsets { text, line_starts }
    }

    /// The byte offset of `location`; the text's end for a location past it (EOF).
    pub fn of(&self, location: Location) -> usize {
        let Some(&start) = usize::try_from(location.line)
            .ok()
            .and_then(|line| line.checked_sub(1))
            .and_then(|line| self.line_starts.get(line))
        else {
            return self.text.len();
        };
        let column = usize::try_from(location.column.saturating_sub(1)).unwrap_or(usize::MAX);
        self.text[start..]
            .char_indices()
            .nth(column)
            .map_or(self.text.len(), |(i, _)| start + i)
    }
}
