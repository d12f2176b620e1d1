//! The NDJSON decoder alone: any bytes, whole or in pieces, give the same
//! lines and the same error, and never a panic; every line is non-empty and
//! free of newlines.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use switchyard_data_plane::providers::ndjson::{NdjsonDecoder, NdjsonError};
use switchyard_fuzz::Input;

fuzz_target!(|data: &[u8]| {
    let input = Input::new(data);
    let whole = decode(&[Bytes::copy_from_slice(input.stream)]);
    let split = decode(&input.pieces());
    assert_eq!(whole, split, "pieces {:?}", input.cuts);
    for line in &whole.0 {
        assert!(!line.is_empty() && !line.contains('\n'), "{line:?}");
    }
});

/// Lines up to the first error (the unterminated last one included), and the error.
fn decode(pieces: &[Bytes]) -> (Vec<String>, Result<(), NdjsonError>) {
    let mut decoder = NdjsonDecoder::default();
    let mut lines = Vec::new();
    for piece in pieces {
        if let Err(e) = decoder.push(piece, &mut lines) {
            return (lines, Err(e));
        }
    }
    match decoder.finish() {
        Ok(last) => {
            lines.extend(last);
            (lines, Ok(()))
        }
        Err(e) => (lines, Err(e)),
    }
}
