//! chat2api: an OpenAI-compatible API gateway on raw tokio sockets.
#![forbid(unsafe_code)]
pub mod http1;
pub mod upstream;
