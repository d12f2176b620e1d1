//! Incremental newline-delimited JSON decoder for provider streams (Ollama).
//! Bytes arrive in arbitrary pieces; lines come out whole. Bounded, so a
//! provider that never ends a line cannot grow memory without limit.

/// Longest line accepted from a provider.
const MAX_LINE_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NdjsonError {
    #[error("stream line longer than {MAX_LINE_BYTES} bytes")]
    LineTooLong,
    #[error("stream is not valid UTF-8")]
    InvalidUtf8,
}

/// Splits a byte stream into lines. Each line is meant to hold one JSON value;
/// parsing it is left to the caller. A trailing `\r` is stripped and empty
/// lines are skipped.
#[derive(Debug, Default)]
pub struct NdjsonDecoder {
    line: Vec<u8>,
}

impl NdjsonDecoder {
    /// Feeds bytes; appends the lines they complete to `lines`, including
    /// those completed before an error. After an error the decoder is spent.
    pub fn push(&mut self, bytes: &[u8], lines: &mut Vec<String>) -> Result<(), NdjsonError> {
        let mut rest = bytes;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            self.extend(&rest[..end])?;
            if let Some(line) = self.take_line()? {
                lines.push(line);
            }
            rest = &rest[end + 1..];
        }
        self.extend(rest)
    }

    /// Takes the unterminated last line, if any, as if a newline had arrived:
    /// for a stream that ends without its final newline.
    pub fn finish(&mut self) -> Result<Option<String>, NdjsonError> {
        self.take_line()
    }

    fn extend(&mut self, bytes: &[u8]) -> Result<(), NdjsonError> {
        // One byte of slack for the '\r' of a CRLF line end at the limit.
        if self.line.len() + bytes.len() > MAX_LINE_BYTES + 1 {
            return Err(NdjsonError::LineTooLong);
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn take_line(&mut self) -> Result<Option<String>, NdjsonError> {
        let mut line = std::mem::take(&mut self.line);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.len() > MAX_LINE_BYTES {
            return Err(NdjsonError::LineTooLong);
        }
        if line.is_empty() {
            return Ok(None);
        }
        String::from_utf8(line)
            .map(Some)
            .map_err(|_| NdjsonError::InvalidUtf8)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn decode_all(pieces: &[&[u8]]) -> Result<Vec<String>, NdjsonError> {
        let mut decoder = NdjsonDecoder::default();
        let mut out = Vec::new();
        for piece in pieces {
            decoder.push(piece, &mut out)?;
        }
        Ok(out)
    }

    #[test]
    fn lines_split_anywhere_come_out_whole() {
        let stream = "{\"a\":1}\n\n{\"b\":\"é\"}\r\n\r\n{\"c\":[]}\n".as_bytes();
        let whole = decode_all(&[stream]).unwrap();
        assert_eq!(whole, vec!["{\"a\":1}", "{\"b\":\"é\"}", "{\"c\":[]}"]);
        for cut in 0..=stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(decode_all(&[a, b]).unwrap(), whole, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(decode_all(&bytes).unwrap(), whole);
    }

    #[test]
    fn an_unterminated_line_is_pending_until_finished() {
        let mut decoder = NdjsonDecoder::default();
        let mut lines = Vec::new();
        decoder.push(b"{\"done\":true}", &mut lines).unwrap();
        assert_eq!(lines, Vec::<String>::new());
        assert_eq!(
            decoder.finish().unwrap().as_deref(),
            Some("{\"done\":true}")
        );
        assert_eq!(decoder.finish().unwrap(), None);
    }

    #[test]
    fn invalid_utf8_and_endless_lines_are_errors() {
        assert_eq!(
            decode_all(&[b"{\"a\":\"\xff\xfe\"}\n"]),
            Err(NdjsonError::InvalidUtf8)
        );
        // A multi-byte character split across pieces is fine.
        assert_eq!(
            decode_all(&[b"\"\xc3", b"\xa9\"\n"]).unwrap(),
            vec!["\"é\"".to_owned()]
        );
        let long = vec![b'a'; MAX_LINE_BYTES + 2];
        assert_eq!(decode_all(&[&long]), Err(NdjsonError::LineTooLong));
        let mut limit = vec![b'a'; MAX_LINE_BYTES];
        limit.extend_from_slice(b"\r\n");
        assert_eq!(decode_all(&[&limit]).unwrap().len(), 1);
        let mut over = vec![b'a'; MAX_LINE_BYTES + 1];
        over.push(b'\n');
        assert_eq!(decode_all(&[&over]), Err(NdjsonError::LineTooLong));
    }

    #[test]
    fn lines_before_an_error_are_kept() {
        let mut decoder = NdjsonDecoder::default();
        let mut lines = Vec::new();
        assert_eq!(
            decoder.push(b"{\"a\":1}\n\xff\n", &mut lines),
            Err(NdjsonError::InvalidUtf8)
        );
        assert_eq!(lines, vec!["{\"a\":1}".to_owned()]);
    }

    proptest! {
        #[test]
        fn splitting_at_any_boundaries_yields_the_same_lines(
            lines in proptest::collection::vec("[a-z{}\":, é\r]{0,12}", 0..8),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let input: Vec<u8> = lines.join("\n").into_bytes();
            let whole = decode_all(&[&input]);
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
            points.sort_unstable();
            let mut pieces = Vec::new();
            let mut start = 0;
            for point in points {
                pieces.push(&input[start..point]);
                start = point;
            }
            pieces.push(&input[start..]);
            prop_assert_eq!(decode_all(&pieces), whole.clone());
            // Every line that came out is non-empty and carries no line ends.
            for line in whole.unwrap_or_default() {
                prop_assert!(!line.is_empty() && !line.contains('\n'));
            }
        }
    }
}
