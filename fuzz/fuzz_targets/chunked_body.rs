//! Chunked decoding never panics and does not depend on how input is split.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    chat2api::http1::fuzz_chunked(data);
});
