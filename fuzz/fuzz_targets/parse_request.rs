//! Request heads and bodies from arbitrary bytes must never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    chat2api::http1::fuzz_parse_request(data);
});
