//! Splitting a file into its `---`-separated YAML documents.

/// One `---`-separated document of a file.
#[derive(Debug)]
pub(crate) struct Chunk<'a> {
    /// The document's text, starting with its `---` line if it has one.
    pub text: &'a str,
    /// Lines before the chunk in its file (add to chunk-relative line numbers).
    pub line_offset: u32,
}

/// Splits a multi-document stream at `---` lines. Splitting by line, before parsing,
/// keeps a syntax error in one document from hiding the errors in the others.
pub(crate) fn split(text: &str) -> Vec<Chunk<'_>> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut start_line = 0u32;
    let mut offset = 0;
    for (line_no, line) in text.split_inclusive('\n').enumerate() {
        let is_marker =
            line.starts_with("---") && line[3..].chars().next().is_none_or(|c| c.is_whitespace());
        if is_marker && offset > start {
            chunks.push(Chunk {
                text: &text[start..offset],
                line_offset: start_line,
            });
            start = offset;
            start_line = line_no as u32;
        }
        offset += line.len();
    }
    if start < text.len() {
        chunks.push(Chunk {
            text: &text[start..],
            line_offset: start_line,
        });
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_line_offsets_of_every_document() {
        let text = "a: 1\n---\nb: 2\n--- # note\nc: 3\n";
        let chunks = split(text);
        assert_eq!(chunks.len(), 3);
        assert_eq!((chunks[0].text, chunks[0].line_offset), ("a: 1\n", 0));
        assert_eq!((chunks[1].text, chunks[1].line_offset), ("---\nb: 2\n", 1));
        assert_eq!(chunks[2].line_offset, 3);
    }

    #[test]
    fn split_ignores_dashes_that_are_not_document_markers() {
        assert_eq!(split("a: ----x\nb: |\n  ---\n").len(), 1);
    }
}
