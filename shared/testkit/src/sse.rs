//! Streamed response bodies: SSE events paced by a short gap, optional
//! connection drops, and detection of clients that leave mid-stream.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use futures::StreamExt as _;

/// Pause between events, so a test can drop the client mid-stream.
pub(crate) const EVENT_GAP: Duration = Duration::from_millis(5);

/// One step of a streamed body.
#[derive(Debug)]
pub(crate) enum Frame {
    /// Sent as `data: {payload}\n\n`.
    Event(String),
    /// Sent as `event: {event}\ndata: {data}\n\n`.
    Named { event: &'static str, data: String },
    /// Sent as `{line}\n`: one line of a newline-delimited JSON stream.
    Line(String),
    /// Fail the body, which makes the server drop the connection instead of
    /// ending the response cleanly.
    Abort,
    /// Wait this long before the next frame.
    Pause(Duration),
}

/// An SSE body that emits `frames` with [`EVENT_GAP`] between them and adds
/// one to `cancelled` if it is dropped before every frame was handed over.
pub(crate) fn body(frames: Vec<Frame>, cancelled: Arc<AtomicUsize>) -> Body {
    let guard = CancelGuard {
        cancelled,
        finished: frames.is_empty(),
    };
    let state = (VecDeque::from(frames), guard, true);
    let stream = futures::stream::unfold(state, |(mut frames, mut guard, first)| async move {
        let mut frame = frames.pop_front()?;
        let mut wait = if first { Duration::ZERO } else { EVENT_GAP };
        while let Frame::Pause(pause) = frame {
            wait += pause;
            frame = frames.pop_front()?;
        }
        tokio::time::sleep(wait).await;
        // Finished once the last frame is handed over: a client leaving after
        // that did not cut the stream short.
        guard.finished = frames.is_empty() || matches!(frame, Frame::Abort);
        let item = match frame {
            Frame::Event(payload) => Ok(Bytes::from(format!("data: {payload}\n\n"))),
            Frame::Named { event, data } => {
                Ok(Bytes::from(format!("event: {event}\ndata: {data}\n\n")))
            }
            Frame::Line(line) => Ok(Bytes::from(format!("{line}\n"))),
            Frame::Abort => Err(dropped()),
            Frame::Pause(_) => Ok(Bytes::new()),
        };
        Some((item, (frames, guard, false)))
    });
    Body::from_stream(stream)
}

/// A body that sends `bytes` and then drops the connection.
pub(crate) fn truncated(bytes: Bytes) -> Body {
    let head = futures::stream::iter([Ok(bytes)]);
    // Failing at once would drop the connection before the server flushed the
    // headers and the partial body; pausing lets them reach the client first.
    let tail = futures::stream::once(async {
        tokio::time::sleep(EVENT_GAP).await;
        Err(dropped())
    });
    Body::from_stream(head.chain(tail))
}

fn dropped() -> io::Error {
    io::Error::other("mock provider dropped the connection")
}

/// Lives inside the body stream, so the server dropping the body early (the
/// client went away) drops it unfinished.
struct CancelGuard {
    cancelled: Arc<AtomicUsize>,
    finished: bool,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}
