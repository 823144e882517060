//! chat2api: an OpenAI-compatible API gateway on raw tokio sockets.
//!
//! The data path, in the order a request travels it:
//!
//! - [`server`]: listener and per-connection driver, the only code touching
//!   client sockets;
//! - [`api`]: the wire contract every layer shares: endpoints, the
//!   OpenAI-shaped errors, the answer a service hands the driver;
//! - [`http1`]: sans-IO HTTP/1.1: request heads, body framing, encoding;
//! - [`gateway`]: routes, client keys, request validation, model routing,
//!   the mock provider and the forwarding of answers;
//! - [`upstream`]: the pooled HTTP/1.1 (and TLS) client to providers;
//! - [`sse`]: the zero-copy server-sent-events decoder, and the encoding of
//!   the events chat2api writes;
//! - [`stats`]: lock-free counters.
//!
//! Off the data path: [`config`] (the JSON file and the built-in default),
//! [`cli`] and [`management`] (start, stop, restart and the status API).
#![forbid(unsafe_code)]

pub mod api;
pub mod cli;
pub mod config;
pub mod gateway;
pub mod http1;
pub mod limits;
pub mod management;
pub mod server;
pub mod shared;
pub mod sse;
pub mod stats;
pub mod translate;
pub mod upstream;
pub mod vectored;
