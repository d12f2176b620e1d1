//! Ollama NDJSON chat lines, through the production pull loop.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_data_plane::providers::replay::StreamFormat;

fuzz_target!(|data: &[u8]| switchyard_fuzz::check_stream(StreamFormat::Ollama, data));
