//! What a correct reply looks like: a chat completion whose content is the
//! mock's text, or a stream of chunks that adds up to it and ends in
//! `data: [DONE]`. Streams are scanned as their bytes arrive, to time the
//! first content token.

use serde_json::Value;

/// Checks a non-streamed chat completion body.
pub fn check_completion(body: &[u8], expected: &str) -> Result<(), String> {
    let value: Value = serde_json::from_slice(body).map_err(|_| "body is not JSON".to_owned())?;
    match value
        .pointer("/choices/0/message/content")
        .and_then(Value::as_str)
    {
        Some(content) if content == expected => Ok(()),
        Some(_) => Err("wrong completion content".to_owned()),
        None => Err("completion without choices[0].message.content".to_owned()),
    }
}

/// Incremental reader of one server-sent-events body.
#[derive(Debug, Default)]
pub struct StreamScan {
    buf: Vec<u8>,
    /// Bytes of `buf` already split into events.
    scanned: usize,
    content: String,
    done: bool,
}

impl StreamScan {
    /// Adds the next body bytes. Returns whether they completed the first
    /// event that carries content (the first token).
    pub fn push(&mut self, bytes: &[u8]) -> Result<bool, String> {
        let had_content = !self.content.is_empty();
        self.buf.extend_from_slice(bytes);
        while let Some(end) = find(&self.buf[self.scanned..], b"\n\n") {
            let event = &self.buf[self.scanned..self.scanned + end];
            let event = std::str::from_utf8(event)
                .map_err(|_| "stream event is not UTF-8".to_owned())?
                .to_owned();
            self.scanned += end + 2;
            self.event(&event)?;
        }
        Ok(!had_content && !self.content.is_empty())
    }

    /// Checks the whole stream once the body has ended.
    pub fn finish(&self, expected: &str) -> Result<(), String> {
        if !self.done {
            return Err("stream ended without data: [DONE]".to_owned());
        }
        if self.content != expected {
            return Err("wrong streamed content".to_owned());
        }
        Ok(())
    }

    fn event(&mut self, event: &str) -> Result<(), String> {
        for line in event.lines() {
            let Some(data) = line.strip_prefix("data:") else {
                continue;
            };
            let data = data.strip_prefix(' ').unwrap_or(data);
            if data == "[DONE]" {
                self.done = true;
                continue;
            }
            if self.done {
                return Err("event after data: [DONE]".to_owned());
            }
            let chunk: Value =
                serde_json::from_str(data).map_err(|_| "stream event is not JSON".to_owned())?;
            if chunk.get("error").is_some() {
                return Err("error event in stream".to_owned());
            }
            if let Some(piece) = chunk
                .pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
            {
                self.content.push_str(piece);
            }
        }
        Ok(())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLE: &str = r#"data: {"choices":[{"delta":{"role":"assistant","content":""}}]}"#;
    const HELLO: &str = r#"data: {"choices":[{"delta":{"content":"Hello "}}]}"#;
    const WORLD: &str = r#"data: {"choices":[{"delta":{"content":"world"}}]}"#;

    #[test]
    fn completion_content_must_match() {
        let body = br#"{"choices":[{"message":{"role":"assistant","content":"hi"}}]}"#;
        assert_eq!(check_completion(body, "hi"), Ok(()));
        assert!(check_completion(body, "bye").is_err());
        assert!(check_completion(b"{not json", "hi").is_err());
    }

    #[test]
    fn first_token_is_the_first_non_empty_content_even_split_across_chunks() {
        let mut scan = StreamScan::default();
        assert_eq!(scan.push(format!("{ROLE}\n\n").as_bytes()), Ok(false));
        let hello = format!("{HELLO}\n\n");
        let (a, b) = hello.split_at(10);
        assert_eq!(scan.push(a.as_bytes()), Ok(false));
        assert_eq!(scan.push(b.as_bytes()), Ok(true));
        assert_eq!(scan.push(format!("{WORLD}\n\n").as_bytes()), Ok(false));
        assert!(scan.finish("Hello world").is_err(), "no [DONE] yet");
        assert_eq!(scan.push(b"data: [DONE]\n\n"), Ok(false));
        assert_eq!(scan.finish("Hello world"), Ok(()));
        assert!(scan.finish("Hello").is_err());
    }

    #[test]
    fn error_events_fail_the_stream() {
        let mut scan = StreamScan::default();
        assert!(
            scan.push(b"data: {\"error\":{\"message\":\"x\"}}\n\n")
                .is_err()
        );
    }
}
