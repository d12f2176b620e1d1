//! The SSE decoder alone: any bytes, whole or in pieces, give the same events
//! and the same error, and never a panic.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use switchyard_data_plane::providers::sse::{SseDecoder, SseError, SseEvent};
use switchyard_fuzz::Input;

fuzz_target!(|data: &[u8]| {
    let input = Input::new(data);
    let whole = decode(&[Bytes::copy_from_slice(input.stream)]);
    let split = decode(&input.pieces());
    assert_eq!(whole, split, "pieces {:?}", input.cuts);
    for event in &whole.0 {
        assert!(!event.event.contains('\n'), "{event:?}");
    }
});

/// Events up to the first error, and the error.
fn decode(pieces: &[Bytes]) -> (Vec<SseEvent>, Result<(), SseError>) {
    let mut decoder = SseDecoder::default();
    let mut events = Vec::new();
    for piece in pieces {
        if let Err(e) = decoder.push(piece, &mut events) {
            return (events, Err(e));
        }
    }
    (events, Ok(()))
}
