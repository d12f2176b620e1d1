//! OpenAI chat-completions bodies through the edge's parser and validator,
//! and the model's tool calls through the check against the request's
//! compiled tool schemas: bytes as sent, or generated request-shaped JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| switchyard_fuzz::request::check_request(data));
