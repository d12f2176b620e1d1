//! Incremental Server-Sent Events decoder for provider streams. Bytes arrive in
//! arbitrary pieces; events come out whole, the same however the bytes were
//! split. Bounded, so a provider that never ends a line, or an event, cannot
//! grow memory without limit.

/// Longest line accepted from a provider.
const MAX_LINE_BYTES: usize = 1 << 20;
/// Most data one event may carry, over all its `data:` lines.
const MAX_EVENT_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; empty when absent.
    pub event: String,
    /// The `data:` lines joined with '\n'.
    pub data: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("stream line longer than {MAX_LINE_BYTES} bytes")]
    LineTooLong,
    #[error("stream event longer than {MAX_EVENT_BYTES} bytes")]
    EventTooLong,
    #[error("stream is not valid UTF-8")]
    InvalidUtf8,
}

#[derive(Debug, Default)]
pub struct SseDecoder {
    line: Vec<u8>,
    event: String,
    data: String,
    has_data: bool,
}

impl SseDecoder {
    /// Feeds bytes; appends the events they complete to `events`, including
    /// those completed before an error. After an error the decoder is spent.
    pub fn push(&mut self, bytes: &[u8], events: &mut Vec<SseEvent>) -> Result<(), SseError> {
        for &b in bytes {
            if b == b'\n' {
                let mut line = std::mem::take(&mut self.line);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                let line = String::from_utf8(line).map_err(|_| SseError::InvalidUtf8)?;
                if let Some(event) = self.take_line(&line)? {
                    events.push(event);
                }
            } else {
                if self.line.len() >= MAX_LINE_BYTES {
                    return Err(SseError::LineTooLong);
                }
                self.line.push(b);
            }
        }
        Ok(())
    }

    fn take_line(&mut self, line: &str) -> Result<Option<SseEvent>, SseError> {
        if line.is_empty() {
            if !self.has_data {
                self.event.clear();
                return Ok(None);
            }
            self.has_data = false;
            return Ok(Some(SseEvent {
                event: std::mem::take(&mut self.event),
                data: std::mem::take(&mut self.data),
            }));
        }
        if line.starts_with(':') {
            return Ok(None);
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "data" => {
                if self.data.len() + usize::from(self.has_data) + value.len() > MAX_EVENT_BYTES {
                    return Err(SseError::EventTooLong);
                }
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => value.clone_into(&mut self.event),
            _ => {}
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(pieces: &[&[u8]]) -> Result<Vec<SseEvent>, SseError> {
        let mut decoder = SseDecoder::default();
        let mut out = Vec::new();
        for piece in pieces {
            decoder.push(piece, &mut out)?;
        }
        Ok(out)
    }

    #[test]
    fn events_split_anywhere_come_out_whole() {
        let stream = b"data: {\"a\":1}\n\n: keepalive\n\nevent: ping\ndata: x\r\ndata: y\r\n\r\ndata: [DONE]\n\n";
        let whole = decode_all(&[stream]).unwrap();
        for cut in 0..stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(decode_all(&[a, b]).unwrap(), whole, "cut at {cut}");
        }
        assert_eq!(
            whole,
            vec![
                SseEvent {
                    event: String::new(),
                    data: "{\"a\":1}".into()
                },
                SseEvent {
                    event: "ping".into(),
                    data: "x\ny".into()
                },
                SseEvent {
                    event: String::new(),
                    data: "[DONE]".into()
                },
            ]
        );
    }

    #[test]
    fn an_unterminated_event_is_not_emitted() {
        assert_eq!(decode_all(&[b"data: partial"]).unwrap(), vec![]);
    }

    #[test]
    fn invalid_utf8_and_endless_lines_are_errors() {
        assert_eq!(
            decode_all(&[b"data: \xff\xfe\n"]),
            Err(SseError::InvalidUtf8)
        );
        let long = vec![b'a'; MAX_LINE_BYTES + 1];
        assert_eq!(decode_all(&[&long]), Err(SseError::LineTooLong));
    }

    #[test]
    fn an_endless_event_is_an_error() {
        // Short lines, but the event they add up to never ends.
        let line = b"data: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789\n";
        let mut decoder = SseDecoder::default();
        let mut events = Vec::new();
        let mut result = Ok(());
        for _ in 0..=MAX_EVENT_BYTES / (line.len() - 6) {
            result = decoder.push(line, &mut events);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(SseError::EventTooLong));
        assert!(decoder.data.len() <= MAX_EVENT_BYTES);
        // Empty data lines add a line end each.
        let mut decoder = SseDecoder::default();
        let empty = b"data:\n".repeat(MAX_EVENT_BYTES + 2);
        assert_eq!(
            decoder.push(&empty, &mut events),
            Err(SseError::EventTooLong)
        );
        assert!(events.is_empty());
        // An event at the limit is fine.
        let mut at_limit = b"data: ".to_vec();
        at_limit.extend(vec![b'a'; MAX_EVENT_BYTES / 2]);
        at_limit.extend_from_slice(b"\ndata: ");
        at_limit.extend(vec![b'b'; MAX_EVENT_BYTES / 2 - 1]);
        at_limit.extend_from_slice(b"\n\n");
        let events = decode_all(&[&at_limit]).unwrap();
        assert_eq!(events[0].data.len(), MAX_EVENT_BYTES);
    }

    #[test]
    fn events_before_an_error_are_kept() {
        let mut decoder = SseDecoder::default();
        let mut events = Vec::new();
        assert_eq!(
            decoder.push(b"data: a\n\ndata: \xff\n\n", &mut events),
            Err(SseError::InvalidUtf8)
        );
        assert_eq!(
            events,
            vec![SseEvent {
                event: String::new(),
                data: "a".into()
            }]
        );
    }
}
