//! SSE decoder: no panic on any bytes, and the same events whatever the
//! piece size (the logic lives in `chat2api::sse::fuzz_sse`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chat2api::sse::fuzz_sse(data));
