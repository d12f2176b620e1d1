//! The pull loop every streaming adapter shares: bytes from the provider are
//! split into frames (SSE data payloads, NDJSON lines), each frame becomes
//! events in the provider's dialect, and silence, a cut body or an early end
//! become classified errors. Pull-based, so dropping the stream drops the
//! connection to the provider at once.

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};

use super::ndjson::NdjsonDecoder;
use super::sse::SseDecoder;
use super::{ErrorClass, ProviderError, StreamEvent};

pub type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// Events ready for the consumer, in order.
pub type Ready = VecDeque<Result<StreamEvent, ProviderError>>;

/// How a provider's bytes split into frames.
pub trait Framing: Send {
    /// Appends the frames the bytes complete to `frames`, those before an
    /// error included, so what comes out does not depend on how the bytes
    /// were split into pieces.
    fn push(&mut self, bytes: &[u8], frames: &mut Vec<String>) -> Result<(), String>;
    /// A last frame still pending when the body ends, if the framing allows one.
    fn finish(&mut self) -> Result<Option<String>, String> {
        Ok(None)
    }
}

impl Framing for SseDecoder {
    fn push(&mut self, bytes: &[u8], frames: &mut Vec<String>) -> Result<(), String> {
        let mut events = Vec::new();
        let result = SseDecoder::push(self, bytes, &mut events);
        frames.extend(events.into_iter().map(|e| e.data));
        result.map_err(|e| e.to_string())
    }
}

impl Framing for NdjsonDecoder {
    fn push(&mut self, bytes: &[u8], frames: &mut Vec<String>) -> Result<(), String> {
        NdjsonDecoder::push(self, bytes, frames).map_err(|e| e.to_string())
    }

    fn finish(&mut self) -> Result<Option<String>, String> {
        NdjsonDecoder::finish(self).map_err(|e| e.to_string())
    }
}

/// How a provider's frames become events.
pub trait Dialect: Send {
    /// What a body that ends before the dialect's own end marker is called.
    const UNFINISHED: &'static str;

    /// Takes one frame, queueing its events; false when the stream is over.
    fn take(&mut self, frame: &str, ready: &mut Ready) -> bool;
}

struct Framed<F, D> {
    body: ByteStream,
    framing: F,
    dialect: D,
    ready: Ready,
    ended: bool,
    idle_timeout: Duration,
}

impl<F: Framing, D: Dialect> Framed<F, D> {
    /// Feeds frames to the dialect until it says the stream is over.
    fn take_all(&mut self, frames: Vec<String>) {
        for frame in frames {
            if !self.dialect.take(&frame, &mut self.ready) {
                self.ended = true;
                return;
            }
        }
    }

    /// The body ended: a pending last frame still counts; anything short of
    /// the dialect's end marker is an error.
    fn end_of_body(&mut self) -> Option<ProviderError> {
        match self.framing.finish() {
            Ok(Some(frame)) => self.take_all(vec![frame]),
            Ok(None) => {}
            Err(e) => return Some(ProviderError::new(ErrorClass::Protocol, e)),
        }
        (!self.ended).then(|| ProviderError::new(ErrorClass::Protocol, D::UNFINISHED))
    }
}

pub fn events<F, D>(
    body: ByteStream,
    idle_timeout: Duration,
    framing: F,
    dialect: D,
) -> impl Stream<Item = Result<StreamEvent, ProviderError>>
where
    F: Framing + 'static,
    D: Dialect + 'static,
{
    let state = Framed {
        body,
        framing,
        dialect,
        ready: Ready::new(),
        ended: false,
        idle_timeout,
    };
    futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(item) = st.ready.pop_front() {
                return Some((item, st));
            }
            if st.ended {
                return None;
            }
            let error = match tokio::time::timeout(st.idle_timeout, st.body.next()).await {
                Err(_) => Some(ProviderError::new(
                    ErrorClass::Timeout,
                    format!("provider sent nothing for {}s", st.idle_timeout.as_secs()),
                )),
                Ok(None) => st.end_of_body(),
                Ok(Some(Err(_))) => Some(ProviderError::new(
                    ErrorClass::Transient,
                    "provider stream was interrupted",
                )),
                Ok(Some(Ok(bytes))) => {
                    let mut frames = Vec::new();
                    let result = st.framing.push(&bytes, &mut frames);
                    // The frames before a framing error still count, and may
                    // end the stream before the error is reached.
                    st.take_all(frames);
                    match result {
                        Ok(()) => continue,
                        Err(_) if st.ended => None,
                        Err(e) => Some(ProviderError::new(ErrorClass::Protocol, e)),
                    }
                }
            };
            st.ended = true;
            if let Some(error) = error {
                st.ready.push_back(Err(error));
            }
        }
    })
}
