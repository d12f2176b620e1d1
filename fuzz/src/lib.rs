//! What the fuzz targets share: how a fuzz input becomes a provider stream
//! cut into pieces, and the properties every parse of it must have. A target
//! fails by panicking, which is what the asserts here are for.
//!
//! An input is a header and the stream: the header's first byte, modulo 8,
//! says how many cut points follow, each two bytes little-endian, taken
//! modulo the stream's length plus one. A seed is a zero byte and a stream.
//! Client requests have their own input shape, in [`request`].

pub mod request;

use std::sync::LazyLock;

use bytes::Bytes;
use switchyard_data_plane::providers::replay::{self, StreamFormat};

/// The most cut points an input asks for.
const MAX_CUTS: usize = 8;

/// A stream and where to cut it.
#[derive(Debug)]
pub struct Input<'a> {
    pub cuts: Vec<usize>,
    pub stream: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        let Some((&count, rest)) = data.split_first() else {
            return Self {
                cuts: Vec::new(),
                stream: data,
            };
        };
        let count = usize::from(count) % MAX_CUTS;
        let (header, stream) = rest.split_at((count * 2).min(rest.len()));
        let cuts = header
            .chunks_exact(2)
            .map(|pair| usize::from(u16::from_le_bytes([pair[0], pair[1]])) % (stream.len() + 1))
            .collect();
        Self { cuts, stream }
    }

    /// The stream in its pieces, in order.
    pub fn pieces(&self) -> Vec<Bytes> {
        replay::split(self.stream, self.cuts.iter().copied())
    }
}

/// One runtime for every run: building one per input would dominate the time.
/// Time is enabled because the pull loop bounds silence between pieces.
static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    #[expect(
        clippy::expect_used,
        reason = "a fuzz target cannot run without its runtime"
    )]
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime")
});

/// Parses the stream whole and in its pieces through the production path:
/// both must end in exactly one finish or error, and agree.
pub fn check_stream(format: StreamFormat, data: &[u8]) {
    let input = Input::new(data);
    let whole = RUNTIME.block_on(replay::parse(
        format,
        vec![Bytes::copy_from_slice(input.stream)],
    ));
    assert!(
        replay::is_terminated(&whole),
        "{format:?} stream did not end in one finish or error: {whole:?}"
    );
    let split = RUNTIME.block_on(replay::parse(format, input.pieces()));
    assert!(
        replay::is_terminated(&split),
        "{format:?} stream in pieces did not end in one finish or error: {split:?}"
    );
    assert_eq!(
        replay::outcomes(format, &whole),
        replay::outcomes(format, &split),
        "{format:?} stream parsed differently in pieces {:?}",
        input.cuts
    );
}
