//! What an upstream sends back: head, body framing and content-coding; no
//! panic on any bytes, and the same body whatever the piece size (the
//! logic lives in `chat2api::upstream::fuzz_response`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chat2api::upstream::fuzz_response(data));
