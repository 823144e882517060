#![no_main]
// Both directions: Anthropic clients onto chat providers, and chat clients
// onto Anthropic providers.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    chat2api::translate::anthropic::fuzz_anthropic(data);
    chat2api::translate::anthropic_upstream::fuzz_anthropic_upstream(data);
});
