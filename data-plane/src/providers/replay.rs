//! Runs recorded provider streams through the production parsers: the bytes,
//! in the pieces they are given in, go through the same framing, dialect and
//! pull loop as a live response body. For property tests and fuzz targets; the
//! gateway itself never calls it.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use super::framed::ByteStream;
use super::{ErrorClass, ProviderError, StreamEvent, ToolCallDelta, anthropic, ollama, openai};

/// A provider's streaming wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamFormat {
    /// OpenAI chat-completion chunks over SSE, ended by `data: [DONE]`.
    OpenAi,
    /// Anthropic Messages events over SSE, ended by `message_stop`.
    Anthropic,
    /// Ollama `/api/chat` NDJSON lines, ended by `"done": true`.
    Ollama,
}

impl StreamFormat {
    pub const ALL: [Self; 3] = [Self::OpenAi, Self::Anthropic, Self::Ollama];
}

/// Silence allowed between pieces. Every piece is there from the start, so
/// it never runs out; the pull loop needs one all the same.
const IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// Parses a stream that arrived in `pieces`, exactly as a live body would be
/// parsed. Needs a tokio runtime with time enabled.
pub async fn parse(
    format: StreamFormat,
    pieces: Vec<Bytes>,
) -> Vec<Result<StreamEvent, ProviderError>> {
    let body: ByteStream = Box::pin(futures::stream::iter(pieces.into_iter().map(Ok)));
    match format {
        StreamFormat::OpenAi => openai::sse_events(body, IDLE_TIMEOUT).collect().await,
        StreamFormat::Anthropic => {
            anthropic::stream::sse_events(body, IDLE_TIMEOUT)
                .collect()
                .await
        }
        StreamFormat::Ollama => ollama::ndjson_events(body, IDLE_TIMEOUT).collect().await,
    }
}

/// `bytes` cut at `cuts` (positions past the end count as the end; order and
/// repeats do not matter, so empty pieces are possible).
pub fn split(bytes: &[u8], cuts: impl IntoIterator<Item = usize>) -> Vec<Bytes> {
    let whole = Bytes::copy_from_slice(bytes);
    let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(whole.len())).collect();
    cuts.sort_unstable();
    let mut pieces = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0;
    for cut in cuts {
        pieces.push(whole.slice(start..cut));
        start = cut;
    }
    pieces.push(whole.slice(start..));
    pieces
}

/// One parsed item in a form that compares.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Event(StreamEvent),
    Error { class: ErrorClass, message: String },
}

/// Parsed items as [`Outcome`]s, for comparing two parses of one stream. The
/// ids of Ollama's tool calls are left out: the gateway makes them up when
/// Ollama sends none.
pub fn outcomes(
    format: StreamFormat,
    events: &[Result<StreamEvent, ProviderError>],
) -> Vec<Outcome> {
    events
        .iter()
        .map(|item| match item {
            Ok(StreamEvent::ToolCall(call)) if format == StreamFormat::Ollama => {
                Outcome::Event(StreamEvent::ToolCall(ToolCallDelta {
                    id: None,
                    ..call.clone()
                }))
            }
            Ok(event) => Outcome::Event(event.clone()),
            Err(e) => Outcome::Error {
                class: e.class,
                message: e.message.clone(),
            },
        })
        .collect()
}

/// Whether a parse ended as every stream must: with exactly one finish or
/// error, and nothing after it.
pub fn is_terminated(events: &[Result<StreamEvent, ProviderError>]) -> bool {
    let is_end = |item: &Result<StreamEvent, ProviderError>| {
        matches!(item, Err(_) | Ok(StreamEvent::Finish { .. }))
    };
    match events.split_last() {
        Some((last, rest)) => is_end(last) && !rest.iter().any(is_end),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::providers::Usage;

    /// OpenAI with `stream_options.include_usage`: a role chunk, text, the
    /// finish reason, then a usage chunk with no choices. Non-ASCII text so
    /// that cuts land inside multi-byte characters.
    const OPENAI: &str = concat!(
        "data: {\"id\":\"chatcmpl-B9\",\"object\":\"chat.completion.chunk\",\"created\":1727000000,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-B9\",\"object\":\"chat.completion.chunk\",\"created\":1727000000,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Un café\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        ": keep-alive\n\n",
        "data: {\"id\":\"chatcmpl-B9\",\"object\":\"chat.completion.chunk\",\"created\":1727000000,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" à 日本 🚀\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-B9\",\"object\":\"chat.completion.chunk\",\"created\":1727000000,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_1\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-B9\",\"object\":\"chat.completion.chunk\",\"created\":1727000000,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_1\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":6,\"total_tokens\":18,\"prompt_tokens_details\":{\"cached_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0}}}\n\n",
        "data: [DONE]\n\n",
    );

    /// Anthropic Messages, CRLF line ends as some proxies send them: start
    /// with input usage, a text block with a ping inside it, then the stop
    /// reason and output usage.
    const ANTHROPIC: &str = concat!(
        "event: message_start\r\n",
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01XFD\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":12,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\"output_tokens\":1}}}\r\n\r\n",
        "event: content_block_start\r\n",
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\r\n\r\n",
        "event: ping\r\n",
        "data: {\"type\": \"ping\"}\r\n\r\n",
        "event: content_block_delta\r\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Un café\"}}\r\n\r\n",
        "event: content_block_delta\r\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" à 日本 🚀\"}}\r\n\r\n",
        "event: content_block_stop\r\n",
        "data: {\"type\":\"content_block_stop\",\"index\":0}\r\n\r\n",
        "event: message_delta\r\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":6}}\r\n\r\n",
        "event: message_stop\r\n",
        "data: {\"type\":\"message_stop\"}\r\n\r\n",
    );

    /// Ollama `/api/chat`: text lines, then the done line with its counts.
    const OLLAMA: &str = concat!(
        "{\"model\":\"llama3.2\",\"created_at\":\"2025-01-01T00:00:00.1Z\",\"message\":{\"role\":\"assistant\",\"content\":\"Un café\"},\"done\":false}\n",
        "{\"model\":\"llama3.2\",\"created_at\":\"2025-01-01T00:00:00.2Z\",\"message\":{\"role\":\"assistant\",\"content\":\" à 日本 🚀\"},\"done\":false}\n",
        "{\"model\":\"llama3.2\",\"created_at\":\"2025-01-01T00:00:00.3Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"stop\",\"total_duration\":4883583458,\"load_duration\":1334875,\"prompt_eval_count\":12,\"prompt_eval_duration\":342546000,\"eval_count\":6,\"eval_duration\":4535599000}\n",
    );

    /// OpenAI streaming a tool call: id and name first, arguments in pieces.
    const OPENAI_TOOLS: &str = concat!(
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"index\":0,\"id\":\"call_abc\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]},\"finish_reason\":null}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"city\\\":\\\"Zürich\"}}]},\"finish_reason\":null}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"}\"}}]},\"finish_reason\":null}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":80,\"completion_tokens\":17}}\n\n",
        "data: [DONE]\n\n",
    );

    /// Anthropic streaming a `tool_use` block, its input in JSON pieces.
    const ANTHROPIC_TOOLS: &str = concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":472,\"output_tokens\":2}}}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_01\",\"name\":\"get_weather\",\"input\":{}}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\": \\\"Zürich\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\\\"}\"}}\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: message_delta\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":89}}\n\n",
        "event: message_stop\n",
        "data: {\"type\":\"message_stop\"}\n\n",
    );

    /// Ollama sending a whole tool call, with no id, then done.
    const OLLAMA_TOOLS: &str = concat!(
        "{\"model\":\"llama3.2\",\"created_at\":\"2025-01-01T00:00:00Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"function\":{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Zürich\"}}}]},\"done\":false}\n",
        "{\"model\":\"llama3.2\",\"created_at\":\"2025-01-01T00:00:01Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"stop\",\"prompt_eval_count\":120,\"eval_count\":22}\n",
    );

    fn recording(format: StreamFormat) -> &'static [u8] {
        match format {
            StreamFormat::OpenAi => OPENAI.as_bytes(),
            StreamFormat::Anthropic => ANTHROPIC.as_bytes(),
            StreamFormat::Ollama => OLLAMA.as_bytes(),
        }
    }

    fn tool_recording(format: StreamFormat) -> &'static [u8] {
        match format {
            StreamFormat::OpenAi => OPENAI_TOOLS.as_bytes(),
            StreamFormat::Anthropic => ANTHROPIC_TOOLS.as_bytes(),
            StreamFormat::Ollama => OLLAMA_TOOLS.as_bytes(),
        }
    }

    /// What every recording says.
    fn expected() -> Vec<StreamEvent> {
        vec![
            StreamEvent::Delta("Un café".into()),
            StreamEvent::Delta(" à 日本 🚀".into()),
            StreamEvent::Finish {
                finish_reason: "stop".into(),
                usage: Some(Usage {
                    input_tokens: 12,
                    output_tokens: 6,
                }),
            },
        ]
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    /// Parses `bytes` cut at `cuts`, as comparable outcomes.
    fn parse_cut(
        rt: &tokio::runtime::Runtime,
        format: StreamFormat,
        bytes: &[u8],
        cuts: &[usize],
    ) -> Vec<Outcome> {
        let events = rt.block_on(parse(format, split(bytes, cuts.iter().copied())));
        assert!(
            is_terminated(&events),
            "{format:?} did not terminate: {events:?}"
        );
        outcomes(format, &events)
    }

    #[test]
    fn recordings_parse_to_their_events() {
        let rt = runtime();
        for format in StreamFormat::ALL {
            let want: Vec<Outcome> = expected().into_iter().map(Outcome::Event).collect();
            assert_eq!(
                parse_cut(&rt, format, recording(format), &[]),
                want,
                "{format:?}"
            );
        }
    }

    #[test]
    fn tool_call_recordings_parse_to_one_call() {
        let rt = runtime();
        for format in StreamFormat::ALL {
            let events = parse_cut(&rt, format, tool_recording(format), &[]);
            let arguments: String = events
                .iter()
                .filter_map(|e| match e {
                    Outcome::Event(StreamEvent::ToolCall(call)) => {
                        assert_eq!(call.index, 0);
                        Some(call.arguments.as_str())
                    }
                    _ => None,
                })
                .collect();
            assert_eq!(
                arguments.replace(' ', ""),
                r#"{"city":"Zürich"}"#,
                "{format:?}"
            );
            assert!(
                matches!(
                    events.last(),
                    Some(Outcome::Event(StreamEvent::Finish { finish_reason, usage: Some(_) }))
                        if finish_reason == "tool_calls"
                ),
                "{format:?}: {events:?}"
            );
        }
    }

    #[test]
    fn every_single_cut_and_every_byte_alone_give_the_same_events() {
        let rt = runtime();
        let recordings = StreamFormat::ALL
            .into_iter()
            .flat_map(|f| [(f, recording(f)), (f, tool_recording(f))]);
        for (format, bytes) in recordings {
            let whole = parse_cut(&rt, format, bytes, &[]);
            for cut in 0..=bytes.len() {
                assert_eq!(
                    parse_cut(&rt, format, bytes, &[cut]),
                    whole,
                    "{format:?} cut at {cut}"
                );
            }
            let every: Vec<usize> = (0..=bytes.len()).collect();
            assert_eq!(
                parse_cut(&rt, format, bytes, &every),
                whole,
                "{format:?} byte by byte"
            );
        }
    }

    #[test]
    fn cuts_inside_multi_byte_characters_are_covered() {
        for format in StreamFormat::ALL {
            let text = std::str::from_utf8(recording(format)).unwrap();
            // Every position inside "é", "à", "日", "本" and "🚀".
            let inside: Vec<usize> = (0..text.len())
                .filter(|&i| !text.is_char_boundary(i))
                .collect();
            assert_eq!(inside.len(), 1 + 1 + 2 + 2 + 3, "{format:?}");
            let rt = runtime();
            assert_eq!(
                parse_cut(&rt, format, text.as_bytes(), &inside),
                parse_cut(&rt, format, text.as_bytes(), &[])
            );
        }
    }

    #[test]
    fn garbage_after_the_end_is_never_read() {
        let rt = runtime();
        for format in StreamFormat::ALL {
            let mut bytes = recording(format).to_vec();
            bytes.extend_from_slice(b"\xff\xfe not even UTF-8\n\n");
            let want = parse_cut(&rt, format, recording(format), &[]);
            assert_eq!(parse_cut(&rt, format, &bytes, &[]), want, "{format:?}");
        }
    }

    #[test]
    fn events_before_bad_bytes_are_delivered_however_the_bytes_were_split() {
        let rt = runtime();
        for format in StreamFormat::ALL {
            let bytes = recording(format);
            // Break the done line: everything before it still comes out.
            let broken = bytes.len() - 4;
            let mut bad = bytes.to_vec();
            bad[broken] = 0xff;
            let whole = parse_cut(&rt, format, &bad, &[]);
            assert_eq!(whole.len(), 3, "{format:?}: {whole:?}");
            assert!(matches!(
                whole[2],
                Outcome::Error {
                    class: ErrorClass::Protocol,
                    ..
                }
            ));
            for cut in 0..=bad.len() {
                assert_eq!(
                    parse_cut(&rt, format, &bad, &[cut]),
                    whole,
                    "{format:?} cut at {cut}"
                );
            }
        }
    }

    fn format() -> impl Strategy<Value = StreamFormat> {
        prop::sample::select(StreamFormat::ALL.to_vec())
    }

    proptest! {
        #[test]
        fn splitting_a_recording_anywhere_gives_the_same_events(
            format in format(),
            tools in any::<bool>(),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 1..12),
        ) {
            let bytes = if tools { tool_recording(format) } else { recording(format) };
            let cuts: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
            let rt = runtime();
            let whole = parse_cut(&rt, format, bytes, &[]);
            prop_assert_eq!(parse_cut(&rt, format, bytes, &cuts), whole);
        }

        #[test]
        fn any_bytes_end_in_a_finish_or_an_error_however_split(
            format in format(),
            bytes in prop::collection::vec(any::<u8>(), 0..512),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let cuts: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
            let rt = runtime();
            let whole = parse_cut(&rt, format, &bytes, &[]);
            prop_assert_eq!(parse_cut(&rt, format, &bytes, &cuts), whole);
        }

        /// Recordings with a few bytes changed: mostly valid framing, so the
        /// dialects see near-miss JSON rather than noise.
        #[test]
        fn damaged_recordings_end_in_a_finish_or_an_error_however_split(
            format in format(),
            damage in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let mut bytes = recording(format).to_vec();
            for (at, byte) in &damage {
                let at = at.index(bytes.len());
                bytes[at] = *byte;
            }
            let cuts: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
            let rt = runtime();
            let whole = parse_cut(&rt, format, &bytes, &[]);
            prop_assert_eq!(parse_cut(&rt, format, &bytes, &cuts), whole);
        }
    }

    #[test]
    fn usage_figures_past_u64_add_up_to_the_limit() {
        // Found by the anthropic_stream fuzz target: the input count adds up
        // Anthropic's three input figures, and overflowed.
        let stream = concat!(
            "data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":18446744073709551615,\"cache_read_input_tokens\":1}}}\n\n",
            "data: {\"type\":\"message_stop\"}\n\n",
        );
        let rt = runtime();
        let events = parse_cut(&rt, StreamFormat::Anthropic, stream.as_bytes(), &[]);
        assert_eq!(
            events,
            vec![Outcome::Event(StreamEvent::Finish {
                finish_reason: "stop".into(),
                usage: Some(Usage {
                    input_tokens: u64::MAX,
                    output_tokens: 0
                }),
            })]
        );
    }

    #[test]
    fn split_keeps_every_byte_in_order() {
        let pieces = split(b"abcdef", [4, 1, 1, 99]);
        let lens: Vec<usize> = pieces.iter().map(Bytes::len).collect();
        assert_eq!(lens, vec![1, 0, 3, 2, 0]);
        assert_eq!(pieces.concat(), b"abcdef");
    }
}
