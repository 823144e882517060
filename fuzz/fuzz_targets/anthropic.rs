#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| chat2api::gateway::anthropic::fuzz_anthropic(data));
