#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| chat2api::translate::responses::fuzz_responses(data));
