//! Byte offsets of sqlparser's token locations (1-based lines and character columns), for
//! cutting statements and rules out of their text by the tokens' spans. Built in one pass
//! over the text; each lookup is constant time, so a long text with many tokens stays linear.

use sqlparser::tokenizer::Location;

/// Byte offsets in a text of the tokenizer's locations.
pub struct ByteOffsets<'a> {
    text: &'a str,
    /// The byte offset of each character, then the text's length.
    chars: Vec<usize>,
    /// The index in `chars` of each line's first character.
    line_starts: Vec<usize>,
}

impl<'a> ByteOffsets<'a> {
    /// The offsets of `text`.
    pub fn new(text: &'a str) -> ByteOffsets<'a> {
        let mut chars = Vec::with_capacity(text.len() + 1);
        let mut line_starts = vec![0];
        for (index, (byte, c)) in text.char_indices().enumerate() {
            chars.push(byte);
            if c == '\n' {
                line_starts.push(index + 1);
            }
        }
        chars.push(text.len());
        ByteOffsets {
            text,
            chars,
            line_starts,
        }
    }

    /// The index of the character at `location` (the text's end for one past it).
    pub fn char_index(&self, location: Location) -> usize {
        let last = self.chars.len() - 1;
        let Some(&start) = usize::try_from(location.line)
            .ok()
            .and_then(|line| line.checked_sub(1))
            .and_then(|line| self.line_starts.get(line))
        else {
            return last;
        };
        let column = usize::try_from(location.column.saturating_sub(1)).unwrap_or(usize::MAX);
        start.saturating_add(column).min(last)
    }

    /// The byte offset of `location`; the text's end for a location past it (EOF).
    pub fn of(&self, location: Location) -> usize {
        self.chars
            .get(self.char_index(location))
            .copied()
            .unwrap_or(self.text.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_map_to_bytes_and_characters() {
        let text = "ab\ncé d\n";
        let offsets = ByteOffsets::new(text);
        let at = |line, column| Location { line, column };
        assert_eq!(offsets.of(at(1, 1)), 0);
        assert_eq!(offsets.of(at(2, 2)), 4);
        assert_eq!(offsets.of(at(2, 3)), 6);
        assert_eq!(offsets.char_index(at(2, 3)), 5);
        assert_eq!(offsets.of(at(2, 4)), 7);
        assert_eq!(offsets.of(at(9, 1)), text.len());
        assert_eq!(offsets.of(at(2, 99)), text.len());
    }
}
